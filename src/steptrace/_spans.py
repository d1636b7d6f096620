"""Span lifecycles: the handles every traced call goes through, and the only owner of a span's life.

``AgentRun``, ``AgentStep``, ``LlmRequest`` and ``ToolCall`` start their span when created and end
it in ``finish(exc)``. This module is the one place that makes a span's context current and
restores the previous one: the runners (``run_sync``, ``run_coroutine``, ``run_generator``,
``run_async_generator``) for calls, ``Block`` for ``with`` blocks. Decorators, SDK wrappers and
stream proxies only call these. Leaving by ``GeneratorExit`` is normal; cancellation and
interrupts are recorded as such, not as failures. No function here raises into user code.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
import traceback
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, Generic, ParamSpec, TypeVar

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from steptrace import _attributes as A
from steptrace._content import ContentPolicy, arguments_digest, bounded_repr
from steptrace._context import (
    BAGGAGE_RUN_ID,
    LLM_KEY,
    RUN_KEY,
    STEP_KEY,
    RunState,
    StepState,
    capturing,
    remote_run,
    with_run_baggage,
    with_step_baggage,
)
from steptrace._guards import GuardPolicy, Guards, RunGuard, guard_cause
from steptrace._internal import internal_errors, report_internal_error
from steptrace._metrics import NO_EXEMPLAR
from steptrace._redaction import DEFAULT_REDACTOR
from steptrace._response import field_of, normalize_stop_reason, parse_response
from steptrace._state import ActiveConfig
from steptrace._where import raised_where

P = ParamSpec("P")
R = TypeVar("R")

_MAX_ERROR_MESSAGE_CHARS = 2_000
_MAX_TRACEBACK_FRAMES = 20
_MAX_TRACEBACK_CHARS = 8_000

# The active recording or rerun (``steptrace.rerun``), or None: then the only cost on every call is
# this module-level None test. Set by ``steptrace.rerun._hook`` (see DESIGN.md, "invoke").
rerun_hook: Any = None


def new_run_id() -> str:
    # random.getrandbits does not release the GIL (unlike os.urandom/uuid4), see the benchmark issue.
    return f"{random.getrandbits(128):032x}"


def error_type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, else the public dotted path: ``openai.RateLimitError``."""
    cls = type(exc)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("botocore."):
        # An AWS service error (a botocore ClientError, of a class made at run time): the
        # service's error code, ``ThrottlingException``, says what went wrong.
        code = field_of(field_of(getattr(exc, "response", None), "Error"), "Code")
        if isinstance(code, str) and code:
            return code
    public = [part for part in module.split(".") if not part.startswith("_")]
    return ".".join([*public, cls.__qualname__])


def is_cancellation(exc: BaseException) -> bool:
    """Leaving by cancellation or interrupt is not a failure of the code inside."""
    return isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit))


def redact_error_text(
    text: str, limit: int, policy: ContentPolicy | None = None, secrets: Sequence[str] = ()
) -> str:
    """An error message, redacted (detectors, ``redact_patterns``, ``redact``) and cut at ``limit``.

    ``secrets``: the values of the span's secret-named arguments, scrubbed wherever they appear.
    """
    redactor = policy.redactor if policy is not None else DEFAULT_REDACTOR
    return redactor.redact_message(text, limit, secrets)


def redact_stack_text(
    text: str, limit: int, policy: ContentPolicy | None = None, secrets: Sequence[str] = ()
) -> str:
    """A stack trace's last ``limit`` characters, redacted like an error message."""
    redactor = policy.redactor if policy is not None else DEFAULT_REDACTOR
    tail, cut = redactor.redact_stack(text, limit, secrets)
    return "...\n" + tail if cut else tail


def _bounded_message(
    exc: BaseException, content: ContentPolicy | None = None, secrets: Sequence[str] = ()
) -> str:
    try:
        message = str(exc)
    except Exception:
        message = bounded_repr(exc)
    # Error messages quote arguments and responses: redacted like captured content, always.
    return redact_error_text(message, _MAX_ERROR_MESSAGE_CHARS, content, secrets)


def _record_where(
    span: Span, exc: BaseException, stack: str, content: ContentPolicy | None, secrets: Sequence[str]
) -> None:
    """Where ``exc`` was raised, for the step record: file, line, function of the user's
    innermost frames (always, redacted); the redacted stack too with content capture on."""
    where = [
        {key: redact_error_text(value, 300, content, secrets) if isinstance(value, str) else value
         for key, value in frame.items()}
        for frame in raised_where(exc)
    ]  # fmt: skip
    if where:
        span.set_attribute(A.ERROR_WHERE, json.dumps(where))
    if stack and content is not None and capturing(content):
        span.set_attribute(A.ERROR_STACK, stack)


def record_failure(
    span: Span, exc: BaseException, content: ContentPolicy | None = None, secrets: Sequence[str] = ()
) -> str:
    """Mark ``span`` failed by ``exc``: status, ``error.type``, a bounded, redacted exception event.

    ``secrets`` (a tool's secret-named argument values) are scrubbed from message and stack.
    """
    kind = error_type_name(exc)
    message = _bounded_message(exc, content, secrets)
    try:
        stack = "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-_MAX_TRACEBACK_FRAMES)
        )
    except Exception:
        stack = ""
    stack = redact_stack_text(stack, _MAX_TRACEBACK_CHARS, content, secrets)
    span.set_attribute(A.ERROR_TYPE, kind)
    _record_where(span, exc, stack, content, secrets)
    span.add_event(
        "exception",
        {"exception.type": kind, "exception.message": message, "exception.stacktrace": stack},
    )
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))
    return kind


# --- making a context current: the one place that attaches and detaches -------------------------
# A ``ContextVar`` token can be reset only in the ``contextvars.Context`` it was made in. Setting
# this marker next to every block's attach tells, at exit, whether the exit runs in that Context
# (detach as usual) or in another one: a generator driven with ``copy_context().run(next, gen)``
# (Starlette, anyio) or an async generator closed by the event loop's finalizer task. There,
# OpenTelemetry's detach would fail and log; the block restores the parent instead, if needed.
_BLOCK_MARKER: ContextVar[None] = ContextVar("steptrace_block_marker", default=None)
BLOCK_KEY = otel_context.create_key("steptrace.block")


