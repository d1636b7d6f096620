"""steptrace.instrument_bedrock with aiobotocore: the real async ``bedrock-runtime`` client (aiohttp)
against the fake Bedrock on 127.0.0.1. aiobotocore pins botocore to its own narrow range (3.10.0:
below 1.43.118, older than the project venv's), so these tests run in their own venv,
``make test-sdk-majors`` (.venv-sdk-aiobotocore)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

aiobotocore_session = pytest.importorskip(
    "aiobotocore.session", reason="aiobotocore pins an older botocore: run in .venv-sdk-aiobotocore"
)
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

import bedrock_fakes as B  # noqa: E402
import steptrace  # noqa: E402
from steptrace import _attributes as A  # noqa: E402
from steptrace.testing import Capture  # noqa: E402

MESSAGES = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
ORIGINAL = pytest.importorskip("aiobotocore.client").AioBaseClient.__dict__["_make_api_call"]


@pytest.fixture(autouse=True)
def instrumented(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "1")
    steptrace.instrument_bedrock()
    yield
    steptrace.uninstrument_bedrock()


@pytest.fixture
def capture(steptrace_capture: Capture) -> Capture:
    steptrace_capture.configure(capture_content=True)
    return steptrace_capture


@asynccontextmanager
async def client_for(server: B.BedrockServer) -> AsyncIterator[Any]:
    session = aiobotocore_session.get_session()
    async with session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy-secret",
        config=Config(retries={"total_max_attempts": 1}),
    ) as client:
        yield client


def only_llm(capture: Capture) -> dict[str, Any]:
    (span,) = capture.spans_named(A.SPAN_LLM_REQUEST)
    return dict(span.attributes or {})


def test_async_converse_in_a_step_is_one_llm_request(capture: Capture) -> None:
    """An awaited converse would be no span: no tokens, stop reason or tool-call ids in the run."""

    async def main(server: B.BedrockServer) -> str:
        async with client_for(server) as client:
            with steptrace.agent_run(agent="weather"), steptrace.agent_step():
                reply = await client.converse(modelId=B.MODEL, messages=MESSAGES)
        return str(reply["output"]["message"]["content"][0]["text"])

    turn = B.converse_response(
        "Checking.", tool_use=("tooluse_1", "get_weather", {"city": "Paris"}), stop_reason="tool_use"
    )
    with B.BedrockServer(B.json_reply(turn)) as server:
        assert asyncio.run(main(server)) == "Checking."
    got = only_llm(capture)
    expected = {
        A.GEN_AI_PROVIDER_NAME: "aws.bedrock",
        A.GEN_AI_REQUEST_MODEL: B.MODEL,
        A.GEN_AI_USAGE_INPUT_TOKENS: 12,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
        A.STOP_REASON: "tool_use",
    }
    assert {k: got.get(k) for k in expected} == expected
    assert json.loads(got[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "tooluse_1"}]
    (record,) = [r for r in capture.records if r["type"] == "llm_call"]
    assert record["agent_step"] == 1


def test_async_converse_stream_read_with_async_for(capture: Capture) -> None:
    """An async converse_stream would be untraced, or its events no longer readable with async for."""

    async def main(server: B.BedrockServer) -> str:
        async with client_for(server) as client:
            response = await client.converse_stream(modelId=B.MODEL, messages=MESSAGES)
            pieces = [
                e["contentBlockDelta"]["delta"]["text"]
                async for e in response["stream"]
                if "contentBlockDelta" in e
            ]
        return "".join(pieces)

    with B.BedrockServer(B.stream_reply(B.converse_events(["It ", "is ", "sunny"]), gap=0.01)) as server:
        assert asyncio.run(main(server)) == "It is sunny"
    got = only_llm(capture)
    assert (got[A.GEN_AI_REQUEST_STREAM], got[A.STOP_REASON], got[A.LLM_STREAM_COMPLETED]) == (
        True,
        "end_turn",
        True,
    )
    assert (got[A.GEN_AI_USAGE_INPUT_TOKENS], got[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (12, 5)
    assert got[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


@pytest.mark.parametrize("family", ["anthropic", "llama"])
def test_async_invoke_model_body_is_still_awaitable(capture: Capture, family: str) -> None:
    """An awaited invoke_model would hand back a body ``await body.read()`` cannot read, or no span."""
    if family == "anthropic":
        model, request = (
            B.MODEL,
            {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        )
        reply, tokens, stop = B.anthropic_body("Hello."), (20, 7), "end_turn"
    else:
        model, request = B.LLAMA, {"prompt": "Hi", "max_gen_len": 64}
        reply, tokens, stop = B.llama_body("Hello."), (17, 6), "end_turn"

    async def main(server: B.BedrockServer) -> tuple[Any, bytes]:
        async with client_for(server) as client:
            response = await client.invoke_model(modelId=model, body=json.dumps(request))
            async with response["body"] as body:
                first = await body.read(3)
                rest = await body.read()
        return json.loads(first + rest), first

    with B.BedrockServer(B.json_reply(reply, tokens=tokens)) as server:
        body, first = asyncio.run(main(server))
    assert body == reply and first == b'{"' + json.dumps(reply).encode()[2:3]
    got = only_llm(capture)
    assert (got[A.GEN_AI_USAGE_INPUT_TOKENS], got[A.GEN_AI_USAGE_OUTPUT_TOKENS], got[A.STOP_REASON]) == (
        *tokens,
        stop,
    )


def test_async_invoke_model_with_response_stream(capture: Capture) -> None:
    """An async invoke_model_with_response_stream would be untraced or unreadable with async for."""

    async def main(server: B.BedrockServer) -> str:
        async with client_for(server) as client:
            response = await client.invoke_model_with_response_stream(
                modelId=B.TITAN, body=json.dumps({"inputText": "Hi"})
            )
            return "".join([json.loads(e["chunk"]["bytes"])["outputText"] async for e in response["body"]])

    with B.BedrockServer(B.stream_reply(B.titan_chunks(["Hel", "lo."]))) as server:
        assert asyncio.run(main(server)) == "Hello."
    got = only_llm(capture)
    assert (got[A.GEN_AI_USAGE_INPUT_TOKENS], got[A.GEN_AI_USAGE_OUTPUT_TOKENS], got[A.STOP_REASON]) == (
        8,
        2,
        "end_turn",
    )
    assert got[A.LLM_STREAM_COMPLETED] is True


def test_async_service_error_fails_the_span_and_reaches_the_caller(capture: Capture) -> None:
    """A ThrottlingException would be swallowed, changed, or leave the span unfailed."""

    async def main(server: B.BedrockServer) -> None:
        async with client_for(server) as client:
            await client.converse(modelId=B.MODEL, messages=MESSAGES)

    with B.BedrockServer(B.error_reply("ThrottlingException", "Rate exceeded", 429)) as server:
        with pytest.raises(ClientError, match="Rate exceeded"):
            asyncio.run(main(server))
    (span,) = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[A.ERROR_TYPE] == "ThrottlingException"


def test_async_untraced_without_configuration_and_after_uninstrument() -> None:
    """Without steptrace configured, or after uninstrument_bedrock(), an async call would fail."""
    from aiobotocore.client import AioBaseClient

    async def main(server: B.BedrockServer) -> str:
        async with client_for(server) as client:
            reply = await client.converse(modelId=B.MODEL, messages=MESSAGES)
        return str(reply["stopReason"])

    with B.BedrockServer(B.json_reply(B.converse_response()), B.json_reply(B.converse_response())) as server:
        assert AioBaseClient.__dict__["_make_api_call"] is not ORIGINAL
        assert asyncio.run(main(server)) == "end_turn"
        steptrace.uninstrument_bedrock()
        assert AioBaseClient.__dict__["_make_api_call"] is ORIGINAL
        assert asyncio.run(main(server)) == "end_turn"
