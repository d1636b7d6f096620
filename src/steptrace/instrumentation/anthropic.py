"""Instrumentation of the ``anthropic`` SDK: ``messages.create``/``stream``/``parse`` and the same
three of ``beta.messages``.

    steptrace.instrument_anthropic()          # every client
    steptrace.instrument_anthropic(client)    # one client instance

Sync and async; ``create(stream=True)`` and the ``stream(...)`` context managers, including
``get_final_message()`` and ``text_stream``; ``parse`` (structured outputs) where the installed SDK
has it. ``anthropic`` is imported only when instrumenting.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar

import wrapt

from steptrace import _attributes as A
from steptrace._internal import internal_errors
from steptrace._response import field_of
from steptrace._spans import LlmRequest
from steptrace.instrumentation._common import (
    AsyncStreamProxy,
    Call,
    ConfigSource,
    Endpoint,
    Observer,
    Patches,
    Request,
    SdkInstrumentor,
    StreamProxy,
    async_wrapper,
    content_parts,
    invoke,
    invoke_async,
    number_param,
    open_call,
    stop_param,
    sync_wrapper,
    tool_call_part,
)

__all__ = ["AnthropicInstrumentor", "instrument_anthropic", "uninstrument_anthropic"]

PROVIDER = "anthropic"
_now = time.perf_counter


def _params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, kwargs.get("temperature"))
    number_param(params, A.GEN_AI_REQUEST_TOP_P, kwargs.get("top_p"))
    number_param(params, A.GEN_AI_REQUEST_TOP_K, kwargs.get("top_k"))
    number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, kwargs.get("max_tokens"))
    stop_param(params, kwargs.get("stop_sequences"))
    return params


def _describe_create(kwargs: Mapping[str, Any]) -> Request:
    return Request(kwargs.get("model"), kwargs.get("stream") is True, _params(kwargs))


def _describe_stream(kwargs: Mapping[str, Any]) -> Request:
    return Request(kwargs.get("model"), True, _params(kwargs))


def _input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": field_of(message, "role"), "parts": content_parts(field_of(message, "content"))}
        for message in kwargs.get("messages") or ()
    ]


def _system_instructions(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``system=`` (a string or text blocks) is not a message: gen_ai.system_instructions."""
    system = kwargs.get("system")
    return content_parts(system) if isinstance(system, (str, list, tuple)) else []


