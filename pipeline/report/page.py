"""The report page: every section that has data, with a navigation bar and the style sheet, as one
self-contained HTML document."""

from __future__ import annotations

from thresher.pipeline.report.charts import esc
from thresher.pipeline.report.data import RunData
from thresher.pipeline.report.sections import SECTIONS

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#2d3748;margin:0;background:#f7fafc}
header{background:#1a365d;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px}header p{margin:4px 0 0;color:#bee3f8;font-size:13px;word-break:break-all}
nav{background:#fff;border-bottom:1px solid #e2e8f0;padding:8px 32px;position:sticky;top:0;z-index:1}
nav a{margin-right:16px;color:#2b6cb0;text-decoration:none;font-size:14px}
main{padding:8px 32px 48px;max-width:1500px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:12px 20px 18px;margin:18px 0}
h2{font-size:20px;margin:6px 0 12px}h3{font-size:15px;margin:14px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 10px}
.card{border:1px solid #e2e8f0;border-radius:6px;padding:8px 16px;min-width:110px;background:#f7fafc}
.big{font-size:22px;font-weight:600}.small{font-size:12px;color:#718096}
.accounting{font-size:15px}.ok{color:#276749;font-weight:600}.bad{color:#c53030;font-weight:600}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 10px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#edf2f7}
table.facts th{font-weight:normal;color:#718096}
.grid{display:flex;flex-wrap:wrap;gap:10px 22px;align-items:flex-start}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:6px 0}figcaption{font-size:12px;color:#718096;max-width:520px}
.examples{flex:1;min-width:380px}
details{margin:6px 0}summary{cursor:pointer;font-size:14px}
.example{border-left:3px solid #cbd5e0;padding:2px 10px;margin:6px 0}
.example .meta{font-size:12px;color:#4a5568}
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#f7fafc;padding:6px 8px;margin:4px 0;max-height:132px;overflow:auto}
mark{background:#fed7d7;color:#742a2a;padding:0 1px}
.note{font-size:13px;color:#718096}.muted{color:#718096;font-weight:normal;font-size:13px}
.stage-block{border-top:1px solid #edf2f7;padding-top:4px}
code{font-size:12px}
"""


def render_html(data: RunData) -> str:
    sections = [s for s in (builder.build(data) for builder in SECTIONS) if s is not None]
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    title = f"thresher report: {data.out_dir.name or data.out_dir}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(data.out_dir)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")
