"""Instrumentation of the OpenAI Agents SDK (``openai-agents``): runs, turns, model and tool calls.

    steptrace.instrument_openai_agents()

``Runner.run``/``run_sync``/``run_streamed`` become one ``agent_run`` named after the starting
agent, each model turn an ``agent_step`` (named after the agent that ran it, so handoffs show)
holding one ``llm_request``, each function tool call a ``tool_execution``. The SDK's loop is
wrapped where it calls its own pieces, not through its ``TracingProcessor`` interface: that
interface sees nothing when the SDK's tracing is disabled, and its callbacks cannot make a span
current for the model's HTTP call or the tool's body. Nothing here talks to the SDK's own trace
export. ``agents`` is imported only when instrumenting, never by ``import steptrace``.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from opentelemetry import trace

from steptrace import _attributes as A
from steptrace import _spans
from steptrace._context import RunState, current_run_state, current_step_state
from steptrace._guards import guard_cause
from steptrace._internal import internal_errors, report_internal_error
from steptrace._response import field_of
from steptrace._spans import (
    AgentRun,
    AgentStep,
    Hooks,
    LlmRequest,
    ToolCall,
    current_llm_request,
    run_async_generator,
    run_coroutine,
)
from steptrace._state import ActiveConfig
from steptrace.instrumentation._common import (
    ConfigSource,
    Patches,
    SdkInstrumentor,
    server_attributes,
    when_configured,
)
from steptrace.instrumentation.openai import (
    PROVIDER,
    _responses_input,
    _responses_instructions,
    _responses_output,
)

__all__ = ["OpenAIAgentsInstrumentor", "instrument_openai_agents", "uninstrument_openai_agents"]

logger = logging.getLogger("steptrace")

# The SDK's exceptions that end a run for a reason of the shared vocabulary, by class name (the
# names are the SDK's public API; matching by name keeps ``agents`` out of import time).
_GUARDRAIL_EXCEPTIONS = frozenset(
    {
        "InputGuardrailTripwireTriggered",
        "OutputGuardrailTripwireTriggered",
        "ToolInputGuardrailTripwireTriggered",
        "ToolOutputGuardrailTripwireTriggered",
    }
)


def stop_reason_for(exc: BaseException) -> str | None:
    """The run's stop reason for an exception leaving it, or None (the default: error/cancelled)."""
    for cls in type(exc).__mro__:
        if cls.__name__ == "MaxTurnsExceeded":
            return A.STOP_MAX_STEPS
        if cls.__name__ in _GUARDRAIL_EXCEPTIONS:
            return A.STOP_GUARDRAIL
    return None


def _agent_name(agent: Any) -> str | None:
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) else None


# --- runs ---------------------------------------------------------------------------------------
class _RunHooks(Hooks[AgentRun]):
    """A run that returned: ``Runner.run`` gives a ``RunResult``, the streamed loop nothing."""


_RUN_HOOKS = _RunHooks()


def _open_run(config: ActiveConfig, agent: Any) -> AgentRun | None:
    try:
        return AgentRun(config, _agent_name(agent))
    except Exception as exc:  # setup failed: the run goes on untraced
        report_internal_error("openai_agents.run", exc)
        return None


def _enclosing_run() -> RunState | None:
    """The user's own ``agent_run`` when ``Runner.run`` is called right in it (not in one of its
    steps or tools): the SDK's turns become that run's steps, so its agent name, release and run
    id stay the user's. Anywhere else (an agent used as a tool, say) the SDK run is a nested run."""
    state = current_run_state()
    if state is None or current_step_state() is not None:
        return None
    span = trace.get_current_span()
    attributes = getattr(span, "attributes", None)
    if getattr(span, "name", None) != A.SPAN_AGENT_RUN or not isinstance(attributes, Mapping):
        return None
    return state if attributes.get(A.RUN_ID) == state.run_id else None


def _classifying(handle: AgentRun | RunState, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, setting the run's stop reason from the SDK exception that leaves it.

    A guard's exception (``LoopDetected``, ...) that the SDK wrapped in its own (``UserError:
    Error running tool ...``) reaches the caller as it was raised.
    """

    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except BaseException as exc:
            tripped = guard_cause(exc)
            if tripped is not None and tripped is not exc:
                raise tripped from None
            reason = stop_reason_for(exc)
            if reason is not None:
                handle.stop_reason = reason
            raise

    return call


def _run_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """``AgentRunner.run`` (``Runner.run``; ``run_sync`` drives it too): one ``agent_run``."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if source.get() is None:
            return wrapped(*args, **kwargs)
        return _traced_run(source, wrapped, args, kwargs)

    return traced


