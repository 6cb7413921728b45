"""Tests for lrjax.analysis.report: the run report regenerates figures, summary and HTML."""
import json
import os
import re
import time

import pytest

from lrjax.analysis import report, synthetic
from lrjax.errors import ConfigError

LRS = tuple(0.01 * 2.0 ** k for k in range(-2, 4))


def test_write_report_writes_all_files(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0),
                                seeds=(0,))
  run_dir = synthetic.save_run(run, str(tmp_path))
  written = report.write_report(run_dir, n_boot=100)
  names = [os.path.basename(p) for p in written]
  figures = [*report.HEATMAP_METRICS, *report.CURVE_METRICS, report.SCALING_FIGURE,
             report.STEPS_FIGURE]
  assert names == figures + ["summary.json", "report.html"]
  for p in written:
    assert os.path.getsize(p) > 500, p
  html = (tmp_path / "report.html").read_text()
  for name in figures:
    assert f'href="{name}"' in html and f'alt="{name}"' in html
  assert html.count("data:image/png;base64,") == len(figures)
  for heading in ("Findings", "Best LR", "LR-batch scaling", "Max stable LR", "Config"):
    assert heading in html
  summary = json.loads((tmp_path / "summary.json").read_text())
  # Two batch sizes and one seed: the old report called this slope "linear"; it is not
  # settled, and the findings say why.
  assert [r["verdict"] for r in summary["scaling"]] == ["not settled", "not settled"]
  assert "point estimates only; there are no intervals" in html


def test_write_report_findings_before_first_figure(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64, 128), seeds=(0, 1, 2),
                                noise=0.003)
  report.write_report(synthetic.save_run(run, str(tmp_path)), n_boot=100)
  html = (tmp_path / "report.html").read_text()
  start = html.index("<h2>Findings</h2>")
  first_img = html.index("<img")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert start < first_img
  for sentence in summary["findings"]:
    assert html.index(sentence.split(":")[0].replace("&", "&amp;")) < first_img
  assert html.index("<h2>Tables</h2>") > html.rindex("<img")


def test_write_report_two_batch_sizes_not_settled_in_summary(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0,),
                                seeds=(0, 1, 2), noise=0.003)
  report.write_report(synthetic.save_run(run, str(tmp_path)), n_boot=200)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["scaling"][0]["verdict"] == "not settled"
  assert any("not settled" in f for f in summary["findings"]
             if f.startswith("Best LR vs batch size"))


def test_write_report_failed_member_counted_and_drawn(tmp_path):
  run = synthetic.synthetic_run(lrs=(0.0025, 0.01, 0.04), batch_sizes=(32, 64),
                                augs=(0.0,), seeds=(0, 1), fail_below=0.5,
                                status_columns=True)
  assert (run.members.loc[run.members["lr"] == 0.0025, "final_val_acc"] == 0.1).all()
  # Written without the engine's status column: derived from the train losses and
  # the dataset sizes in config.json.
  members = run.members.drop(columns=["status"])
  report.write_report(synthetic.save_run(run._replace(members=members), str(tmp_path)),
                      n_boot=50)
  summary = json.loads((tmp_path / "summary.json").read_text())
  # LR 0.0025 is below half the optimum at both batch sizes (0.01, 0.02): 2 x 2 seeds.
  assert summary["status_counts"]["failed"] == 4 and "chance" in summary["status_source"]
  # The findings lead with the headline; the member status is the first note.
  assert summary["findings"][0] == summary["headline"]["sentences"][0]
  assert summary["findings_sections"]["notes"][0].startswith(
      "Of 12 members, 8 trained, 0 slow (learned, far from converged), 4 failed and 0 "
      "diverged (failed at chance")
  html = (tmp_path / "report.html").read_text()
  assert "failed" in html


def test_write_report_all_diverged(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS[:2], batch_sizes=(32,), augs=(0.0,), seeds=(0,),
                                diverge_above=1e-3)
  written = report.write_report(synthetic.save_run(run, str(tmp_path)), n_boot=50)
  html = (tmp_path / "report.html").read_text()
  assert "none (all diverged)" in html and "every member diverged" in html
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["best_member"] is None
  assert [os.path.basename(p) for p in written] == [
      *report.HEATMAP_METRICS, *report.CURVE_METRICS, report.SCALING_FIGURE,
      "summary.json", "report.html"]


