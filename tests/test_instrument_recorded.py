"""The SDK surface against responses recorded from the real OpenAI and Anthropic APIs.

Each response in ``tests/recorded/`` (sources and licenses in its README) is served by a local HTTP
server on 127.0.0.1 to the real SDK client; what steptrace records is checked against values read
from the recorded response here, not against copies of steptrace's own output: the legacy
``functions=``/``function_call`` chat API, ``embeddings.create(encoding_format="base64")``,
anthropic's ``beta.messages.create``/``stream`` and ``messages.parse``/``beta.messages.parse``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from pydantic import BaseModel

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.analysis._transcript import item_line, transcript
from steptrace.testing import Capture

# The recorded requests name the models they were recorded with, which some SDK releases warn are
# deprecated; anthropic 0.x warns on beta.messages.parse(output_format=...), which it still takes.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'output_format' parameter is deprecated:DeprecationWarning"),
]


def sse_events(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON payloads of a recorded event stream, in order."""
    events = []
    for line in entry["response_sse"].splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


@pytest.fixture(autouse=True)
def instrumented(steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "1")
    steptrace_capture.configure(capture_content=True)
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    yield
    steptrace.uninstrument_openai()
    steptrace.uninstrument_anthropic()


def only_llm_span(capture: Capture) -> dict[str, Any]:
    spans: list[ReadableSpan] = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(spans) == 1, [dict(s.attributes or {}) for s in spans]
    return dict(spans[0].attributes or {})


def records_of(capture: Capture, kind: str) -> list[dict[str, Any]]:
    return [record for record in capture.records if record["type"] == kind]


def served(entry: dict[str, Any], times: int = 1) -> F.FakeServer:
    return F.FakeServer(F.Script(*(F.recorded_reply(entry) for _ in range(times))))


# --- openai: the legacy functions= / function_call chat API --------------------------------------
FUNCTION_CALL = F.recorded("openai_chat_function_call.json")
FUNCTION_CALL_STREAM = F.recorded("openai_chat_function_call_stream.json")


def test_legacy_function_call_is_a_tool_call_without_an_id(steptrace_capture: Capture) -> None:
    """functions=[...] answered with message.function_call: the span, the step record and the
    output messages name the function and its arguments; no call id is invented (the API has none)."""
    response = FUNCTION_CALL["response"]
    choice = response["choices"][0]
    function = choice["message"]["function_call"]
    with served(FUNCTION_CALL) as server, steptrace.agent_run(agent="legacy-functions"):
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        completion = client.chat.completions.create(**F.recorded_call(FUNCTION_CALL))
        client.close()
    assert completion.choices[0].message.function_call is not None
    got = only_llm_span(steptrace_capture)
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": function["name"], "id": None}]
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == (choice["finish_reason"],)
    assert got[A.STOP_REASON] == "tool_use"
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == response["usage"]["prompt_tokens"]
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == response["usage"]["completion_tokens"]
    [message] = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])
    assert message["parts"] == [
        {"type": "tool_call", "name": function["name"], "arguments": function["arguments"]}
    ]
    [record] = records_of(steptrace_capture, "llm_call")
    assert record["tool_calls"] == [{"name": function["name"], "id": None}]
    assert record["output"] == [message]
    assert record["stop_reason"] == "tool_use"
    [run] = records_of(steptrace_capture, "run")
    assert (run["input_tokens"], run["output_tokens"]) == (
        response["usage"]["prompt_tokens"],
        response["usage"]["completion_tokens"],
    )


def test_legacy_function_call_in_the_history_is_read_back(steptrace_capture: Capture) -> None:
    """The next request sends the function_call and the function's result (role "function"):
    the input messages show both, the result named by its function."""
    function = FUNCTION_CALL["response"]["choices"][0]["message"]["function_call"]
    history = [
        *FUNCTION_CALL["request"]["messages"],
        {"role": "assistant", "content": None, "function_call": function},
        {"role": "function", "name": function["name"], "content": '{"temperature": 22}'},
    ]
    with served(FUNCTION_CALL) as server, steptrace.agent_run(agent="legacy-functions"):
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        client.chat.completions.create(**F.recorded_call(FUNCTION_CALL, "messages"), messages=history)
        client.close()
    messages = json.loads(only_llm_span(steptrace_capture)[A.GEN_AI_INPUT_MESSAGES])
    assert messages[1]["parts"] == [
        {"type": "tool_call", "name": function["name"], "arguments": function["arguments"]}
    ]
    assert messages[2] == {
        "role": "function",
        "parts": [
            {"type": "tool_call_response", "name": function["name"], "response": '{"temperature": 22}'}
        ],
    }
    # What steptrace view / debug show of the call: the result answers the function by its name.
    [record] = records_of(steptrace_capture, "llm_call")
    turns = transcript(record)
    assert turns is not None
    lines = [item_line(item) for turn in turns for item in turn.items]
    assert f'← {function["name"]} [no id]: {{"temperature": 22}}' in lines
    assert f"→ {function['name']}({function['arguments']}) [no id]" in lines


