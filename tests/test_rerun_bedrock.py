"""steptrace.rerun with the real boto3 bedrock-runtime client: recorded against the fake Bedrock on
127.0.0.1, re-run after the server is stopped, so nothing can reach the network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

import bedrock_fakes as B
import steptrace
from steptrace.testing import Capture

MESSAGES = [{"role": "user", "content": [{"text": "Capital of France?"}]}]
INVOKE_BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
    }
)


@pytest.fixture(autouse=True)
def instrumented(steptrace_capture: Capture) -> Iterator[None]:
    steptrace_capture.configure(record_for_rerun=True)
    steptrace.instrument_bedrock()
    yield
    steptrace.uninstrument_bedrock()


def only_recording(capture: Capture) -> str:
    (path,) = sorted((capture.jsonl_path.parent / "rerun").glob("*.jsonl"))
    return path.stem


def agent(client: Any) -> tuple[str, str, str, str]:
    with steptrace.agent_run(agent="bedrock"):
        reply = client.converse(modelId=B.MODEL, messages=MESSAGES)
        stream = client.converse_stream(modelId=B.MODEL, messages=MESSAGES)
        text = "".join(
            e["contentBlockDelta"]["delta"]["text"] for e in stream["stream"] if "contentBlockDelta" in e
        )
        invoked = json.loads(client.invoke_model(modelId=B.MODEL, body=INVOKE_BODY)["body"].read())
        return (
            reply["output"]["message"]["content"][0]["text"],
            text,
            invoked["content"][0]["text"],
            stream["ResponseMetadata"]["RequestId"],
        )


def test_converse_converse_stream_and_invoke_model_rerun_offline(steptrace_capture: Capture) -> None:
    """The rerun returns botocore's converse dict, the recorded converse_stream events (under
    "stream", with the recorded ResponseMetadata) and invoke_model's readable body, server stopped."""
    with B.BedrockServer(
        B.json_reply(B.converse_response("Paris.")),
        B.stream_reply(B.converse_events(["Par", "is", "!"])),
        B.json_reply(B.anthropic_body("Hello.")),
    ) as server:
        client = server.client()
        recorded = agent(client)
    assert recorded == ("Paris.", "Paris!", "Hello.", "req-0001")
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert agent(client) == recorded
    assert len(server.requests) == 3
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


def test_a_recorded_throttling_error_is_served_as_a_client_error(steptrace_capture: Capture) -> None:
    """A ThrottlingException the agent caught with ``except ClientError`` (reading the code) is
    served as a ClientError with the same code and message, so the rerun takes the same branch."""

    def retrying_agent(client: Any) -> tuple[str, str]:
        with steptrace.agent_run(agent="bedrock-retry"):
            try:
                client.converse(modelId=B.MODEL, messages=MESSAGES)
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                reply = client.converse(modelId=B.MODEL, messages=MESSAGES)
                return code, reply["output"]["message"]["content"][0]["text"]
            return "no error", ""

    with B.BedrockServer(
        B.error_reply("ThrottlingException", "Rate exceeded", 429),
        B.json_reply(B.converse_response("Paris.")),
    ) as server:
        client = server.client()
        recorded = retrying_agent(client)
    assert recorded == ("ThrottlingException", "Paris.")
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert retrying_agent(client) == recorded
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


def test_invoke_model_with_response_stream_reruns_offline(steptrace_capture: Capture) -> None:
    """The rerun returns the recorded chunk events under "body", server stopped."""

    def streaming_agent(client: Any) -> list[str]:
        with steptrace.agent_run(agent="bedrock-invoke-stream"):
            response = client.invoke_model_with_response_stream(modelId=B.MODEL, body=INVOKE_BODY)
            return [json.loads(event["chunk"]["bytes"])["type"] for event in response["body"]]

    with B.BedrockServer(B.stream_reply(B.anthropic_chunks(["Par", "is"]))) as server:
        client = server.client()
        recorded = streaming_agent(client)
    assert recorded[0] == "message_start" and len(recorded) == 7
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert streaming_agent(client) == recorded
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


def test_other_families_invoke_model_bodies_rerun_offline(steptrace_capture: Capture) -> None:
    """A Llama invoke_model and a Titan streamed reply would call the stopped server on rerun (or
    return a body the agent cannot read): they are recorded and served as Anthropic bodies are."""
    llama = json.dumps({"prompt": "Capital of France?", "max_gen_len": 64})
    titan = json.dumps({"inputText": "Capital of France?"})

    def other_agent(client: Any) -> tuple[str, str]:
        with steptrace.agent_run(agent="bedrock-families"):
            generated = json.loads(client.invoke_model(modelId=B.LLAMA, body=llama)["body"].read())
            response = client.invoke_model_with_response_stream(modelId=B.TITAN, body=titan)
            text = "".join(json.loads(event["chunk"]["bytes"])["outputText"] for event in response["body"])
            return generated["generation"], text

    with B.BedrockServer(
        B.json_reply(B.llama_body("Paris."), tokens=(17, 6)),
        B.stream_reply(B.titan_chunks(["Par", "is."])),
    ) as server:
        client = server.client()
        recorded = other_agent(client)
    assert recorded == ("Paris.", "Paris.")
    (run,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert (run["llm_calls"], run["input_tokens"], run["output_tokens"]) == (2, 17 + 8, 6 + 2)
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert other_agent(client) == recorded
    assert len(server.requests) == 2
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


@pytest.mark.parametrize(
    "change",
    [
        {"modelId": "amazon.nova-pro-v1:0"},
        {"toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {}}}}]}},
    ],
    ids=["model", "tools"],
)
def test_a_fix_that_changes_the_model_or_tools_is_not_called_reproduced(
    steptrace_capture: Capture, change: dict[str, Any]
) -> None:
    """Switching the Bedrock model (``modelId``) or its tools is a change a rerun must see: the
    recorded answer to another model's call is served, but the verdict names what was asked."""

    def ask(client: Any, **extra: Any) -> str:
        with steptrace.agent_run(agent="bedrock-model"):
            reply = client.converse(**{"modelId": B.MODEL, "messages": MESSAGES, **extra})
            return str(reply["output"]["message"]["content"][0]["text"])

    with B.BedrockServer(B.json_reply(B.converse_response("Paris."))) as server:
        client = server.client()
        assert ask(client) == "Paris."
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        ask(client, **change)
    assert rerun.report is not None and not rerun.report.reproduced
    assert next(iter(change)) in str(rerun.report), rerun.report
