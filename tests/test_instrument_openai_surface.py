"""The rest of the openai SDK's surface, with the real SDK over canned HTTP: structured outputs
(``.parse()``), ``.with_raw_response``/``.with_streaming_response``, ``embeddings.create``, the
Responses API's event streams (``responses.stream()`` and ``stream=True``), ``with_options()``
copies of an instrumented client, and the SDK version check."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.instrumentation.openai import OpenAIInstrumentor
from steptrace.testing import Capture

MESSAGES = [{"role": "user", "content": "Capital of France?"}]
OPENAI_MAJOR = int(openai.__version__.split(".", 1)[0])


class City(BaseModel):
    city: str
    country: str


CITY_JSON = '{"city": "Paris", "country": "France"}'


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


def llm_record(capture: Capture) -> dict[str, Any]:
    [record] = [r for r in capture.records if r["type"] == "llm_call"]
    return record


def token_sums(capture: Capture) -> dict[str, Any]:
    return {p.attributes[A.GEN_AI_TOKEN_TYPE]: p.sum for p in capture.histogram_points(A.METRIC_TOKEN_USAGE)}


def assert_chat_span(capture: Capture, *, stream: bool = False) -> dict[str, Any]:
    """The attributes a chat call gives, whatever call form made it."""
    got = attrs(only_llm_span(capture))
    assert got[A.GEN_AI_OPERATION_NAME] == "chat"
    assert got[A.GEN_AI_PROVIDER_NAME] == "openai"
    assert got[A.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert got[A.GEN_AI_REQUEST_STREAM] is stream
    assert got[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert got[A.SERVER_ADDRESS] == "api.fake-openai.test"
    assert got[A.STOP_REASON] == "end_turn"
    [duration] = capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.count == 1
    return got


# --- canned Responses API bodies with every event the SDK's stream helper needs -------------------
def full_response_events(
    pieces: Sequence[str],
    *,
    function_call: tuple[str, str, Sequence[str]] | None = None,
    reasoning_tokens: int = 0,
) -> list[dict[str, Any]]:
    """created, the message's item/part/text deltas, a function call's argument deltas, completed."""
    arguments = "".join(function_call[2]) if function_call else ""
    done = F.response_object(
        "".join(pieces),
        function_call=(function_call[0], function_call[1], arguments) if function_call else None,
        reasoning_tokens=reasoning_tokens,
    )
    created = {**done, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": created}]
    index = 0
    if pieces:
        message = done["output"][0]
        part = message["content"][0]
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**message, "status": "in_progress", "content": []},
            }
        )
        events.append(
            {
                "type": "response.content_part.added",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": {**part, "text": ""},
            }
        )
        for piece in pieces:
            events.append(
                {
                    "type": "response.output_text.delta",
                    "item_id": "msg_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
            )
        events.append(
            {
                "type": "response.output_text.done",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "text": part["text"],
                "logprobs": [],
            }
        )
        events.append(
            {
                "type": "response.content_part.done",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": part,
            }
        )
        events.append({"type": "response.output_item.done", "output_index": 0, "item": message})
        index = 1
    if function_call is not None:
        item = done["output"][index]
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "arguments": "", "status": "in_progress"},
            }
        )
        for part in function_call[2]:
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": "fc_1",
                    "output_index": index,
                    "delta": part,
                }
            )
        events.append(
            {
                "type": "response.function_call_arguments.done",
                "item_id": "fc_1",
                "output_index": index,
                "name": function_call[1],
                "arguments": arguments,
            }
        )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": done})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def embeddings_body(count: int = 2, dimensions: int = 3, prompt_tokens: int = 8) -> dict[str, Any]:
    return {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": i, "embedding": [0.25] * dimensions} for i in range(count)],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# --- structured outputs: .parse() ---------------------------------------------------------------
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_chat_completions_parse_is_one_span_like_create(steptrace_capture: Capture, is_async: bool) -> None:
    """chat.completions.parse(response_format=Model) is traced like create, once, with its record."""
    script = F.Script(F.json_reply(F.chat_completion(CITY_JSON)))
    with steptrace.agent_run(agent="geo"), steptrace.agent_step():
        if is_async:
            client = F.async_openai_client(script)
            result = run(
                client.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=City)
            )
        else:
            client = F.openai_client(script)
            result = client.chat.completions.parse(
                model="gpt-4o", messages=MESSAGES, response_format=City, temperature=0.1
            )
    assert result.choices[0].message.parsed == City(city="Paris", country="France")
    got = assert_chat_span(steptrace_capture)
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": CITY_JSON}]
    assert token_sums(steptrace_capture) == {"input": 12, "output": 5}
    assert llm_record(steptrace_capture)["input_tokens"] == 12
    run_span = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run_span)[A.RUN_LLM_CALLS] == 1


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_responses_parse_is_one_span_like_create(steptrace_capture: Capture, is_async: bool) -> None:
    """responses.parse(text_format=Model): one span with usage, the parsed output returned."""
    script = F.Script(F.json_reply(F.response_object(CITY_JSON, reasoning_tokens=2)))
    if is_async:
        client = F.async_openai_client(script)
        result = run(client.responses.parse(model="gpt-4.1", input="Where?", text_format=City))
    else:
        result = F.openai_client(script).responses.parse(model="gpt-4.1", input="Where?", text_format=City)
    assert result.output_parsed == City(city="Paris", country="France")
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_RESPONSE_ID] == "resp_1"
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 20
    assert got[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 2
    assert got[A.STOP_REASON] == "end_turn"


def test_parse_error_fails_the_span(steptrace_capture: Capture) -> None:
    """A 429 from parse() reaches the caller unchanged; the span and duration carry its type."""
    client = F.openai_client(F.Script(F.error_reply(429, "slow down")))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=City)
    span = only_llm_span(steptrace_capture)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[A.ERROR_TYPE] == "openai.RateLimitError"


# --- .with_raw_response / .with_streaming_response ----------------------------------------------
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_with_raw_response_is_one_span_and_parse_returns_the_same_object(
    steptrace_capture: Capture, is_async: bool
) -> None:
    """with_raw_response.create: headers for the caller, one span with usage, parse() unchanged."""
    script = F.Script(F.json_reply(F.chat_completion(), **{"x-ratelimit-remaining-requests": "42"}))
    if is_async:
        raw = run(
            F.async_openai_client(script).chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES
            )
        )
    else:
        raw = F.openai_client(script).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES
        )
    assert raw.headers["x-ratelimit-remaining-requests"] == "42"
    completion = raw.parse()
    assert type(completion) is openai.types.chat.ChatCompletion
    assert completion.choices[0].message.content == "Paris."
    assert raw.parse() is completion
    got = assert_chat_span(steptrace_capture)
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert got[A.GEN_AI_RESPONSE_ID] == "chatcmpl-1"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_with_streaming_response_is_one_span(steptrace_capture: Capture, is_async: bool) -> None:
    """with_streaming_response.create as a context manager: one span with usage and tokens."""
    script = F.Script(F.json_reply(F.chat_completion(), **{"x-request-id": "req_9"}))
    if is_async:

        async def call() -> Any:
            client = F.async_openai_client(script)
            async with client.chat.completions.with_streaming_response.create(
                model="gpt-4o", messages=MESSAGES
            ) as response:
                assert response.headers["x-request-id"] == "req_9"
                return await response.parse()

        completion = run(call())
    else:
        client = F.openai_client(script)
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=MESSAGES
        ) as response:
            assert response.headers["x-request-id"] == "req_9"
            completion = response.parse()
    assert completion.choices[0].message.content == "Paris."
    assert_chat_span(steptrace_capture)
    assert token_sums(steptrace_capture) == {"input": 12, "output": 5}


def test_responses_with_raw_and_streaming_response(steptrace_capture: Capture) -> None:
    """responses.create through both raw wrappers: one span each, each with the response's usage."""
    script = F.Script(F.json_reply(F.response_object()), F.json_reply(F.response_object(input_tokens=30)))
    client = F.openai_client(script)
    raw = client.responses.with_raw_response.create(model="gpt-4.1", input="hi")
    assert raw.parse().output_text == "Paris."
    with client.responses.with_streaming_response.create(model="gpt-4.1", input="hi") as response:
        assert response.parse().output_text == "Paris."
    spans = steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)
    assert [attrs(s)[A.GEN_AI_USAGE_INPUT_TOKENS] for s in spans] == [20, 30]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_with_raw_response_stream_is_observed_through_parse(
    steptrace_capture: Capture, is_async: bool
) -> None:
    """with_raw_response.create(stream=True): parse() gives the stream; usage and TTFT land on the span."""
    chunks = F.chat_chunks(["Pa", "ris."])
    script = F.Script(F.sse_reply(F.openai_sse(chunks)))
    kwargs: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if is_async:

        async def consume() -> list[Any]:
            raw = await F.async_openai_client(script).chat.completions.with_raw_response.create(**kwargs)
            return [chunk async for chunk in raw.parse()]

        received = run(consume())
    else:
        raw = F.openai_client(script).chat.completions.with_raw_response.create(**kwargs)
        assert steptrace_capture.spans_named(A.SPAN_LLM_REQUEST) == []  # open while the stream is
        received = list(raw.parse())
    assert len(received) == len(chunks)
    got = assert_chat_span(steptrace_capture, stream=True)
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_with_streaming_response_stream_left_early_ends_the_span(steptrace_capture: Capture) -> None:
    """with_streaming_response + stream=True, left after 2 chunks: the span ends, incomplete."""
    script = F.Script(F.sse_reply(F.openai_sse(F.chat_chunks([f"t{i}" for i in range(20)]))))
    client = F.openai_client(script)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        for number, _chunk in enumerate(response.parse(), start=1):
            if number == 2:
                break
    del response, _chunk
    gc.collect()
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert got[A.LLM_USAGE_MISSING] is True


