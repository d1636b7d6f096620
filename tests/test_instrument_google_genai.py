"""steptrace.instrument_google_genai: the real google-genai SDK against a fake Gemini API on
127.0.0.1 — generate_content and generate_content_stream, sync and async, chats, function
calling (manual and automatic), safety blocks, errors, capture on and off, uninstrumenting."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors, types
from google.genai.models import AsyncModels, Models
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import genai_fakes as G
import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace._spans import error_type_name
from steptrace.instrumentation.google_genai import GoogleGenAIInstrumentor
from steptrace.testing import Capture

MODEL = "gemini-2.5-flash"
METHODS = ("_generate_content", "_generate_content_stream")
ORIGINALS = {(cls, name): cls.__dict__[name] for cls in (Models, AsyncModels) for name in METHODS}
CONFIG = types.GenerateContentConfig(
    system_instruction="Answer in one word.",
    temperature=0.2,
    top_p=0.9,
    top_k=40,
    max_output_tokens=256,
    stop_sequences=["STOP"],
)
WEATHER_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="The weather in a city",
            parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
        )
    ]
)


@pytest.fixture(autouse=True)
def instrumented(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "1")
    steptrace.instrument_google_genai()
    yield
    steptrace.uninstrument_google_genai()


@pytest.fixture
def server() -> Iterator[F.FakeServer]:
    with F.FakeServer(F.Script()) as fake:
        yield fake


def serve(server: F.FakeServer, *replies: F.Canned) -> None:
    server.script.add(*replies)


def llm_spans(capture: Capture) -> list[ReadableSpan]:
    return capture.spans_named(A.SPAN_LLM_REQUEST)


def only_llm_span(capture: Capture) -> ReadableSpan:
    spans = llm_spans(capture)
    assert len(spans) == 1, [dict(s.attributes or {}) for s in spans]
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def llm_records(capture: Capture) -> list[dict[str, Any]]:
    return [record for record in capture.records if record["type"] == "llm_call"]


def token_sums(capture: Capture) -> dict[str, int]:
    return {
        str(point.attributes[A.GEN_AI_TOKEN_TYPE]): int(point.sum)
        for point in capture.histogram_points(A.METRIC_TOKEN_USAGE)
    }


# --- generate_content ----------------------------------------------------------------------------
def test_generate_content_span_attributes_tokens_and_step_record(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """One call inside a step: a child llm_request with config params, all token kinds, records."""
    body = G.response(
        "Paris.",
        thought="The capital of France...",
        usage_metadata=G.usage(20, 5, cached=8, thoughts=4, tool_use_prompt=3),
    )
    serve(server, F.json_reply(body))
    client = G.client(server)
    with steptrace.agent_run(agent="geo"), steptrace.agent_step():
        result = client.models.generate_content(model=MODEL, contents="Capital of France?", config=CONFIG)
    assert type(result) is types.GenerateContentResponse
    assert result.text == "Paris."
    span = only_llm_span(steptrace_capture)
    step = steptrace_capture.spans_named(A.SPAN_AGENT_STEP)[0]
    assert span.parent is not None and span.parent.span_id == step.context.span_id
    assert span.kind is SpanKind.CLIENT
    got = attrs(span)
    expected = {
        A.GEN_AI_OPERATION_NAME: "generate_content",
        A.GEN_AI_PROVIDER_NAME: "gcp.gemini",
        A.GEN_AI_REQUEST_MODEL: MODEL,
        A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        A.GEN_AI_REQUEST_TOP_P: 0.9,
        A.GEN_AI_REQUEST_TOP_K: 40,
        A.GEN_AI_REQUEST_MAX_TOKENS: 256,
        A.GEN_AI_REQUEST_STOP_SEQUENCES: ("STOP",),
        A.GEN_AI_REQUEST_STREAM: False,
        A.SERVER_ADDRESS: "127.0.0.1",
        A.SERVER_PORT: server.port,
        # the prompt (cached content included) + tool-use prompt: input + output == total
        A.GEN_AI_USAGE_INPUT_TOKENS: 23,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 9,  # candidates + thoughts
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 8,
        A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 4,
        A.GEN_AI_RESPONSE_FINISH_REASONS: ("STOP",),
        A.STOP_REASON: "end_turn",
        A.GEN_AI_RESPONSE_ID: "resp-1",
        A.GEN_AI_RESPONSE_MODEL: G.MODEL_VERSION,
    }
    assert {key: got.get(key) for key in expected} == expected
    assert A.LLM_TOOL_CALLS not in got
    assert body["usageMetadata"]["totalTokenCount"] == 23 + 9
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Answer in one word."}
    ]
    assert json.loads(got[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}
    ]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "The capital of France..."},
                {"type": "text", "content": "Paris."},
            ],
            "finish_reason": "stop",
        }
    ]
    [record] = llm_records(steptrace_capture)
    assert {
        key: record[key]
        for key in (
            "provider",
            "model",
            "request_model",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "reasoning_tokens",
            "stop_reason",
            "finish_reasons",
            "stream",
        )
    } == {
        "provider": "gcp.gemini",
        "model": G.MODEL_VERSION,
        "request_model": MODEL,
        "input_tokens": 23,
        "output_tokens": 9,
        "cache_read_input_tokens": 8,
        "reasoning_tokens": 4,
        "stop_reason": "end_turn",
        "finish_reasons": ["STOP"],
        "stream": False,
    }
    run = attrs(steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0])
    assert (run[A.RUN_INPUT_TOKENS], run[A.RUN_OUTPUT_TOKENS]) == (23, 9)


def test_histograms_carry_the_conventions_attributes(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """Duration and token histograms: operation, provider, request and response model; no TTFT."""
    serve(server, F.json_reply(G.response()), F.json_reply(G.response()))
    client = G.client(server)
    for _ in range(2):
        client.models.generate_content(model=MODEL, contents="Capital of France?")
    [duration] = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.count == 2
    assert dict(duration.attributes) == {
        A.GEN_AI_OPERATION_NAME: "generate_content",
        A.GEN_AI_PROVIDER_NAME: "gcp.gemini",
        A.GEN_AI_REQUEST_MODEL: MODEL,
        A.GEN_AI_RESPONSE_MODEL: G.MODEL_VERSION,
    }
    assert token_sums(steptrace_capture) == {"input": 24, "output": 10}
    assert steptrace_capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK) == []


def test_vertex_ai_client_reports_its_provider(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """A Vertex AI client's calls read gcp.vertex_ai; the Gemini API's read gcp.gemini."""
    serve(server, F.json_reply(G.response()), F.json_reply(G.response()))
    vertex, gemini = G.client(server, vertexai=True), G.client(server)  # a dropped client closes
    vertex.models.generate_content(model=MODEL, contents="hi")
    gemini.models.generate_content(model=MODEL, contents="hi")
    assert [attrs(s)[A.GEN_AI_PROVIDER_NAME] for s in llm_spans(steptrace_capture)] == [
        "gcp.vertex_ai",
        "gcp.gemini",
    ]


def test_async_generate_content(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """client.aio.models.generate_content is traced and returns the SDK's response."""
    serve(server, F.json_reply(G.response(usage_metadata=G.usage(12, 7))))

    async def call() -> types.GenerateContentResponse:
        with steptrace.agent_run(agent="geo"):
            return await G.client(server).aio.models.generate_content(
                model=MODEL, contents="hi", config=CONFIG
            )

    result = G.run_async(server, call())
    assert result.text == "Paris."
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert got[A.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert got[A.GEN_AI_REQUEST_STREAM] is False
    assert llm_records(steptrace_capture)[0]["output_tokens"] == 7


# --- function calling ----------------------------------------------------------------------------
def test_function_call_reads_tool_use_and_its_result_goes_back_as_a_tool_message(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """A requested function call: stop_reason tool_use, its name and id; the reply is a tool message."""
    serve(
        server,
        F.json_reply(G.response(None, function_calls=[("call-1", "get_weather", {"city": "Paris"})])),
        F.json_reply(G.response("Rainy.")),
    )
    client = G.client(server)
    config = types.GenerateContentConfig(tools=[WEATHER_TOOL])
    with steptrace.agent_run(agent="weather"):
        first = client.models.generate_content(model=MODEL, contents="Weather in Paris?", config=config)
        assert first.function_calls is not None and first.function_calls[0].name == "get_weather"
        history = [
            types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")]),
            first.candidates[0].content,  # type: ignore[index]
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="call-1", name="get_weather", response={"result": "rainy"}
                        )
                    )
                ],
            ),
        ]
        client.models.generate_content(model=MODEL, contents=history, config=config)
    calling, answering = (attrs(s) for s in llm_spans(steptrace_capture))
    assert calling[A.STOP_REASON] == "tool_use"
    assert calling[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("STOP",)
    assert json.loads(calling[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "call-1"}]
    assert json.loads(calling[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call-1", "name": "get_weather", "arguments": {"city": "Paris"}}
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert answering[A.STOP_REASON] == "end_turn"
    assert A.LLM_TOOL_CALLS not in answering
    assert json.loads(answering[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call-1", "name": "get_weather", "arguments": {"city": "Paris"}}
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call-1", "response": {"result": "rainy"}}],
        },
    ]
    assert [r["stop_reason"] for r in llm_records(steptrace_capture)] == ["tool_use", "end_turn"]


def test_automatic_function_calling_is_one_span_per_round_trip(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """A Python function in tools: two model requests, two spans with their own tokens, and the
    function (a steptrace tool) runs between them, not inside a model call."""
    serve(
        server,
        F.json_reply(
            G.response(
                None,
                function_calls=[(None, "get_weather", {"city": "Paris"})],
                usage_metadata=G.usage(30, 6),
            )
        ),
        F.json_reply(G.response("Rainy in Paris.", usage_metadata=G.usage(50, 8))),
    )

    @steptrace.tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"rainy in {city}"

    config = types.GenerateContentConfig(tools=[get_weather])
    with steptrace.agent_run(agent="weather"), steptrace.agent_step():
        result = G.client(server).models.generate_content(model=MODEL, contents="Weather?", config=config)
    assert result.text == "Rainy in Paris."
    spans = llm_spans(steptrace_capture)
    assert [attrs(s)[A.GEN_AI_USAGE_INPUT_TOKENS] for s in spans] == [30, 50]
    assert [attrs(s)[A.STOP_REASON] for s in spans] == ["tool_use", "end_turn"]
    assert json.loads(attrs(spans[0])[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": None}]
    [tool] = steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)
    step = steptrace_capture.spans_named(A.SPAN_AGENT_STEP)[0]
    assert tool.parent is not None and tool.parent.span_id == step.context.span_id
    assert spans[0].end_time <= tool.start_time <= tool.end_time <= spans[1].start_time  # type: ignore[operator]
    run = attrs(steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0])
    assert (run[A.RUN_INPUT_TOKENS], run[A.RUN_OUTPUT_TOKENS]) == (80, 14)
    assert token_sums(steptrace_capture) == {"input": 80, "output": 14}


# --- safety blocks and truncation ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "finish", "stop_reason"),
    [
        pytest.param(G.safety_blocked_candidate(), "SAFETY", "content_filter", id="answer-blocked"),
        pytest.param(G.prompt_blocked(), "PROHIBITED_CONTENT", "content_filter", id="prompt-blocked"),
        pytest.param(G.response(finish_reason="RECITATION"), "RECITATION", "content_filter", id="recitation"),
        pytest.param(G.response(finish_reason="BLOCKLIST"), "BLOCKLIST", "content_filter", id="blocklist"),
        pytest.param(G.response(finish_reason="MAX_TOKENS"), "MAX_TOKENS", "max_tokens", id="max-tokens"),
    ],
)
def test_blocked_and_truncated_answers_map_to_one_vocabulary(
    steptrace_capture: Capture, server: F.FakeServer, body: dict[str, Any], finish: str, stop_reason: str
) -> None:
    """A safety block is not an error: the call returns, and reads content_filter (max_tokens for a cut)."""
    serve(server, F.json_reply(body))
    with steptrace.agent_run(agent="a"):
        result = G.client(server).models.generate_content(model=MODEL, contents="something risky")
    assert type(result) is types.GenerateContentResponse
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is not StatusCode.ERROR
    got = attrs(span)
    assert got[A.STOP_REASON] == stop_reason
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == (finish,)
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert llm_records(steptrace_capture)[0]["stop_reason"] == stop_reason


def test_safety_block_at_the_end_of_a_stream(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """A stream the filters stop after two chunks reads content_filter and keeps what came."""
    serve(server, F.sse_reply(G.sse(G.chunks(["Step one", " then"], finish_reason="SAFETY"))))
    pieces = [c.text for c in G.client(server).models.generate_content_stream(model=MODEL, contents="x")]
    assert pieces[:2] == ["Step one", " then"]
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.STOP_REASON] == "content_filter"
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("SAFETY",)
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["finish_reason"] == "content_filter"


# --- errors ----------------------------------------------------------------------------------------
ERRORS = [
    pytest.param(429, errors.ClientError, id="429"),
    pytest.param(500, errors.ServerError, id="500"),
]


@pytest.mark.parametrize(("status", "error"), ERRORS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
def test_api_errors_fail_the_span_and_propagate_unchanged(
    steptrace_capture: Capture,
    server: F.FakeServer,
    status: int,
    error: type[Exception],
    is_async: bool,
    stream: bool,
) -> None:
    """429 and 500, plain and streamed, sync and async: the SDK's exception reaches the caller."""
    serve(server, G.error(status, "quota exhausted"))
    client = G.client(server)

    async def call_async() -> None:
        if stream:
            async for _chunk in await client.aio.models.generate_content_stream(model=MODEL, contents="hi"):
                pass
        else:
            await client.aio.models.generate_content(model=MODEL, contents="hi")

    with steptrace.agent_run(agent="a"), pytest.raises(error) as raised:
        if is_async:
            G.run_async(server, call_async())
        elif stream:
            list(client.models.generate_content_stream(model=MODEL, contents="hi"))
        else:
            client.models.generate_content(model=MODEL, contents="hi")
    assert type(raised.value) is error
    assert raised.value.code == status  # type: ignore[attr-defined]
    expected = f"google.genai.errors.{error.__name__}"
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    got = attrs(span)
    assert got[A.ERROR_TYPE] == expected
    assert got[A.STOP_REASON] == "error"
    assert got[A.GEN_AI_REQUEST_STREAM] is stream
    [duration] = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.attributes[A.ERROR_TYPE] == expected
    [record] = llm_records(steptrace_capture)
    assert record["error_type"] == expected


def test_server_gone_fails_the_span(steptrace_capture: Capture) -> None:
    """Nothing listening at the base URL: the SDK's connection error propagates, the span fails."""
    with F.FakeServer(F.Script()) as gone:
        client = G.client(gone)
    with pytest.raises(Exception) as raised:
        client.models.generate_content(model=MODEL, contents="hi")
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.ERROR_TYPE].endswith(type(raised.value).__name__)


# --- streams ---------------------------------------------------------------------------------------
def stream_reply(**options: Any) -> F.Canned:
    events = G.chunks(
        [f"w{i} " for i in range(10)],
        function_call=("call-9", "get_weather", {"city": "Paris"}),
        usage_metadata=G.usage(22, 50, cached=7, thoughts=5),
    )
    return F.sse_reply(G.sse(events), **options)


def check_stream_span(capture: Capture) -> dict[str, Any]:
    got = attrs(only_llm_span(capture))
    assert got[A.GEN_AI_REQUEST_STREAM] is True
    assert got[A.GEN_AI_OPERATION_NAME] == "generate_content"
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 22
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 55
    assert got[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 7
    assert got[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 5
    assert got[A.STOP_REASON] == "tool_use"
    assert got[A.GEN_AI_RESPONSE_ID] == "resp-stream"
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "call-9"}]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "".join(f"w{i} " for i in range(10))},
                {"type": "tool_call", "id": "call-9", "name": "get_weather", "arguments": {"city": "Paris"}},
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    [ttft] = capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttft.count == 1
    [per_chunk] = capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 10  # 10 text chunks + the function call chunk, after the first
    assert token_sums(capture) == {"input": 22, "output": 55}
    [record] = llm_records(capture)
    assert record["stream"] is True and record["stream_completed"] is True
    assert record["ttft_ms"] > 0
    return got


def test_generate_content_stream(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """generate_content_stream read to the end: usage, function call, TTFT, time per chunk."""
    serve(server, stream_reply())
    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        chunks = list(
            G.client(server).models.generate_content_stream(model=MODEL, contents="hi", config=CONFIG)
        )
    assert len(chunks) == 11
    assert chunks[-1].function_calls is not None
    got = check_stream_span(steptrace_capture)
    assert got[A.GEN_AI_REQUEST_TOP_K] == 40
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Answer in one word."}
    ]


def test_async_generate_content_stream(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """client.aio.models.generate_content_stream records the same span."""
    serve(server, stream_reply())

    async def consume() -> int:
        with steptrace.agent_run(agent="a"):
            stream = await G.client(server).aio.models.generate_content_stream(model=MODEL, contents="hi")
            return len([chunk async for chunk in stream])

    assert G.run_async(server, consume()) == 11
    check_stream_span(steptrace_capture)


def test_ttft_counts_from_sending(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """A 120 ms wait before the first chunk reads as a TTFT of at least 120 ms."""
    serve(server, F.sse_reply(G.sse(G.chunks([f"t{i}" for i in range(20)])), first_delay=0.120))
    for _chunk in G.client(server).models.generate_content_stream(model=MODEL, contents="hi"):
        pass
    ttft = attrs(only_llm_span(steptrace_capture))[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert ttft >= 0.120, ttft


def test_stream_closed_early_ends_the_span(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """Breaking out after 3 chunks and closing the stream ends the span at once, marked incomplete."""
    serve(server, stream_reply(gap=0.001))
    with steptrace.agent_run(agent="a"):
        stream = G.client(server).models.generate_content_stream(model=MODEL, contents="hi")
        for number, _chunk in enumerate(stream, start=1):
            if number == 3:
                break
        stream.close()
        assert len(llm_spans(steptrace_capture)) == 1  # ended at close(), before the run ends
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert A.STOP_REASON not in got  # never finished: no stop reason invented
    assert got[A.LLM_USAGE_MISSING] is True  # usage comes with the last chunk
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in got
    [record] = llm_records(steptrace_capture)
    assert record["stream_completed"] is False and record["usage_missing"] is True
    assert steptrace_capture.histogram_points(A.METRIC_TOKEN_USAGE) == []


def test_async_stream_closed_early_ends_the_span(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """The async twin: aclose() after 3 chunks ends the span, marked incomplete."""
    serve(server, stream_reply(gap=0.001))

    async def consume() -> None:
        stream = await G.client(server).aio.models.generate_content_stream(model=MODEL, contents="hi")
        number = 0
        async for _chunk in stream:
            number += 1
            if number == 3:
                break
        await stream.aclose()

    G.run_async(server, consume())
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert A.STOP_REASON not in got


def test_stream_cut_off_mid_way_fails_the_span(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """The server hanging up mid-stream: the SDK's error reaches the caller and fails the span."""
    serve(server, stream_reply(cut_after=4))
    received = []
    with pytest.raises(Exception) as raised:
        for chunk in G.client(server).models.generate_content_stream(model=MODEL, contents="hi"):
            received.append(chunk)
    assert len(received) == 4
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.LLM_STREAM_COMPLETED] is False
    assert attrs(span)[A.ERROR_TYPE].endswith(type(raised.value).__name__)


# --- chats -----------------------------------------------------------------------------------------
def test_chat_session_messages_are_spans_with_the_history(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """client.chats: each send_message (and send_message_stream) is one span; the history grows."""
    serve(
        server,
        F.json_reply(G.response("Paris.")),
        F.sse_reply(G.sse(G.chunks(["About 2.1", " million."]))),
    )
    chat = G.client(server).chats.create(model=MODEL, config=types.GenerateContentConfig(temperature=0.5))
    assert chat.send_message("Capital of France?").text == "Paris."
    assert "".join(c.text or "" for c in chat.send_message_stream("Its population?")) == "About 2.1 million."
    first, second = (attrs(s) for s in llm_spans(steptrace_capture))
    assert (first[A.GEN_AI_REQUEST_STREAM], second[A.GEN_AI_REQUEST_STREAM]) == (False, True)
    assert first[A.GEN_AI_REQUEST_TEMPERATURE] == second[A.GEN_AI_REQUEST_TEMPERATURE] == 0.5
    assert [m["role"] for m in json.loads(second[A.GEN_AI_INPUT_MESSAGES])] == ["user", "assistant", "user"]
    assert second[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 50


def test_async_chat_session(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """client.aio.chats send_message is traced like the sync one."""
    serve(server, F.json_reply(G.response("Paris.")))

    async def talk() -> str | None:
        chat = G.client(server).aio.chats.create(model=MODEL)
        return (await chat.send_message("Capital of France?")).text

    assert G.run_async(server, talk()) == "Paris."
    assert attrs(only_llm_span(steptrace_capture))[A.STOP_REASON] == "end_turn"


# --- capture, enrichment, untraced -----------------------------------------------------------------
def test_capture_off_records_no_content(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """With capture off: tokens, reasons and tool names, but no messages or system instructions."""
    steptrace_capture.configure(capture_content=False)
    body = G.response("Secret answer", function_calls=[("call-1", "get_weather", {"city": "Paris"})])
    serve(server, F.json_reply(body), stream_reply())
    client = G.client(server)
    client.models.generate_content(model=MODEL, contents="Secret question", config=CONFIG)
    list(client.models.generate_content_stream(model=MODEL, contents="Secret question", config=CONFIG))
    for span in llm_spans(steptrace_capture):
        got = attrs(span)
        for key in (A.GEN_AI_INPUT_MESSAGES, A.GEN_AI_OUTPUT_MESSAGES, A.GEN_AI_SYSTEM_INSTRUCTIONS):
            assert key not in got
        assert got[A.STOP_REASON] == "tool_use"
        assert "get_weather" in got[A.LLM_TOOL_CALLS]
    assert "Secret" not in Path(steptrace_capture.jsonl_path).read_text()


def test_captured_secrets_are_redacted(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """An API key pasted into a prompt or a system instruction never reaches the span."""
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    serve(server, F.json_reply(G.response()))
    G.client(server).models.generate_content(
        model=MODEL,
        contents=f"my key is {secret}",
        config=types.GenerateContentConfig(system_instruction=f"use {secret}"),
    )
    got = attrs(only_llm_span(steptrace_capture))
    assert secret not in got[A.GEN_AI_INPUT_MESSAGES]
    assert secret not in got[A.GEN_AI_SYSTEM_INSTRUCTIONS]


def test_call_inside_manual_llm_request_enriches_it(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """generate_content inside steptrace.llm_request() fills that span instead of adding one."""
    serve(server, F.json_reply(G.response(usage_metadata=G.usage(12, 5))))
    with steptrace.agent_run(agent="a"), steptrace.llm_request():
        G.client(server).models.generate_content(model=MODEL, contents="hi")
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_PROVIDER_NAME] == "gcp.gemini"
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    run = attrs(steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0])
    assert run[A.RUN_OUTPUT_TOKENS] == 5


def test_unconfigured_calls_run_untraced(server: F.FakeServer) -> None:
    """Before configure(), instrumented calls work as if nothing were patched."""
    serve(server, F.json_reply(G.response()), stream_reply())
    client = G.client(server)
    assert client.models.generate_content(model=MODEL, contents="hi").text == "Paris."
    assert len(list(client.models.generate_content_stream(model=MODEL, contents="hi"))) == 11


# --- instrumenting ---------------------------------------------------------------------------------
def test_uninstrument_restores_originals(caplog: pytest.LogCaptureFixture) -> None:
    """uninstrument_google_genai puts the methods back; instrumenting twice only warns."""
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_google_genai()
    assert "already instrumented" in caplog.text
    steptrace.uninstrument_google_genai()
    for (cls, name), original in ORIGINALS.items():
        assert cls.__dict__[name] is original
    steptrace.instrument_google_genai()


def test_instrument_one_client_only(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """instrument_google_genai(client) traces that client, sync and aio, and no other."""
    steptrace.uninstrument_google_genai()
    serve(server, *[F.json_reply(G.response()) for _ in range(3)])
    traced, other = G.client(server), G.client(server)
    steptrace.instrument_google_genai(traced)
    try:
        traced.models.generate_content(model=MODEL, contents="hi")
        G.run_async(server, traced.aio.models.generate_content(model=MODEL, contents="hi"))
        other.models.generate_content(model=MODEL, contents="hi")
    finally:
        steptrace.uninstrument_google_genai(traced)
    assert len(llm_spans(steptrace_capture)) == 2
    assert "_generate_content" not in vars(traced.models)


def test_registered_as_opentelemetry_instrumentor() -> None:
    """The opentelemetry_instrumentor entry point names GoogleGenAIInstrumentor."""
    # Read from pyproject.toml: an installed copy's metadata is only as fresh as its install.
    # (tomllib is 3.11+; the one line is plain enough to find without it.)
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    section = text.split("[project.entry-points.opentelemetry_instrumentor]", 1)[1].split("\n[", 1)[0]
    entries = dict(line.replace('"', "").split(" = ", 1) for line in section.strip().splitlines())
    module, _, name = entries["steptrace_google_genai"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is GoogleGenAIInstrumentor
    assert GoogleGenAIInstrumentor() is GoogleGenAIInstrumentor()
    assert list(GoogleGenAIInstrumentor().instrumentation_dependencies()) == ["google-genai >= 3.6, < 4"]


# --- re-run ----------------------------------------------------------------------------------------
def gemini_agent(client: Any) -> tuple[str | None, str]:
    with steptrace.agent_run(agent="g"):
        reply = client.models.generate_content(model=MODEL, contents="Capital of France?")
        chunks = client.models.generate_content_stream(model=MODEL, contents="Capital of France?")
        return reply.text, "".join(chunk.text or "" for chunk in chunks)


async def async_gemini_agent(client: Any) -> tuple[str | None, str]:
    with steptrace.agent_run(agent="g"):
        reply = await client.aio.models.generate_content(model=MODEL, contents="Capital of France?")
        chunks = await client.aio.models.generate_content_stream(model=MODEL, contents="Capital of France?")
        return reply.text, "".join([chunk.text or "" async for chunk in chunks])


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_recorded_run_reruns_offline(steptrace_capture: Capture, is_async: bool) -> None:
    """record_for_rerun, then steptrace.rerun with the server stopped: the same answers, plain and
    streamed, as the SDK's own response types."""
    steptrace_capture.configure(record_for_rerun=True)
    script = F.Script(F.json_reply(G.response("Paris.")), F.sse_reply(G.sse(G.chunks(["Par", "is!"]))))

    def agent(client: Any) -> tuple[str | None, str]:
        return G.run_async(fake, async_gemini_agent(client)) if is_async else gemini_agent(client)

    with F.FakeServer(script) as fake:
        client = G.client(fake)
        assert agent(client) == ("Paris.", "Paris!")
    assert len(script.requests) == 2
    (recording,) = sorted((steptrace_capture.jsonl_path.parent / "rerun").glob("*.jsonl"))
    with steptrace.rerun(recording.stem, log=steptrace_capture.jsonl_path) as rerun:
        assert agent(client) == ("Paris.", "Paris!")
    assert len(script.requests) == 2  # nothing was sent
    assert rerun.report is not None and rerun.report.reproduced


def test_images_are_named_never_copied(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """An image in the prompt is recorded as its kind and media type; its bytes never reach the span."""
    serve(server, F.json_reply(G.response()))
    image = types.Part.from_bytes(data=b"\x89PNG-secret-pixels", mime_type="image/png")
    G.client(server).models.generate_content(model=MODEL, contents=["What is this?", image])
    got = attrs(only_llm_span(steptrace_capture))
    assert json.loads(got[A.GEN_AI_INPUT_MESSAGES]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is this?"},
                {"type": "inline_data", "mime_type": "image/png"},
            ],
        }
    ]
    assert "secret-pixels" not in Path(steptrace_capture.jsonl_path).read_text()


def test_example_runs_offline(tmp_path: Path) -> None:
    """examples/google_genai_agent.py would fail offline, or its log would miss a model request."""
    env = {k: v for k, v in os.environ.items() if k != "STEPTRACE_JSONL_PATH"}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "examples" / "google_genai_agent.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines()[:2] == ["It is 18°C in Paris.", "Tomorrow looks much the same."]
    records = list(steptrace.read_steps(tmp_path / "steptrace-logs" / "steps.jsonl"))
    assert [(r["type"], r.get("stop_reason")) for r in records if r["type"] != "agent_step"] == [
        ("llm_call", "tool_use"),
        ("tool_call", None),
        ("llm_call", "end_turn"),
        ("llm_call", "end_turn"),
        ("run", "end_turn"),
    ]
    (run,) = [r for r in records if r["type"] == "run"]
    assert (run["input_tokens"], run["output_tokens"]) == (120, 36)
    assert [r["stream"] for r in records if r["type"] == "llm_call"] == [False, False, True]


@pytest.mark.parametrize(
    ("version", "warns"), [("3.6.1", False), ("3.9.0", False), ("3.5.2", True), ("2.4.0", True)]
)
def test_untested_release_warns_naming_what_was_tested(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, version: str, warns: bool
) -> None:
    """An older google-genai logs one warning that names the tested release; 3.6+ is quiet."""
    import importlib.metadata

    steptrace.uninstrument_google_genai()
    monkeypatch.setattr(importlib.metadata, "version", lambda package: version)
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_google_genai()
    expected = f"google-genai {version} is not a version steptrace was tested with (google-genai 3.6.1)"
    assert (expected in caplog.text) is warns, caplog.text


def test_structured_output_seed_penalties_and_two_candidates(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """JSON output, a seed, penalties and two candidates: the conventions' request attributes, one
    output message and one finish reason per candidate."""
    serve(server, F.json_reply(G.response('{"city": "Paris"}', candidates=2)))
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
        seed=7,
        candidate_count=2,
        presence_penalty=0.5,
        frequency_penalty=0.25,
    )
    G.client(server).models.generate_content(model=MODEL, contents="Capital of France?", config=config)
    got = attrs(only_llm_span(steptrace_capture))
    expected = {
        A.GEN_AI_OUTPUT_TYPE: "json",
        A.GEN_AI_REQUEST_SEED: 7,
        A.GEN_AI_REQUEST_CHOICE_COUNT: 2,
        A.GEN_AI_REQUEST_PRESENCE_PENALTY: 0.5,
        A.GEN_AI_REQUEST_FREQUENCY_PENALTY: 0.25,
        A.GEN_AI_RESPONSE_FINISH_REASONS: ("STOP", "STOP"),
    }
    assert {key: got.get(key) for key in expected} == expected
    assert len(json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])) == 2


def test_default_request_records_no_unasked_parameters(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """An image answer with candidate_count=1: output type image, and no request parameter the
    call did not set (one candidate is the default, not recorded)."""
    serve(server, F.json_reply(G.response()))
    config = types.GenerateContentConfig(candidate_count=1, response_modalities=["IMAGE"])
    G.client(server).models.generate_content(model=MODEL, contents="A cat, please", config=config)
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_OUTPUT_TYPE] == "image"
    assert not [
        key
        for key in got
        if key.startswith("gen_ai.request.") and key not in (A.GEN_AI_REQUEST_MODEL, A.GEN_AI_REQUEST_STREAM)
    ]


def test_contents_the_sdk_rejects_fail_in_the_sdk_not_in_steptrace(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """Contents the SDK cannot read: the SDK's own error reaches the caller; the span records it."""
    client = G.client(server)
    with pytest.raises(ValueError, match="validation errors") as raised:
        client.models.generate_content(model=MODEL, contents=5)  # type: ignore[arg-type]
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.ERROR_TYPE] == error_type_name(raised.value)  # pydantic's ValidationError
    assert json.loads(attrs(span)[A.GEN_AI_INPUT_MESSAGES]) == []
    assert server.script.requests == []


def test_automatic_continuation_is_one_span_per_hop(steptrace_capture: Capture, server: F.FakeServer) -> None:
    """A long answer the SDK continues by itself: each hop is a span with its own tokens; the first
    reads pause_turn (the turn goes on), the last end_turn."""
    first = G.response("Part one, ", finish_reason="CONTINUATION", usage_metadata=G.usage(20, 100))
    first["candidates"][0]["continuationToken"] = "Y29udGludWU="
    serve(server, F.json_reply(first), F.json_reply(G.response("part two.", usage_metadata=G.usage(20, 30))))
    with steptrace.agent_run(agent="a"):
        result = G.client(server).models.generate_content(model=MODEL, contents="Tell me everything")
    assert result.text == "Part one, part two."
    spans = [attrs(s) for s in llm_spans(steptrace_capture)]
    assert [(s[A.STOP_REASON], s[A.GEN_AI_USAGE_OUTPUT_TOKENS]) for s in spans] == [
        ("pause_turn", 100),
        ("end_turn", 30),
    ]
    assert spans[0][A.GEN_AI_RESPONSE_FINISH_REASONS] == ("CONTINUATION",)
    run = attrs(steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0])
    assert run[A.RUN_OUTPUT_TOKENS] == 130


def test_a_release_without_the_patched_methods_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, server: F.FakeServer
) -> None:
    """If a release renamed the methods steptrace patches, instrumenting logs one warning and
    leaves every method original: calls work, untraced, instead of half-patched."""
    steptrace.uninstrument_google_genai()
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "0")
    monkeypatch.delattr(AsyncModels, "_generate_content_stream")
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_google_genai()
    assert "telemetry degraded in instrument google-genai" in caplog.text
    assert not GoogleGenAIInstrumentor().is_instrumented_by_opentelemetry
    for (cls, name), original in ORIGINALS.items():
        if (cls, name) != (AsyncModels, "_generate_content_stream"):
            assert cls.__dict__[name] is original
    serve(server, F.json_reply(G.response()))
    assert G.client(server).models.generate_content(model=MODEL, contents="hi").text == "Paris."
