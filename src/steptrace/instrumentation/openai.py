"""Instrumentation of the ``openai`` SDK: chat completions, responses and embeddings.

    steptrace.instrument_openai()          # every client
    steptrace.instrument_openai(client)    # one client instance (and its ``with_options()`` copies)

``chat.completions.create``/``parse``, ``responses.create``/``parse`` and ``embeddings.create``,
sync and async, streamed or not, also through ``.with_raw_response``/``.with_streaming_response``;
the ``.stream()`` helpers are covered through ``create``. ``openai`` is imported only when
instrumenting, never by ``import steptrace``.
"""

from __future__ import annotations

import importlib
import inspect
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from steptrace import _attributes as A
from steptrace._internal import internal_errors, report_internal_error
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
    _is_sdk_stream,
    content_parts,
    invoke,
    invoke_async,
    is_raw_response,
    message_part,
    number_param,
    open_call,
    stop_param,
    tool_call_part,
    tool_response_part,
    when_configured,
)

__all__ = ["OpenAIInstrumentor", "instrument_openai", "uninstrument_openai"]

PROVIDER = "openai"
_now = time.perf_counter


# --- chat.completions -----------------------------------------------------------------------------
def _describe_chat(kwargs: Mapping[str, Any]) -> Request:
    # Runs on every call: most parameters are absent, so test for None before the helpers.
    params: dict[str, Any] = {}
    get = kwargs.get
    value = get("temperature")
    if value is not None:
        number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, value)
    value = get("top_p")
    if value is not None:
        number_param(params, A.GEN_AI_REQUEST_TOP_P, value)
    value = get("max_completion_tokens")
    if not isinstance(value, int):
        value = get("max_tokens")
    if value is not None:
        number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, value)
    value = get("stop")
    if value is not None:
        stop_param(params, value)
    return Request(get("model"), get("stream") is True, params)


def _chat_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = []
    for message in kwargs.get("messages") or ():
        role = field_of(message, "role")
        content = field_of(message, "content")
        if role == "tool":
            parts = [tool_response_part(field_of(message, "tool_call_id"), content)]
        elif role == "function":  # a legacy function result: named by the function, no call id
            parts = [{"type": "tool_call_response", "name": field_of(message, "name"), "response": content}]
        else:
            parts = content_parts(content)
            parts.extend(_tool_call_parts(message))
        messages.append({"role": role, "parts": parts})
    return messages


def _tool_call_parts(message: Any) -> list[dict[str, Any]]:
    """The tool calls of a chat message (request history or response) as message parts, with
    the legacy ``function_call`` of the deprecated ``functions=`` API among them."""
    parts = []
    for call in field_of(message, "tool_calls") or ():
        function = field_of(call, "function")
        parts.append(
            tool_call_part(field_of(call, "id"), field_of(function, "name"), field_of(function, "arguments"))
        )
    legacy = field_of(message, "function_call")
    if legacy is not None:
        parts.append(_function_call_part(field_of(legacy, "name"), field_of(legacy, "arguments")))
    return parts


def _function_call_part(name: Any, arguments: Any) -> dict[str, Any]:
    """A legacy ``function_call`` as a tool-call part: that API gives no call id, so none is shown
    (an invented one would be matched against tool results that never carry it)."""
    return {"type": "tool_call", "name": name, "arguments": arguments}


def _chat_output(completion: Any) -> list[dict[str, Any]]:
    messages = []
    for choice in field_of(completion, "choices") or ():
        message = field_of(choice, "message")
        parts = content_parts(field_of(message, "content"))
        parts.extend(_tool_call_parts(message))
        messages.append(
            {"role": "assistant", "parts": parts, "finish_reason": field_of(choice, "finish_reason")}
        )
    return messages


