"""OTLP export that never hurts the agent it observes: a bounded, counted queue and a spill file.

configure() builds ``OtlpSettings`` from its arguments and the standard ``OTEL_EXPORTER_OTLP_*``
variables, then asks this module for a span processor and a metric reader. When the collector is
down, slow or refusing, batches go to a local spill file in the step-record schema (so the run can
still be debugged), one warning is logged per outage, and ``force_flush()`` returns False.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from steptrace._errors import ConfigError
from steptrace._jsonl import encode_record, span_to_record

logger = logging.getLogger("steptrace.otlp")

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_TIMEOUT_S = 10.0
# shutdown() waits at most this long for a collector that does not answer (see ResilientSpan...)
SHUTDOWN_TIMEOUT_S = 5.0

# The SDK exporters log one line per failed attempt and per retry. While *our* threads export,
# those records are folded into our single warning per outage; other threads' records pass.
_SDK_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
)


def _parse_headers(raw: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` with URL-encoded values, as ``OTEL_EXPORTER_OTLP_HEADERS``."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"OTLP header {item.strip()!r} is not key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
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


def _timeout_from_env() -> float:
    raw = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
        or "10000"
    )
    try:
        timeout_s = float(raw) / 1000.0  # milliseconds, as the OpenTelemetry specification says
    except ValueError:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT={raw!r} is not milliseconds") from None
    if not timeout_s > 0:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT={raw!r} must be positive")
    return timeout_s


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to send OTLP; per-signal endpoints are complete URLs."""

    endpoint: str | None
    traces_endpoint: str
    metrics_endpoint: str
    protocol: str = "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    spill_path: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown OTLP protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if self.endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint)
        if self.traces_endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", self.traces_endpoint)
        if self.metrics_endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", self.metrics_endpoint)
        if not self.timeout_s > 0:
            raise ConfigError(f"OTLP timeout must be positive, got {self.timeout_s!r} s")

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
            raise ConfigError(f"unknown OTLP protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if endpoint is not None:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        base = (endpoint or "").rstrip("/")
        if protocol == "http/protobuf":
            traces = traces or (f"{base}/v1/traces" if base else None)
            metrics = metrics or (f"{base}/v1/metrics" if base else None)
        else:
            traces = traces or base
            metrics = metrics or base
        merged = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        merged.update(headers or {})
        return cls(endpoint, traces or "", metrics or "", protocol, merged, spill_path, _timeout_from_env())


# --- folding the SDK exporters' per-attempt logs on our threads ---------------------------------


class _Quiet(threading.local):
    def __init__(self) -> None:
        self.active = False
        self.messages: list[str] = []
        self.on_record: Callable[[str], None] | None = None


_quiet = _Quiet()


class _FoldSdkExporterLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _quiet.active:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break logging
            message = str(record.msg)
        if len(_quiet.messages) < 8:
            _quiet.messages.append(message)
        if _quiet.on_record is not None:  # the exporter complains: it failed once, and retries
            _quiet.on_record(message)
        return False


_fold_filter = _FoldSdkExporterLogs()
for _name in _SDK_EXPORTER_LOGGERS:
    logging.getLogger(_name).addFilter(_fold_filter)


@contextmanager
def _sdk_logs_folded(on_record: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Swallow the SDK exporters' log records made on this thread; yield what they said.

    ``on_record`` is called at each record: a healthy export logs nothing, so the first record
    means the exporter is failing and is about to spend its timeout retrying.
    """
    _quiet.active = True
    _quiet.messages = []
    _quiet.on_record = on_record
    try:
        yield _quiet.messages
    finally:
        _quiet.active = False
        _quiet.on_record = None


class _Circuit:
    """The health of one collector, shared by the span processor and the metric exporter of one
    configuration: one warning per outage for both, and neither waits on a collector the other
    has just found dead. After a failure, attempts pause for a backoff that doubles to a cap."""

    def __init__(self, backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        self.base_backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._backoff_s = backoff_s
        self.retry_at = 0.0
        self.in_outage = False

    def is_open(self) -> bool:
        """True while attempts are paused after a failure."""
        return time.monotonic() < self.retry_at

    def failed(self, *, escalate: bool = True) -> bool:
        """Record a failure; True if it starts an outage (the caller warns). ``escalate=False``
        pauses again without doubling the backoff (the same failure, seen a second time)."""
        with self._lock:
            self.retry_at = time.monotonic() + self._backoff_s
            if escalate:
                self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)
            started, self.in_outage = not self.in_outage, True
        return started

    def succeeded(self) -> bool:
        """Record a success; True if it ends an outage (the caller says so)."""
        with self._lock:
            self._backoff_s = self.base_backoff_s
            self.retry_at = 0.0
            ended, self.in_outage = self.in_outage, False
        return ended


# configure() passes one settings object to make_span_processor and make_metric_reader: both
# get the same circuit through it (keyed by identity; the entry goes with the object).
_circuits: dict[int, _Circuit] = {}


def _circuit_for(settings: OtlpSettings, **backoff: float) -> _Circuit:
    key = id(settings)
    circuit = _circuits.get(key)
    if circuit is None:
        circuit = _circuits[key] = _Circuit(**backoff)
        weakref.finalize(settings, _circuits.pop, key, None)
    return circuit


def _reason(messages: list[str]) -> str:
    """What the SDK exporter said first (the cause) and last (its verdict), bounded."""
    if not messages:
        return "no reason given"
    said = [text if len(text) <= 200 else text[:200] + "..." for text in messages]
    return " / ".join(dict.fromkeys((said[0], said[-1])))


# --- the spill file ------------------------------------------------------------------------------


class SpillFile:
    """Appends spans as step records (one JSON line each) to a 0600 file; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, spans: Sequence[ReadableSpan]) -> int:
        """Append the records of ``spans``; returns how many were written (a span outside any
        agent run has no step record). Raises OSError if the file cannot be written."""
        lines: list[bytes] = []
        for span in spans:
            record = span_to_record(span)  # exactly what the JSONL step log would hold
            if record is not None:
                lines.append(encode_record(record))
        if not lines:
            return 0
        data = b"".join(lines)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)
        return len(lines)