def test_async_legacy_function_call(steptrace_capture: Capture) -> None:
    """AsyncOpenAI: the same tool call, from the same recorded response."""
    function = FUNCTION_CALL["response"]["choices"][0]["message"]["function_call"]

    async def call(url: str) -> None:
        async with openai.AsyncOpenAI(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            await client.chat.completions.create(**F.recorded_call(FUNCTION_CALL))

    with served(FUNCTION_CALL) as server:
        asyncio.run(call(server.url("/v1")))
    got = only_llm_span(steptrace_capture)
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": function["name"], "id": None}]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["arguments"] == function["arguments"]


def streamed_function(entry: dict[str, Any]) -> tuple[str, str, str]:
    """(name, arguments, finish reason) as the recorded chunks spell them out."""
    name, pieces, finish = "", [], ""
    for event in sse_events(entry):
        for choice in event["choices"]:
            call = choice["delta"].get("function_call") or {}
            name = call.get("name") or name
            pieces.append(call.get("arguments") or "")
            finish = choice["finish_reason"] or finish
    return name, "".join(pieces), finish


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_streamed_legacy_function_call(steptrace_capture: Capture, is_async: bool) -> None:
    """stream=True with functions=: the function's name and its arguments, sent in pieces, end up
    whole in the output; the first piece marks the time to first chunk; the recording has no
    usage (no include_usage), which reads as unknown, not zero."""
    name, arguments, finish = streamed_function(FUNCTION_CALL_STREAM)

    async def call_async(url: str) -> None:
        async with openai.AsyncOpenAI(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            call = F.recorded_call(FUNCTION_CALL_STREAM)
            async for _chunk in await client.chat.completions.create(**call, stream=True):
                pass

    with served(FUNCTION_CALL_STREAM) as server, steptrace.agent_run(agent="legacy-functions"):
        if is_async:
            asyncio.run(call_async(server.url("/v1")))
        else:
            client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
            call = F.recorded_call(FUNCTION_CALL_STREAM)
            for _chunk in client.chat.completions.create(**call, stream=True):
                pass
            client.close()
    got = only_llm_span(steptrace_capture)
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": name, "id": None}]
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "name": name, "arguments": arguments}],
            "finish_reason": finish,
        }
    ]
    assert got[A.STOP_REASON] == "tool_use"
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert got[A.LLM_USAGE_MISSING] is True
    [record] = records_of(steptrace_capture, "llm_call")
    assert record["tool_calls"] == [{"name": name, "id": None}]
    assert record["stream_completed"] is True


