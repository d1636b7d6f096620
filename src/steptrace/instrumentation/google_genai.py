"""Instrumentation of the ``google-genai`` SDK: ``generate_content`` and ``generate_content_stream``.

    steptrace.instrument_google_genai()          # every genai.Client
    steptrace.instrument_google_genai(client)    # one client (its client.models and client.aio.models)

Sync and async (``client.aio.models``), streamed or not, and ``client.chats`` sessions, which send
through the same calls. One ``llm_request`` span per request sent to the model: the patch sits
on the methods every public call sends its requests through (``Models._generate_content`` and
``_generate_content_stream``, and their ``AsyncModels`` twins), so with automatic function
calling (a Python function in ``tools``) or automatic continuation each round trip is its own
span with its own tokens, and the user's functions run between them, not inside. Those names
are the SDK's own, not its API: ``instrument`` logs and leaves the SDK as it is if they go.
``google.genai`` is imported only when instrumenting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

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
    invoke,
    invoke_async,
    number_param,
    open_call,
    stop_param,
    tool_call_part,
    when_configured,
)

__all__ = ["GoogleGenAIInstrumentor", "instrument_google_genai", "uninstrument_google_genai"]

PROVIDER_GEMINI = "gcp.gemini"
PROVIDER_VERTEX_AI = "gcp.vertex_ai"
_now = time.perf_counter

# Gemini's finish reasons in steptrace's stop-reason vocabulary. A function call finishes with
# STOP: the call itself, not the reason, says tool_use (see _stop_reason).
_CONTENT_FILTER = (
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "MODEL_ARMOR",
    "JAILBREAK",
)
_STOP_REASONS: dict[str, str] = {
    "STOP": A.STOP_END_TURN,
    "MAX_TOKENS": A.STOP_MAX_TOKENS,
    # One hop of a longer answer: the SDK sends the continuation token back for the rest.
    "CONTINUATION": A.STOP_PAUSE_TURN,
    "MALFORMED_FUNCTION_CALL": A.STOP_ERROR,
    "MALFORMED_RESPONSE": A.STOP_ERROR,
    **dict.fromkeys(_CONTENT_FILTER, A.STOP_CONTENT_FILTER),
}
# The same in the output-message schema's finish_reason values (gen-ai-output-messages.json).
_MESSAGE_FINISH: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(_CONTENT_FILTER, "content_filter"),
}


# --- the request ---------------------------------------------------------------------------------
def _describe(kwargs: Mapping[str, Any], stream: bool) -> Request:
    params: dict[str, Any] = {}
    config = kwargs.get("config")
    if config is not None:
        number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, field_of(config, "temperature"))
        number_param(params, A.GEN_AI_REQUEST_TOP_P, field_of(config, "top_p"))
        number_param(params, A.GEN_AI_REQUEST_TOP_K, field_of(config, "top_k"))
        number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, field_of(config, "max_output_tokens"))
        stop_param(params, field_of(config, "stop_sequences"))
        number_param(params, A.GEN_AI_REQUEST_SEED, field_of(config, "seed"))
        number_param(params, A.GEN_AI_REQUEST_FREQUENCY_PENALTY, field_of(config, "frequency_penalty"))
        number_param(params, A.GEN_AI_REQUEST_PRESENCE_PENALTY, field_of(config, "presence_penalty"))
        count = field_of(config, "candidate_count")
        if count != 1:  # the conventions record it only when it is not the default of one
            number_param(params, A.GEN_AI_REQUEST_CHOICE_COUNT, count)
        output_type = _output_type(config)
        if output_type is not None:
            params[A.GEN_AI_OUTPUT_TYPE] = output_type
    return Request(kwargs.get("model"), stream, params)


def _output_type(config: Any) -> str | None:
    """The output modality the request asks for, in the conventions' values, when it asks."""
    modalities = field_of(config, "response_modalities")
    if isinstance(modalities, (list, tuple)) and len(modalities) == 1:
        modality = str(getattr(modalities[0], "value", modalities[0])).upper()
        if modality == "IMAGE":
            return "image"
        if modality == "AUDIO":
            return "speech"
    mime_type = field_of(config, "response_mime_type")
    if mime_type == "application/json" or field_of(config, "response_schema") is not None:
        return "json"
    if field_of(config, "response_json_schema") is not None:
        return "json"
    if isinstance(mime_type, str) and mime_type.startswith("text/"):
        return "text"
    return None