class _ChatObserver(Observer):
    """Accumulates ``chat.completion.chunk`` events into what a whole completion would say."""

    __slots__ = ("finish_reasons", "last", "texts", "tool_calls", "usage")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.last: Any = None
        self.usage: Any = None
        self.finish_reasons: dict[int, str] = {}
        self.tool_calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.texts: dict[int, list[str]] = {}

    def observe(self, chunk: Any) -> None:
        self.last = chunk
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None:
                content = delta.content
                calls = delta.tool_calls
                if content or calls:
                    times = self.times
                    if times is None:
                        self.content_arrived()
                    else:
                        times.append(_now())
                    if calls:
                        self._tool_deltas(choice.index, calls)
                    if content and self.capture:
                        self.texts.setdefault(choice.index, []).append(content)
                else:
                    legacy = getattr(delta, "function_call", None)
                    if legacy is not None:
                        self._function_delta(choice.index, legacy)
            reason = choice.finish_reason
            if reason:
                self.finish_reasons[choice.index] = reason
        usage = chunk.usage
        if usage is not None:
            self.usage = usage

    def _tool_deltas(self, choice_index: int, calls: Any) -> None:
        for call in calls:
            key = (choice_index, call.index)
            known = self.tool_calls.get(key)
            function = call.function
            if known is None:
                known = self.tool_calls[key] = {"id": call.id, "name": None, "arguments": []}
            if call.id:
                known["id"] = call.id
            if function is not None:
                if function.name:
                    known["name"] = function.name
                if function.arguments and self.capture:
                    known["arguments"].append(function.arguments)

    def _function_delta(self, choice_index: int, function: Any) -> None:
        """A chunk of a legacy ``function_call`` (the deprecated ``functions=`` API): one call per
        choice, without an id, its name in the first chunk and its arguments in pieces."""
        times = self.times
        if times is None:
            self.content_arrived()
        else:
            times.append(_now())
        key = (choice_index, 0)
        known = self.tool_calls.get(key)
        if known is None:
            known = self.tool_calls[key] = {"id": None, "name": None, "arguments": []}
        if function.name:
            known["name"] = function.name
        if function.arguments and self.capture:
            known["arguments"].append(function.arguments)

    def finalize(self) -> None:
        handle = self.handle
        last = self.last
        indices = sorted(set(self.finish_reasons) | set(self.texts) | {k[0] for k in self.tool_calls})
        choices = []
        for index in indices:
            calls = [
                {"id": call["id"], "function": {"name": call["name"]}}
                for key, call in sorted(self.tool_calls.items())
                if key[0] == index
            ]
            choices.append(
                {"finish_reason": self.finish_reasons.get(index), "message": {"tool_calls": calls}}
            )
        if last is not None:
            handle.record_response(
                {
                    "object": "chat.completion",
                    "id": last.id,
                    "model": last.model,
                    "choices": choices,
                    "usage": self.usage,
                }
            )
        if self.usage is None:
            # No stream_options={"include_usage": True}, or the stream ended early: unknown,
            # which is not zero.
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.capture:
            handle.record_output(self._output(indices))

    def _output(self, indices: list[int]) -> list[dict[str, Any]]:
        messages = []
        for index in indices:
            parts = content_parts("".join(self.texts.get(index, ())) or None)
            for key, call in sorted(self.tool_calls.items()):
                if key[0] == index:
                    arguments = "".join(call["arguments"])
                    if call["id"] is None:  # a legacy function_call: that API has no call id
                        parts.append(_function_call_part(call["name"], arguments))
                    else:
                        parts.append(tool_call_part(call["id"], call["name"], arguments))
            messages.append(
                {
                    "role": "assistant",
                    "parts": parts,
                    "finish_reason": self.finish_reasons.get(index),
                }
            )
        return messages


CHAT = Endpoint(PROVIDER, _describe_chat, _chat_input, _ChatObserver, _chat_output)


# --- responses ------------------------------------------------------------------------------------
def _describe_responses(kwargs: Mapping[str, Any]) -> Request:
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, kwargs.get("temperature"))
    number_param(params, A.GEN_AI_REQUEST_TOP_P, kwargs.get("top_p"))
    number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, kwargs.get("max_output_tokens"))
    return Request(kwargs.get("model"), kwargs.get("stream") is True, params)


