"""steptrace.instrument_openai: the real openai SDK over canned HTTP (httpx2 mock transport and a
127.0.0.1 server), sync and async, streamed and not, failures, and uninstrumenting."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.responses import AsyncResponses, Responses
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.instrumentation.openai import OpenAIInstrumentor
from steptrace.testing import Capture

MESSAGES = [{"role": "user", "content": "Capital of France?"}]
# openai 3.x wraps a connection dropped mid-stream in APIConnectionError; 1.x and 2.x let
# httpx's RemoteProtocolError through.
STREAM_CUT_ERROR: type[Exception] = (
    openai.APIConnectionError
    if int(openai.__version__.split(".", 1)[0]) >= 3
    else F.OPENAI_HTTP.RemoteProtocolError
)
STREAM_CUT_ERROR_TYPE = f"{STREAM_CUT_ERROR.__module__.split('.')[0]}.{STREAM_CUT_ERROR.__name__}"
ORIGINALS = {
    (cls, name): cls.__dict__[name]
    for cls in (Completions, AsyncCompletions, Responses, AsyncResponses)
    for name in ("create",)
}


@pytest.fixture(autouse=True)
def instrumented(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "1")
    steptrace.instrument_openai()
    yield
    steptrace.uninstrument_openai()


def only_llm_span(capture: Capture) -> ReadableSpan:
    spans = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(spans) == 1, [dict(s.attributes or {}) for s in spans]
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def chat_stream(script: F.Script, is_async: bool, **options: Any) -> list[Any]:
    """Consume one streamed chat completion with the sync or async client."""
    kwargs = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, **options}
    if not is_async:
        return list(F.openai_client(script).chat.completions.create(**kwargs))

    async def consume() -> list[Any]:
        stream = await F.async_openai_client(script).chat.completions.create(**kwargs)
        return [chunk async for chunk in stream]

    return run(consume())  # type: ignore[no-any-return]


# --- chat.completions, not streamed -----------------------------------------------------------
def test_chat_completion_span_has_request_response_and_tool_calls(steptrace_capture: Capture) -> None:
    """A plain chat call inside an agent step gives one llm_request child span with everything."""
    script = F.Script(
        F.json_reply(
            F.chat_completion(
                None,
                tool_calls=[("call_1", "get_weather", '{"city": "Paris"}')],
                finish_reason="tool_calls",
                cached_tokens=4,
                reasoning_tokens=2,
            )
        )
    )
    client = F.openai_client(script)
    with steptrace.agent_run(agent="travel"), steptrace.agent_step():
        result = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, temperature=0.2, top_p=0.9, max_tokens=64, stop=["END"]
        )
    assert type(result) is openai.types.chat.ChatCompletion
    assert result.choices[0].message.tool_calls is not None
    span = only_llm_span(steptrace_capture)
    step = steptrace_capture.spans_named(A.SPAN_AGENT_STEP)[0]
    assert span.parent is not None and span.parent.span_id == step.context.span_id
    got = attrs(span)
    expected = {
        A.GEN_AI_OPERATION_NAME: "chat",
        A.GEN_AI_PROVIDER_NAME: "openai",
        A.GEN_AI_REQUEST_MODEL: "gpt-4o",
        A.GEN_AI_REQUEST_STREAM: False,
        A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        A.GEN_AI_REQUEST_TOP_P: 0.9,
        A.GEN_AI_REQUEST_MAX_TOKENS: 64,
        A.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        A.SERVER_ADDRESS: "api.fake-openai.test",
        A.SERVER_PORT: 8443,
        A.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
        A.GEN_AI_RESPONSE_ID: "chatcmpl-1",
        A.GEN_AI_USAGE_INPUT_TOKENS: 12,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 4,
        A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 2,
        A.GEN_AI_RESPONSE_FINISH_REASONS: ("tool_calls",),
        A.STOP_REASON: "tool_use",
        A.AGENT_STEP_NUMBER: 1,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "call_1"}]
    assert json.loads(got[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}
    ]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                }
            ],
            "finish_reason": "tool_calls",
        }
    ]
    assert A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in got
    durations = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert [p.count for p in durations] == [1]
    tokens = {
        p.attributes[A.GEN_AI_TOKEN_TYPE]: p.sum
        for p in steptrace_capture.histogram_points(A.METRIC_TOKEN_USAGE)
    }
    assert tokens == {"input": 12, "output": 5}
    record = next(r for r in steptrace_capture.records if r["type"] == "llm_call")
    assert record["stop_reason"] == "tool_use"
    assert record["finish_reasons"] == ["tool_calls"]


def test_secrets_in_captured_messages_are_redacted(steptrace_capture: Capture) -> None:
    """An API key pasted into a prompt never reaches the span when content capture is on."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion())))
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"my key is {secret}"}]
    )
    assert secret not in attrs(only_llm_span(steptrace_capture))[A.GEN_AI_INPUT_MESSAGES]


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("length", "max_tokens"), ("content_filter", "content_filter"), ("stop", "end_turn")],
)
def test_finish_reason_maps_to_one_vocabulary(
    steptrace_capture: Capture, finish: str, stop_reason: str
) -> None:
    """stop_reason == "max_tokens" finds truncated OpenAI calls; the raw value stays alongside."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion(finish_reason=finish))))
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.STOP_REASON] == stop_reason
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == (finish,)


def test_async_chat_completion(steptrace_capture: Capture) -> None:
    """AsyncOpenAI calls are traced the same way and return the SDK's own object."""
    client = F.async_openai_client(F.Script(F.json_reply(F.chat_completion())))
    result = run(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    assert type(result) is openai.types.chat.ChatCompletion
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert got[A.STOP_REASON] == "end_turn"


# --- chat.completions, streamed ---------------------------------------------------------------
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_stream_records_usage_ttft_and_chunk_times(steptrace_capture: Capture, is_async: bool) -> None:
    """A streamed call with include_usage ends its span with tokens, TTFT and per-chunk times."""
    pieces = [f"w{i} " for i in range(10)]
    script = F.Script(
        F.sse_reply(F.openai_sse(F.chat_chunks(pieces, tool_call=("call_9", "search", ['{"q"', ": 1}"]))))
    )
    chunks = chat_stream(script, is_async, stream_options={"include_usage": True})
    assert all(type(c) is openai.types.chat.ChatCompletionChunk for c in chunks)
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_REQUEST_STREAM] is True
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert A.LLM_USAGE_MISSING not in got
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "search", "id": "call_9"}]
    output = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])
    assert output[0]["parts"][0] == {"type": "text", "content": "".join(pieces)}
    assert output[0]["parts"][1]["arguments"] == '{"q": 1}'
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    [ttft] = steptrace_capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttft.count == 1
    [per_chunk] = steptrace_capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    # 10 text pieces + 3 tool-call deltas carry content; the role-only chunk does not.
    assert per_chunk.count == 12


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_ttft_of_50_chunk_stream_matches_server_delay(steptrace_capture: Capture, is_async: bool) -> None:
    """TTFT counts from sending the request: a 120 ms server delay reads as 120 ms (+0..30 ms)."""
    delay = 0.120
    script = F.Script(
        F.sse_reply(F.openai_sse(F.chat_chunks([f"t{i}" for i in range(50)])), first_delay=delay)
    )
    chunks = chat_stream(script, is_async, stream_options={"include_usage": True})
    assert len(chunks) == 53  # role chunk, 50 pieces, finish chunk, usage chunk
    ttft = attrs(only_llm_span(steptrace_capture))[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert delay <= ttft < delay + 0.030, ttft  # never before the server answered; slack for a loaded machine
    [point] = steptrace_capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK)
    assert abs(point.sum - ttft) < 1e-9
    [per_chunk] = steptrace_capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 49


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_stream_without_include_usage_is_marked_missing_not_zero(
    steptrace_capture: Capture, is_async: bool
) -> None:
    """No stream_options.include_usage: usage is flagged missing, never recorded as 0 tokens."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks(["a", "b"], usage=None))))
    with steptrace.agent_run(agent="a"):
        chat_stream(script, is_async)
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_USAGE_MISSING] is True
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in got
    assert A.GEN_AI_USAGE_OUTPUT_TOKENS not in got
    assert steptrace_capture.histogram_points(A.METRIC_TOKEN_USAGE) == []
    assert got[A.LLM_STREAM_COMPLETED] is True
    record = next(r for r in steptrace_capture.records if r["type"] == "llm_call")
    assert record["usage_missing"] is True
    assert record["input_tokens"] is None


def test_early_break_ends_span_with_what_was_received(steptrace_capture: Capture) -> None:
    """Breaking out after 3 chunks and closing the stream still ends the span, marked incomplete."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks([f"t{i}" for i in range(20)]))))
    client = F.openai_client(script)
    with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        for number, _chunk in enumerate(stream, start=1):
            if number == 3:
                break
        assert steptrace_capture.spans_named(A.SPAN_LLM_REQUEST) == []
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert got[A.LLM_USAGE_MISSING] is True
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": "t0t1"}]
    assert only_llm_span(steptrace_capture).status.status_code is not StatusCode.ERROR


