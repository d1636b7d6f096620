"""steptrace.instrument_openai_agents: the real OpenAI Agents SDK, its Responses and Chat Completions
models pointed at a fake OpenAI server on 127.0.0.1. Runs, turns, handoffs, tools (failing too),
guardrails, max turns, streamed runs consumed and abandoned, with the SDK's tracing off and on."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    MaxTurnsExceeded,
    OutputGuardrailTripwireTriggered,
    Runner,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrailTripwireTriggered,
    function_tool,
    input_guardrail,
    output_guardrail,
    set_tracing_disabled,
    tool_input_guardrail,
)
from agents.models.interface import Model
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from agents.tracing import get_trace_provider
from agents.tracing.processors import default_exporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import sdk_fakes as F
import steptrace
from agents_fakes import ModelTurns, call_turn, text_turn
from steptrace import _attributes as A
from steptrace.analysis import debug_run, load
from steptrace.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from steptrace.testing import Capture

APIS = ["responses", "chat"]
# Tokens each fake reply reports (sdk_fakes defaults): Responses 20 in / 7 out, Chat 12 / 5.
TOKENS = {"responses": (20, 7), "chat": (12, 5)}
STREAMED_CHAT_TOKENS = (12, 50)
HTTP = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    steptrace.instrument_openai_agents()
    yield
    steptrace.uninstrument_openai_agents()


@pytest.fixture(autouse=True)
def sdk_tracing_off() -> Iterator[None]:
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(True)


@pytest.fixture
def capture(steptrace_capture: Capture) -> Capture:
    steptrace_capture.configure(capture_content=True)
    return steptrace_capture


_clients: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close the test's clients, and the default loop ``Runner.run_sync`` leaves open on purpose."""
    yield
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = policy.get_event_loop()
        except RuntimeError:  # none set (asyncio.run unset it)
            loop = asyncio.new_event_loop()
    try:
        while _clients:  # no pooled connections (keep-alive off): closing needs no loop of theirs
            loop.run_until_complete(_clients.pop().close())
    finally:
        loop.close()
        policy.set_event_loop(None)


def model_for(api: str, server: F.FakeServer) -> Model:
    # The client is given to the model directly: the SDK's default client (and its tracing key)
    # is never touched. No keep-alive: runs end their event loops, pooled sockets would leak.
    http_client = openai.DefaultAsyncHttpxClient(limits=HTTP.Limits(max_keepalive_connections=0))
    client = openai.AsyncOpenAI(
        base_url=server.url("/v1"), api_key=F.API_KEY, max_retries=0, http_client=http_client
    )
    _clients.append(client)
    if api == "responses":
        return OpenAIResponsesModel("gpt-4.1", client)
    return OpenAIChatCompletionsModel("gpt-4o", client)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == "Atlantis":
        raise ValueError("no such city")
    return f"sunny in {city}"


@function_tool(failure_error_function=None)
def strict_weather(city: str) -> str:
    """The weather in a city; its errors propagate."""
    raise ValueError(f"no weather for {city}")


@function_tool
def search(query: str) -> str:
    """Search the documents."""
    return "nothing found"


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def children(capture: Capture, parent: ReadableSpan, name: str) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        s
        for s in capture.spans_named(name)
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def only_run(capture: Capture) -> ReadableSpan:
    (run,) = capture.spans_named(A.SPAN_AGENT_RUN)
    return run


def steps(capture: Capture) -> list[ReadableSpan]:
    return sorted(capture.spans_named(A.SPAN_AGENT_STEP), key=lambda s: attrs(s)[A.AGENT_STEP_NUMBER])


def record_of(capture: Capture, kind: str) -> list[dict[str, Any]]:
    return [r for r in capture.records if r["type"] == kind]


def assert_one_llm_request_per_step(capture: Capture) -> list[ReadableSpan]:
    """Every agent_step holds exactly one llm_request, and there are no others."""
    llm_spans = []
    for step in steps(capture):
        (llm,) = children(capture, step, A.SPAN_LLM_REQUEST)
        llm_spans.append(llm)
    assert len(capture.spans_named(A.SPAN_LLM_REQUEST)) == len(llm_spans)
    return llm_spans