def _output(message: Any) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "parts": content_parts(field_of(message, "content")),
            "finish_reason": field_of(message, "stop_reason"),
        }
    ]


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class _MessageObserver(Observer):
    """Accumulates raw message stream events into what the whole message would say."""

    __slots__ = ("blocks", "message", "stop_reason", "usage")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.message: Any = None
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        # index -> [block type, id, name, text pieces]
        self.blocks: dict[int, list[Any]] = {}

    def observe(self, event: Any) -> None:
        kind = event.type
        if kind == "content_block_delta":
            times = self.times
            if times is None:
                self.content_arrived()
            else:
                times.append(_now())
            if self.capture:
                block = self.blocks.get(event.index)
                if block is not None:
                    delta = event.delta
                    piece = getattr(delta, "text", None) or getattr(delta, "partial_json", None)
                    if piece:
                        block[3].append(piece)
        elif kind == "content_block_start":
            block = event.content_block
            self.blocks[event.index] = [
                block.type,
                getattr(block, "id", None),
                getattr(block, "name", None),
                [],
            ]
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self._usage(event.usage)
        elif kind == "message_start":
            self.message = event.message
            self._usage(event.message.usage)

    def _usage(self, usage: Any) -> None:
        for name in _USAGE_FIELDS:
            value = getattr(usage, name, None)
            if value is not None:
                self.usage[name] = value

    def finalize(self) -> None:
        handle = self.handle
        message = self.message
        content = []
        for _index, (kind, block_id, name, pieces) in sorted(self.blocks.items()):
            text = "".join(pieces)
            if kind in ("tool_use", "server_tool_use"):
                content.append({"type": kind, "id": block_id, "name": name, "input": _json(text)})
            elif kind == "text":
                content.append({"type": "text", "text": text})
            else:
                content.append({"type": kind})
        if message is not None:
            handle.record_response(
                {
                    "type": "message",
                    "role": "assistant",
                    "id": field_of(message, "id"),
                    "model": field_of(message, "model"),
                    "stop_reason": self.stop_reason,
                    "content": content,
                    "usage": self.usage or None,
                }
            )
        if not self.usage:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.capture:
            handle.record_output(
                [{"role": "assistant", "parts": self._parts(content), "finish_reason": self.stop_reason}]
            )

    @staticmethod
    def _parts(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parts = []
        for block in content:
            if block["type"] in ("tool_use", "server_tool_use"):
                parts.append(tool_call_part(block["id"], block["name"], block["input"]))
            else:
                parts.extend(content_parts([block]))
        return parts


def _json(text: str) -> Any:
    """Streamed tool input arrives as JSON text; parse it so it reads like a whole message's."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


CREATE = Endpoint(
    PROVIDER, _describe_create, _input, _MessageObserver, _output, system_instructions=_system_instructions
)
STREAM = Endpoint(
    PROVIDER, _describe_stream, _input, _MessageObserver, _output, system_instructions=_system_instructions
)


# --- messages.stream(...): the request is sent when the manager is entered ---------------------
class _MessageStreamCall(Call):
    """Entering the manager returns a ``MessageStream`` (``BetaMessageStream`` from
    ``beta.messages``): route its raw events through our proxy (its helpers all read them), so the
    span ends with the stream."""

    __slots__ = ("helper_module", "output_format", "stream_kwargs")
    helper_module: str  # a key of _STREAM_HELPERS
    output_format: Any  # stream(output_format=...): what get_final_message() parses into
    stream_kwargs: Mapping[str, Any]  # what stream(...) was given: the request it sends

    def rerun_request(self, entered_kwargs: dict[str, Any]) -> dict[str, Any]:
        """What a rerun records and compares: the keywords of ``stream(...)``, not those of the
        manager's ``__enter__`` (none), which sends them."""
        return dict(self.stream_kwargs)

    def on_return(self, handle: LlmRequest, message_stream: Any) -> Any:
        proxy_type = AsyncStreamProxy if self.is_async else StreamProxy
        with internal_errors("instrumentation.stream_wrap"):  # another SDK's MessageStream shape
            message_stream._raw_stream = self.observe_stream(proxy_type, message_stream._raw_stream)
        return message_stream

    def served_stream(self, raw_stream: Any) -> Any:
        """The helper stream ``stream(...)`` would have handed out, over recorded raw events (a
        rerun): the same class as the live call's, parsing into the same ``output_format``."""
        from anthropic import NOT_GIVEN

        sync_name, async_name = _STREAM_HELPERS[self.helper_module]
        streaming = importlib.import_module("anthropic.lib.streaming")
        helper = getattr(streaming, async_name if self.is_async else sync_name)
        return helper(raw_stream, NOT_GIVEN if self.output_format is None else self.output_format)


# Where a stream helper's class is named: messages.stream() -> MessageStream, beta -> BetaMessageStream.
_STREAM_HELPERS = {
    "messages": ("MessageStream", "AsyncMessageStream"),
    "beta": ("BetaMessageStream", "BetaAsyncMessageStream"),
}


def _open_stream_call(
    source: ConfigSource, resource: Any, kwargs: Mapping[str, Any], helper_module: str
) -> Call | None:
    call = open_call(source, STREAM, resource, kwargs, _MessageStreamCall)
    if isinstance(call, _MessageStreamCall):
        call.helper_module = helper_module
        call.stream_kwargs = kwargs
        output_format = kwargs.get("output_format")
        call.output_format = output_format
    return call


class _StreamManagerProxy(wrapt.ObjectProxy[Any]):
    """``MessageStreamManager``: opens the span on ``__enter__``, when the request is sent."""

    def __init__(
        self, manager: Any, source: ConfigSource, resource: Any, kwargs: Mapping[str, Any], helper_module: str
    ) -> None:
        super().__init__(manager)
        self._self_source = source
        self._self_resource = resource
        self._self_kwargs = kwargs
        self._self_helper_module = helper_module

    def __enter__(self) -> Any:
        call = _open_stream_call(
            self._self_source, self._self_resource, self._self_kwargs, self._self_helper_module
        )
        if call is None:
            return self.__wrapped__.__enter__()
        return invoke(call, self.__wrapped__.__enter__, (), {})

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__wrapped__.__exit__(exc_type, exc, traceback)


class _AsyncStreamManagerProxy(wrapt.ObjectProxy[Any]):
    """``AsyncMessageStreamManager``: opens the span on ``__aenter__``."""

    def __init__(
        self, manager: Any, source: ConfigSource, resource: Any, kwargs: Mapping[str, Any], helper_module: str
    ) -> None:
        super().__init__(manager)
        self._self_source = source
        self._self_resource = resource
        self._self_kwargs = kwargs
        self._self_helper_module = helper_module

    async def __aenter__(self) -> Any:
        call = _open_stream_call(
            self._self_source, self._self_resource, self._self_kwargs, self._self_helper_module
        )
        if call is None:
            return await self.__wrapped__.__aenter__()
        try:
            return await invoke_async(call, self.__wrapped__.__aenter__, (), {})
        finally:
            _close_unsent_request(self.__wrapped__)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.__wrapped__.__aexit__(exc_type, exc, traceback)


def _close_unsent_request(manager: Any) -> None:
    """``AsyncMessageStreamManager`` holds its request as a coroutine made by ``stream(...)``; a
    rerun that serves the stream from its recording never awaits it: close it, so Python does not
    warn that it was never awaited (an entered manager awaited it already)."""
    with internal_errors("instrumentation.stream_request"):
        for value in vars(manager).values():
            if inspect.iscoroutine(value) and inspect.getcoroutinestate(value) == inspect.CORO_CREATED:
                value.close()


def _stream_wrapper(source: ConfigSource, is_async: bool, helper_module: str) -> Callable[..., Any]:
    proxy_type = _AsyncStreamManagerProxy if is_async else _StreamManagerProxy

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        manager = wrapped(*args, **kwargs)
        if source.get() is None:
            return manager
        return proxy_type(manager, source, instance, kwargs, helper_module)

    return traced


# --- the instrumentor -----------------------------------------------------------------------------
class AnthropicInstrumentor(SdkInstrumentor):
    """Patches ``anthropic`` for every client::

    AnthropicInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "anthropic"
    supported: ClassVar[str] = "anthropic >= 0.125, < 3"
    tested_majors: ClassVar[tuple[str, ...]] = ("0", "1", "2")
    minimum: ClassVar[str] = "0.125.0"
    tested: ClassVar[str] = "anthropic 0.125.0, 1.17.0 and the newest 2.x"

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        for module_name, helper_module, _path in _TARGETS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # an SDK without the beta resource
                continue
            for class_name, is_async in (("Messages", False), ("AsyncMessages", True)):
                cls = getattr(module, class_name, None)
                if cls is not None:
                    _patch(patches, cls, source, is_async, helper_module)

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        import anthropic

        is_async = isinstance(client, anthropic.AsyncAnthropic)
        for _module, helper_module, path in _TARGETS:
            resource = client
            for name in path:
                resource = getattr(resource, name, None)
            if resource is not None:
                _patch(patches, resource, source, is_async, helper_module)


# (resource module, stream helper kind, where a client keeps it): messages and beta.messages.
_TARGETS = (
    ("anthropic.resources.messages", "messages", ("messages",)),
    ("anthropic.resources.beta.messages", "beta", ("beta", "messages")),
)


def _patch(patches: Patches, owner: Any, source: ConfigSource, is_async: bool, helper_module: str) -> None:
    """Wrap the methods ``owner`` (a class, or one client's resource) has; an older SDK lacks
    ``parse``. ``create`` and ``parse`` answer a whole message (or a raw stream), ``stream`` hands
    out a stream manager. ``parse`` sends its request itself, not through ``create``: one span."""
    wrapper = async_wrapper if is_async else sync_wrapper
    own = vars(owner) if isinstance(owner, type) else None
    for method in ("create", "parse", "stream"):
        if (method in own) if own is not None else hasattr(owner, method):
            if method == "stream":
                patches.wrap(owner, method, _stream_wrapper(source, is_async, helper_module))
            else:
                patches.wrap(owner, method, wrapper(source, CREATE))


def instrument_anthropic(client: Any = None) -> None:
    """Trace the ``anthropic`` SDK: every client, or only ``client``.

    Each ``messages.create``/``parse`` call and each entered ``messages.stream(...)`` (and the same
    of ``beta.messages``) becomes an ``llm_request`` span with the duration, token and
    time-to-first-chunk histograms.
    Instrumenting twice is a logged no-op; ``uninstrument_anthropic`` restores the originals.
    """
    if client is None:
        AnthropicInstrumentor().instrument()
    else:
        AnthropicInstrumentor().instrument_client(client)


def uninstrument_anthropic(client: Any = None) -> None:
    """Undo ``instrument_anthropic()`` (or ``instrument_anthropic(client)`` for that client)."""
    if client is None:
        AnthropicInstrumentor().uninstrument()
    else:
        AnthropicInstrumentor().uninstrument_client(client)