def test_async_early_break_and_close(steptrace_capture: Capture) -> None:
    """An async stream left after 3 chunks and closed with ``await close()`` ends the span."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks([f"t{i}" for i in range(20)]))))

    async def consume() -> None:
        stream = await F.async_openai_client(script).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )
        assert isinstance(stream, openai.AsyncStream)
        number = 0
        async for _chunk in stream:
            number += 1
            if number == 3:
                break
        await stream.close()

    run(consume())
    assert attrs(only_llm_span(steptrace_capture))[A.LLM_STREAM_COMPLETED] is False


def test_dropped_unconsumed_stream_still_ends_span(steptrace_capture: Capture) -> None:
    """A stream the caller never reads and drops ends its span when it is garbage-collected."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks(["a"]))))
    stream = F.openai_client(script).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    del stream
    gc.collect()
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_stream_cut_off_mid_way_fails_the_span(steptrace_capture: Capture, is_async: bool) -> None:
    """A connection dropped mid-stream raises the SDK's error unchanged and fails the span."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks([f"t{i}" for i in range(10)])), cut_after=5))
    with pytest.raises(STREAM_CUT_ERROR) as raised:
        chat_stream(script, is_async)
    if STREAM_CUT_ERROR is openai.APIConnectionError:
        assert isinstance(raised.value.__cause__, F.OPENAI_HTTP.RemoteProtocolError)
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    got = attrs(span)
    assert got[A.ERROR_TYPE] == STREAM_CUT_ERROR_TYPE
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert got[A.STOP_REASON] == "error"
    [duration] = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.attributes[A.ERROR_TYPE] == STREAM_CUT_ERROR_TYPE


def test_stream_cut_off_by_a_real_server(steptrace_capture: Capture) -> None:
    """A 127.0.0.1 server hanging up mid-body: the SDK's error reaches the caller, span failed."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks([f"t{i}" for i in range(10)])), cut_after=4))
    with F.FakeServer(script) as server:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        received = []
        with pytest.raises(STREAM_CUT_ERROR):
            for chunk in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
                received.append(chunk)
        client.close()
    assert len(received) == 4
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.ERROR_TYPE] == STREAM_CUT_ERROR_TYPE
    assert got[A.SERVER_ADDRESS] == "127.0.0.1"
    assert got[A.SERVER_PORT] == server.port
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


