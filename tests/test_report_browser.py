"""report.html in a real headless Chromium: it renders offline, charts draw, no script errors.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
``selenium``. Without them the tests skip, unless ``LRJAX_REQUIRE_BROWSER=1`` (CI),
where they fail.
"""
import os
import shutil
import time

import numpy as np

import pytest

from lrjax.analysis import report, synthetic

REQUIRE = os.environ.get("LRJAX_REQUIRE_BROWSER") == "1"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome"), "/usr/bin/chromium") if p
                 and os.path.exists(p)), None)
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)


def _unavailable() -> str | None:
  try:
    import selenium  # noqa: F401
  except ImportError:
    return "selenium is not installed (pip install -e '.[test]')"
  if CHROMIUM is None or DRIVER is None:
    return ("no chromium/chromedriver on PATH (apt-get install chromium "
            "chromium-driver)")
  return None


@pytest.fixture(scope="module")
def browser():
  reason = _unavailable()
  if reason:
    if REQUIRE:
      pytest.fail(f"LRJAX_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--allow-file-access-from-files"):
    opts.add_argument(arg)
  opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()


def _open(driver, path):
  from selenium.webdriver.support.ui import WebDriverWait
  driver.get_log("browser")  # drop anything from a previous page
  driver.get("file://" + os.path.abspath(path))
  WebDriverWait(driver, 60).until(lambda d: d.execute_script(
      "const c = document.querySelectorAll('.vl-chart');"
      "return c.length > 0 && Array.from(c).every(e => e.dataset.rendered);"))


def _charts(driver):
  return driver.execute_script("""
    return Array.from(document.querySelectorAll('.vl-chart')).map(el => {
      const c = el.querySelector('canvas, svg');
      const r = c ? c.getBoundingClientRect() : {width: 0, height: 0};
      return {id: el.id, rendered: el.dataset.rendered, kind: c ? c.tagName : null,
              width: r.width, height: r.height,
              painted: c && c.tagName === 'CANVAS' ?
                  c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                   .some((v, i) => i % 4 === 3 && v > 0) : !!c};
    });""")


def _errors(driver):
  return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
  run = synthetic.synthetic_run(lrs=tuple(0.01 * 2.0 ** k for k in range(-2, 5)),
                                batch_sizes=(32, 64, 128), augs=(0.0, 0.5), seeds=(0, 1),
                                noise=0.003, status_columns=True, fail_below=0.3)
  run_dir = synthetic.save_run(run, str(tmp_path_factory.mktemp("run")))
  report.write_report(run_dir, n_boot=50)
  return os.path.join(run_dir, "report.html"), len(run.members)


def test_report_renders_interactive_charts_without_errors(browser, report_path):
  path, n_members = report_path
  _open(browser, path)
  assert browser.title.startswith("lrjax report:")
  charts = {c["id"]: c for c in _charts(browser)}
  assert set(charts) == {"vl-heatmap", "vl-curves"}, charts
  for c in charts.values():
    assert c["rendered"] == "1", c
    assert c["kind"] == "CANVAS" and c["width"] > 100 and c["height"] > 100, c
    assert c["painted"], c
  # The static figures are still there and decoded.
  assert browser.execute_script(
      "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
      " && document.images.length > 0")
  assert browser.execute_script(
      "return document.querySelectorAll('#members-table tbody tr').length") == n_members
  assert _errors(browser) == []
  # Everything is inline: no request may leave the file.
  assert browser.execute_script(
      "return performance.getEntriesByType('resource').filter(r => "
      "!r.name.startsWith('data:') && !r.name.startsWith('file:')).map(r => r.name)") == []