# --- the span processor --------------------------------------------------------------------------


class _Flush:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class ResilientSpanProcessor(SpanProcessor):
    """Batches finished spans to ``exporter`` on a daemon thread; never blocks or raises.

    * ``on_end`` costs one lock and an append. When the bounded queue is full, the span is not
      queued: it is counted in ``dropped_spans``, written to the spill file, and one warning is
      logged per episode.
    * A failed export (collector down, refusing, or silent past the timeout) sends the batch to
      the spill file, logs one warning per outage, and opens the circuit: for ``retry_backoff_s``
      (doubling up to ``max_retry_backoff_s``) batches go straight to the spill file, then
      delivery is tried again; an info line says when it works again.
    * ``force_flush()`` is False if any span since the previous flush was not delivered. It does
      not wait for an exporter that is retrying a failed export: it spills what is queued.
    * ``shutdown()`` does not wait for a failing exporter at all, and for a silent one at most
      ``shutdown_timeout_s`` from the start of the stuck export; then it spills what is left.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        endpoint: str = "",
        spill_path: Path | None = None,
        max_queue_size: int = 8192,
        max_export_batch_size: int = 512,
        schedule_delay_s: float = 1.0,
        shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
        retry_backoff_s: float = 1.0,
        max_retry_backoff_s: float = 30.0,
        circuit: _Circuit | None = None,
    ) -> None:
        if max_export_batch_size <= 0 or max_queue_size < max_export_batch_size:
            raise ConfigError("the OTLP queue must hold at least one export batch (> 0 spans)")
        self.exporter = exporter
        self.endpoint = endpoint
        self.spill = SpillFile(spill_path) if spill_path is not None else None
        self.max_queue_size = max_queue_size
        self.max_export_batch_size = max_export_batch_size
        self.schedule_delay_s = schedule_delay_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.circuit = circuit or _Circuit(retry_backoff_s, max_retry_backoff_s)

        # Counters: monotonic, never reset, readable at any time.
        self.exported_spans = 0  # accepted by the collector
        self.failed_spans = 0  # in batches the collector did not accept (or never got)
        self.dropped_spans = 0  # never queued: the queue was full, or after shutdown
        self.spilled_spans = 0  # written to the spill file (from failed or dropped)
        self.failed_exports = 0  # export attempts that failed

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[ReadableSpan] = deque()
        self._in_flight: list[ReadableSpan] | None = None
        self._in_flight_since = 0.0
        self._export_failing = False  # the export in flight has failed once and is retrying
        self._flushes: list[_Flush] = []
        self._undelivered_since_flush = False
        self._closing = False
        self._spilled_this_outage = 0
        self._overflowing = False
        self._spill_error_reported = False
        self._worker = threading.Thread(target=self._run, name="steptrace-otlp", daemon=True)
        self._worker.start()
        # A process forked after configure() (gunicorn --preload, multiprocessing) has no worker
        # thread and possibly a lock held by one: give the child its own, with an empty queue.
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._reinit_after_fork)

            def reinit_in_child() -> None:
                method = reinit()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=reinit_in_child)

    def _reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue = deque()  # the parent's spans are the parent's to export
        self._in_flight = None
        self._flushes = []
        self._undelivered_since_flush = False
        if self._closing:
            return
        self._worker = threading.Thread(target=self._run, name="steptrace-otlp", daemon=True)
        self._worker.start()

    # -- the application's side: cheap, and never raises --

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        with self._lock:
            if not self._closing and len(self._queue) < self.max_queue_size:
                self._queue.append(span)
                if len(self._queue) == self.max_export_batch_size:
                    self._wake.notify()
                return
            self.dropped_spans += 1
            self._undelivered_since_flush = True
            first_overflow = not self._overflowing and not self._closing
            self._overflowing = True
        if first_overflow:
            logger.warning(
                "steptrace: the OTLP export queue is full (%d spans; export to %s cannot keep "
                "up); spans that do not fit are counted in dropped_spans%s. Your program is "
                "unaffected.",
                self.max_queue_size,
                self.endpoint,
                f" and written to {self.spill.path}" if self.spill else " and lost",
            )
        self._spill([span])

    # -- the worker thread --

    def _run(self) -> None:
        while True:
            with self._lock:
                deadline = time.monotonic() + self.schedule_delay_s
                while not (self._closing or self._flushes or len(self._queue) >= self.max_export_batch_size):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                flushes, self._flushes = self._flushes, []
                closing = self._closing
            while True:  # a flush or shutdown wants everything queued; a timer tick one batch
                with self._lock:
                    if not self._queue:
                        self._overflowing = False
                        break
                    count = min(self.max_export_batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(count)]
                    self._in_flight = batch
                    self._in_flight_since = time.monotonic()
                    self._export_failing = False
                self._deliver(batch)
                if not (flushes or closing) and len(self._queue) < self.max_export_batch_size:
                    break
            with self._lock:
                undelivered = self._undelivered_since_flush
                if flushes:
                    self._undelivered_since_flush = False
            for flush in flushes:
                flush.ok = not undelivered
                flush.done.set()
            if closing:
                return

    def _note_export_failing(self, message: str) -> None:
        """Called (on the worker) at the exporter's first complaint, before its retries."""
        if not self._export_failing:
            self._export_failing = True
            self._outage_started(_reason([message]))

    def _outage_started(self, reason: str, *, escalate: bool = True) -> None:
        if self.circuit.failed(escalate=escalate):
            self._spilled_this_outage = 0
            logger.warning(
                "steptrace: OTLP export to %s failed (%s); undelivered spans go to %s until it "
                "recovers. Logged once per outage; your program is unaffected.",
                self.endpoint,
                reason,
                self.spill.path if self.spill else "nowhere (no spill file configured)",
            )

    def _deliver(self, batch: list[ReadableSpan]) -> None:
        attempted = not self.circuit.is_open()
        ok = False
        reason = "collector unreachable; waiting before trying again"
        if attempted:
            with _sdk_logs_folded(on_record=self._note_export_failing) as messages:
                try:
                    ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
                except Exception as exc:  # an exporter bug must not kill the worker
                    messages.append(f"{type(exc).__name__}: {exc}")
            reason = _reason(messages)
        with self._lock:
            owned = self._in_flight is batch  # False once shutdown() spilled it
            self._in_flight = None
            already_noted = self._export_failing
            self._export_failing = False
            if ok:
                self.exported_spans += len(batch)
            else:
                self.failed_spans += len(batch)
                self._undelivered_since_flush = True
                if attempted:
                    self.failed_exports += 1
        if ok:
            if self.circuit.succeeded():
                logger.info(
                    "steptrace: OTLP export to %s works again; %d spans from the outage are in %s",
                    self.endpoint,
                    self._spilled_this_outage,
                    self.spill.path if self.spill else "no spill file",
                )
            return
        if attempted:
            self._outage_started(reason, escalate=not already_noted)
        if owned:
            self._spilled_this_outage += self._spill(batch)

    def _spill(self, spans: Sequence[ReadableSpan]) -> int:
        if self.spill is None or not spans:
            return 0
        try:
            written = self.spill.write(spans)
        except Exception as exc:
            if not self._spill_error_reported:
                self._spill_error_reported = True
                logger.warning(
                    "steptrace: cannot write the OTLP spill file %s (%s); undelivered spans are "
                    "lost. Your program is unaffected.",
                    self.spill.path,
                    exc,
                )
            return 0
        with self._lock:
            self.spilled_spans += written
        return written

    def _spill_queued(self) -> None:
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
            self.failed_spans += len(queued)
            self._undelivered_since_flush = True
        self._spill(queued)

    # -- lifecycle --

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver (or spill) everything queued; False if anything since the last flush was not
        delivered, or the queue did not drain within ``timeout_millis``."""
        flush = _Flush()
        with self._lock:
            if self._closing:
                return not self._undelivered_since_flush
            self._flushes.append(flush)
            self._wake.notify()
        deadline = time.monotonic() + timeout_millis / 1000.0
        while not flush.done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            with self._lock:
                failing = self._export_failing
                stuck_for = time.monotonic() - self._in_flight_since if self._in_flight else 0.0
            if failing or stuck_for >= self.shutdown_timeout_s:
                # The exporter is retrying a failed export, or the collector is silent: the
                # answer is False either way, so keep the queued spans locally, do not wait.
                if not failing:
                    self._outage_started(f"no answer within {self.shutdown_timeout_s:.1f} s")
                self._spill_queued()
                return False
            if time.monotonic() >= deadline:
                return False
        return flush.ok

    def shutdown(self) -> None:
        """Deliver what is queued; do not wait for a failing collector, nor longer than
        ``shutdown_timeout_s`` for a silent one; spill what is left."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._wake.notify()
            stuck_for = time.monotonic() - self._in_flight_since if self._in_flight else 0.0
            failing = self._export_failing
        known_bad = failing or self.circuit.is_open()
        self._worker.join(0.0 if known_bad else max(0.05, self.shutdown_timeout_s - stuck_for))
        if self._worker.is_alive():
            # Cut the exporter's retries short (a gRPC call in flight is cancelled too), give
            # the worker a moment to spill its batch, then keep whatever is left locally.
            self._shutdown_exporter()
            self._worker.join(0.5)
        if self._worker.is_alive():
            with self._lock:
                leftover = list(self._in_flight or ()) + list(self._queue)
                self._in_flight = None
                self._queue.clear()
                self.failed_spans += len(leftover)
            self._outage_started(f"no answer within {self.shutdown_timeout_s:.1f} s at shutdown")
            self._spill(leftover)
        self._shutdown_exporter()

    def _shutdown_exporter(self) -> None:
        with _sdk_logs_folded():
            try:
                self.exporter.shutdown()  # a second call only logs (folded) and returns
            except Exception:  # a broken exporter at exit is not the user's problem
                logger.debug("steptrace: OTLP exporter shutdown failed", exc_info=True)


