"""Instrumentation of Amazon Bedrock through boto3/botocore ``bedrock-runtime`` clients.

    steptrace.instrument_bedrock()          # every client, made before or after this call
    steptrace.instrument_bedrock(client)    # one client instance (boto3's or aiobotocore's)

``converse``, ``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream`` are
``llm_request`` spans; every other call a client makes passes through untouched. ``invoke_model``
bodies are read in each common model family's own schema: Anthropic Messages, Amazon Nova
(``messages-v1``), Meta Llama, Amazon Titan text, Mistral and Cohere (model, tokens, stop reason,
and content when captured); a body of another kind is still a span with its provider and model,
and the token counts Bedrock adds to every reply (the ``X-Amzn-Bedrock-*-Token-Count`` headers,
a stream's closing ``amazon-bedrock-invocationMetrics``). The patch is on
``BaseClient._make_api_call``, the method every generated client method sends its request
through, and on aiobotocore's ``AioBaseClient._make_api_call`` (its coroutine twin) when
aiobotocore is installed: awaited calls, ``async for`` streams and ``await body.read()`` bodies are
read the same way. ``botocore`` is imported only when instrumenting.
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
    content_parts,
    invoke,
    invoke_async,
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
    # Amazon Titan text (completionReason)
    "FINISH": A.STOP_END_TURN,
    "LENGTH": A.STOP_MAX_TOKENS,
    "STOP_CRITERIA_MET": A.STOP_SEQUENCE,
    "CONTENT_FILTERED": A.STOP_CONTENT_FILTER,
    # Cohere (finish_reason)
    "COMPLETE": A.STOP_END_TURN,
    "MAX_TOKENS": A.STOP_MAX_TOKENS,
    "ERROR_TOXIC": A.STOP_CONTENT_FILTER,
    "ERROR": A.STOP_ERROR,
    # Mistral chat (stop_reason)
    "tool_calls": A.STOP_TOOL_USE,
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
        # Converse spells them ...Tokens, a Nova invoke_model body ...TokenCount.
        cache_read = _int(usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount")))
        cache_write = _int(usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount")))
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


# --- invoke_model: the request body ----------------------------------------------------------
# The body a call is being read for and its JSON: describe, input and system instructions each
# read it, and a body with images runs to megabytes. One slot; a tuple swaps atomically.
_last_body: tuple[Any, dict[str, Any] | None] = (None, None)


def _body(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request body as a JSON object, or None: not JSON, or a file the SDK streams (never
    read here: the request would go out empty)."""
    global _last_body
    body = kwargs.get("body")
    seen, parsed = _last_body
    if seen is body and body is not None:
        return parsed
    if not isinstance(body, (bytes, bytearray, str)):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        value = None
    parsed = value if isinstance(value, dict) else None
    if not isinstance(body, bytearray):  # a buffer the caller may refill for the next call
        _last_body = (body, parsed)
    return parsed


