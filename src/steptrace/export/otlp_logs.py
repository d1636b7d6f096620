"""The OpenTelemetry logs signal for log records made inside runs.

With an OTLP endpoint and ``OTEL_LOGS_EXPORTER`` not ``none``, each stdlib log record made inside
a run goes through the SDK's logs pipeline (a LoggerProvider, a batch processor, the OTLP log
exporter) with its trace context and ``steptrace.run_id``, so a backend shows it on its span. The
pipeline starts at the first such record: a program that logs nothing in its runs pays nothing.
A failing collector gets one warning per outage, as for spans (``sdk_logs`` folds the SDK lines).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context

from steptrace import _attributes as A
from steptrace.export.batching import SHUTDOWN_TIMEOUT_S
from steptrace.export.otlp_settings import (
    OtlpSettings,
    _check_endpoint,
    _exported_over_otlp,
    _parse_headers,
    _protocol_from_env,
    _timeout_from_env,
)
from steptrace.export.sdk_logs import failure_reason, sdk_logs_folded

# The SDK's logs modules load at the first record exported (~20 ms of import otherwise).
if TYPE_CHECKING:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

logger = logging.getLogger("steptrace.otlp")

# What shutdown waits for the last batch when the collector already refused the previous one.
_FAILING_SHUTDOWN_S = 0.5

# Python levels to the OpenTelemetry severities (the data model's mapping of syslog-like levels).
_SEVERITIES = ((50, "FATAL"), (40, "ERROR"), (30, "WARN"), (20, "INFO"), (10, "DEBUG"))


def severity(levelno: int) -> tuple[SeverityNumber, str]:
    """(severity number, severity text) for a Python level: ``WARNING`` is ``WARN``, 13."""
    from opentelemetry._logs import SeverityNumber

    for floor, text in _SEVERITIES:
        if levelno >= floor:
            return SeverityNumber[text], text
    return SeverityNumber.TRACE, "TRACE"


class _FoldedLogExporter:
    """The SDK's OTLP log exporter, its per-attempt log lines folded into one warning per outage."""

    def __init__(self, inner: LogRecordExporter, endpoint: str) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self.failing = False
        self.retrying = False  # the SDK exporter said it failed once and is retrying
        self.exported = 0
        self.failed = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        with sdk_logs_folded(on_record=self._complains) as messages:
            try:
                result = self._inner.export(batch)
            except Exception as exc:  # the SDK may raise on a transport error
                messages.append(f"{type(exc).__name__}: {exc}")
                result = LogRecordExportResult.FAILURE
        self.retrying = False
        if result is LogRecordExportResult.SUCCESS:
            self.exported += len(batch)
            if self.failing:
                self.failing = False
                logger.warning("steptrace: OTLP logs reach %s again", self._endpoint)
        else:
            self.failed += len(batch)
            if not self.failing:
                self.failing = True
                logger.warning(
                    "steptrace: cannot export log records to %s (%s); your program carries on, "
                    "log records are dropped until it answers",
                    self._endpoint,
                    failure_reason(messages),
                )
        return result

    def _complains(self, message: str) -> None:
        self.retrying = True

    def shutdown(self) -> None:
        with sdk_logs_folded():
            self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def _application_exports_logs() -> bool:
    """Whether the application installed an SDK LoggerProvider globally (``opentelemetry-instrument``
    with logging on, say): its pipeline already exports these records, now with the correlation
    keys as attributes; a second export from steptrace would duplicate every line."""
    if "opentelemetry.sdk._logs" not in sys.modules:  # no SDK provider can exist: nothing to import
        return False
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider

    return isinstance(get_logger_provider(), LoggerProvider)


