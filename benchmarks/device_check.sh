#!/usr/bin/env bash
# The one-shot accelerator check: run it on a machine with one GPU, from the repository
# root, with PyPI reachable; it writes one JSON under $OUT and prints a table.
#
#   OUT=/tmp/lrjax-gpu bash benchmarks/device_check.sh
#
# 1. a venv (.venv-gpu) with the CUDA build of jax, the version the CPU venv pins;
# 2. the engine-guarantee tests on the GPU (member == plain Optax loop, accumulation ==
#    true batch, divergence isolation, sharding), at full f32 matmul precision;
# 3. lrjax against the compiled-scan and jit(vmap(scan)) baselines at N = 1, 64, 256 and
#    1,024 members for the MLP and the CNN, with device memory_stats() peaks
#    (benchmarks/bench.py);
# 4. $OUT/device_check.json: versions, devices, test outcome, the benchmark report.
# Budget: about 8 minutes (each step has its own timeout). The ResNet and bfloat16 rows
# the check should also hold need those features in lrjax first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/lrjax-device-check}"
mkdir -p "$OUT"
JAX_VERSION="$(sed -n 's/.*"jax>=\([0-9.]*\)".*/\1/p' pyproject.toml)"
log() { echo "device_check: $*" >&2; }

log "venv with jax[cuda] ${JAX_VERSION:-latest}"
python3 -m venv .venv-gpu
PIP=".venv-gpu/bin/pip install -q --disable-pip-version-check"
$PIP -e ".[test]" >/dev/null
timeout 240 $PIP "jax[cuda13]${JAX_VERSION:+>=$JAX_VERSION}" \
  || timeout 240 $PIP "jax[cuda12]${JAX_VERSION:+>=$JAX_VERSION}"
PY=.venv-gpu/bin/python
$PY - <<'PYEOF' > "$OUT/devices.json"
import json, jax
print(json.dumps({"jax": jax.__version__, "backend": jax.default_backend(),
                  "devices": [str(d) for d in jax.devices()]}))
PYEOF
cat "$OUT/devices.json" >&2

log "engine guarantees on the device"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 $PY -m pytest -q -p no:cacheprovider \
  tests/test_engine.py tests/test_sharding.py > "$OUT/tests.txt" 2>&1
TESTS_RC=$?
tail -3 "$OUT/tests.txt" >&2

log "benchmark"
timeout 240 $PY benchmarks/bench.py --models mlp,cnn --members 1,64,256,1024 \
  --batch 32,128 --epochs 1 --cases lrjax,scans,vmap_scan --json "$OUT/bench.json" \
  | tee "$OUT/bench.txt"
BENCH_RC=${PIPESTATUS[0]}

$PY - "$OUT" "$TESTS_RC" "$BENCH_RC" <<'PYEOF'
import json, os, sys
out, tests_rc, bench_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = {"devices": json.load(open(os.path.join(out, "devices.json"))),
          "engine_tests_rc": tests_rc, "engine_tests_tail":
          open(os.path.join(out, "tests.txt")).read().splitlines()[-3:],
          "bench_rc": bench_rc}
bench = os.path.join(out, "bench.json")
if os.path.exists(bench):
  report["bench"] = json.load(open(bench))
json.dump(report, open(os.path.join(out, "device_check.json"), "w"), indent=2)
print(f"device_check: wrote {os.path.join(out, 'device_check.json')} "
      f"(tests rc {tests_rc}, bench rc {bench_rc})")
PYEOF