# --- a run with a tool --------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_run_with_a_tool_is_one_clean_tree(capture: Capture, api: str) -> None:
    """Runner.run would show no run, duplicated model calls, or a tool outside its turn."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))
    with F.FakeServer(script) as server:
        agent = Agent(name="weather", tools=[get_weather], model=model_for(api, server))
        result = asyncio.run(Runner.run(agent, "Weather in Paris?"))
    assert result.final_output == "It is sunny."

    run = only_run(capture)
    assert attrs(run)[A.GEN_AI_AGENT_NAME] == "weather"
    first, second = steps(capture)
    assert [s.parent.span_id for s in (first, second) if s.parent] == [run.context.span_id] * 2  # type: ignore[union-attr]
    assert [attrs(s)[A.GEN_AI_AGENT_NAME] for s in (first, second)] == ["weather", "weather"]
    first_llm, second_llm = assert_one_llm_request_per_step(capture)
    (tool,) = children(capture, first, A.SPAN_TOOL_EXECUTION)
    assert children(capture, second, A.SPAN_TOOL_EXECUTION) == []

    tool_attrs = attrs(tool)
    assert tool_attrs[A.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool_attrs[A.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert json.loads(tool_attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert json.loads(tool_attrs[A.GEN_AI_TOOL_CALL_RESULT]) == "sunny in Paris"
    assert A.TOOL_ARGS_HASH in tool_attrs and tool.status.status_code is not StatusCode.ERROR

    input_tokens, output_tokens = TOKENS[api]
    for llm in (first_llm, second_llm):
        llm_attrs = attrs(llm)
        assert llm_attrs[A.GEN_AI_PROVIDER_NAME] == "openai"
        assert llm_attrs[A.GEN_AI_USAGE_INPUT_TOKENS] == input_tokens
        assert llm_attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] == output_tokens
        assert llm_attrs[A.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs(first_llm)[A.STOP_REASON] == "tool_use"
    assert json.loads(attrs(first_llm)[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "call_1"}]
    assert attrs(second_llm)[A.STOP_REASON] == "end_turn"

    (run_record,) = record_of(capture, "run")
    assert run_record["agent"] == "weather"
    assert run_record["stop_reason"] == "end_turn"
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (2, 2, 1)
    assert (run_record["input_tokens"], run_record["output_tokens"]) == (2 * input_tokens, 2 * output_tokens)
    assert run_record["errors"] == 0
    step_records = sorted(record_of(capture, "agent_step"), key=lambda r: r["agent_step"])
    assert [r["agent"] for r in step_records] == ["weather", "weather"]
    assert [r["ends_run"] for r in step_records] == [False, True]
    assert step_records[1]["stop_reason"] == "end_turn"
    assert len(script.model_requests) == 2


# --- failing tools ------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_tool_error_turned_into_a_message_still_fails_the_tool_span(capture: Capture, api: str) -> None:
    """A tool error the SDK hands the model as text would look like a successful tool call."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Atlantis"}'), text_turn("No such city."))
    with F.FakeServer(script) as server:
        agent = Agent(name="weather", tools=[get_weather], model=model_for(api, server))
        result = Runner.run_sync(agent, "Weather in Atlantis?")
    assert result.final_output == "No such city."

    (tool,) = capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert tool.status.status_code is StatusCode.ERROR
    assert attrs(tool)[A.ERROR_TYPE] == "ValueError"
    message = json.loads(attrs(tool)[A.GEN_AI_TOOL_CALL_RESULT])
    assert "error occurred while running the tool" in message  # what the model was told
    assert message in script.model_requests[1].content.decode()

    (tool_record,) = record_of(capture, "tool_call")
    assert (tool_record["status"], tool_record["error"]) == ("error", "ValueError: no such city")
    (run_record,) = record_of(capture, "run")
    assert (run_record["stop_reason"], run_record["errors"], run_record["tool_calls"]) == ("end_turn", 1, 1)
    run = load(capture.jsonl_path).get(run_record["run_id"])
    assert run is not None
    (hypothesis,) = debug_run(run).hypotheses
    assert hypothesis.kind == "tool_failure"
    assert "get_weather failed" in hypothesis.title and "ValueError: no such city" in hypothesis.title


