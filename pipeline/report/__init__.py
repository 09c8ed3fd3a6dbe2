"""`thresher report OUT_DIR`: one self-contained static HTML page about a run's output directory.

Everything is drawn here as inline SVG (no server, no JavaScript library, no web font, nothing
fetched): the funnel through the stages, rejection reasons with example documents, score
histograms, PII counts, dedup cluster sizes, poisoning flags with their spans, token lengths per
source, the training curves of any ``metrics.csv`` under OUT_DIR, and the totals with the
accounting line. A section appears only when its data exists.

Reading is bounded so the report stays fast on huge outputs: ``stats.json`` holds the exact
counts; documents are a seeded reservoir sample of at most ``sample`` records per side drawn from
the first ``max_scan`` lines (files visited in a seeded order); shards contribute at most
``max_shard_rows`` rows (only the ``length`` and ``source`` columns are read).

Modules: ``charts`` (SVG charts and number formatting), ``data`` (the bounded readers of OUT_DIR),
``sections`` (one class per section), ``page`` (the HTML document), ``builder`` (``ReportBuilder``:
read, render, write), ``cli`` (``thresher report``; also ``python -m thresher.pipeline.report``).
"""

from thresher.pipeline.report.builder import REPORT_NAME, ReportBuilder
from thresher.pipeline.report.charts import KEPT_COLOR, REJECTED_COLOR
from thresher.pipeline.report.cli import report_command
from thresher.pipeline.report.data import ReportError, RunData
from thresher.pipeline.report.page import render_html

__all__ = ["KEPT_COLOR", "REJECTED_COLOR", "REPORT_NAME", "ReportBuilder", "ReportError", "RunData", "render_html",
           "report_command"]
