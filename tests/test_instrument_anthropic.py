"""steptrace.instrument_anthropic: the real anthropic SDK over canned HTTP, messages.create and
messages.stream, sync and async, failures, and uninstrumenting."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.resources.messages import AsyncMessages, Messages
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.instrumentation.anthropic import AnthropicInstrumentor
from steptrace.testing import Capture

MODEL = "claude-test-model"  # not in the SDK's deprecation list, so no warning
CALL: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
}
# anthropic 0.x's Stream/AsyncStream metaclass answers isinstance() False for anything but the
# exact class (it special-cases MessageStream only), so the observed stream (a proxy) is not an
# isinstance() match there; 1.x and 2.x see through the proxy.
ISINSTANCE_SEES_PROXY = int(anthropic.__version__.split(".", 1)[0]) >= 1
ORIGINALS = {
    (cls, name): cls.__dict__[name] for cls in (Messages, AsyncMessages) for name in ("create", "stream")
}


@pytest.fixture(autouse=True)
def instrumented(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "1")
    steptrace.instrument_anthropic()
    yield
    steptrace.uninstrument_anthropic()


def only_llm_span(capture: Capture) -> ReadableSpan:
    spans = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(spans) == 1, [dict(s.attributes or {}) for s in spans]
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def tool_stream(**options: Any) -> F.Canned:
    events = F.anthropic_events(
        [f"w{i} " for i in range(10)],
        tool_use=("toolu_1", "get_weather", ['{"city"', ': "Paris"}']),
        stop_reason="tool_use",
        cache_read_input_tokens=7,
    )
    return F.sse_reply(F.anthropic_sse(events), **options)


def test_message_span_has_usage_cache_tokens_and_tool_calls(steptrace_capture: Capture) -> None:
    """messages.create inside a step: one child llm_request with tokens (cache counted), tools."""
    body = F.anthropic_message(
        "Let me check.",
        tool_use=("toolu_1", "get_weather", {"city": "Paris"}),
        stop_reason="tool_use",
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
    )
    client = F.anthropic_client(F.Script(F.json_reply(body)))
    with steptrace.agent_run(agent="weather"), steptrace.agent_step():
        result = client.messages.create(**CALL, system="Be brief", stop_sequences=["STOP"])
    assert type(result) is anthropic.types.Message
    span = only_llm_span(steptrace_capture)
    step = steptrace_capture.spans_named(A.SPAN_AGENT_STEP)[0]
    assert span.parent is not None and span.parent.span_id == step.context.span_id
    got = attrs(span)
    expected = {
        A.GEN_AI_PROVIDER_NAME: "anthropic",
        A.GEN_AI_REQUEST_MODEL: MODEL,
        A.GEN_AI_REQUEST_MAX_TOKENS: 256,
        A.GEN_AI_REQUEST_STOP_SEQUENCES: ("STOP",),
        A.GEN_AI_REQUEST_STREAM: False,
        A.SERVER_ADDRESS: "api.fake-anthropic.test",
        A.SERVER_PORT: 443,
        A.GEN_AI_USAGE_INPUT_TOKENS: 135,  # 15 + 100 cache read + 20 cache creation
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 6,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 100,
        A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 20,
        A.GEN_AI_RESPONSE_FINISH_REASONS: ("tool_use",),
        A.STOP_REASON: "tool_use",
        A.GEN_AI_RESPONSE_ID: "msg_01",
    }
    assert {k: got.get(k) for k in expected} == expected
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "toolu_1"}]
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief"}]
    assert [m["role"] for m in json.loads(got[A.GEN_AI_INPUT_MESSAGES])] == ["user"]
    parts = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert parts[1] == {
        "type": "tool_call",
        "id": "toolu_1",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }


def test_max_tokens_stop_reason(steptrace_capture: Capture) -> None:
    """A truncated Anthropic call reads stop_reason "max_tokens", like a truncated OpenAI call."""
    client = F.anthropic_client(F.Script(F.json_reply(F.anthropic_message(stop_reason="max_tokens"))))
    client.messages.create(**CALL)
    assert attrs(only_llm_span(steptrace_capture))[A.STOP_REASON] == "max_tokens"


def test_async_create(steptrace_capture: Capture) -> None:
    """AsyncAnthropic messages.create is traced and returns the SDK's Message."""
    client = F.async_anthropic_client(F.Script(F.json_reply(F.anthropic_message())))
    result = asyncio.run(client.messages.create(**CALL))
    assert type(result) is anthropic.types.Message
    assert attrs(only_llm_span(steptrace_capture))[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 6


def check_stream_span(capture: Capture) -> dict[str, Any]:
    got = attrs(only_llm_span(capture))
    assert got[A.GEN_AI_REQUEST_STREAM] is True
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 22
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert got[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 7
    assert got[A.STOP_REASON] == "tool_use"
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "toolu_1"}]
    output = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert output[1]["arguments"] == {"city": "Paris"}
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    [per_chunk] = capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 11  # 10 text + 2 input-json deltas, after the first
    return got