def test_tool_error_without_error_function_fails_tool_and_run(capture: Capture) -> None:
    """A tool exception that ends the run would be blamed on the run, not the tool."""
    script = ModelTurns(call_turn("strict_weather", '{"city": "Oslo"}'))
    with F.FakeServer(script) as server:
        agent = Agent(name="weather", tools=[strict_weather], model=model_for("responses", server))
        with pytest.raises(Exception, match="no weather for Oslo"):
            Runner.run_sync(agent, "Weather in Oslo?")

    (tool_record,) = record_of(capture, "tool_call")
    assert tool_record["status"] == "error" and "no weather for Oslo" in tool_record["error"]
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "error"
    assert run_record["errors"] == 1  # the same exception leaving tool, step and run counts once


# --- handoffs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_handoff_shows_which_agent_ran_each_step(capture: Capture, api: str) -> None:
    """After a handoff the steps would still be labelled with the starting agent."""
    script = ModelTurns(call_turn("transfer_to_billing"), text_turn("Refund issued."))
    with F.FakeServer(script) as server:
        billing = Agent(name="billing", model=model_for(api, server))
        triage = Agent(name="triage", handoffs=[billing], model=model_for(api, server))
        result = asyncio.run(Runner.run(triage, "I want a refund"))
    assert result.final_output == "Refund issued."

    assert attrs(only_run(capture))[A.GEN_AI_AGENT_NAME] == "triage"
    first, second = steps(capture)
    assert attrs(first)[A.GEN_AI_AGENT_NAME] == "triage"
    assert attrs(first)[A.AGENT_STEP_HANDOFF_TO] == "billing"
    assert attrs(second)[A.GEN_AI_AGENT_NAME] == "billing"
    assert_one_llm_request_per_step(capture)
    # A handoff is the SDK's routing, not a tool of the user's: no tool_execution for it.
    assert capture.spans_named(A.SPAN_TOOL_EXECUTION) == []
    step_records = sorted(record_of(capture, "agent_step"), key=lambda r: r["agent_step"])
    assert [(r["agent"], r["handoff_to"]) for r in step_records] == [("triage", "billing"), ("billing", None)]
    (run_record,) = record_of(capture, "run")
    assert (run_record["agent"], run_record["stop_reason"], run_record["steps"]) == ("triage", "end_turn", 2)


# --- stop reasons -------------------------------------------------------------------------------
def test_max_turns_is_max_steps_and_debug_names_the_loop(capture: Capture) -> None:
    """A run stopped by max_turns would read as a plain error, and debug would miss the loop."""
    script = ModelTurns(call_turn("search", '{"query": "refund policy"}'), repeat_last=True)
    with F.FakeServer(script) as server:
        agent = Agent(name="researcher", tools=[search], model=model_for("responses", server))
        with pytest.raises(MaxTurnsExceeded):
            Runner.run_sync(agent, "Find the refund policy", max_turns=4)

    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "max_steps"
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (4, 4, 4)
    assert only_run(capture).status.status_code is StatusCode.ERROR

    run = load(capture.jsonl_path).get(run_record["run_id"])
    assert run is not None
    report = debug_run(run)
    (repeated,) = report.repeated_tool_calls
    assert (repeated.tool, repeated.count) == ("search", 4)
    (loop,) = [h for h in report.hypotheses if h.kind == "loop"]
    assert "search" in loop.title and "max_steps" in loop.title


@input_guardrail
def no_homework(ctx: Any, agent: Any, input: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info="homework", tripwire_triggered="homework" in str(input))


@output_guardrail
def no_secrets(ctx: Any, agent: Any, output: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info="secret", tripwire_triggered="secret" in str(output))


def test_input_guardrail_tripwire_is_guardrail(capture: Capture) -> None:
    """A guardrail that stopped the run would be reported as a crash (stop reason error)."""
    script = ModelTurns(text_turn("Here is your homework."))
    with F.FakeServer(script) as server:
        agent = Agent(name="tutor", input_guardrails=[no_homework], model=model_for("responses", server))
        with pytest.raises(InputGuardrailTripwireTriggered):
            Runner.run_sync(agent, "Do my homework")
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "guardrail"
    assert run_record["error_type"] == "agents.exceptions.InputGuardrailTripwireTriggered"


