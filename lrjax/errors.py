"""The one exception type for bad user input.

The CLI prints a ``ConfigError`` as one paragraph (no traceback) and exits with a
non-zero status. Messages name the offending field and say how to fix it.
"""


class ConfigError(ValueError):
  """Bad user input: names the field and the fix.

  Example:
    >>> raise ConfigError("grid.lr: must be positive; got -1. Use e.g. (0.01, 0.1).")
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: grid.lr: must be positive; got -1. Use e.g. (0.01, 0.1).
  """