def test_create_stream_true(steptrace_capture: Capture) -> None:
    """messages.create(stream=True) returns the SDK Stream; the span ends when it is exhausted."""
    client = F.anthropic_client(F.Script(tool_stream()))
    stream = client.messages.create(**CALL, stream=True)
    assert isinstance(stream, anthropic.Stream) or not ISINSTANCE_SEES_PROXY
    assert stream.__class__.__name__ == "Stream"  # the proxy reports the SDK's class
    events = list(stream)
    assert events[-1].type == "message_stop"
    check_stream_span(steptrace_capture)


def test_async_create_stream_true(steptrace_capture: Capture) -> None:
    """The async create(stream=True) path records the same span."""

    async def consume() -> None:
        client = F.async_anthropic_client(F.Script(tool_stream()))
        stream = await client.messages.create(**CALL, stream=True)
        assert isinstance(stream, anthropic.AsyncStream) or not ISINSTANCE_SEES_PROXY
        async with stream:
            [event async for event in stream]

    asyncio.run(consume())
    check_stream_span(steptrace_capture)


def test_messages_stream_get_final_message(steptrace_capture: Capture) -> None:
    """with messages.stream(...) and get_final_message(): the SDK helper works, span is complete."""
    client = F.anthropic_client(F.Script(tool_stream()))
    with client.messages.stream(**CALL) as stream:
        assert type(stream) is anthropic.MessageStream
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert message.content[1].input == {"city": "Paris"}
    check_stream_span(steptrace_capture)


def test_async_messages_stream_text_stream(steptrace_capture: Capture) -> None:
    """async with messages.stream(...) and text_stream then get_final_message()."""

    async def consume() -> str:
        client = F.async_anthropic_client(F.Script(tool_stream()))
        async with client.messages.stream(**CALL) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert final.usage.output_tokens == 50
        return text

    assert asyncio.run(consume()) == "".join(f"w{i} " for i in range(10))
    check_stream_span(steptrace_capture)


def warm_up_sdk_stream() -> None:
    """One stream outside any measurement: anthropic 2.17 imports ``opentelemetry.propagate`` on its first
    request (~30 ms), a one-time cost of the SDK's own tracing that is not the server's delay."""
    with F.anthropic_client(F.Script(tool_stream())).messages.stream(**CALL) as stream:
        stream.until_done()


def test_ttft_of_50_chunk_stream_matches_server_delay(steptrace_capture: Capture) -> None:
    """TTFT counts from sending: a 120 ms delay before the first event reads as 120 ms (+0..30 ms)."""
    delay = 0.120
    events = F.anthropic_events([f"t{i}" for i in range(50)])
    warm_up_sdk_stream()
    client = F.anthropic_client(F.Script(F.sse_reply(F.anthropic_sse(events), first_delay=delay)))
    with client.messages.stream(**CALL) as stream:
        stream.until_done()
    ttft = attrs(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)[-1])[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert delay <= ttft < delay + 0.030, ttft  # never before the server answered; slack for a loaded machine


def test_async_ttft_of_50_chunk_stream(steptrace_capture: Capture) -> None:
    """The async stream measures the same TTFT."""
    delay = 0.120
    events = F.anthropic_events([f"t{i}" for i in range(50)])

    warm_up_sdk_stream()

    async def consume() -> None:
        client = F.async_anthropic_client(F.Script(F.sse_reply(F.anthropic_sse(events), first_delay=delay)))
        async with client.messages.stream(**CALL) as stream:
            await stream.until_done()

    asyncio.run(consume())
    ttft = attrs(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)[-1])[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert delay <= ttft < delay + 0.030, ttft  # never before the server answered; slack for a loaded machine


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_early_break_ends_span_incomplete(steptrace_capture: Capture, is_async: bool) -> None:
    """Leaving the stream's with-block after 3 events ends the span, marked not consumed."""
    script = F.Script(tool_stream())

    async def consume_async() -> None:
        async with F.async_anthropic_client(script).messages.stream(**CALL) as stream:
            number = 0
            async for _event in stream:
                number += 1
                if number == 3:
                    break

    if is_async:
        asyncio.run(consume_async())
    else:
        with F.anthropic_client(script).messages.stream(**CALL) as stream:
            for number, _event in enumerate(stream, start=1):
                if number == 3:
                    break
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 22  # message_start arrived
    assert A.STOP_REASON not in got


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_stream_cut_off_mid_way(steptrace_capture: Capture, is_async: bool) -> None:
    """A dropped connection mid-stream raises the SDK's error unchanged and fails the span.

    anthropic < 2.17 lets httpx's ``RemoteProtocolError`` through; 2.17 wraps it in
    ``APIConnectionError``. Whichever the SDK raises reaches the caller, and is the span's ``error.type``.
    """
    script = F.Script(tool_stream(cut_after=6))

    async def consume_async() -> None:
        async with F.async_anthropic_client(script).messages.stream(**CALL) as stream:
            await stream.get_final_message()

    with pytest.raises((F.ANTHROPIC_HTTP.RemoteProtocolError, anthropic.APIConnectionError)) as raised:
        if is_async:
            asyncio.run(consume_async())
        else:
            with F.anthropic_client(script).messages.stream(**CALL) as stream:
                stream.get_final_message()
    cause: BaseException | None = raised.value
    while cause is not None and not isinstance(cause, F.ANTHROPIC_HTTP.RemoteProtocolError):
        cause = cause.__cause__
    assert cause is not None, "the cut connection is the SDK error's cause"
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.LLM_STREAM_COMPLETED] is False
    expected = (
        "anthropic.APIConnectionError"
        if isinstance(raised.value, anthropic.APIConnectionError)
        else f"{F.ANTHROPIC_HTTP.__name__}.RemoteProtocolError"
    )
    assert attrs(span)[A.ERROR_TYPE] == expected