def test_output_guardrail_tripwire_is_guardrail(capture: Capture) -> None:
    """An answer blocked by an output guardrail would be reported as a normal end_turn."""
    script = ModelTurns(text_turn("The secret is 42."))
    with F.FakeServer(script) as server:
        agent = Agent(name="vault", output_guardrails=[no_secrets], model=model_for("chat", server))
        with pytest.raises(OutputGuardrailTripwireTriggered):
            asyncio.run(Runner.run(agent, "Tell me"))
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "guardrail"
    assert_one_llm_request_per_step(capture)


def test_model_failure_is_error_on_the_llm_request(capture: Capture) -> None:
    """A failing model call would leave the run without an error or blame the step."""
    script = F.Script(F.error_reply(500, "upstream down"))
    with F.FakeServer(script) as server:
        agent = Agent(name="weather", model=model_for("responses", server))
        with pytest.raises(openai.InternalServerError):
            Runner.run_sync(agent, "Weather?")
    (llm_record,) = record_of(capture, "llm_call")
    assert llm_record["status"] == "error" and llm_record["error_type"] == "openai.InternalServerError"
    (run_record,) = record_of(capture, "run")
    assert (run_record["stop_reason"], run_record["errors"]) == ("error", 1)


# --- streamed runs ------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_streamed_run_consumed_to_the_end(capture: Capture, api: str) -> None:
    """Runner.run_streamed would leave no run, or the run would end before the stream did."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))

    async def main(server: F.FakeServer) -> tuple[Any, int]:
        agent = Agent(name="weather", tools=[get_weather], model=model_for(api, server))
        result = Runner.run_streamed(agent, "Weather in Paris?")
        events = [event async for event in result.stream_events()]
        return result.final_output, len(events)

    with F.FakeServer(script) as server:
        final, events = asyncio.run(main(server))
    assert final == "It is sunny." and events > 0

    run = only_run(capture)
    assert attrs(run)[A.GEN_AI_AGENT_NAME] == "weather"
    llm_spans = assert_one_llm_request_per_step(capture)
    assert [attrs(s)[A.GEN_AI_REQUEST_STREAM] for s in llm_spans] == [True, True]
    assert all(span.end_time <= run.end_time for span in capture.spans if span.end_time and run.end_time)  # type: ignore[operator]
    (tool,) = capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert json.loads(attrs(tool)[A.GEN_AI_TOOL_CALL_RESULT]) == "sunny in Paris"
    (run_record,) = record_of(capture, "run")
    expected = TOKENS["responses"] if api == "responses" else STREAMED_CHAT_TOKENS
    assert (run_record["input_tokens"], run_record["output_tokens"]) == (2 * expected[0], 2 * expected[1])
    assert (run_record["stop_reason"], run_record["steps"], run_record["llm_calls"]) == ("end_turn", 2, 2)


def test_streamed_run_abandoned_and_cancelled_ends_its_spans(capture: Capture) -> None:
    """A caller that stops reading and cancels would leave the run's spans open forever."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))

    async def main(server: F.FakeServer) -> None:
        agent = Agent(name="weather", tools=[get_weather], model=model_for("responses", server))
        result = Runner.run_streamed(agent, "Weather in Paris?")
        async for event in result.stream_events():
            if event.type == "raw_response_event":  # inside the first model call's stream
                break
        result.cancel()
        await asyncio.sleep(0.05)

    with F.FakeServer(script) as server:
        asyncio.run(main(server))
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "cancelled"
    # Every span that was started ended and belongs to the run.
    assert {r["run_id"] for r in capture.records} == {run_record["run_id"]}
    (step,) = capture.spans_named(A.SPAN_AGENT_STEP)
    (llm,) = children(capture, step, A.SPAN_LLM_REQUEST)
    assert attrs(llm)[A.CANCELLED] is True and attrs(step)[A.CANCELLED] is True


