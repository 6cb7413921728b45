"""Tests for lrjax.schedules: parity with torch/keras/optax references, vmap, grad, errors."""
import doctest
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import schedules
from lrjax.errors import ConfigError
from lrjax.schedules import catalog, combinators, cyclical, family

REFERENCES = json.loads(
    (pathlib.Path(__file__).parent / "data" / "schedule_references.json").read_text())
CASES = REFERENCES["cases"]
FACTORIES = {**schedules.SCHEDULES, "onecycle_momentum": schedules.onecycle_momentum,
             "cyclic_momentum": schedules.cyclic_momentum}


def build(spec, cast=lambda x: x):
  """Builds an lrjax schedule from a reference spec; `cast` maps every numeric leaf."""
  kwargs = {}
  for key, value in spec["kwargs"].items():
    if isinstance(value, dict) and "schedule" in value:
      value = build(value, cast)
    elif key == "schedules":
      value = [build(s, cast) for s in value]
    elif key == "boundaries_and_scales":
      value = [(cast(b), cast(s)) for b, s in value]
    elif isinstance(value, list):
      value = [cast(v) for v in value]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      value = cast(value)
    kwargs[key] = value
  name = spec["schedule"]
  if name == "product":
    return schedules.product(*kwargs["schedules"])
  return FACTORIES[name](**kwargs)


def assert_matches_reference(actual, expected, rtol=1e-6):
  """rtol 1e-6 against float64 references, plus an atol of 1e-12 x the case's scale.

  The atol only matters for references that are zero up to float64 rounding (e.g.
  torch's recursive cosine reaches ~1e-18 where the exact value is 0).
  """
  expected = np.asarray(expected, np.float64)
  atol = 1e-12 * np.max(np.abs(expected))
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_values_match_reference_under_jit(case):
  schedule = build(case["spec"])
  values = jax.jit(schedule)(jnp.asarray(case["counts"], jnp.int32))
  assert values.dtype == jnp.float32
  assert_matches_reference(values, case["values"])
  if "momentum" in case:
    momentum = build(case["momentum"]["spec"])
    assert_matches_reference(jax.jit(momentum)(jnp.asarray(case["counts"])),
                             case["momentum"]["values"])


@pytest.mark.parametrize("case", CASES[::4], ids=[c["name"] for c in CASES[::4]])
def test_values_match_reference_with_traced_arguments(case):
  # Every numeric argument, step counts included, arrives as a tracer.
  leaves = []

  def collect(x):
    leaves.append(x)
    return x
  build(case["spec"], collect)

  @jax.jit
  def evaluate(args, counts):
    it = iter(args)
    return build(case["spec"], lambda _: next(it))(counts)
  values = evaluate([jnp.float32(x) for x in leaves], jnp.asarray(case["counts"]))
  assert_matches_reference(values, case["values"])


def test_reference_file_records_versions():
  assert set(REFERENCES["versions"]) >= {"torch", "keras", "optax"}
  sources = " ".join(c["source"] for c in CASES)
  for ref in ("StepLR", "MultiStepLR", "ExponentialLR", "PolynomialLR", "LinearLR",
              "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "OneCycleLR", "CyclicLR",
              "SequentialLR", "ChainedScheduler", "ExponentialDecay", "InverseTimeDecay",
              "PolynomialDecay", "PiecewiseConstantDecay", "CosineDecayRestarts",
              "constant_schedule", "exponential_decay", "piecewise_constant_schedule",
              "linear_schedule", "cosine_decay_schedule", "warmup_cosine_decay_schedule",
              "join_schedules"):
    assert ref in sources, ref


