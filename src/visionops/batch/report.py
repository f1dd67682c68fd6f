"""HTML view of a batch inference run for the ZenML dashboard."""

from __future__ import annotations

import base64
import csv
import html
import json
from typing import Any

from visionops.batch.predict import BAD_FILES_CSV, PREDICTIONS_JSON, PredictionSet
from visionops.data.report import PALETTE

_MAX_BAD_ROWS = 200


def _bars(per_class: dict[str, int]) -> str:
    peak = max([1, *per_class.values()])
    return "".join(
        f"<tr><th>{html.escape(name)}</th><td><div class='bar' "
        f"style='width:{300 * count / peak:.0f}px'>{count}</div></td></tr>"
        for name, count in per_class.items()
    )


def _bad_rows(predictions: PredictionSet) -> str:
    path = predictions.root / BAD_FILES_CSV
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    if not rows:
        return "<tr><td colspan=3>none</td></tr>"
    cells = "".join(
        f"<tr><td>{html.escape(r['file'])}</td><td>{html.escape(r['reason'])}</td>"
        f"<td>{html.escape(r['detail'])}</td></tr>"
        for r in rows[:_MAX_BAD_ROWS]
    )
    if len(rows) > _MAX_BAD_ROWS:
        cells += f"<tr><td colspan=3>... {len(rows) - _MAX_BAD_ROWS} more</td></tr>"
    return cells


def write_report(predictions: PredictionSet) -> str:
    """Writes `report.html` beside a run's outputs; returns the HTML."""
    page = batch_html(predictions)
    predictions.report.write_text(page)
    return page


def _value(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def batch_html(predictions: PredictionSet) -> str:
    """Renders a batch run's summary, counts per class, bad files and sample grid."""
    s = predictions.summary
    model = s.get("model") or {}
    model_line = "an ONNX file"
    if model:
        name, version = html.escape(str(model["name"])), html.escape(model["version"])
        uri = html.escape(str(model.get("model_uri", "")))
        model_line = f"{name} v{version} (<code>{uri}</code>)"
    grid = ""
    if predictions.grid is not None:
        data = base64.b64encode(predictions.grid.read_bytes()).decode()
        grid = f"<h3>Sample</h3><img src='data:image/jpeg;base64,{data}'>"
    ignored = ", ".join(f"{k} {v}" for k, v in s["ignored_files"].items()) or "none"
    figures = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_value(v)}</td></tr>"
        for k, v in s["figures"].items()
    )
    thresholds = "".join(f", {k} {v}" for k, v in s["thresholds"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body{{font-family:sans-serif;margin:16px}}
table{{border-collapse:collapse;margin-bottom:12px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
.bar{{height:16px;background:#3b6fd6;color:#fff;font-size:11px;padding-left:3px}}
img{{max-width:100%}}
</style></head><body>
<h2>Batch predictions</h2>
<p>Source <code>{html.escape(s["source"])}</code>, {html.escape(s["task"])} model
{model_line}{thresholds}.</p>
<table>
<tr><th>images in</th><td>{s["images_in"]}</td></tr>
<tr><th>predicted</th><td>{s["predicted"]}</td></tr>
<tr><th>bad files</th><td>{s["bad"]}</td></tr>
{figures}
<tr><th>images/s</th><td>{s["images_per_s"]}</td></tr>
<tr><th>other files (ignored)</th><td>{html.escape(ignored)}</td></tr>
</table>
<h3>{html.escape(s["counts_title"])}</h3><table>{_bars(s["per_class"])}</table>
<h3>Bad files</h3><table><tr><th>file</th><th>reason</th><th>detail</th></tr>
{_bad_rows(predictions)}</table>
{_videos(predictions)}
{grid}
</body></html>"""


def _plot(timeline: dict[str, Any], width: int = 640, height: int = 160) -> str:
    """Counts per class over time as an inline SVG, one line per class."""
    times, counts = timeline["time_s"], timeline["counts"]
    if not times or not counts:
        return "<p>nothing found</p>"
    end = max(times[-1], 1e-6)
    peak = max(1.0, *(max(v) for v in counts.values()))
    lines, legend = [], []
    for index, (name, values) in enumerate(counts.items()):
        b, g, r = PALETTE[index % len(PALETTE)]
        xs = [40 + (width - 50) * t / end for t in times]
        ys = [height - 20 - (height - 30) * v / peak for v in values]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        color = f"rgb({r},{g},{b})"
        lines.append(f"<polyline fill='none' stroke='{color}' points='{points}'/>")
        legend.append(f"<span style='color:{color}'>&#9632; {html.escape(name)}</span>")
    return (
        f"<svg width='{width}' height='{height}' style='border:1px solid #ccc'>"
        f"<text x='2' y='12' font-size='10'>{peak:g}</text>"
        f"<text x='2' y='{height - 20}' font-size='10'>0</text>"
        f"<text x='{width - 60}' y='{height - 4}' font-size='10'>{end:.1f} s</text>"
        f"{''.join(lines)}</svg><br>{' '.join(legend)}"
    )


def _videos(predictions: PredictionSet) -> str:
    """Per video: its figures, counts per class over time and its contact sheet."""
    path = predictions.root / PREDICTIONS_JSON
    videos = json.loads(path.read_text()).get("videos", []) if path.is_file() else []
    parts = []
    for v in videos:
        sheet = ""
        if v["contact_sheet"]:
            data = (predictions.root / v["contact_sheet"]).read_bytes()
            sheet = (
                f"<img src='data:image/jpeg;base64,{base64.b64encode(data).decode()}'>"
            )
        parts.append(
            f"<h3>Video {html.escape(v['video'])}</h3><p>{v['frames_predicted']} "
            f"of {v['frames_read']} frames predicted (stride {v['stride']}, "
            f"{v['fps']} fps, {v['width']}x{v['height']}), {v['rows']} rows, "
            f"{v['tracks']} tracks, {v['faces_blurred']} faces blurred, "
            f"{v['frames_per_s']} frames/s; annotated: <code>"
            f"{html.escape(str(v['output']))}</code></p>"
            f"<h4>Counts per class over time (mean per frame)</h4>"
            f"{_plot(v['timeline'])}<h4>Contact sheet</h4>{sheet}"
        )
    return "".join(parts)