def test_streamed_run_abandoned_without_cancel_still_ends(capture: Capture) -> None:
    """A caller that stops reading (no cancel) would leave a run with no record."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))

    async def main(server: F.FakeServer) -> None:
        agent = Agent(name="weather", tools=[get_weather], model=model_for("chat", server))
        result = Runner.run_streamed(agent, "Weather in Paris?")
        async for _event in result.stream_events():
            break

    with F.FakeServer(script) as server:
        asyncio.run(main(server))  # leaves the run's task to the loop's shutdown
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] in ("cancelled", "end_turn")
    for step in capture.spans_named(A.SPAN_AGENT_STEP):
        assert step.parent is not None and step.parent.span_id == only_run(capture).context.span_id  # type: ignore[union-attr]


def test_streamed_max_turns_is_max_steps(capture: Capture) -> None:
    """A streamed run stopped by max_turns would read as a success."""
    script = ModelTurns(call_turn("search", '{"query": "x"}'), repeat_last=True)

    async def main(server: F.FakeServer) -> None:
        agent = Agent(name="researcher", tools=[search], model=model_for("responses", server))
        result = Runner.run_streamed(agent, "Find it", max_turns=2)
        async for _event in result.stream_events():
            pass

    with F.FakeServer(script) as server, pytest.raises(MaxTurnsExceeded):
        asyncio.run(main(server))
    (run_record,) = record_of(capture, "run")
    assert (run_record["stop_reason"], run_record["steps"], run_record["status"]) == ("max_steps", 2, "error")


# --- with instrument_openai() on too ------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_with_openai_instrumented_too_each_model_call_is_counted_once(
    capture: Capture, api: str, streamed: bool
) -> None:
    """instrument_openai() as well would double the llm_request spans and the token totals."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))

    async def main(server: F.FakeServer) -> None:
        agent = Agent(name="weather", tools=[get_weather], model=model_for(api, server))
        if streamed:
            result = Runner.run_streamed(agent, "Weather in Paris?")
            async for _event in result.stream_events():
                pass
        else:
            await Runner.run(agent, "Weather in Paris?")

    steptrace.instrument_openai()
    try:
        with F.FakeServer(script) as server:
            asyncio.run(main(server))
    finally:
        steptrace.uninstrument_openai()

    llm_spans = assert_one_llm_request_per_step(capture)
    expected = STREAMED_CHAT_TOKENS if (api, streamed) == ("chat", True) else TOKENS[api]
    for llm in llm_spans:
        assert attrs(llm)[A.GEN_AI_USAGE_INPUT_TOKENS] == expected[0]
        assert A.GEN_AI_INPUT_MESSAGES in attrs(llm)  # the openai patch filled in the request
    (run_record,) = record_of(capture, "run")
    assert (run_record["llm_calls"], run_record["input_tokens"]) == (2, 2 * expected[0])
    assert len(script.model_requests) == 2


