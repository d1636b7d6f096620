"""``agent_run``, ``agent_step``, ``llm_request``, ``tool``, ``tool_executor``: specs that hand out a
fresh handle (``_spans``) for every call and every ``with`` block; no lifecycle code of their own.

Each works bare (``@steptrace.tool``), with arguments (``@steptrace.tool(name="search")``) and as
a context manager (``with steptrace.tool("search") as call:``). The runner for a function is
chosen once, at decoration time, among four: sync, async, generator, async generator. A spec
never changes when it is used: one spec may decorate several functions and serve concurrent
``with`` blocks.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracer

from steptrace import _attributes as A
from steptrace._content import ContentPolicy
from steptrace._guards import Guards
from steptrace._internal import report_internal_error
from steptrace._metrics import Instruments
from steptrace._spans import (
    _NO_ITEM,
    AgentRun,
    AgentStep,
    Block,
    Hooks,
    LlmRequest,
    OpenBlocks,
    ToolCall,
    run_async_generator,
    run_coroutine,
    run_generator,
    run_in_context,
    run_sync,
    tripped,
)
from steptrace._state import ActiveConfig, active

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", AgentRun, AgentStep, LlmRequest, ToolCall)

Handle = AgentRun | AgentStep | LlmRequest | ToolCall
Opener = Callable[[ActiveConfig, tuple[Any, ...], dict[str, Any]], H]

_noop_config: ActiveConfig | None = None


def _inert_config() -> ActiveConfig:
    """Handles for ``with`` blocks when tracing is off: real objects over the no-op API."""
    global _noop_config
    if _noop_config is None:
        _noop_config = ActiveConfig(
            NoOpTracer(),
            Instruments(NoOpMeterProvider().get_meter("steptrace")),
            ContentPolicy(False),
        )
    return _noop_config


def _open(opener: Opener[H], config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> H | None:
    try:
        return opener(config, args, kwargs)
    except Exception as exc:  # setup failed: run the user's function untraced
        report_internal_error("span start", exc)
        return None


def function_name(fn: Callable[..., Any]) -> str | None:
    """``fn.__name__``, seeing through ``functools.partial`` (which has none)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else None


def wrap(fn: Callable[P, R], opener: Opener[H], hooks: Hooks[H]) -> Callable[P, R]:
    """Trace every call of ``fn`` with a fresh handle from ``opener``; the four runners."""
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, opener, hooks)  # type: ignore[return-value]
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, opener, hooks)  # type: ignore[return-value]
    if inspect.iscoroutinefunction(fn):
        return _wrap_coroutine(fn, opener, hooks)
    return _wrap_sync(fn, opener, hooks)


def _wrap_sync(fn: Callable[P, R], opener: Opener[H], hooks: Hooks[H]) -> Callable[P, R]:
    @functools.wraps(fn)
    def traced(*args: P.args, **kwargs: P.kwargs) -> R:
        config = active()
        if config is None:
            return fn(*args, **kwargs)
        handle = _open(opener, config, args, kwargs)
        if handle is None:
            return fn(*args, **kwargs)
        return run_sync(handle, hooks, fn, args, kwargs)  # type: ignore[no-any-return]

    return traced


def _wrap_coroutine(fn: Callable[P, Any], opener: Opener[H], hooks: Hooks[H]) -> Callable[P, Any]:
    @functools.wraps(fn)
    async def traced(*args: P.args, **kwargs: P.kwargs) -> Any:
        # The handle opens when the coroutine starts, not when it is created: a task cancelled
        # before it runs, or a coroutine never awaited, opens no span.
        config = active()
        if config is None:
            return await fn(*args, **kwargs)
        handle = _open(opener, config, args, kwargs)
        if handle is None:
            return await fn(*args, **kwargs)
        return await run_coroutine(handle, hooks, fn, args, kwargs)

    return traced


def _wrap_generator(
    fn: Callable[P, Generator[Any, Any, Any]], opener: Opener[H], hooks: Hooks[H]
) -> Callable[P, Generator[Any, Any, Any]]:
    @functools.wraps(fn)
    def traced(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, Any]:
        config = active()
        handle = None if config is None else _open(opener, config, args, kwargs)
        if handle is None:
            return (yield from fn(*args, **kwargs))
        return (yield from run_generator(handle, hooks, fn, args, kwargs))

    return traced


