"""A pytest plugin (entry point ``pytest11``) to assert on your own agent's telemetry.

    def test_agent_searches_once(steptrace_capture):
        run_my_agent("Q3 revenue")
        tools = [r["tool"] for r in steptrace_capture.records if r["type"] == "tool_call"]
        assert tools == ["search_documents"]
        (run,) = steptrace_capture.spans_named("agent_run")
        assert run.attributes["steptrace.stop_reason"] == "end_turn"

The fixture configures steptrace with an in-memory span exporter, an in-memory metric reader
and a step log in the test's temporary directory, with content capture on; the configuration
is removed after the test. While it is active, a ``steptrace.configure()`` called by the code
under test (a ``main()``, say) keeps these: its spans and metrics still reach the fixture, its
step log is the fixture's (whatever ``jsonl_path`` or ``STEPTRACE_JSONL_PATH`` says: nothing is
written in the working directory), nothing is exported over OTLP, and content capture stays on
unless that call passes ``capture_content=False``.

``steptrace_capture.logs`` lists the stdlib log records made inside runs, with their correlation
keys (``run_id``, ``step``, ``trace_id``, ``span_id``), whatever ``capture_logs`` says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from steptrace._config import CaptureOverride, Telemetry, configure, reset_for_tests, set_capture_override
from steptrace._jsonl import read_steps
from steptrace._logs import set_test_sink


class Capture:
    """Spans, step records and histogram points produced while the fixture is active."""

    def __init__(self, directory: Path) -> None:
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": "steptrace-test"}))
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader])
        self.jsonl_path = directory / "steps.jsonl"
        self._logs: list[dict[str, Any]] = []
        set_test_sink(self._logs)
        self.telemetry: Telemetry = self.configure()

    def configure(self, **options: Any) -> Telemetry:
        """(Re)configure steptrace on the capture's providers; options go to ``configure()``.

        ``jsonl_path=`` moves the capture's step log (``records`` then reads the new file).
        """
        path = options.pop("jsonl_path", None)
        if path is not None and not isinstance(path, bool):
            self.jsonl_path = Path(path)
        # configure() consults the override: the code under test's own configure() calls too.
        set_capture_override(CaptureOverride(self.tracer_provider, self.meter_provider, self.jsonl_path))
        options.setdefault("service_name", "steptrace-test")
        self.telemetry = configure(**options)
        return self.telemetry

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in end order."""
        return list(self.span_exporter.get_finished_spans())

    @property
    def logs(self) -> list[dict[str, Any]]:
        """Log records made inside runs, oldest first: ``run_id``, ``step`` (agent step number or
        None), ``trace_id``, ``span_id``, ``level``, ``logger``, ``message`` (unredacted), and
        the ``logging.LogRecord`` itself as ``record``."""
        return list(self._logs)

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    @property
    def records(self) -> list[dict[str, Any]]:
        """Step records written to the JSONL log, in write order."""
        if not self.jsonl_path.exists():
            return []
        return list(read_steps(self.jsonl_path))

    def histogram_points(self, name: str) -> list[HistogramDataPoint]:
        """The data points of one histogram (cumulative since the fixture started)."""
        data = self.metric_reader.get_metrics_data()
        points: list[HistogramDataPoint] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(p for p in metric.data.data_points if isinstance(p, HistogramDataPoint))
        return points

    def clear(self) -> None:
        """Forget spans and records captured so far."""
        self.span_exporter.clear()
        self._logs.clear()
        if self.jsonl_path.exists():
            self.jsonl_path.write_bytes(b"")

    def close(self) -> None:
        set_test_sink(None)
        set_capture_override(None)
        reset_for_tests()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def steptrace_capture(tmp_path: Path) -> Iterator[Capture]:
    """steptrace configured to capture in memory for this test; removed afterwards."""
    capture = Capture(tmp_path)
    try:
        yield capture
    finally:
        capture.close()
