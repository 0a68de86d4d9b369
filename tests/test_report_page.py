"""The report a researcher reads: the answer first (the action, then labelled evidence, every number in
analysis.json), the recommended configuration first in the table and marked in every figure that shows
configurations (checked on the figures' data, not pixels), report.html in a real headless browser, and the report
refreshed while the study runs."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from moe_ablate.analysis import plots
from moe_ablate.cli import main
from moe_ablate.studies.engine import outputs

from .helpers import write_study


def numbers_in(obj, out=None):
    out = [] if out is None else out
    if isinstance(obj, dict):
        for v in obj.values():
            numbers_in(v, out)
    elif isinstance(obj, list):
        for v in obj:
            numbers_in(v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(float(obj))
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory, cache_dir):
    """A 4-configuration study with confirmation, its figures' data captured as they are drawn."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = write_study(tmp, cache_dir, steps=6, lrs="[0.01, 0.05]", confirm=2)
    drawn = {}
    original = plots.save_figure

    def capture(fig, path):
        drawn[path.name] = fig
        out = original(fig, path)
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(plots, "save_figure", capture)
    try:
        assert main(["run", "--config", str(cfg), "--output-dir", str(tmp), "--name", "s", "--no-progress"]) == 0
    finally:
        mp.undo()
    folder = tmp / "s"
    return folder, json.loads((folder / "analysis.json").read_text()), drawn


def test_the_answer_comes_first_names_the_action_and_its_numbers_are_in_analysis_json(study):
    folder, a, _ = study
    md = (folder / "report.md").read_text()
    first = md.split("## Answer\n\n", 1)[1].split("\n\n", 1)[0]
    assert len(first) <= 600 and first.startswith(("Use ", "Best so far: "))
    assert "95% CI" in first or "one run" in first
    stored = numbers_in(a)
    for token in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?", first):
        if token in ("95", "2"):  # "95% CI", "--seeds 2"
            continue
        x, decimals = float(token), len(token.split(".")[1]) if "." in token else 0
        assert any(round(v, decimals) == x for v in stored), f"{token} of the answer is not in analysis.json"
    assert md.index("## Answer") < md.index("## What this holds for") < md.index("## Evidence")
    for label in ("model", "run", "schedule", "held fixed", "data", "seeds"):
        assert f"- **{label}**:" in md


def test_the_recommended_configuration_is_first_in_the_table_and_marked_in_every_figure(study):
    folder, a, drawn = study
    best = a["recommendation"]["best"]
    md = (folder / "report.md").read_text()
    table = md.split("## Configurations (seeds folded in)", 1)[1]
    first_row = next(line for line in table.splitlines() if line.startswith("|") and "exp_" in line)
    assert "recommended" in first_row and f" {best} " in first_row
    # the configurations plot: the red dot is the recommended one
    ax = drawn["top_performers_analysis.png"].axes[0]
    dots = ax.collections[-1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    red = [i for i, c in enumerate(dots.get_facecolors()) if c[0] > 0.7 and c[1] < 0.3]
    assert len(red) == 1 and labels[red[0]] == best
    # the heatmap outlines the recommended cell
    hm = drawn["heatmap.png"].axes[0]
    boxes = [p for p in hm.patches if p.get_label() == "recommended"]
    cfg = next(c for c in a["configurations"] if c["config_id"] == best)
    xs = [t.get_text() for t in hm.get_xticklabels()]
    ys = [t.get_text() for t in hm.get_yticklabels()]
    x_axis, y_axis = hm.get_xlabel(), hm.get_ylabel()
    assert len(boxes) == 1 and boxes[0].get_xy() == (xs.index(str(cfg[x_axis])), ys.index(str(cfg[y_axis])))
    # the validation curves and the loss-vs-LR figure name it
    assert any(best in t.get_text() for t in drawn["validation_curves.png"].axes[0].get_legend().get_texts())
    assert any(f"recommended ({best})" == t.get_text()
               for t in drawn["loss_vs_lr.png"].axes[0].get_legend().get_texts())
    for stale in ("performance_distributions.png", "hyperparameter_analysis.png", "correlation_heatmap.png"):
        assert not (folder / stale).exists()


def test_the_report_is_refreshed_while_the_study_runs(tmp_path, cache_dir, monkeypatch):
    seen = []
    render = outputs.report.render

    def spy(*args, **kw):
        text = render(*args, **kw)
        seen.append(text)
        return text

    monkeypatch.setattr(outputs.LiveReport, "EVERY", 0.0)
    monkeypatch.setattr(outputs.report, "render", spy)
    cfg = write_study(tmp_path, cache_dir, steps=2, lrs="[0.01, 0.05]")
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--name", "s", "--no-progress"]) == 0
    marks = [re.search(r"In progress: (\d+) of 4 experiments recorded", t) for t in seen]
    assert [int(m.group(1)) for m in marks if m] == [1, 2, 3, 4]
    assert marks[-1] is None and "In progress" not in (tmp_path / "s" / "report.md").read_text()  # final: unmarked


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.mark.extras
def test_report_html_loads_sorts_filters_and_is_not_blank_in_a_real_browser(study, tmp_path):
    pytest.importorskip("selenium")  # the browser extra
    from selenium.webdriver.common.by import By

    folder, a, _ = study
    page = (folder / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    d = _browser()
    try:
        d.get((folder / "report.html").as_uri())
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        assert d.find_element(By.ID, "answer").text.startswith(("Use ", "Best so far"))
        heads = d.find_elements(By.CSS_SELECTOR, "#configs th")
        names = [h.text for h in heads]

        def column(name):
            i = names.index(name)
            return [r.find_elements(By.TAG_NAME, "td")[i].text
                    for r in d.find_elements(By.CSS_SELECTOR, "#configs tbody tr") if r.is_displayed()]

        assert column("config_id")[0] == a["recommendation"]["best"]
        mean = heads[names.index("mean")]
        mean.click()
        mean.click()  # descending
        values = [float(v) for v in column("mean")]
        assert values == sorted(values, reverse=True) and len(values) == 4
        box = d.find_element(By.ID, "filter")
        box.send_keys(a["recommendation"]["best"])
        assert column("config_id") == [a["recommendation"]["best"]]
        shot = tmp_path / "page.png"
        d.save_screenshot(str(shot))
    finally:
        d.quit()
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # text, table and figures, not a blank page


def test_text_from_a_study_is_escaped_on_the_page(study):
    """A study's description, names and report text are text: markup in them is shown, never run."""
    from moe_ablate.analysis import html

    folder, a, _ = study
    evil = "<script>alert(1)</script>"
    md = (folder / "report.md").read_text() + f"\n## Notes\n\n{evil} <img src=x onerror=alert(2)>\n"
    page = html.render(folder, f"t {evil}", evil, a, md)
    assert evil not in page and "onerror=alert(2)>" not in page and "&lt;script&gt;alert(1)" in page