VMAP_SPECS = {
    "step": dict(init_value=[0.1, 1.0, 0.5], step_size=[3, 7, 10], gamma=[0.5, 0.1, 0.9]),
    "exponential": dict(init_value=[0.1, 1.0, 0.5], decay_rate=[0.9, 0.5, 1.1],
                        transition_steps=[10, 3, 5], transition_begin=[0, 5, 2],
                        end_value=[0.01, 0.1, 0.6]),
    "inverse_time": dict(init_value=[0.1, 1.0, 0.5], decay_rate=[0.5, 1.0, 2.0],
                         decay_steps=[10, 3, 5]),
    "polynomial": dict(init_value=[0.1, 1.0, 0.5], end_value=[0.0, 0.1, 0.01],
                       power=[1.0, 2.0, 0.5], decay_steps=[10, 30, 5], cycle=True),
    "linear": dict(init_value=[0.0, 1.0, 0.5], end_value=[1.0, 0.1, 0.01],
                   transition_steps=[10, 30, 5]),
    "cosine": dict(init_value=[0.1, 1.0, 0.5], decay_steps=[10, 30, 50],
                   alpha=[0.0, 0.1, 0.01], exponent=[1.0, 2.0, 0.5]),
    "cosine_restarts": dict(init_value=[0.1, 1.0, 0.5], first_decay_steps=[10, 7, 5],
                            t_mul=[1.0, 2.0, 1.5], m_mul=[1.0, 0.5, 0.8],
                            alpha=[0.0, 0.1, 0.01]),
    "onecycle": dict(max_value=[0.1, 1.0, 0.5], total_steps=[100, 40, 60],
                     pct_start=[0.3, 0.25, 0.1], div_factor=[25.0, 10.0, 5.0],
                     final_div_factor=[1e4, 100.0, 10.0], three_phase=True),
    "cyclic": dict(base_value=[0.01, 0.1, 0.0], max_value=[0.1, 1.0, 0.5],
                   step_size_up=[5, 10, 3], step_size_down=[5, 3, 8], mode="exp_range",
                   gamma=[0.99, 0.9, 1.0]),
    "multistep": dict(init_value=[0.1, 1.0, 0.5], milestones=[[3, 10], [20, 30], [0, 5]],
                      gamma=[0.5, 0.1, 0.3]),
}


def _member(kwargs, m):
  return {k: (v[m] if isinstance(v, list) else v) for k, v in kwargs.items()}


@pytest.mark.parametrize("name", sorted(VMAP_SPECS))
def test_array_arguments_match_scalar_schedules_per_member(name):
  kwargs = VMAP_SPECS[name]
  counts = jnp.arange(0, 120, 3)
  arrays = {k: (jnp.asarray(v, jnp.float32) if isinstance(v, list) else v)
            for k, v in kwargs.items()}
  # One call with member arrays, evaluated at each count (broadcast explicitly).
  batched = jax.jit(jax.vmap(schedules.SCHEDULES[name](**arrays)))(counts)
  assert batched.shape == (counts.shape[0], 3)
  # The same schedule built per member inside vmap (as the engine does).
  def member_values(args):
    return jax.vmap(schedules.SCHEDULES[name](**{**kwargs, **args}))(counts)
  traced = {k: v for k, v in arrays.items() if isinstance(kwargs[k], list)}
  vmapped = jax.jit(jax.vmap(member_values))(traced)
  for m in range(3):
    scalar = jax.jit(schedules.SCHEDULES[name](**_member(kwargs, m)))(counts)
    np.testing.assert_allclose(batched[:, m], scalar, rtol=1e-6)
    np.testing.assert_allclose(vmapped[m], scalar, rtol=1e-6)


GRAD_KWARGS = {
    "constant": lambda lr, n: dict(value=lr),
    "step": lambda lr, n: dict(init_value=lr, step_size=n),
    "multistep": lambda lr, n: dict(init_value=lr, milestones=[n, 2 * n]),
    "piecewise_constant": lambda lr, n: dict(init_value=lr, boundaries_and_scales=[(n, 0.1)]),
    "exponential": lambda lr, n: dict(init_value=lr, decay_rate=0.5, transition_steps=n,
                                      staircase=True, end_value=0.01),
    "inverse_time": lambda lr, n: dict(init_value=lr, decay_rate=0.5, decay_steps=n),
    "polynomial": lambda lr, n: dict(init_value=lr, end_value=0.0, power=0.5,
                                     decay_steps=n, cycle=True),
    "linear": lambda lr, n: dict(init_value=lr, end_value=0.0, transition_steps=n),
    "cosine": lambda lr, n: dict(init_value=lr, decay_steps=n, exponent=2.0),
    "cosine_restarts": lambda lr, n: dict(init_value=lr, first_decay_steps=n, t_mul=1.0),
    "onecycle": lambda lr, n: dict(max_value=lr, total_steps=n, anneal="linear",
                                   three_phase=True),
    "cyclic": lambda lr, n: dict(base_value=0.0, max_value=lr, step_size_up=n,
                                 mode="exp_range", gamma=0.99),
}


