"""steptrace.rerun with the real openai and anthropic SDKs: recorded against a 127.0.0.1 server,
re-run after the server is stopped, so nothing can reach the network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

import sdk_fakes as F
import steptrace
from steptrace.testing import Capture
from test_instrument_openai_surface import full_response_events

MESSAGES = [{"role": "user", "content": "Capital of France?"}]


@pytest.fixture(autouse=True)
def instrumented(steptrace_capture: Capture) -> Iterator[None]:
    steptrace_capture.configure(record_for_rerun=True)
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    yield
    steptrace.uninstrument_openai()
    steptrace.uninstrument_anthropic()


def only_recording(capture: Capture) -> str:
    (path,) = sorted((capture.jsonl_path.parent / "rerun").glob("*.jsonl"))
    return path.stem


def openai_agent(client: openai.OpenAI) -> tuple[str, str]:
    with steptrace.agent_run(agent="oa"):
        reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        return str(reply.choices[0].message.content), text


def test_openai_chat_plain_and_streamed_rerun_offline(steptrace_capture: Capture) -> None:
    """The rerun returns a ChatCompletion and a stream of ChatCompletionChunk, server stopped."""
    script = F.Script(
        F.json_reply(F.chat_completion("Paris.")),
        F.sse_reply(F.openai_sse(F.chat_chunks(["Par", "is", "!"]))),
    )
    with F.FakeServer(script) as server:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        assert openai_agent(client) == ("Paris.", "Paris!")
    assert len(script.requests) == 2
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert openai_agent(client) == ("Paris.", "Paris!")
    client.close()
    assert len(script.requests) == 2
    assert rerun.report is not None and rerun.report.reproduced


def anthropic_agent(client: anthropic.Anthropic) -> tuple[str, str]:
    with steptrace.agent_run(agent="an"):
        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
        stream = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, stream=True
        )
        text = "".join(e.delta.text for e in stream if e.type == "content_block_delta")
        first = message.content[0]
        assert isinstance(first, anthropic.types.TextBlock)
        return first.text, text


def test_anthropic_messages_plain_and_streamed_rerun_offline(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """The rerun returns an anthropic Message and the recorded stream events, server stopped."""
    script = F.Script(
        F.json_reply(F.anthropic_message("Paris.")),
        F.sse_reply(F.anthropic_sse(F.anthropic_events(["Par", "is", "!"]))),
    )
    with F.FakeServer(script) as server:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
        assert anthropic_agent(client) == ("Paris.", "Paris!")
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert anthropic_agent(client) == ("Paris.", "Paris!")
    client.close()
    assert len(script.requests) == 2
    assert rerun.report is not None and rerun.report.reproduced


def test_anthropic_stream_helper_reruns_offline(steptrace_capture: Capture) -> None:
    """messages.stream(...) (the helper most Anthropic agents use: text_stream, then
    get_final_message()) is served from the recording with the server stopped."""
    script = F.Script(F.sse_reply(F.anthropic_sse(F.anthropic_events(["Par", "is", "!"]))))

    def agent(client: anthropic.Anthropic) -> tuple[str, str, int]:
        with (
            steptrace.agent_run(agent="an-stream"),
            client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as stream,
        ):
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
            first = final.content[0]
            assert isinstance(first, anthropic.types.TextBlock)
            return text, first.text, final.usage.output_tokens

    with F.FakeServer(script) as server:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=server.url(), max_retries=0)
        recorded = agent(client)
    assert recorded[:2] == ("Paris!", "Paris!")
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert agent(client) == recorded
    client.close()
    assert len(script.requests) == 1
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


def test_openai_responses_plain_and_streamed_rerun_offline(steptrace_capture: Capture) -> None:
    """responses.create, plain and stream=True: a Response and the recorded event stream."""
    script = F.Script(
        F.json_reply(F.response_object("Paris.")),
        F.sse_reply(F.responses_sse(F.response_events(["Par", "is", "!"]))),
    )

    def agent(client: openai.OpenAI) -> tuple[str, str]:
        with steptrace.agent_run(agent="oa-responses"):
            reply = client.responses.create(model="gpt-4o", input="Capital of France?")
            stream = client.responses.create(model="gpt-4o", input="Capital of France?", stream=True)
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            return reply.output_text, text

    with F.FakeServer(script) as server:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        assert agent(client) == ("Paris.", "Paris!")
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert agent(client) == ("Paris.", "Paris!")
    client.close()
    assert len(script.requests) == 2
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


def test_async_openai_and_anthropic_rerun_offline(steptrace_capture: Capture) -> None:
    """AsyncOpenAI and AsyncAnthropic calls in asyncio tasks are served from the recording."""
    import asyncio

    script = F.Script(
        F.json_reply(F.chat_completion("Paris.")),
        F.json_reply(F.anthropic_message("Lyon.")),
    )

    async def agent(url: str) -> list[str]:
        # Clients made and closed in the loop that uses them: no transport outlives its loop.
        async with (
            openai.AsyncOpenAI(api_key=F.API_KEY, base_url=f"{url}/v1", max_retries=0) as oa,
            anthropic.AsyncAnthropic(api_key=F.API_KEY, base_url=url, max_retries=0) as an,
        ):
            with steptrace.agent_run(agent="async"):
                reply = await oa.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                message = await asyncio.create_task(
                    an.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
                )
                first = message.content[0]
                assert isinstance(first, anthropic.types.TextBlock)
                return [str(reply.choices[0].message.content), first.text]

    with F.FakeServer(script) as server:
        url = server.url()
        assert asyncio.run(agent(url)) == ["Paris.", "Lyon."]
    with steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun:
        assert asyncio.run(agent(url)) == ["Paris.", "Lyon."]
    assert len(script.requests) == 2
    assert rerun.report is not None and rerun.report.reproduced, rerun.report


def test_a_rerun_instruments_an_sdk_the_process_did_not_and_says_so(
    steptrace_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """llm="recorded" after uninstrument_openai(): the recorded calls are still served (the
    server is stopped), and a warning at the rerun's start says openai was instrumented for it."""
    script = F.Script(
        F.json_reply(F.chat_completion("Paris.")),
        F.sse_reply(F.openai_sse(F.chat_chunks(["Par", "is", "!"]))),
    )
    with F.FakeServer(script) as server:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        assert openai_agent(client) == ("Paris.", "Paris!")
    steptrace.uninstrument_openai()
    with (
        caplog.at_level("WARNING", logger="steptrace.rerun"),
        steptrace.rerun(only_recording(steptrace_capture), log=steptrace_capture.jsonl_path) as rerun,
    ):
        assert openai_agent(client) == ("Paris.", "Paris!")
    client.close()
    assert len(script.requests) == 2
    warning = (
        "the recording has 2 openai model calls, but openai was not instrumented in this process: "
        "steptrace instrumented it so they are served from the recording, not sent"
    )
    assert any(warning in message for message in caplog.messages)
    assert rerun.report is not None and rerun.report.reproduced and rerun.report.warnings == [warning]


