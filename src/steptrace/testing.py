"""A pytest plugin (entry point ``pytest11``) to assert on your own agent's telemetry.

    def test_agent_searches_once(steptrace_capture):
        run_my_agent("Q3 revenue")
        tools = [r["tool"] for r in steptrace_capture.records if r["type"] == "tool_call"]
        assert tools == ["search_documents"]
        (run,) = steptrace_capture.spans_named("agent_run")
        assert run.attributes["steptrace.stop_reason"] == "end_turn"

The fixture configures steptrace with an in-memory span exporter, an in-memory metric reader
and a step log in the test's temporary directory, with content capture on; the configuration
is removed after the test.
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

from steptrace._config import Telemetry, configure, reset_for_tests
from steptrace._jsonl import read_steps


class Capture:
    """Spans, step records and histogram points produced while the fixture is active."""

    def __init__(self, directory: Path) -> None:
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": "steptrace-test"}))
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader])
        self.jsonl_path = directory / "steps.jsonl"
        self.telemetry: Telemetry = self.configure()

    def configure(self, **options: Any) -> Telemetry:
        """(Re)configure steptrace on the capture's providers; options go to ``configure()``."""
        options.setdefault("capture_content", True)
        options.setdefault("jsonl_path", self.jsonl_path)
        self.telemetry = configure(
            "steptrace-test",
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )
        return self.telemetry

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in end order."""
        return list(self.span_exporter.get_finished_spans())

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
        if self.jsonl_path.exists():
            self.jsonl_path.write_bytes(b"")

    def close(self) -> None:
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
