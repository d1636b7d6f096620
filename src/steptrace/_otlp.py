"""OTLP export of traces and metrics to a collector.

configure() builds the settings from its arguments and the standard ``OTEL_EXPORTER_OTLP_*``
variables, then asks this module for a span processor and a metric reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from steptrace._errors import ConfigError

PROTOCOLS = ("grpc", "http/protobuf")


def _parse_headers(raw: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"OTLP header {item!r} is not key=value")
        headers[key.strip().lower()] = value.strip()
    return headers


def _check_endpoint(name: str, endpoint: str) -> str:
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name}={endpoint!r} is not an http(s) URL like http://localhost:4317")
    try:
        parsed.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{name}={endpoint!r} has a malformed port") from exc
    return endpoint


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to send OTLP; per-signal endpoints are complete URLs."""

    endpoint: str | None
    traces_endpoint: str
    metrics_endpoint: str
    protocol: str = "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    spill_path: Path | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(
        cls,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: dict[str, str] | None = None,
        spill_path: Path | None = None,
    ) -> OtlpSettings | None:
        """Settings from arguments, else the standard variables; None when no endpoint is set."""
        env = os.environ
        endpoint = endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        metrics = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or None
        if endpoint is None and traces is None and metrics is None:
            return None
        protocol = (
            protocol
            or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        ).strip()
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"unknown OTLP protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}"
            )
        if endpoint is not None:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        base = (endpoint or "").rstrip("/")
        if protocol == "http/protobuf":
            traces = traces or f"{base}/v1/traces"
            metrics = metrics or f"{base}/v1/metrics"
        else:
            traces = traces or base
            metrics = metrics or base
        if traces:
            _check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)
        if metrics:
            _check_endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics)
        merged = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        merged.update(headers or {})
        timeout = float(env.get("OTEL_EXPORTER_OTLP_TIMEOUT", "10000")) / 1000.0
        return cls(endpoint, traces or "", metrics or "", protocol, merged, spill_path, timeout)


class _FailureTrackingExporter(SpanExporter):
    """Remembers whether an export failed since the last flush, so force_flush can say so."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = False

    def export(self, spans: "list[ReadableSpan]") -> SpanExportResult:  # type: ignore[override]
        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.failed = True
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _ReportingBatchSpanProcessor(BatchSpanProcessor):
    def __init__(self, exporter: _FailureTrackingExporter) -> None:
        super().__init__(exporter)
        self._tracking = exporter

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        flushed = super().force_flush(timeout_millis)
        failed, self._tracking.failed = self._tracking.failed, False
        return flushed and not failed


def _span_exporter(settings: OtlpSettings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        insecure = settings.traces_endpoint.startswith("http://")
        return Grpc(
            endpoint=settings.traces_endpoint,
            insecure=insecure,
            headers=settings.headers or None,
            timeout=settings.timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=settings.traces_endpoint, headers=settings.headers or None, timeout=settings.timeout_s)


def make_span_processor(settings: OtlpSettings) -> SpanProcessor:
    """The processor that batches spans to the collector; force_flush is False after a failure."""
    return _ReportingBatchSpanProcessor(_FailureTrackingExporter(_span_exporter(settings)))


def make_metric_reader(settings: OtlpSettings) -> MetricReader:
    """A periodic reader exporting the histograms over OTLP."""
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        exporter = Grpc(
            endpoint=settings.metrics_endpoint,
            insecure=settings.metrics_endpoint.startswith("http://"),
            headers=settings.headers or None,
            timeout=settings.timeout_s,
        )
        return PeriodicExportingMetricReader(exporter)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

    return PeriodicExportingMetricReader(
        Http(endpoint=settings.metrics_endpoint, headers=settings.headers or None, timeout=settings.timeout_s)
    )
