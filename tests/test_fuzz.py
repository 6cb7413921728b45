"""Fuzzed configs: every grid/settings combination either runs as asked or raises ConfigError.

Two properties (hypothesis):

* ``test_build_run_fuzz`` (fast, no training): ``make_grid`` + ``build_run`` over odd
  axis values and settings; a valid config yields the member count, hyperparameters
  and example budget asked for, anything else a ``ConfigError`` (never another
  exception).
* ``test_train_grid_fuzz`` (trains a tiny MLP on digits): the same contract end to
  end, across chunking, ``vmap_width`` and the number of devices (1 or all).

Each property counts its examples in ``EXAMPLES`` and prints the count.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import json
import math
from unittest import mock

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings as hsettings, strategies as st

import lrjax
import lrjax.metric_writers
from lrjax import data, experiment, grid, models
from lrjax.config_files import load_config
from lrjax.engine import devices
from lrjax.engine.run import build_run
from lrjax.engine.settings import TrainSettings
from lrjax.engine.trainer import train_grid

EXAMPLES = collections.Counter()
NUM_TRAIN = 1297  # digits' training split

_DS = None
_MODEL = None


def _dataset():
  global _DS, _MODEL
  if _DS is None:
    _DS = data.load("digits")
    _MODEL = models.get_model("mlp", 10, hidden=(8,))
  return _DS, _MODEL


# --- strategies -------------------------------------------------------------------

ODD_FLOATS = st.sampled_from([0.0, -0.1, -1.0, math.inf, -math.inf, math.nan, 1e300, 1e-320,
                              1e39, 3e38])
GOOD_LR = st.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.3, 1.0, 10.0])
LR = st.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.3, 1.0, 10.0] * 6 + [0.0, -0.1, -1.0, math.inf,
                     -math.inf, math.nan, 1e300, 1e-320, 1e39, 3e38])  # odd: rare per value
GOOD_BATCH = st.sampled_from([1, 8, 16, 24, 32, 48, 64, 100, 128, 1297])
ODD_BATCH = st.sampled_from([0, -8, 7, 13, 1298, 4096, 2**40, 32.0, 32.5, math.inf, math.nan,
                             True])
BATCH = st.sampled_from([1, 8, 16, 24, 32, 48, 64, 100, 128, 1297] * 6 + [
    0, -8, 7, 13, 1298, 4096, 2**40, 32.0, 32.5, math.inf, math.nan, True])
AUG = st.one_of(st.just(0.0), st.sampled_from([0.5, 1.0, 2.0, -1.0, math.nan, math.inf, 1e300]))
SEED = st.one_of(*[st.integers(0, 5)] * 4, st.sampled_from([-1, 2**31 - 1, 2**31, 2**70, 1.0, 1.5,
                                                     math.nan]))
MOMENTUM = st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0, -0.5, math.nan, math.inf, 1e300])
EXTRA_AXES = {"momentum": MOMENTUM,
              "label_smoothing": st.sampled_from([0.0, 0.1, 0.5, 1.0, -0.1, math.nan]),
              "nesterov_typo": st.just(1.0),  # no such hyperparameter: a ConfigError
              "alpha": st.sampled_from([0.0, 0.1, 1.0])}  # not an argument of "constant"


def _axis(values, max_size=3, allow_empty=True):
  # Distinct values (as make_grid's user would write them), sometimes an empty axis.
  axis = st.lists(values, min_size=1, max_size=max_size, unique_by=repr).map(tuple)
  return st.one_of(*[axis] * 8, st.just(())) if allow_empty else axis  # empty: rare


@st.composite
def grid_axes(draw, max_size=3, good_only=False):
  pick = (lambda good, bad: good) if good_only else (lambda good, bad: bad)
  empty = not good_only
  axes = {"lr": draw(_axis(pick(GOOD_LR, LR), max_size, empty)),
          "batch_size": draw(_axis(pick(GOOD_BATCH, BATCH), max_size, empty))}
  if draw(st.booleans()):
    axes["seed"] = draw(_axis(pick(st.integers(0, 5), SEED), 2, empty))
  if not good_only and draw(st.booleans()):
    axes["aug"] = draw(_axis(AUG, 2, empty))
  if draw(st.booleans()):
    name = "momentum" if good_only else draw(st.sampled_from(sorted(EXTRA_AXES)))
    values = (st.sampled_from([0.0, 0.5, 0.9]) if good_only else EXTRA_AXES[name])
    axes[name] = draw(_axis(values, 2, empty))
  return axes


EPOCHS = st.one_of(st.sampled_from([1e-9, 1e-3, 0.01, 0.3, 0.5, 1, 2.5, 10, 1e6, 1e7, 1e12,
                                    1e300, 0, -1, math.inf, math.nan]),
                   *[st.floats(1e-4, 20, allow_nan=False)] * 3)
EVAL_EVERY = st.sampled_from([0, 0, 1, 7, 100, 1297, 10**6, 10**12, -1])
MICRO_BATCH = st.sampled_from([0, 0, 0, 0, 0, 1, 4, 8, 16, 3, 7, 2000, -1])


# Memory budgets in bytes: automatic (0), ones that force chunks of a tiny grid (a few
# hundred KiB: its compiled program with the dataset is ~200-400 KiB), ones no group fits.
MAX_MEMORY = st.sampled_from([0, 0, 300_000, 350_000, 1 << 30, 100_000])


@st.composite
def train_settings(draw, epochs=EPOCHS, eval_every=EVAL_EVERY, micro_batch=MICRO_BATCH,
                   max_memory=MAX_MEMORY, bn_batch=st.sampled_from([0] * 8 + [4, 8, 5, -1]),
                   dtype=st.sampled_from(["float32"] * 8 + ["bfloat16", "float16"])):
  return dict(epochs=draw(epochs), eval_every=draw(eval_every),
              micro_batch=draw(micro_batch),
              max_members_per_chunk=draw(st.sampled_from([0, 0, 1, 2, 3, 5, 100])),
              max_memory=draw(max_memory), bn_batch=draw(bn_batch), dtype=draw(dtype),
              vmap_width=draw(st.sampled_from([0, 1, 2, 3])))


# --- checks -----------------------------------------------------------------------

def _expected_rows(axes):
  full = dict(axes)
  full.setdefault("seed", (0,))
  full.setdefault("aug", (0.0,))
  names = sorted(full)
  rows = collections.Counter(tuple(map(float, combo)) for combo in
                             itertools.product(*(full[n] for n in names)))
  return names, rows


def _check_members(members, axes):
  n = math.prod(len(v) for v in axes.values())
  assert len(members) == n
  assert members["member"].tolist() == list(range(n))
  names, rows = _expected_rows(axes)
  got = collections.Counter(tuple(map(float, r)) for r in
                            members[names].itertuples(index=False))
  assert got == rows


def _check_budget(examples, segment, epochs):
  assert examples % segment == 0 and examples >= segment
  assert abs(examples - epochs * NUM_TRAIN) <= segment


def _build(axes, kw):
  ds, model = _dataset()
  settings = TrainSettings(**kw)
  table = grid.make_grid(axes)
  return table, build_run(model, ds, table, settings)


# --- (a) fast: validation and plan, no training ------------------------------------

@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(axes=grid_axes(), kw=train_settings())
@example(axes={"lr": (0.1,), "batch_size": (32.5,)}, kw={})  # was silently truncated to 32
@example(axes={"lr": (0.1,), "batch_size": (math.inf,)}, kw={})  # was pandas IntCastingNaNError
@example(axes={"lr": (0.1,), "batch_size": (32,), "seed": (1.5,)}, kw={})  # truncated to 1
@example(axes={"lr": (0.1,), "batch_size": (32,), "seed": (-1,)}, kw={})  # numpy ValueError later
@example(axes={"lr": (0.1,), "batch_size": (32,), "seed": (2**70,)}, kw={})  # OverflowError
@example(axes={"lr": (1e300,), "batch_size": (32,)}, kw={})  # trained as float32 inf
@example(axes={"lr": (1e-320,), "batch_size": (32,)}, kw={})  # trained as float32 0
@example(axes={"lr": (0.1,), "batch_size": (32,), "momentum": (1e300,)}, kw={})  # float32 inf
@example(axes={"lr": (0.1,), "batch_size": (32,)}, kw={"epochs": 1e300})  # OverflowError
@example(axes={"lr": (0.1,), "batch_size": (32,)}, kw={"epochs": 1e12})  # int32 tick overflow
def test_build_run_fuzz(axes, kw):
  EXAMPLES["build_run"] += 1
  try:
    table, run = _build(axes, kw)
  except lrjax.ConfigError as e:
    EXAMPLES["build_run: ConfigError"] += 1
    EXAMPLES["build_run: ConfigError " + str(e).split(":")[0]] += 1
    return
  _check_members(table, axes)
  p = run.plan
  assert p.ticks_per_segment % p.k_lcm == 0 and p.num_segments >= 1
  assert p.total_ticks <= 2**31 - 1
  bs = table["batch_size"].to_numpy()
  assert (bs % p.micro_batch == 0).all() and (bs <= NUM_TRAIN).all()
  _check_budget(p.examples_per_member, p.ticks_per_segment * p.micro_batch, kw.get("epochs", 10.0))
  lay = run.layout
  updates = grid.from_slots(run.hparams["total_updates"], lay)
  np.testing.assert_array_equal(updates, p.examples_per_member // bs)
  assert (p.examples_per_member % bs == 0).all()
  lr = grid.from_slots(run.hparams["lr"], lay)
  assert np.isfinite(lr).all() and (lr > 0).all()
  np.testing.assert_allclose(lr, table["lr"].to_numpy(np.float32), rtol=1e-6)
  EXAMPLES["build_run: ran"] += 1


# --- (b) training a tiny MLP ----------------------------------------------------------

def _check_trained(result, axes, kw):
  members = result.members
  _check_members(members, axes)
  examples = result.info["examples_per_member"]
  ds, _ = _dataset()
  _, run = _build(axes, kw)
  _check_budget(examples, run.plan.ticks_per_segment * run.plan.micro_batch, kw["epochs"])
  alive = ~members["diverged"].to_numpy()
  np.testing.assert_array_equal(members["updates"].to_numpy()[alive],
                                examples // members["batch_size"].to_numpy()[alive])


@pytest.mark.slow  # 15 generated grids, each compiled
@hsettings(max_examples=15, deadline=None, derandomize=True,
           phases=[Phase.explicit, Phase.generate, Phase.shrink],
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(axes=grid_axes(max_size=2, good_only=True),
       kw=train_settings(epochs=st.sampled_from([0.005, 0.05, 0.1, 0.3]),
                         eval_every=st.sampled_from([0, 1, 100, 10**6]),
                         micro_batch=st.sampled_from([0, 0, 8]),
                         bn_batch=st.just(0), dtype=st.just("float32")),
       num_devices=st.sampled_from([1, len(jax.devices())]),
       odd=st.sampled_from([None, None, None, ("lr", 0.0), ("lr", math.nan),
                            ("batch_size", 5000), ("batch_size", 2.5), ("seed", -1)]))
@example(axes={"lr": (0.1, 1.0), "batch_size": (8, 24)},
         kw=dict(epochs=0.05, eval_every=1, micro_batch=0, max_members_per_chunk=3,
                 vmap_width=3), num_devices=2, odd=None)
@example(axes={"lr": (0.1, 1.0), "batch_size": (8, 24), "seed": (0, 1, 2)},
         kw=dict(epochs=0.05, eval_every=0, micro_batch=0, max_members_per_chunk=0,
                 max_memory=350_000, vmap_width=0), num_devices=1, odd=None)  # 2 chunks
def test_train_grid_fuzz(axes, kw, num_devices, odd):
  EXAMPLES["train_grid"] += 1
  if odd is not None:  # one bad value in an otherwise good grid
    axes = dict(axes)
    axes[odd[0]] = tuple(axes.get(odd[0], ())) + (odd[1],)
  ds, model = _dataset()
  real = devices.member_partition
  with mock.patch.object(devices, "member_partition",
                         lambda n, sizes, devs=None: real(n, sizes, jax.devices()[:num_devices])):
    try:
      result = train_grid(model, ds, grid.make_grid(axes), TrainSettings(**kw), progress=False)
    except lrjax.ConfigError as e:
      EXAMPLES["train_grid: ConfigError"] += 1
      # A budget below one group's footprint is refused before training, naming it.
      too_small = (str(e).startswith("max_memory:") and 0 < kw.get("max_memory", 0) < 1 << 30
                   and not kw["max_members_per_chunk"])
      assert odd is not None or kw["micro_batch"] == 8 or too_small, (axes, kw, str(e))
      return
  assert odd is None
  _check_trained(result, axes, kw)
  if kw.get("max_memory") and not kw["max_members_per_chunk"]:  # chunks sized to the budget
    EXAMPLES["train_grid: chunked by max_memory"] += result.info["num_chunks"] > 1
    assert result.info["memory_estimate"] <= kw["max_memory"]
  EXAMPLES["train_grid: ran"] += 1


# --- (c) the command line: repeated overrides, duplicated and near-equal axis values ----

# Per axis, values among which some are equal after float32 rounding (0.1 and
# 0.1000000001) or repeated exactly (a value drawn twice).
OVERRIDE_VALUES = {"lr": [0.01, 0.1, 0.1000000001, 0.3], "seed": [0, 1, 2],
                   "batch_size": [16, 32, 64], "aug": [0.0, 0.5, 0.50000000001, 1.0]}


@st.composite
def repeated_overrides(draw):
  """``(axis, values)`` pairs in command-line order; an axis may come back."""
  return [(axis, tuple(draw(st.lists(st.sampled_from(OVERRIDE_VALUES[axis]), min_size=1,
                                     max_size=3))))
          for axis in draw(st.lists(st.sampled_from(sorted(OVERRIDE_VALUES)), min_size=1,
                                    max_size=4))]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=repeated_overrides())
@example(overrides=[("seed", (0,)), ("seed", (1, 2))])  # appended to (0, 1, 2) before
@example(overrides=[("seed", (0,)), ("seed", (0, 1))])
@example(overrides=[("lr", (0.1, 0.1000000001))])  # one value in float32
def test_command_line_overrides_fuzz(overrides):
  """The last override of an axis wins; its values are the grid's exactly, or a value given
  twice (or two equal in float32) is a ConfigError naming the axis, before any compile."""
  EXAMPLES["overrides"] += 1
  args = [f"--config.grid.{axis}=({', '.join(map(repr, values))},)"
          for axis, values in overrides]
  last = dict(overrides)
  duplicated = {axis for axis, values in last.items()
                if len({float(np.float32(v)) for v in values}) < len(values)}
  compiled = mock.patch("jax.stages.Lowered.compile",
                        side_effect=AssertionError("compiled before refusing"))
  try:
    with compiled:
      config = load_config("experiments/lr_batch_aug.py:runlocal", args)
      runs = experiment.resolve_runs(config)
  except lrjax.ConfigError as e:
    EXAMPLES["overrides: ConfigError"] += 1
    assert duplicated, (args, str(e))
    assert any(f"grid.{axis}: " in str(e) for axis in duplicated), (args, str(e))
    return
  assert not duplicated, args
  table = runs[0].table
  for axis, values in last.items():
    assert tuple(config.grid[axis]) == values, (args, axis)
    assert sorted(set(table[axis].astype(float))) == sorted(map(float, values)), (args, axis)
  EXAMPLES["overrides: ran"] += 1


# --- (d) failures after compilation: the checkpoint in <workdir>.partial is never lost ---

class _FailingWriter(lrjax.metric_writers.MetricWriter):
  """Raises ``error`` at its ``at``-th call of ``method`` (``write``: an evaluation)."""

  def __init__(self, method: str, at: int, error: BaseException):
    self.method, self.at, self.error, self.calls = method, at, error, 0

  def _call(self, method):
    if method == self.method:
      self.calls += 1
      if self.calls == self.at:
        raise self.error

  def write(self, *args, **kwargs):
    self._call("write")

  def finish(self, members):
    self._call("finish")


def _tiny_config():
  config = experiment.default_config()
  config.model_kwargs = {"hidden": (8,)}
  config.grid.lr, config.grid.batch_size, config.grid.seed = (0.03, 0.3), (32, 64), (0,)
  config.epochs, config.eval_every, config.checkpoint_every = 0.5, 160, 1
  return config


_UNINTERRUPTED = {}


def _uninterrupted_members(tmp_path_factory):
  if "members" not in _UNINTERRUPTED:
    workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
    _UNINTERRUPTED["members"] = experiment.train_and_evaluate(
        _tiny_config(), str(workdir), progress=False, writers=()).members
  return _UNINTERRUPTED["members"]


POST_COMPILE_FAILURES = st.one_of(
    st.tuples(st.just("write"), st.integers(1, 4)),  # at an evaluation while training
    st.tuples(st.just("finish"), st.just(1)),  # the writers' end, after the last segment
    st.tuples(st.sampled_from(["write_results", "write_report"]), st.just(1)))
ERRORS = st.sampled_from([OSError(28, "No space left on device"),
                          OSError(24, "Too many open files"), RuntimeError("writer crashed")])


@pytest.mark.slow  # each example trains twice (failed, resumed)
@hsettings(max_examples=6, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(where=POST_COMPILE_FAILURES, error=ERRORS)
@example(where=("write_report", 1), error=RuntimeError("an analysis step raised"))
@example(where=("write_results", 1), error=OSError(28, "No space left on device"))
def test_failure_after_compile_never_loses_the_checkpoint_fuzz(tmp_path_factory, where, error):
  """Whatever fails once training has started, <workdir>.partial holds the run's config and
  checkpoints, and resuming from it gives the members an uninterrupted run gives."""
  EXAMPLES["after compile"] += 1
  workdir = tmp_path_factory.mktemp("failed") / "run"
  method, at = where
  writers, patches = (), []
  if method in ("write", "finish"):
    writers = (_FailingWriter(method, at, error),)
  else:
    target = {"write_results": "lrjax.experiment.write_results",
              "write_report": "lrjax.workdir.report.write_report"}[method]
    patches = [mock.patch(target, side_effect=error)]
  try:
    with contextlib.ExitStack() as stack:
      for p in patches:
        stack.enter_context(p)
      experiment.train_and_evaluate(_tiny_config(), str(workdir), progress=False,
                                    writers=writers)
  except (OSError, RuntimeError, lrjax.RunNotWritten) as e:
    EXAMPLES[f"after compile: {type(e).__name__}"] += 1
  else:
    # An OSError in the report is the disk's; any other error there is the analysis's,
    # which the run survives with a report saying so.
    assert method == "write_report" and not isinstance(error, OSError), (where, error)
    EXAMPLES["after compile: written with the failure reported"] += 1
    assert "analysis_failed" in json.loads((workdir / "summary.json").read_text())
    return
  partial = workdir.parent / "run.partial"
  assert (partial / "config.json").exists() and not workdir.exists()
  resumed = experiment.train_and_evaluate(_tiny_config(), str(workdir), progress=False,
                                          resume=True, writers=())
  assert not partial.exists() and (workdir / "report.html").exists()
  expected = _uninterrupted_members(tmp_path_factory)
  for column in ("final_val_loss", "final_train_loss", "test_acc", "status"):
    assert resumed.members[column].tolist() == expected[column].tolist(), (where, column)


def teardown_module(module):
  print(f"\nhypothesis examples: {dict(EXAMPLES)}")
