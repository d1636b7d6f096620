"""Instrumentation of LangGraph and LangChain: graph runs, super-steps, chat-model and tool calls.

    steptrace.instrument_langchain()

A compiled graph's ``stream``/``astream`` (``invoke``/``ainvoke`` and prebuilt agents go through
them) is one ``agent_run`` named after the graph. Each super-step opens an ``agent_step``, except
LangGraph's input step, subgraph nodes (the subgraph's super-steps are the steps) and ``ToolNode``
super-steps, which join the step before: a step holds a model call and the tools it asked for, as
in a hand-written loop. Chat-model calls (``BaseChatModel``) are
``llm_request`` spans, tool calls (``BaseTool.run``/``arun``, which ``ToolNode`` and ``invoke``
reach) ``tool_execution`` spans with the model's tool-call id. A graph called right in the user's
own ``agent_run`` adds its steps to that run; one started there while another runs (gather,
threads) is a child run with steps of its own.

Why patches, not a ``BaseCallbackHandler``: a callback hears "started" and "ended" but runs
beside the call, not around it. It cannot make the span current for the model's HTTP request
(where ``instrument_openai()`` finds the ``llm_request`` to enrich instead of opening a second one)
nor let rerun serve a recorded result at the call; it would attach contexts and end spans itself.
Wrapping the library's own call sites hands each call to a handle and its runner, the one path.
Two handles here hold their end: a step stays open across the tool super-step that follows it
(released by the next model super-step or the run's end), and LangGraph's control-flow
exceptions (``GraphInterrupt``, ``ParentCommand``) end a span normally, not as a failure.
``langgraph``/``langchain_core`` are imported only when instrumenting.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, ClassVar

from opentelemetry import trace

from steptrace import _attributes as A
from steptrace._context import RunState, current_run_state, current_step_state
from steptrace._guards import guard_cause
from steptrace._internal import internal_errors, report_internal_error
from steptrace._spans import (
    AgentRun,
    AgentStep,
    Hooks,
    LlmRequest,
    ToolCall,
    current_llm_request,
    run_async_generator,
    run_coroutine,
    run_generator,
    run_sync,
)
from steptrace._state import ActiveConfig
from steptrace.instrumentation._common import (
    ConfigSource,
    Patches,
    SdkInstrumentor,
    server_attributes,
    when_configured,
)

__all__ = ["LangChainInstrumentor", "instrument_langchain", "uninstrument_langchain"]

logger = logging.getLogger("steptrace")

# LangChain's ``ls_provider`` names, as gen_ai.provider.name values (others pass through).
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "amazon_bedrock": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
}


def _has_class(exc: BaseException, names: frozenset[str]) -> bool:
    # By class name: the names are LangGraph's public API, and langgraph stays out of import time.
    return any(cls.__name__ in names for cls in type(exc).__mro__)


_BUBBLE_UP = frozenset({"GraphBubbleUp"})  # GraphInterrupt, ParentCommand: control flow
_INTERRUPT = frozenset({"GraphInterrupt"})


def stop_reason_for(exc: BaseException) -> str | None:
    """The run's stop reason for an exception leaving a graph, or None (error/cancelled)."""
    if _has_class(exc, frozenset({"GraphRecursionError"})):
        return A.STOP_MAX_STEPS
    if _has_class(exc, _INTERRUPT):
        return A.STOP_INTERRUPTED
    return None


def _control_flow(exc: BaseException | None) -> bool:
    return exc is not None and _has_class(exc, _BUBBLE_UP)


def _nth(args: Any, kwargs: Any, position: int, name: str) -> Any:
    return args[position] if len(args) > position else kwargs.get(name)