def test_gradients_are_finite_for_every_family():
  names = sorted(GRAD_KWARGS)

  def total(hp, index):
    lr, n = hp
    s = schedules.schedule_family(names, index, [GRAD_KWARGS[k](lr, n) for k in names])
    return jnp.sum(jax.vmap(s)(jnp.arange(0.0, 60.0)))
  grad = jax.jit(jax.grad(total))
  for index in range(len(names)):
    g = grad((jnp.float32(0.1), jnp.float32(20.0)), jnp.int32(index))  # one compile
    assert all(np.isfinite(np.asarray(x)) for x in g), names[index]
    assert float(g[0]) > 0, names[index]
  # Geometric restarts too (t_mul != 1 takes the other branch).
  g = jax.jit(jax.grad(lambda tm: schedules.cosine_restarts(1.0, 10.0, tm)(37.0)))(2.0)
  assert np.isfinite(g)


def test_family_selects_member_schedule_under_vmap():
  names = ["exponential", "cosine", "onecycle", "cyclic", "constant"]

  def member(index, lr, steps):
    s = schedules.schedule_family(names, index, [
        dict(init_value=lr, decay_rate=0.9, transition_steps=10),
        dict(init_value=lr, decay_steps=steps),
        dict(max_value=lr, total_steps=steps),
        dict(base_value=lr / 10, max_value=lr, step_size_up=steps / 4),
        dict(value=lr)])
    return jax.vmap(s)(jnp.arange(0, 100))

  index = jnp.arange(5)
  lrs = jnp.asarray([0.1, 0.2, 0.3, 0.4, 0.5])
  steps = jnp.asarray([50.0, 60.0, 70.0, 80.0, 90.0])
  got = jax.jit(jax.vmap(member))(index, lrs, steps)
  direct = [schedules.exponential(0.1, 0.9, 10), schedules.cosine(0.2, 60.0),
            schedules.onecycle(0.3, 70.0), schedules.cyclic(0.04, 0.4, 20.0),
            schedules.constant(0.5)]
  for m, s in enumerate(direct):
    np.testing.assert_allclose(got[m], jax.vmap(s)(jnp.arange(0, 100)), rtol=1e-6)


def test_schedules_work_inside_inject_hyperparams():
  lr = schedules.onecycle(0.1, total_steps=10)
  momentum = schedules.momentum_schedule("onecycle", dict(max_value=0.1, total_steps=10))
  opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
  params = jnp.zeros(3)
  state = opt.init(params)

  @jax.jit
  def one_step(state):
    _, state = opt.update(jnp.ones(3), state, params)
    return state
  for t in range(5):
    state = one_step(state)  # the update number t used the hyperparameters of count t
    hp = state.hyperparams
    np.testing.assert_allclose(hp["learning_rate"], lr(t), rtol=1e-6)
    np.testing.assert_allclose(hp["momentum"], momentum(t), rtol=1e-6)


def test_momentum_schedule_defaults_follow_torch():
  m = schedules.momentum_schedule("cyclic", dict(base_value=0.1, max_value=1.0,
                                                 step_size_up=5, mode="triangular"))
  assert [round(float(m(t)), 6) for t in (0, 5, 10)] == [0.9, 0.8, 0.9]
  with pytest.raises(ValueError, match="unknown name"):
    schedules.momentum_schedule("cosine", {})


def test_warmup_exponential_ramp_is_geometric():
  s = jax.jit(schedules.warmup(schedules.constant(1.0), 4, start_value=0.01,
                               kind="exponential"))
  np.testing.assert_allclose(jax.vmap(s)(jnp.arange(6)),
                             [0.01, 0.01 ** 0.75, 0.1, 0.01 ** 0.25, 1.0, 1.0], rtol=1e-6)


def test_warmup_without_shift_keeps_absolute_count():
  inner = schedules.multistep(1.0, [10], gamma=0.1)
  s = jax.jit(schedules.warmup(inner, 5, shift=False))
  np.testing.assert_allclose(jax.vmap(s)(jnp.asarray([0, 5, 9, 10])), [0.0, 1.0, 1.0, 0.1],
                             rtol=1e-6)
  zero = jax.jit(schedules.warmup(inner, 0))
  np.testing.assert_allclose(zero(0), 1.0)


