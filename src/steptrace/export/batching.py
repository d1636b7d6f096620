"""The batching span processor for OTLP: a bounded, counted queue, a daemon thread that
exports, and the spill file for whatever the collector does not take. It never blocks or raises
into the application."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from steptrace._errors import ConfigError
from steptrace.export.circuit import Circuit
from steptrace.export.fork import finish_in_multiprocessing_children, renew_in_child
from steptrace.export.rotation import RotationSettings
from steptrace.export.sdk_logs import failure_reason, sdk_logs_folded
from steptrace.export.spill import SpillFile

logger = logging.getLogger("steptrace.otlp")

# shutdown() waits at most this long for a collector that does not answer
SHUTDOWN_TIMEOUT_S = 5.0


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
        spill_rotation: RotationSettings | None = None,
        max_queue_size: int = 8192,
        max_export_batch_size: int = 512,
        schedule_delay_s: float = 1.0,
        shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
        retry_backoff_s: float = 1.0,
        max_retry_backoff_s: float = 30.0,
        circuit: Circuit | None = None,
        exporter_factory: Callable[[], SpanExporter] | None = None,
    ) -> None:
        if max_export_batch_size <= 0 or max_queue_size < max_export_batch_size:
            raise ConfigError("the OTLP queue must hold at least one export batch (> 0 spans)")
        self.exporter = exporter
        self._exporter_factory = exporter_factory  # a fresh exporter for a forked child
        self.endpoint = endpoint
        self.spill = SpillFile(spill_path, spill_rotation) if spill_path is not None else None
        self.max_queue_size = max_queue_size
        self.max_export_batch_size = max_export_batch_size
        self.schedule_delay_s = schedule_delay_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.circuit = circuit or Circuit(retry_backoff_s, max_retry_backoff_s)

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
        renew_in_child(self._after_fork_in_child)
        # A multiprocessing child leaves through os._exit: deliver or spill its spans first.
        finish_in_multiprocessing_children(self, ResilientSpanProcessor.shutdown)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue = deque()  # the parent's spans are the parent's to export
        self._in_flight = None
        self._export_failing = False  # that was the parent's export, on a thread the child lacks
        self._flushes = []
        self._undelivered_since_flush = False
        self._overflowing = False
        if self._closing:
            return
        if self._exporter_factory is not None:
            # The parent's exporter shares its pooled connections (and their locks) with the
            # parent: two processes writing on one socket garble each other's requests.
            try:
                self.exporter = self._exporter_factory()
            except Exception:  # keep the inherited one rather than break the child
                logger.debug("steptrace: cannot renew the OTLP exporter after fork", exc_info=True)
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
            self._outage_started(failure_reason([message]))

    def _outage_started(self, reason: str, *, escalate: bool = True, silent: bool = False) -> None:
        if self.circuit.failed(escalate=escalate, silent=silent):
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
        started = time.monotonic()
        ok = False
        reason = "collector unreachable; waiting before trying again"
        if attempted:
            with sdk_logs_folded(on_record=self._note_export_failing) as messages:
                try:
                    ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
                except Exception as exc:  # an exporter bug must not kill the worker
                    messages.append(f"{type(exc).__name__}: {exc}")
            reason = failure_reason(messages)
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
            silent = time.monotonic() - started >= self.shutdown_timeout_s
            self._outage_started(reason, escalate=not already_noted, silent=silent)
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
                    self._outage_started(f"no answer within {self.shutdown_timeout_s:.1f} s", silent=True)
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
            self._outage_started(f"no answer within {self.shutdown_timeout_s:.1f} s at shutdown", silent=True)
            self._spill(leftover)
        self._shutdown_exporter()
        if self.spill is not None:
            self.spill.close()  # a span ended after shutdown still spills: the file reopens

    def _shutdown_exporter(self) -> None:
        with sdk_logs_folded():
            try:
                self.exporter.shutdown()  # a second call only logs (folded) and returns
            except Exception:  # a broken exporter at exit is not the user's problem
                logger.debug("steptrace: OTLP exporter shutdown failed", exc_info=True)