def test_with_raw_response_parse_is_one_span(steptrace_capture: Capture) -> None:
    """with_raw_response.parse (structured outputs with headers) is one span too."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion(CITY_JSON))))
    raw = client.chat.completions.with_raw_response.parse(
        model="gpt-4o", messages=MESSAGES, response_format=City
    )
    assert raw.parse().choices[0].message.parsed == City(city="Paris", country="France")
    assert_chat_span(steptrace_capture)


def test_raw_response_error_fails_the_span(steptrace_capture: Capture) -> None:
    """A 500 through with_raw_response raises as without it; the span fails with its type."""
    client = F.openai_client(F.Script(F.error_reply(500)))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert attrs(only_llm_span(steptrace_capture))[A.ERROR_TYPE] == "openai.InternalServerError"


# --- embeddings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_embeddings_span_tokens_model_dimensions_and_run_totals(
    steptrace_capture: Capture, is_async: bool
) -> None:
    """embeddings.create: operation embeddings, tokens in the histogram and the run's total."""
    steptrace_capture.configure(capture_content=False)
    script = F.Script(F.json_reply(embeddings_body(count=2, dimensions=3)))
    texts = ["the secret plan", "another text"]
    with steptrace.agent_run(agent="rag"), steptrace.agent_step():
        if is_async:
            client = F.async_openai_client(script)
            result = run(client.embeddings.create(model="text-embedding-3-small", input=texts))
        else:
            result = F.openai_client(script).embeddings.create(model="text-embedding-3-small", input=texts)
    assert len(result.data) == 2
    got = attrs(only_llm_span(steptrace_capture))
    expected = {
        A.GEN_AI_OPERATION_NAME: "embeddings",
        A.GEN_AI_PROVIDER_NAME: "openai",
        A.GEN_AI_REQUEST_MODEL: "text-embedding-3-small",
        A.GEN_AI_RESPONSE_MODEL: "text-embedding-3-small",
        A.GEN_AI_USAGE_INPUT_TOKENS: 8,
        A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: 3,
        A.LLM_EMBEDDINGS_INPUT_COUNT: 2,
        A.SERVER_ADDRESS: "api.fake-openai.test",
    }
    assert {k: got.get(k) for k in expected} == expected
    assert A.GEN_AI_USAGE_OUTPUT_TOKENS not in got
    assert A.LLM_USAGE_MISSING not in got
    assert "the secret plan" not in json.dumps(got)
    [duration] = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert duration.attributes[A.GEN_AI_OPERATION_NAME] == "embeddings"
    assert token_sums(steptrace_capture) == {"input": 8}
    run_span = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run_span)[A.RUN_INPUT_TOKENS] == 8
    assert attrs(run_span)[A.RUN_LLM_CALLS] == 1
    assert llm_record(steptrace_capture)["input_tokens"] == 8
    assert "the secret plan" not in json.dumps(steptrace_capture.records)