class Block:
    """One ``with`` block: makes ``context`` current on ``enter``, restores the parent on ``exit``.

    Single use. ``owner`` is the object whose ``__exit__`` will end the block (a spec, a
    ``capture_content``) and ``handle`` the handle it ends, if any; ``find_block`` finds the
    innermost open block of an owner. ``frame`` is the frame whose ``with`` statement entered it
    (``OpenBlocks`` keys the owner's open blocks by it).
    """

    __slots__ = ("_marker", "_token", "context", "frame", "handle", "owner", "parent")

    def __init__(
        self, context: otel_context.Context, owner: object, handle: Any = None, frame: object = None
    ) -> None:
        self.owner = owner
        self.handle = handle
        self.frame = frame
        self.parent = otel_context.get_current()
        self.context = otel_context.set_value(BLOCK_KEY, self, context)
        self._token: object | None = None
        self._marker: Token[None] | None = None

    def enter(self) -> None:
        self._token = otel_context.attach(self.context)
        self._marker = _BLOCK_MARKER.set(None)

    def exit(self) -> None:
        token, marker = self._token, self._marker
        self._token = self._marker = None
        if token is None or marker is None:
            return
        try:
            _BLOCK_MARKER.reset(marker)
        except ValueError:  # another Context runs this exit: nothing of ours to detach here
            if otel_context.get_current() is self.context:
                otel_context.attach(self.parent)  # a copy made after enter: show the parent again
            return
        otel_context.detach(token)  # type: ignore[arg-type]


def find_block(owner: object) -> Block | None:
    """The innermost open block of ``owner`` in the current context, if any."""
    block = otel_context.get_value(BLOCK_KEY)
    while isinstance(block, Block):
        if block.owner is owner:
            return block
        block = block.parent.get(BLOCK_KEY)
    return None


class OpenBlocks:
    """The open ``with`` blocks of one owner (a spec that concurrent requests share), so that each
    exit ends the block its own entry opened.

    The context cannot tell: an exit may run in another ``contextvars.Context`` than its entry (a
    generator stepped with ``copy_context().run(next, gen)`` by Starlette or anyio, an async
    generator closed by the loop's finalizer), and two requests' contexts may be copies of one
    parent, identical in every variable. What an exit always shares with its entry is the frame
    of the ``with`` statement, so blocks are keyed by that frame (held, so its id stays unique
    while the block is open). An entry or exit from another frame (``ExitStack``) falls back to
    the innermost open block of the owner in the current context, then to the only open one.
    """

    __slots__ = ("_by_frame", "_lock")

    def __init__(self) -> None:
        self._by_frame: dict[int, list[Block]] = {}
        self._lock = threading.Lock()

    def add(self, block: Block) -> None:
        with self._lock:
            self._by_frame.setdefault(id(block.frame), []).append(block)

    def take(self, owner: object, frame: object) -> Block | None:
        """The block an exit called from ``frame`` ends, no longer open; None if none is known."""
        with self._lock:
            by_frame = self._by_frame
            blocks = by_frame.get(id(frame))
            block = blocks[-1] if blocks and blocks[-1].frame is frame else None
            if block is None:
                block = self._open_in_context(owner)
            if block is None and len(by_frame) == 1:
                (only,) = by_frame.values()
                block = only[-1] if len(only) == 1 else None
            if block is None:
                return None
            key = id(block.frame)
            blocks = by_frame[key]
            blocks.remove(block)
            if not blocks:
                del by_frame[key]
            block.frame = None  # let the frame go
            return block

    def _open_in_context(self, owner: object) -> Block | None:
        block = otel_context.get_value(BLOCK_KEY)
        while isinstance(block, Block):
            if block.owner is owner and block in self._by_frame.get(id(block.frame), ()):
                return block
            block = block.parent.get(BLOCK_KEY)
        return None


def run_in_context(context: otel_context.Context, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``fn`` with ``context`` current, restoring the caller's afterwards."""
    token = otel_context.attach(context)
    try:
        return fn(*args, **kwargs)
    finally:
        otel_context.detach(token)


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Return a callable that runs ``fn`` in the caller's run, step and span context.

    Threads do not inherit the context; wrap work submitted to a pool so its spans join the run::

        with steptrace.agent_run(agent="researcher"):
            with ThreadPoolExecutor() as pool:
                results = list(pool.map(steptrace.bind_context(search_documents), queries))

    The returned callable may run in several threads at once.
    """
    captured = otel_context.get_current()

    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_in_context(captured, fn, *args, **kwargs)

    bound.__wrapped__ = fn  # type: ignore[attr-defined]
    bound.__name__ = getattr(fn, "__name__", "bound")
    bound.__doc__ = getattr(fn, "__doc__", None)
    return bound


async def await_in_context(context: otel_context.Context, awaitable: Awaitable[R]) -> R:
    """Await ``awaitable`` with ``context`` current (for the await only)."""
    token = otel_context.attach(context)
    try:
        return await awaitable
    finally:
        otel_context.detach(token)


# --- the handles -------------------------------------------------------------------------------
def _run_guard(
    policy: GuardPolicy | None, override: Guards | None, run_id: str, span: Span
) -> RunGuard | None:
    """The run's guards: ``override`` (agent_run(guards=...)) or the configured ones; None if none."""
    guards = override if override is not None else policy.guards if policy is not None else None
    if guards is None or not guards.enabled:
        return None
    if override is not None and override.max_cost_usd is not None:
        from steptrace._pricing import warm_up_runtime_pricing

        warm_up_runtime_pricing()  # once per process; warns if genai-prices is missing
    return RunGuard(guards, policy.on_guard if policy is not None else "raise", run_id, span)


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit))