class OtlpLogs:
    """Where log records go over OTLP; the SDK pipeline is built at the first record."""

    def __init__(
        self,
        endpoint: str,
        *,
        protocol: str = "grpc",
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        service_name: str = "unknown_service",
    ) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.service_name = service_name
        self._lock = threading.Lock()
        self._provider: LoggerProvider | None = None
        self.exporter: _FoldedLogExporter | None = None
        self._last_failed = 0  # failed records counted at the previous force_flush
        self._closed = False

    @classmethod
    def from_env(
        cls,
        otlp: OtlpSettings,
        *,
        protocol: str | None = None,
        headers: dict[str, str] | None = None,
        service_name: str,
    ) -> OtlpLogs | None:
        """The logs destination for ``otlp`` and the ``OTEL_EXPORTER_OTLP_LOGS_*`` variables, or
        None when ``OTEL_LOGS_EXPORTER`` is ``none`` or no endpoint serves logs."""
        if not _exported_over_otlp("OTEL_LOGS_EXPORTER") or _application_exports_logs():
            return None
        env = os.environ
        logs_protocol = _protocol_from_env("LOGS", protocol)
        endpoint = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or ""
        if endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", endpoint)
        elif otlp.endpoint:
            base = otlp.endpoint.rstrip("/")
            endpoint = f"{base}/v1/logs" if logs_protocol == "http/protobuf" else base
        if not endpoint:
            return None  # only per-signal endpoints for traces or metrics were given
        merged = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        merged.update(_parse_headers(env.get("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "")))
        merged.update(headers or {})
        return cls(
            endpoint,
            protocol=logs_protocol,
            headers=merged,
            timeout_s=_timeout_from_env("LOGS"),
            service_name=service_name,
        )

    def _make_exporter(self) -> LogRecordExporter:
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as Grpc

            return Grpc(
                endpoint=self.endpoint,
                insecure=self.endpoint.startswith("http://"),
                headers=self.headers or None,
                timeout=self.timeout_s,
            )
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Http

        return Http(endpoint=self.endpoint, headers=self.headers or None, timeout=self.timeout_s)

    def _started(self) -> LoggerProvider | None:
        provider = self._provider
        if provider is not None or self._closed:
            return provider
        with self._lock:
            if self._provider is None and not self._closed:
                from opentelemetry.sdk._logs import LoggerProvider
                from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
                from opentelemetry.sdk.resources import Resource

                exporter = _FoldedLogExporter(self._make_exporter(), self.endpoint)
                provider = LoggerProvider(
                    resource=Resource.create({"service.name": self.service_name}),
                    shutdown_on_exit=False,  # shutdown() bounds the wait; the SDK's atexit would not
                )
                # Duck-typed: subclassing the SDK's exporter class would import it with steptrace.
                provider.add_log_record_processor(
                    BatchLogRecordProcessor(cast("LogRecordExporter", exporter))
                )
                self.exporter, self._provider = exporter, provider
            return self._provider

    def emit(
        self,
        record: logging.LogRecord,
        context: otel_context.Context,
        run_id: str,
        agent_step: int | str,
        body: str,
    ) -> None:
        """Send one record made inside run ``run_id``; ``context`` carries its span, ``body`` is
        the message already redacted."""
        from opentelemetry._logs import LogRecord

        from steptrace._spans import error_type_name

        provider = self._started()
        if provider is None:
            return
        attributes: dict[str, Any] = {
            A.RUN_ID: run_id,
            "code.file.path": record.pathname,
            "code.function.name": record.funcName,
            "code.line.number": record.lineno,
        }
        if isinstance(agent_step, int):
            attributes[A.AGENT_STEP_NUMBER] = agent_step
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            attributes["exception.type"] = error_type_name(exc_info[1])
        number, text = severity(record.levelno)
        provider.get_logger(record.name).emit(
            LogRecord(
                timestamp=int(record.created * 1e9),
                context=context,
                severity_number=number,
                severity_text=text,
                body=body,
                attributes=attributes,
            )
        )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send what is queued; False if a batch failed since the last flush (as for spans)."""
        provider, exporter = self._provider, self.exporter
        if provider is None or exporter is None:
            return True
        ok = bool(provider.force_flush(timeout_millis))
        failed = exporter.failed
        previously, self._last_failed = self._last_failed, failed
        return ok and failed == previously

    def shutdown(self) -> None:
        """Flush and stop, waiting at most ``SHUTDOWN_TIMEOUT_S`` (a moment if the collector is
        known to be failing): a program's exit never waits out the exporter's retries."""
        with self._lock:
            self._closed = True
            provider, self._provider = self._provider, None
        if provider is None:
            return
        exporter = self.exporter
        wait_s = min(self.timeout_s, SHUTDOWN_TIMEOUT_S)
        closing = threading.Thread(target=provider.shutdown, name="steptrace-otlp-logs-shutdown", daemon=True)
        closing.start()
        deadline = time.monotonic() + wait_s
        while closing.is_alive() and time.monotonic() < deadline:
            if exporter is not None and (exporter.failing or exporter.retrying):
                # Refused once: the retries would only spend the time the exit waits.
                deadline = min(deadline, time.monotonic() + _FAILING_SHUTDOWN_S)
            closing.join(0.02)
        if closing.is_alive() and not (exporter is not None and exporter.failing):  # not yet said
            refused = exporter is not None and exporter.retrying
            logger.warning(
                "steptrace: the last log records were not exported: %s %s",
                self.endpoint,
                "refused them" if refused else f"did not answer within {wait_s:.1f} s",
            )
