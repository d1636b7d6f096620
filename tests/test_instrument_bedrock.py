"""steptrace.instrument_bedrock: the real boto3 ``bedrock-runtime`` client against a fake Bedrock on
127.0.0.1 (JSON replies, and the AWS event-stream framing for converse_stream)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EventStreamError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import bedrock_fakes as B
import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.instrumentation.bedrock import BedrockInstrumentor
from steptrace.testing import Capture

ORIGINAL = BaseClient.__dict__["_make_api_call"]
# botocore's model of the service decides what a reply can say: the floor the extra admits
# (1.34.116) knows no cache token counts, and no count_tokens operation.
_RUNTIME = botocore.session.get_session().get_service_model("bedrock-runtime")
CACHE_TOKENS = "cacheReadInputTokens" in _RUNTIME.shape_for("TokenUsage").members
COUNT_TOKENS = "CountTokens" in _RUNTIME.operation_names
MESSAGES = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
TOOL_TURN = ("tooluse_1", "get_weather", {"city": "Paris"})


@pytest.fixture(autouse=True)
def instrumented(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "1")
    steptrace.instrument_bedrock()
    yield
    steptrace.uninstrument_bedrock()


@pytest.fixture
def server() -> Iterator[B.BedrockServer]:
    with B.BedrockServer() as fake:
        yield fake


@pytest.fixture
def capture(steptrace_capture: Capture) -> Capture:
    steptrace_capture.configure(capture_content=True)
    return steptrace_capture


def only_llm_span(capture: Capture) -> ReadableSpan:
    spans = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(spans) == 1, [dict(s.attributes or {}) for s in spans]
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def llm_records(capture: Capture) -> list[dict[str, Any]]:
    return [r for r in capture.records if r["type"] == "llm_call"]


def anthropic_invoke_body(**extra: Any) -> str:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": "Be brief",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        **extra,
    }
    return json.dumps(body)


def test_converse_tool_turn_has_usage_cache_tokens_and_tool_call_ids(
    capture: Capture, server: B.BedrockServer
) -> None:
    """converse inside a step: one child llm_request, provider aws.bedrock, model from modelId,
    tokens with cache read/write counted as input, the toolUse ids as the record's tool calls."""
    server.add(
        B.json_reply(
            B.converse_response(
                "Let me check.", tool_use=TOOL_TURN, stop_reason="tool_use", cache_read=100, cache_write=20
            )
        )
    )
    client = server.client()
    with steptrace.agent_run(agent="weather"), steptrace.agent_step():
        response = client.converse(
            modelId=B.MODEL,
            messages=MESSAGES,
            system=[{"text": "Be brief"}],
            inferenceConfig={"maxTokens": 256, "temperature": 0.2, "stopSequences": ["STOP"]},
        )
    assert response["stopReason"] == "tool_use"
    span = only_llm_span(capture)
    step = capture.spans_named(A.SPAN_AGENT_STEP)[0]
    assert span.parent is not None and span.parent.span_id == step.context.span_id
    got = attrs(span)
    expected = {
        A.GEN_AI_OPERATION_NAME: "chat",
        A.GEN_AI_PROVIDER_NAME: "aws.bedrock",
        A.GEN_AI_REQUEST_MODEL: B.MODEL,
        A.GEN_AI_REQUEST_MAX_TOKENS: 256,
        A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        A.GEN_AI_REQUEST_STOP_SEQUENCES: ("STOP",),
        A.GEN_AI_REQUEST_STREAM: False,
        A.SERVER_ADDRESS: "127.0.0.1",
        A.GEN_AI_USAGE_INPUT_TOKENS: 132 if CACHE_TOKENS else 12,  # 12 + 100 cache read + 20 cache write
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 100 if CACHE_TOKENS else None,
        A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 20 if CACHE_TOKENS else None,
        A.GEN_AI_RESPONSE_FINISH_REASONS: ("tool_use",),
        A.STOP_REASON: "tool_use",
    }
    assert {k: got.get(k) for k in expected} == expected
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief"}]
    assert json.loads(got[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
    ]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me check."},
                {
                    "type": "tool_call",
                    "id": "tooluse_1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                },
            ],
            "finish_reason": "tool_use",
        }
    ]
    (record,) = llm_records(capture)
    assert record["tool_calls"] == [{"name": "get_weather", "id": "tooluse_1"}]
    assert (record["provider"], record["model"], record["stop_reason"]) == (
        "aws.bedrock",
        B.MODEL,
        "tool_use",
    )
    if CACHE_TOKENS:
        assert (record["input_tokens"], record["cache_read_input_tokens"]) == (132, 100)