# --- openai: embeddings as base64 -----------------------------------------------------------------
EMBEDDINGS = F.recorded("openai_embeddings_base64.json")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_base64_embeddings_count_their_dimensions(steptrace_capture: Capture, is_async: bool) -> None:
    """encoding_format="base64": the vector arrives as text; its dimension count is the number of
    float32s it decodes to (1536 for ada-002), as for a list of floats."""
    response = EMBEDDINGS["response"]
    dimensions = len(base64.b64decode(response["data"][0]["embedding"])) // 4

    async def call_async(url: str) -> Any:
        async with openai.AsyncOpenAI(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            return await client.embeddings.create(**EMBEDDINGS["request"])

    with served(EMBEDDINGS) as server:
        if is_async:
            result = asyncio.run(call_async(server.url("/v1")))
        else:
            client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
            result = client.embeddings.create(**EMBEDDINGS["request"])
            client.close()
    assert isinstance(result.data[0].embedding, str)  # handed back as the API sent it
    got = only_llm_span(steptrace_capture)
    assert got[A.GEN_AI_OPERATION_NAME] == "embeddings"
    assert got[A.GEN_AI_REQUEST_ENCODING_FORMATS] == ("base64",)
    assert got[A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == dimensions == 1536
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == response["usage"]["prompt_tokens"]
    assert got[A.GEN_AI_RESPONSE_MODEL] == response["model"]


# --- anthropic: beta.messages ---------------------------------------------------------------------
BETA_TOOL_USE = F.recorded("anthropic_beta_tool_use.json")
BETA_STREAM = F.recorded("anthropic_beta_stream.json")


def anthropic_input_tokens(usage: dict[str, Any]) -> int:
    """Input tokens as the conventions count them: cache reads and writes included."""
    return int(
        usage["input_tokens"]
        + (usage.get("cache_read_input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_beta_messages_create_is_traced_and_counted(steptrace_capture: Capture, is_async: bool) -> None:
    """client.beta.messages.create (what Pydantic AI calls): one llm_request with the tool call
    the model asked for, its tokens, and the run's totals include them."""
    response = BETA_TOOL_USE["response"]
    [tool_use] = response["content"]

    async def call_async(url: str) -> Any:
        async with anthropic.AsyncAnthropic(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            return await client.beta.messages.create(**F.recorded_call(BETA_TOOL_USE))

    with served(BETA_TOOL_USE) as server, steptrace.agent_run(agent="beta"):
        if is_async:
            message = asyncio.run(call_async(server.url()))
        else:
            client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
            message = client.beta.messages.create(**F.recorded_call(BETA_TOOL_USE))
            client.close()
    assert type(message).__name__ == "BetaMessage"
    got = only_llm_span(steptrace_capture)
    assert got[A.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert got[A.GEN_AI_REQUEST_MODEL] == BETA_TOOL_USE["request"]["model"]
    assert got[A.GEN_AI_RESPONSE_MODEL] == response["model"]
    assert got[A.GEN_AI_RESPONSE_ID] == response["id"]
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": tool_use["name"], "id": tool_use["id"]}]
    assert got[A.STOP_REASON] == "tool_use"
    input_tokens = anthropic_input_tokens(response["usage"])
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == input_tokens
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == response["usage"]["output_tokens"]
    [message_out] = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])
    assert message_out["parts"] == [
        {"type": "tool_call", "id": tool_use["id"], "name": tool_use["name"], "arguments": tool_use["input"]}
    ]
    [run] = records_of(steptrace_capture, "run")
    assert (run["llm_calls"], run["input_tokens"], run["output_tokens"]) == (
        1,
        input_tokens,
        response["usage"]["output_tokens"],
    )


def streamed_message(entry: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(text, final usage, stop reason) as the recorded events tell them."""
    text, usage, stop = "", {}, ""
    for event in sse_events(entry):
        if event["type"] == "message_start":
            usage.update(event["message"]["usage"])
        elif event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
            text += event["delta"]["text"]
        elif event["type"] == "message_delta":
            usage.update(event["usage"])
            stop = event["delta"]["stop_reason"]
    return text, usage, stop


def assert_streamed_message(capture: Capture, entry: dict[str, Any]) -> None:
    text, usage, stop = streamed_message(entry)
    got = only_llm_span(capture)
    assert got[A.GEN_AI_REQUEST_STREAM] is True
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == anthropic_input_tokens(usage)
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == usage["output_tokens"]
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == (stop,)
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert json.loads(got[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": stop}
    ]
    [run] = records_of(capture, "run")
    assert run["input_tokens"] == anthropic_input_tokens(usage)
    assert run["output_tokens"] == usage["output_tokens"]


def test_beta_messages_stream_helper(steptrace_capture: Capture) -> None:
    """with client.beta.messages.stream(...) as stream: text_stream, then get_final_message():
    the span lasts as long as the stream and reads its tokens from the recorded events."""
    text, usage, _stop = streamed_message(BETA_STREAM)
    with served(BETA_STREAM) as server, steptrace.agent_run(agent="beta-stream"):
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
        with client.beta.messages.stream(**F.recorded_call(BETA_STREAM)) as stream:
            assert type(stream).__name__ == "BetaMessageStream"
            assert "".join(stream.text_stream) == text
            final = stream.get_final_message()
        client.close()
    assert final.usage.output_tokens == usage["output_tokens"]
    assert_streamed_message(steptrace_capture, BETA_STREAM)


def test_async_beta_messages_stream_helper(steptrace_capture: Capture) -> None:
    """async with client.beta.messages.stream(...): the same, on AsyncAnthropic."""
    text, _usage, _stop = streamed_message(BETA_STREAM)

    async def call(url: str) -> str:
        async with anthropic.AsyncAnthropic(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            async with client.beta.messages.stream(**F.recorded_call(BETA_STREAM)) as stream:
                assert type(stream).__name__ == "BetaAsyncMessageStream"
                return "".join([piece async for piece in stream.text_stream])

    with served(BETA_STREAM) as server, steptrace.agent_run(agent="beta-stream"):
        assert asyncio.run(call(server.url())) == text
    assert_streamed_message(steptrace_capture, BETA_STREAM)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_beta_messages_create_stream_true(steptrace_capture: Capture, is_async: bool) -> None:
    """client.beta.messages.create(stream=True): the raw event stream, observed the same way."""

    async def call_async(url: str) -> None:
        async with anthropic.AsyncAnthropic(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            call = F.recorded_call(BETA_STREAM)
            async for _event in await client.beta.messages.create(**call, stream=True):
                pass

    with served(BETA_STREAM) as server, steptrace.agent_run(agent="beta-stream"):
        if is_async:
            asyncio.run(call_async(server.url()))
        else:
            client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
            for _event in client.beta.messages.create(**F.recorded_call(BETA_STREAM), stream=True):
                pass
            client.close()
    assert_streamed_message(steptrace_capture, BETA_STREAM)


# --- anthropic: structured outputs (parse) ---------------------------------------------------------
STRUCTURED = F.recorded("anthropic_structured_output.json")


class Joke(BaseModel):
    joke: str
    rating: int


@pytest.mark.parametrize("resource", ["messages", "beta.messages"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_parse_is_traced_once_with_its_tokens(
    steptrace_capture: Capture, resource: str, is_async: bool
) -> None:
    """messages.parse(output_format=...) and beta.messages.parse: the structured answer reaches the
    caller parsed, and the call is one llm_request with its tokens (counted once: parse does not
    go through create)."""
    response = STRUCTURED["response"]
    expected = Joke.model_validate_json(response["content"][0]["text"])
    call = F.recorded_call(STRUCTURED, "output_format")

    def parse_of(client: Any) -> Any:
        owner = client.beta.messages if resource == "beta.messages" else client.messages
        return owner.parse(**call, output_format=Joke)

    async def call_async(url: str) -> Any:
        async with anthropic.AsyncAnthropic(api_key=F.API_KEY, base_url=url, max_retries=0) as client:
            return await parse_of(client)

    with served(STRUCTURED) as server, steptrace.agent_run(agent="structured"):
        if is_async:
            message = asyncio.run(call_async(server.url()))
        else:
            client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
            message = parse_of(client)
            client.close()
    assert message.parsed_output == expected
    got = only_llm_span(steptrace_capture)
    assert got[A.GEN_AI_RESPONSE_ID] == response["id"]
    assert got[A.GEN_AI_USAGE_INPUT_TOKENS] == anthropic_input_tokens(response["usage"])
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] == response["usage"]["output_tokens"]
    assert got[A.STOP_REASON] == "end_turn"
    [out] = json.loads(got[A.GEN_AI_OUTPUT_MESSAGES])
    assert out["parts"] == [{"type": "text", "content": response["content"][0]["text"]}]
    [run] = records_of(steptrace_capture, "run")
    assert (run["llm_calls"], run["output_tokens"]) == (1, response["usage"]["output_tokens"])


def test_uninstrument_restores_beta_and_parse(steptrace_capture: Capture) -> None:
    """uninstrument_anthropic() leaves beta.messages and parse untraced again."""
    steptrace.uninstrument_anthropic()
    with served(BETA_TOOL_USE) as server:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
        client.beta.messages.create(**F.recorded_call(BETA_TOOL_USE))
        client.close()
    assert steptrace_capture.spans_named(A.SPAN_LLM_REQUEST) == []
    steptrace.instrument_anthropic()


def test_one_client_instrumented_traces_its_beta_messages(steptrace_capture: Capture) -> None:
    """instrument_anthropic(client): that client's beta.messages.create is traced too."""
    steptrace.uninstrument_anthropic()
    with served(BETA_TOOL_USE) as server:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
        steptrace.instrument_anthropic(client)
        client.beta.messages.create(**F.recorded_call(BETA_TOOL_USE))
        steptrace.uninstrument_anthropic(client)
        client.close()
    got = only_llm_span(steptrace_capture)
    assert got[A.GEN_AI_RESPONSE_ID] == BETA_TOOL_USE["response"]["id"]
    steptrace.instrument_anthropic()