# --- the SDK's own tracing ----------------------------------------------------------------------
@pytest.mark.parametrize("disabled", [True, False], ids=["sdk-tracing-off", "sdk-tracing-on"])
def test_works_with_sdk_tracing_on_or_off_and_sends_nothing_to_its_endpoint(
    capture: Capture, disabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the SDK's tracing on, steptrace would lose spans or ship traces to OpenAI."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))
    set_tracing_disabled(disabled)
    with F.FakeServer(script) as server:
        # Were anything exported, it would land on the fake server, never on api.openai.com.
        monkeypatch.setattr(default_exporter(), "endpoint", server.url("/v1/traces/ingest"))
        agent = Agent(name="weather", tools=[get_weather], model=model_for("responses", server))
        Runner.run_sync(agent, "Weather in Paris?")
        get_trace_provider().force_flush()
    assert script.trace_requests == []
    assert all("/traces/" not in path for path in script.paths)
    assert len(capture.spans_named(A.SPAN_AGENT_RUN)) == 1
    assert len(capture.spans_named(A.SPAN_AGENT_STEP)) == 2
    assert_one_llm_request_per_step(capture)
    assert len(capture.spans_named(A.SPAN_TOOL_EXECUTION)) == 1


# --- instrumenting ------------------------------------------------------------------------------
def test_uninstrument_restores_the_sdk(capture: Capture) -> None:
    """After uninstrument_openai_agents() runs would still be traced (or the SDK stay patched)."""
    import agents.run
    from agents.run_internal import run_loop

    steptrace.uninstrument_openai_agents()
    assert not hasattr(agents.run.AgentRunner.__dict__["run"], "__wrapped__")
    assert not hasattr(agents.run.run_single_turn, "__wrapped__")
    assert not hasattr(run_loop.run_single_turn_streamed, "__wrapped__")
    script = ModelTurns(text_turn("Hi."))
    with F.FakeServer(script) as server:
        Runner.run_sync(Agent(name="plain", model=model_for("responses", server)), "Hello")
    assert capture.spans == []
    steptrace.instrument_openai_agents()
    assert hasattr(agents.run.AgentRunner.__dict__["run"], "__wrapped__")


def test_entry_point_names_the_instrumentor() -> None:
    """opentelemetry-instrument would not find the Agents SDK instrumentor."""
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    group = text.split("[project.entry-points.opentelemetry_instrumentor]", 1)[1].split("\n[", 1)[0]
    (line,) = [line for line in group.splitlines() if line.startswith("steptrace_openai_agents")]
    module, _, name = line.split("=", 1)[1].strip().strip('"').partition(":")
    assert getattr(importlib.import_module(module), name) is OpenAIAgentsInstrumentor
    assert OpenAIAgentsInstrumentor().instrumentation_dependencies() == ("openai-agents >= 0.24, < 1",)


def test_untraced_without_configuration() -> None:
    """Without steptrace configured, an instrumented run would fail or change its result."""
    script = ModelTurns(call_turn("get_weather", '{"city": "Atlantis"}'), text_turn("No such city."))
    with F.FakeServer(script) as server:
        agent = Agent(name="weather", tools=[get_weather], model=model_for("chat", server))
        assert Runner.run_sync(agent, "Weather in Atlantis?").final_output == "No such city."


def test_example_runs_offline_and_shows_the_handoff(tmp_path: Path) -> None:
    """examples/openai_agents_agent.py would fail offline, or its log would not show the handoff."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "STEPTRACE_JSONL_PATH"}
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "openai_agents_agent.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "In Paris: 18°C and sunny in Paris." in done.stdout
    assert "step 1: agent triage -> handoff to weather" in done.stdout
    assert "step 3: agent weather" in done.stdout
    records = list(steptrace.read_steps(tmp_path / "steptrace-logs" / "steps.jsonl"))
    (run,) = [r for r in records if r["type"] == "run"]
    assert (run["agent"], run["stop_reason"], run["tool_calls"]) == ("triage", "end_turn", 1)
    summary = subprocess.run(
        [sys.executable, "-m", "steptrace", "debug", run["run_id"][:8]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert summary.returncode == 0, summary.stderr
    assert "end_turn" in summary.stdout


def test_a_missing_sdk_internal_is_skipped_and_the_rest_traces(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An SDK version that moved one internal would lose all tracing (or crash instrument())."""
    from agents.run_internal import tool_execution

    steptrace.uninstrument_openai_agents()
    monkeypatch.delattr(tool_execution, "_invoke_function_tool_with_metadata")
    with caplog.at_level("WARNING", logger="steptrace"):
        steptrace.instrument_openai_agents()
    assert "tools are not traced" in caplog.text
    monkeypatch.undo()  # the SDK needs its function back to run the tool
    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))
    with F.FakeServer(script) as server:
        agent = Agent(name="weather", tools=[get_weather], model=model_for("responses", server))
        Runner.run_sync(agent, "Weather in Paris?")
    assert len(capture.spans_named(A.SPAN_AGENT_STEP)) == 2
    assert_one_llm_request_per_step(capture)
    assert capture.spans_named(A.SPAN_TOOL_EXECUTION) == []


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_rerun_serves_a_recorded_agents_run_with_the_server_gone(capture: Capture, streamed: bool) -> None:
    """steptrace.rerun would hand the SDK plain dicts (and crash it) or call the stopped server."""
    capture.configure(record_for_rerun=True)

    async def main(model: Model) -> Any:
        agent = Agent(name="weather", tools=[get_weather], model=model)
        if not streamed:
            return (await Runner.run(agent, "Weather in Paris?")).final_output
        result = Runner.run_streamed(agent, "Weather in Paris?")
        async for _event in result.stream_events():
            pass
        return result.final_output

    script = ModelTurns(call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))
    with F.FakeServer(script) as server:
        model = model_for("responses", server)
        assert asyncio.run(main(model)) == "It is sunny."
    (recorded,) = record_of(capture, "run")
    capture.clear()
    with steptrace.rerun(recorded["run_id"], log=capture.jsonl_path.parent) as rerun:
        assert asyncio.run(main(model)) == "It is sunny."  # the server is stopped: all served
    assert rerun.report is not None and rerun.report.reproduced, rerun.report
    assert "same as the original" in rerun.report.verdict
    (run_record,) = record_of(capture, "run")
    assert run_record["rerun_of"] == recorded["run_id"]
    assert (run_record["steps"], run_record["tool_calls"]) == (2, 1)