def test_write_report_loss_metric(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0,), seeds=(0,))
  report.write_report(synthetic.save_run(run, str(tmp_path)), metric="final_val_acc",
                      n_boot=0)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["metric"] == "final_val_acc"
  assert [r["best_lr"] for r in summary["best_lr"]] == pytest.approx([0.01, 0.02])
  report.write_report(str(tmp_path), metric="final_val_loss", n_boot=0)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["metric"] == "final_val_loss"
  assert [r["best_lr"] for r in summary["best_lr"]] == pytest.approx([0.01, 0.02])


def test_write_report_missing_history_raises(tmp_path):
  run = synthetic.synthetic_run(lrs=LRS[:2], batch_sizes=(32,), augs=(0.0,), seeds=(0,))
  synthetic.save_run(run, str(tmp_path))
  os.remove(tmp_path / "history.parquet")
  with pytest.raises(ConfigError, match="history.parquet"):
    report.write_report(str(tmp_path))


def test_report_draws_extra_axis_figure_when_grid_has_schedule_axis(tmp_path):
  run = synthetic.synthetic_run(lrs=(0.01, 0.1), batch_sizes=(32,), seeds=(0,),
                                extra_axes={"schedule": ("cosine", "constant")})
  run_dir = synthetic.save_run(run, str(tmp_path))
  written = [os.path.basename(p) for p in report.write_report(run_dir, n_boot=0)]
  assert "by_schedule_final_val_loss.png" in written
  assert "by_schedule_final_val_loss.png" in (tmp_path / "report.html").read_text()


def test_write_report_fast_on_120_members_3_seeds(tmp_path):
  run = synthetic.synthetic_run(lrs=tuple(0.01 * 2.0 ** k for k in range(-3, 7)),
                                batch_sizes=(32, 64, 128, 256), augs=(0.0,),
                                seeds=(0, 1, 2), noise=0.003, n_evals=20,
                                status_columns=True, noise_scale=40.0)
  assert len(run.members) == 120
  run_dir = synthetic.save_run(run, str(tmp_path))
  start = time.perf_counter()
  written = report.write_report(run_dir)  # default n_boot=1000
  assert time.perf_counter() - start < 10.0
  assert {report.STEPS_FIGURE, report.NOISE_FIGURE} <= {os.path.basename(p) for p in written}


def _outside_scripts(html):
  """The page without the bodies of its <script> tags (the inlined JS bundle)."""
  import re
  return re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", html, flags=re.S)


def _sections(html):
  import re
  return re.findall(r"<h2>(.*?)</h2>", _outside_scripts(html))


def test_report_interactive_view_is_self_contained(tmp_path):
  import re
  run = synthetic.synthetic_run(lrs=LRS, batch_sizes=(32, 64), augs=(0.0, 1.0),
                                seeds=(0, 1), status_columns=True)
  report.write_report(synthetic.save_run(run, str(tmp_path)), n_boot=0)
  html = (tmp_path / "report.html").read_text()
  assert _sections(html)[:4] == ["Headline", "Findings", "Interactive view", "Figures"]
  # Everything inline: no script, stylesheet or image is fetched from anywhere.
  page = _outside_scripts(html)
  assert page.count("<script") >= 4 and not re.search(r"<script[^>]*\bsrc=", page)
  assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
  assert "window.vegaEmbed=" in html  # the inlined vega-embed bundle
  specs = re.findall(r"<script type='application/json' class='vl-spec' "
                     r"data-target='([^']+)'>(.*?)</script>", html, re.S)
  assert [s[0] for s in specs] == ["vl-heatmap", "vl-curves"]
  heat, curves = (json.loads(s[1]) for s in specs)
  cells = heat["datasets"]["cells"]
  assert len(cells) == len(LRS) * 2 * 2  # lr x batch x aug, mean over the 2 seeds
  assert {"mean", "std", "trained", "failed", "diverged", "seeds"} <= set(cells[0])
  assert all(c["seeds"] == 2 for c in cells)
  points = curves["datasets"]["curves"]
  assert {"member", "lr", "batch_size", "aug", "seed", "status", "val_loss"} <= set(points[0])
  # The members table: one row per member, with its hyperparameters and status.
  table = html[html.index("id='members-table'"):]
  table = table[:table.index("</table>")]
  assert table.count("<tr>") == len(run.members) + 1
  assert "<th data-col='1' title='click to sort'>lr</th>" in table