def _describe_generate(kwargs: Mapping[str, Any]) -> Request:
    return _describe(kwargs, False)


def _describe_stream(kwargs: Mapping[str, Any]) -> Request:
    return _describe(kwargs, True)


def _part(part: Any) -> dict[str, Any]:
    """One ``types.Part`` (or its dict, or a string) as a conventions message part."""
    if isinstance(part, str):
        return {"type": "text", "content": part}
    text = field_of(part, "text")
    if text is not None:
        return {"type": "reasoning" if field_of(part, "thought") else "text", "content": text}
    call = field_of(part, "function_call")
    if call is not None:
        return tool_call_part(field_of(call, "id"), field_of(call, "name"), field_of(call, "args"))
    response = field_of(part, "function_response")
    if response is not None:
        return {
            "type": "tool_call_response",
            "id": field_of(response, "id"),
            "response": field_of(response, "response"),
        }
    # Images, files, audio, code: name the kind and the media type, never copy the payload.
    for kind in ("inline_data", "file_data", "executable_code", "code_execution_result"):
        value = field_of(part, kind)
        if value is not None:
            mime_type = field_of(value, "mime_type")
            return {"type": kind, "mime_type": mime_type} if mime_type else {"type": kind}
    return {"type": "unknown"}


def _parts(value: Any) -> list[dict[str, Any]]:
    """A ``Content``, a part, a string, or a list of them, as message parts."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        parts: list[dict[str, Any]] = []
        for item in value:
            parts.extend(_parts(item))
        return parts
    inner = field_of(value, "parts")
    if inner is not None and not isinstance(value, str):
        return [_part(part) for part in inner]
    return [_part(value)]


def _role(content: Any, parts: list[dict[str, Any]]) -> str:
    role = field_of(content, "role")
    if role == "model":
        return "assistant"
    if parts and all(part["type"] == "tool_call_response" for part in parts):
        return "tool"  # function results travel as user content in this API
    return str(role) if role else "user"


def _input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    from google.genai import _transformers

    # The SDK's own reading of ``contents`` (a string, parts, Content, dicts, or a mix).
    try:
        contents = _transformers.t_contents(kwargs.get("contents"))
    except (ValueError, TypeError):
        return []  # the SDK rejects them too, with its own error, which the span records
    messages = []
    with internal_errors("instrumentation.google_genai.input"):
        for content in contents:
            parts = _parts(content)
            messages.append({"role": _role(content, parts), "parts": parts})
    return messages


def _system_instructions(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``config.system_instruction`` is not a message: gen_ai.system_instructions."""
    return _parts(field_of(kwargs.get("config"), "system_instruction"))


# --- the response --------------------------------------------------------------------------------
def _reason_name(reason: Any) -> str | None:
    """A ``FinishReason``/``BlockedReason`` (a str enum) or a string, as its API spelling."""
    if reason is None:
        return None
    value = getattr(reason, "value", reason)
    return str(value) if value else None


def _stop_reason(reason: str | None, has_function_call: bool) -> str | None:
    if has_function_call and reason in (None, "STOP"):
        return A.STOP_TOOL_USE
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    return _STOP_REASONS.get(reason, reason.lower())


def _function_calls(parts: Any) -> list[dict[str, Any]]:
    calls = []
    for part in parts or ():
        call = part.function_call
        if call is not None:
            calls.append({"name": call.name, "id": call.id})
    return calls