# --- errors -----------------------------------------------------------------------------------
ERRORS = [
    pytest.param(F.error_reply(429, "slow down"), openai.RateLimitError, id="429"),
    pytest.param(F.error_reply(500), openai.InternalServerError, id="500"),
    pytest.param(F.Canned(raise_exc=F.OPENAI_HTTP.ReadTimeout), openai.APITimeoutError, id="timeout"),
]


@pytest.mark.parametrize(("reply", "error"), ERRORS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_sdk_errors_fail_the_span_and_propagate_unchanged(
    steptrace_capture: Capture, reply: F.Canned, error: type[Exception], is_async: bool
) -> None:
    """429, 500 and timeouts: the SDK's exception reaches the caller; span and duration say so."""
    script = F.Script(reply)

    async def call_async() -> Any:
        return await F.async_openai_client(script).chat.completions.create(model="gpt-4o", messages=MESSAGES)

    with pytest.raises(error) as raised:
        if is_async:
            run(call_async())
        else:
            F.openai_client(script).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert type(raised.value) is error
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    expected_type = f"openai.{error.__name__}"
    assert attrs(span)[A.ERROR_TYPE] == expected_type
    [duration] = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.attributes[A.ERROR_TYPE] == expected_type
    assert steptrace_capture.histogram_points(A.METRIC_TOKEN_USAGE) == []


def test_real_read_timeout_from_local_server(steptrace_capture: Capture) -> None:
    """A server slower than the client's timeout: APITimeoutError, span failed with its name."""
    script = F.Script(F.json_reply(F.chat_completion()))
    script.replies[0].first_delay = 0.5
    with F.FakeServer(script) as server:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0, timeout=0.1)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        client.close()
    assert attrs(only_llm_span(steptrace_capture))[A.ERROR_TYPE] == "openai.APITimeoutError"


