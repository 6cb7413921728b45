"""Loading the scripts under benchmarks/ as modules, for the tests that run them small."""
import importlib.util
import pathlib

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name):
  """Imports ``benchmarks/<name>.py`` (not a package) as a module named ``name``."""
  spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