def _anthropic_body(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request body when it is an Anthropic Messages body (``anthropic_version``), else None."""
    body = _body(kwargs)
    if body is None or "anthropic_version" not in body or not isinstance(body.get("messages"), list):
        return None
    return body


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


# --- invoke_model: the other model families' bodies ---------------------------------------------
# Request and response fields as the Amazon Bedrock User Guide documents them for InvokeModel and
# InvokeModelWithResponseStream ("Inference request parameters and response fields for foundation
# models"): Amazon Nova (messages-v1), Meta Llama, Amazon Titan text, Mistral, Cohere.
def _first(mapping: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = mapping.get(name)
        if value is not None:
            return value
    return None


def _is_prompt_body(body: Mapping[str, Any]) -> bool:
    """A text-completion body: Llama, Mistral and Cohere ``prompt``, Titan ``inputText``, Cohere
    Command R ``message`` (no message list)."""
    return "prompt" in body or "inputText" in body or ("message" in body and "messages" not in body)


def _body_params(kwargs: Mapping[str, Any], stream: bool) -> Request:
    body = _body(kwargs) or {}
    config = body.get("inferenceConfig") or body.get("textGenerationConfig")
    source = config if isinstance(config, Mapping) else body
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, source.get("temperature"))
    number_param(params, A.GEN_AI_REQUEST_TOP_P, _first(source, "top_p", "topP", "p"))
    number_param(params, A.GEN_AI_REQUEST_TOP_K, _first(source, "top_k", "topK", "k"))
    number_param(
        params,
        A.GEN_AI_REQUEST_MAX_TOKENS,
        _first(source, "max_tokens", "maxTokens", "maxTokenCount", "max_gen_len"),
    )
    stop_param(params, _first(source, "stop_sequences", "stopSequences", "stop"))
    return Request(kwargs.get("modelId"), stream, params)


def _describe_body(kwargs: Mapping[str, Any]) -> Request:
    return _body_params(kwargs, False)


def _describe_body_stream(kwargs: Mapping[str, Any]) -> Request:
    return _body_params(kwargs, True)


def _body_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    body = _body(kwargs)
    if body is None:
        return []
    if isinstance(body.get("messages"), list):  # Nova: Converse's message shape
        return _converse_input(body)
    prompt = _first(body, "prompt", "inputText", "message")
    if not isinstance(prompt, str):
        return []
    return [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]


def _body_system(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    body = _body(kwargs)
    return _converse_system(body) if body is not None and isinstance(body.get("messages"), list) else []


class _Reply:
    """What one non-Anthropic, non-Nova reply (or the chunks of one) said."""

    __slots__ = ("calls", "input_tokens", "output_tokens", "response_id", "stop", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.stop: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.response_id: str | None = None
        self.calls: list[dict[str, Any]] = []

    def read(self, item: Mapping[str, Any]) -> str | None:
        """Read one body (or one chunk: counts are running totals, the last wins); the text it
        adds, if any."""
        piece: Any = None
        stop: Any = None
        if "generation" in item:  # Meta Llama
            piece, stop = item.get("generation"), item.get("stop_reason")
            self._tokens(item.get("prompt_token_count"), item.get("generation_token_count"))
        elif "outputText" in item:  # Amazon Titan text, a stream chunk
            piece, stop = item.get("outputText"), item.get("completionReason")
            self._tokens(item.get("inputTextTokenCount"), item.get("totalOutputTextTokenCount"))
        elif isinstance(item.get("results"), list):  # Amazon Titan text, a whole reply
            results = [r for r in item["results"] if isinstance(r, Mapping)]
            piece = "".join(str(r.get("outputText") or "") for r in results)
            stop = results[0].get("completionReason") if results else None
            counts = [_int(r.get("tokenCount")) for r in results]
            known = [c for c in counts if c is not None]
            total = sum(known) if known and len(known) == len(counts) else None
            self._tokens(item.get("inputTextTokenCount"), total)
        elif isinstance(item.get("outputs"), list) and item["outputs"]:  # Mistral text completion
            first = item["outputs"][0]
            if isinstance(first, Mapping):
                piece, stop = first.get("text"), first.get("stop_reason")
        elif isinstance(item.get("choices"), list) and item["choices"]:  # Mistral chat
            first = item["choices"][0]
            if isinstance(first, Mapping):
                message = first.get("message") or first.get("delta") or {}
                piece = field_of(message, "content")
                stop = first.get("stop_reason") or first.get("finish_reason")
                for call in field_of(message, "tool_calls") or ():
                    name = field_of(field_of(call, "function"), "name")
                    self.calls.append({"name": name, "id": field_of(call, "id")})
        elif isinstance(item.get("generations"), list) and item["generations"]:  # Cohere Command
            first = item["generations"][0]
            if isinstance(first, Mapping):
                piece, stop = first.get("text"), first.get("finish_reason")
            self._id(item.get("id"))
        elif "finish_reason" in item or "text" in item:  # Cohere Command R
            piece, stop = item.get("text"), item.get("finish_reason")
            self._id(item.get("response_id"))
            for call in item.get("tool_calls") or ():
                self.calls.append({"name": field_of(call, "name"), "id": None})
        if isinstance(stop, str) and stop:
            self.stop = stop
        if isinstance(piece, str) and piece:
            self.text.append(piece)
            return piece
        return None

    def _tokens(self, input_tokens: Any, output_tokens: Any) -> None:
        if _int(input_tokens) is not None:
            self.input_tokens = input_tokens
        if _int(output_tokens) is not None:
            self.output_tokens = output_tokens

    def _id(self, value: Any) -> None:
        if isinstance(value, str):
            self.response_id = value

    def record(self, handle: LlmRequest, capture: bool, counted: Mapping[str, Any] | None) -> None:
        """Onto the span; ``counted``: Bedrock's own counts (``inputTokenCount``,
        ``outputTokenCount``), for the families whose bodies carry none."""
        if counted is not None:
            if self.input_tokens is None:
                self.input_tokens = _int(counted.get("inputTokenCount"))
            if self.output_tokens is None:
                self.output_tokens = _int(counted.get("outputTokenCount"))
        handle.record_usage(
            self.input_tokens,
            self.output_tokens,
            _stop_reason(self.stop),
            finish_reasons=[self.stop] if self.stop else None,
            response_id=self.response_id,
        )
        if self.input_tokens is None and self.output_tokens is None:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.calls:
            handle.record_tool_calls(self.calls)
        if capture:
            parts = [{"type": "text", "content": "".join(self.text)}] if self.text else []
            parts.extend(tool_call_part(c["id"], c["name"], None) for c in self.calls)
            handle.record_output([{"role": "assistant", "parts": parts, "finish_reason": self.stop}])


def _header_counts(result: Any) -> dict[str, Any] | None:
    """The token counts Bedrock puts on every InvokeModel reply's HTTP headers."""
    headers = field_of(field_of(result, "ResponseMetadata"), "HTTPHeaders")
    if not isinstance(headers, Mapping):
        return None
    counts = {}
    for name, header in (
        ("inputTokenCount", "x-amzn-bedrock-input-token-count"),
        ("outputTokenCount", "x-amzn-bedrock-output-token-count"),
    ):
        value = headers.get(header)
        if isinstance(value, str) and value.isdigit():
            counts[name] = int(value)
    return counts or None