def test_embeddings_input_text_only_with_capture_on(steptrace_capture: Capture) -> None:
    """With capture on the embedded texts are recorded (redacted), and requested dimensions too."""
    client = F.openai_client(F.Script(F.json_reply(embeddings_body(count=1, dimensions=4))))
    client.embeddings.create(
        model="text-embedding-3-small", input="where is Paris", dimensions=4, encoding_format="float"
    )
    got = attrs(only_llm_span(steptrace_capture))
    assert json.loads(got[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "where is Paris"}]}
    ]
    assert got[A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 4
    assert got[A.GEN_AI_REQUEST_ENCODING_FORMATS] == ("float",)
    assert got[A.LLM_EMBEDDINGS_INPUT_COUNT] == 1
    assert A.GEN_AI_OUTPUT_MESSAGES not in got


def test_embeddings_error_and_raw_response(steptrace_capture: Capture) -> None:
    """A failed embeddings call fails its span; with_raw_response.create is traced once too."""
    script = F.Script(F.error_reply(429), F.json_reply(embeddings_body()))
    client = F.openai_client(script)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="text-embedding-3-small", input=["a"])
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=[[1, 2, 3]])
    assert len(raw.parse().data) == 2
    failed, ok = steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)
    assert attrs(failed)[A.ERROR_TYPE] == "openai.RateLimitError"
    assert attrs(ok)[A.GEN_AI_USAGE_INPUT_TOKENS] == 8
    assert attrs(ok)[A.LLM_EMBEDDINGS_INPUT_COUNT] == 1  # one input given as token ids