# --- runs ---------------------------------------------------------------------------------------
class _GraphRun:
    """One traced graph run: its run state and the step held open between super-steps."""

    __slots__ = ("config", "owned", "state", "step")

    def __init__(self, config: ActiveConfig, state: RunState, owned: bool) -> None:
        self.config = config
        self.state = state
        self.owned = owned  # False: the user's own agent_run, which ends as the user says
        self.step: _SuperStep | None = None

    def release(self, ended: bool = False) -> None:
        """End the held step; ``ended``: the graph finished by itself, so that step ended the run."""
        step, self.step = self.step, None
        if step is None or step.finished:
            return
        with internal_errors("langchain.release_step"):
            if ended and self.owned and self.state.stop_reason is None:
                step.stop_reason = A.STOP_END_TURN
        step.release()


# The graph runs in progress, by id of their RunState: a graph started inside one of them (a
# subgraph, a graph a node or tool calls) is part of that run, and its super-steps find the run here.
_graph_runs: dict[int, _GraphRun] = {}


class _RunHooks(Hooks[AgentRun]):
    """A graph run's outcome is read by its body (``_sync_body``/``_async_body``)."""


_RUN_HOOKS = _RunHooks()


def _enclosing_run() -> RunState | None:
    """The user's own ``agent_run`` when the graph is called right in it (not in a step or tool):
    the graph's steps become that run's, with the user's agent name, release and run id."""
    state = current_run_state()
    if state is None or current_step_state() is not None:
        return None
    span = trace.get_current_span()
    attributes = getattr(span, "attributes", None)
    if getattr(span, "name", None) != A.SPAN_AGENT_RUN or not isinstance(attributes, Mapping):
        return None
    return state if attributes.get(A.RUN_ID) == state.run_id else None


def _in_a_graph_task() -> bool:
    """Whether this code runs in a LangGraph node or tool (LangChain hands each runnable's config
    to what it calls through this context variable; the user's own code has none)."""
    from langchain_core.runnables.config import var_child_runnable_config

    return var_child_runnable_config.get() is not None


def _thread_id(args: Any, kwargs: Any) -> str | None:
    config = _nth(args, kwargs, 1, "config")
    configurable = config.get("configurable") if isinstance(config, Mapping) else None
    thread = configurable.get("thread_id") if isinstance(configurable, Mapping) else None
    return str(thread) if thread is not None else None


def _graph_name(graph: Any, args: Any, kwargs: Any) -> str | None:
    config = _nth(args, kwargs, 1, "config")
    name = config.get("run_name") if isinstance(config, Mapping) else None
    name = name or getattr(graph, "name", None)
    return name if isinstance(name, str) else None


def _open_graph_run(
    source: ConfigSource, graph: Any, args: Any, kwargs: Any
) -> tuple[_GraphRun, AgentRun | None] | None:
    """The run a graph call is, or None: the graph is part of a run already traced (or untraced)."""
    config = source.get()
    if config is None:
        return None
    state = current_run_state()
    running = _graph_runs.get(id(state)) if state is not None else None
    if running is not None and (running.owned or _in_a_graph_task()):
        return None  # a subgraph, or a graph called by a node or tool of a traced graph
    try:
        # A graph called right in the user's run is that run's loop; a second one started there
        # while the first still runs (gather, threads) is a loop of its own: a child run (the
        # user's as parent_run_id) numbering its own steps, so two loops never share step numbers.
        enclosing = _enclosing_run() if running is None else None
        if enclosing is not None:
            return _GraphRun(config, enclosing, owned=False), None
        handle = AgentRun(config, _graph_name(graph, args, kwargs), conversation_id=_thread_id(args, kwargs))
        return _GraphRun(config, handle.state, owned=True), handle
    except Exception as exc:  # setup failed: the graph runs untraced
        report_internal_error("langchain.run", exc)
        return None


def _sync_body(
    graph_run: _GraphRun, wrapped: Callable[..., Any], *args: Any, **kwargs: Any
) -> Generator[Any]:
    key = id(graph_run.state)
    _graph_runs[key] = graph_run
    ended = False
    try:
        yield from wrapped(*args, **kwargs)
        ended = True
    except GeneratorExit:
        raise
    except BaseException as exc:
        _note_exit(graph_run, exc)
        raise
    finally:
        _graph_runs.pop(key, None)
        graph_run.release(ended)


