"""The report's "How this was settled" section, from a run's ``config.json`` records.

``lrjax settle`` records each wave in the extension it made
(``config["extensions"][i]["wave"]``: what it added and why, its member-epochs and
the primary verdicts before it; the extension adds its training seconds) and the
outcome in ``config["settle"]`` (why it stopped, the flips, what is still open and
why). Extensions made by hand (``lrjax extend``) are listed too.
"""

from __future__ import annotations

import html

from lrjax.analysis.stats import fmt


def _changes(before: list[dict], after: list[dict]) -> list[str]:
  """The decisions whose verdict changed between two looks, as text."""
  old = {(v["question"], v["cell"]): v["verdict"] for v in before}
  out = []
  for v in after:
    was = old.get((v["question"], v["cell"]))
    if was is not None and was != v["verdict"]:
      out.append(f"{v['question']} at {v['cell']}: {was} → {v['verdict']}")
  return out


def settle_lines(config: dict) -> list[str]:
  """The section as plain sentences (the HTML wraps each in a paragraph or list item).

  Example:
    >>> cfg = {"extensions": [{"added": 2, "train_s": 3.0, "wave": {
    ...     "number": 1, "member_epochs": 2.0, "verdicts_before": [
    ...         {"question": "best_lr", "cell": "aug 0", "verdict": "at an edge"}],
    ...     "added": [{"rule": "edge", "question": "best_lr", "cell": "aug 0",
    ...                "why": "add 1", "members": 2}]}}],
    ...     "settle": {"waves": 1, "stopped": "every primary question settled", "open": [],
    ...                "flips": [], "budget": {"spent_member_epochs": 2.0,
    ...                "member_epochs": 8.0, "spent_s": 3.5}, "verdicts": [
    ...         {"question": "best_lr", "cell": "aug 0", "verdict": "inside the grid"}]}}
    >>> print("\\n".join(settle_lines(cfg)))
    Wave 1: 2 members, 2 member-epochs, 3 s of training. best_lr at aug 0 (edge): add 1 (2 members). Verdicts changed by it: best_lr at aug 0: at an edge → inside the grid.
    Stopped after 1 wave: every primary question settled; 2 of 8 member-epochs and 3.5 s spent.
  """
  extensions = config.get("extensions") or []
  record = config.get("settle") or {}
  lines = []
  for i, ext in enumerate(extensions):
    wave = ext.get("wave")
    if not wave:
      lines.append(f"Extension {i + 1} (lrjax extend): {ext['added']} members, "
                   f"{fmt(ext.get('train_s', float('nan')))} s of training.")
      continue
    nxt = next((e["wave"]["verdicts_before"] for e in extensions[i + 1:] if e.get("wave")),
               record.get("verdicts", []))
    what = "; ".join(f"{a['question']} at {a['cell']} ({a['rule']}): {a['why']} "
                     f"({a['members']} members)" for a in wave["added"])
    changed = _changes(wave["verdicts_before"], nxt)
    lines.append(f"Wave {wave['number']}: {ext['added']} members, "
                 f"{fmt(wave['member_epochs'])} member-epochs, "
                 f"{fmt(ext.get('train_s', float('nan')))} s of training. {what}. "
                 + (f"Verdicts changed by it: {'; '.join(changed)}." if changed
                    else "No primary verdict changed."))
  if record:
    b = record["budget"]
    waves = record["waves"]
    lines.append(f"Stopped after {waves} wave{'s' if waves != 1 else ''}: "
                 f"{record['stopped']}; {fmt(b['spent_member_epochs'])} of "
                 f"{fmt(b['member_epochs'])} member-epochs and {fmt(b['spent_s'])} s spent.")
    for f in record.get("flips", []):
      lines.append(f"Flipped: {f['question']} at {f['cell']} was {f['was']}, is "
                   f"{f['now']} after wave {f['wave']} (later seeds or LRs moved it).")
    for o in record.get("open", []):
      lines.append(f"Still open: {o['question']} at {o['cell']} ({o['verdict']}): "
                   f"{o['why']}.")
  return lines


def settle_html(config: dict) -> list[str]:
  """The "How this was settled" section (nothing for a run never extended).

  Example:
    >>> settle_html({})
    []
  """
  lines = settle_lines(config)
  if not lines:
    return []
  title = "How this was settled" if config.get("settle") else "Extensions"
  return [f"<section id='settled'><h2>{title}</h2>",
          *[f"<p>{html.escape(line)}</p>" for line in lines], "</section>"]