class _Operation:
    """Shared lifecycle: a started span, the context that makes it current, the clock."""

    __slots__ = ("_config", "_context", "_finished", "_rerun", "_run", "_started", "_trip", "span")
    _rerun: Any  # unset unless rerun_hook keeps its state for this call here

    def _start(
        self,
        config: ActiveConfig,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        parent: otel_context.Context,
        run: RunState | None,
    ) -> None:
        self._config = config
        self._run = run
        self._finished = False
        # What a guard raises instead of the call (the runners raise it before invoking), or None.
        self._trip: BaseException | None = None
        if run is not None:
            attributes[A.RUN_ID] = run.run_id
            attributes[A.STEP] = run.next_step()
        else:  # no run here: the caller's, when this process serves a request of another's run
            remote = remote_run(parent)
            if remote is not None:
                attributes[A.RUN_ID] = remote[0]
                if remote[1] is not None and A.AGENT_STEP_NUMBER not in attributes:
                    attributes[A.AGENT_STEP_NUMBER] = remote[1]
                if baggage.get_baggage(BAGGAGE_RUN_ID, parent) is None:
                    # Found on the parent span only (its library dropped the baggage): carry the
                    # run on from here, to the services this code calls in turn.
                    parent = with_run_baggage(parent, remote[0])
                    if remote[1] is not None:
                        parent = with_step_baggage(parent, remote[1])
        self.span = config.tracer.start_span(name, parent, kind, attributes)
        self._context = trace.set_span_in_context(self.span, parent)
        self._started = time.perf_counter()

    @property
    def context(self) -> otel_context.Context:
        """The context in which this span is current; ``bind_context`` or attach it elsewhere."""
        return self._context

    @property
    def finished(self) -> bool:
        """Whether the span has ended."""
        return self._finished

    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute on the span (ignored once the span has ended)."""
        with internal_errors("set_attribute"):
            self.span.set_attribute(key, value)

    def finish(self, exc: BaseException | None = None) -> None:
        """End the span; ``exc`` is the exception leaving it, if any. Idempotent; never raises.

        ``GeneratorExit`` (a consumer that stopped reading) is a normal exit; cancellation and
        interrupts mark the span ``steptrace.cancelled``; anything else fails it.
        """
        if self._finished:
            return
        self._finished = True
        duration = time.perf_counter() - self._started
        error_type: str | None = None
        try:  # a plain try is ~1 µs cheaper than a context manager here
            cancelled = False
            if exc is not None and not isinstance(exc, GeneratorExit):
                if _is_cancellation(exc):
                    cancelled = True
                    self.span.set_attribute(A.CANCELLED, True)
                else:
                    error_type = record_failure(self.span, exc, self._config.content, self._scrubbed())
            self._closing(error_type, cancelled, exc if error_type is not None else None)
        except Exception as internal:
            report_internal_error(f"{type(self).__name__}.finish", internal)
        finally:
            try:  # the SDK calls every span processor's on_end here, another vendor's too
                self.span.end()
            except Exception as internal:
                report_internal_error(f"{type(self).__name__}.end", internal)
        try:
            self._record(duration, error_type)
        except Exception as internal:
            report_internal_error(f"{type(self).__name__}.metrics", internal)

    def _closing(self, error_type: str | None, cancelled: bool, error: BaseException | None) -> None:
        """The subclass's closing attributes and run totals, set just before the span ends."""

    def _record(self, duration: float, error_type: str | None) -> None:
        """The subclass's histograms, recorded just after the span ends."""

    def fail(self, error: BaseException | str, error_type: str = A.ERROR_TYPE_OTHER) -> None:
        """Mark the span failed without an exception propagating (a tool that returned an error).

        ``error_type`` is the ``error.type`` of a failure given as text (``tool_error`` for MCP).
        """
        with internal_errors("fail"):
            if isinstance(error, BaseException):
                record_failure(self.span, error, self._config.content, self._scrubbed())
            else:
                self.span.set_attribute(A.ERROR_TYPE, error_type)
                message = redact_error_text(
                    str(error), _MAX_ERROR_MESSAGE_CHARS, self._config.content, self._scrubbed()
                )
                self.span.set_status(Status(StatusCode.ERROR, message))

    @property
    def _failed(self) -> bool:
        status = getattr(self.span, "status", None)
        return status is not None and status.status_code is StatusCode.ERROR

    # Values of secret-named arguments to scrub from this span's error text (ToolCall sets them).
    _secrets: tuple[str, ...] = ()

    def _scrubbed(self) -> tuple[str, ...]:
        """The values scrubbed from this span's error text: its own secret-named arguments, and
        on steps and runs those of every tool of the run (an error leaving a tool carries them)."""
        run = self._run
        return self._secrets or (run.secrets if run is not None else ())


