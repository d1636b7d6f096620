"""The time-per-output-chunk histogram is recorded at metric collection, not per chunk on the
stream's path: what a reader or an exporter gets is the same histogram, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from steptrace import _attributes as A
from steptrace import _metrics
from steptrace._metrics import NO_EXEMPLAR, create_instruments

ATTRS = {A.GEN_AI_OPERATION_NAME: "chat", A.GEN_AI_PROVIDER_NAME: "openai", A.GEN_AI_REQUEST_MODEL: "m"}


def metric_points(data: MetricsData | None) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


class Keeping(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def record_stream(instruments: Any, gaps: Sequence[float]) -> None:
    for gap in gaps:
        instruments.time_per_output_chunk.record(gap, ATTRS, NO_EXEMPLAR)


def test_reader_sees_every_chunk_measurement_and_no_extra_metric() -> None:
    """get_metrics_data() returns the chunks' histogram with exact count, sum and buckets."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments(provider)
    record_stream(instruments, [0.005, 0.015, 0.015, 0.5])
    points = metric_points(reader.get_metrics_data())
    assert A.METRIC_PENDING_FLUSH not in points
    [point] = points[A.METRIC_TIME_PER_OUTPUT_CHUNK]
    assert point.count == 4
    assert point.sum == pytest.approx(0.535)
    assert dict(point.attributes) == ATTRS
    assert point.bucket_counts[:3] == (1, 2, 0)  # <=0.01, <=0.02, <=0.04
    record_stream(instruments, [0.001])
    [point] = metric_points(reader.get_metrics_data())[A.METRIC_TIME_PER_OUTPUT_CHUNK]
    assert point.count == 5  # cumulative: nothing counted twice, nothing lost between reads
    provider.shutdown()


def test_periodic_exporter_gets_pending_chunks_at_shutdown() -> None:
    """A process that ends with shutdown() exports chunks no periodic export had picked up yet."""
    exporter = Keeping()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments(provider)
    record_stream(instruments, [0.01] * 7)
    provider.shutdown()
    points = [
        p for batch in exporter.batches for p in metric_points(batch).get(A.METRIC_TIME_PER_OUTPUT_CHUNK, [])
    ]
    assert sum(p.count for p in points) == 7


def test_two_readers_each_get_the_measurements_once() -> None:
    """With two readers, the first collection records the chunks for both."""
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first, second])
    instruments = create_instruments(provider)
    record_stream(instruments, [0.02, 0.03])
    [a] = metric_points(first.get_metrics_data())[A.METRIC_TIME_PER_OUTPUT_CHUNK]
    [b] = metric_points(second.get_metrics_data())[A.METRIC_TIME_PER_OUTPUT_CHUNK]
    assert a.count == b.count == 2
    provider.shutdown()


def test_pending_measurements_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any collection (a reader read only on demand), the buffer never grows unbounded."""
    monkeypatch.setattr(_metrics, "MAX_PENDING_MEASUREMENTS", 10)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments(provider)
    record_stream(instruments, [0.01] * 25)
    assert len(instruments.time_per_output_chunk._pending) < 10
    [point] = metric_points(reader.get_metrics_data())[A.METRIC_TIME_PER_OUTPUT_CHUNK]
    assert point.count == 25
    provider.shutdown()


def test_metrics_off_keeps_nothing() -> None:
    """With a no-op meter (metrics not configured) no measurement is held in memory."""
    from opentelemetry.metrics import NoOpMeterProvider

    instruments = create_instruments(NoOpMeterProvider())
    record_stream(instruments, [0.01] * 100)
    assert instruments.time_per_output_chunk._pending == []