async def _traced_run(source: ConfigSource, wrapped: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    # Opened when the coroutine starts (run_sync schedules it as a task): a run never awaited
    # leaves no span.
    config = source.get()
    enclosing = _enclosing_run()
    if enclosing is not None:
        return await _classifying(enclosing, wrapped)(*args, **kwargs)
    handle = None if config is None else _open_run(config, _first(args, kwargs, "starting_agent"))
    if handle is None:
        return await wrapped(*args, **kwargs)
    return await run_coroutine(handle, _RUN_HOOKS, _classifying(handle, wrapped), args, kwargs)


def _streaming_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """The loop ``run_streamed`` starts as a task: the run lasts as long as that task, whether
    the caller reads the events to the end, stops reading, or cancels the run."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if source.get() is None:
            return wrapped(*args, **kwargs)
        return _traced_streaming(source, wrapped, args, kwargs)

    return traced


async def _traced_streaming(source: ConfigSource, wrapped: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    config = source.get()
    streamed_result = _nth(args, kwargs, 1, "streamed_result")
    enclosing = _enclosing_run()
    if enclosing is not None:
        result = await _classifying(enclosing, wrapped)(*args, **kwargs)
        _streamed_outcome(enclosing, streamed_result)
        return result
    handle = None if config is None else _open_run(config, _nth(args, kwargs, 2, "starting_agent"))
    if handle is None:
        return await wrapped(*args, **kwargs)

    async def loop(*call_args: Any, **call_kwargs: Any) -> Any:
        result = await _classifying(handle, wrapped)(*call_args, **call_kwargs)
        _streamed_outcome(handle, streamed_result)
        return result

    return await run_coroutine(handle, _RUN_HOOKS, loop, args, kwargs)


def _streamed_outcome(run: AgentRun | RunState, streamed_result: Any) -> None:
    """A streamed loop can end without raising what the consumer will see raised from
    ``stream_events()`` (too many turns, an input guardrail's tripwire): mark the run here (the
    user's own run fails when that exception leaves its block)."""
    with internal_errors("openai_agents.streamed_outcome"):
        stored = getattr(streamed_result, "_stored_exception", None)
        failure: BaseException | str | None = None
        if isinstance(stored, BaseException):
            run.stop_reason = stop_reason_for(stored) or A.STOP_ERROR
            failure = stored
        else:
            max_turns = getattr(streamed_result, "max_turns", None)
            turn = getattr(streamed_result, "current_turn", 0)
            handled = getattr(streamed_result, "_max_turns_handled", False)
            if isinstance(max_turns, int) and isinstance(turn, int) and turn > max_turns and not handled:
                run.stop_reason = A.STOP_MAX_STEPS
                failure = f"MaxTurnsExceeded: Max turns ({max_turns}) exceeded"
            elif any(
                getattr(getattr(result, "output", None), "tripwire_triggered", False)
                for result in getattr(streamed_result, "input_guardrail_results", None) or ()
            ):
                run.stop_reason = A.STOP_GUARDRAIL
                failure = "InputGuardrailTripwireTriggered: a guardrail's tripwire was triggered"
        if failure is not None and isinstance(run, AgentRun):
            run.fail(failure)


# --- turns --------------------------------------------------------------------------------------
class _TurnHooks(Hooks[AgentStep]):
    """A turn returned its ``SingleStepResult``: a final output ends the run, a handoff names
    the agent that runs the next step."""

    def on_return(self, handle: AgentStep, result: Any) -> Any:
        next_step = getattr(result, "next_step", None)
        kind = type(next_step).__name__
        if kind == "NextStepFinalOutput":
            handle.stop_reason = A.STOP_END_TURN
        elif kind == "NextStepHandoff":
            target = _agent_name(getattr(next_step, "new_agent", None))
            if target is not None:
                handle.set_attribute(A.AGENT_STEP_HANDOFF_TO, target)
        return result


_TURN_HOOKS = _TurnHooks()


def _turn_wrapper(source: ConfigSource, bindings_position: int) -> Callable[..., Any]:
    """``run_single_turn`` / ``run_single_turn_streamed``: one ``agent_step`` per model turn."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if source.get() is None:
            return wrapped(*args, **kwargs)
        return _traced_turn(source, wrapped, bindings_position, args, kwargs)

    return traced


async def _traced_turn(
    source: ConfigSource, wrapped: Callable[..., Any], bindings_position: int, args: Any, kwargs: Any
) -> Any:
    config = source.get()
    handle: AgentStep | None = None
    if config is not None:
        try:
            bindings = _nth(args, kwargs, bindings_position, "bindings")
            handle = AgentStep(config, agent=_agent_name(getattr(bindings, "public_agent", None)))
        except Exception as exc:
            report_internal_error("openai_agents.turn", exc)
    if handle is None:
        return await wrapped(*args, **kwargs)
    return await run_coroutine(handle, _TURN_HOOKS, wrapped, args, kwargs)


# --- model calls --------------------------------------------------------------------------------
class _ModelHooks(Hooks[LlmRequest]):
    """What a model call returned. With ``instrument_openai()`` on, the openai patch has filled
    the span from the HTTP response already (``sdk_enriched``): nothing is read twice."""

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if isinstance(result, dict):  # served by steptrace.rerun: the recording holds plain data
            result = _model_response_from(result)
        if not handle.sdk_enriched:
            _record_model_response(handle, result)
        return result

    def on_item(self, handle: LlmRequest, item: Any) -> None:
        if handle.sdk_enriched:
            return
        kind = getattr(item, "type", None)
        if not isinstance(kind, str):
            return
        if kind.endswith(".delta"):
            handle.chunk_received()
        elif kind in _TERMINAL_EVENTS:
            response = getattr(item, "response", None)
            handle.record_response(response)
            if handle.capture_content:
                handle.record_output(_responses_output(response))
            if field_of(response, "usage") is None:
                handle.set_attribute(A.LLM_USAGE_MISSING, True)

    def on_generator_end(self, handle: LlmRequest, last_item: Any, completed: bool) -> None:
        if not handle.sdk_enriched:
            handle.set_attribute(A.LLM_STREAM_COMPLETED, completed)


_MODEL_HOOKS = _ModelHooks()
_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _model_response_from(data: dict[str, Any]) -> Any:
    """A recorded ``ModelResponse`` (a dataclass, recorded as JSON) rebuilt with its SDK types."""
    from agents.items import ModelResponse
    from pydantic import TypeAdapter

    # The recording dumped unset fields as null; the SDK sends output items back to the model
    # without their unset fields, so nulls are left unset again (a rerun's request then matches).
    data = {**data, "output": _without_nulls(data.get("output") or [])}
    return TypeAdapter(ModelResponse).validate_python(data)


def _as_received(event: Any) -> Any:
    """A stream's last event in a rerun, with the fields it had when it came over HTTP: a
    recorded event is rebuilt from a dump that spelled unset fields as null, and the SDK sends
    the response's items back to the model without their unset fields. Rebuilt in place (a
    served event is steptrace's own object)."""
    if getattr(event, "type", None) not in _TERMINAL_EVENTS:
        return event
    with internal_errors("openai_agents.rerun_event"):
        response = event.response
        response.output = [
            type(item).model_validate(_without_nulls(item.model_dump(mode="json")))
            for item in response.output or ()
        ]
    return event


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _record_model_response(handle: LlmRequest, response: Any) -> None:
    """A ``ModelResponse``: the SDK's ``Usage``, the output items, the tool calls asked for."""
    output = field_of(response, "output") or ()
    calls = [
        {"name": field_of(item, "name"), "id": field_of(item, "call_id")}
        for item in output
        if field_of(item, "type") == "function_call"
    ]
    usage = field_of(response, "usage")
    has_usage = usage is not None and int(field_of(usage, "requests") or 0) > 0
    handle.record_usage(
        input_tokens=field_of(usage, "input_tokens") if has_usage else None,
        output_tokens=field_of(usage, "output_tokens") if has_usage else None,
        stop_reason=A.STOP_TOOL_USE if calls else A.STOP_END_TURN,
        cache_read_input_tokens=field_of(field_of(usage, "input_tokens_details"), "cached_tokens")
        if has_usage
        else None,
        reasoning_tokens=field_of(field_of(usage, "output_tokens_details"), "reasoning_tokens")
        if has_usage
        else None,
        response_id=field_of(response, "response_id"),
    )
    if not has_usage:
        handle.set_attribute(A.LLM_USAGE_MISSING, True)
    if calls:
        handle.record_tool_calls(calls)
    if handle.capture_content:
        handle.record_output(_responses_output(response))


def _open_model_call(config: ActiveConfig, model: Any, args: Any, kwargs: Any, stream: bool) -> LlmRequest:
    name = getattr(model, "model", None)
    try:
        attributes = server_attributes(model)
    except Exception:  # a model without an openai client behind it
        attributes = {}
    handle = LlmRequest(
        config, name if isinstance(name, str) else None, PROVIDER, A.OPERATION_CHAT, stream, attributes
    )
    if handle.capture_content:
        handle.record_input(_responses_input({"input": _nth(args, kwargs, 1, "input")}))
        handle.record_system_instructions(
            _responses_instructions({"instructions": _nth(args, kwargs, 0, "system_instructions")})
        )
    return handle


def _model_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """``Model.get_response``: one ``llm_request`` (the openai patch, if on, enriches it)."""
    return when_configured(source, _traced_model_call)


async def _traced_model_call(
    source: ConfigSource, wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any
) -> Any:
    handle = _open_llm(source, model, args, kwargs, stream=False)
    if handle is None:
        return await wrapped(*args, **kwargs)
    return await run_coroutine(handle, _MODEL_HOOKS, wrapped, args, kwargs)


def _open_llm(source: ConfigSource, model: Any, args: Any, kwargs: Any, stream: bool) -> LlmRequest | None:
    config = source.get()
    if config is None or current_llm_request() is not None:
        return None  # a model inside the user's own llm_request block: that block is the call
    try:
        return _open_model_call(config, model, args, kwargs, stream)
    except Exception as exc:
        report_internal_error("openai_agents.model", exc)
        return None


def _stream_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """``Model.stream_response`` (an async generator): the span lasts until the stream ends."""
    return when_configured(source, _traced_stream)


async def _traced_stream(
    source: ConfigSource, wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any
) -> Any:
    handle = _open_llm(source, model, args, kwargs, stream=True)
    inner = (
        wrapped(*args, **kwargs)
        if handle is None
        else run_async_generator(handle, _MODEL_HOOKS, wrapped, args, kwargs)
    )
    served = getattr(_spans.rerun_hook, "session", None) is not None
    # Forward values, errors and close by hand (no ``yield from`` for async generators).
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                produced = await (inner.asend(value) if error is None else inner.athrow(error))
            except StopAsyncIteration:
                return
            error = None
            if served:
                produced = _as_received(produced)
            try:
                value = yield produced
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
    finally:
        await inner.aclose()


# --- function tools -----------------------------------------------------------------------------
class _ToolHooks(Hooks[ToolCall]):
    """One tool call's outcome; ``failed`` once the SDK turned its exception into a message."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False

    def on_return(self, handle: ToolCall, result: Any) -> Any:
        if isinstance(result, dict) and "output" in result:  # served by steptrace.rerun
            result = _invocation_result_from(result)
        output = getattr(result, "output", result)
        handle.record_result(output)
        # A timeout the SDK reports to the model as a message: a failure without an exception.
        if getattr(result, "is_sdk_generated_error", False) is True and not self.failed:
            handle.fail(str(output))
        return result


def _invocation_result_from(data: dict[str, Any]) -> Any:
    """A recorded tool invocation result (a dataclass, recorded as JSON) rebuilt as the SDK's."""
    from agents.tool import _FunctionToolInvocationResult

    return _FunctionToolInvocationResult(data["output"], data.get("is_sdk_generated_error") is True)


# The tool calls open right now, by their span: an error the SDK turns into a message for the
# model is reported inside the tool's call (where its span is current) and marks that span.
_open_tools: dict[int, tuple[ToolCall, _ToolHooks]] = {}


def _tool_arguments(arguments: Any) -> Any:
    """The model's arguments JSON as a value (hashed and captured like a decorated tool's)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def _tool_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """The SDK's invocation of one function tool: one ``tool_execution``."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if source.get() is None:
            return wrapped(*args, **kwargs)
        return _traced_tool(source, wrapped, args, kwargs)

    return traced


async def _traced_tool(source: ConfigSource, wrapped: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    config = source.get()
    handle: ToolCall | None = None
    if config is not None:
        try:
            tool = kwargs.get("function_tool")
            context = kwargs.get("context")
            call_id = getattr(context, "tool_call_id", None)
            handle = ToolCall(
                config,
                str(getattr(tool, "name", None) or "tool"),
                _tool_arguments(kwargs.get("arguments")),
                call_id if isinstance(call_id, str) else None,
            )
        except Exception as exc:
            report_internal_error("openai_agents.tool", exc)
    if handle is None:
        return await wrapped(*args, **kwargs)
    hooks = _ToolHooks()
    key = id(handle.span)
    _open_tools[key] = (handle, hooks)

    async def call(*call_args: Any, **call_kwargs: Any) -> Any:
        try:
            return await wrapped(*call_args, **call_kwargs)
        finally:
            _open_tools.pop(key, None)

    return await run_coroutine(handle, hooks, call, args, kwargs)


def _handled_error_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """The SDK's ``failure_error_function`` turning a tool's exception into text for the model:
    the tool still failed, so its span is marked failed with that exception."""
    error = kwargs.get("error")
    if isinstance(error, BaseException) and guard_cause(error) is not None:
        # A guard stopped a call inside the tool: the run stops, the model is not told about it.
        raise error
    open_tool = _open_tools.get(id(trace.get_current_span()))
    if open_tool is None or not isinstance(error, BaseException):
        return wrapped(*args, **kwargs)
    return _noting_handled_error(open_tool, error, wrapped(*args, **kwargs))


async def _noting_handled_error(
    open_tool: tuple[ToolCall, _ToolHooks], error: BaseException, message: Any
) -> Any:
    result = await message
    if result is not None:  # None: no error function, the exception propagates and fails the span
        handle, hooks = open_tool
        hooks.failed = True
        handle.fail(error)
    return result


# --- arguments ----------------------------------------------------------------------------------
def _first(args: Any, kwargs: Any, name: str) -> Any:
    return args[0] if args else kwargs.get(name)


def _nth(args: Any, kwargs: Any, position: int, name: str) -> Any:
    return args[position] if len(args) > position else kwargs.get(name)


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _optional_wrap(patches: Patches, owner: Any, name: str, wrapper: Callable[..., Any], what: str) -> None:
    if owner is None or not callable(getattr(owner, name, None)):
        logger.warning("steptrace: this openai-agents version has no %s: %s are not traced", name, what)
        return
    patches.wrap(owner, name, wrapper)


# --- the instrumentor ---------------------------------------------------------------------------
class OpenAIAgentsInstrumentor(SdkInstrumentor):
    """Patches the OpenAI Agents SDK::

    OpenAIAgentsInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "openai-agents"
    supported: ClassVar[str] = "openai-agents >= 0.24, < 1"
    tested_majors: ClassVar[tuple[str, ...]] = ("0",)

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        import agents.run
        import agents.tool
        from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
        from agents.models.openai_responses import OpenAIResponsesModel

        patches.wrap(agents.run.AgentRunner, "run", _run_wrapper(source))
        # The loop calls its pieces by module-level name: wrapped where they are looked up. These
        # are the SDK's internals: one that moved in another version is skipped with a warning,
        # and the rest still traces.
        run_loop = _optional_module("agents.run_internal.run_loop")
        tool_execution = _optional_module("agents.run_internal.tool_execution")
        _optional_wrap(patches, agents.run, "start_streaming", _streaming_wrapper(source), "streamed runs")
        _optional_wrap(patches, agents.run, "run_single_turn", _turn_wrapper(source, 0), "turns")
        _optional_wrap(
            patches, run_loop, "run_single_turn_streamed", _turn_wrapper(source, 1), "streamed turns"
        )
        _optional_wrap(
            patches, tool_execution, "_invoke_function_tool_with_metadata", _tool_wrapper(source), "tools"
        )
        _optional_wrap(
            patches,
            agents.tool,
            "maybe_invoke_function_tool_failure_error_function",
            _handled_error_wrapper,
            "tool errors turned into messages",
        )
        for model in (OpenAIResponsesModel, OpenAIChatCompletionsModel):
            patches.wrap(model, "get_response", _model_wrapper(source))
            patches.wrap(model, "stream_response", _stream_wrapper(source))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        raise TypeError("the OpenAI Agents SDK is instrumented as a whole: call instrument()")


def instrument_openai_agents() -> None:
    """Trace the OpenAI Agents SDK: runs, turns, model calls and function tool calls.

    ``Runner.run``/``run_sync``/``run_streamed`` become one ``agent_run`` each; works with the
    SDK's own tracing on or off and never sends anything to OpenAI's trace endpoint. Combine with
    ``instrument_openai()`` freely: a model call is still one ``llm_request``. Instrumenting twice
    is a logged no-op; ``uninstrument_openai_agents`` restores the originals.
    """
    OpenAIAgentsInstrumentor().instrument()


def uninstrument_openai_agents() -> None:
    """Undo ``instrument_openai_agents()``."""
    OpenAIAgentsInstrumentor().uninstrument()