async def _async_body(
    graph_run: _GraphRun, wrapped: Callable[..., Any], *args: Any, **kwargs: Any
) -> AsyncGenerator[Any]:
    key = id(graph_run.state)
    _graph_runs[key] = graph_run
    inner = wrapped(*args, **kwargs)
    ended = False
    try:
        async for item in inner:
            yield item
        ended = True
    except GeneratorExit:
        raise
    except BaseException as exc:
        _note_exit(graph_run, exc)
        raise
    finally:
        try:
            await inner.aclose()
        finally:
            _graph_runs.pop(key, None)
            graph_run.release(ended)


def _note_exit(graph_run: _GraphRun, exc: BaseException) -> None:
    with internal_errors("langchain.run_exit"):
        reason = stop_reason_for(exc)
        if reason is not None:
            graph_run.state.stop_reason = reason


def _stream_wrapper(source: ConfigSource, is_async: bool) -> Callable[..., Any]:
    """``Pregel.stream``/``astream``: one ``agent_run`` per graph call not inside a traced one."""
    body: Callable[..., Any] = _async_body if is_async else _sync_body
    runner: Callable[..., Any] = run_async_generator if is_async else run_generator

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        opened = _open_graph_run(source, instance, args, kwargs)
        if opened is None:
            return wrapped(*args, **kwargs)
        graph_run, handle = opened
        fn = functools.partial(body, graph_run, wrapped)
        if handle is None:  # the user's own run: its steps, no span of ours
            return fn(*args, **kwargs)
        return runner(handle, _RUN_HOOKS, fn, args, kwargs)

    return traced


def _loop_exit_wrapper(wrapped: Callable[..., Any], loop: Any, args: Any, kwargs: Any) -> Any:
    """A loop leaving with an interrupt that pauses the top-level graph (a node's ``interrupt()``,
    ``interrupt_before``/``interrupt_after``; the loop swallows it): the run ends ``interrupted``."""
    with internal_errors("langchain.loop_exit"):
        exc = args[1] if len(args) > 1 else None
        if (
            isinstance(exc, BaseException)
            and _has_class(exc, _INTERRUPT)
            and not getattr(loop, "is_nested", True)
        ):
            state = current_run_state()
            graph_run = _graph_runs.get(id(state)) if state is not None else None
            if graph_run is not None:
                graph_run.state.stop_reason = A.STOP_INTERRUPTED
    return wrapped(*args, **kwargs)


# --- super-steps --------------------------------------------------------------------------------
class _SuperStep(AgentStep):
    """An ``agent_step`` that outlives the super-step it opened with: the ``ToolNode`` super-step
    after it runs in it too. ``release`` ends it; a GraphInterrupt leaving it is not a failure."""

    __slots__ = ("_held",)

    def __init__(self, config: ActiveConfig) -> None:
        super().__init__(config)
        self._held = True

    def finish(self, exc: BaseException | None = None) -> None:
        if _control_flow(exc):
            assert exc is not None
            if _has_class(exc, _INTERRUPT):
                self.stop_reason = A.STOP_INTERRUPTED
            exc = None
        if exc is None and self._held:
            return
        super().finish(exc)

    def release(self) -> None:
        self._held = False
        super().finish(None)