def test_report_leads_with_schedule_and_title_says_what_varied(tmp_path):
  run = synthetic.synthetic_run(lrs=(0.01, 0.02, 0.04), batch_sizes=(32,), augs=(0.0,),
                                seeds=(0,), extra_axes={"schedule": ("cosine", "constant")})
  run_dir = synthetic.save_run(run, str(tmp_path))
  written = [os.path.basename(p) for p in report.write_report(run_dir, n_boot=0)]
  html = (tmp_path / "report.html").read_text()
  assert "<title>lrjax report: synthetic / none / sgd / schedule × lr</title>" in html
  assert _sections(html)[:4] == ["Headline", "Findings", "Schedule comparison",
                                "Interactive view"]
  assert html.index("by_schedule_final_val_loss.png") < html.index("<h2>Figures</h2>")
  # One batch size: the scaling figure is still written, but no empty section shows it.
  assert report.SCALING_FIGURE in written
  assert report.SCALING_FIGURE not in html and "LR-batch scaling" not in html


def test_report_title_with_optimizer_axis(tmp_path):
  run = synthetic.synthetic_run(lrs=(0.01, 0.02), batch_sizes=(32, 64), augs=(0.0,),
                                seeds=(0,), extra_axes={"optimizer": ("sgd", "adam")})
  report.write_report(synthetic.save_run(run, str(tmp_path)), n_boot=0)
  html = (tmp_path / "report.html").read_text()
  assert ("<title>lrjax report: synthetic / none / optimizer × lr × batch_size</title>"
          in html)
  assert _sections(html)[:4] == ["Headline", "Findings", "Optimizer comparison",
                                "Interactive view"]
  assert "LR-batch scaling" in html


@pytest.fixture(scope="module")
def schedules_run(tmp_path_factory):
  """experiments/schedules.py:runlocal, trained (12 members, a few seconds after compiling)."""
  import importlib.util
  from lrjax import experiment
  path = os.path.join(os.path.dirname(__file__), "..", "experiments", "schedules.py")
  spec = importlib.util.spec_from_file_location("schedules_experiment", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  run_dir = str(tmp_path_factory.mktemp("schedules") / "run")
  experiment.train_and_evaluate(module.get_config("runlocal"), run_dir, progress=False,
                                writers=())
  return run_dir


def test_schedules_runlocal_comparisons_in_summary_and_the_same_numbers_in_report(
    schedules_run):
  with open(os.path.join(schedules_run, "config.json")) as f:
    assert json.load(f)["analysis"]["questions"] == ["arms:schedule"]
  with open(os.path.join(schedules_run, "summary.json")) as f:
    summary = json.load(f)
  rows = summary["comparisons"]
  arms = ["cosine", "onecycle", "cyclic", "exponential", "plateau"]
  assert [r["arm"] for r in rows if r["metric"] == "final_val_loss"] == arms
  assert {r["metric"] for r in rows} == {"final_val_loss", "best_val_loss"}
  assert all(r["axis"] == "schedule" and r["reference"] == "constant" and r["n"] == 1
             and r["verdict"] == "not settled" for r in rows)  # one seed
  html = (lambda p: open(p).read())(os.path.join(schedules_run, "report.html"))
  section = html[html.index("<section id='by-schedule'>"):]
  section = section[:section.index("</section>")]
  for r in rows:
    for col in ("mean", "arm_lr", "reference_lr", "arm_mean"):
      assert f"{r[col]:.4g}" in section, (r["arm"], col)
    assert r["text"] in section
  assert _sections(html)[:3] == ["Headline", "Findings", "Schedule comparison"]


def test_schedules_runlocal_headline_and_primary_family(schedules_run):
  with open(os.path.join(schedules_run, "summary.json")) as f:
    summary = json.load(f)
  head = summary["headline"]
  assert head["family"] == {"questions": ["arms:schedule"], "size": 5, "looks": 1,
                            "level": pytest.approx(0.99), "method": "Holm"}
  assert head["best"]["setting"]["schedule"] in (
      "constant", "cosine", "onecycle", "cyclic", "exponential", "plateau")
  assert head["sentences"][0].startswith("Best configuration (final_val_loss")
  assert "test_acc" in head["sentences"][0]
  assert head["sentences"][1].startswith("schedule against constant")
  assert "at least 3 seeds would settle it" in head["sentences"][1]
  html = open(os.path.join(schedules_run, "report.html")).read()
  assert html.index("<h2>Headline</h2>") < html.index("<h2>Findings</h2>")
  import html as html_lib
  start = html.index("<section id='headline'>")
  first = html[start:html.index("</section>", start)]
  assert [html_lib.unescape(p) for p in re.findall(r"<p>(.*?)</p>", first)] == head[
      "sentences"]
