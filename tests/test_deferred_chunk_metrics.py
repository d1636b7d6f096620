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
    assert not instruments.time_per_output_chunk._pending


def _points_by_metric(reader: InMemoryMetricReader) -> dict[str, list[tuple[Any, ...]]]:
    """Per histogram: (attributes, count, sum, bucket counts) of each point, sorted."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name, points in metric_points(reader.get_metrics_data()).items():
        if name == A.METRIC_PENDING_FLUSH:
            continue
        found[name] = sorted(
            (sorted(dict(p.attributes).items()), p.count, round(p.sum, 9), tuple(p.bucket_counts))
            for p in points
        )
    return found


def test_every_histogram_exports_what_the_sdk_histogram_recorded_at_once_would() -> None:
    """Every histogram is now fed at collection: a backend must still get the same instruments,
    buckets, attributes, counts and sums as when each measurement was recorded at once."""
    from steptrace._metrics import Instruments

    deferred_reader, direct_reader = InMemoryMetricReader(), InMemoryMetricReader()
    deferred_provider = MeterProvider(metric_readers=[deferred_reader])
    direct_provider = MeterProvider(metric_readers=[direct_reader])
    deferred = create_instruments(deferred_provider)
    direct = Instruments(direct_provider.get_meter("direct"))
    for name in Instruments.__slots__:  # the SDK histograms themselves, recorded at once
        setattr(direct, name, getattr(direct, name)._histogram)
    for instruments in (deferred, direct):
        for index in range(50):
            attrs = {**ATTRS, A.GEN_AI_TOKEN_TYPE: "input" if index % 2 else "output"}
            instruments.token_usage.record(index * 37, attrs)
            instruments.operation_duration.record(index / 100, ATTRS)
            instruments.execute_tool_duration.record(index / 1000, {A.GEN_AI_TOOL_NAME: "t"}, NO_EXEMPLAR)
            instruments.invoke_agent_duration.record(index / 10, {A.GEN_AI_AGENT_NAME: "a"})
            instruments.agent_step_duration.record(index / 20, {A.METRIC_ENDS_RUN: False}, NO_EXEMPLAR)
            instruments.time_to_first_chunk.record(index / 200, ATTRS)
            instruments.time_per_output_chunk.record(index / 300, ATTRS, NO_EXEMPLAR)
    expected = _points_by_metric(direct_reader)
    assert len(expected) == 7
    assert _points_by_metric(deferred_reader) == expected
    assert deferred.dropped_measurements == 0
    deferred_provider.shutdown()
    direct_provider.shutdown()


def test_a_model_calls_duration_keeps_its_exemplar() -> None:
    """Recorded at collection, on the reader's thread, the duration's exemplar would point at
    whatever span is current there; it must point at the model call's span."""
    from opentelemetry.sdk.trace import TracerProvider

    import steptrace
    from steptrace._config import reset_for_tests

    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    steptrace.configure(
        "svc", tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    try:
        with steptrace.agent_run(agent="a"), steptrace.agent_step():
            with steptrace.llm_request(model="m", provider="openai") as llm:
                llm.record_usage(input_tokens=3, output_tokens=4)
                span_id = llm.span.get_span_context().span_id
        [point] = metric_points(reader.get_metrics_data())[A.METRIC_OPERATION_DURATION]
        assert [exemplar.span_id for exemplar in point.exemplars] == [span_id]
    finally:
        reset_for_tests()


def test_a_full_buffer_drops_counted_and_warned_once_a_reader_collects(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Between two collections the buffer is bounded: past it a measurement is dropped, counted
    and warned about once, never recorded on the caller's thread (an ~0.4 s stall at 65,536)."""
    monkeypatch.setattr(_metrics, "MAX_PENDING_MEASUREMENTS", 10)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments(provider)
    reader.get_metrics_data()  # a reader that collects
    with caplog.at_level("WARNING", logger="steptrace"):
        for _ in range(25):
            instruments.execute_tool_duration.record(0.01, {A.GEN_AI_TOOL_NAME: "t"}, NO_EXEMPLAR)
    assert instruments.dropped_measurements == 15
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    [point] = metric_points(reader.get_metrics_data())[A.METRIC_EXECUTE_TOOL_DURATION]
    assert point.count == 10
    provider.shutdown()


def test_recording_costs_the_caller_an_append() -> None:
    """A measurement made on the caller's thread must not run the SDK's aggregation there."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments(provider)
    sdk_record = instruments.operation_duration._histogram.record
    calls: list[object] = []
    instruments.operation_duration._histogram.record = lambda *a, **k: calls.append(a) or sdk_record(*a, **k)
    instruments.operation_duration.record(0.5, ATTRS)
    assert calls == []
    [point] = metric_points(reader.get_metrics_data())[A.METRIC_OPERATION_DURATION]
    assert point.count == 1 and len(calls) == 1
    provider.shutdown()


def test_the_telemetry_handle_reports_dropped_measurements(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A user whose reader collects too rarely reads how many measurements were lost on the handle
    configure() returned, not on a private object."""
    from opentelemetry.sdk.trace import TracerProvider

    import steptrace
    from steptrace._config import reset_for_tests

    monkeypatch.setattr(_metrics, "MAX_PENDING_MEASUREMENTS", 10)
    reader = InMemoryMetricReader()
    telemetry = steptrace.configure(
        "svc",
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[reader]),
        jsonl_path=tmp_path / "steps.jsonl",
    )
    try:
        reader.get_metrics_data()  # a reader that has collected once, then falls behind
        search = steptrace.tool(lambda query: query)
        with steptrace.agent_run(agent="a"):
            for index in range(25):
                search(index)
            assert telemetry.dropped_measurements == 15
        [point] = metric_points(reader.get_metrics_data())[A.METRIC_EXECUTE_TOOL_DURATION]
        assert point.count == 10
        assert telemetry.dropped_measurements == 15  # a count, not reset by the collection
    finally:
        reset_for_tests()


def test_a_disabled_configuration_reports_no_dropped_measurements(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_SDK_DISABLED=true the handle still answers, with 0."""
    import steptrace
    from steptrace._config import reset_for_tests

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    try:
        assert steptrace.configure("svc").dropped_measurements == 0
    finally:
        reset_for_tests()