# --- the Responses API's event streams ---------------------------------------------------------
def test_responses_stream_helper_ttft_usage_reasoning_and_function_call(steptrace_capture: Capture) -> None:
    """responses.stream(): TTFT from the first output delta, usage, reasoning tokens, the call."""
    events = full_response_events(
        ["Look", "ing up"], function_call=("call_3", "lookup", ['{"id"', ": 3}"]), reasoning_tokens=11
    )
    script = F.Script(F.sse_reply(F.responses_sse(events), first_delay=0.05))
    client = F.openai_client(script)
    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        with client.responses.stream(model="gpt-4.1", input="Find 3") as stream:
            seen = [event.type for event in stream]
            final = stream.get_final_response()
    assert seen[-1] == "response.completed"
    assert final.output_text == "Looking up"
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_REQUEST_STREAM] is True
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == 20
    assert got[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 11
    assert got[A.STOP_REASON] == "tool_use"
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "lookup", "id": "call_3"}]
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert 0.05 <= got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < 1
    [ttft] = steptrace_capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttft.count == 1
    [per_chunk] = steptrace_capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 3  # 2 text + 2 argument deltas, after the first
    record = llm_record(steptrace_capture)
    assert record["stop_reason"] == "tool_use"
    assert record["input_tokens"] == 20


def test_responses_stream_helper_left_early_ends_the_span(steptrace_capture: Capture) -> None:
    """Leaving responses.stream()'s with block after the call was announced ends the span at once."""
    events = full_response_events(["a", "b"], function_call=("call_5", "search", ["{", "}"]))
    script = F.Script(F.sse_reply(F.responses_sse(events)))
    client = F.openai_client(script)
    with client.responses.stream(model="gpt-4.1", input="go") as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                break
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert got[A.LLM_USAGE_MISSING] is True
    assert got[A.GEN_AI_RESPONSE_ID] == "resp_1"
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "search", "id": "call_5"}]
    output = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"]
    assert output[0] == {"type": "text", "content": "ab"}
    assert output[1]["name"] == "search"
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert only_llm_span(steptrace_capture).status.status_code is not StatusCode.ERROR


def test_async_responses_stream_helper(steptrace_capture: Capture) -> None:
    """AsyncOpenAI responses.stream(): the same span, ended by the stream's completion."""
    events = full_response_events(["x", "y"], reasoning_tokens=4)
    script = F.Script(F.sse_reply(F.responses_sse(events)))

    async def consume() -> Any:
        client = F.async_openai_client(script)
        async with client.responses.stream(model="gpt-4.1", input="go") as stream:
            async for _event in stream:
                pass
            return await stream.get_final_response()

    final = run(consume())
    assert final.output_text == "xy"
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 4
    assert got[A.LLM_STREAM_COMPLETED] is True


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_responses_stream_true_left_early_keeps_the_function_call(
    steptrace_capture: Capture, is_async: bool
) -> None:
    """responses.create(stream=True) closed after the function call started: span ends with it."""
    events = full_response_events([], function_call=("call_8", "fetch", ['{"u"', ": 1}"]))
    script = F.Script(F.sse_reply(F.responses_sse(events)))
    if is_async:

        async def consume() -> None:
            stream = await F.async_openai_client(script).responses.create(
                model="gpt-4.1", input="go", stream=True
            )
            async for event in stream:
                if event.type == "response.function_call_arguments.delta":
                    break
            await stream.close()

        run(consume())
    else:
        stream = F.openai_client(script).responses.create(model="gpt-4.1", input="go", stream=True)
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                break
        stream.close()
    got = attrs(only_llm_span(steptrace_capture))
    assert got[A.LLM_STREAM_COMPLETED] is False
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "fetch", "id": "call_8"}]
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0  # the argument delta is output
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in got