class _StepHooks(Hooks[AgentStep]):
    """A super-step's runner yields nothing of interest: the step's children tell the story,
    except when a node answered for a model that ran out of steps (``_ran_out_of_steps``)."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: list[Any]) -> None:
        self.tasks = tasks

    def on_generator_end(self, handle: AgentStep, last_item: Any, completed: bool) -> None:
        if completed and _ran_out_of_steps(self.tasks):
            handle.stop_reason = A.STOP_MAX_STEPS


# What create_react_agent (langgraph-prebuilt) answers in place of the model's reply when the model
# asked for tools and ``remaining_steps`` has run out: the graph ends normally, its step limit hit.
_OUT_OF_STEPS = "Sorry, need more steps to process this request."


def _ran_out_of_steps(tasks: list[Any]) -> bool:
    """A task of this super-step wrote prebuilt's out-of-steps answer: an ``AIMessage`` with those
    words that no model produced (no response metadata, no usage, no tool calls)."""
    with internal_errors("langchain.out_of_steps"):
        for task in tasks:
            for _channel, value in getattr(task, "writes", None) or ():
                for message in value if isinstance(value, list) else (value,):
                    if (
                        getattr(message, "type", None) == "ai"
                        and getattr(message, "content", None) == _OUT_OF_STEPS
                        and not getattr(message, "response_metadata", None)
                        and not getattr(message, "usage_metadata", None)
                        and not getattr(message, "tool_calls", None)
                    ):
                        return True
    return False


_NO_STEP, _TOOLS, _NEW_STEP = 0, 1, 2


def _runs_tool_node(task: Any) -> bool:
    proc = getattr(task, "proc", None)
    for part in getattr(proc, "steps", None) or (proc,):
        if any(cls.__name__ == "ToolNode" for cls in type(part).__mro__):
            return True
    return False


def _tick_kind(tasks: list[Any]) -> int:
    """What a super-step is: LangGraph's own (``__start__`` writing the input) or subgraph nodes
    (their super-steps are the steps) -> no step; ``ToolNode`` tasks -> the model's step goes on;
    anything else -> a new step."""
    if all(
        str(getattr(task, "name", "")).startswith("__") or getattr(task, "subgraphs", ()) for task in tasks
    ):
        return _NO_STEP
    if all(_runs_tool_node(task) for task in tasks):
        return _TOOLS
    return _NEW_STEP


def _tick_wrapper(is_async: bool) -> Callable[..., Any]:
    """``PregelRunner.tick``/``atick``, the tasks of one super-step."""
    runner = run_async_generator if is_async else run_generator

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        state = current_run_state()
        graph_run = _graph_runs.get(id(state)) if state is not None else None
        if graph_run is None or current_step_state() is not None or not args:
            return wrapped(*args, **kwargs)  # not a traced graph, or inside a step already
        step: _SuperStep | None = None
        try:
            tasks = list(args[0])
            args = (tasks, *args[1:])
            kind = _tick_kind(tasks)
            held = graph_run.step
            if kind == _TOOLS and held is not None and not held.finished:
                step = held
            else:
                graph_run.release()
                if kind != _NO_STEP:
                    step = graph_run.step = _SuperStep(graph_run.config)
        except Exception as exc:
            report_internal_error("langchain.super_step", exc)
        if step is None:
            return wrapped(*args, **kwargs)
        return runner(step, _StepHooks(tasks), wrapped, args, kwargs)

    return traced


# --- chat-model calls ---------------------------------------------------------------------------
class _ModelCall(LlmRequest):
    """A chat model's call; streamed chunks (``on_llm_new_token``) mark its time to first chunk."""

    __slots__ = ()


class _Usage:
    """What a stream's chunks told so far: summed usage, the finish reason, tool calls."""

    __slots__ = (
        "cache_creation",
        "cache_read",
        "calls",
        "finish",
        "input",
        "model",
        "output",
        "reasoning",
        "seen",
    )

    def __init__(self) -> None:
        self.seen = False
        self.input = self.output = self.cache_read = self.cache_creation = self.reasoning = 0
        self.finish: str | None = None
        self.model: str | None = None
        self.calls: list[dict[str, Any]] = []

    def add(self, message: Any) -> None:
        usage = getattr(message, "usage_metadata", None)
        if isinstance(usage, Mapping):
            self.seen = True
            self.input += int(usage.get("input_tokens") or 0)
            self.output += int(usage.get("output_tokens") or 0)
            details = usage.get("input_token_details") or {}
            self.cache_read += int(details.get("cache_read") or 0)
            self.cache_creation += int(details.get("cache_creation") or 0)
            self.reasoning += int((usage.get("output_token_details") or {}).get("reasoning") or 0)
        metadata = getattr(message, "response_metadata", None)
        if isinstance(metadata, Mapping) and metadata:
            finish = metadata.get("finish_reason") or metadata.get("stop_reason")
            if isinstance(finish, str):
                self.finish = finish
            model = metadata.get("model_name") or metadata.get("model")
            if isinstance(model, str):
                self.model = model
        for call in getattr(message, "tool_call_chunks", None) or getattr(message, "tool_calls", None) or ():
            if call.get("id"):
                self.calls.append({"name": call.get("name"), "id": call.get("id")})

    def record(self, handle: LlmRequest) -> None:
        finish = self.finish or (A.STOP_TOOL_USE if self.calls else None)
        handle.record_usage(
            input_tokens=self.input if self.seen else None,
            output_tokens=self.output if self.seen else None,
            stop_reason=finish,
            cache_read_input_tokens=self.cache_read or None,
            cache_creation_input_tokens=self.cache_creation or None,
            reasoning_tokens=self.reasoning or None,
            response_model=self.model,
        )
        if not self.seen:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.calls:
            handle.record_tool_calls(self.calls)