class AgentRun(_Operation):
    """An open agent run: ``run_id``, and the ``stop_reason`` it ends with."""

    __slots__ = ("agent", "release", "run_id", "state")

    def __init__(
        self,
        config: ActiveConfig,
        agent: str | None,
        release: str | None = None,
        run_id: str | None = None,
        conversation_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        guards: Guards | None = None,
    ) -> None:
        """``guards``: this run's limits instead of the configured ones (``Guards()``: none)."""
        self.run_id = run_id or new_run_id()
        self.agent = agent
        self.release = release
        self.state = RunState(self.run_id, agent, release)
        parent = otel_context.get_current()
        parent_run = parent.get(RUN_KEY)
        attrs: dict[str, Any] = {A.GEN_AI_OPERATION_NAME: A.OPERATION_INVOKE_AGENT}
        if attributes:
            attrs.update(attributes)
        if agent is not None:
            attrs[A.GEN_AI_AGENT_NAME] = agent
        if release is not None:
            attrs[A.GEN_AI_AGENT_VERSION] = release
        if conversation_id is not None:
            attrs[A.GEN_AI_CONVERSATION_ID] = conversation_id
        if isinstance(parent_run, RunState):
            attrs[A.PARENT_RUN_ID] = parent_run.run_id
        else:  # a run started by a request from another process's run (baggage)
            remote = remote_run(parent)
            if remote is not None:
                attrs[A.PARENT_RUN_ID] = remote[0]
        self._config = config
        attrs[A.RUN_ID] = self.run_id
        if rerun_hook is not None:
            rerun_hook.run_opening(self, attrs, parent_run)
        self.span = config.tracer.start_span(A.SPAN_AGENT_RUN, parent, SpanKind.INTERNAL, attrs)
        policy = config.guards
        if policy is not None or guards is not None:
            self.state.guard = _run_guard(policy, guards, self.run_id, self.span)
        # A nested run starts a fresh step and LLM scope.
        ctx = trace.set_span_in_context(self.span, parent)
        ctx = otel_context.set_value(RUN_KEY, self.state, ctx)
        ctx = otel_context.set_value(STEP_KEY, None, ctx)
        ctx = otel_context.set_value(LLM_KEY, None, ctx)
        self._context = with_run_baggage(ctx, self.run_id)
        self._run = None
        self._finished = False
        self._trip = None
        self._started = time.perf_counter()

    def _scrubbed(self) -> tuple[str, ...]:
        return self.state.secrets

    @property
    def stop_reason(self) -> str | None:
        return self.state.stop_reason

    @stop_reason.setter
    def stop_reason(self, value: str | None) -> None:
        self.state.stop_reason = value

    def _closing(self, error_type: str | None, cancelled: bool, error: BaseException | None) -> None:
        state = self.state
        if error is not None:
            state.add_body_failure(error)  # raised in the run's own body, outside any step
            if state.stop_reason is None and state.guard is not None:
                tripped = guard_cause(error)
                if tripped is not None:  # a guard's exception ended the run: loop, max_steps, budget
                    state.stop_reason = tripped.stop_reason
        if state.guard is not None:
            trips = state.guard.trips_json()
            if trips is not None:
                self.span.set_attribute(A.RUN_GUARDS, trips)
        if state.stop_reason is None:
            state.stop_reason = (
                A.STOP_CANCELLED if cancelled else A.STOP_ERROR if error_type else A.STOP_END_TURN
            )
        self.span.set_attributes(
            {
                A.STOP_REASON: state.stop_reason,
                A.RUN_STEPS: state.steps,
                A.RUN_LLM_CALLS: state.llm_calls,
                A.RUN_TOOL_CALLS: state.tool_calls,
                A.RUN_INPUT_TOKENS: state.input_tokens,
                A.RUN_OUTPUT_TOKENS: state.output_tokens,
                A.RUN_ERRORS: state.errors,
                A.RUN_LLM_CALLS_WITHOUT_USAGE: state.llm_calls_without_usage,
            }
        )
        if rerun_hook is not None:
            rerun_hook.run_closing(self)
        state.forget_failures()

    def _record(self, duration: float, error_type: str | None) -> None:
        metric_attributes: dict[str, Any] = {A.GEN_AI_OPERATION_NAME: A.OPERATION_INVOKE_AGENT}
        if self.agent is not None:
            metric_attributes[A.GEN_AI_AGENT_NAME] = self.agent
        if error_type is None and self._failed:
            error_type = A.ERROR_TYPE_OTHER  # run.fail("...") without an exception
        if error_type is not None:
            metric_attributes[A.ERROR_TYPE] = error_type
        self._config.instruments.invoke_agent_duration.record(duration, metric_attributes)


class AgentStep(_Operation):
    """One iteration of the agent's loop: ``number`` is 1, 2, ... within the run."""

    __slots__ = ("_state", "number", "step_id")

    def __init__(
        self,
        config: ActiveConfig,
        attributes: Mapping[str, Any] | None = None,
        agent: str | None = None,
    ) -> None:
        """``agent``: the agent that runs this step when it is not the run's (after a handoff)."""
        parent = otel_context.get_current()
        run = parent.get(RUN_KEY)
        run = run if isinstance(run, RunState) else None
        self.number = run.next_agent_step() if run is not None else 1
        self.step_id = f"{run.run_id}:{self.number}" if run is not None else f"step:{self.number}"
        self._state = StepState(self.number, run.stop_reason if run is not None else None)
        attrs: dict[str, Any] = dict(attributes) if attributes else {}
        attrs[A.AGENT_STEP_NUMBER] = self.number
        attrs[A.AGENT_STEP_ID] = self.step_id
        if run is not None:
            if run.agent is not None:
                attrs[A.GEN_AI_AGENT_NAME] = run.agent
            if run.release is not None:
                attrs[A.GEN_AI_AGENT_VERSION] = run.release
        if agent is not None:
            attrs[A.GEN_AI_AGENT_NAME] = agent
        self._start(config, A.SPAN_AGENT_STEP, SpanKind.INTERNAL, attrs, parent, run)
        if run is not None and run.guard is not None:
            self._trip = run.guard.step_opening(self.span, self.number, attrs.get(A.STEP))
        context = otel_context.set_value(STEP_KEY, self._state, self._context)
        self._context = with_step_baggage(context, self.number) if run is not None else context

    @property
    def stop_reason(self) -> str | None:
        return self._state.stop_reason

    @stop_reason.setter
    def stop_reason(self, value: str | None) -> None:
        """Setting it marks this step as the one that ended the run, with that reason."""
        self._state.stop_reason = value
        if self._run is not None and value is not None:
            self._run.stop_reason = value

    def _closing(self, error_type: str | None, cancelled: bool, error: BaseException | None) -> None:
        step, run = self._state, self._run
        if run is not None:
            if error is not None:
                run.add_body_failure(error)  # raised in the step's body, outside any tool or model call
            if step.stop_reason is None and run.stop_reason != step.run_stop_reason_at_start:
                step.stop_reason = run.stop_reason  # run.stop_reason was set during this step
            elif step.stop_reason is not None and run.stop_reason is None:
                run.stop_reason = step.stop_reason
        ends_run = step.stop_reason is not None
        if ends_run:
            self.span.set_attributes(
                {A.AGENT_STEP_ENDS_RUN: True, A.STOP_REASON: str(self._state.stop_reason)}
            )
        if run is not None:
            run.add_agent_step()

    def _record(self, duration: float, error_type: str | None) -> None:
        run = self._run
        metric_attributes: dict[str, Any] = {A.METRIC_ENDS_RUN: self._state.stop_reason is not None}
        if run is not None and run.agent is not None:
            metric_attributes[A.GEN_AI_AGENT_NAME] = run.agent
        self._config.instruments.agent_step_duration.record(duration, metric_attributes, NO_EXEMPLAR)