def test_negative_count_acts_as_zero():
  for s in (schedules.cosine(1.0, 10), schedules.onecycle(1.0, 10),
            schedules.cyclic(0.1, 1.0, 4), schedules.exponential(1.0, 0.5)):
    np.testing.assert_allclose(s(-3), s(0))


@pytest.mark.parametrize("make, message", [
    (lambda: schedules.cosine(1.0, decay_steps=-5), "decay_steps"),
    (lambda: schedules.step(1.0, step_size=0), "step_size"),
    (lambda: schedules.multistep(1.0, [-1, 3]), "milestones"),
    (lambda: schedules.onecycle(1.0, 100, pct_start=1.5), "pct_start"),
    (lambda: schedules.onecycle(1.0, 100, pct_start=0.0), "pct_start"),
    (lambda: schedules.onecycle(1.0, 100, anneal="cosine"), "anneal"),
    (lambda: schedules.cyclic(0.1, 1.0, mode="triangle"), "mode"),
    (lambda: schedules.cyclic(0.1, 1.0, step_size_up=jnp.asarray([5.0, -1.0])),
     "step_size_up"),
    (lambda: schedules.exponential(1.0, decay_rate=0.0), "decay_rate"),
    (lambda: schedules.linear(1.0, 0.0, transition_steps=0), "transition_steps"),
    (lambda: schedules.piecewise_constant(1.0, {10: -0.5}), "scale"),
    (lambda: schedules.warmup(schedules.constant(1.0), 5, 0.0, kind="exponential"),
     "start_value"),
    (lambda: schedules.warmup(schedules.constant(1.0), -1), "warmup_steps"),
    (lambda: schedules.join([schedules.constant(1.0)] * 2, []), "boundaries"),
    (lambda: schedules.schedule_family(["cosine", "nope"], 0, [{}, {}]), "nope"),
    (lambda: schedules.schedule_family(["constant"], 2, [dict(value=1.0)]), "index"),
])
def test_bad_concrete_arguments_raise_value_error(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_bad_traced_step_counts_stay_finite():
  # Under tracing nothing is checked; documented: positive-only steps clamp to 1e-12.
  @jax.jit
  def values(steps):
    return jnp.stack([schedules.cosine(1.0, steps)(5), schedules.onecycle(1.0, steps)(5),
                      schedules.cyclic(0.1, 1.0, steps)(5), schedules.step(1.0, steps)(5),
                      schedules.cosine_restarts(1.0, steps, 2.0)(5)])
  assert np.all(np.isfinite(values(jnp.float32(0.0))))
  assert np.all(np.isfinite(values(jnp.float32(-3.0))))


@pytest.mark.parametrize("module", [catalog, combinators, cyclical, family])
def test_docstring_examples_run(module):
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.failed == 0 and result.attempted > 0


def test_compound_schedules_with_array_arguments_match_scalars_per_member():
  def make(lr, w, b, n):
    return schedules.product(
        schedules.join([schedules.warmup(schedules.cosine(lr, n), w, lr / 100),
                        schedules.constant(lr / 10)], [b]),
        schedules.piecewise_constant(1.0, [(b / 2, 0.5)]))
  args = [jnp.asarray([0.1, 1.0, 0.3]), jnp.asarray([0.0, 5.0, 20.0]),
          jnp.asarray([40.0, 60.0, 90.0]), jnp.asarray([30.0, 50.0, 60.0])]
  counts = jnp.arange(0, 100)
  batched = jax.jit(jax.vmap(make(*args)))(counts)
  vmapped = jax.jit(jax.vmap(lambda *a: jax.vmap(make(*a))(counts)))(*args)
  for m in range(3):
    scalar = jax.vmap(make(*[float(a[m]) for a in args]))(counts)
    np.testing.assert_allclose(batched[:, m], scalar, rtol=1e-6)
    np.testing.assert_allclose(vmapped[m], scalar, rtol=1e-6)


_BOUNDED = {
    # name: (kwargs from a hypothesis draw, lower bound, upper bound)
    "onecycle": (lambda a, n, p: dict(max_value=a, total_steps=n, pct_start=p, anneal="cos",
                                      three_phase=True),
                 lambda a: a / 25.0 / 1e4, lambda a: a),
    "cyclic": (lambda a, n, p: dict(base_value=a * p, max_value=a, step_size_up=n,
                                    step_size_down=n * p + 1.0, mode="exp_range",
                                    gamma=0.99),
               lambda a: a * 0.0, lambda a: a),
    "cosine_restarts": (lambda a, n, p: dict(init_value=a, first_decay_steps=n,
                                             t_mul=1.0 + 2.0 * p, m_mul=p, alpha=p / 10),
                        lambda a: 0.0 * a, lambda a: a),
}


@pytest.mark.parametrize("name", sorted(_BOUNDED))
def test_values_stay_finite_and_bounded_for_random_traced_arguments(name):
  hypothesis = pytest.importorskip("hypothesis")
  st = hypothesis.strategies
  make, lower, upper = _BOUNDED[name]
  counts = jnp.arange(0, 400, 7)

  @jax.jit
  def values(a, n, p):
    return jax.vmap(schedules.SCHEDULES[name](**make(a, n, p)))(counts)

  @hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
  @hypothesis.given(st.floats(1e-4, 10.0), st.integers(2, 300), st.floats(0.05, 0.95))
  def check(a, n, p):
    v = np.asarray(values(jnp.float32(a), jnp.float32(n), jnp.float32(p)))
    assert np.all(np.isfinite(v))
    assert np.all(v >= lower(a) * (1 - 1e-5) - 1e-12)
    assert np.all(v <= upper(a) * (1 + 1e-5))
  check()


# The catalog, entry by entry (optax alias_test style): the schedule built inside
# jax.jit(jax.vmap(...)) with one argument an array over members, against the plain
# per-member computation -- Optax's schedule where Optax has the same one, else a
# published formula, else (cyclic families, checked against torch above) the same
# lrjax factory called with Python scalars outside jit.
def _inverse_time(init, rate, steps):
  return lambda c: init / (1.0 + rate * np.asarray(c, np.float64) / steps)


SCHEDULE_CATALOG = {
    "constant": ((0.1, 0.5, 1.0), lambda v: schedules.constant(v),
                 lambda v: optax.constant_schedule(v)),
    "step": ((3.0, 7.0, 10.0), lambda s: schedules.step(1.0, s, 0.5),
             lambda s: optax.exponential_decay(1.0, s, 0.5, staircase=True)),
    "multistep": ((0.1, 0.3, 0.5), lambda g: schedules.multistep(1.0, (5, 12), g),
                  lambda g: optax.piecewise_constant_schedule(1.0, {5: g, 12: g})),
    "piecewise_constant": ((0.1, 0.5, 2.0),
                           lambda v: schedules.piecewise_constant(v, {4: 0.5, 9: 0.1}),
                           lambda v: optax.piecewise_constant_schedule(v, {4: 0.5, 9: 0.1})),
    "exponential": ((0.5, 0.9, 0.99), lambda r: schedules.exponential(1.0, r, 4),
                    lambda r: optax.exponential_decay(1.0, 4, r)),
    "inverse_time": ((0.1, 0.5, 2.0), lambda r: schedules.inverse_time(1.0, r, 5),
                     lambda r: _inverse_time(1.0, r, 5.0)),  # Keras InverseTimeDecay
    "polynomial": ((0.5, 1.0, 2.0), lambda p: schedules.polynomial(1.0, 0.01, p, 15),
                   lambda p: optax.polynomial_schedule(1.0, 0.01, p, 15)),
    "linear": ((5.0, 10.0, 15.0), lambda n: schedules.linear(1.0, 0.1, n),
               lambda n: optax.linear_schedule(1.0, 0.1, int(n))),
    "cosine": ((0.0, 0.1, 0.5), lambda a: schedules.cosine(1.0, 15, alpha=a),
               lambda a: optax.cosine_decay_schedule(1.0, 15, alpha=a)),
    "cosine_restarts": ((4.0, 5.0, 7.0),
                        lambda n: schedules.cosine_restarts(1.0, n, t_mul=1.0),
                        lambda n: optax.sgdr_schedule(  # equal-length restarts
                            [dict(init_value=1.0, peak_value=1.0, warmup_steps=0,
                                  decay_steps=int(n), end_value=0.0)] * 8)),
    "onecycle": ((0.2, 0.3, 0.5), lambda p: schedules.onecycle(1.0, 20, pct_start=p),
                 lambda p: schedules.onecycle(1.0, 20, pct_start=p)),
    "cyclic": ((2.0, 3.0, 5.0), lambda s: schedules.cyclic(0.1, 1.0, step_size_up=s),
               lambda s: schedules.cyclic(0.1, 1.0, step_size_up=s)),
    "warmup": ((0.0, 3.0, 6.0), lambda w: schedules.warmup(schedules.cosine(1.0, 10), w),
               lambda w: optax.join_schedules(
                   [optax.linear_schedule(0.0, 1.0, int(w)),
                    optax.cosine_decay_schedule(1.0, 10)], [int(w)])),
    "join": ((3.0, 6.0, 9.0),
             lambda b: schedules.join([schedules.constant(0.5), schedules.cosine(1.0, 10)],
                                      [b]),
             lambda b: optax.join_schedules([optax.constant_schedule(0.5),
                                             optax.cosine_decay_schedule(1.0, 10)], [int(b)])),
    "product": ((0.5, 0.8, 0.95),
                lambda r: schedules.product(schedules.cosine(1.0, 15),
                                            schedules.exponential(1.0, r)),
                lambda r: (lambda c: optax.cosine_decay_schedule(1.0, 15)(c)
                           * optax.exponential_decay(1.0, 1, r)(c))),
}


def test_schedule_catalog_table_covers_every_entry():
  assert sorted(SCHEDULE_CATALOG) == sorted(schedules.SCHEDULES)


@pytest.mark.parametrize("name", sorted(SCHEDULE_CATALOG))
def test_catalog_schedule_vmapped_over_hparam_equals_plain_per_member(name):
  values, make, reference = SCHEDULE_CATALOG[name]
  counts = jnp.arange(25, dtype=jnp.int32)
  got = jax.jit(jax.vmap(lambda h: jax.vmap(make(h))(counts)))(
      jnp.asarray(values, jnp.float32))
  for i, h in enumerate(values):
    want = np.array([float(reference(h)(int(c))) for c in counts])
    np.testing.assert_allclose(got[i], want, rtol=2e-5, atol=1e-6, err_msg=f"{name} {h}")


# -- any schedule: functions (step, peak_lr, total_updates, **hparams) -> lr -----------
def step_decay(step, peak_lr, total_updates, gamma=0.5, drops=4):
  """``peak_lr`` times ``gamma`` after each of ``drops`` equal parts of training."""
  return peak_lr * gamma ** jnp.floor(drops * step / total_updates)


def needs_gamma(step, peak_lr, total_updates, gamma):
  return peak_lr * gamma ** step


@pytest.fixture(scope="module")
def digits():
  from lrjax import data
  return data.load("digits")


def _train_members(digits, table, **settings):
  from lrjax import models, train_grid
  from lrjax.engine import TrainSettings
  model = models.get_model("mlp", 10, hidden=(32,))
  result = train_grid(model, digits, table, TrainSettings(epochs=1, eval_every=640,
                                                          **settings), progress=False)
  params = [jax.tree.map(lambda a, i=i: a[i], result.params) for i in range(len(table))]
  return model, result, params


def test_custom_schedule_with_hparam_axis_equals_plain_optax_loop(digits):
  from lrjax import grid
  from plain_training import plain_train
  from tree_helpers import assert_trees_allclose

  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), "gamma": (0.3, 0.7)})
  model, result, params = _train_members(digits, table, optimizer="momentum",
                                         schedule=step_decay)
  examples = result.info["examples_per_member"]
  total = examples // 32
  for row in table.itertuples():
    sched = lambda c, g=row.gamma: step_decay(c, row.lr, total, gamma=g)
    expected = plain_train(model, digits, optax.sgd(sched, momentum=0.9), 32, 0, examples)
    assert_trees_allclose(params[row.member], expected, rtol=1e-4, atol=1e-5)
    last = result.history[result.history.member == row.member].lr_now.iloc[-1]
    np.testing.assert_allclose(last, float(sched(total)), rtol=1e-6)


