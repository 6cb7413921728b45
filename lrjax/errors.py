"""The one exception type for bad user input.

The CLI prints a ``ConfigError`` as one paragraph (no traceback) and exits with a
non-zero status. Messages name the offending field and say how to fix it.
``RunNotWritten`` and ``describe`` do the same for failures that are not bad input:
the operating system's (a full disk, too many open files, permissions) and those met
after training, which must not lose the trained state.
"""

import errno


class ConfigError(ValueError):
  """Bad user input: names the field and the fix.

  Example:
    >>> raise ConfigError("grid.lr: must be positive; got -1. Use e.g. (0.01, 0.1).")
    Traceback (most recent call last):
    ...
    lrjax.errors.ConfigError: grid.lr: must be positive; got -1. Use e.g. (0.01, 0.1).
  """


class RunNotWritten(RuntimeError):
  """Training finished, but writing the run directory failed; the trained state is in
  ``<workdir>.partial``, and the message says how to finish the run from there.

  Attributes:
    workdir: the run directory that was to be written.
    partial: ``<workdir>.partial``, holding the final checkpoints and the tables.
    cause: the exception that stopped the writing.

  Example:
    >>> e = RunNotWritten("runs/a", "runs/a.partial", OSError(28, "No space left on device"))
    >>> "--resume" in str(e) and "lrjax report runs/a.partial" in str(e)
    True
  """

  def __init__(self, workdir: str, partial: str, cause: BaseException):
    super().__init__(workdir, partial, cause)
    self.workdir, self.partial, self.cause = workdir, partial, cause

  def __str__(self) -> str:
    return (f"training finished, but writing {self.workdir} failed: {describe(self.cause)} "
            f"Nothing trained is lost: {self.partial} holds the final checkpoints and the "
            f"tables. Fix the cause, then rerun the same command with --resume: it trains "
            f"nothing again and writes the run directory. `lrjax report {self.partial}` "
            f"shows the tables now.")


# What to do about the operating-system failures a run meets (errno -> the fix).
_OS_FIXES = {
    "EMFILE": "too many open files: raise the limit (for example `ulimit -n 65536`) and "
              "rerun",
    "ENFILE": "the system ran out of file handles: close other programs and rerun",
    "ENOSPC": "the disk is full: free space there or pass a --workdir on another disk",
    "EDQUOT": "the disk quota is spent: free space or pass a --workdir elsewhere",
    "EACCES": "permission denied: pass a --workdir you can write, or fix its permissions",
    "EPERM": "operation not permitted: pass a --workdir you can write, or fix its "
             "permissions",
    "EROFS": "the file system is read-only: pass a --workdir on a writable disk",
}


def describe(error: BaseException) -> str:
  """One sentence on ``error``: for an ``OSError`` what failed, on which file, and the fix.

  Example:
    >>> describe(OSError(24, "Too many open files", "/tmp/x"))
    'Too many open files (/tmp/x): too many open files: raise the limit (for example `ulimit -n 65536`) and rerun.'
    >>> describe(ValueError("bad"))
    'ValueError: bad.'
  """
  if isinstance(error, OSError) and error.errno is not None:
    name = errno.errorcode.get(error.errno, "")
    where = f" ({error.filename})" if error.filename else ""
    fix = _OS_FIXES.get(name, "fix the cause and rerun")
    return f"{error.strerror or name}{where}: {fix}."
  return f"{type(error).__name__}: {str(error).rstrip('.')}."
