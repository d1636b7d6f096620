"""OTLP export that never hurts the agent it observes: a bounded, counted queue and a spill file.

configure() builds ``OtlpSettings`` from its arguments and the standard ``OTEL_EXPORTER_OTLP_*``
variables, then asks this package for a span processor and a metric reader. When the collector
is down, slow or refusing, batches go to a local spill file in the step-record schema (so the run
can still be debugged), one warning is logged per outage, and ``force_flush()`` returns False.

One module per mechanism: ``otlp_settings`` (settings, env parsing), ``sdk_logs`` (folding the
SDK exporters' log lines), ``circuit``, ``spill`` (the spill file), ``batching`` (the span
processor), ``metrics`` (the metric exporter wrapper and reader), ``fork`` (forked children),
``otlp_logs`` (the logs signal for log records made inside runs).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from steptrace.export.batching import SHUTDOWN_TIMEOUT_S, ResilientSpanProcessor
from steptrace.export.circuit import Circuit, circuit_for
from steptrace.export.metrics import ResilientMetricExporter, ResilientMetricReader
from steptrace.export.otlp_settings import OtlpSettings
from steptrace.export.spill import SpillFile

__all__ = [
    "Circuit",
    "OtlpSettings",
    "ResilientMetricExporter",
    "ResilientMetricReader",
    "ResilientSpanProcessor",
    "SpillFile",
    "make_metric_reader",
    "make_span_processor",
]


# The exporters are imported where used: only the transport in use (grpc or requests) loads.
def _span_exporter(settings: OtlpSettings) -> SpanExporter:
    url = settings.traces_endpoint
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as Grpc,
        )

        return Grpc(
            endpoint=url,
            insecure=url.startswith("http://"),
            headers=settings.headers or None,
            timeout=settings.timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as Http,
    )

    return Http(endpoint=url, headers=settings.headers or None, timeout=settings.timeout_s)


def _metric_exporter(settings: OtlpSettings) -> MetricExporter:
    url = settings.metrics_endpoint or None
    headers = settings.metrics_headers or None
    timeout_s = settings.metrics_timeout_s
    if settings.metrics_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as Grpc,
        )

        return Grpc(
            endpoint=url,
            insecure=url.startswith("http://") if url else None,
            headers=headers,
            timeout=timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as Http,
    )

    return Http(endpoint=url, headers=headers, timeout=timeout_s)


def make_span_processor(settings: OtlpSettings, **options: Any) -> SpanProcessor:
    """The processor configure() adds to the TracerProvider: see ``ResilientSpanProcessor``.

    ``options`` tune it (``max_queue_size``, ``max_export_batch_size``, ``schedule_delay_s``,
    ``shutdown_timeout_s``, ``retry_backoff_s``, ``max_retry_backoff_s``). With only a metrics
    endpoint configured, or ``OTEL_TRACES_EXPORTER=none``, spans are not exported: the processor
    does nothing.
    """
    if not settings.traces_endpoint or not settings.export_traces:
        return SpanProcessor()
    options.setdefault("shutdown_timeout_s", min(settings.timeout_s, SHUTDOWN_TIMEOUT_S))
    backoff = {
        "backoff_s": options.pop("retry_backoff_s", 1.0),
        "max_backoff_s": options.pop("max_retry_backoff_s", 30.0),
    }
    return ResilientSpanProcessor(
        _span_exporter(settings),
        endpoint=settings.traces_endpoint,
        spill_path=settings.spill_path,
        spill_rotation=settings.spill_rotation,
        circuit=circuit_for(settings, **backoff),
        exporter_factory=lambda: _span_exporter(settings),
        **options,
    )


def make_metric_reader(settings: OtlpSettings, *, export_interval_s: float | None = None) -> MetricReader:
    """The periodic OTLP reader configure() gives to the MeterProvider.

    The interval is ``export_interval_s``, else ``OTEL_METRIC_EXPORT_INTERVAL`` (ms), else 60 s.
    Without a metrics endpoint (only a traces one set), the SDK's default endpoint is used.
    """
    same_collector = bool(settings.traces_endpoint) and (
        urlparse(settings.traces_endpoint).netloc == urlparse(settings.metrics_endpoint).netloc
    )
    timeout_s = settings.metrics_timeout_s or settings.timeout_s
    return ResilientMetricReader(
        ResilientMetricExporter(
            _metric_exporter(settings),
            endpoint=settings.metrics_endpoint,
            spans_circuit=circuit_for(settings) if same_collector else None,
            timeout_s=timeout_s,
            exporter_factory=lambda: _metric_exporter(settings),
        ),
        export_interval_millis=export_interval_s * 1000.0 if export_interval_s else None,
        export_timeout_millis=timeout_s * 1000.0,
    )