def _chat_stream_helper(client: openai.OpenAI, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    with client.chat.completions.stream(model="gpt-4o", messages=messages) as stream:  # type: ignore[arg-type]
        for _event in stream:
            pass
        return str(stream.get_final_completion().choices[0].message.content)


def _responses_stream_helper(client: openai.OpenAI, question: str) -> str:
    with client.responses.stream(model="gpt-4o", input=question) as stream:
        for _event in stream:
            pass
        return stream.get_final_response().output_text


@pytest.mark.parametrize(
    ("reply", "ask"),
    [
        (lambda: F.openai_sse(F.chat_chunks(["Par", "is", "!"])), _chat_stream_helper),
        (lambda: F.responses_sse(full_response_events(["Par", "is", "!"])), _responses_stream_helper),
    ],
    ids=["chat.completions.stream", "responses.stream"],
)
def test_a_changed_prompt_of_an_openai_stream_helper_is_a_divergence(
    steptrace_capture: Capture, reply: Any, ask: Any
) -> None:
    """The OpenAI stream helpers send through create(...): their request is recorded whole, so a
    changed question is reported, not served as reproduced."""
    script = F.Script(F.sse_reply(reply()))
    with F.FakeServer(script) as server:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=server.url("/v1"), max_retries=0)
        with steptrace.agent_run(agent="oa-helper"):
            assert ask(client, "Capital of France?") == "Paris!"
    recording = only_recording(steptrace_capture)
    for question, reproduced in (("Capital of France?", True), ("Capital of Spain?", False)):
        with steptrace.rerun(recording, log=steptrace_capture.jsonl_path) as rerun:
            with steptrace.agent_run(agent="oa-helper"):
                assert ask(client, question) == "Paris!"
        assert rerun.report is not None and rerun.report.reproduced is reproduced, rerun.report.verdict
        if not reproduced:
            assert "model call 1 asked for something else" in str(rerun.report.divergence)
    client.close()


@pytest.mark.parametrize("call", ["generate_content_stream", "aio", "generate_content"])
def test_a_changed_prompt_of_google_genai_is_a_divergence(steptrace_capture: Capture, call: str) -> None:
    """google-genai's request was recorded whole, but its contents and its config's system
    instruction were not compared: any prompt was served as reproduced."""
    from google.genai import types

    import genai_fakes as G

    steptrace.instrument_google_genai()
    if call == "generate_content":
        reply = F.json_reply(G.response("Paris!"))
    else:
        reply = F.sse_reply(G.sse(G.chunks(["Par", "is!"])))
    try:
        with F.FakeServer(F.Script(reply)) as server:
            client = G.client(server)

            def ask(question: str, system: str = "Be short.") -> str:
                options: Any = {
                    "model": "gemini-2.5-flash",
                    "contents": question,
                    "config": types.GenerateContentConfig(temperature=0.0, system_instruction=system),
                }
                with steptrace.agent_run(agent="gg"):
                    if call == "generate_content":
                        return str(client.models.generate_content(**options).text)
                    if call == "generate_content_stream":
                        return "".join(c.text or "" for c in client.models.generate_content_stream(**options))

                    async def streamed() -> str:
                        chunks = await client.aio.models.generate_content_stream(**options)
                        return "".join([c.text or "" async for c in chunks])

                    return G.run_async(server, streamed())

            assert ask("Capital of France?") == "Paris!"
            recording = only_recording(steptrace_capture)
            for question, system, changed in (
                ("Capital of France?", "Be short.", None),
                ("Capital of Spain?", "Be short.", "contents: expected 'Capital of France?'"),
                ("Capital of France?", "Be long.", "config.system_instruction: expected 'Be short.'"),
            ):
                with steptrace.rerun(recording, log=steptrace_capture.jsonl_path) as rerun:
                    assert ask(question, system) == "Paris!"
                report = rerun.report
                assert report is not None and report.reproduced is (changed is None), report.verdict
                if changed is not None:
                    assert changed in str(report.divergence), report.divergence
    finally:
        steptrace.uninstrument_google_genai()