def _record_usage(
    handle: LlmRequest,
    usage: Any,
    stop_reason: str | None,
    finish_reasons: list[str] | None,
    response_id: str | None,
    response_model: str | None,
) -> None:
    """Gemini's usage in the conventions' terms: input counts every input token (the prompt,
    which already includes cached content, plus tool-use prompts), output every generated one
    (candidates plus thoughts), so input + output is Gemini's ``total_token_count``."""
    input_tokens = output_tokens = cached = thoughts = None
    if usage is not None:
        prompt = usage.prompt_token_count
        tool_prompt = usage.tool_use_prompt_token_count
        candidates = usage.candidates_token_count
        thoughts = usage.thoughts_token_count
        cached = usage.cached_content_token_count
        if prompt is not None or tool_prompt is not None:
            input_tokens = (prompt or 0) + (tool_prompt or 0)
        if candidates is not None or thoughts is not None:
            output_tokens = (candidates or 0) + (thoughts or 0)
    handle.record_usage(
        input_tokens,
        output_tokens,
        stop_reason,
        finish_reasons=finish_reasons,
        cache_read_input_tokens=cached,
        reasoning_tokens=thoughts,
        response_id=response_id,
        response_model=response_model,
    )


def _record_response(handle: LlmRequest, response: Any) -> None:
    """A whole ``GenerateContentResponse``: usage, finish reasons, function calls, id, model."""
    candidates = response.candidates or ()
    reasons: list[str] = []
    calls: list[dict[str, Any]] = []
    for candidate in candidates:
        reason = _reason_name(candidate.finish_reason)
        if reason is not None:
            reasons.append(reason)
        if candidate.content is not None:
            calls.extend(_function_calls(candidate.content.parts))
    if not candidates:
        # The prompt itself was blocked: no candidate, the reason is in prompt_feedback.
        blocked = _reason_name(field_of(response.prompt_feedback, "block_reason"))
        if blocked is not None:
            reasons.append(blocked)
            stop_reason: str | None = A.STOP_CONTENT_FILTER
        else:
            stop_reason = None
    else:
        first = candidates[0]
        first_calls = first.content is not None and bool(_function_calls(first.content.parts))
        stop_reason = _stop_reason(_reason_name(first.finish_reason), first_calls)
    _record_usage(
        handle,
        response.usage_metadata,
        stop_reason,
        finish_reasons=reasons or None,
        response_id=response.response_id,
        response_model=response.model_version,
    )
    if calls:
        handle.record_tool_calls(calls)


def _message(parts: list[dict[str, Any]], reason: str | None, has_function_call: bool) -> dict[str, Any]:
    if has_function_call and reason in (None, "STOP"):
        finish = "tool_call"
    elif reason is None:
        finish = None
    else:
        finish = _MESSAGE_FINISH.get(reason, reason.lower())
    return {"role": "assistant", "parts": parts, "finish_reason": finish}


def _output(response: Any) -> list[dict[str, Any]]:
    messages = []
    for candidate in response.candidates or ():
        content = candidate.content
        raw_parts = (content.parts if content is not None else None) or ()
        messages.append(
            _message(
                [_part(part) for part in raw_parts],
                _reason_name(candidate.finish_reason),
                any(part.function_call is not None for part in raw_parts),
            )
        )
    return messages