def _record_body(handle: LlmRequest, data: bytes, result: Any, capture: bool) -> None:
    """An InvokeModel reply of any family but Anthropic's (a reply that is no JSON: only the
    headers' counts)."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        message = None
    if isinstance(message, dict) and isinstance(message.get("output"), Mapping):  # Nova
        _record_usage(handle, message.get("usage"), field_of(message, "stopReason"))
        calls = _tool_calls(_converse_content(message))
        if calls:
            handle.record_tool_calls(calls)
        if capture:
            handle.record_output(_converse_output(message))
        return
    reply = _Reply()
    if isinstance(message, dict):
        reply.read(message)
    reply.record(handle, capture, _header_counts(result))


# Converse's stream events, which a Nova InvokeModelWithResponseStream chunk holds one of.
_CONVERSE_EVENTS = (
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
)


class _BodyChunkObserver(_ConverseStreamObserver):
    """Reads ``invoke_model_with_response_stream``'s chunks for the families other than
    Anthropic: each ``{"chunk": {"bytes": ...}}`` holds one JSON object in the family's schema
    (Nova's are Converse's stream events); the last one carries Bedrock's
    ``amazon-bedrock-invocationMetrics`` with the token counts."""

    __slots__ = ("counted", "nova", "reply")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.reply = _Reply()
        self.nova = False
        self.counted: Mapping[str, Any] | None = None

    def observe(self, event: Any) -> None:
        data = field_of(event.get("chunk"), "bytes")
        if not isinstance(data, (bytes, bytearray)):
            return
        try:
            item = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(item, dict):
            return
        metrics = item.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, Mapping):
            self.counted = metrics
        if any(name in item for name in _CONVERSE_EVENTS):
            self.nova = True
            super().observe(item)
        elif self.reply.read(item) is not None:
            self.content_arrived()

    def finalize(self) -> None:
        if self.nova:
            counted = self.counted
            if self.usage is None and counted is not None:
                self.usage = {
                    "inputTokens": counted.get("inputTokenCount"),
                    "outputTokens": counted.get("outputTokenCount"),
                }
            super().finalize()
            return
        self.reply.record(self.handle, self.capture, self.counted)


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


def _body_endpoint(operation: str, stream: bool) -> Endpoint:
    return Endpoint(
        PROVIDER,
        _describe_body_stream if stream else _describe_body,
        _body_input,
        _BodyChunkObserver if stream else _NoStream,
        _converse_output,  # unused: _InvokeBodyCall records what it read
        operation=operation,
        system_instructions=_body_system,
    )


# Nova's messages and bodies of unknown kinds are chat; prompt bodies text completions.
INVOKE_CHAT = _body_endpoint(A.OPERATION_CHAT, stream=False)
INVOKE_CHAT_STREAM = _body_endpoint(A.OPERATION_CHAT, stream=True)
INVOKE_TEXT = _body_endpoint(A.OPERATION_TEXT_COMPLETION, stream=False)
INVOKE_TEXT_STREAM = _body_endpoint(A.OPERATION_TEXT_COMPLETION, stream=True)


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
                proxy = _AsyncEventStreamProxy if self.is_async else _EventStreamProxy
                result[key] = self.observe_stream(proxy, stream)
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
        data = bytes(result["body"])
        # The caller's body first: whatever reading it for the span does, the caller gets it.
        result = dict(result)
        result["body"] = _async_body(data) if self.is_async else _body_of(data)
        with internal_errors("instrumentation.response"):
            self.read(handle, data, result)
        return result

    def read(self, handle: LlmRequest, data: bytes, result: Any) -> None:
        """An Anthropic Messages reply."""
        message = json.loads(data)
        handle.record_response(message)
        if self.capture:
            handle.record_output(_invoke_output(message))


class _InvokeBodyCall(_InvokeModelCall):
    """``invoke_model`` with another family's body (or one of a kind steptrace does not know)."""

    def read(self, handle: LlmRequest, data: bytes, result: Any) -> None:
        _record_body(handle, data, result, self.capture)


