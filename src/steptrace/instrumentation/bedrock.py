"""Instrumentation of Amazon Bedrock through boto3/botocore ``bedrock-runtime`` clients.

    steptrace.instrument_bedrock()          # every client, made before or after this call
    steptrace.instrument_bedrock(client)    # one client instance

``converse``, ``converse_stream``, and ``invoke_model``/``invoke_model_with_response_stream`` with
an Anthropic body (``anthropic_version: bedrock-2023-05-31``) are ``llm_request`` spans; every
other call a client makes passes through untouched. The patch is on ``BaseClient._make_api_call``,
the method every generated client method sends its request through. ``botocore`` is imported only
when instrumenting.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import wrapt

from steptrace import _attributes as A
from steptrace._internal import internal_errors
from steptrace._response import field_of
from steptrace._spans import LlmRequest
from steptrace.instrumentation._common import (
    Call,
    ConfigSource,
    Endpoint,
    Observer,
    Patches,
    Request,
    SdkInstrumentor,
    StreamProxy,
    content_parts,
    invoke,
    number_param,
    open_call,
    stop_param,
    tool_call_part,
)

__all__ = ["BedrockInstrumentor", "instrument_bedrock", "uninstrument_bedrock"]

PROVIDER = "aws.bedrock"
SERVICE = "bedrock-runtime"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
_now = time.perf_counter

# Bedrock's stop reasons that the shared vocabulary spells otherwise (the rest are Anthropic's).
_STOP_REASONS = {
    "guardrail_intervened": A.STOP_CONTENT_FILTER,
    "content_filtered": A.STOP_CONTENT_FILTER,
}


def _stop_reason(reason: Any) -> str | None:
    if not isinstance(reason, str) or not reason:
        return None
    return _STOP_REASONS.get(reason, reason)


# --- Converse: the request --------------------------------------------------------------------
def _converse_params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    config = kwargs.get("inferenceConfig")
    if isinstance(config, Mapping):
        number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, config.get("temperature"))
        number_param(params, A.GEN_AI_REQUEST_TOP_P, config.get("topP"))
        number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, config.get("maxTokens"))
        stop_param(params, config.get("stopSequences"))
    return params


def _describe_converse(kwargs: Mapping[str, Any]) -> Request:
    return Request(kwargs.get("modelId"), False, _converse_params(kwargs))


def _describe_converse_stream(kwargs: Mapping[str, Any]) -> Request:
    return Request(kwargs.get("modelId"), True, _converse_params(kwargs))


def _part(block: Any) -> dict[str, Any]:
    """One Converse content block (``{"text": ...}``, ``{"toolUse": {...}}``, ...) as a message part."""
    if not isinstance(block, Mapping):
        return {"type": "unknown"}
    if "text" in block:
        return {"type": "text", "content": block["text"]}
    tool_use = block.get("toolUse")
    if isinstance(tool_use, Mapping):
        return tool_call_part(tool_use.get("toolUseId"), tool_use.get("name"), tool_use.get("input"))
    result = block.get("toolResult")
    if isinstance(result, Mapping):
        content = result.get("content")
        response = [_result_part(item) for item in content] if isinstance(content, list) else content
        return {"type": "tool_call_response", "id": result.get("toolUseId"), "response": response}
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, Mapping):
        return {"type": "reasoning", "content": field_of(reasoning.get("reasoningText"), "text")}
    # Images, documents, guard content, cache points: name the kind, never copy the payload.
    return {"type": next(iter(block), "unknown")}


def _result_part(item: Any) -> Any:
    if isinstance(item, Mapping) and "json" in item:
        return {"type": "json", "content": item["json"]}
    return _part(item)


def _converse_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = kwargs.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        {"role": field_of(message, "role"), "parts": [_part(b) for b in field_of(message, "content") or ()]}
        for message in messages
    ]


def _converse_system(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    system = kwargs.get("system")
    return [_part(block) for block in system] if isinstance(system, list) else []


# --- Converse: the response -------------------------------------------------------------------
def _record_usage(handle: LlmRequest, usage: Any, reason: str | None) -> None:
    """Bedrock's ``inputTokens`` leave out cached tokens, as Anthropic's do: the conventions count
    them as input (input = inputTokens + cacheReadInputTokens + cacheWriteInputTokens)."""
    input_tokens = output_tokens = cache_read = cache_write = None
    if isinstance(usage, Mapping):
        base = _int(usage.get("inputTokens"))
        cache_read = _int(usage.get("cacheReadInputTokens"))
        cache_write = _int(usage.get("cacheWriteInputTokens"))
        if base is not None:
            input_tokens = base + (cache_read or 0) + (cache_write or 0)
        output_tokens = _int(usage.get("outputTokens"))
    handle.record_usage(
        input_tokens,
        output_tokens,
        _stop_reason(reason),
        finish_reasons=[reason] if reason else None,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tool_calls(content: Any) -> list[dict[str, Any]]:
    calls = []
    for block in content or ():
        tool_use = block.get("toolUse") if isinstance(block, Mapping) else None
        if isinstance(tool_use, Mapping):
            calls.append({"name": tool_use.get("name"), "id": tool_use.get("toolUseId")})
    return calls


def _converse_content(response: Any) -> Any:
    return field_of(field_of(field_of(response, "output"), "message"), "content")


def _record_converse(handle: LlmRequest, response: Any) -> None:
    reason = field_of(response, "stopReason")
    _record_usage(handle, field_of(response, "usage"), reason)
    calls = _tool_calls(_converse_content(response))
    if calls:
        handle.record_tool_calls(calls)


def _converse_output(response: Any) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "parts": [_part(block) for block in _converse_content(response) or ()],
            "finish_reason": field_of(response, "stopReason"),
        }
    ]


class _ConverseStreamObserver(Observer):
    """Reads ``converse_stream`` events: content deltas mark TTFT, ``messageStop`` the stop reason,
    ``metadata`` the usage of the whole stream."""

    __slots__ = ("blocks", "stop_reason", "usage")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.stop_reason: str | None = None
        self.usage: Any = None
        # contentBlockIndex -> [kind, tool use id, tool name, text pieces]
        self.blocks: dict[int, list[Any]] = {}

    def observe(self, event: Any) -> None:
        delta = event.get("contentBlockDelta")
        if delta is not None:
            times = self.times
            if times is None:
                self.content_arrived()
            else:
                times.append(_now())
            if self.capture:
                self._piece(delta)
            return
        start = event.get("contentBlockStart")
        if start is not None:
            tool_use = field_of(start.get("start"), "toolUse")
            if tool_use is not None:
                self.blocks[start.get("contentBlockIndex", 0)] = [
                    "toolUse",
                    tool_use.get("toolUseId"),
                    tool_use.get("name"),
                    [],
                ]
            return
        stop = event.get("messageStop")
        if stop is not None:
            self.stop_reason = stop.get("stopReason")
            return
        metadata = event.get("metadata")
        if metadata is not None:
            self.usage = metadata.get("usage")

    def _piece(self, delta: Mapping[str, Any]) -> None:
        index = delta.get("contentBlockIndex", 0)
        body = delta.get("delta") or {}
        block = self.blocks.get(index)
        if block is None:
            kind = "reasoningContent" if "reasoningContent" in body else "text"
            block = self.blocks[index] = [kind, None, None, []]
        if "text" in body:
            block[3].append(body["text"])
        elif "toolUse" in body:
            block[3].append(field_of(body["toolUse"], "input") or "")
        elif "reasoningContent" in body:
            block[3].append(field_of(body["reasoningContent"], "text") or "")

    def finalize(self) -> None:
        handle = self.handle
        _record_usage(handle, self.usage, self.stop_reason)
        calls = [
            {"name": name, "id": call_id}
            for _index, (kind, call_id, name, _pieces) in sorted(self.blocks.items())
            if kind == "toolUse"
        ]
        if calls:
            handle.record_tool_calls(calls)
        if self.usage is None:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.capture:
            parts = []
            for _index, (kind, call_id, name, pieces) in sorted(self.blocks.items()):
                text = "".join(pieces)
                if kind == "toolUse":
                    parts.append(tool_call_part(call_id, name, _json(text)))
                elif kind == "reasoningContent":
                    parts.append({"type": "reasoning", "content": text})
                else:
                    parts.append({"type": "text", "content": text})
            handle.record_output([{"role": "assistant", "parts": parts, "finish_reason": self.stop_reason}])


def _json(text: str) -> Any:
    """Streamed tool input arrives as JSON text; parse it so it reads like a whole message's."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