def test_reasoning_summary_deltas_are_not_the_first_output(steptrace_capture: Capture) -> None:
    """TTFT waits for the answer: reasoning-summary deltas before it do not count."""
    events = full_response_events(["ok"])
    reasoning = {
        "type": "response.reasoning_summary_text.delta",
        "item_id": "rs_1",
        "output_index": 0,
        "summary_index": 0,
        "delta": "thinking",
    }
    events.insert(1, reasoning)
    for number, event in enumerate(events):
        event["sequence_number"] = number
    script = F.Script(F.sse_reply(F.responses_sse(events)))
    stream = F.openai_client(script).responses.create(model="gpt-4.1", input="go", stream=True)
    assert [e.type for e in stream][1] == "response.reasoning_summary_text.delta"
    assert steptrace_capture.histogram_points(A.METRIC_TIME_PER_OUTPUT_CHUNK) == []  # one output delta
    assert attrs(only_llm_span(steptrace_capture))[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


# --- with_options() copies ---------------------------------------------------------------------
def test_with_options_copy_of_an_instrumented_client_is_traced(steptrace_capture: Capture) -> None:
    """instrument_openai(client): client.with_options(...) and client.copy() are traced too."""
    steptrace.uninstrument_openai()
    script = F.Script(*[F.json_reply(F.chat_completion()) for _ in range(5)])
    client, other = F.openai_client(script), F.openai_client(script)
    steptrace.instrument_openai(client)
    try:
        client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        client.copy(max_retries=1).with_options(timeout=3).embeddings  # noqa: B018 - resources made lazily
        client.copy(max_retries=1).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        other.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        copy = client.with_options(timeout=7)
    finally:
        steptrace.uninstrument_openai(client)
    assert len(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)) == 2
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    copy.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # uninstrumented with its origin
    assert len(steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)) == 2


def test_with_options_async_copy_is_traced(steptrace_capture: Capture) -> None:
    """The same for AsyncOpenAI: the copy's calls are traced as async calls."""
    steptrace.uninstrument_openai()
    client = F.async_openai_client(F.Script(F.json_reply(F.chat_completion())))
    steptrace.instrument_openai(client)
    try:
        copy = client.with_options(timeout=5)
        run(copy.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    finally:
        steptrace.uninstrument_openai(client)
    assert attrs(only_llm_span(steptrace_capture))[A.GEN_AI_USAGE_INPUT_TOKENS] == 12


def test_with_options_after_instrumenting_every_client(steptrace_capture: Capture) -> None:
    """instrument_openai() patches the classes: a with_options() copy is traced, once."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion())))
    client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert_chat_span(steptrace_capture)


def test_uninstrument_restores_parse_and_embeddings() -> None:
    """uninstrument_openai puts back parse() and embeddings.create too."""
    from openai.resources.chat.completions import Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings

    patched = [
        Completions.__dict__["parse"],
        Embeddings.__dict__["create"],
        AsyncEmbeddings.__dict__["create"],
    ]
    steptrace.uninstrument_openai()
    restored = [
        Completions.__dict__["parse"],
        Embeddings.__dict__["create"],
        AsyncEmbeddings.__dict__["create"],
    ]
    assert all(type(p).__name__ == "FunctionWrapper" for p in patched)
    assert not any(type(r).__name__ == "FunctionWrapper" for r in restored)
    steptrace.instrument_openai()


# --- the SDK version check ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "warns"),
    [
        ("1.109.1", False),
        ("2.54.0", False),
        ("3.57.0", False),
        ("1.50.0", True),
        ("0.28.1", True),
        ("4.0.0", True),
    ],
)
def test_version_warning_names_what_was_tested(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, version: str, warns: bool
) -> None:
    """openai 1.109 no longer reads as outside its own range; 0.28 or 4.0 is told what was tested."""
    import importlib.metadata

    steptrace.uninstrument_openai()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_openai()
    warnings = [r.getMessage() for r in caplog.records if "tested" in r.getMessage()]
    if warns:
        assert warnings == [
            f"steptrace: openai {version} is not a version steptrace was tested with "
            "(openai 1.109.1, 2.54.0 and the newest 3.x)"
        ]
    else:
        assert warnings == []


def test_installed_sdk_is_a_tested_version(caplog: pytest.LogCaptureFixture) -> None:
    """The openai this suite runs with (each major make test installs) gives no warning."""
    steptrace.uninstrument_openai()
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        steptrace.instrument_openai()
    assert "tested" not in caplog.text
    assert OpenAIInstrumentor.tested_majors == ("1", "2", "3")
    assert str(OPENAI_MAJOR) in OpenAIInstrumentor.tested_majors