def _body_of(data: bytes) -> Any:
    """A botocore ``StreamingBody`` over bytes read already, as botocore would give."""
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


class _ReadContent:
    """What aiobotocore's body reads of an aiohttp response (``content.read``/``at_eof``)."""

    __slots__ = ("_data", "_size")

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self._size = len(data)

    async def read(self, amount: int = -1) -> bytes:
        return self._data.read(amount if amount >= 0 else None)

    def at_eof(self) -> bool:
        return self._data.tell() >= self._size


class _ReadResponse:
    """An aiohttp response already read: its ``content``, ``url`` and ``close``."""

    __slots__ = ("content", "url")

    def __init__(self, data: bytes) -> None:
        self.content = _ReadContent(data)
        self.url = ""

    def close(self) -> None:
        """Nothing is open."""


def _async_body(data: bytes) -> Any:
    """An aiobotocore ``AioStreamingBody`` over bytes read already (``await body.read()``,
    ``async with``, ``iter_chunks``), as aiobotocore would give."""
    from aiobotocore.response import AioStreamingBody

    return AioStreamingBody(_ReadResponse(data), len(data))


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


class _AsyncEventStreamProxy(AsyncStreamProxy):
    """aiobotocore's ``AioEventStream`` (``async for``), observed; ends as ``_EventStreamProxy``."""

    def __init__(self, stream: Any, call: Call, observer: Observer) -> None:
        wrapt.ObjectProxy.__init__(self, stream)
        self._self_call: Call | None = call
        self._self_observer = observer
        self._self_observe = observer.observe
        self._self_anext = stream.__aiter__().__anext__


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


_INVOKE = {
    # operation -> (Anthropic, chat, text completion)
    "InvokeModel": (INVOKE_MODEL, INVOKE_CHAT, INVOKE_TEXT),
    "InvokeModelWithResponseStream": (INVOKE_MODEL_STREAM, INVOKE_CHAT_STREAM, INVOKE_TEXT_STREAM),
}


def _invoke_endpoint(operation: str, params: Mapping[str, Any]) -> tuple[Endpoint, type[Call]]:
    """How to read an ``invoke_model`` call: by the family of its body."""
    anthropic, chat, text = _INVOKE[operation]
    stream = operation == "InvokeModelWithResponseStream"
    if _anthropic_body(params) is not None:
        return anthropic, _InvokeModelStreamCall if stream else _InvokeModelCall
    body = _body(params)
    endpoint = text if body is not None and _is_prompt_body(body) else chat
    return endpoint, _InvokeModelStreamCall if stream else _InvokeBodyCall


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


