#!/usr/bin/env bash
# The one-shot accelerator check: run it on a machine with one GPU, from the repository
# root, with PyPI reachable; it writes $OUT/device_check.json and prints a table.
#
#   OUT=/tmp/lrjax-gpu bash benchmarks/device_check.sh
#   DEVICE_CHECK_DRY=1 OUT=/tmp/dry bash benchmarks/device_check.sh   # CPU rehearsal
#
# Steps, each with its own timeout; the caps sum to 465 s, under 8 minutes:
# 1. install (150 s): a venv (.venv-gpu) with this checkout, pytest, pytest-xdist,
#    hypothesis and the CUDA build of jax, the version the CPU venv pins (jax[cuda13] on
#    a driver >= 580, else jax[cuda12]; the other one if the first gives no GPU
#    backend). One resolve, with uv when it installs (parallel downloads), else pip:
#    about 2 GB of CUDA wheels, 1-2 minutes on a data-centre link.
# 2. devices (20 s): versions and devices, $OUT/devices.json.
# 3. engine guarantees (100 s): tests/test_engine.py, test_sharding.py, test_adapters.py
#    and test_losses.py on the GPU at full f32 matmul precision (member == plain Optax
#    loop, accumulation == true batch, divergence isolation, sharding, BatchNorm state
#    and dropout, losses): 44 tests of small models, whose time is compilation, in 4
#    xdist processes sharing the GPU (XLA_PYTHON_CLIENT_PREALLOCATE=false).
# 4. benchmark (the rest, at least 185 s): benchmarks/bench.py, lrjax against the
#    compiled-scan and jit(vmap(scan)) baselines for the MLP, the CNN and ResNet-20
#    (width 0.5) in float32 and bfloat16, at N = 1, 64, 256 and 1,024, batch 128,
#    2 epochs of the digits (20 steps per member), with memory_stats() peaks. Budget
#    rule: bench.py gets --budget-s = its timeout less 30 s; it runs each model's cells
#    smallest N first and skips (and lists) a case whose estimate (its time at the
#    previous N: compile as measured, train time scaled by N) exceeds the time left,
#    so the ResNet's N = 1,024 cells go first when time is short. The JSON is
#    rewritten after every cell, so a killed run keeps what it measured. Compilations
#    go to a persistent cache (JAX_COMPILATION_CACHE_DIR), which lets the scans case
#    reuse its one-member program across N, and a rerun skip compiling (its compile
#    seconds then read the cache).
# 5. report (10 s): $OUT/device_check.json (devices, test outcome, the benchmark
#    report) and a table of every row.
# The sizes: the benchmark's time goes to compiling (24 cells x 3 cases; on CPU a
# ResNet-20 case compiles in 5-10 s, the MLP's in under 1 s), not to training, so one
# batch size (128, the one that fills a GPU best) and 2 epochs: 20 steps per member,
# enough that a case's train seconds exceed its launch cost. Width 0.5: a ResNet's
# compile time does not depend on its width, its activations at N = 1,024 x 128
# examples are half those of width 1. The caps are estimates: the check has not run
# on a GPU yet; what it skipped for time is listed in the JSON ("skipped").
#
# DEVICE_CHECK_DRY=1 rehearses every step on this machine's CPU: no install (the
# current venv, or $DEVICE_CHECK_PYTHON), the test files collected but not run, and
# tiny models and grids (N = 1, 2; a twentieth of an epoch).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/lrjax-device-check}"
DRY="${DEVICE_CHECK_DRY:-0}"
CACHE=""
mkdir -p "$OUT"
DEADLINE=465  # seconds from the start: every step's cap, summed
REPORT_S=10
log() { echo "device_check: $* (t=${SECONDS}s)" >&2; }
left() { echo $((DEADLINE - SECONDS - $1)); }  # seconds left, less a reserve
cap() { local l; l=$(left "$2"); echo $(( $1 < l ? $1 : (l > 1 ? l : 1) )); }

TEST_FILES="tests/test_engine.py tests/test_sharding.py tests/test_adapters.py tests/test_losses.py"
if [ "$DRY" = "1" ]; then
  PY="${DEVICE_CHECK_PYTHON:-.venv/bin/python}"
  TEST_ARGS="--collect-only"
  BENCH_ARGS=(--members 1,2 --batch 32 --epochs 0.05
              --model-kwargs
              '{"mlp": {"hidden": [32]}, "cnn": {"channels": [8, 8]}, "resnet20": {"width": 0.25}}')
  DEADLINE=100000  # no bound on a rehearsal; a test sets its own timeout