def test_runner_inside_the_users_own_run_adds_its_steps_to_that_run(capture: Capture) -> None:
    """Runner.run inside steptrace.agent_run(release=...) would give two runs, the outer one empty."""
    script = ModelTurns(call_turn("search", '{"query": "x"}'), repeat_last=True)

    async def main(server: F.FakeServer) -> None:
        agent = Agent(name="researcher", tools=[search], model=model_for("responses", server))
        with steptrace.agent_run(agent="support-bot", release="v2.1") as run:
            try:
                await Runner.run(agent, "Find it", max_turns=2)
            except MaxTurnsExceeded:
                assert run.stop_reason == "max_steps"

    with F.FakeServer(script) as server:
        asyncio.run(main(server))
    (run_record,) = record_of(capture, "run")
    assert (run_record["agent"], run_record["release"], run_record["steps"]) == ("support-bot", "v2.1", 2)
    assert run_record["stop_reason"] == "max_steps"
    assert [r["agent"] for r in record_of(capture, "agent_step")] == ["researcher", "researcher"]
    assert_one_llm_request_per_step(capture)


def test_agent_used_as_a_tool_is_a_nested_run(capture: Capture) -> None:
    """An agent called as another agent's tool would be merged into the caller's steps."""
    script = ModelTurns(
        call_turn("ask_translator", '{"input": "bonjour"}'), text_turn("hello"), text_turn("It means hello.")
    )
    with F.FakeServer(script) as server:
        translator = Agent(name="translator", model=model_for("chat", server))
        tool = translator.as_tool(tool_name="ask_translator", tool_description="Translate.")
        orchestrator = Agent(name="orchestrator", tools=[tool], model=model_for("chat", server))
        assert Runner.run_sync(orchestrator, "What is bonjour?").final_output == "It means hello."
    runs = {r["agent"]: r for r in record_of(capture, "run")}
    assert set(runs) == {"orchestrator", "translator"}
    assert runs["translator"]["parent_run_id"] == runs["orchestrator"]["run_id"]
    (tool_span,) = capture.spans_named(A.SPAN_TOOL_EXECUTION)
    nested = [
        s for s in capture.spans_named(A.SPAN_AGENT_RUN) if attrs(s)[A.GEN_AI_AGENT_NAME] == "translator"
    ]
    assert nested[0].parent is not None and nested[0].parent.span_id == tool_span.context.span_id  # type: ignore[union-attr]
    assert (runs["orchestrator"]["steps"], runs["translator"]["steps"]) == (2, 1)


@tool_input_guardrail
def no_deletes(data: Any) -> ToolGuardrailFunctionOutput:
    if "delete" in data.context.tool_arguments:
        return ToolGuardrailFunctionOutput.raise_exception(output_info="no deletes")
    return ToolGuardrailFunctionOutput.allow()


@function_tool(tool_input_guardrails=[no_deletes])
def run_sql(query: str) -> str:
    """Run a SQL query."""
    return "ok"


def test_tool_guardrail_tripwire_is_guardrail(capture: Capture) -> None:
    """A tool guardrail that halted the run would read as a crash of the run."""
    script = ModelTurns(call_turn("run_sql", '{"query": "delete from users"}'))
    with F.FakeServer(script) as server:
        agent = Agent(name="dba", tools=[run_sql], model=model_for("responses", server))
        with pytest.raises(ToolInputGuardrailTripwireTriggered):
            Runner.run_sync(agent, "Clean up users")
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "guardrail"
