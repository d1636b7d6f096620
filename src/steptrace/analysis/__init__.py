"""Find, summarize, debug and compare agent runs from step logs (JSONL or OTLP JSON).

>>> from steptrace.analysis import load, debug_run
>>> logs = load("steptrace-logs")  # doctest: +SKIP
>>> for run in logs.runs(stop_reason="error", limit=5):  # doctest: +SKIP
...     print(debug_run(run).hypotheses[0].title)
"""

from __future__ import annotations

from steptrace._errors import LogError
from steptrace._pricing import Pricer, PricesError, read_prices
from steptrace.analysis._clickhouse import ClickHouseError, ClickHouseRunSet, load_clickhouse
from steptrace.analysis._debug import (
    DebugReport,
    Hypothesis,
    RepeatedToolCall,
    SpanRef,
    debug_run,
)
from steptrace.analysis._diff import DiffReport, MetricChange, diff
from steptrace.analysis._html import render_html, write_html
from steptrace.analysis._loading import LoadIssue
from steptrace.analysis._logs import run_logs
from steptrace.analysis._report import FleetReport, ReportFile, build_report, render_report, write_report
from steptrace.analysis._runs import STOP_INCOMPLETE, Run, RunSet, filter_runs, load, parse_duration_ms
from steptrace.analysis._summary import RunSummary, summarize

__all__ = [
    "STOP_INCOMPLETE",
    "ClickHouseError",
    "ClickHouseRunSet",
    "DebugReport",
    "DiffReport",
    "FleetReport",
    "Hypothesis",
    "LoadIssue",
    "LogError",
    "MetricChange",
    "Pricer",
    "PricesError",
    "RepeatedToolCall",
    "ReportFile",
    "Run",
    "RunSet",
    "RunSummary",
    "SpanRef",
    "build_report",
    "debug_run",
    "diff",
    "filter_runs",
    "load",
    "load_clickhouse",
    "parse_duration_ms",
    "read_prices",
    "render_html",
    "render_report",
    "run_logs",
    "summarize",
    "write_html",
    "write_report",
]