def test_tool_results_in_the_next_turn_read_as_tool_call_responses(
    capture: Capture, server: B.BedrockServer
) -> None:
    """The next converse turn sends the toolResult back: its input message names the same id."""
    server.add(B.json_reply(B.converse_response("Sunny.")))
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"sky": "clear"}}]}}],
        },
    ]
    server.client().converse(modelId=B.MODEL, messages=history)
    parts = [m["parts"][0] for m in json.loads(attrs(only_llm_span(capture))[A.GEN_AI_INPUT_MESSAGES])]
    assert parts[1] == {
        "type": "tool_call",
        "id": "tooluse_1",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert parts[2] == {
        "type": "tool_call_response",
        "id": "tooluse_1",
        "response": [{"type": "json", "content": {"sky": "clear"}}],
    }


def test_converse_stream_consumed_fully(capture: Capture, server: B.BedrockServer) -> None:
    """converse_stream read to the end: TTFT, usage from the metadata event, the streamed toolUse's
    id, its JSON input reassembled, stream_completed true; the caller gets botocore's events."""
    events = B.converse_events(
        ["It ", "is ", "sunny"],
        tool_use=("tooluse_2", "get_weather", ['{"city"', ': "Oslo"}']),
        stop_reason="tool_use",
        input_tokens=30,
        output_tokens=9,
        cache_read=7,
    )
    server.add(B.stream_reply(events, gap=0.005))
    with steptrace.agent_run(agent="weather"), steptrace.agent_step():
        response = server.client().converse_stream(modelId=B.MODEL, messages=MESSAGES)
        assert not only_llm_span_ended(capture)
        received = [next(iter(event)) for event in response["stream"]]
    assert received[0] == "messageStart" and received[-2:] == ["messageStop", "metadata"]
    got = attrs(only_llm_span(capture))
    assert got[A.GEN_AI_REQUEST_STREAM] is True
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert (got[A.GEN_AI_USAGE_INPUT_TOKENS], got[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (
        37 if CACHE_TOKENS else 30,
        9,
    )
    assert got.get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) == (7 if CACHE_TOKENS else None)
    assert got[A.STOP_REASON] == "tool_use"
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "tooluse_2"}]
    output = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert output == [
        {"type": "text", "content": "It is sunny"},
        {"type": "tool_call", "id": "tooluse_2", "name": "get_weather", "arguments": {"city": "Oslo"}},
    ]
    [per_chunk] = capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 4  # 3 text + 2 tool input deltas, after the first
    (record,) = llm_records(capture)
    assert record["stream"] is True and record["ttft_ms"] > 0 and record["stream_completed"] is True


def only_llm_span_ended(capture: Capture) -> bool:
    return bool(capture.spans_named(A.SPAN_LLM_REQUEST))