def _wrap_async_generator(
    fn: Callable[P, AsyncGenerator[Any, Any]], opener: Opener[H], hooks: Hooks[H]
) -> Callable[P, AsyncGenerator[Any, Any]]:
    @functools.wraps(fn)
    async def traced(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Any, Any]:
        config = active()
        handle = None if config is None else _open(opener, config, args, kwargs)
        inner = (
            fn(*args, **kwargs) if handle is None else run_async_generator(handle, hooks, fn, args, kwargs)
        )
        # No ``yield from`` for async generators: forward values, errors and close by hand.
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    produced = await (inner.asend(value) if error is None else inner.athrow(error))
                except StopAsyncIteration:
                    return
                error = None
                try:
                    value = yield produced
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    error = exc
        finally:
            await inner.aclose()

    return traced


class _Spec(Generic[H]):
    """A span description usable as a decorator and as a (sync or async) context manager.

    Every call of a decorated function and every ``with`` gets a fresh handle; what the spec
    describes never changes. ``__exit__`` ends the block its own ``__enter__`` opened, found by
    ``OpenBlocks`` (by the frame of the ``with`` statement), so a reused spec serves concurrent
    threads and tasks, nests in itself, and serves generators stepped in copied contexts
    (Starlette, anyio) whose requests' contexts are alike.
    """

    _hooks: Hooks[H] = Hooks()

    def _opener(self, fn: Callable[..., Any] | None = None) -> Opener[H]:
        """Opens a handle for one call of ``fn`` (or one ``with`` block when ``fn`` is None)."""
        raise NotImplementedError

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        return wrap(fn, self._opener(fn), self._hooks)

    def _enter(self, frame: object) -> H:
        config = active() or _inert_config()
        opener = self._opener()
        handle = _open(opener, config, (), {})
        if handle is None:
            # Setup failed (reported): the block runs untraced, never raising into the host. The
            # stand-in handle opens outside the caller's context (whatever failed there cannot
            # fail it), and the body keeps the caller's context as if steptrace were not there.
            handle = run_in_context(otel_context.Context(), opener, _inert_config(), (), {})
            block = Block(otel_context.get_current(), self, handle, frame)
        else:
            if handle._trip is not None:  # a guard stopped the block before its body runs
                raise tripped(handle)
            block = Block(handle.context, self, handle, frame)
        # Made on first use (the subclasses' __init__ stay plain); setdefault keeps one per spec
        # when threads race to make it.
        blocks: OpenBlocks | None = self.__dict__.get("_blocks")
        if blocks is None:
            blocks = self.__dict__.setdefault("_blocks", OpenBlocks())
        blocks.add(block)
        block.enter()
        return handle

    def _exit(self, frame: object, exc: BaseException | None) -> None:
        blocks: OpenBlocks | None = self.__dict__.get("_blocks")
        block = None if blocks is None else blocks.take(self, frame)
        if block is None:
            return
        block.exit()
        block.handle.finish(exc)

    # The caller's frame is the ``with`` statement's: one frame up from __enter__/__exit__, and
    # from __aenter__/__aexit__ too (a coroutine's caller is the frame awaiting it).
    def __enter__(self) -> H:
        return self._enter(sys._getframe(1))

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit(sys._getframe(1), exc)

    async def __aenter__(self) -> H:
        return self._enter(sys._getframe(1))

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit(sys._getframe(1), exc)