# --- invoke_model with an Anthropic body --------------------------------------------------------
def _anthropic_body(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request body when it is an Anthropic Messages body, else None (the call is not traced)."""
    body = kwargs.get("body")
    if isinstance(body, (bytes, bytearray)):
        if b"anthropic_version" not in body:
            return None
    elif isinstance(body, str):
        if "anthropic_version" not in body:
            return None
    else:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("messages"), list):
        return None
    return parsed


def _describe_invoke(kwargs: Mapping[str, Any]) -> Request:
    return _describe_anthropic(kwargs, False)


def _describe_invoke_stream(kwargs: Mapping[str, Any]) -> Request:
    return _describe_anthropic(kwargs, True)


def _describe_anthropic(kwargs: Mapping[str, Any], stream: bool) -> Request:
    body = _anthropic_body(kwargs) or {}
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, body.get("temperature"))
    number_param(params, A.GEN_AI_REQUEST_TOP_P, body.get("top_p"))
    number_param(params, A.GEN_AI_REQUEST_TOP_K, body.get("top_k"))
    number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, body.get("max_tokens"))
    stop_param(params, body.get("stop_sequences"))
    return Request(kwargs.get("modelId"), stream, params)


def _invoke_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    body = _anthropic_body(kwargs) or {}
    return [
        {"role": field_of(message, "role"), "parts": content_parts(field_of(message, "content"))}
        for message in body.get("messages") or ()
    ]


def _invoke_system(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    system = (_anthropic_body(kwargs) or {}).get("system")
    return content_parts(system) if isinstance(system, (str, list)) else []


def _invoke_output(message: Any) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "parts": content_parts(field_of(message, "content")),
            "finish_reason": field_of(message, "stop_reason"),
        }
    ]


class _AnthropicChunkObserver(Observer):
    """Reads ``invoke_model_with_response_stream``'s events: each ``{"chunk": {"bytes": ...}}``
    holds one Anthropic stream event as JSON; together they say what the whole message would."""

    __slots__ = ("blocks", "message", "stop_reason", "usage")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.message: Any = None
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        # index -> [block type, id, name, text pieces]
        self.blocks: dict[int, list[Any]] = {}

    def observe(self, event: Any) -> None:
        data = field_of(event.get("chunk"), "bytes")
        if not isinstance(data, (bytes, bytearray)):
            return
        kind_mark = data[:48]
        if b"content_block_delta" in kind_mark:
            times = self.times
            if times is None:
                self.content_arrived()
            else:
                times.append(_now())
            if not self.capture:
                return  # a delta says nothing else the span keeps without content
        item = json.loads(data)
        kind = item.get("type")
        if kind == "content_block_delta":
            block = self.blocks.get(item.get("index", 0))
            delta = item.get("delta") or {}
            piece = delta.get("text") or delta.get("partial_json")
            if block is not None and piece:
                block[3].append(piece)
        elif kind == "content_block_start":
            new = item.get("content_block") or {}
            self.blocks[item.get("index", 0)] = [new.get("type"), new.get("id"), new.get("name"), []]
        elif kind == "message_delta":
            self.stop_reason = field_of(item.get("delta"), "stop_reason")
            self._usage(item.get("usage"))
        elif kind == "message_start":
            self.message = item.get("message") or {}
            self._usage(self.message.get("usage"))

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            for name in (
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            ):
                value = usage.get(name)
                if value is not None:
                    self.usage[name] = value

    def finalize(self) -> None:
        handle = self.handle
        content = []
        for _index, (kind, block_id, name, pieces) in sorted(self.blocks.items()):
            text = "".join(pieces)
            if kind in ("tool_use", "server_tool_use"):
                content.append({"type": kind, "id": block_id, "name": name, "input": _json(text)})
            elif kind == "text":
                content.append({"type": "text", "text": text})
            else:
                content.append({"type": kind})
        if self.message is not None:
            handle.record_response(
                {
                    "type": "message",
                    "role": "assistant",
                    "id": self.message.get("id"),
                    "model": self.message.get("model"),
                    "stop_reason": self.stop_reason,
                    "content": content,
                    "usage": self.usage or None,
                }
            )
        if not self.usage:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.capture:
            message = {"content": content, "stop_reason": self.stop_reason}
            handle.record_output(_invoke_output(message))


class _NoStream(Observer):
    def observe(self, chunk: Any) -> None:
        """``invoke_model`` and ``converse`` do not stream."""

    def finalize(self) -> None:
        """Nothing was observed."""


CONVERSE = Endpoint(
    PROVIDER,
    _describe_converse,
    _converse_input,
    _NoStream,
    _converse_output,
    system_instructions=_converse_system,
)
CONVERSE_STREAM = Endpoint(
    PROVIDER,
    _describe_converse_stream,
    _converse_input,
    _ConverseStreamObserver,
    _converse_output,
    system_instructions=_converse_system,
)
INVOKE_MODEL = Endpoint(
    PROVIDER, _describe_invoke, _invoke_input, _NoStream, _invoke_output, system_instructions=_invoke_system
)
INVOKE_MODEL_STREAM = Endpoint(
    PROVIDER,
    _describe_invoke_stream,
    _invoke_input,
    _AnthropicChunkObserver,
    _invoke_output,
    system_instructions=_invoke_system,
)


# --- one call -------------------------------------------------------------------------------------
class _ConverseCall(Call):
    """``converse``/``converse_stream``: the response is a dict; a stream is its ``"stream"``."""

    # Where the stream is in the response (a rerun records the rest of the dict around its chunks).
    stream_key: ClassVar[str] = "stream"

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if handle.stream and isinstance(result, dict):
            key = self.stream_key
            stream = result.get(key)
            if stream is not None:
                result[key] = self.observe_stream(_EventStreamProxy, stream)
                return result
        self.returned(result)
        return result

    def returned(self, result: Any) -> None:
        with internal_errors("instrumentation.response"):
            handle = self.handle
            _record_converse(handle, result)
            if self.capture:
                handle.record_output(_converse_output(result))


class _InvokeModelStreamCall(_ConverseCall):
    """``invoke_model_with_response_stream``: the stream is the response's ``"body"``."""

    stream_key: ClassVar[str] = "body"

    def returned(self, result: Any) -> None:
        """Only a stream comes back."""


class _InvokeModelCall(Call):
    """``invoke_model``: the runner's callable returns the body read into bytes (so a recording
    holds it); the caller gets a fresh ``StreamingBody`` over them, as botocore would give."""

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        if not isinstance(result, dict) or not isinstance(result.get("body"), (bytes, bytearray)):
            return result
        from botocore.response import StreamingBody

        data = bytes(result["body"])
        # The caller's body first: whatever reading it for the span does, the caller gets it.
        result = dict(result)
        result["body"] = StreamingBody(io.BytesIO(data), len(data))
        with internal_errors("instrumentation.response"):
            message = json.loads(data)
            handle.record_response(message)
            if self.capture:
                handle.record_output(_invoke_output(message))
        return result


class _EventStreamProxy(StreamProxy):
    """botocore's ``EventStream`` (iterable, not an iterator), observed. The span ends when the
    events run out (``stream_completed`` true), on ``close()``, on a failure, or when the stream is
    dropped unread (``stream_completed`` false)."""

    def __init__(self, stream: Any, call: Call, observer: Observer) -> None:
        wrapt.ObjectProxy.__init__(self, stream)
        self._self_call: Call | None = call
        self._self_observer = observer
        self._self_observe = observer.observe
        self._self_next = iter(stream).__next__


# --- the server a client talks to ---------------------------------------------------------------
class _Server:
    """A client's endpoint URL in the shape ``_common.server_attributes`` reads from an SDK resource
    (``resource._client.base_url.host``/``.port``/``.scheme``)."""

    __slots__ = ("_client", "base_url", "host", "port", "scheme")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        try:
            self.port: int | None = parts.port
        except ValueError:
            self.port = None
        self.scheme = parts.scheme
        self._client = self
        self.base_url = self


_NO_SERVER = _Server("")
_servers: dict[str, _Server] = {}


def _server(client: Any) -> _Server:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not isinstance(url, str):
        return _NO_SERVER
    known = _servers.get(url)
    if known is None:
        known = _Server(url)
        if len(_servers) < 64:
            _servers[url] = known
    return known


# --- the patch --------------------------------------------------------------------------------------
_OPERATIONS: dict[str, tuple[Endpoint, type[Call]]] = {
    "Converse": (CONVERSE, _ConverseCall),
    "ConverseStream": (CONVERSE_STREAM, _ConverseCall),
    "InvokeModel": (INVOKE_MODEL, _InvokeModelCall),
    "InvokeModelWithResponseStream": (INVOKE_MODEL_STREAM, _InvokeModelStreamCall),
}


_ANTHROPIC_ONLY = (_describe_invoke, _describe_invoke_stream)


def _is_bedrock_runtime(client: Any) -> bool:
    try:
        return bool(client.meta.service_model.service_name == SERVICE)
    except Exception:
        return False


def _sender(wrapped: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """The callable the runner invokes: keyword arguments are the request's parameters (what a
    rerun matches on); ``invoke_model``'s body comes back read, as bytes."""

    def send(**params: Any) -> Any:
        return wrapped(operation, params)

    def send_and_read(**params: Any) -> Any:
        response = wrapped(operation, params)
        body = response.get("body") if isinstance(response, dict) else None
        if body is None or not callable(getattr(body, "read", None)):
            return response
        response = dict(response)
        response["body"] = body.read()
        return response

    return send_and_read if operation == "InvokeModel" else send


def _wrapper(source: ConfigSource) -> Callable[..., Any]:
    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if len(args) != 2 or kwargs:
            return wrapped(*args, **kwargs)
        operation, params = args
        known = _OPERATIONS.get(operation) if isinstance(operation, str) else None
        if known is None or not isinstance(params, dict) or not _is_bedrock_runtime(instance):
            return wrapped(*args, **kwargs)
        endpoint, call_type = known
        if endpoint.describe in _ANTHROPIC_ONLY and _anthropic_body(params) is None:
            return wrapped(*args, **kwargs)
        call = open_call(source, endpoint, _server(instance), params, call_type)
        if call is None:
            return wrapped(*args, **kwargs)
        return invoke(call, _sender(wrapped, operation), (), params)

    return traced


# --- the instrumentor -----------------------------------------------------------------------------
class BedrockInstrumentor(SdkInstrumentor):
    """Patches botocore for every ``bedrock-runtime`` client::

    BedrockInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "botocore"
    supported: ClassVar[str] = "botocore >= 1.34.116, < 2"
    tested_majors: ClassVar[tuple[str, ...]] = ("1",)
    minimum: ClassVar[str] = "1.34.116"
    tested: ClassVar[str] = "botocore 1.34.116 and 1.44.18"

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from botocore.client import BaseClient

        patches.wrap(BaseClient, "_make_api_call", _wrapper(source))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        patches.wrap(client, "_make_api_call", _wrapper(source))


def instrument_bedrock(client: Any = None) -> None:
    """Trace Amazon Bedrock through boto3: every ``bedrock-runtime`` client, or only ``client``.

    Each ``converse``, ``converse_stream`` and Anthropic-body ``invoke_model`` (or
    ``invoke_model_with_response_stream``) call becomes an
    ``llm_request`` span (provider ``aws.bedrock``) with the duration, token and
    time-to-first-chunk histograms. Instrumenting twice is a logged no-op;
    ``uninstrument_bedrock`` restores the original.
    """
    if client is None:
        BedrockInstrumentor().instrument()
    else:
        BedrockInstrumentor().instrument_client(client)


def uninstrument_bedrock(client: Any = None) -> None:
    """Undo ``instrument_bedrock()`` (or ``instrument_bedrock(client)`` for that client)."""
    if client is None:
        BedrockInstrumentor().uninstrument()
    else:
        BedrockInstrumentor().uninstrument_client(client)