def test_custom_schedule_composes_with_warmup_and_lr_scaling_like_catalog(digits):
  from lrjax import grid
  from plain_training import plain_train
  from tree_helpers import assert_trees_allclose

  table = grid.make_grid({"lr": (0.05,), "batch_size": (64,), "gamma": (0.5,)})
  model, result, params = _train_members(
      digits, table, optimizer="momentum", schedule=step_decay,
      schedule_kwargs={"warmup_steps": 4}, lr_reference_batch=32, lr_scaling=1.0)
  examples = result.info["examples_per_member"]
  total, peak = examples // 64, 0.1  # the linear rule: 0.05 * 64 / 32
  sched = optax.join_schedules(
      [optax.linear_schedule(0.0, peak, 4),
       lambda c: step_decay(c, peak, total - 4, gamma=0.5)], [4])
  expected = plain_train(model, digits, optax.sgd(sched, momentum=0.9), 64, 0, examples)
  assert_trees_allclose(params[0], expected, rtol=1e-4, atol=1e-5)


def test_custom_schedule_warmup_fraction_equals_warmup_steps_of_that_fraction():
  by_fraction = schedules.make_schedule(step_decay, 0.4, 100, warmup_fraction=0.2)
  by_steps = schedules.make_schedule(step_decay, 0.4, 100, warmup_steps=20)
  counts = jnp.arange(0, 101, 5)
  np.testing.assert_allclose(jax.vmap(by_fraction)(counts), jax.vmap(by_steps)(counts))
  np.testing.assert_allclose(by_steps(10), 0.2, rtol=1e-6)  # half-way up the ramp