def test_converse_stream_abandoned_early_ends_the_span_incomplete(
    capture: Capture, server: B.BedrockServer
) -> None:
    """A loop that breaks after the first text and closes the stream ends the span then: no usage
    (the metadata event never came), stream_completed false, usage_missing true, not an error."""
    server.add(B.stream_reply(B.converse_events(["a", "b", "c"])))
    response = server.client().converse_stream(modelId=B.MODEL, messages=MESSAGES)
    stream = response["stream"]
    for event in stream:
        if "contentBlockDelta" in event:
            break
    assert not only_llm_span_ended(capture)
    stream.close()
    got = attrs(only_llm_span(capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert got[A.LLM_USAGE_MISSING] is True
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in got and A.STOP_REASON not in got
    assert only_llm_span(capture).status.status_code is StatusCode.UNSET
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_converse_stream_dropped_unread_ends_the_span(capture: Capture, server: B.BedrockServer) -> None:
    """A converse_stream response dropped without reading: the span ends when it is collected."""
    server.add(B.stream_reply(B.converse_events(["a"])))
    response = server.client().converse_stream(modelId=B.MODEL, messages=MESSAGES)
    body = response["stream"]._raw_stream  # botocore leaves the socket open; closed below
    del response
    gc.collect()
    assert attrs(only_llm_span(capture))[A.LLM_STREAM_COMPLETED] is False
    body.close()


def test_converse_stream_failing_mid_stream_fails_the_span(capture: Capture, server: B.BedrockServer) -> None:
    """A throttlingException event after the first text: the caller gets botocore's
    EventStreamError; the span ends failed with that code as error.type, stream_completed false."""
    events = [*B.converse_events(["a", "b"])[:2], B.exception_message("throttlingException", "slow down")]
    server.add(B.stream_reply(events))
    stream = server.client().converse_stream(modelId=B.MODEL, messages=MESSAGES)["stream"]
    with pytest.raises(EventStreamError) as raised:
        for _event in stream:
            pass
    assert raised.value.response["Error"]["Code"] == "throttlingException"
    span = only_llm_span(capture)
    assert span.status.status_code is StatusCode.ERROR
    got = attrs(span)
    assert (got[A.ERROR_TYPE], got[A.LLM_STREAM_COMPLETED], got[A.STOP_REASON]) == (
        "throttlingException",
        False,
        "error",
    )
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_invoke_model_with_an_anthropic_body(capture: Capture, server: B.BedrockServer) -> None:
    """invoke_model with an Anthropic Messages body: usage, stop reason and tool ids from the JSON
    body; the caller still reads the whole body from response["body"]."""
    server.add(
        B.json_reply(
            B.anthropic_body(
                "Checking.",
                tool_use=("toolu_9", "get_weather", {"city": "Rome"}),
                stop_reason="tool_use",
                cache_read=4,
            )
        )
    )
    response = server.client().invoke_model(modelId=B.MODEL, body=anthropic_invoke_body(temperature=0.5))
    body = json.loads(response["body"].read())
    assert body["stop_reason"] == "tool_use" and response["contentType"] == "application/json"
    got = attrs(only_llm_span(capture))
    expected = {
        A.GEN_AI_PROVIDER_NAME: "aws.bedrock",
        A.GEN_AI_REQUEST_MODEL: B.MODEL,
        A.GEN_AI_RESPONSE_MODEL: "claude-3-5-sonnet-20240620",
        A.GEN_AI_REQUEST_MAX_TOKENS: 256,
        A.GEN_AI_REQUEST_TEMPERATURE: 0.5,
        A.GEN_AI_USAGE_INPUT_TOKENS: 24,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 7,
        A.STOP_REASON: "tool_use",
        A.GEN_AI_RESPONSE_ID: "msg_bdrk_01",
    }
    assert {k: got.get(k) for k in expected} == expected
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "toolu_9"}]
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief"}]
    assert server.requests[0][0] == f"/model/{B.MODEL}/invoke".replace(":", "%3A")


def test_invoke_model_with_response_stream_and_an_anthropic_body(
    capture: Capture, server: B.BedrockServer
) -> None:
    """invoke_model_with_response_stream with an Anthropic body: TTFT, usage and stop reason from
    the Anthropic events inside the chunks, the tool_use id; the caller reads the same chunks."""
    chunks = B.anthropic_chunks(
        ["It ", "is ", "sunny"],
        tool_use=("toolu_7", "get_weather", ['{"city"', ': "Oslo"}']),
        stop_reason="tool_use",
    )
    server.add(B.stream_reply(chunks))
    response = server.client().invoke_model_with_response_stream(
        modelId=B.MODEL, body=anthropic_invoke_body()
    )
    kinds = [json.loads(event["chunk"]["bytes"])["type"] for event in response["body"]]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    got = attrs(only_llm_span(capture))
    expected = {
        A.GEN_AI_PROVIDER_NAME: "aws.bedrock",
        A.GEN_AI_REQUEST_MODEL: B.MODEL,
        A.GEN_AI_REQUEST_STREAM: True,
        A.GEN_AI_RESPONSE_MODEL: "claude-3-5-sonnet-20240620",
        A.GEN_AI_USAGE_INPUT_TOKENS: 25,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 11,
        A.STOP_REASON: "tool_use",
        A.LLM_STREAM_COMPLETED: True,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "toolu_7"}]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": "It is sunny"},
        {"type": "tool_call", "id": "toolu_7", "name": "get_weather", "arguments": {"city": "Oslo"}},
    ]