def _hover_tooltip(driver, chart_id, needle, rows=9, cols=12):
  """Moves the mouse over the chart, row by row, until vega's tooltip shows ``needle``;
  its text (curves spread over a fitted y range need a finer scan than heatmap cells)."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  canvas = driver.find_element(By.CSS_SELECTOR, f"#{chart_id} canvas")
  w, h = canvas.size["width"], canvas.size["height"]
  driver.execute_script("arguments[0].scrollIntoView()", canvas)
  for fy in np.linspace(0.1, 0.9, rows):
    for fx in np.linspace(0.08, 0.92, cols):
      ActionChains(driver).move_to_element_with_offset(
          canvas, int((fx - 0.5) * w), int((fy - 0.5) * h)).perform()
      time.sleep(0.03)
      text = driver.execute_script(
          "const t = document.getElementById('vg-tooltip-element');"
          "return t && t.classList.contains('visible') ? t.innerText : '';")
      if needle in text:
        return text
  return ""


def test_hover_shows_cell_stats_and_member_hyperparameters(browser, report_path):
  path, _ = report_path
  _open(browser, path)
  text = _hover_tooltip(browser, "vl-heatmap", "trained")
  for field in ("lr", "batch_size", "final_val_loss mean", "std over seeds", "trained",
                "failed", "diverged"):
    assert field in text, text
  text = _hover_tooltip(browser, "vl-curves", "examples_seen", rows=40, cols=30)
  for field in ("member", "lr", "batch_size", "aug", "seed", "status", "val_loss"):
    assert field in text, text
  assert _errors(browser) == []


def test_members_table_filters_and_sorts(browser, report_path):
  from selenium.webdriver.common.by import By
  path, n_members = report_path
  _open(browser, path)
  visible = "return Array.from(document.querySelectorAll('#members-table tbody tr'))" \
            ".filter(r => r.style.display !== 'none').length"
  box = browser.find_element(By.ID, "members-table-filter")
  box.send_keys("failed")
  n_failed = browser.execute_script(visible)
  assert 0 < n_failed < n_members
  box.clear()
  box.send_keys("x")  # the input event on clear is not sent; type and erase
  box.send_keys("\b")
  assert browser.execute_script(visible) == n_members
  headers = browser.find_elements(By.CSS_SELECTOR, "#members-table thead th")
  names = [h.text.split()[0] for h in headers]
  col = names.index("final_val_loss")
  column = ("return Array.from(document.querySelectorAll('#members-table tbody tr'))"
            f".map(r => r.cells[{col}].dataset.v).filter(v => v !== '').map(Number)")
  headers[col].click()
  up = browser.execute_script(column)
  assert up == sorted(up) and len(up) > 2
  headers[col].click()
  down = browser.execute_script(column)
  assert down == sorted(down, reverse=True)
  assert _errors(browser) == []


def test_schedule_report_renders_and_leads_with_schedule(browser, tmp_path):
  run = synthetic.synthetic_run(lrs=(0.005, 0.01, 0.02, 0.04), batch_sizes=(32,),
                                augs=(0.0,), seeds=(0, 1),
                                extra_axes={"schedule": ("cosine", "constant")})
  run_dir = synthetic.save_run(run, str(tmp_path))
  report.write_report(run_dir, n_boot=0)
  _open(browser, os.path.join(run_dir, "report.html"))
  h2 = [e.text for e in browser.find_elements("css selector", "h2")]
  assert h2[:4] == ["Headline", "Findings", "Schedule comparison", "Interactive view"], h2
  assert all(c["rendered"] == "1" and c["width"] > 100 for c in _charts(browser))
  assert _errors(browser) == []


def test_report_fits_1400_px_and_opens_with_the_headline(browser, report_path):
  path, _ = report_path
  _open(browser, path)
  width = browser.execute_script("return window.innerWidth")
  assert 1300 <= width <= 1400, width  # the 1400 px window, less any scrollbar
  overflow = browser.execute_script(
      "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
  assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 1400 px"
  first = browser.execute_script(
      "const s = document.querySelector('body > section, body > div');"
      "return s ? s.id : null")
  assert first == "headline", first
  assert _errors(browser) == []


def test_wide_grid_report_scrolls_its_charts_not_the_page(browser, tmp_path):
  # 48 LRs x 4 strengths: the interactive heatmap is wider than the window.
  run = synthetic.synthetic_run(lrs=tuple(np.geomspace(1e-3, 1.0, 48)), batch_sizes=(32, 64),
                                augs=(0.0, 0.5, 1.0, 1.5), seeds=(0,), status_columns=True)
  run_dir = synthetic.save_run(run, str(tmp_path))
  report.write_report(run_dir, n_boot=0)
  _open(browser, os.path.join(run_dir, "report.html"))
  chart = browser.execute_script(
      "const e = document.getElementById('vl-heatmap'); return [e.scrollWidth, e.clientWidth]")
  assert chart[0] > chart[1], chart  # wider than its box: it scrolls there
  overflow = browser.execute_script(
      "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
  assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 1400 px"
