"""A self-contained HTML report: inline CSS and an inline SVG leaderboard, no external assets."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from evaluation.aggregate import ModelSummary
from evaluation.selection import GateResult, Ranking

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}.pass{color:#1a7f37}.fail{color:#cf222e}"
    "pre{white-space:pre-wrap;background:#f6f8fa;padding:1em}"
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def leaderboard_svg(ranking: Ranking, width: int = 640) -> str:
    """Horizontal bars of each model's weighted score, stacked by quality / speed / cost share."""
    bar_height, gap, label_width = 22, 8, 170
    height = len(ranking.models) * (bar_height + gap) + 30
    scale = width - label_width - 60
    w = ranking.weights
    colors = (("quality", "#2f6fdf", w.quality), ("speed", "#2da44e", w.speed), ("cost", "#d4a72c", w.cost))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="Leaderboard of weighted model scores">'
    ]
    for i, m in enumerate(ranking.models):
        y = i * (bar_height + gap)
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{m.rank}. {escape(m.model)}</text>')
        x = float(label_width)
        for name, color, weight in colors:
            share = weight * getattr(m, f"{name}_norm")
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{share * scale:.1f}" height="{bar_height}" '
                f'fill="{color}"><title>{name}: {share:.3f}</title></rect>'
            )
            x += share * scale
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 16}" font-size="12">{m.score:.3f}</text>')
    legend_y = height - 8
    for j, (name, color, weight) in enumerate(colors):
        parts.append(
            f'<rect x="{label_width + j * 130}" y="{legend_y - 10}" width="10" height="10" '
            f'fill="{color}"/><text x="{label_width + j * 130 + 14}" y="{legend_y}" '
            f'font-size="12">{name} ({weight:.0%})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_report(
    title: str, summaries: Sequence[ModelSummary], ranking: Ranking, gate: GateResult | None = None
) -> str:
    metric_names = sorted({name for s in summaries for name in s.metrics})
    head = "".join(f"<th>{escape(n)}</th>" for n in metric_names)
    rows = []
    for s in summaries:
        cells = "".join(
            f'<td title="95% CI {_fmt(s.metrics[n].ci95_low)}..{_fmt(s.metrics[n].ci95_high)}">'
            f"{_fmt(s.metrics[n].mean)}</td>"
            if n in s.metrics
            else "<td>-</td>"
            for n in metric_names
        )
        rows.append(
            f"<tr><td>{escape(s.model)}</td><td>{s.count}</td><td>{s.errors}</td>"
            f"<td>{_fmt(s.latency_p50_ms, 0)}</td><td>{_fmt(s.latency_p95_ms, 0)}</td>"
            f"<td>{_fmt(s.cost_per_1k_records_usd, 4)}</td>{cells}</tr>"
        )
    gate_html = ""
    if gate is not None:
        css = "pass" if gate.passed else "fail"
        items = "".join(
            f'<li class="{"pass" if c.passed else "fail"}">{escape(c.rule)}: observed {_fmt(c.observed)}</li>'
            for c in gate.checks
        )
        gate_html = (
            f'<h2>Gate: <span class="{css}">{"PASS" if gate.passed else "FAIL"}</span> '
            f"({escape(gate.model or '-')})</h2><ul>{items}</ul>"
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        f"<h2>Leaderboard</h2>{leaderboard_svg(ranking)}<pre>{escape(ranking.explanation)}</pre>{gate_html}"
        "<h2>Per model</h2><table><tr><th>model</th><th>records</th><th>errors</th><th>p50 ms</th>"
        f"<th>p95 ms</th><th>$ / 1k records</th>{head}</tr>{''.join(rows)}</table>"
        "</body></html>"
    )