# The request bodies of the other model families, as the Bedrock User Guide shows them.
PROMPT = "Weather in Paris?"
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "nova": (
        B.NOVA,
        {
            "schemaVersion": "messages-v1",
            "system": [{"text": "Be brief"}],
            "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.3, "topP": 0.9, "topK": 20},
        },
    ),
    "llama": (B.LLAMA, {"prompt": PROMPT, "max_gen_len": 300, "temperature": 0.3, "top_p": 0.9}),
    "titan": (
        B.TITAN,
        {
            "inputText": PROMPT,
            "textGenerationConfig": {"maxTokenCount": 300, "temperature": 0.3, "topP": 0.9},
        },
    ),
    "mistral": (
        B.MISTRAL,
        {
            "prompt": f"<s>[INST] {PROMPT} [/INST]",
            "max_tokens": 300,
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 20,
        },
    ),
    "cohere": (B.COHERE, {"prompt": PROMPT, "max_tokens": 300, "temperature": 0.3, "p": 0.9, "k": 20}),
    "cohere-r": (B.COHERE_R, {"message": PROMPT, "max_tokens": 300, "temperature": 0.3, "p": 0.9, "k": 20}),
}
# family -> (the reply, the headers' token counts, (input, output) tokens, raw stop, stop reason)
REPLIES: dict[str, tuple[dict[str, Any], tuple[int, int], tuple[int, int], str, str]] = {
    "nova": (B.nova_body(), (31, 9), (31, 9), "end_turn", "end_turn"),
    "llama": (B.llama_body(stop_reason="length"), (17, 6), (17, 6), "length", "max_tokens"),
    "titan": (B.titan_body(), (8, 5), (8, 5), "FINISH", "end_turn"),
    "mistral": (B.mistral_body(), (14, 6), (14, 6), "stop", "end_turn"),  # counts: the headers'
    "cohere": (B.cohere_body(finish_reason="MAX_TOKENS"), (11, 6), (11, 6), "MAX_TOKENS", "max_tokens"),
    "cohere-r": (B.cohere_r_body(), (11, 6), (11, 6), "COMPLETE", "end_turn"),
}


@pytest.mark.parametrize("family", list(BODIES))
def test_invoke_model_with_each_familys_body(capture: Capture, server: B.BedrockServer, family: str) -> None:
    """invoke_model with a Nova, Llama, Titan, Mistral or Cohere body would be no span at all: no
    model, tokens or stop reason for the run; the caller still reads the whole body."""
    model, request = BODIES[family]
    reply, header_tokens, tokens, raw_stop, stop = REPLIES[family]
    server.add(B.json_reply(reply, tokens=header_tokens))
    with steptrace.agent_run(agent="weather"), steptrace.agent_step():
        response = server.client().invoke_model(modelId=model, body=json.dumps(request))
    assert json.loads(response["body"].read()) == reply
    got = attrs(only_llm_span(capture))
    expected = {
        A.GEN_AI_PROVIDER_NAME: "aws.bedrock",
        A.GEN_AI_OPERATION_NAME: "chat" if family == "nova" else "text_completion",
        A.GEN_AI_REQUEST_MODEL: model,
        A.GEN_AI_REQUEST_MAX_TOKENS: 300,
        A.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        A.GEN_AI_REQUEST_TOP_P: 0.9,
        A.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
        A.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
        A.GEN_AI_RESPONSE_FINISH_REASONS: (raw_stop,),
        A.STOP_REASON: stop,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert PROMPT in json.loads(got[A.GEN_AI_INPUT_MESSAGES])[0]["parts"][0]["content"]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0] == {
        "type": "text",
        "content": "Sunny in Paris.",
    }
    (record,) = llm_records(capture)
    assert (record["input_tokens"], record["output_tokens"], record["stop_reason"]) == (*tokens, stop)
    (run,) = [r for r in capture.records if r["type"] == "run"]
    assert (run["input_tokens"], run["output_tokens"], run["llm_calls"]) == (*tokens, 1)