def _responses_instructions(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``instructions=`` are not part of the input items: gen_ai.system_instructions."""
    instructions = kwargs.get("instructions")
    return content_parts(instructions) if isinstance(instructions, str) else []


def _responses_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    items = kwargs.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "parts": content_parts(items)})
        return messages
    if not isinstance(items, (list, tuple)):
        return messages
    for item in items:
        role = field_of(item, "role")
        if role is not None:
            messages.append({"role": role, "parts": content_parts(field_of(item, "content"))})
        else:
            kind = field_of(item, "type")
            role = "tool" if kind == "function_call_output" else "assistant"
            messages.append({"role": role, "parts": [message_part(item)]})
    return messages


def _responses_output(response: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in field_of(response, "output") or ():
        if field_of(item, "type") == "message":
            parts.extend(content_parts(field_of(item, "content")))
        else:
            parts.append(message_part(item))
    reason = field_of(field_of(response, "incomplete_details"), "reason")
    finish = reason or field_of(response, "status")
    return [{"role": "assistant", "parts": parts, "finish_reason": finish}]


_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Deltas of the answer itself (reasoning summaries are not output): the first marks TTFT.
_OUTPUT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.delta",
        "response.audio.transcript.delta",
    }
)


class _ResponsesObserver(Observer):
    """Reads responses stream events; the terminal event carries the whole response.

    A stream left before it keeps what the events said so far: the function calls announced
    (``response.output_item.added``) and, with capture on, the text received.
    """

    __slots__ = ("calls", "final", "started", "texts")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.started: Any = None
        self.final: Any = None
        self.calls: list[Any] = []
        self.texts: list[str] = []

    def observe(self, event: Any) -> None:
        kind = event.type
        if kind in _OUTPUT_DELTAS:
            times = self.times
            if times is None:
                self.content_arrived()
            else:
                times.append(_now())
            if self.capture and kind == "response.output_text.delta":
                self.texts.append(event.delta)
        elif kind in _TERMINAL_EVENTS:
            self.final = event.response
        elif kind == "response.output_item.added":
            if field_of(event.item, "type") == "function_call":
                self.calls.append(event.item)
        elif kind == "response.created":
            self.started = event.response

    def finalize(self) -> None:
        handle = self.handle
        final = self.final
        if final is not None:
            handle.record_response(final)
            if self.capture:
                handle.record_output(_responses_output(final))
        else:
            if self.started is not None:
                handle.record_usage(
                    response_id=field_of(self.started, "id"),
                    response_model=field_of(self.started, "model"),
                )
            if self.calls:
                handle.record_tool_calls(
                    [{"name": field_of(c, "name"), "id": field_of(c, "call_id")} for c in self.calls]
                )
            if self.capture and (self.texts or self.calls):
                parts = content_parts("".join(self.texts) or None)
                parts.extend(message_part(call) for call in self.calls)
                handle.record_output([{"role": "assistant", "parts": parts, "finish_reason": None}])
        if final is None or field_of(final, "usage") is None:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)


RESPONSES = Endpoint(
    PROVIDER,
    _describe_responses,
    _responses_input,
    _ResponsesObserver,
    _responses_output,
    system_instructions=_responses_instructions,
)


# --- embeddings -----------------------------------------------------------------------------------
def _embedding_inputs(value: Any) -> list[Any] | None:
    """The inputs of one embeddings request: a text, texts, one token list or token lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) for v in value):
            return [value]  # one input given as token ids
        return list(value)
    return None


def _describe_embeddings(kwargs: Mapping[str, Any]) -> Request:
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, kwargs.get("dimensions"))
    encoding = kwargs.get("encoding_format")
    if isinstance(encoding, str):
        params[A.GEN_AI_REQUEST_ENCODING_FORMATS] = [encoding]
    inputs = _embedding_inputs(kwargs.get("input"))
    if inputs is not None:
        params[A.LLM_EMBEDDINGS_INPUT_COUNT] = len(inputs)
    return Request(kwargs.get("model"), False, params)