def _record_message(handle: LlmRequest, message: Any) -> None:
    """An ``AIMessage``: usage (with cache and reasoning tokens), finish reason, tool calls."""
    usage = _Usage()
    usage.add(message)
    usage.record(handle)
    metadata = getattr(message, "response_metadata", None)
    response_id = metadata.get("id") if isinstance(metadata, Mapping) else None
    if isinstance(response_id, str):
        handle.set_attribute(A.GEN_AI_RESPONSE_ID, response_id)
    if handle.capture_content:
        handle.record_output([_message_parts(message)])


class _GenerateHooks(Hooks[LlmRequest]):
    """``_generate_with_cache`` returned a ``ChatResult``. With ``instrument_openai()`` (or another
    SDK patch) on, the SDK call filled the span from the HTTP response: nothing is read twice."""

    def rerun_request(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """What a rerun compares of ``_generate_with_cache(messages, stop, run_manager, **kwargs)``:
        the messages without their ``id`` (LangGraph gives each new message a random uuid4 every
        run, and the model never sees it), nor the run manager (run ids, callbacks)."""
        compared = {key: value for key, value in arguments.items() if key != "run_manager"}
        messages = compared.get("messages")
        if isinstance(messages, (list, tuple)):
            compared["messages"] = [_without_id(message) for message in messages]
        return compared

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if not handle.sdk_enriched:
            generations = getattr(result, "generations", None) or ()
            _record_message(handle, getattr(generations[0], "message", None) if generations else None)
        return result


_GENERATE_HOOKS = _GenerateHooks()


def _without_id(message: Any) -> Any:
    """A LangChain message as its fields, less the per-run ``id`` (anything else as it is)."""
    dump = getattr(message, "model_dump", None)
    if dump is None:
        return message
    try:
        fields = dump()
    except Exception:
        return message
    if isinstance(fields, dict):
        fields.pop("id", None)
        return fields
    return message


class _StreamHooks(Hooks[LlmRequest]):
    """``BaseChatModel.stream``/``astream``: chunks summed as they pass, recorded at the end."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = _Usage()

    def on_item(self, handle: LlmRequest, item: Any) -> None:
        if not handle.sdk_enriched:
            self.usage.add(item)

    def on_generator_end(self, handle: LlmRequest, last_item: Any, completed: bool) -> None:
        if not handle.sdk_enriched:
            self.usage.record(handle)
            handle.set_attribute(A.LLM_STREAM_COMPLETED, completed)


def _request_attributes(model: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    try:
        attributes = server_attributes(model.client)  # an openai resource behind ChatOpenAI
    except Exception:
        attributes = {}
    temperature = params.get("ls_temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        attributes[A.GEN_AI_REQUEST_TEMPERATURE] = temperature
    max_tokens = params.get("ls_max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attributes[A.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    stop = params.get("ls_stop")
    if isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
        attributes[A.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
    return attributes


def _ls_params(model: Any, stop: Any, run_manager: Any) -> Mapping[str, Any]:
    """LangChain's own description of the call (``ls_provider``, ``ls_model_name``, ...): the run
    manager's metadata carries it already (``_get_ls_params`` costs ~27 µs a call)."""
    metadata = getattr(run_manager, "metadata", None)
    if isinstance(metadata, Mapping) and "ls_provider" in metadata:
        return metadata
    params = model._get_ls_params(stop=stop)
    return params if isinstance(params, Mapping) else {}


def _open_model_call(
    source: ConfigSource, model: Any, messages: Any, stop: Any, run_manager: Any, stream: bool
) -> LlmRequest | None:
    config = source.get()
    if config is None or current_llm_request() is not None:
        return None  # our own stream's call, or the user's llm_request block: that block is the call
    try:
        params = _ls_params(model, stop, run_manager)
        provider = params.get("ls_provider")
        name = params.get("ls_model_name")
        handle = _ModelCall(
            config,
            name if isinstance(name, str) else None,
            _PROVIDERS.get(provider, provider) if isinstance(provider, str) else None,
            A.OPERATION_CHAT,
            stream,
            _request_attributes(model, params),
        )
        if handle.capture_content:
            handle.record_input(_messages_parts(messages))
        return handle
    except Exception as exc:
        report_internal_error("langchain.model", exc)
        return None


def _generate_wrapper(
    wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any, *, source: ConfigSource
) -> Any:
    """``BaseChatModel._generate_with_cache``: one ``llm_request`` per model call (invoke, batch,
    and the stream LangGraph asks for in ``stream_mode="messages"``)."""
    handle = _open_model_call(
        source,
        model,
        _nth(args, kwargs, 0, "messages"),
        _nth(args, kwargs, 1, "stop"),
        _nth(args, kwargs, 2, "run_manager"),
        stream=False,
    )
    if handle is None:
        return wrapped(*args, **kwargs)
    return run_sync(handle, _GENERATE_HOOKS, wrapped, args, kwargs)


async def _traced_agenerate(
    source: ConfigSource, wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any
) -> Any:
    handle = _open_model_call(
        source,
        model,
        _nth(args, kwargs, 0, "messages"),
        _nth(args, kwargs, 1, "stop"),
        _nth(args, kwargs, 2, "run_manager"),
        stream=False,
    )
    if handle is None:
        return await wrapped(*args, **kwargs)
    return await run_coroutine(handle, _GENERATE_HOOKS, wrapped, args, kwargs)


def _model_stream_wrapper(source: ConfigSource, is_async: bool) -> Callable[..., Any]:
    """``BaseChatModel.stream``/``astream``: the span lasts until the stream ends."""
    runner = run_async_generator if is_async else run_generator

    def traced(wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any) -> Any:
        handle = _open_model_call(
            source, model, _nth(args, kwargs, 0, "input"), kwargs.get("stop"), None, True
        )
        if handle is None:
            return wrapped(*args, **kwargs)
        return runner(handle, _StreamHooks(), wrapped, args, kwargs)

    return traced


def _chunk_arrived(handle: LlmRequest | None) -> None:
    if type(handle) is _ModelCall and not handle.sdk_enriched:
        if not handle.stream:
            handle.stream = True
            handle.set_attribute(A.GEN_AI_REQUEST_STREAM, True)
        handle.chunk_received()


def _new_token_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """A streamed chunk reached LangChain's callbacks: time to first chunk, time per chunk."""
    with internal_errors("langchain.new_token"):
        chunk = kwargs.get("chunk")
        if _nth(args, kwargs, 0, "token") or getattr(
            getattr(chunk, "message", None), "tool_call_chunks", None
        ):
            _chunk_arrived(current_llm_request())
    return wrapped(*args, **kwargs)


def _stream_event_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """The same for LangChain's v2 content-block events (a handler that asked for them)."""
    with internal_errors("langchain.stream_event"):
        event = _nth(args, kwargs, 0, "event")
        if isinstance(event, Mapping) and event.get("event") == "content-block-delta":
            _chunk_arrived(current_llm_request())
    return wrapped(*args, **kwargs)


# --- content, in the conventions' message shapes (only with capture on) -------------------------
_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "AIMessageChunk": "assistant",
}