def test_invoke_model_with_a_nova_tool_turn_and_a_mistral_tool_call(
    capture: Capture, server: B.BedrockServer
) -> None:
    """A Nova or Mistral chat reply asking for a tool would lose its tool-call ids (the step's
    tool calls could not be matched to the request), or read as the end of the turn."""
    server.add(
        B.json_reply(
            B.nova_body(
                "Checking.", tool_use=("tooluse_n1", "get_weather", {"city": "Rome"}), stop_reason="tool_use"
            )
        ),
        B.json_reply(B.mistral_chat_body(tool=("call_m1", "get_weather")), tokens=(20, 4)),
    )
    client = server.client()
    client.invoke_model(modelId=B.NOVA, body=json.dumps(BODIES["nova"][1]))
    mistral_chat = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 300}
    client.invoke_model(modelId=B.MISTRAL_CHAT, body=json.dumps(mistral_chat))
    nova, mistral = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert (attrs(nova)[A.STOP_REASON], json.loads(attrs(nova)[A.LLM_TOOL_CALLS])) == (
        "tool_use",
        [{"name": "get_weather", "id": "tooluse_n1"}],
    )
    assert (attrs(mistral)[A.STOP_REASON], json.loads(attrs(mistral)[A.LLM_TOOL_CALLS])) == (
        "tool_use",
        [{"name": "get_weather", "id": "call_m1"}],
    )
    assert attrs(mistral)[A.GEN_AI_OPERATION_NAME] == "chat"
    assert (attrs(mistral)[A.GEN_AI_USAGE_INPUT_TOKENS], attrs(mistral)[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (
        20,
        4,
    )


STREAMS: dict[str, tuple[list[bytes], tuple[int, int], str]] = {
    "nova": (B.nova_chunks(["It ", "is ", "sunny"]), (31, 9), "end_turn"),
    "llama": (B.llama_chunks(["It ", "is ", "sunny"], stop_reason="length"), (17, 3), "max_tokens"),
    "titan": (B.titan_chunks(["It ", "is ", "sunny"]), (8, 3), "end_turn"),
    "mistral": (B.mistral_chunks(["It ", "is ", "sunny"]), (14, 3), "end_turn"),  # the metrics' counts
    "cohere": (B.cohere_chunks(["It ", "is ", "sunny"]), (11, 3), "end_turn"),
}


@pytest.mark.parametrize("family", list(STREAMS))
def test_invoke_model_with_response_stream_with_each_familys_body(
    capture: Capture, server: B.BedrockServer, family: str
) -> None:
    """A streamed Nova, Llama, Titan, Mistral or Cohere reply would be no span: no time to first
    chunk, tokens or stop reason; the caller reads every chunk as sent."""
    model, request = BODIES[family]
    events, tokens, stop = STREAMS[family]
    server.add(B.stream_reply(events, gap=0.01))
    response = server.client().invoke_model_with_response_stream(modelId=model, body=json.dumps(request))
    assert len([event["chunk"]["bytes"] for event in response["body"]]) == len(events)
    got = attrs(only_llm_span(capture))
    expected = {
        A.GEN_AI_REQUEST_MODEL: model,
        A.GEN_AI_REQUEST_STREAM: True,
        A.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
        A.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
        A.STOP_REASON: stop,
        A.LLM_STREAM_COMPLETED: True,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [
        {"type": "text", "content": "It is sunny"}
    ]


def test_invoke_model_with_a_body_of_unknown_kind_is_a_span_that_never_raises(
    capture: Capture, server: B.BedrockServer
) -> None:
    """A body steptrace does not know (an image model's, a new family's, not even JSON) would raise
    in the caller, be lost, or hide the failure of the call."""
    image = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a lighthouse"}}
    server.add(
        B.json_reply({"images": ["aGVsbG8="], "error": None}, tokens=(9, 0)),
        B.Reply(body=b"\x89PNG not json", headers={"content-type": "image/png"}),
        B.error_reply("ValidationException", "Malformed input request"),
    )
    client = server.client()
    body = client.invoke_model(modelId="amazon.titan-image-generator-v2:0", body=json.dumps(image))["body"]
    assert json.loads(body.read())["images"] == ["aGVsbG8="]
    raw = client.invoke_model(modelId="stability.sd3-large-v1:0", body=b"\x00binary", accept="image/png")
    assert raw["body"].read() == b"\x89PNG not json"
    with pytest.raises(ClientError, match="Malformed input request"):
        client.invoke_model(modelId="acme.new-model-v1", body=json.dumps({"anything": [1, 2]}))
    first, second, third = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert [attrs(s)[A.GEN_AI_REQUEST_MODEL] for s in (first, second, third)] == [
        "amazon.titan-image-generator-v2:0",
        "stability.sd3-large-v1:0",
        "acme.new-model-v1",
    ]
    assert {attrs(s)[A.GEN_AI_PROVIDER_NAME] for s in (first, second, third)} == {"aws.bedrock"}
    assert (attrs(first)[A.GEN_AI_USAGE_INPUT_TOKENS], attrs(first)[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (9, 0)
    assert attrs(second)[A.LLM_USAGE_MISSING] is True
    assert third.status.status_code is StatusCode.ERROR
    assert attrs(third)[A.ERROR_TYPE] == "ValidationException"


def test_invoke_model_with_a_file_body_sends_it_unread(capture: Capture, server: B.BedrockServer) -> None:
    """A body passed as an open file would be read for the span and go out empty."""
    import io

    request = json.dumps(BODIES["llama"][1]).encode()
    server.add(B.json_reply(B.llama_body()))
    server.client().invoke_model(modelId=B.LLAMA, body=io.BytesIO(request))
    assert server.requests[0][1] == BODIES["llama"][1]
    got = attrs(only_llm_span(capture))
    assert (got[A.GEN_AI_REQUEST_MODEL], got[A.GEN_AI_USAGE_OUTPUT_TOKENS], got[A.STOP_REASON]) == (
        B.LLAMA,
        6,
        "end_turn",
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 429), ("ThrottlingException", 400), ("ValidationException", 400)],
)
def test_service_errors_fail_the_span_with_the_error_code(
    capture: Capture, server: B.BedrockServer, code: str, status: int
) -> None:
    """A throttled or invalid request: the caller gets botocore's ClientError unchanged; the span
    fails with error.type = the service's error code, stop reason error, and the run counts it."""
    server.add(B.error_reply(code, "Too many requests" if "Throttl" in code else "bad modelId", status))
    client = server.client()
    with steptrace.agent_run(agent="weather"), pytest.raises(ClientError) as raised:
        client.converse(modelId=B.MODEL, messages=MESSAGES)
    assert raised.value.response["Error"]["Code"] == code
    assert type(raised.value) is getattr(client.exceptions, code)
    span = only_llm_span(capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.ERROR_TYPE] == code
    (record,) = llm_records(capture)
    assert (record["status"], record["error_type"], record["stop_reason"]) == ("error", code, "error")
    (run,) = [r for r in capture.records if r["type"] == "run"]
    assert run["errors"] == 1
    [duration] = capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert dict(duration.attributes)[A.ERROR_TYPE] == code


@pytest.mark.parametrize("reason", ["guardrail_intervened", "content_filtered"])
def test_guardrail_stop_reasons_read_content_filter(
    capture: Capture, server: B.BedrockServer, reason: str
) -> None:
    """A guardrail that intervened reads stop_reason content_filter; the finish reason stays Bedrock's."""
    server.add(B.json_reply(B.converse_response("Sorry.", stop_reason=reason)))
    server.client().converse(modelId=B.MODEL, messages=MESSAGES)
    got = attrs(only_llm_span(capture))
    assert (got[A.STOP_REASON], got[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ("content_filter", (reason,))


def test_capture_off_records_no_content(steptrace_capture: Capture, server: B.BedrockServer) -> None:
    """capture_content off: usage, stop reason and tool ids, but no messages, for every endpoint."""
    steptrace_capture.configure(capture_content=False)
    server.add(
        B.json_reply(B.converse_response(tool_use=TOOL_TURN, stop_reason="tool_use")),
        B.stream_reply(B.converse_events(["secret "], tool_use=("tooluse_2", "get_weather", ["{}"]))),
        B.json_reply(B.anthropic_body()),
    )
    client = server.client()
    client.converse(modelId=B.MODEL, messages=MESSAGES, system=[{"text": "sys"}])
    for _event in client.converse_stream(modelId=B.MODEL, messages=MESSAGES)["stream"]:
        pass
    client.invoke_model(modelId=B.MODEL, body=anthropic_invoke_body())
    spans = steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(spans) == 3
    content_keys = {A.GEN_AI_INPUT_MESSAGES, A.GEN_AI_OUTPUT_MESSAGES, A.GEN_AI_SYSTEM_INSTRUCTIONS}
    for span in spans:
        assert content_keys.isdisjoint(attrs(span)), attrs(span)
        assert attrs(span)[A.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert json.loads(attrs(spans[1])[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "tooluse_2"}]
    assert all(r["input"] is None and r["output"] is None for r in llm_records(steptrace_capture))


def test_clients_made_before_and_after_instrumenting_are_traced_and_uninstrument_restores(
    capture: Capture, server: B.BedrockServer
) -> None:
    """The patch is on botocore's BaseClient: a client made before instrument_bedrock() is traced
    like one made after; uninstrument_bedrock() restores the original method and traces nothing."""
    steptrace.uninstrument_bedrock()
    assert BaseClient.__dict__["_make_api_call"] is ORIGINAL
    before = server.client()
    steptrace.instrument_bedrock()
    after = server.client()
    server.add(*(B.json_reply(B.converse_response()) for _ in range(4)))
    before.converse(modelId=B.MODEL, messages=MESSAGES)
    after.converse(modelId=B.MODEL, messages=MESSAGES)
    assert len(capture.spans_named(A.SPAN_LLM_REQUEST)) == 2
    steptrace.uninstrument_bedrock()
    assert BaseClient.__dict__["_make_api_call"] is ORIGINAL
    before.converse(modelId=B.MODEL, messages=MESSAGES)
    after.converse(modelId=B.MODEL, messages=MESSAGES)
    assert len(capture.spans_named(A.SPAN_LLM_REQUEST)) == 2
    steptrace.instrument_bedrock()  # for the fixture's uninstrument


def test_instrument_one_client(capture: Capture, server: B.BedrockServer) -> None:
    """instrument_bedrock(client) traces that client only; uninstrument_bedrock(client) undoes it."""
    steptrace.uninstrument_bedrock()
    traced, other = server.client(), server.client()
    steptrace.instrument_bedrock(traced)
    server.add(*(B.json_reply(B.converse_response()) for _ in range(3)))
    traced.converse(modelId=B.MODEL, messages=MESSAGES)
    other.converse(modelId=B.MODEL, messages=MESSAGES)
    assert len(capture.spans_named(A.SPAN_LLM_REQUEST)) == 1
    steptrace.uninstrument_bedrock(traced)
    traced.converse(modelId=B.MODEL, messages=MESSAGES)
    assert len(capture.spans_named(A.SPAN_LLM_REQUEST)) == 1
    steptrace.instrument_bedrock()


def test_records_have_the_shape_of_the_anthropic_sdk_integration(
    capture: Capture, server: B.BedrockServer
) -> None:
    """The same tool turn through Bedrock converse and through the anthropic SDK writes llm_call
    records with the same keys and the same tool call, tokens and stop reason; priced when asked."""
    capture.configure(capture_content=True, record_cost=True)
    server.add(
        B.json_reply(
            B.converse_response(
                "Let me check.", tool_use=TOOL_TURN, stop_reason="tool_use", input_tokens=15, output_tokens=6
            )
        )
    )
    body = F.anthropic_message("Let me check.", tool_use=TOOL_TURN, stop_reason="tool_use")
    anthropic_client = F.anthropic_client(F.Script(F.json_reply(body)))
    steptrace.instrument_anthropic()
    try:
        with steptrace.agent_run(agent="weather"):
            with steptrace.agent_step():
                server.client().converse(modelId=B.MODEL, messages=MESSAGES)
            with steptrace.agent_step():
                anthropic_client.messages.create(
                    model="claude-test-model",
                    max_tokens=256,
                    messages=[{"role": "user", "content": "Weather in Paris?"}],
                )
    finally:
        steptrace.uninstrument_anthropic()
    bedrock, anthropic = sorted(llm_records(capture), key=lambda r: r["agent_step"])
    assert set(bedrock) == set(anthropic)
    same = ("type", "tool_calls", "input_tokens", "output_tokens", "stop_reason", "finish_reasons", "output")
    assert {k: bedrock[k] for k in same} == {k: anthropic[k] for k in same}
    assert bedrock["cost_usd"] > 0  # genai-prices' Bedrock data: provider aws.bedrock -> aws


def test_example_runs_offline(tmp_path: Path) -> None:
    """examples/bedrock_agent.py would fail offline, or its log would not show the tool turn."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "STEPTRACE_JSONL_PATH"}
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "bedrock_agent.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "It is 18°C in Paris." in done.stdout
    records = list(steptrace.read_steps(tmp_path / "steptrace-logs" / "steps.jsonl"))
    (run,) = [r for r in records if r["type"] == "run"]
    assert (run["agent"], run["stop_reason"], run["steps"], run["tool_calls"]) == (
        "weather-bot",
        "end_turn",
        2,
        1,
    )
    calls = sorted((r for r in records if r["type"] == "llm_call"), key=lambda r: r["agent_step"])
    assert [(c["provider"], c["stop_reason"], c["stream_completed"]) for c in calls] == [
        ("aws.bedrock", "tool_use", True),
        ("aws.bedrock", "end_turn", True),
    ]
    assert calls[0]["tool_calls"] == [{"name": "get_weather", "id": "tooluse_weather"}]


def test_entry_point_names_the_instrumentor() -> None:
    """opentelemetry-instrument would not find the Bedrock instrumentor."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["steptrace_bedrock"].load() is BedrockInstrumentor
    assert BedrockInstrumentor() is BedrockInstrumentor()


def test_untraced_without_configuration(server: B.BedrockServer) -> None:
    """Without steptrace configured, an instrumented client would fail or change its response."""
    server.add(B.json_reply(B.converse_response("Paris.")), B.stream_reply(B.converse_events(["a", "b"])))
    client = server.client()
    assert client.converse(modelId=B.MODEL, messages=MESSAGES)["output"]["message"]["content"] == [
        {"text": "Paris."}
    ]
    stream = client.converse_stream(modelId=B.MODEL, messages=MESSAGES)["stream"]
    assert type(stream).__name__ == "EventStream" and len(list(stream)) == 6


def test_other_services_and_operations_pass_through(capture: Capture, server: B.BedrockServer) -> None:
    """A bedrock (control plane) client, and bedrock-runtime operations other than the three, are
    not model calls: no span, the response untouched."""
    server.add(B.json_reply({"modelSummaries": []}), B.json_reply({"inputTokens": 3}))
    control = boto3.client(
        "bedrock",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy-secret",
    )
    assert control.list_foundation_models()["modelSummaries"] == []
    if COUNT_TOKENS:
        counted = server.client().count_tokens(modelId=B.MODEL, input={"converse": {"messages": MESSAGES}})
        assert counted["inputTokens"] == 3
    assert capture.spans_named(A.SPAN_LLM_REQUEST) == []


def test_instrumentor_with_providers_traces_without_configure(server: B.BedrockServer) -> None:
    """BedrockInstrumentor().instrument(tracer_provider=...) (opentelemetry-instrument) traces to
    that provider without steptrace.configure()."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    steptrace.uninstrument_bedrock()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    BedrockInstrumentor().instrument(tracer_provider=provider)
    try:
        server.add(B.json_reply(B.converse_response()))
        server.client().converse(modelId=B.MODEL, messages=MESSAGES)
    finally:
        BedrockInstrumentor().uninstrument()
        steptrace.instrument_bedrock()
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})[A.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