def _async_sender(wrapped: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """``_sender`` for aiobotocore: the same parameters, awaited; the body read with ``await``."""

    async def send(**params: Any) -> Any:
        return await wrapped(operation, params)

    async def send_and_read(**params: Any) -> Any:
        response = await wrapped(operation, params)
        body = response.get("body") if isinstance(response, dict) else None
        if body is None or not callable(getattr(body, "read", None)):
            return response
        response = dict(response)
        response["body"] = await body.read()
        return response

    return send_and_read if operation == "InvokeModel" else send


def _traced_operation(args: Any, kwargs: Any, instance: Any) -> tuple[str, dict[str, Any]] | None:
    """``(operation, params)`` of a ``_make_api_call`` steptrace traces, else None."""
    if len(args) != 2 or kwargs:
        return None
    operation, params = args
    if (
        not isinstance(operation, str)
        or operation not in _OPERATIONS
        or not isinstance(params, dict)
        or not _is_bedrock_runtime(instance)
    ):
        return None
    return operation, params


def _open(source: ConfigSource, instance: Any, operation: str, params: dict[str, Any]) -> Call | None:
    endpoint, call_type = _OPERATIONS[operation]
    if operation in _INVOKE:
        try:
            endpoint, call_type = _invoke_endpoint(operation, params)
        except Exception as exc:  # read as a body of unknown kind
            report_internal_error("bedrock.invoke_body", exc)
    return open_call(source, endpoint, _server(instance), params, call_type)


def _wrapper(source: ConfigSource) -> Callable[..., Any]:
    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        known = _traced_operation(args, kwargs, instance)
        if known is None:
            return wrapped(*args, **kwargs)
        operation, params = known
        call = _open(source, instance, operation, params)
        if call is None:
            return wrapped(*args, **kwargs)
        return invoke(call, _sender(wrapped, operation), (), params)

    return traced


def _async_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """aiobotocore's ``AioBaseClient._make_api_call``: the span opens when the call starts."""

    async def traced_call(wrapped: Callable[..., Any], instance: Any, operation: str, params: Any) -> Any:
        call = _open(source, instance, operation, params)
        if call is None:
            return await wrapped(operation, params)
        return await invoke_async(call, _async_sender(wrapped, operation), (), params)

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        known = _traced_operation(args, kwargs, instance)
        if known is None or source.get() is None:
            return wrapped(*args, **kwargs)
        return traced_call(wrapped, instance, *known)

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
    tested: ClassVar[str] = "botocore 1.34.116, 1.43.117 (with aiobotocore 3.10.0) and 1.44.18"

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from botocore.client import BaseClient

        patches.wrap(BaseClient, "_make_api_call", _wrapper(source))
        aio = _aio_client_class()
        if aio is not None:  # its own _make_api_call, a coroutine
            patches.wrap(aio, "_make_api_call", _async_wrapper(source))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        aio = _aio_client_class()
        is_async = aio is not None and isinstance(client, aio)
        patches.wrap(client, "_make_api_call", (_async_wrapper if is_async else _wrapper)(source))


def _aio_client_class() -> type | None:
    """aiobotocore's client class, when aiobotocore is installed."""
    try:
        from aiobotocore.client import AioBaseClient
    except ImportError:
        return None
    return AioBaseClient if isinstance(AioBaseClient, type) else None


def instrument_bedrock(client: Any = None) -> None:
    """Trace Amazon Bedrock through boto3: every ``bedrock-runtime`` client, or only ``client``.

    Each ``converse``, ``converse_stream``, ``invoke_model`` and
    ``invoke_model_with_response_stream`` call becomes an ``llm_request`` span (provider
    ``aws.bedrock``) with the duration, token and time-to-first-chunk histograms; an
    ``invoke_model`` body is read in its model family's schema (Anthropic, Nova, Llama, Titan,
    Mistral, Cohere). Instrumenting twice is a logged no-op;
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
