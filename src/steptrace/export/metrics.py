"""The OTLP metric exporter wrapper: one warning per outage, and no attempt while the
collector is known to be down."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from steptrace.export.circuit import Circuit
from steptrace.export.sdk_logs import failure_reason, sdk_logs_folded

logger = logging.getLogger("steptrace.otlp")


class ResilientMetricExporter(MetricExporter):
    """Wraps an OTLP metric exporter: one warning per outage, and no export attempt while the
    collector is known to be down, from this exporter's failures or, for the same collector,
    from the span processor's (``spans_circuit``), whose warning then stands for both.

    With cumulative temporality (the OTLP exporters' default) a skipped export loses nothing:
    the next one that gets through carries the totals.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        endpoint: str = "",
        spans_circuit: Circuit | None = None,
    ) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.exporter = exporter
        self.endpoint = endpoint
        self.circuit = Circuit()
        self.spans_circuit = spans_circuit
        self.failed_exports = 0
        self.skipped_exports = 0

    def _spans_found_it_down(self) -> bool:
        return self.spans_circuit is not None and self.spans_circuit.in_outage

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        spans_paused = self.spans_circuit is not None and self.spans_circuit.is_open()
        if self.circuit.is_open() or spans_paused:
            self.skipped_exports += 1
            return MetricExportResult.FAILURE
        ok = False
        with sdk_logs_folded() as messages:
            try:
                result = self.exporter.export(metrics_data, timeout_millis=timeout_millis)
                ok = result is MetricExportResult.SUCCESS
            except Exception as exc:
                messages.append(f"{type(exc).__name__}: {exc}")
        if ok:
            if self.circuit.succeeded():
                logger.info("steptrace: OTLP metric export to %s works again", self.endpoint)
            return MetricExportResult.SUCCESS
        self.failed_exports += 1
        if self.circuit.failed() and not self._spans_found_it_down():
            logger.warning(
                "steptrace: OTLP metric export to %s failed (%s); the next export that gets "
                "through carries the totals. Logged once per outage; your program is unaffected.",
                self.endpoint,
                failure_reason(messages),
            )
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.exporter.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with sdk_logs_folded():
            self.exporter.shutdown(timeout_millis=timeout_millis)
