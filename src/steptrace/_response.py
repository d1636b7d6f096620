"""Read model, usage, finish reasons and requested tool calls from LLM responses.

Understands OpenAI chat-completions and responses objects, Anthropic messages, and dicts of
those shapes, without importing either SDK. Finish reasons map to one vocabulary across
providers (agent-step-log's), so ``stop_reason == "max_tokens"`` finds truncated calls anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steptrace import _attributes as A

_STOP_REASON_BY_FINISH_REASON: dict[str, str] = {
    # OpenAI chat completions
    "stop": A.STOP_END_TURN,
    "tool_calls": A.STOP_TOOL_USE,
    "function_call": A.STOP_TOOL_USE,
    "length": A.STOP_MAX_TOKENS,
    "content_filter": A.STOP_CONTENT_FILTER,
    # OpenAI responses (status / incomplete_details.reason)
    "completed": A.STOP_END_TURN,
    "max_output_tokens": A.STOP_MAX_TOKENS,
    "failed": A.STOP_ERROR,
    # Anthropic
    "end_turn": A.STOP_END_TURN,
    "tool_use": A.STOP_TOOL_USE,
    "max_tokens": A.STOP_MAX_TOKENS,
    "stop_sequence": A.STOP_SEQUENCE,
    "refusal": A.STOP_CONTENT_FILTER,
    # The turn is not finished (a long server-tool turn): the caller sends it back to continue.
    "pause_turn": A.STOP_PAUSE_TURN,
    "model_context_window_exceeded": A.STOP_MAX_TOKENS,
    # Other common spellings
    "error": A.STOP_ERROR,
    "max_completion_tokens": A.STOP_MAX_TOKENS,
    "safety": A.STOP_CONTENT_FILTER,
}


def normalize_stop_reason(finish_reason: str | None) -> str | None:
    """The provider's finish reason in steptrace's vocabulary (unknown values pass through)."""
    if finish_reason is None:
        return None
    return _STOP_REASON_BY_FINISH_REASON.get(finish_reason, finish_reason)


# type -> whether it is a Mapping: isinstance(obj, Mapping) is an ABC check (~0.3 µs) and a
# response is read ~15 times per call. Few types ever pass through; the cache stays small.
_mapping_types: dict[type, bool] = {dict: True}


def field_of(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: SDK objects and plain dicts read the same way."""
    if obj is None:
        return None
    try:
        kind = type(obj)
        mapping = _mapping_types.get(kind)
        if mapping is None:
            mapping = isinstance(obj, Mapping)
            if len(_mapping_types) < 512:
                _mapping_types[kind] = mapping
        if mapping:
            return obj.get(name)
        return getattr(obj, name, None)
    except Exception:  # a hostile object's property or __getitem__: treat as absent
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class ParsedResponse:
    """What a response says about the call; None where it says nothing."""

    response_id: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    finish_reasons: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    tool_calls: list[dict[str, str | None]] = field(default_factory=list)


def _kind(response: Any) -> str | None:
    marker = field_of(response, "object")
    if marker in ("chat.completion", "chat.completion.chunk"):
        return "chat"
    if marker == "response":
        return "responses"
    if field_of(response, "type") == "message" or field_of(response, "stop_reason") is not None:
        return "anthropic"
    if field_of(response, "choices") is not None:
        return "chat"
    if field_of(response, "output") is not None and field_of(response, "status") is not None:
        return "responses"
    if field_of(response, "content") is not None and field_of(response, "role") == "assistant":
        return "anthropic"
    return None


def parse_response(response: Any) -> ParsedResponse | None:
    """Parse a known response shape, or return None for anything else."""
    kind = _kind(response)
    if kind is None:
        return None
    parsed = ParsedResponse(response_id=field_of(response, "id"), model=field_of(response, "model"))
    usage = field_of(response, "usage")
    if kind == "chat":
        _parse_chat(response, usage, parsed)
    elif kind == "responses":
        _parse_responses(response, usage, parsed)
    else:
        _parse_anthropic(response, usage, parsed)
    return parsed


