"""Instrumentation of Pydantic AI: agent runs, model requests and tool calls.

    steptrace.instrument_pydantic_ai()

``Agent.run``/``run_sync``/``run_stream``/``iter`` become one ``agent_run`` named after the agent;
each model request opens an ``agent_step`` holding its ``llm_request`` and the tool calls it asked
for (``tool_execution``, with the model's tool-call id). A retry (a tool's or an output
validator's ``ModelRetry``) is another model request, so another step. ``UsageLimitExceeded``
ends the run with stop reason ``max_steps``.

Steptrace joins each run as one more Pydantic AI *capability*, the framework's own middleware
(``wrap_run``, ``wrap_node_run``, ``wrap_model_request``, ``wrap_tool_execute``), passed the
public way: ``Agent.iter``'s ``capabilities=`` (``run``, ``run_sync``, ``run_stream`` and
``run_stream_events`` all go through ``iter``). Every call is handed to a handle and its runner,
and the framework carries the run's context into the tasks it starts.
When Pydantic AI's own instrumentation is on (``instrument=True``, ``Agent.instrument_all()``)
its capability wraps ours, and our handles *borrow* its spans (the agent run, ``chat``,
``execute_tool``): they get the run id, step numbers and totals, and write the step records,
and no second span is opened for the same call. The step opens around the node (``wrap_node_run``)
so those spans are its children; ``run_stream`` streams its model requests outside every node
hook, so there they stay children of the run span. ``pydantic_ai`` is imported only when
instrumenting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from steptrace import _attributes as A
from steptrace import _spans
from steptrace._context import RunState, current_run_state, current_step_state
from steptrace._internal import internal_errors, report_internal_error
from steptrace._spans import (
    AgentRun,
    AgentStep,
    Hooks,
    LlmRequest,
    ToolCall,
    await_in_context,
    current_llm_request,
    run_coroutine,
    run_in_context,
)
from steptrace._state import ActiveConfig
from steptrace.instrumentation._common import ConfigSource, Patches, SdkInstrumentor

__all__ = ["PydanticAIInstrumentor", "instrument_pydantic_ai", "uninstrument_pydantic_ai"]

logger = logging.getLogger("steptrace")

_SCOPE = "pydantic-ai"  # the instrumentation scope of Pydantic AI's own spans

# Pydantic AI's ``FinishReason`` values in steptrace's vocabulary.
_STOP_REASONS = {
    "stop": A.STOP_END_TURN,
    "length": A.STOP_MAX_TOKENS,
    "content_filter": A.STOP_CONTENT_FILTER,
    "tool_call": A.STOP_TOOL_USE,
    "error": A.STOP_ERROR,
}


def stop_reason_for(exc: BaseException) -> str | None:
    """The run's stop reason for an exception leaving it, or None (error/cancelled)."""
    if any(cls.__name__ == "UsageLimitExceeded" for cls in type(exc).__mro__):
        return A.STOP_MAX_STEPS
    return None


