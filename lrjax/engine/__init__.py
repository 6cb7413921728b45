"""The engine: a resolved ``Run`` -> one compiled, vmapped program -> result tables.

Modules, in the order a run meets them: ``settings`` (``TrainSettings``), ``plan``
(sizes and blocks), ``run`` (``build_run``: the one validation), ``devices``
(members over devices), ``state`` (member state, constants, segment metrics),
``forward`` and ``noise`` (one member's model calls and noise-scale sums),
``program`` (the compiled init/segment/evaluate), ``chunk`` (placement, key
streams, a chunk's constants and initial state), ``memory`` (chunks sized to fit
memory), ``autotune`` (the CPU width probe), ``checkpoint`` (resume),
``progress`` (what a run shows), ``trainer`` (``train``/``train_grid``) and
``tables`` (members/history DataFrames).
"""

from lrjax.engine.devices import use_cpu_cores
from lrjax.engine.plan import Block, Plan, plan
from lrjax.engine.program import Program
from lrjax.engine.run import Run, build_run
from lrjax.engine.settings import GridResult, TrainSettings
from lrjax.engine.trainer import train, train_grid

__all__ = ["Block", "GridResult", "Plan", "Program", "Run", "TrainSettings", "build_run",
           "plan", "train", "train_grid", "use_cpu_cores"]