def _parse_chat(response: Any, usage: Any, parsed: ParsedResponse) -> None:
    for choice in field_of(response, "choices") or ():
        reason = field_of(choice, "finish_reason")
        if reason:
            parsed.finish_reasons.append(str(reason))
        message = field_of(choice, "message") or field_of(choice, "delta")
        for call in field_of(message, "tool_calls") or ():
            function = field_of(call, "function")
            parsed.tool_calls.append({"name": field_of(function, "name"), "id": field_of(call, "id")})
        legacy = field_of(message, "function_call")
        if legacy is not None:
            # The deprecated ``functions=`` API names one function and gives no call id.
            parsed.tool_calls.append({"name": field_of(legacy, "name"), "id": None})
    if parsed.finish_reasons:
        parsed.stop_reason = normalize_stop_reason(parsed.finish_reasons[0])
    if usage is not None:
        parsed.input_tokens = _int_or_none(field_of(usage, "prompt_tokens"))
        parsed.output_tokens = _int_or_none(field_of(usage, "completion_tokens"))
        prompt_details = field_of(usage, "prompt_tokens_details")
        parsed.cache_read_input_tokens = _int_or_none(field_of(prompt_details, "cached_tokens"))
        parsed.cache_creation_input_tokens = _int_or_none(field_of(prompt_details, "cache_write_tokens"))
        parsed.reasoning_tokens = _int_or_none(
            field_of(field_of(usage, "completion_tokens_details"), "reasoning_tokens")
        )


def _parse_responses(response: Any, usage: Any, parsed: ParsedResponse) -> None:
    status = field_of(response, "status")
    incomplete = field_of(field_of(response, "incomplete_details"), "reason")
    for item in field_of(response, "output") or ():
        if field_of(item, "type") == "function_call":
            parsed.tool_calls.append({"name": field_of(item, "name"), "id": field_of(item, "call_id")})
    if incomplete:
        parsed.finish_reasons.append(str(incomplete))
        parsed.stop_reason = normalize_stop_reason(str(incomplete))
    elif status:
        parsed.finish_reasons.append(str(status))
        if status == "completed" and parsed.tool_calls:
            parsed.stop_reason = A.STOP_TOOL_USE
        else:
            parsed.stop_reason = normalize_stop_reason(str(status))
    if usage is not None:
        parsed.input_tokens = _int_or_none(field_of(usage, "input_tokens"))
        parsed.output_tokens = _int_or_none(field_of(usage, "output_tokens"))
        input_details = field_of(usage, "input_tokens_details")
        parsed.cache_read_input_tokens = _int_or_none(field_of(input_details, "cached_tokens"))
        parsed.cache_creation_input_tokens = _int_or_none(field_of(input_details, "cache_write_tokens"))
        parsed.reasoning_tokens = _int_or_none(
            field_of(field_of(usage, "output_tokens_details"), "reasoning_tokens")
        )


def _parse_anthropic(response: Any, usage: Any, parsed: ParsedResponse) -> None:
    reason = field_of(response, "stop_reason")
    if reason:
        parsed.finish_reasons.append(str(reason))
        parsed.stop_reason = normalize_stop_reason(str(reason))
    for block in field_of(response, "content") or ():
        if field_of(block, "type") in ("tool_use", "server_tool_use"):
            parsed.tool_calls.append({"name": field_of(block, "name"), "id": field_of(block, "id")})
    if usage is not None:
        base = _int_or_none(field_of(usage, "input_tokens"))
        cache_read = _int_or_none(field_of(usage, "cache_read_input_tokens"))
        cache_creation = _int_or_none(field_of(usage, "cache_creation_input_tokens"))
        parsed.cache_read_input_tokens = cache_read
        parsed.cache_creation_input_tokens = cache_creation
        # The conventions count Anthropic's cached tokens as input tokens (anthropic.md, v1.41).
        if base is not None:
            parsed.input_tokens = base + (cache_read or 0) + (cache_creation or 0)
        parsed.output_tokens = _int_or_none(field_of(usage, "output_tokens"))