# --- borrowing Pydantic AI's own spans ------------------------------------------------------------
class _BorrowedSpan(Span):
    """Pydantic AI's span, as one of our handles holds it: everything is forwarded but ``end``,
    which stays Pydantic AI's (its capability ends the span after ours has finished)."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def end(self, end_time: int | None = None) -> None:
        return None

    def get_span_context(self) -> SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        self._span.add_event(name, attributes, timestamp)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._span.record_exception(exception, attributes, timestamp, escaped)

    def __getattr__(self, name: str) -> Any:  # attributes, status, name, instrumentation_scope
        return getattr(self._span, name)


class _Borrowing:
    """A tracer for one handle: "starting" its span marks Pydantic AI's span as that handle's
    (``steptrace.span``, so its step record has the handle's type) and sets the handle's
    attributes on it."""

    __slots__ = ("_kind", "_span")

    def __init__(self, span: Span, kind: str) -> None:
        self._span = span
        self._kind = kind

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Span:
        values = dict(attributes or {})
        values[A.SPAN_STANDS_FOR] = self._kind
        self._span.set_attributes(values)
        return _BorrowedSpan(self._span)


def _pydantic_span(operation: str) -> Span | None:
    """The current span if it is Pydantic AI's own, for ``operation``, not yet borrowed."""
    span = trace.get_current_span()
    scope = getattr(span, "instrumentation_scope", None)
    if scope is None or scope.name != _SCOPE or not span.is_recording():
        return None
    attributes = getattr(span, "attributes", None)
    if not isinstance(attributes, Mapping) or A.SPAN_STANDS_FOR in attributes:
        return None
    return span if attributes.get(A.GEN_AI_OPERATION_NAME) == operation else None


def _config_for(config: ActiveConfig, operation: str, kind: str) -> ActiveConfig:
    """``config``, or a copy whose tracer borrows Pydantic AI's current span of ``operation``.

    Only a span of steptrace's own TracerProvider is borrowed (the same span processor): one sent
    to another provider would never reach the step log, so steptrace opens its own span then.
    """
    span = _pydantic_span(operation)
    if span is None or getattr(span, "_span_processor", None) is not getattr(
        config.tracer, "span_processor", 0
    ):
        return config
    return ActiveConfig(
        _Borrowing(span, kind),  # type: ignore[arg-type]
        config.instruments,
        config.content,
        config.record_cost,
        config.guards,
    )


# --- one traced run ---------------------------------------------------------------------------
class _Run:
    """A traced run: where its steps open, and the step held open for the tools it asked for."""

    __slots__ = ("config", "context", "fresh", "owned", "requested", "state", "step")

    def __init__(
        self, config: ActiveConfig, state: RunState, context: otel_context.Context, owned: bool
    ) -> None:
        self.config = config
        self.state = state
        self.context = context  # the run's context: each step opens in it
        self.owned = owned  # False: the user's own agent_run, which ends as the user says
        self.step: AgentStep | None = None
        # A step opened around a model-request node whose model request has not come yet.
        self.fresh: AgentStep | None = None
        # A model request came since the last tool-call node: a run_stream node that streamed its
        # request before its node hook ran; its step is open already.
        self.requested = False

    def next_step(self) -> AgentStep:
        self.release()
        step = self.step = run_in_context(self.context, AgentStep, self.config)
        return step

    def step_for_request(self) -> AgentStep:
        """The step a model request belongs to: the one its node opened, else a new one (a retry
        in the same node, or ``run_stream``'s last node, which no node hook wraps)."""
        step, self.fresh = self.fresh, None
        self.requested = True
        if step is not None and step is self.step and not step.finished:
            return step
        return self.next_step()

    def release(self, exc: BaseException | None = None, ended: bool = False) -> None:
        """End the held step; ``ended``: the run finished by itself, so that step ended it."""
        step, self.step = self.step, None
        if step is None or step.finished:
            return
        with internal_errors("pydantic_ai.release_step"):
            if ended and self.owned and self.state.stop_reason is None:
                step.stop_reason = A.STOP_END_TURN
        step.finish(exc)


def _enclosing_run() -> RunState | None:
    """The user's own ``agent_run`` when the agent is run right in it (not in a step or tool):
    the agent's steps become that run's."""
    state = current_run_state()
    if state is None or current_step_state() is not None:
        return None
    span = trace.get_current_span()
    attributes = getattr(span, "attributes", None)
    if getattr(span, "name", None) != A.SPAN_AGENT_RUN or not isinstance(attributes, Mapping):
        return None
    return state if attributes.get(A.RUN_ID) == state.run_id else None


class _RunHooks(Hooks[AgentRun]):
    """The run's outcome is read by its body (``_Steptrace.wrap_run``)."""


_RUN_HOOKS = _RunHooks()


# --- model requests -----------------------------------------------------------------------------
class _ModelHooks(Hooks[LlmRequest]):
    """The ``ModelResponse`` of one request. With ``instrument_openai()`` on, the openai patch has
    filled the span from the HTTP response already (``sdk_enriched``): nothing is read twice."""

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if not handle.sdk_enriched:
            _record_model_response(handle, result)
        return result


_MODEL_HOOKS = _ModelHooks()


def _record_model_response(handle: LlmRequest, response: Any) -> None:
    calls = [
        {"name": getattr(part, "tool_name", None), "id": getattr(part, "tool_call_id", None)}
        for part in getattr(response, "parts", None) or ()
        if getattr(part, "part_kind", None) == "tool-call"
    ]
    usage = getattr(response, "usage", None)
    finish = getattr(response, "finish_reason", None)
    stop = _STOP_REASONS.get(finish) if isinstance(finish, str) else None
    if stop is None:
        stop = A.STOP_TOOL_USE if calls else A.STOP_END_TURN
    details = getattr(usage, "details", None)
    reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    has_usage = usage is not None and bool(
        getattr(usage, "input_tokens", 0) or getattr(usage, "output_tokens", 0)
    )
    model = getattr(response, "model_name", None)
    response_id = getattr(response, "provider_response_id", None)
    handle.record_usage(
        input_tokens=getattr(usage, "input_tokens", None) if has_usage else None,
        output_tokens=getattr(usage, "output_tokens", None) if has_usage else None,
        stop_reason=stop,
        finish_reasons=[finish] if isinstance(finish, str) else None,
        cache_read_input_tokens=getattr(usage, "cache_read_tokens", None) if has_usage else None,
        cache_creation_input_tokens=getattr(usage, "cache_write_tokens", None) if has_usage else None,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
        response_id=response_id if isinstance(response_id, str) else None,
        response_model=model if isinstance(model, str) else None,
    )
    if not has_usage:
        handle.set_attribute(A.LLM_USAGE_MISSING, True)
    if calls:
        handle.record_tool_calls(calls)


_MESSAGE_FIELDS = ("content", "tool_name", "args", "tool_call_id", "model_name")


def _request_form(request_context: Any) -> dict[str, Any]:
    """What a rerun matches a model request on: the model and the messages' parts as the model
    reads them, without what differs from run to run (timestamps, run ids)."""
    messages = []
    for message in getattr(request_context, "messages", None) or ():
        parts = []
        for part in getattr(message, "parts", None) or ():
            form: dict[str, Any] = {"kind": getattr(part, "part_kind", type(part).__name__)}
            for name in _MESSAGE_FIELDS:
                value = getattr(part, name, None)
                if value is not None:
                    form[name] = (
                        value if isinstance(value, (str, int, float, bool, dict, list)) else repr(value)
                    )
            parts.append(form)
        messages.append({"kind": getattr(message, "kind", type(message).__name__), "parts": parts})
    model = getattr(getattr(request_context, "model", None), "model_name", None)
    return {"model": model, "messages": messages}


def _open_model_call(run: _Run, step: AgentStep, request_context: Any) -> LlmRequest:
    model = getattr(request_context, "model", None)
    name = getattr(model, "model_name", None)
    provider = getattr(model, "system", None)
    config = _config_for(run.config, A.OPERATION_CHAT, A.SPAN_LLM_REQUEST)
    return run_in_context(
        step.context,
        LlmRequest,
        config,
        name if isinstance(name, str) else None,
        provider if isinstance(provider, str) else None,
        A.OPERATION_CHAT,
        getattr(request_context, "streaming", None) is True,
    )


# --- tool calls ---------------------------------------------------------------------------------
class _ToolHooks(Hooks[ToolCall]):
    def on_return(self, handle: ToolCall, result: Any) -> Any:
        handle.record_result(result)
        return result


_TOOL_HOOKS = _ToolHooks()


def _tool_arguments(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    if dataclasses.is_dataclass(args) and not isinstance(args, type):
        return dataclasses.asdict(args)
    dump = getattr(args, "model_dump", None)
    return dump(mode="json") if callable(dump) else args


def _capability_class() -> type:
    """The capability class, built when instrumenting (its base is Pydantic AI's)."""
    from pydantic_ai.capabilities import AbstractCapability, CapabilityOrdering

    @dataclasses.dataclass
    class SteptraceCapability(AbstractCapability[Any]):
        """Steptrace in one agent run: the run, its steps, model requests and tool calls."""

        source: ConfigSource | None = None
        _run: _Run | None = dataclasses.field(default=None, init=False, repr=False)
        id: str | None = "steptrace"
        # Pydantic AI's durable agents (Temporal, DBOS, Prefect) refuse a capability added to one
        # run unless it says it is safe there; ours only observes (no toolsets, no durable
        # operations), as Pydantic AI's own ``Instrumentation``, which sets the same flag. The flag
        # is private (pydantic/pydantic-ai#5477 plans a public form): should it be renamed, a
        # durable agent's run would fail with "Capabilities added per-run ... are not supported";
        # tests/test_instrument_pydantic_ai.py checks that Pydantic AI still reads it.
        _safe_at_runtime: ClassVar[bool] = True

        def get_ordering(self) -> Any:
            # Inside Pydantic AI's ``Instrumentation`` (outermost), so its spans are current here.
            from pydantic_ai.capabilities import Instrumentation

            return CapabilityOrdering(wrapped_by=[Instrumentation])

        async def wrap_run(self, ctx: Any, *, handler: Callable[..., Any]) -> Any:
            config = self.source.get() if self.source is not None else None
            if config is None or getattr(ctx, "realtime", False):
                return await handler()
            handle: AgentRun | None = None
            try:
                enclosing = _enclosing_run()
                if enclosing is not None:
                    run = _Run(config, enclosing, otel_context.get_current(), owned=False)
                else:
                    agent = getattr(getattr(ctx, "agent", None), "name", None)
                    handle = AgentRun(
                        _config_for(config, A.OPERATION_INVOKE_AGENT, A.SPAN_AGENT_RUN),
                        agent if isinstance(agent, str) else None,
                    )
                    run = _Run(config, handle.state, handle.context, owned=True)
            except Exception as exc:  # setup failed: the run goes on untraced
                report_internal_error("pydantic_ai.run", exc)
                return await handler()
            self._run = run

            async def body() -> Any:
                ended = False
                error: BaseException | None = None
                try:
                    result = await handler()
                    ended = True
                    return result
                except BaseException as exc:
                    error = exc
                    with internal_errors("pydantic_ai.run_exit"):
                        reason = stop_reason_for(exc)
                        if reason is not None:
                            run.state.stop_reason = reason
                    raise
                finally:
                    self._run = None
                    run.release(
                        error if error is not None and stop_reason_for(error) is None else None, ended
                    )

            if handle is None:
                return await body()
            return await run_coroutine(handle, _RUN_HOOKS, body, (), {})

        async def wrap_node_run(self, ctx: Any, *, node: Any, handler: Callable[..., Any]) -> Any:
            # Pydantic AI's own capability (outermost) opens its model and tool spans in the context
            # it is called in: the step is opened here, around the node, and made current for it,
            # so those spans are the step's children, as a hand-decorated agent's calls are.
            run = self._run
            if run is None:
                return await handler(node)
            step: AgentStep | None = None
            try:
                kind = type(node).__name__
                if kind == "ModelRequestNode":
                    if not run.requested:
                        step = run.fresh = run.next_step()
                    else:  # run_stream: the request streamed before this hook, in its step
                        step = run.step
                elif kind == "CallToolsNode":
                    run.requested = False
                    step = run.step
            except Exception as exc:
                report_internal_error("pydantic_ai.node", exc)
            if step is None or step.finished:
                return await handler(node)
            return await await_in_context(step.context, handler(node))

        async def wrap_model_request(
            self, ctx: Any, *, request_context: Any, handler: Callable[..., Any]
        ) -> Any:
            run = self._run
            if run is None or current_llm_request() is not None:
                return await handler(request_context)
            try:
                step = run.step_for_request()
                handle = _open_model_call(run, step, request_context)
            except Exception as exc:
                report_internal_error("pydantic_ai.model", exc)
                return await handler(request_context)
            if _spans.rerun_hook is None:
                return await run_coroutine(handle, _MODEL_HOOKS, handler, (request_context,), {})

            async def call(request: Any) -> Any:  # recorded or served by steptrace.rerun
                return await handler(request_context)

            return await run_coroutine(handle, _MODEL_HOOKS, call, (_request_form(request_context),), {})

        async def wrap_tool_execute(
            self, ctx: Any, *, call: Any, tool_def: Any, args: Any, handler: Callable[..., Any]
        ) -> Any:
            run = self._run
            if run is None:
                return await handler(args)
            try:
                config = _config_for(run.config, A.OPERATION_EXECUTE_TOOL, A.SPAN_TOOL_EXECUTION)
                call_id = getattr(call, "tool_call_id", None)
                step = run.step
                handle = run_in_context(
                    step.context if step is not None and not step.finished else otel_context.get_current(),
                    ToolCall,
                    config,
                    str(getattr(call, "tool_name", None) or "tool"),
                    _tool_arguments(args),
                    call_id if isinstance(call_id, str) else None,
                )
            except Exception as exc:
                report_internal_error("pydantic_ai.tool", exc)
                return await handler(args)
            return await run_coroutine(handle, _TOOL_HOOKS, handler, (args,), {})

    return SteptraceCapability


def _iter_wrapper(source: ConfigSource, capability: type) -> Callable[..., Any]:
    """``Agent.iter`` (``run``, ``run_sync``, ``run_stream`` and ``run_stream_events`` go through
    it): steptrace's capability joins the run's own ``capabilities=``, the public way a caller adds
    one to a single run, so Pydantic AI composes, orders and validates it as any other."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if source.get() is None:
            return wrapped(*args, **kwargs)
        try:
            extra = kwargs.get("capabilities")
            kwargs = {**kwargs, "capabilities": [*(extra or ()), capability(source=source)]}
        except Exception as exc:  # an iterable we could not read: the run goes on untraced
            report_internal_error("pydantic_ai.capabilities", exc)
        return wrapped(*args, **kwargs)

    return wrapper


# --- the instrumentor ---------------------------------------------------------------------------
class PydanticAIInstrumentor(SdkInstrumentor):
    """Patches Pydantic AI::

    PydanticAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "pydantic-ai-slim"
    supported: ClassVar[str] = "pydantic-ai-slim >= 2.23, < 3"
    tested_majors: ClassVar[tuple[str, ...]] = ("2",)
    # Older 2.x releases warn on a bare ``async for node in agent_run`` (it skipped node hooks).
    minimum: ClassVar[str] = "2.23.0"
    tested: ClassVar[str] = "pydantic-ai-slim 2.23.0 and 2.78.0"

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from pydantic_ai import Agent

        patches.wrap(Agent, "iter", _iter_wrapper(source, _capability_class()))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        raise TypeError("Pydantic AI is instrumented as a whole: call instrument()")


def instrument_pydantic_ai() -> None:
    """Trace Pydantic AI agents: runs, model requests (steps) and tool calls.

    ``Agent.run``/``run_sync``/``run_stream``/``iter`` become one ``agent_run`` each. With Pydantic
    AI's own instrumentation on (``instrument=True``) its spans carry steptrace's run id, step
    numbers and records instead of a second span per call. Combine with ``instrument_openai()``
    freely: a model call is still one ``llm_request``. Instrumenting twice is a logged no-op;
    ``uninstrument_pydantic_ai`` restores the originals.
    """
    PydanticAIInstrumentor().instrument()


def uninstrument_pydantic_ai() -> None:
    """Undo ``instrument_pydantic_ai()``."""
    PydanticAIInstrumentor().uninstrument()
