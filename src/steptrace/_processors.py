"""The span processor steptrace adds to a TracerProvider.

One processor per provider, whose delegates configure() swaps: the SDK has no way to remove a
processor, and calling configure() again must detach the previous exporters. It also stamps the
run id on every span started inside a run (other instrumentations' HTTP or database spans too),
or, in a process with no run open, the run id another process sent in the W3C baggage,
and writes the step log synchronously at span end — never through a queue that can drop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from steptrace import _attributes as A
from steptrace._context import RUN_KEY, RunState, remote_run
from steptrace._internal import report_internal_error
from steptrace._jsonl import JsonlSpanExporter


class Delegates:
    """What one configure() call attached: the step log and other processors (OTLP).

    Once closed they stay attached until the next configure(): a span started before
    ``closed_at_ns`` that ends later (another thread, while the program exits) still gets its
    step record, and the closed OTLP processor counts and spills it; spans started later are
    not ours.
    """

    __slots__ = ("closed_at_ns", "processors", "step_log")

    def __init__(self, step_log: JsonlSpanExporter | None, processors: Sequence[SpanProcessor]) -> None:
        self.step_log = step_log
        self.processors = tuple(processors)
        self.closed_at_ns: int | None = None

    def close(self) -> None:
        """From now on, only spans started before this moment are delegated."""
        if self.closed_at_ns is None:
            self.closed_at_ns = time.time_ns()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = True
        for processor in self.processors:
            try:
                ok = processor.force_flush(timeout_millis) and ok
            except Exception as exc:
                report_internal_error("force_flush", exc)
                ok = False
        if self.step_log is not None:
            ok = self.step_log.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        for processor in self.processors:
            try:
                processor.shutdown()
            except Exception as exc:
                report_internal_error("shutdown", exc)
        if self.step_log is not None:
            self.step_log.shutdown()


def _stamp_remote_run(span: Span, parent_context: otel_context.Context | None) -> None:
    """No run is open in this process: the run (and step) of the process that sent the request,
    from the W3C baggage it propagated, so this process's spans and step records join that run."""
    remote = remote_run(parent_context)
    if remote is not None:
        run_id, agent_step = remote
        span.set_attribute(A.RUN_ID, run_id)
        if agent_step is not None:
            span.set_attribute(A.AGENT_STEP_NUMBER, agent_step)


class SteptraceSpanProcessor(SpanProcessor):
    """Run ids on every span of a run; step records and OTLP export through swappable delegates."""

    def __init__(self) -> None:
        self.delegates = Delegates(None, ())

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            if (
                span.instrumentation_scope is None
                or span.instrumentation_scope.name != A.INSTRUMENTATION_SCOPE
            ):
                run = otel_context.get_value(RUN_KEY, parent_context)
                if isinstance(run, RunState):
                    span.set_attribute(A.RUN_ID, run.run_id)
                else:  # steptrace's own spans read a remote run where they start (_spans)
                    _stamp_remote_run(span, parent_context)
            for processor in self.delegates.processors:
                processor.on_start(span, parent_context)
        except Exception as exc:
            report_internal_error("span processor on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        delegates = self.delegates
        step_log = delegates.step_log
        try:
            closed_at = delegates.closed_at_ns
            if closed_at is not None and (span.start_time or 0) > closed_at:
                return  # started after shutdown(): steptrace traces nothing then
            if step_log is not None:
                step_log.write_span(span)
            for processor in delegates.processors:
                processor.on_end(span)
        except Exception as exc:
            report_internal_error("span processor on_end", exc)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.delegates.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.delegates.close()
        self.delegates.shutdown()