def test_custom_schedule_vmapped_over_hparam_equals_plain_per_member():
  counts = jnp.arange(40)
  gammas = (0.2, 0.5, 0.9)
  got = jax.jit(jax.vmap(lambda g: jax.vmap(schedules.make_schedule(
      step_decay, 0.3, 40, gamma=g))(counts)))(jnp.asarray(gammas, jnp.float32))
  for i, g in enumerate(gammas):
    want = [0.3 * g ** (4 * c // 40) for c in range(40)]
    np.testing.assert_allclose(got[i], want, rtol=1e-6)


def test_import_path_schedule_resolves_when_given_in_config():
  from lrjax import cli, experiment
  c = cli.load_config("experiments/lr_batch_aug.py:runlocal",
                      [f"--config.schedule={__name__}:step_decay",
                       "--config.grid.gamma=(0.3,0.7)", "--config.schedule_kwargs.drops=2"])
  run = experiment.resolve(c)
  assert run.schedule.families == (f"{__name__}:step_decay",)
  assert run.schedule.grid_args == ("gamma",)
  sched = schedules.make_schedule(f"{__name__}:step_decay", 1.0, 10, gamma=0.5, drops=2)
  assert float(sched(5)) == 0.5


@pytest.mark.parametrize("settings, match", [
    (dict(schedule=3), "schedule: must be"),
    (dict(schedule="lrjax.no_such_module:f"), "schedule: cannot import module"),
    (dict(schedule="optax:no_such_schedule"), "schedule: module 'optax' has no attribute"),
    (dict(schedule="math:pi"), "schedule: 'math:pi' is a float, not a function"),
    (dict(schedule=lambda step: 0.1), r"schedule: .* \(step, peak_lr, total_updates\)"),
])
def test_bad_custom_schedule_raises_config_error_naming_schedule(settings, match):
  from lrjax.engine import TrainSettings
  with pytest.raises(ConfigError, match=match):
    TrainSettings(**settings)


@pytest.mark.parametrize("settings, axes, match", [
    (dict(schedule=step_decay, schedule_kwargs={"beta": 1.0}), {},
     r"schedule_kwargs: \['beta'\] are not arguments of schedule"),
    (dict(schedule=step_decay), {"beta": (1.0, 2.0)},
     r"grid.beta: not a grid axis .*, nor an argument of optimizer 'momentum' \(momentum\) "
     r"or of schedule '.*step_decay' \(drops, gamma, warmup_fraction, .*\)"),
    (dict(schedule=needs_gamma), {},
     r"schedule_kwargs: \['gamma'\] of schedule .* have no default"),
])
def test_custom_schedule_arguments_raise_config_error_naming_the_field(settings, axes, match):
  from lrjax import grid
  from lrjax.engine import TrainSettings
  from lrjax.engine.run import split_hparams
  table = grid.make_grid({"lr": (0.1,), "batch_size": (32,), **axes})
  with pytest.raises(ConfigError, match=match):
    split_hparams(table, TrainSettings(**settings))
