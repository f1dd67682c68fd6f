"""HTML view of a batch inference run for the ZenML dashboard."""

from __future__ import annotations

import base64
import csv
import html

from visionops.batch.predict import BAD_FILES_CSV, PredictionSet

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
{grid}
</body></html>"""