def _message_parts(message: Any) -> dict[str, Any]:
    kind = getattr(message, "type", None)
    parts: list[dict[str, Any]] = []
    content = getattr(message, "content", None)
    if kind == "tool":
        parts.append(
            {"type": "tool_call_response", "id": getattr(message, "tool_call_id", None), "response": content}
        )
    elif isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                parts.append({"type": "text", "content": block})
            elif isinstance(block, Mapping) and block.get("type") == "text":
                parts.append({"type": "text", "content": block.get("text")})
    for call in getattr(message, "tool_calls", None) or ():
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": call.get("name"),
                "arguments": call.get("args"),
            }
        )
    return {"role": _ROLES.get(str(kind), str(kind)), "parts": parts}


def _messages_parts(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        to_messages = getattr(messages, "to_messages", None)
        messages = to_messages() if callable(to_messages) else [messages]
    return [_message_parts(message) for message in messages if hasattr(message, "type")]


# --- tool calls ---------------------------------------------------------------------------------
class _ToolCall(ToolCall):
    """A tool's call; an interrupt raised in it (human-in-the-loop) pauses the run, not a failure."""

    __slots__ = ()

    def finish(self, exc: BaseException | None = None) -> None:
        super().finish(None if _control_flow(exc) else exc)


class _ToolHooks(Hooks[ToolCall]):
    """The tool's output: a ``ToolMessage`` of status ``error`` (a handled ``ToolException``) fails
    the span with the message the model sees."""

    def on_return(self, handle: ToolCall, result: Any) -> Any:
        content = getattr(result, "content", result) if getattr(result, "type", None) == "tool" else result
        handle.record_result(content)
        if getattr(result, "status", None) == "error":
            handle.fail(str(content))
        return result


_TOOL_HOOKS = _ToolHooks()


def _tool_arguments(tool_input: Any) -> Any:
    if isinstance(tool_input, str):
        try:
            return json.loads(tool_input)
        except ValueError:
            return tool_input
    return tool_input


def _open_tool_call(source: ConfigSource, tool: Any, args: Any, kwargs: Any) -> ToolCall | None:
    config = source.get()
    if config is None:
        return None
    try:
        call_id = kwargs.get("tool_call_id")
        return _ToolCall(
            config,
            str(getattr(tool, "name", None) or "tool"),
            _tool_arguments(_nth(args, kwargs, 0, "tool_input")),
            call_id if isinstance(call_id, str) else None,
        )
    except Exception as exc:
        report_internal_error("langchain.tool", exc)
        return None


def _tool_run_wrapper(
    wrapped: Callable[..., Any], tool: Any, args: Any, kwargs: Any, *, source: ConfigSource
) -> Any:
    """``BaseTool.run`` (``invoke`` and ``ToolNode`` call it): one ``tool_execution``."""
    handle = _open_tool_call(source, tool, args, kwargs)
    if handle is None:
        return wrapped(*args, **kwargs)
    return run_sync(handle, _TOOL_HOOKS, wrapped, args, kwargs)


async def _traced_tool_arun(
    source: ConfigSource, wrapped: Callable[..., Any], tool: Any, args: Any, kwargs: Any
) -> Any:
    handle = _open_tool_call(source, tool, args, kwargs)
    if handle is None:
        return await wrapped(*args, **kwargs)
    return await run_coroutine(handle, _TOOL_HOOKS, wrapped, args, kwargs)


# --- the instrumentor ---------------------------------------------------------------------------
def _optional_wrap(patches: Patches, owner: Any, name: str, wrapper: Callable[..., Any], what: str) -> None:
    if owner is None or name not in vars(owner):
        logger.warning("steptrace: this langgraph version has no %s: %s are not traced", name, what)
        return
    patches.wrap(owner, name, wrapper)


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _guard_passthrough(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """ToolNode's ``handle_tool_errors`` turning a tool's exception into a message for the model:
    a guard's (``LoopDetected``, ...) is raised on instead, so the graph stops at the caller."""
    error = args[0] if args else kwargs.get("e")
    if isinstance(error, BaseException) and guard_cause(error) is not None:
        raise error
    return wrapped(*args, **kwargs)


class LangChainInstrumentor(SdkInstrumentor):
    """Patches LangGraph and LangChain::

    LangChainInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "langgraph"
    supported: ClassVar[str] = "langgraph >= 1.0, < 2"
    tested_majors: ClassVar[tuple[str, ...]] = ("1",)

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from langchain_core.callbacks.manager import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
        from langchain_core.language_models.chat_models import BaseChatModel
        from langchain_core.tools import BaseTool
        from langgraph.pregel import Pregel, _loop, _runner

        patches.wrap(BaseTool, "run", functools.partial(_tool_run_wrapper, source=source))
        patches.wrap(BaseTool, "arun", when_configured(source, _traced_tool_arun))
        patches.wrap(
            BaseChatModel, "_generate_with_cache", functools.partial(_generate_wrapper, source=source)
        )
        patches.wrap(BaseChatModel, "_agenerate_with_cache", when_configured(source, _traced_agenerate))
        patches.wrap(BaseChatModel, "stream", _model_stream_wrapper(source, is_async=False))
        patches.wrap(BaseChatModel, "astream", _model_stream_wrapper(source, is_async=True))
        patches.wrap(CallbackManagerForLLMRun, "on_llm_new_token", _new_token_wrapper)
        patches.wrap(AsyncCallbackManagerForLLMRun, "on_llm_new_token", _new_token_wrapper)
        for manager in (CallbackManagerForLLMRun, AsyncCallbackManagerForLLMRun):
            if "on_stream_event" in vars(manager):  # langchain-core 1.4 and later
                patches.wrap(manager, "on_stream_event", _stream_event_wrapper)
        tool_node = _optional_module("langgraph.prebuilt.tool_node")
        if tool_node is not None and "_handle_tool_error" in vars(tool_node):
            patches.wrap(tool_node, "_handle_tool_error", _guard_passthrough)
        else:
            logger.warning(
                "steptrace: this langgraph-prebuilt has no ToolNode _handle_tool_error: a ToolNode with "
                "handle_tool_errors=True hands a guard's exception (LoopDetected) to the model as a message"
            )
        patches.wrap(Pregel, "stream", _stream_wrapper(source, is_async=False))
        patches.wrap(Pregel, "astream", _stream_wrapper(source, is_async=True))
        # LangGraph's internals: one that moved in another version is skipped with a warning.
        runner = getattr(_runner, "PregelRunner", None)
        _optional_wrap(patches, runner, "tick", _tick_wrapper(is_async=False), "super-steps (agent_step)")
        _optional_wrap(
            patches, runner, "atick", _tick_wrapper(is_async=True), "async super-steps (agent_step)"
        )
        for loop, exit_name in (("SyncPregelLoop", "__exit__"), ("AsyncPregelLoop", "__aexit__")):
            _optional_wrap(patches, getattr(_loop, loop, None), exit_name, _loop_exit_wrapper, "interrupts")

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        raise TypeError("LangGraph and LangChain are instrumented as a whole: call instrument()")


def instrument_langchain() -> None:
    """Trace LangGraph graphs and LangChain chat models and tools.

    A graph's ``invoke``/``ainvoke``/``stream``/``astream`` (and ``create_react_agent`` agents)
    becomes one ``agent_run``; chat-model calls ``llm_request``, tool calls ``tool_execution``.
    Combine with ``instrument_openai()`` freely: a model call is still one ``llm_request``.
    Instrumenting twice is a logged no-op; ``uninstrument_langchain`` restores the originals.
    """
    LangChainInstrumentor().instrument()


def uninstrument_langchain() -> None:
    """Undo ``instrument_langchain()``."""
    LangChainInstrumentor().uninstrument()