class LlmRequest(_Operation):
    """One model call. Record what came back with ``record_response`` or ``record_usage``."""

    __slots__ = (
        "_chunk_at",
        "_finish_held",
        "_first_chunk_at",
        "_stream_open",
        "cost_usd",
        "input_tokens",
        "model",
        "operation",
        "output_tokens",
        "provider",
        "response_model",
        "sdk_enriched",
        "stop_reason",
        "stream",
    )

    def __init__(
        self,
        config: ActiveConfig,
        model: str | None = None,
        provider: str | None = None,
        operation: str = A.OPERATION_CHAT,
        stream: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.provider = provider
        self.operation = operation
        self.stream = bool(stream)
        self.response_model: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.stop_reason: str | None = None
        self.cost_usd: float | None = None
        self._first_chunk_at: float | None = None
        self._chunk_at: float | None = None
        self._stream_open = False
        self._finish_held = False
        # Set by the SDK instrumentation when it enriched this span instead of opening another.
        self.sdk_enriched = False
        parent = otel_context.get_current()
        run = parent.get(RUN_KEY)
        run = run if isinstance(run, RunState) else None
        attrs: dict[str, Any] = dict(attributes) if attributes else {}
        attrs[A.GEN_AI_OPERATION_NAME] = operation
        if provider is not None:
            attrs[A.GEN_AI_PROVIDER_NAME] = provider
        if model is not None:
            attrs[A.GEN_AI_REQUEST_MODEL] = model
        if stream is not None:
            attrs[A.GEN_AI_REQUEST_STREAM] = bool(stream)
        step = parent.get(STEP_KEY)
        if isinstance(step, StepState):
            attrs[A.AGENT_STEP_NUMBER] = step.number
        self._start(config, A.SPAN_LLM_REQUEST, SpanKind.CLIENT, attrs, parent, run)
        if run is not None and run.guard is not None:
            self._trip = run.guard.llm_opening(self.span, attrs.get(A.STEP), attrs.get(A.AGENT_STEP_NUMBER))
        self._context = otel_context.set_value(LLM_KEY, self, self._context)

    @property
    def capture_content(self) -> bool:
        """Whether message content may be recorded on this span."""
        return capturing(self._config.content)

    def set_request(self, model: str | None = None, provider: str | None = None, **params: Any) -> None:
        """Fill in the request side later (model, provider, ``gen_ai.request.*`` parameters)."""
        with internal_errors("llm_request.set_request"):
            if model is not None:
                self.model = model
                self.span.set_attribute(A.GEN_AI_REQUEST_MODEL, model)
            if provider is not None:
                self.provider = provider
                self.span.set_attribute(A.GEN_AI_PROVIDER_NAME, provider)
            for key, value in params.items():
                if value is not None:
                    self.span.set_attribute(f"gen_ai.request.{key}", value)

    def record_response(self, response: Any) -> None:
        """Read model, usage, finish reasons, response id and requested tool calls from a response.

        Understands OpenAI chat-completions and responses objects, Anthropic messages, and dicts
        of those shapes; anything else is ignored.
        """
        with internal_errors("llm_request.record_response"):
            parsed = parse_response(response)
            if parsed is None:
                return
            self.record_usage(
                input_tokens=parsed.input_tokens,
                output_tokens=parsed.output_tokens,
                stop_reason=parsed.stop_reason,
                finish_reasons=parsed.finish_reasons or None,
                cache_read_input_tokens=parsed.cache_read_input_tokens,
                cache_creation_input_tokens=parsed.cache_creation_input_tokens,
                reasoning_tokens=parsed.reasoning_tokens,
                response_id=parsed.response_id,
                response_model=parsed.model,
            )
            if parsed.tool_calls:
                self.record_tool_calls(parsed.tool_calls)

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        stop_reason: str | None = None,
        *,
        finish_reasons: Sequence[str] | None = None,
        cache_read_input_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        response_id: str | None = None,
        response_model: str | None = None,
    ) -> None:
        """Record usage and the stop reason; ``stop_reason`` may be any provider's spelling."""
        with internal_errors("llm_request.record_usage"):
            attrs: dict[str, Any] = {}
            if input_tokens is not None:
                self.input_tokens = input_tokens
                attrs[A.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
            if output_tokens is not None:
                self.output_tokens = output_tokens
                attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
            if cache_read_input_tokens is not None:
                attrs[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read_input_tokens
            if cache_creation_input_tokens is not None:
                attrs[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_creation_input_tokens
            if reasoning_tokens is not None:
                attrs[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = reasoning_tokens
            if finish_reasons is None and stop_reason is not None:
                finish_reasons = (stop_reason,)
            if finish_reasons is not None:
                attrs[A.GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
            if stop_reason is not None:
                self.stop_reason = normalize_stop_reason(stop_reason)
                attrs[A.STOP_REASON] = self.stop_reason
            if response_id is not None:
                attrs[A.GEN_AI_RESPONSE_ID] = response_id
            if response_model is not None:
                self.response_model = response_model
                attrs[A.GEN_AI_RESPONSE_MODEL] = response_model
            run = self._run
            guard_prices = run is not None and run.guard is not None and run.guard.wants_cost
            if (self._config.record_cost or guard_prices) and (
                input_tokens is not None or output_tokens is not None
            ):
                from steptrace._pricing import price_now

                cost = price_now(
                    self.provider,
                    self.response_model or self.model,
                    input_tokens,
                    output_tokens,
                    cache_read_input_tokens,
                    cache_creation_input_tokens,
                    reasoning_tokens,
                )
                self.cost_usd = cost
                if cost is not None and self._config.record_cost:
                    attrs[A.LLM_COST_USD] = cost
            if attrs:
                self.span.set_attributes(attrs)

    def record_tool_calls(self, tool_calls: Sequence[Mapping[str, Any]]) -> None:
        """The tool calls the model asked for, as ``{"name": ..., "id": ...}``."""
        with internal_errors("llm_request.record_tool_calls"):
            calls = [{"name": c.get("name"), "id": c.get("id")} for c in tool_calls]
            self.span.set_attribute(A.LLM_TOOL_CALLS, json.dumps(calls, default=str))

    def record_input(self, messages: Any) -> None:
        """Input messages, recorded (redacted, bounded) only when content capture is on."""
        if capturing(self._config.content):
            with internal_errors("llm_request.record_input"):
                self.span.set_attribute(A.GEN_AI_INPUT_MESSAGES, self._config.content.to_json(messages))

    def record_system_instructions(self, parts: Any) -> None:
        """System instructions given apart from the chat history (Anthropic ``system=``, Responses
        ``instructions=``) as message parts; recorded (redacted, bounded) only when capture is on."""
        if parts and capturing(self._config.content):
            with internal_errors("llm_request.record_system_instructions"):
                self.span.set_attribute(A.GEN_AI_SYSTEM_INSTRUCTIONS, self._config.content.to_json(parts))

    def record_output(self, messages: Any) -> None:
        """Output messages, recorded (redacted, bounded) only when content capture is on."""
        if capturing(self._config.content):
            with internal_errors("llm_request.record_output"):
                self.span.set_attribute(A.GEN_AI_OUTPUT_MESSAGES, self._config.content.to_json(messages))

    def restart_clock(self) -> None:
        """Measure durations and time to first chunk from now (the moment the request is sent)."""
        self._started = time.perf_counter()

    def first_chunk(self) -> None:
        """Mark the first streamed chunk now (only the first call counts)."""
        if self._first_chunk_at is None:
            now = time.perf_counter()
            self._first_chunk_at = now
            self._chunk_at = now
            with internal_errors("llm_request.first_chunk"):
                ttft = now - self._started
                self.span.set_attribute(A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttft)

    def chunk_received(self) -> None:
        """A streamed chunk with content arrived: the first marks TTFT, later ones time per chunk."""
        if self._first_chunk_at is None:
            self.first_chunk()
            return
        now = time.perf_counter()
        previous, self._chunk_at = self._chunk_at, now
        if previous is not None:
            with internal_errors("llm_request.chunk_received"):
                self._config.instruments.time_per_output_chunk.record(
                    now - previous, self._metric_attributes(None), NO_EXEMPLAR
                )

    def record_chunk_times(self, times: Sequence[float]) -> None:
        """Later chunks arrived at these ``time.perf_counter()`` readings (after ``first_chunk``).

        Records time per output chunk for each in one pass, so a stream wrapper only appends a
        timestamp per chunk (histogram records cost microseconds each).
        """
        previous = self._chunk_at
        if previous is None or not times:
            return
        with internal_errors("llm_request.record_chunk_times"):
            intervals = []
            for now in times:
                intervals.append(now - previous)
                previous = now
            # One buffered entry for the stream (recorded at metric collection, see
            # _metrics.DeferredHistogram); no exemplar per chunk, as in chunk_received.
            self._config.instruments.time_per_output_chunk.record_all(
                intervals, self._metric_attributes(None), NO_EXEMPLAR
            )
            self._chunk_at = previous

    def _metric_attributes(self, error_type: str | None) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.GEN_AI_OPERATION_NAME: self.operation}
        if self.provider is not None:
            attrs[A.GEN_AI_PROVIDER_NAME] = self.provider
        if self.model is not None:
            attrs[A.GEN_AI_REQUEST_MODEL] = self.model
        if self.response_model is not None:
            attrs[A.GEN_AI_RESPONSE_MODEL] = self.response_model
        if error_type is not None:
            attrs[A.ERROR_TYPE] = error_type
        return attrs

    # --- a returned stream extends the span's life until it ends ---------------------------------
    def stream_started(self) -> None:
        """A stream of this call was handed to the caller: the span ends when the stream does."""
        self._stream_open = True

    def stream_finished(self, exc: BaseException | None) -> None:
        """The stream ended (exhausted, closed, failed or dropped); ends a finish it held back."""
        self._stream_open = False
        if self._finish_held:
            self._finish_held = False
            self.finish(exc)

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is None and self._stream_open and not self._finished:
            self._finish_held = True  # the block or function returned; its stream is still being read
            return
        super().finish(exc)

    def _closing(self, error_type: str | None, cancelled: bool, error: BaseException | None) -> None:
        if error_type is not None and self.stop_reason is None:
            self.span.set_attribute(A.STOP_REASON, A.STOP_ERROR)
        run = self._run
        if run is not None:
            if error is not None:
                run.note_failure(error)
            run.add_llm_call(self.input_tokens, self.output_tokens, self._failed)
            guard = run.guard
            if guard is not None:
                guard.llm_finished(
                    run.input_tokens + run.output_tokens,
                    self.cost_usd,
                    self.input_tokens is not None or self.output_tokens is not None,
                    self.provider,
                    self.response_model or self.model,
                )

    def _record(self, duration: float, error_type: str | None) -> None:
        instruments = self._config.instruments
        attrs = self._metric_attributes(None)
        if error_type is None and self._failed:
            error_type = A.ERROR_TYPE_OTHER
        # error.type goes on the duration only: the token usage histogram has no such attribute.
        # Exemplars point at this llm_request span: a slow bucket leads to its trace.
        context = self._context
        if error_type is not None:
            instruments.operation_duration.record(duration, {**attrs, A.ERROR_TYPE: error_type}, context)
        else:
            instruments.operation_duration.record(duration, attrs, context)
        if self._first_chunk_at is not None:
            instruments.time_to_first_chunk.record(self._first_chunk_at - self._started, attrs, context)
        if self.input_tokens is not None:
            instruments.token_usage.record(
                self.input_tokens, {**attrs, A.GEN_AI_TOKEN_TYPE: "input"}, context
            )
        if self.output_tokens is not None:
            instruments.token_usage.record(
                self.output_tokens, {**attrs, A.GEN_AI_TOKEN_TYPE: "output"}, context
            )


class ToolCall(_Operation):
    """One tool execution. ``record_result`` captures the result (when capture is on)."""

    __slots__ = ("_args_hash", "_metric_attributes", "_secrets", "_seq", "call_id", "name")

    def __init__(
        self,
        config: ActiveConfig,
        name: str,
        arguments: Any = None,
        call_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.call_id = call_id
        parent = otel_context.get_current()
        run = parent.get(RUN_KEY)
        run = run if isinstance(run, RunState) else None
        attrs: dict[str, Any] = dict(attributes) if attributes else {}
        attrs[A.GEN_AI_OPERATION_NAME] = A.OPERATION_EXECUTE_TOOL
        attrs[A.GEN_AI_TOOL_NAME] = name
        if call_id is not None:
            attrs[A.GEN_AI_TOOL_CALL_ID] = call_id
        self._secrets = ()
        if arguments is not None:
            # One walk: the hash without secret values, and those values, to scrub from errors.
            attrs[A.TOOL_ARGS_HASH], self._secrets = arguments_digest(arguments)
            if self._secrets and run is not None:
                run.add_secrets(self._secrets)
            content = config.content
            if capturing(content, parent):
                attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS] = content.to_json(arguments)
        if rerun_hook is not None:
            rerun_hook.tool_opening(self, arguments, attrs)
        step = parent.get(STEP_KEY)
        if isinstance(step, StepState):
            attrs[A.AGENT_STEP_NUMBER] = step.number
        self._metric_attributes = {
            A.GEN_AI_OPERATION_NAME: A.OPERATION_EXECUTE_TOOL,
            A.GEN_AI_TOOL_NAME: name,
        }
        self._start(config, A.SPAN_TOOL_EXECUTION, SpanKind.INTERNAL, attrs, parent, run)
        self._args_hash: str | None = attrs.get(A.TOOL_ARGS_HASH)
        self._seq: int | None = attrs.get(A.STEP)
        if run is not None and run.guard is not None:
            self._trip = run.guard.tool_opening(
                self.span, name, self._args_hash, self._seq, attrs.get(A.AGENT_STEP_NUMBER)
            )

    def record_result(self, result: Any) -> None:
        """The tool's result, recorded (redacted, bounded) only when content capture is on."""
        content = self._config.content
        if capturing(content):
            with internal_errors("tool.record_result"):
                self.span.set_attribute(A.GEN_AI_TOOL_CALL_RESULT, content.to_json(result, self._secrets))

    def _closing(self, error_type: str | None, cancelled: bool, error: BaseException | None) -> None:
        run = self._run
        if run is not None:
            if error is not None:
                run.note_failure(error)
            failed = error_type is not None or self._failed
            run.add_tool_call(failed)
            if run.guard is not None and not failed and not cancelled:
                run.guard.tool_succeeded(self.name, self._args_hash, self._seq)

    def _record(self, duration: float, error_type: str | None) -> None:
        attrs = self._metric_attributes
        if error_type is None and self._failed:  # fail(...) without an exception: its error.type
            error_type = getattr(self.span, "attributes", {}).get(A.ERROR_TYPE) or A.ERROR_TYPE_OTHER
        if error_type is not None:
            attrs = {**attrs, A.ERROR_TYPE: error_type}
        self._config.instruments.execute_tool_duration.record(duration, attrs, NO_EXEMPLAR)


def current_llm_request() -> LlmRequest | None:
    """The manual ``llm_request`` block open here, if any (SDK patches enrich it)."""
    value = otel_context.get_value(LLM_KEY)
    return value if isinstance(value, LlmRequest) else None


# --- the runners: a handle around one call of each kind ----------------------------------------
H = TypeVar("H", AgentRun, AgentStep, LlmRequest, ToolCall)
_NO_ITEM: Any = object()  # a generator that yielded nothing


class Hooks(Generic[H]):
    """What a kind of call does with its outcome. The runners guard every hook."""

    def on_return(self, handle: H, result: Any) -> Any:
        """The call returned ``result`` (not called for generators); returns what the caller gets."""
        return result

    def on_item(self, handle: H, item: Any) -> None:
        """A generator yielded ``item``."""

    def on_generator_end(self, handle: H, last_item: Any, completed: bool) -> None:
        """A generator finished (``completed``) or was closed early; ``last_item`` may be _NO_ITEM."""


def tripped(handle: _Operation) -> BaseException:
    """A guard stopped this call before it started: its span ends failed by the exception the
    caller gets (``GuardTripped``, or what an ``on_guard`` callable raised)."""
    exc = handle._trip
    assert exc is not None
    handle._trip = None
    handle.finish(exc)
    return exc


def _returned(handle: H, hooks: Hooks[H], result: Any) -> Any:
    try:
        result = hooks.on_return(handle, result)
    except Exception as exc:
        report_internal_error("on_return", exc)
    handle.finish(None)
    return result


def _guarded(where: str, hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except Exception as exc:
        report_internal_error(where, exc)


def run_sync(handle: H, hooks: Hooks[H], fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Call ``fn`` with the handle's span current; end the span when it returns or raises.

    A sync callable that returns an awaitable (a coroutine, a future) is traced until the
    awaitable completes: the caller gets an awaitable that ends the span after the await.
    """
    if handle._trip is not None:
        raise tripped(handle)
    if rerun_hook is not None:
        fn = rerun_hook.substitute(handle, hooks, fn, "sync")
    token = otel_context.attach(handle._context)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        otel_context.detach(token)
        handle.finish(exc)
        raise
    otel_context.detach(token)
    if getattr(type(result), "__await__", None) is not None:
        return _AwaitThenFinish(handle, hooks, result)
    return _returned(handle, hooks, result)


async def _await_then_finish(handle: H, hooks: Hooks[H], awaitable: Awaitable[Any]) -> Any:
    token = otel_context.attach(handle._context)
    try:
        result = await awaitable
    except BaseException as exc:
        otel_context.detach(token)
        handle.finish(exc)
        raise
    otel_context.detach(token)
    return _returned(handle, hooks, result)


class _AwaitThenFinish(Coroutine[Any, Any, Any]):
    """The awaitable a sync traced callable returned, handed back as a coroutine (``create_task``
    and ``gather`` take it) that runs ``_await_then_finish`` once awaited.

    A coroutine that never runs has no code of its own to end the span: a task cancelled before
    its first step throws into it, asyncio closes what it will not run, and a dropped one is
    collected. Each of those ends the span here, as cancelled (or failed by what was thrown).
    """

    __slots__ = ("_awaitable", "_handle", "_hooks", "_running")

    def __init__(self, handle: Any, hooks: Hooks[Any], awaitable: Awaitable[Any]) -> None:
        self._handle = handle
        self._hooks = hooks
        self._awaitable = awaitable
        self._running: Coroutine[Any, Any, Any] | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self  # an iterator with send/throw/close, as awaits use

    def __iter__(self) -> _AwaitThenFinish:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        running = self._running
        if running is None:
            running = self._running = _await_then_finish(self._handle, self._hooks, self._awaitable)
        return running.send(value)

    def throw(self, typ: Any, value: Any = None, traceback: Any = None) -> Any:
        running = self._running
        if running is not None:
            if value is None and traceback is None:  # the one-argument form: no DeprecationWarning
                return running.throw(typ)
            return running.throw(typ, value, traceback)
        if isinstance(typ, BaseException):
            exc = typ
        else:
            exc = value if isinstance(value, BaseException) else typ() if value is None else typ(value)
        if traceback is not None:
            exc = exc.with_traceback(traceback)
        self._never_ran(exc)
        raise exc

    def close(self) -> None:
        if self._running is None:
            self._never_ran(asyncio.CancelledError())
        else:
            self._running.close()

    def _never_ran(self, exc: BaseException) -> None:
        """Ends the span with ``exc`` and closes the callee's coroutine, as the thrown exception or
        close would have, had it been awaited directly; later sends fail as on a closed coroutine."""
        running = self._running = _await_then_finish(self._handle, self._hooks, self._awaitable)
        running.close()  # never started: closing it runs nothing and warns nothing
        awaitable = self._awaitable
        if inspect.iscoroutine(awaitable) or inspect.isgenerator(awaitable):
            try:
                awaitable.close()
            except Exception as internal:  # a generator-based awaitable that ignores close
                report_internal_error("awaitable.close", internal)
        self._handle.finish(exc)

    def __del__(self) -> None:
        if self._running is None:  # never awaited: the callee's own "never awaited" warning stays
            self._handle.finish(asyncio.CancelledError())  # never raises (but under our tests)


def run_coroutine(
    handle: H, hooks: Hooks[H], fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
) -> Any:
    """Await ``fn(*args, **kwargs)`` with the handle's span current (returns a coroutine)."""
    if handle._trip is not None:
        raise tripped(handle)
    if rerun_hook is not None:
        fn = rerun_hook.substitute(handle, hooks, fn, "coroutine")
    token = otel_context.attach(handle._context)
    try:
        awaitable = fn(*args, **kwargs)
    except BaseException as exc:
        otel_context.detach(token)
        handle.finish(exc)
        raise
    otel_context.detach(token)
    return _await_then_finish(handle, hooks, awaitable)


def run_generator(
    handle: H, hooks: Hooks[H], fn: Callable[..., Generator[Any, Any, Any]], args: Any, kwargs: Any
) -> Generator[Any, Any, Any]:
    """Drive ``fn``'s generator with the span current only while the generator body runs, so it
    never leaks into the consumer's context; a consumer that stops early is a normal exit."""
    if handle._trip is not None:
        raise tripped(handle)
    if rerun_hook is not None:
        fn = rerun_hook.substitute(handle, hooks, fn, "generator")
    ctx = handle._context
    token = otel_context.attach(ctx)
    try:
        inner = fn(*args, **kwargs)
    except BaseException as exc:
        otel_context.detach(token)
        handle.finish(exc)
        raise
    otel_context.detach(token)
    last: Any = _NO_ITEM
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        token = otel_context.attach(ctx)
        try:
            if to_throw is None:
                item = inner.send(to_send)
            else:
                item, to_throw = inner.throw(to_throw), None
        except StopIteration as stop:
            otel_context.detach(token)
            _guarded("on_generator_end", hooks.on_generator_end, handle, last, True)
            handle.finish(None)
            return stop.value
        except BaseException as exc:
            otel_context.detach(token)
            handle.finish(exc)
            raise
        otel_context.detach(token)
        last = item
        _guarded("on_item", hooks.on_item, handle, item)
        try:
            to_send = yield item
        except GeneratorExit:
            # Closed early, or abandoned and garbage-collected after a ``break``.
            token = otel_context.attach(ctx)
            try:
                inner.close()
            finally:
                otel_context.detach(token)
                _guarded("on_generator_end", hooks.on_generator_end, handle, last, False)
                handle.finish(None)
            raise
        except BaseException as exc:
            to_throw = exc


async def run_async_generator(
    handle: H, hooks: Hooks[H], fn: Callable[..., AsyncGenerator[Any, Any]], args: Any, kwargs: Any
) -> AsyncGenerator[Any, Any]:
    """The async twin of ``run_generator``."""
    if handle._trip is not None:
        raise tripped(handle)
    if rerun_hook is not None:
        fn = rerun_hook.substitute(handle, hooks, fn, "async_generator")
    ctx = handle._context
    token = otel_context.attach(ctx)
    try:
        inner = fn(*args, **kwargs)
    except BaseException as exc:
        otel_context.detach(token)
        handle.finish(exc)
        raise
    otel_context.detach(token)
    last: Any = _NO_ITEM
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        token = otel_context.attach(ctx)
        try:
            if to_throw is None:
                item = await inner.asend(to_send)
            else:
                item, to_throw = await inner.athrow(to_throw), None
        except StopAsyncIteration:
            otel_context.detach(token)
            _guarded("on_generator_end", hooks.on_generator_end, handle, last, True)
            handle.finish(None)
            return
        except BaseException as exc:
            otel_context.detach(token)
            handle.finish(exc)
            raise
        otel_context.detach(token)
        last = item
        _guarded("on_item", hooks.on_item, handle, item)
        try:
            to_send = yield item
        except GeneratorExit:
            token = otel_context.attach(ctx)
            try:
                await inner.aclose()
            finally:
                otel_context.detach(token)
                _guarded("on_generator_end", hooks.on_generator_end, handle, last, False)
                handle.finish(None)
            raise
        except BaseException as exc:
            to_throw = exc
