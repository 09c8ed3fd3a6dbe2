import sys

from thresher.pipeline.report.cli import report_command

sys.exit(report_command(sys.argv[1:]))