# --- agent_run -------------------------------------------------------------------------------------
class AgentRunSpec(_Spec[AgentRun]):
    def __init__(
        self,
        agent: str | None,
        release: str | None,
        run_id: str | None,
        conversation_id: str | None,
        attributes: Mapping[str, Any] | None,
        guards: Guards | None = None,
    ) -> None:
        self.agent, self.release, self.run_id = agent, release, run_id
        self.conversation_id, self.attributes = conversation_id, attributes
        self.guards = guards

    def _opener(self, fn: Callable[..., Any] | None = None) -> Opener[AgentRun]:
        # ``@steptrace.agent_run()`` names the agent after the function it decorates.
        agent = self.agent if self.agent is not None or fn is None else function_name(fn)
        release, run_id = self.release, self.run_id
        conversation_id, attributes, guards = self.conversation_id, self.attributes, self.guards

        def open_run(config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AgentRun:
            return AgentRun(config, agent, release, run_id, conversation_id, attributes, guards)

        return open_run


@overload
def agent_run(agent: Callable[P, R]) -> Callable[P, R]: ...
@overload
def agent_run(
    agent: str | None = None,
    *,
    release: str | None = None,
    run_id: str | None = None,
    conversation_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    guards: Guards | None = None,
) -> AgentRunSpec: ...
def agent_run(
    agent: str | Callable[P, R] | None = None,
    *,
    release: str | None = None,
    run_id: str | None = None,
    conversation_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    guards: Guards | None = None,
) -> AgentRunSpec | Callable[P, R]:
    """An agent run: the ``agent_run`` span every other span of the run nests in.

    ``with steptrace.agent_run(agent="researcher", release="v1.4.2") as run:`` gives a handle
    with ``run.run_id`` (generated unless ``run_id=`` is given) and a settable
    ``run.stop_reason``; if never set it ends as ``end_turn``, ``error`` (an exception escaped)
    or ``cancelled``. As a decorator, ``@steptrace.agent_run`` names the agent after the function.
    ``guards=steptrace.Guards(...)`` replaces the configured guards for this run (``Guards()``
    turns them off); ``configure(on_guard=...)`` still says what a trip does.
    """
    if callable(agent):
        return AgentRunSpec(None, release, run_id, conversation_id, attributes, guards)(agent)
    return AgentRunSpec(agent, release, run_id, conversation_id, attributes, guards)


# --- agent_step ------------------------------------------------------------------------------------
class AgentStepSpec(_Spec[AgentStep]):
    def __init__(self, attributes: Mapping[str, Any] | None) -> None:
        self.attributes = attributes

    def _opener(self, fn: Callable[..., Any] | None = None) -> Opener[AgentStep]:
        attributes = self.attributes

        def open_step(config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AgentStep:
            return AgentStep(config, attributes)

        return open_step


@overload
def agent_step(fn: Callable[P, R]) -> Callable[P, R]: ...
@overload
def agent_step(fn: None = None, *, attributes: Mapping[str, Any] | None = None) -> AgentStepSpec: ...
def agent_step(
    fn: Callable[P, R] | None = None, *, attributes: Mapping[str, Any] | None = None
) -> AgentStepSpec | Callable[P, R]:
    """One iteration of the agent loop; ``step.number`` counts 1, 2, ... within the run.

    Set ``step.stop_reason`` (or the run's) in the step that ends the run.
    """
    if fn is not None:
        return AgentStepSpec(attributes)(fn)
    return AgentStepSpec(attributes)


# --- llm_request -----------------------------------------------------------------------------------
class _LlmHooks(Hooks[LlmRequest]):
    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if not handle.sdk_enriched:
            handle.record_response(result)
        return result

    def on_item(self, handle: LlmRequest, item: Any) -> None:
        handle.chunk_received()

    def on_generator_end(self, handle: LlmRequest, last_item: Any, completed: bool) -> None:
        handle.set_attribute(A.LLM_STREAM_COMPLETED, completed)
        if last_item is not _NO_ITEM and not handle.sdk_enriched:
            handle.record_response(last_item)


class LlmRequestSpec(_Spec[LlmRequest]):
    _hooks = _LlmHooks()

    def __init__(
        self,
        model: str | None,
        provider: str | None,
        operation: str,
        stream: bool | None,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self.model, self.provider, self.operation = model, provider, operation
        self.stream, self.attributes = stream, attributes

    def _opener(self, fn: Callable[..., Any] | None = None) -> Opener[LlmRequest]:
        model, provider, operation = self.model, self.provider, self.operation
        stream, attributes = self.stream, self.attributes
        if stream is None and fn is not None:  # a decorated generator is a stream
            stream = True if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn) else None

        def open_llm(config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LlmRequest:
            return LlmRequest(config, model, provider, operation, stream, attributes)

        return open_llm


@overload
def llm_request(model: Callable[P, R]) -> Callable[P, R]: ...
@overload
def llm_request(
    model: str | None = None,
    provider: str | None = None,
    *,
    operation: str = A.OPERATION_CHAT,
    stream: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> LlmRequestSpec: ...
def llm_request(
    model: str | Callable[P, R] | None = None,
    provider: str | None = None,
    *,
    operation: str = A.OPERATION_CHAT,
    stream: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> LlmRequestSpec | Callable[P, R]:
    """A model call: the ``llm_request`` span (kind CLIENT).

    As a context manager the handle offers ``record_response(resp)``, ``record_usage(...)`` and
    ``first_chunk()``. As a decorator, model, usage and stop reason are read from the return
    value (or, for a generator, its last item; each item counts as a streamed chunk).
    """
    if callable(model):
        return LlmRequestSpec(None, provider, operation, stream, attributes)(model)
    return LlmRequestSpec(model, provider, operation, stream, attributes)


# --- tool and tool_executor ------------------------------------------------------------------------
class _ToolHooks(Hooks[ToolCall]):
    def on_return(self, handle: ToolCall, result: Any) -> Any:
        handle.record_result(result)
        return result

    def on_generator_end(self, handle: ToolCall, last_item: Any, completed: bool) -> None:
        if last_item is not _NO_ITEM:
            handle.record_result(last_item)


def _arguments_reader(
    fn: Callable[..., Any],
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """A fast reader of a call's arguments as ``{parameter: value}``, defaults included.

    ``self``/``cls`` are left out: their repr carries memory addresses, which would make the
    arguments hash differ for identical calls.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return lambda args, kwargs: {"args": list(args), **kwargs} if args else dict(kwargs)
    names: list[str] = []
    defaults: dict[str, Any] = {}
    simple = True
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            simple = False
        names.append(parameter.name)
        if parameter.default is not parameter.empty:
            defaults[parameter.name] = parameter.default
    skip = names[0] if names and names[0] in ("self", "cls") else None

    if simple:

        def read(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            values = {**defaults, **dict(zip(names, args, strict=False)), **kwargs}
            if skip is not None:
                values.pop(skip, None)
            return values

        return read

    def read_bound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            return {"args": list(args), **kwargs}
        bound.apply_defaults()
        values = dict(bound.arguments)
        for parameter in signature.parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                values.update(values.pop(parameter.name, {}))
        if skip is not None:
            values.pop(skip, None)
        return values

    return read_bound


class ToolSpec(_Spec[ToolCall]):
    _hooks = _ToolHooks()

    def __init__(
        self,
        name: str | None,
        call_id: str | None,
        arguments: Any,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self.name, self.call_id, self.arguments, self.attributes = (
            name,
            call_id,
            arguments,
            attributes,
        )

    def _opener(self, fn: Callable[..., Any] | None = None) -> Opener[ToolCall]:
        call_id, arguments, attributes = self.call_id, self.arguments, self.attributes
        if fn is None:
            name = self.name or "tool"

            def open_block(config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolCall:
                return ToolCall(config, name, arguments, call_id, attributes)

            return open_block
        name = self.name or function_name(fn) or "tool"
        read_arguments = _arguments_reader(fn)

        def open_call(config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolCall:
            return ToolCall(config, name, read_arguments(args, kwargs), call_id, attributes)

        return open_call


@overload
def tool(name: Callable[P, R]) -> Callable[P, R]: ...
@overload
def tool(
    name: str | None = None,
    *,
    call_id: str | None = None,
    arguments: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> ToolSpec: ...
def tool(
    name: str | Callable[P, R] | None = None,
    *,
    call_id: str | None = None,
    arguments: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> ToolSpec | Callable[P, R]:
    """A tool execution: the ``tool_execution`` span.

    ``@steptrace.tool`` names the tool after the function and hashes its arguments (to spot
    repeated calls); ``@steptrace.tool(name="search_documents")`` renames it. As a context
    manager, ``with steptrace.tool("search", arguments={...}) as call: call.record_result(r)``.
    Arguments and result are recorded only when content capture is on.
    """
    if callable(name):
        return ToolSpec(None, call_id, arguments, attributes)(name)
    return ToolSpec(name, call_id, arguments, attributes)


def tool_executor(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a generic executor ``execute(tool_name, tool_args, ...)``: one span per call,
    named by its first argument (after ``self``), with the second as the tool's arguments."""
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    offset = 1 if names and names[0] in ("self", "cls") else 0
    name_param = names[offset] if len(names) > offset else "tool_name"
    args_param = names[offset + 1] if len(names) > offset + 1 else "tool_args"

    def open_tool(config: ActiveConfig, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ToolCall:
        positional = args[offset:]
        tool_name = positional[0] if positional else kwargs.get(name_param)
        tool_args = positional[1] if len(positional) > 1 else kwargs.get(args_param)
        call_id = kwargs.get("tool_call_id", kwargs.get("call_id"))
        return ToolCall(
            config,
            str(tool_name) if tool_name is not None else "tool",
            tool_args,
            call_id if isinstance(call_id, str) else None,
        )

    return wrap(fn, open_tool, _ToolHooks())