# --- responses --------------------------------------------------------------------------------
def test_responses_create_with_function_call(steptrace_capture: Capture) -> None:
    """responses.create: usage, cache/reasoning tokens, the function call and stop_reason tool_use."""
    body = F.response_object(
        "", function_call=("call_7", "lookup", '{"id": 7}'), reasoning_tokens=3, cached_tokens=5
    )
    client = F.openai_client(F.Script(F.json_reply(body)))
    result = client.responses.create(
        model="gpt-4.1", input="Find 7", instructions="Be terse", max_output_tokens=99
    )
    assert type(result) is openai.types.responses.Response
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_REQUEST_MAX_TOKENS] == 99
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 20
    assert got[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 3
    assert got[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 5
    assert got[A.STOP_REASON] == "tool_use"
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "lookup", "id": "call_7"}]
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be terse"}]
    assert [m["role"] for m in json.loads(got[A.GEN_AI_INPUT_MESSAGES])] == ["user"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_responses_stream(steptrace_capture: Capture, is_async: bool) -> None:
    """A streamed responses call reads usage and status from the terminal event."""
    pieces = ["Par", "is", "."]
    script = F.Script(
        F.sse_reply(
            F.responses_sse(
                F.response_events(pieces, status="incomplete", incomplete_reason="max_output_tokens")
            )
        )
    )
    if is_async:

        async def consume() -> list[Any]:
            client = F.async_openai_client(script)
            stream = await client.responses.create(model="gpt-4.1", input="hi", stream=True)
            return [event async for event in stream]

        events = run(consume())
    else:
        events = list(F.openai_client(script).responses.create(model="gpt-4.1", input="hi", stream=True))
    assert [e.type for e in events][-1] == "response.incomplete"
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.STOP_REASON] == "max_tokens"
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("max_output_tokens",)
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert got[A.LLM_STREAM_COMPLETED] is True
    [per_chunk] = steptrace_capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 2