else
  PY=.venv-gpu/bin/python
  # Four test processes share the GPU (no preallocation): the tests' time is compiling,
  # which runs on the host's cores.
  TEST_ARGS="-n 4"
  BENCH_ARGS=(--members 1,64,256,1024 --batch 128 --epochs 2)
  CACHE="${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/lrjax-jax-cache}"  # the benchmark's
  JAX_VERSION="$(sed -n 's/.*"jax>=\([0-9.]*\)".*/\1/p' pyproject.toml)"
  DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
  log "install: venv with jax[cuda] ${JAX_VERSION:-latest} (driver ${DRIVER:-unknown})"
  CUDAS="cuda12 cuda13"
  [ "${DRIVER%%.*}" -ge 580 ] 2>/dev/null && CUDAS="cuda13 cuda12"
  python3 -m venv .venv-gpu
  # uv downloads the CUDA wheels in parallel; pip is the fallback.
  timeout 30 .venv-gpu/bin/pip install -q --disable-pip-version-check uv >/dev/null 2>&1
  install() {
    if .venv-gpu/bin/python -m uv --version >/dev/null 2>&1; then
      .venv-gpu/bin/python -m uv pip install -q --python "$PY" "$@"
    else
      .venv-gpu/bin/pip install -q --disable-pip-version-check "$@"
    fi
  }
  export -f install
  export PY
  for CUDA in $CUDAS; do
    # Only what the check runs: the package, pytest (with xdist) and hypothesis.
    timeout "$(cap 150 $((20 + 100 + 185 + REPORT_S)))" bash -c 'install "$@"' _ -e . \
      pytest pytest-xdist hypothesis "jax[$CUDA]${JAX_VERSION:+>=$JAX_VERSION}" \
      >"$OUT/install.txt" 2>&1 \
      && [ "$($PY -c 'import jax; print(jax.default_backend())' 2>/dev/null)" = gpu ] \
      && break
    log "install: jax[$CUDA] gave no GPU backend"; tail -3 "$OUT/install.txt" >&2
  done
fi

log "devices"
timeout 20 "$PY" - <<'PYEOF' > "$OUT/devices.json"
import json, jax
print(json.dumps({"jax": jax.__version__, "backend": jax.default_backend(),
                  "devices": [str(d) for d in jax.devices()]}))
PYEOF
cat "$OUT/devices.json" >&2

log "engine guarantees on the device"
# shellcheck disable=SC2086  # word splitting of the file list and options is meant
JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false \
  timeout "$(cap 100 $((185 + REPORT_S)))" \
  "$PY" -m pytest -q -p no:cacheprovider $TEST_ARGS $TEST_FILES > "$OUT/tests.txt" 2>&1
TESTS_RC=$?
tail -3 "$OUT/tests.txt" >&2

BENCH_S=$(left $REPORT_S)
[ "$DRY" = "1" ] && BENCH_S=3600
BUDGET=$((BENCH_S > 60 ? BENCH_S - 30 : BENCH_S / 2))  # 30 s for the cell in flight
log "benchmark: ${BENCH_S} s, budget ${BUDGET} s"
rm -f "$OUT/bench.json"
env ${CACHE:+JAX_COMPILATION_CACHE_DIR="$CACHE"} timeout "$BENCH_S" \
  "$PY" benchmarks/bench.py --models mlp,cnn,resnet20 --dtypes float32,bfloat16 \
  --cases lrjax,scans,vmap_scan --budget-s "$BUDGET" \
  "${BENCH_ARGS[@]}" --json "$OUT/bench.json" > "$OUT/bench.txt" 2> >(tee "$OUT/bench_log.txt" >&2)
BENCH_RC=$?
cat "$OUT/bench.txt"

timeout "$REPORT_S" "$PY" - "$OUT" "$TESTS_RC" "$BENCH_RC" "$DRY" "$CACHE" <<'PYEOF'
import json, os, sys
out, tests_rc, bench_rc, dry, cache = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    sys.argv[4], sys.argv[5]
read = lambda name: open(os.path.join(out, name)).read()
report = {"dry_run": dry == "1", "engine_tests_rc": tests_rc,
          "engine_tests_tail": read("tests.txt").splitlines()[-3:], "bench_rc": bench_rc,
          "jax_compilation_cache": cache or None}
try:
  report["devices"] = json.loads(read("devices.json"))
except (OSError, ValueError) as e:
  report["devices"] = {"error": str(e)}
try:  # written after every cell; absent if the benchmark stopped before the first
  report["bench"] = json.loads(read("bench.json"))
except (OSError, ValueError) as e:
  report["bench_error"] = str(e)
json.dump(report, open(os.path.join(out, "device_check.json"), "w"), indent=2)
if "bench" in report:  # after the JSON is written: this imports jax
  sys.path.insert(0, "benchmarks")
  from bench_support import format_brief
  print("\n" + format_brief(report["bench"]))
print(f"\ndevice_check: wrote {os.path.join(out, 'device_check.json')} (tests rc {tests_rc}, "
      f"bench rc {bench_rc}, bench complete: {report.get('bench', {}).get('complete')})")
PYEOF