# --- metrics -------------------------------------------------------------------------------------


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
        spans_circuit: _Circuit | None = None,
    ) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.exporter = exporter
        self.endpoint = endpoint
        self.circuit = _Circuit()
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
        with _sdk_logs_folded() as messages:
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
                _reason(messages),
            )
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.exporter.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with _sdk_logs_folded():
            self.exporter.shutdown(timeout_millis=timeout_millis)


# --- the contract with configure() ---------------------------------------------------------------


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
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as Grpc,
        )

        return Grpc(
            endpoint=url,
            insecure=url.startswith("http://") if url else None,
            headers=settings.headers or None,
            timeout=settings.timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as Http,
    )

    return Http(endpoint=url, headers=settings.headers or None, timeout=settings.timeout_s)


def make_span_processor(settings: OtlpSettings, **options: Any) -> SpanProcessor:
    """The processor configure() adds to the TracerProvider: see ``ResilientSpanProcessor``.

    ``options`` tune it (``max_queue_size``, ``max_export_batch_size``, ``schedule_delay_s``,
    ``shutdown_timeout_s``, ``retry_backoff_s``, ``max_retry_backoff_s``). With only a metrics
    endpoint configured, spans are not exported: the processor does nothing.
    """
    if not settings.traces_endpoint:
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
        circuit=_circuit_for(settings, **backoff),
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
    return PeriodicExportingMetricReader(
        ResilientMetricExporter(
            _metric_exporter(settings),
            endpoint=settings.metrics_endpoint,
            spans_circuit=_circuit_for(settings) if same_collector else None,
        ),
        export_interval_millis=export_interval_s * 1000.0 if export_interval_s else None,
        export_timeout_millis=settings.timeout_s * 1000.0,
    )
