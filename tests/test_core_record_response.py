"""record_response understands the real SDK response objects and dicts of their shape."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

import steptrace
from steptrace import _attributes as A
from steptrace._response import normalize_stop_reason
from steptrace.testing import Capture

CHAT = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
        }
    ],
    "usage": {
        "prompt_tokens": 50,
        "completion_tokens": 12,
        "total_tokens": 62,
        "prompt_tokens_details": {"cached_tokens": 32},
        "completion_tokens_details": {"reasoning_tokens": 5},
    },
}
RESPONSES = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "model": "gpt-5",
    "status": "incomplete",
    "incomplete_details": {"reason": "max_output_tokens"},
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 70,
        "output_tokens": 100,
        "total_tokens": 170,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 16},
        "output_tokens_details": {"reasoning_tokens": 64},
    },
}
ANTHROPIC = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "x"}}],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 30,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    },
}


def _record(capture: Capture, response: Any) -> dict[str, Any]:
    with steptrace.agent_run(agent="a"), steptrace.llm_request(provider="p") as llm:
        llm.record_response(response)
    (span,) = capture.spans_named("llm_request")
    return dict(span.attributes or {})


@pytest.mark.parametrize("as_object", [True, False])
def test_openai_chat_completion(steptrace_capture: Capture, as_object: bool) -> None:
    """Chat completions give tokens, cache and reasoning counts, tool calls and 'tool_use'."""
    response = ChatCompletion.model_validate(CHAT) if as_object else CHAT
    attributes = _record(steptrace_capture, response)
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 50
    assert attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    assert attributes[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 32
    assert attributes[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 5
    assert tuple(attributes[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ("tool_calls",)
    assert attributes[A.STOP_REASON] == "tool_use"
    assert attributes[A.GEN_AI_RESPONSE_ID] == "chatcmpl-9"
    (record,) = [r for r in steptrace_capture.records if r["type"] == "llm_call"]
    assert record["tool_calls"] == [{"name": "get_weather", "id": "call_1"}]


@pytest.mark.parametrize("as_object", [True, False])
def test_openai_responses_truncated(steptrace_capture: Capture, as_object: bool) -> None:
    """A responses-API call cut by max_output_tokens is found by stop_reason == 'max_tokens'."""
    response = Response.model_validate(RESPONSES) if as_object else RESPONSES
    attributes = _record(steptrace_capture, response)
    assert attributes[A.STOP_REASON] == "max_tokens"
    assert attributes[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 64
    assert attributes[A.GEN_AI_RESPONSE_MODEL] == "gpt-5"
    assert attributes[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 16


@pytest.mark.parametrize("as_object", [True, False])
def test_anthropic_message_counts_cached_input(steptrace_capture: Capture, as_object: bool) -> None:
    """Anthropic input tokens include cache reads and writes, as the conventions require."""
    response = Message.model_validate(ANTHROPIC) if as_object else ANTHROPIC
    attributes = _record(steptrace_capture, response)
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 130
    assert attributes[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 100
    assert attributes[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 20
    assert attributes[A.STOP_REASON] == "tool_use"
    (run,) = steptrace_capture.spans_named("agent_run")
    assert (run.attributes or {})[A.RUN_INPUT_TOKENS] == 130


def test_unknown_objects_are_ignored(steptrace_capture: Capture) -> None:
    """Passing something else to record_response never breaks the call."""
    attributes = _record(steptrace_capture, object())
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in attributes


@pytest.mark.parametrize(
    ("provider_value", "ours"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "content_filter"),
        ("end_turn", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_vocabulary(provider_value: str, ours: str) -> None:
    """One vocabulary across providers: stop_reason == 'max_tokens' finds every truncated call."""
    assert normalize_stop_reason(provider_value) == ours
