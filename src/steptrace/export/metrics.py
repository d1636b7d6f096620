"""The OTLP metric exporter wrapper and its periodic reader.

One warning per outage; no attempt while this exporter's own circuit is open (the span
pipeline's outages only fold the warning, they do not stop metrics); the last export, at
shutdown, is attempted once even during an outage; and an endpoint that does not take metrics
(HTTP 404/405, gRPC UNIMPLEMENTED: a traces-only backend such as Arize Phoenix) is told once,
with how to turn metrics off, and then left alone.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from steptrace.export.circuit import Circuit
from steptrace.export.fork import finish_in_multiprocessing_children, renew_in_child
from steptrace.export.sdk_logs import failure_reason, sdk_logs_folded

logger = logging.getLogger("steptrace.otlp")

# What the SDK exporters log when the endpoint has no metrics receiver at all.
_NO_METRICS_RECEIVER = re.compile(r"\bcode: (404|405)\b|StatusCode\.UNIMPLEMENTED")
# A child's last export at exit waits at most this long.
CHILD_EXIT_TIMEOUT_MS = 5_000


class ResilientMetricExporter(MetricExporter):
    """Wraps an OTLP metric exporter: one warning per outage (none when the span processor has
    already warned about the same collector, ``spans_circuit``), no attempt while its own
    circuit is open, and none at all once the endpoint said it takes no metrics. A flush on the
    application's thread also skips a collector the span processor has just found down; the
    last export at shutdown is tried once (no retries) unless the collector is known silent.

    With cumulative temporality (the OTLP exporters' default) a skipped export loses nothing:
    the next one that gets through carries the totals.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        endpoint: str = "",
        spans_circuit: Circuit | None = None,
        timeout_s: float = 10.0,
        exporter_factory: Callable[[], MetricExporter] | None = None,
    ) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.exporter = exporter
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.circuit = Circuit()
        self.spans_circuit = spans_circuit
        self.failed_exports = 0
        self.skipped_exports = 0
        self.refused = False  # the endpoint has no metrics receiver (404/405/UNIMPLEMENTED)
        self.closing = False  # set by the reader before its last export
        self.flushing = False  # set by the reader while the application's thread flushes
        self._exporter_factory = exporter_factory
        renew_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        if self._exporter_factory is not None:  # the parent's connections are the parent's
            try:
                self.exporter = self._exporter_factory()
            except Exception:
                logger.debug("steptrace: cannot renew the OTLP metric exporter after fork", exc_info=True)

    def _spans_found_it_down(self) -> bool:
        return self.spans_circuit is not None and self.spans_circuit.in_outage

    def _collector_is_silent(self) -> bool:
        """The collector accepts connections and does not answer: another try costs its timeout."""
        return self.circuit.silent or (self.spans_circuit is not None and self.spans_circuit.silent)

    def _cut_retries(self, message: str) -> None:
        # The last export (at shutdown) gets one attempt: the SDK exporter's retries would
        # delay the program's exit by up to its timeout. Shutting it down ends the retry wait.
        with sdk_logs_folded():
            try:
                self.exporter.shutdown()
            except Exception:
                logger.debug("steptrace: OTLP metric exporter shutdown failed", exc_info=True)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        final = self.closing
        if final:  # the last chance: skipped only where it would cost the collector's timeout
            skip = self._collector_is_silent()
        else:  # a flush on the application's thread does not wait on a collector found dead
            spans_paused = self.flushing and self.spans_circuit is not None and self.spans_circuit.is_open()
            skip = self.circuit.is_open() or spans_paused
        if self.refused or skip:
            self.skipped_exports += 1
            return MetricExportResult.FAILURE
        ok = False
        started = time.monotonic()
        on_record = self._cut_retries if final else None
        with sdk_logs_folded(on_record=on_record) as messages:
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
        if any(_NO_METRICS_RECEIVER.search(message) for message in messages):
            self.refused = True
            logger.warning(
                "steptrace: %s does not accept OTLP metrics (%s), so steptrace stops sending "
                "them there; traces are unaffected. Set OTEL_METRICS_EXPORTER=none to turn "
                "metrics export off (a traces-only backend such as Arize Phoenix needs it).",
                self.endpoint,
                failure_reason(messages),
            )
            return MetricExportResult.FAILURE
        silent = time.monotonic() - started >= 0.9 * self.timeout_s
        if self.circuit.failed(silent=silent) and not self._spans_found_it_down():
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
        self.closing = True
        with sdk_logs_folded():
            try:
                self.exporter.shutdown(timeout_millis=timeout_millis)
            except Exception:  # a broken exporter at exit is not the user's problem
                logger.debug("steptrace: OTLP metric exporter shutdown failed", exc_info=True)


class ResilientMetricReader(PeriodicExportingMetricReader):
    """The SDK's periodic reader, whose last export (at shutdown, and when a multiprocessing
    child exits) is attempted once whatever the circuit says."""

    def __init__(self, exporter: ResilientMetricExporter, **options: Any) -> None:
        super().__init__(exporter, **options)
        self.resilient_exporter = exporter
        renew_in_child(self._after_fork_in_child)
        finish_in_multiprocessing_children(self, ResilientMetricReader._finish_in_child)

    def _after_fork_in_child(self) -> None:
        # The SDK restarts the reader's thread in the child but keeps its export lock, which
        # the parent's thread may have held at the fork.
        self._export_lock = threading.Lock()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self.resilient_exporter.flushing = True
        try:
            return super().force_flush(timeout_millis=timeout_millis)
        finally:
            self.resilient_exporter.flushing = False

    def _finish_in_child(self) -> None:
        if not self._shutdown:
            self.shutdown(timeout_millis=CHILD_EXIT_TIMEOUT_MS)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.resilient_exporter.closing = True
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