ERRORS = [
    pytest.param(F.error_reply(429), anthropic.RateLimitError, id="429"),
    pytest.param(F.error_reply(500), anthropic.InternalServerError, id="500"),
    pytest.param(F.Canned(raise_exc=F.ANTHROPIC_HTTP.ReadTimeout), anthropic.APITimeoutError, id="timeout"),
]


@pytest.mark.parametrize(("reply", "error"), ERRORS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("method", ["create", "stream"])
def test_sdk_errors_fail_the_span_and_propagate_unchanged(
    steptrace_capture: Capture, reply: F.Canned, error: type[Exception], is_async: bool, method: str
) -> None:
    """429, 500, timeout on create and stream: the SDK's exception reaches the caller unchanged."""
    script = F.Script(reply)

    async def call_async() -> None:
        client = F.async_anthropic_client(script)
        if method == "create":
            await client.messages.create(**CALL)
        else:
            async with client.messages.stream(**CALL):
                pass

    with pytest.raises(error) as raised:
        if is_async:
            asyncio.run(call_async())
        elif method == "create":
            F.anthropic_client(script).messages.create(**CALL)
        else:
            with F.anthropic_client(script).messages.stream(**CALL):
                pass
    assert type(raised.value) is error
    expected = f"anthropic.{error.__name__}"
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.ERROR_TYPE] == expected
    [duration] = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.attributes[A.ERROR_TYPE] == expected


def test_call_inside_manual_llm_request_enriches_it(steptrace_capture: Capture) -> None:
    """messages.stream inside steptrace.llm_request() fills that span instead of adding one."""
    client = F.anthropic_client(F.Script(tool_stream()))
    with steptrace.agent_run(agent="a"):
        with steptrace.llm_request(), client.messages.stream(**CALL) as stream:
            stream.until_done()
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert got[A.GEN_AI_PROVIDER_NAME] == "anthropic"
    run_span = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run_span)[A.RUN_OUTPUT_TOKENS] == 50


def test_uninstrument_restores_originals(caplog: pytest.LogCaptureFixture) -> None:
    """uninstrument_anthropic puts create and stream back; instrumenting twice only warns."""
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_anthropic()
    assert "already instrumented" in caplog.text
    steptrace.uninstrument_anthropic()
    for (cls, name), original in ORIGINALS.items():
        assert cls.__dict__[name] is original
    steptrace.instrument_anthropic()


def test_instrument_one_client_only(steptrace_capture: Capture) -> None:
    """instrument_anthropic(client) traces only that client."""
    steptrace.uninstrument_anthropic()
    script = F.Script(*[F.json_reply(F.anthropic_message()) for _ in range(2)])
    traced, other = F.anthropic_client(script), F.anthropic_client(script)
    steptrace.instrument_anthropic(traced)
    try:
        traced.messages.create(**CALL)
        other.messages.create(**CALL)
    finally:
        steptrace.uninstrument_anthropic(traced)
    assert len(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)) == 1


def test_registered_as_opentelemetry_instrumentor() -> None:
    """opentelemetry-instrument finds AnthropicInstrumentor through the entry point."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["steptrace_anthropic"].load() is AnthropicInstrumentor


def test_installed_sdk_is_a_tested_version(caplog: pytest.LogCaptureFixture) -> None:
    """The anthropic this suite runs with (0.x, 1.x or 2.x, as make test installs) gives no warning;
    an untested one is told what was tested."""
    import importlib.metadata

    steptrace.uninstrument_anthropic()
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_anthropic()
    assert "tested" not in caplog.text
    steptrace.uninstrument_anthropic()
    real_version = importlib.metadata.version
    try:
        importlib.metadata.version = lambda name: "0.50.0"  # type: ignore[assignment]
        with caplog.at_level(logging.WARNING, logger="steptrace"):
            steptrace.instrument_anthropic()
    finally:
        importlib.metadata.version = real_version
    assert (
        "steptrace: anthropic 0.50.0 is not a version steptrace was tested with "
        "(anthropic 0.125.0, 1.17.0 and the newest 2.x)" in caplog.text
    )