def _embeddings_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Captured only with content capture on; token-id inputs are named, not copied."""
    parts = [
        {"type": "text", "content": item} if isinstance(item, str) else {"type": "tokens"}
        for item in _embedding_inputs(kwargs.get("input")) or ()
    ]
    return [{"role": "user", "parts": parts}]


def _no_output(response: Any) -> list[dict[str, Any]]:
    return []  # vectors are not messages


class _NoStream(Observer):
    __slots__ = ()


EMBEDDINGS = Endpoint(
    PROVIDER, _describe_embeddings, _embeddings_input, _NoStream, _no_output, operation=A.OPERATION_EMBEDDINGS
)


# --- one call, also through .with_raw_response / .with_streaming_response ------------------------
_NOT_RAW: Any = object()
# The SDK's response wrappers (LegacyAPIResponse, APIResponse, AsyncAPIResponse), set when patching.
_raw_types: tuple[type, ...] = ()


class _OpenAICall(Call):
    """A call whose result may be the SDK's HTTP response wrapper: ``parsed`` is what the wrapper
    parsed to (fetched inside the span by ``_parsing``), or ``_NOT_RAW`` for a plain call."""

    __slots__ = ("parsed",)
    reads_raw_responses: ClassVar[bool] = True

    def __init__(self, endpoint: Endpoint, handle: LlmRequest, owned: bool) -> None:
        super().__init__(endpoint, handle, owned)
        self.parsed: Any = _NOT_RAW

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        parsed = self.parsed
        if parsed is _NOT_RAW:
            return super().on_return(handle, result)
        if parsed is None:  # not parsable here: the caller will see why when they parse it
            return result
        try:
            if handle.stream and _is_sdk_stream(parsed, self.is_async):
                proxy_type = AsyncStreamProxy if self.is_async else StreamProxy
                proxy = self.observe_stream(proxy_type, parsed)
                # The wrapper caches what it parsed: its parse() now hands out the observed stream.
                cache = getattr(result, "_parsed_by_type", None)
                if isinstance(cache, dict):
                    for key, value in list(cache.items()):
                        if value is parsed:
                            cache[key] = proxy
                return result
        except Exception as exc:
            report_internal_error("instrumentation.raw_stream_wrap", exc)
            return result
        self.returned(parsed)
        return result


class _EmbeddingsCall(_OpenAICall):
    __slots__ = ()

    def returned(self, result: Any) -> None:
        with internal_errors("instrumentation.embeddings_response"):
            handle = self.handle
            usage = field_of(result, "usage")
            tokens = field_of(usage, "prompt_tokens")
            handle.record_usage(
                input_tokens=tokens if isinstance(tokens, int) else None,
                response_model=field_of(result, "model"),
            )
            data = field_of(result, "data")
            if data:
                vector = field_of(data[0], "embedding")
                count = len(vector) if isinstance(vector, list) else _base64_float_count(vector)
                if count is not None:
                    handle.set_attribute(A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, count)


def _base64_float_count(vector: Any) -> int | None:
    """How many float32s an ``encoding_format="base64"`` vector holds, from its length alone (a
    1536-dimension vector is 8 KiB of text: decoding it only to count would cost more than the
    rest of the call's tracing). None for a string that cannot be a base64 float32 vector."""
    if not isinstance(vector, str) or not vector or len(vector) % 4:
        return None
    size = len(vector) // 4 * 3 - (2 if vector.endswith("==") else 1 if vector.endswith("=") else 0)
    return size // 4 if size % 4 == 0 else None


def _parse_raw(response: Any) -> Any:
    try:
        return response.parse()
    except Exception:
        return None


def _parsing(call: _OpenAICall, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, also parsing the response wrapper it returns (cached by the wrapper: the caller's
    own ``parse()`` gets the same object). A streamed body is not read: parse() wraps it."""

    def fetch(*args: Any, **kwargs: Any) -> Any:
        response = fn(*args, **kwargs)
        call.parsed = _parse_raw(response) if isinstance(response, _raw_types) else None
        return response

    return fetch


def _parsing_async(call: _OpenAICall, fn: Callable[..., Any]) -> Callable[..., Any]:
    async def fetch(*args: Any, **kwargs: Any) -> Any:
        response = await fn(*args, **kwargs)
        parsed = None
        if isinstance(response, _raw_types):
            parsed = _parse_raw(response)
            if inspect.isawaitable(parsed):  # AsyncAPIResponse.parse (with_streaming_response)
                try:
                    parsed = await parsed
                except Exception:
                    parsed = None
        call.parsed = parsed
        return response

    return fetch


def _sync_wrapper(source: ConfigSource, endpoint: Endpoint, call_type: type[_OpenAICall]) -> Any:
    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        call = open_call(source, endpoint, instance, kwargs, call_type)
        if call is None:
            return wrapped(*args, **kwargs)
        if is_raw_response(kwargs):
            wrapped = _parsing(call, wrapped)  # type: ignore[arg-type]
        return invoke(call, wrapped, args, kwargs)

    return traced


def _async_wrapper(source: ConfigSource, endpoint: Endpoint, call_type: type[_OpenAICall]) -> Any:
    return when_configured(source, _traced_coroutine, endpoint, call_type)


async def _traced_coroutine(
    source: ConfigSource,
    endpoint: Endpoint,
    call_type: type[_OpenAICall],
    wrapped: Callable[..., Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Any:
    # The span opens when the request starts, not when the coroutine is created (as in _common).
    call = open_call(source, endpoint, instance, kwargs, call_type)
    if call is None:
        return await wrapped(*args, **kwargs)
    if is_raw_response(kwargs):
        wrapped = _parsing_async(call, wrapped)  # type: ignore[arg-type]
    return await invoke_async(call, wrapped, args, kwargs)


# --- the instrumentor -----------------------------------------------------------------------------
# (resource module, sync class, async class, methods, endpoint, call type); what an older
# SDK lacks (parse before 1.92, responses before 1.66) is skipped.
_TARGETS: tuple[tuple[str, str, str, tuple[str, ...], Endpoint, type[_OpenAICall]], ...] = (
    ("openai.resources.chat.completions", "Completions", "AsyncCompletions", ("create", "parse"), CHAT,
     _OpenAICall),
    ("openai.resources.responses", "Responses", "AsyncResponses", ("create", "parse"), RESPONSES,
     _OpenAICall),
    ("openai.resources.embeddings", "Embeddings", "AsyncEmbeddings", ("create",), EMBEDDINGS,
     _EmbeddingsCall),
)  # fmt: skip
# Where a client keeps each target's resource: client.chat.completions, client.responses, ...
_CLIENT_PATHS = {"Completions": ("chat", "completions"), "Responses": ("responses",),
                 "Embeddings": ("embeddings",)}  # fmt: skip


def _load_raw_types() -> None:
    global _raw_types
    from openai import _legacy_response, _response

    _raw_types = (_legacy_response.LegacyAPIResponse, _response.APIResponse, _response.AsyncAPIResponse)


class OpenAIInstrumentor(SdkInstrumentor):
    """Patches ``openai`` for every client::

    OpenAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "openai"
    supported: ClassVar[str] = "openai >= 1.109.1, < 4"
    tested_majors: ClassVar[tuple[str, ...]] = ("1", "2", "3")
    minimum: ClassVar[str] = "1.109.1"
    tested: ClassVar[str] = "openai 1.109.1, 2.54.0 and the newest 3.x"

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        _load_raw_types()
        for module_name, sync_name, async_name, methods, endpoint, call_type in _TARGETS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for class_name, wrapper in ((sync_name, _sync_wrapper), (async_name, _async_wrapper)):
                cls = getattr(module, class_name, None)
                for method in methods:
                    if cls is not None and method in cls.__dict__:
                        patches.wrap(cls, method, wrapper(source, endpoint, call_type))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        import openai

        _load_raw_types()
        wrapper = _async_wrapper if isinstance(client, openai.AsyncOpenAI) else _sync_wrapper
        for _module, sync_name, _async, methods, endpoint, call_type in _TARGETS:
            resource = client
            for name in _CLIENT_PATHS[sync_name]:
                resource = getattr(resource, name, None)
            for method in methods:
                if resource is not None and hasattr(resource, method):
                    patches.wrap(resource, method, wrapper(source, endpoint, call_type))
        # with_options() and copy() make a new client with new resources: instrument those too.
        for name in ("copy", "with_options"):
            if hasattr(client, name):
                patches.wrap(client, name, self._copying)

    def _copying(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        copy = wrapped(*args, **kwargs)
        if copy is not instance:
            self.instrument_client(copy)
            with internal_errors("instrument openai client copy"):
                copies = _copies.get(instance)
                if copies is None:
                    copies = _copies[instance] = weakref.WeakSet()
                copies.add(copy)
        return copy

    def uninstrument_client(self, client: Any) -> None:
        """Restore ``client``'s methods, and those of the copies made from it while instrumented."""
        copies = _copies.pop(client, None)
        for copy in list(copies or ()):
            self.uninstrument_client(copy)
        super().uninstrument_client(client)


# An instrumented client -> the with_options()/copy() clients made from it (uninstrumented with it).
_copies: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()


def instrument_openai(client: Any = None) -> None:
    """Trace the ``openai`` SDK: every client, or only ``client`` (``OpenAI``/``AsyncOpenAI``).

    Each ``chat.completions.create``/``parse``, ``responses.create``/``parse`` and
    ``embeddings.create`` call becomes an ``llm_request`` span with the duration, token and
    time-to-first-chunk histograms. Instrumenting twice is a
    logged no-op; ``uninstrument_openai`` restores the originals.
    """
    if client is None:
        OpenAIInstrumentor().instrument()
    else:
        OpenAIInstrumentor().instrument_client(client)


def uninstrument_openai(client: Any = None) -> None:
    """Undo ``instrument_openai()`` (or ``instrument_openai(client)`` for that client)."""
    if client is None:
        OpenAIInstrumentor().uninstrument()
    else:
        OpenAIInstrumentor().uninstrument_client(client)
