"""The report of a run whose analysis failed: its tables are whole, the page says what failed.

A run's tables (``members.parquet``, ``history.parquet``) are the trained result; the
analysis is drawn from them and can be drawn again (``lrjax report DIR``). So when the
analysis raises, the run directory is still written: ``summary.json`` records the
failure (``analysis_failed``: the error, the analysis step it came from, the fix) with
the members' status counts, and ``report.html`` says the same above the members table.
"""

from __future__ import annotations

import html
import json
import os
import traceback

import pandas as pd

from lrjax import outcomes

MEMBER_ROWS_SHOWN = 200  # the page lists the first rows; the tables hold all


def failed_step(error: BaseException) -> str:
  """The innermost ``lrjax.analysis`` function the error came from ("module.function").

  Example:
    >>> from lrjax.analysis.stats import check_metric
    >>> try:
    ...   check_metric(pd.DataFrame({"lr": [0.1]}), "no_such_metric")
    ... except ValueError as e:
    ...   failed_step(e)
    'lrjax.analysis.stats.check_metric'
  """
  step = "the analysis"
  tb = error.__traceback__
  while tb is not None:
    frame = tb.tb_frame
    module = frame.f_globals.get("__name__", "")
    if module.startswith("lrjax.analysis") and module != __name__:
      step = f"{module}.{frame.f_code.co_name}"
    tb = tb.tb_next
  return step


def write_failure_report(run_dir: str, error: BaseException) -> list[str]:
  """Writes ``summary.json`` and ``report.html`` of a run whose analysis raised ``error``.

  Returns:
    The two paths written.

  Example:
    >>> import tempfile
    >>> from lrjax.analysis.synthetic import save_run, synthetic_run
    >>> d = save_run(synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,)),
    ...              tempfile.mkdtemp())
    >>> _ = write_failure_report(d, ValueError("no interval"))
    >>> json.load(open(os.path.join(d, "summary.json")))["analysis_failed"]["error"]
    'ValueError: no interval'
  """
  members = pd.read_parquet(os.path.join(run_dir, "members.parquet"))
  failure = {
      "error": f"{type(error).__name__}: {error}",
      "step": failed_step(error),
      "fix": f"the tables are complete; once the cause is fixed, `lrjax report {run_dir}` "
             f"draws the analysis again",
      "traceback": "".join(traceback.format_exception(error)),
  }
  counts = (outcomes.status_counts(members["status"]) if "status" in members else {})
  summary = {"analysis_failed": failure, "n_members": len(members), "status_counts": counts,
             "headline": {"sentences": [
                 f"The analysis failed in {failure['step']} ({failure['error']}); the "
                 f"tables are complete: {failure['fix']}."]}}
  summary_path = os.path.join(run_dir, "summary.json")
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2, default=str)
  report_path = os.path.join(run_dir, "report.html")
  with open(report_path, "w") as f:
    f.write(_page(members, failure, counts))
  return [summary_path, report_path]


def _page(members: pd.DataFrame, failure: dict, counts: dict) -> str:
  esc = html.escape
  shown = members.head(MEMBER_ROWS_SHOWN)
  more = (f"<p>The first {MEMBER_ROWS_SHOWN} of {len(members)} members; "
          f"<code>members.parquet</code> holds all.</p>" if len(members) > len(shown) else "")
  counts_text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no status column"
  return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>lrjax run: analysis failed</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto}}
.failed{{border-left:6px solid #c0392b;padding:0.5em 1em;background:#fdecea}}
table{{border-collapse:collapse;font-size:13px}}td,th{{padding:2px 6px;border:1px solid #ddd}}
</style></head><body>
<h1>Analysis failed</h1>
<div class="failed"><p><b>{esc(failure['step'])}</b> raised
<code>{esc(failure['error'])}</code>.</p>
<p>Training finished and the tables are complete: {esc(failure['fix'])}.</p></div>
<details><summary>Traceback</summary><pre>{esc(failure['traceback'])}</pre></details>
<h2>Members</h2><p>{len(members)} members: {esc(counts_text)}.</p>{more}
<div style="max-width:100%;overflow-x:auto">
{shown.to_html(index=False, float_format=lambda v: f"{v:.4g}")}</div>
</body></html>
"""
