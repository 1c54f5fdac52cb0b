"""A self-contained HTML report: inline CSS and an inline SVG leaderboard, no scripts, no external assets.

Sections (each an `<section id=...>`): run, leaderboard, gate, models, metrics, categories, examples.
Values that do not exist are written as "missing", never as 0 or "-"; every mean carries its 95 %
interval (clipped to the metric's range by `aggregate.metric_stat`) and the number of rows it averages,
because label metrics and text metrics are computed over different records. Tables are narrow (metrics
are rows, models are columns) and wrap, so the page reads at 1280 px without scrolling sideways.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from evaluation.aggregate import GroupSummary, MetricStat, ModelSummary
from evaluation.selection import DIMENSIONS, GateResult, Ranking

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em 2em;max-width:1200px;color:#222;"
    "box-sizing:border-box}"
    "table{border-collapse:collapse;margin:1em 0;max-width:100%;table-layout:auto}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top;overflow-wrap:anywhere}"
    "th:first-child,td:first-child{text-align:left}.pass{color:#1a7f37}.fail{color:#cf222e}"
    ".missing{color:#8c959f;font-style:italic}.ci{color:#57606a;font-size:85%;white-space:nowrap}"
    "pre{white-space:pre-wrap;background:#f6f8fa;padding:1em;overflow-wrap:anywhere}"
    "svg{max-width:100%;height:auto}.example{text-align:left;max-width:40em}"
)
MISSING = '<span class="missing">missing</span>'


def _fmt(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _stat(stat: MetricStat | None) -> str:
    if stat is None:
        return MISSING
    return f'{stat.mean:.3f} <span class="ci">[{stat.ci95_low:.3f}, {stat.ci95_high:.3f}] n={stat.n}</span>'


def leaderboard_svg(ranking: Ranking, width: int = 640) -> str:
    """Horizontal bars of each model's weighted score, stacked by quality / speed / cost share."""
    bar_height, gap, label_width = 22, 8, 170
    height = len(ranking.models) * (bar_height + gap) + 30
    scale = width - label_width - 60
    w = ranking.weights
    colors = (("quality", "#2f6fdf", w.quality), ("speed", "#2da44e", w.speed), ("cost", "#d4a72c", w.cost))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Leaderboard of weighted model scores">'
    ]
    for i, m in enumerate(ranking.models):
        y = i * (bar_height + gap)
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{m.rank}. {escape(m.model)}</text>')
        x = float(label_width)
        for name, color, weight in colors:
            norm = getattr(m, f"{name}_norm")
            share = weight * (norm or 0.0)
            label = "missing" if norm is None else f"{share:.3f}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{share * scale:.1f}" height="{bar_height}" '
                f'fill="{color}"><title>{name}: {label}</title></rect>'
            )
            x += share * scale
        note = "" if m.gate_passed else " (fails gate)"
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 16}" font-size="12">{m.score:.3f}{note}</text>')
    legend_y = height - 8
    for j, (name, color, weight) in enumerate(colors):
        parts.append(
            f'<rect x="{label_width + j * 130}" y="{legend_y - 10}" width="10" height="10" '
            f'fill="{color}"/><text x="{label_width + j * 130 + 14}" y="{legend_y}" '
            f'font-size="12">{name} ({weight:.0%})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _run_section(run_info: Mapping[str, str]) -> str:
    items = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in run_info.items())
    return f'<section id="run"><h2>Run</h2><table>{items}</table></section>' if run_info else ""


def _gate_section(gate: GateResult | None) -> str:
    if gate is None:
        return ""
    css = "pass" if gate.passed else "fail"
    items = "".join(
        f'<li class="{"pass" if c.passed else "fail"}">{escape(c.rule)}: observed {_fmt(c.observed)}</li>'
        for c in gate.checks
    )
    return (
        f'<section id="gate"><h2>Gate: <span class="{css}">{"PASS" if gate.passed else "FAIL"}</span> '
        f"({escape(gate.model or 'no model')})</h2><p>{escape(gate.reason)}</p><ul>{items}</ul></section>"
    )


