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


def _number(x) -> str:
  """Member-epochs and seconds as people write them: 3540, 61, 2.5."""
  return f"{x:,.0f}" if abs(x) >= 10 else fmt(x)


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
                 f"{_number(wave['member_epochs'])} member-epochs, "
                 f"{_number(ext.get('train_s', float('nan')))} s of training. {what}. "
                 + (f"Verdicts changed by it: {'; '.join(changed)}." if changed
                    else "No primary verdict changed."))
  if record:
    b = record["budget"]
    waves = record["waves"]
    lines.append(f"Stopped after {waves} wave{'s' if waves != 1 else ''}: "
                 f"{record['stopped']}; {_number(b['spent_member_epochs'])} of "
                 f"{_number(b['member_epochs'])} member-epochs and {_number(b['spent_s'])} s "
                 f"spent.")
    for f in record.get("flips", []):
      lines.append(f"Flipped: {f['question']} at {f['cell']} was {f['was']}, is "
                   f"{f['now']} after wave {f['wave']} (later seeds or LRs moved it).")
    for o in record.get("open", []):
      lines.append(f"Still open: {o['question']} at {o['cell']} ({o['verdict']}): "
                   f"{o['why']}.")
  return lines


def _wave_rows(config: dict) -> list[str]:
  """One table row per extension: what it added and why, its cost, what it changed."""
  extensions = config.get("extensions") or []
  record = config.get("settle") or {}
  rows = []
  for i, ext in enumerate(extensions):
    wave = ext.get("wave") or {}
    nxt = next((e["wave"]["verdicts_before"] for e in extensions[i + 1:] if e.get("wave")),
               record.get("verdicts", []))
    added = "".join(f"<li>{html.escape(a['question'])} at {html.escape(a['cell'])} "
                    f"<em>({html.escape(a['rule'])})</em>: {html.escape(a['why'])} "
                    f"({a['members']})</li>" for a in wave.get("added", []))
    if wave.get("budget_cut"):
      added += "<li>more was proposed than the budget affords: left out</li>"
    changed = _changes(wave["verdicts_before"], nxt) if wave else []
    changes = ("<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in changed) + "</ul>"
               if changed else "none")
    epochs = wave.get("member_epochs")
    rows.append(f"<tr><td>{wave.get('number', 'extend')}</td><td>{ext['added']}</td>"
                f"<td>{'' if epochs is None else _number(epochs)}</td>"
                f"<td>{_number(ext.get('train_s', float('nan')))}</td>"
                f"<td class='left'><ul>{added or '<li>by hand (lrjax extend)</li>'}</ul></td>"
                f"<td class='left'>{changes}</td></tr>")
  return rows


def settle_html(config: dict) -> list[str]:
  """The "How this was settled" section (nothing for a run never extended): a table of
  the waves, then why it stopped, the flips and what is still open.

  Example:
    >>> settle_html({})
    []
  """
  rows = _wave_rows(config)
  if not rows:
    return []
  record = config.get("settle")
  parts = [f"<section id='settled'><h2>{'How this was settled' if record else 'Extensions'}"
           "</h2>",
           "<table class='waves'><tr><th>wave</th><th>members</th><th>member-epochs</th>"
           "<th>training s</th><th>added (rule): why (members)</th>"
           "<th>primary verdicts it changed</th></tr>", *rows, "</table>"]
  if record:
    lines = settle_lines({"settle": record})
    parts.append(f"<p>{html.escape(lines[0])}</p>")
    listed = lines[1:]
    if listed:
      parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in listed) + "</ul>")
  parts.append("</section>")
  return parts