def test_async_responses_create(steptrace_capture: Capture) -> None:
    """AsyncOpenAI responses.create is traced."""
    client = F.async_openai_client(F.Script(F.json_reply(F.response_object())))
    run(client.responses.create(model="gpt-4.1", input="hi"))
    assert attrs(only_llm_span(steptrace_capture))[A.GEN_AI_RESPONSE_ID] == "resp_1"


# --- transparency -----------------------------------------------------------------------------
def test_stream_helper_and_stream_attributes_still_work(steptrace_capture: Capture) -> None:
    """chat.completions.stream() and Stream.response keep working, and are traced through create."""
    script = F.Script(
        F.sse_reply(F.openai_sse(F.chat_chunks(["Hel", "lo"]))),
        F.sse_reply(F.openai_sse(F.chat_chunks(["x"]))),
    )
    client = F.openai_client(script)
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello"
    raw = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(raw, openai.Stream)
    assert raw.response.status_code == 200
    raw.close()
    spans = steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)
    assert [attrs(s)[A.LLM_STREAM_COMPLETED] for s in spans] == [True, False]


def test_tracing_off_calls_sdk_bare() -> None:
    """Without any configuration the call returns as usual and nothing is recorded."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion())))
    result = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert result.choices[0].message.content == "Paris."


# --- no double counting -----------------------------------------------------------------------
def test_call_inside_manual_llm_request_enriches_it(steptrace_capture: Capture) -> None:
    """An SDK call inside steptrace.llm_request() fills that span; run totals count tokens once."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion())))
    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        with steptrace.llm_request(model="gpt-4o", provider="openai"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    span = only_llm_span(steptrace_capture)
    assert attrs(span)[A.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert attrs(span)[A.SERVER_ADDRESS] == "api.fake-openai.test"
    run_span = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run_span)[A.RUN_INPUT_TOKENS] == 12
    assert attrs(run_span)[A.RUN_LLM_CALLS] == 1


# --- patching ---------------------------------------------------------------------------------
def test_uninstrument_restores_originals_and_twice_is_a_logged_noop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uninstrument_openai puts the SDK's own methods back; instrumenting twice only warns."""
    assert Completions.__dict__["create"] is not ORIGINALS[(Completions, "create")]
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_openai()
    assert "already instrumented" in caplog.text
    steptrace.uninstrument_openai()
    for (cls, name), original in ORIGINALS.items():
        assert cls.__dict__[name] is original
    steptrace.instrument_openai()  # the fixture uninstruments again


def test_instrument_one_client_only(steptrace_capture: Capture) -> None:
    """instrument_openai(client) traces that client and leaves other clients alone."""
    steptrace.uninstrument_openai()
    script = F.Script(*[F.json_reply(F.chat_completion()) for _ in range(3)])
    traced, other = F.openai_client(script), F.openai_client(script)
    steptrace.instrument_openai(traced)
    traced.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    other.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)) == 1
    steptrace.uninstrument_openai(traced)
    traced.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)) == 1
    assert "create" not in vars(traced.chat.completions)


def test_instrumentor_with_explicit_providers() -> None:
    """OpenAIInstrumentor().instrument(tracer_provider=, meter_provider=) works without configure()."""
    steptrace.uninstrument_openai()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        client = F.openai_client(F.Script(F.json_reply(F.chat_completion())))
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        OpenAIInstrumentor().uninstrument()
        steptrace.instrument_openai()
    [span] = exporter.get_finished_spans()
    assert span.name == A.SPAN_LLM_REQUEST
    assert A.GEN_AI_INPUT_MESSAGES not in (span.attributes or {})  # capture is off by default
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert A.METRIC_OPERATION_DURATION in names
    tracer_provider.shutdown()
    meter_provider.shutdown()


def test_registered_as_opentelemetry_instrumentor() -> None:
    """opentelemetry-instrument finds OpenAIInstrumentor through the entry point."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["steptrace_openai"].load() is OpenAIInstrumentor
    assert OpenAIInstrumentor() is OpenAIInstrumentor()