def _models_section(summaries: Sequence[ModelSummary], ranking: Ranking) -> str:
    ranked = {m.model: m for m in ranking.models}
    metric = ranking.quality_metric
    rows = []
    for s in summaries:
        r = ranked.get(s.model)
        missing = ", ".join(r.missing) if r and r.missing else ""
        gate = MISSING if r is None else ("pass" if r.gate_passed else "fail")
        rows.append(
            f"<tr><td>{escape(s.model)}</td><td>{'' if r is None else r.rank}</td>"
            f"<td>{s.count}</td><td>{s.errors} ({s.error_rate:.1%})</td><td>{s.unscored}</td>"
            f"<td>{_stat(s.metrics.get(metric)) if metric else MISSING}</td>"
            f"<td>{_fmt(s.latency_p50_ms, 0)}</td><td>{_fmt(s.latency_p95_ms, 0)}</td>"
            f"<td>{_fmt(s.cost_per_1k_records_usd, 4)}</td><td>{gate}</td>"
            f"<td>{escape(missing) if missing else 'none'}</td></tr>"
        )
    return (
        '<section id="models"><h2>Per model</h2><table><tr><th>model</th><th>rank</th><th>records</th>'
        f"<th>errors</th><th>unscored</th><th>quality ({escape(metric or 'none')})</th><th>p50 ms</th>"
        "<th>p95 ms</th><th>$ / 1k records</th><th>gate</th><th>no data for</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _metric_table(groups: Sequence[tuple[str, GroupSummary]]) -> str:
    names = sorted({name for _, g in groups for name in g.metrics})
    head = "".join(f"<th>{escape(label)}</th>" for label, _ in groups)
    body = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(f"<td>{_stat(g.metrics.get(name))}</td>" for _, g in groups)
        + "</tr>"
        for name in names
    )
    counts = "".join(f"<td>{g.count} / {g.errors} / {g.unscored}</td>" for _, g in groups)
    return (
        f"<table><tr><th>metric</th>{head}</tr>"
        f"<tr><td>records / errors / unscored</td>{counts}</tr>{body}</table>"
    )


def _metrics_section(summaries: Sequence[ModelSummary]) -> str:
    return (
        '<section id="metrics"><h2>Metrics per model</h2><p>Mean [95 % interval] n = rows averaged. Label '
        "metrics average the labeled records, text metrics the records with a reference, judge metrics the "
        "judged ones: n differs between them.</p>"
        f"{_metric_table([(s.model, s) for s in summaries])}</section>"
    )


def _categories_section(summaries: Sequence[ModelSummary]) -> str:
    categories = sorted({c for s in summaries for c in s.categories})
    parts = ['<section id="categories"><h2>Per category</h2>']
    for category in categories:
        groups = [(s.model, s.categories[category]) for s in summaries if category in s.categories]
        parts.append(f"<h3>{escape(category)}</h3>{_metric_table(groups)}")
    parts.append("</section>")
    return "".join(parts)


def _examples_section(summaries: Sequence[ModelSummary]) -> str:
    parts = ['<section id="examples"><h2>Worst examples per model</h2>']
    for s in summaries:
        parts.append(f"<h3>{escape(s.model)}</h3>")
        if not s.worst:
            parts.append("<p>No errors and no record below full quality.</p>")
            continue
        rows = "".join(
            f"<tr><td>{escape(e.record_id)}</td><td>{escape(e.category)}</td><td>{_fmt(e.quality)}</td>"
            f'<td class="example">{escape(e.error) if e.error else "none"}</td>'
            f'<td class="example">{MISSING if e.output is None else escape(e.output)}</td>'
            f'<td class="example">{escape(e.judge_justification or "")}</td></tr>'
            for e in s.worst
        )
        parts.append(
            "<table><tr><th>record</th><th>category</th><th>quality 0..1</th><th>error reason</th>"
            f"<th>output</th><th>judge</th></tr>{rows}</table>"
        )
    parts.append("</section>")
    return "".join(parts)


def render_report(
    title: str,
    summaries: Sequence[ModelSummary],
    ranking: Ranking,
    gate: GateResult | None = None,
    run_info: Mapping[str, str] | None = None,
) -> str:
    dims = ", ".join(DIMENSIONS)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        f"{_run_section(run_info or {})}"
        f'<section id="leaderboard"><h2>Leaderboard ({dims})</h2>{leaderboard_svg(ranking)}'
        f"<pre>{escape(ranking.explanation)}</pre></section>"
        f"{_gate_section(gate)}{_models_section(summaries, ranking)}{_metrics_section(summaries)}"
        f"{_categories_section(summaries)}{_examples_section(summaries)}"
        "</body></html>"
    )