class _ChunkObserver(Observer):
    """Reads ``GenerateContentResponse`` chunks: each carries new parts; the last, the finish
    reason and the usage for the whole stream."""

    __slots__ = ("calls", "last", "parts", "reasons", "usage")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.last: Any = None
        self.usage: Any = None
        self.reasons: dict[int, str] = {}
        # candidate index -> its parts so far (all of them when capturing, else function calls)
        self.parts: dict[int, list[Any]] = {}
        self.calls: list[dict[str, Any]] = []

    def observe(self, chunk: Any) -> None:
        self.last = chunk
        usage = chunk.usage_metadata
        if usage is not None:
            self.usage = usage
        candidates = chunk.candidates
        if not candidates:
            return
        for position, candidate in enumerate(candidates):
            index = candidate.index
            if index is None:
                index = position
            content = candidate.content
            parts = content.parts if content is not None else None
            if parts:
                times = self.times
                if times is None:
                    self.content_arrived()
                else:
                    times.append(_now())
                kept = self.parts.get(index)
                if kept is None:
                    kept = self.parts[index] = []
                if self.capture:
                    kept += parts
                else:  # only what names the function calls; text is not kept
                    for part in parts:
                        if part.function_call is not None:
                            kept.append(part)
            reason = candidate.finish_reason
            if reason is not None:
                self.reasons[index] = reason

    def finalize(self) -> None:
        handle = self.handle
        last = self.last
        indices = sorted(set(self.parts) | set(self.reasons))
        reasons = {index: _reason_name(self.reasons.get(index)) for index in indices}
        calls = {index: _function_calls(self.parts.get(index)) for index in indices}
        if last is not None:
            if indices:
                first = indices[0]
                stop_reason = _stop_reason(reasons[first], bool(calls[first]))
            else:
                blocked = _reason_name(field_of(last.prompt_feedback, "block_reason"))
                stop_reason = A.STOP_CONTENT_FILTER if blocked is not None else None
                reasons = {0: blocked} if blocked is not None else {}
            # Abandoned before the last chunk: no finish reason, and no stop reason invented.
            finished = [reason for reason in reasons.values() if reason is not None]
            _record_usage(
                handle,
                self.usage,
                stop_reason if finished else None,
                finish_reasons=finished or None,
                response_id=last.response_id,
                response_model=last.model_version,
            )
            requested = [call for index in indices for call in calls[index]]
            if requested:
                handle.record_tool_calls(requested)
        if self.usage is None:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.capture:
            handle.record_output(
                [
                    _message(
                        _merged_parts(self.parts.get(index, ())),
                        reasons.get(index),
                        bool(calls.get(index)),
                    )
                    for index in indices
                ]
            )


def _merged_parts(parts: Any) -> list[dict[str, Any]]:
    """Streamed parts, with consecutive text pieces of one kind joined into one part."""
    merged: list[dict[str, Any]] = []
    for part in parts:
        converted = _part(part)
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and converted["type"] in ("text", "reasoning")
            and previous["type"] == converted["type"]
        ):
            previous["content"] = (previous["content"] or "") + (converted["content"] or "")
        else:
            merged.append(converted)
    return merged


def _endpoint(provider: str, describe: Callable[[Mapping[str, Any]], Request]) -> Endpoint:
    return Endpoint(
        provider,
        describe,
        _input,
        _ChunkObserver,
        _output,
        operation=A.OPERATION_GENERATE_CONTENT,
        system_instructions=_system_instructions,
    )


# (Gemini API, Vertex AI) for each method: the client says which service it talks to.
GENERATE = (_endpoint(PROVIDER_GEMINI, _describe_generate), _endpoint(PROVIDER_VERTEX_AI, _describe_generate))
STREAM = (_endpoint(PROVIDER_GEMINI, _describe_stream), _endpoint(PROVIDER_VERTEX_AI, _describe_stream))


# --- server address: the client's base URL, parsed once per URL --------------------------------
class _Server:
    """A client's base URL in the shape ``_common.server_attributes`` reads from an SDK resource
    (``resource._client.base_url.host``/``.port``/``.scheme``): this SDK keeps it as a string."""

    __slots__ = ("_client", "base_url", "host", "port", "scheme")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        try:
            self.port: int | None = parts.port
        except ValueError:  # an invalid port: the address alone
            self.port = None
        self.scheme = parts.scheme
        self._client = self
        self.base_url = self


_NO_SERVER = _Server("")
_servers: dict[str, _Server] = {}


def _server(models: Any) -> _Server:
    """The server of a ``Models``/``AsyncModels`` resource's client."""
    base_url = getattr(getattr(getattr(models, "_api_client", None), "_http_options", None), "base_url", None)
    if not isinstance(base_url, str):
        return _NO_SERVER
    known = _servers.get(base_url)
    if known is None:
        known = _Server(base_url)
        if len(_servers) < 64:  # a handful of clients; never grows without bound
            _servers[base_url] = known
    return known


# --- one call ------------------------------------------------------------------------------------
class _GenerateCall(Call):
    """A ``GenerateContentResponse`` comes back whole, or (stream) as a generator of them."""

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if handle.stream:
            proxy_type = _AsyncGeneratorProxy if self.is_async else _GeneratorProxy
            return self.observe_stream(proxy_type, result)
        self.returned(result)
        return result

    def returned(self, result: Any) -> None:
        with internal_errors("instrumentation.response"):
            handle = self.handle
            _record_response(handle, result)
            if handle.capture_content:
                handle.record_output(_output(result))


