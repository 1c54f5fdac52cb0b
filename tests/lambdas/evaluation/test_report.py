"""Issue 14 item 7: the HTML report, checked as markup and rendered in a real headless browser."""

import json
import re
import shutil
import subprocess

import pytest
from evaluation.aggregate import summarize
from evaluation.report import render_report
from evaluation.scoring import ScoredRecord
from evaluation.selection import evaluate_gate, rank_models

from stacks.settings.fine_tuning import TEXT_METRICS

from .fakes import make_settings

SECTIONS = ("run", "leaderboard", "gate", "models", "metrics", "categories", "examples")


def rows():
    """Three models, two categories, label and text and judge metrics over different records, errors."""
    out = []
    for m, name in enumerate(
        ("claude-3-haiku-20240307-a-rather-long-name", "tuned-llama-3-8b-lora-v7", "no-data")
    ):
        for i in range(12):
            category = "qa" if i % 2 else "sentiment"
            metrics: dict[str, float] = {}
            if name != "no-data":
                if category == "sentiment":
                    metrics["label_correct"] = float((i + m) % 3 != 0)
                else:
                    metrics.update({t: min(1.0, 0.5 + 0.04 * i + 0.1 * m) for t in TEXT_METRICS})
                    metrics.update({"judge_overall": 9.8, "judge_helpfulness": 10.0})
            error = "model: ThrottlingException after 5 attempts" if (name == "no-data" or i == 11) else None
            out.append(
                ScoredRecord(
                    run_id="r",
                    record_id=f"rec-{i}",
                    model=name,
                    category=category,
                    output=None if error else f"answer {i} " + "x" * 400,
                    metrics={} if error else metrics,
                    latency_ms=None if name == "tuned-llama-3-8b-lora-v7" or error else 100.0 + i,
                    cost_usd=None if error else 0.001,
                    error=error,
                    judge_justification="Too short." if category == "qa" and not error else None,
                )
            )
    return out


def report():
    summaries = summarize(rows())
    settings = make_settings(gate={"min_metrics": {"rougeL": 0.5}})
    ranking = rank_models(summaries, settings)
    gate = evaluate_gate(summaries, ranking, settings.gate)
    info = {"dataset": "support-eval version 4", "prompt support-answer:prod": "version 7"}
    return render_report("Evaluation run-1 (support)", summaries, ranking, gate, run_info=info), summaries


def section(html, name):
    return re.search(rf'<section id="{name}">(.*?)</section>', html, flags=re.DOTALL).group(1)


def test_every_section_is_there_and_intervals_are_visible_and_clipped():
    html, summaries = report()
    for name in SECTIONS:
        assert f'<section id="{name}">' in html, name
    # A 0..1 metric near its top: the normal approximation would pass 1, the report shows at most 1.
    stat = summaries[0].metrics["rougeL"]
    assert stat.ci95_high <= 1.0 and stat.ci95_low >= 0.0
    judge = summaries[0].metrics["judge_helpfulness"]
    assert judge.ci95_high <= 10.0
    shown = [float(x) for x in re.findall(r"\[(-?\d+\.\d+), (-?\d+\.\d+)\]", html) for x in x]
    assert shown and all(-0.0 <= v <= 10.0 for v in shown)
    assert "title=" not in section(html, "metrics")  # intervals in the page, not only in tooltips


def test_per_category_per_model_missing_values_and_worst_examples():
    html, _ = report()
    categories = section(html, "categories")
    assert "<h3>qa</h3>" in categories and "<h3>sentiment</h3>" in categories
    assert "label_correct" in categories and "rougeL" in categories
    models = section(html, "models")
    llama = re.search(r"<tr><td>tuned-llama-3-8b-lora-v7</td>(.*?)</tr>", models).group(1)
    assert llama.count('class="missing"') >= 2  # p50 and p95 latency: missing, not 0
    examples = section(html, "examples")
    assert "model: ThrottlingException after 5 attempts" in examples
    assert "<h3>no-data</h3>" in examples
    assert "n=" in section(html, "metrics")  # label and text metrics average different records


def test_the_report_escapes_model_text_and_loads_nothing():
    data = rows()
    data[0].output = "<script>alert(1)</script>"
    data[0].metrics = {"label_correct": 0.0}
    summaries = summarize(data)
    html = render_report("t", summaries, rank_models(summaries, make_settings()))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"(src|href)=", html)


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


MEASURE = """<script>
const sections = [...document.querySelectorAll('section')].map(s => ({
  id: s.id, width: Math.ceil(s.getBoundingClientRect().width), height: s.getBoundingClientRect().height}));
const wide = [...document.querySelectorAll('table, svg, pre')].filter(
  e => e.getBoundingClientRect().right > window.innerWidth + 1).length;
const out = document.createElement('output');
out.id = 'measured';
out.textContent = JSON.stringify({viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
  sections, wide, headings: [...document.querySelectorAll('h2')].map(h => h.textContent)});
document.body.appendChild(out);
</script>"""


@pytest.mark.skipif(browser() is None, reason="no chromium on this machine (CI installs it: .ci/run)")
def test_the_report_renders_in_a_headless_browser_and_fits_1280_px(tmp_path):
    html, _ = report()
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [
            str(browser()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<output id="measured">(.*?)</output>', done.stdout, flags=re.DOTALL)
    assert found, done.stderr[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert measured["viewport"] == 1280
    assert measured["scrollWidth"] <= 1280, "the page scrolls sideways at 1280 px"
    assert measured["wide"] == 0, "a table, chart or block reaches past the window"
    assert [s["id"] for s in measured["sections"]] == list(SECTIONS)
    assert all(0 < s["width"] <= 1280 and s["height"] > 0 for s in measured["sections"])
    assert any(h.startswith("Gate:") for h in measured["headings"])
