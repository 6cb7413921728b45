"""Import paths for user functions in configs."""
import os
import sys

import pytest

from lrjax import callables
from lrjax.errors import ConfigError


def test_import_callable_finds_module_in_current_directory_when_not_on_path(tmp_path,
                                                                            monkeypatch):
  (tmp_path / "lrjax_test_user_opt.py").write_text(
      "import optax\n"
      "def sgdw(learning_rate, weight_decay=1e-4):\n"
      "  return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate))\n")
  monkeypatch.chdir(tmp_path)
  # As under a console script: neither '' nor the directory is on the path.
  monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path),
                                                                     os.getcwd())])
  fn = callables.import_callable("optimizer", "lrjax_test_user_opt:sgdw")
  assert fn.__name__ == "sgdw"
  assert str(tmp_path) == sys.path[-1]


def test_import_callable_missing_module_names_field_and_fix():
  with pytest.raises(ConfigError, match="optimizer: cannot import module 'no_such_mod_zz'.*"
                                        "run from the directory holding it"):
    callables.import_callable("optimizer", "no_such_mod_zz:f")