class _GeneratorProxy(StreamProxy):
    """The SDK's chunk generator, observed; ``close()`` is the generator's own."""


class _AsyncGeneratorProxy(AsyncStreamProxy):
    """The SDK's async chunk generator, observed; it closes with ``aclose()``."""

    async def aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_end(False, None)


def _pick(models: Any, endpoints: tuple[Endpoint, Endpoint]) -> Endpoint:
    api_client = getattr(models, "_api_client", None)
    return endpoints[1] if getattr(api_client, "vertexai", False) else endpoints[0]


def _sync_wrapper(source: ConfigSource, endpoints: tuple[Endpoint, Endpoint]) -> Callable[..., Any]:
    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        call = open_call(source, _pick(instance, endpoints), _server(instance), kwargs, _GenerateCall)
        if call is None:
            return wrapped(*args, **kwargs)
        return invoke(call, wrapped, args, kwargs)

    return traced


def _async_wrapper(source: ConfigSource, endpoints: tuple[Endpoint, Endpoint]) -> Callable[..., Any]:
    return when_configured(source, _traced_coroutine, endpoints)


async def _traced_coroutine(
    source: ConfigSource,
    endpoints: tuple[Endpoint, Endpoint],
    wrapped: Callable[..., Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Any:
    # The span opens when the request starts, not when the coroutine is created.
    call = open_call(source, _pick(instance, endpoints), _server(instance), kwargs, _GenerateCall)
    if call is None:
        return await wrapped(*args, **kwargs)
    return await invoke_async(call, wrapped, args, kwargs)


# The methods every public call sends its requests through (one per round trip).
_GENERATE = "_generate_content"
_GENERATE_STREAM = "_generate_content_stream"


# --- the instrumentor ----------------------------------------------------------------------------
class GoogleGenAIInstrumentor(SdkInstrumentor):
    """Patches ``google-genai`` for every client::

    GoogleGenAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "google-genai"
    supported: ClassVar[str] = "google-genai >= 3.6, < 4"
    tested_majors: ClassVar[tuple[str, ...]] = ("3",)
    minimum: ClassVar[str] = "3.6"
    tested: ClassVar[str] = "google-genai 3.6.1"

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from google.genai.models import AsyncModels, Models

        patches.wrap(Models, _GENERATE, _sync_wrapper(source, GENERATE))
        patches.wrap(Models, _GENERATE_STREAM, _sync_wrapper(source, STREAM))
        patches.wrap(AsyncModels, _GENERATE, _async_wrapper(source, GENERATE))
        patches.wrap(AsyncModels, _GENERATE_STREAM, _async_wrapper(source, STREAM))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        models, async_models = client.models, client.aio.models
        patches.wrap(models, _GENERATE, _sync_wrapper(source, GENERATE))
        patches.wrap(models, _GENERATE_STREAM, _sync_wrapper(source, STREAM))
        patches.wrap(async_models, _GENERATE, _async_wrapper(source, GENERATE))
        patches.wrap(async_models, _GENERATE_STREAM, _async_wrapper(source, STREAM))


def instrument_google_genai(client: Any = None) -> None:
    """Trace the ``google-genai`` SDK: every client, or only ``client`` (sync and ``client.aio``).

    Each request ``generate_content``/``generate_content_stream`` sends (also through
    ``client.chats``) becomes an ``llm_request`` span with the duration, token and
    time-to-first-chunk histograms. Instrumenting twice is a logged no-op;
    ``uninstrument_google_genai`` restores the originals.
    """
    if client is None:
        GoogleGenAIInstrumentor().instrument()
    else:
        GoogleGenAIInstrumentor().instrument_client(client)


def uninstrument_google_genai(client: Any = None) -> None:
    """Undo ``instrument_google_genai()`` (or ``instrument_google_genai(client)`` for that client)."""
    if client is None:
        GoogleGenAIInstrumentor().uninstrument()
    else:
        GoogleGenAIInstrumentor().uninstrument_client(client)
