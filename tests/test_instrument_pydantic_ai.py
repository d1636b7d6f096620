"""steptrace.instrument_pydantic_ai: the real Pydantic AI, its OpenAI chat model pointed at a fake
OpenAI server on 127.0.0.1. run_sync, run, run_stream and iter; a tool, a failing tool (ModelRetry),
an output validator's retry, a usage limit; with Pydantic AI's own instrumentation on, and over an
instrumented openai client."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.usage import UsageLimits

import sdk_fakes as F
import steptrace
from agents_fakes import ModelTurns, call_turn, text_turn
from steptrace import _attributes as A
from steptrace.instrumentation.pydantic_ai import PydanticAIInstrumentor
from steptrace.testing import Capture

HTTP = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])
TOKENS = (12, 5)  # what each fake chat completion reports (sdk_fakes defaults)


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    steptrace.instrument_pydantic_ai()
    yield
    steptrace.uninstrument_pydantic_ai()
    Agent.instrument_all(False)


@pytest.fixture(autouse=True)
def close_loop() -> Iterator[None]:
    """Close the event loop ``run_sync`` leaves set for the thread (it reuses it on purpose)."""
    yield
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = policy.get_event_loop()
        except RuntimeError:  # none set (asyncio.run unset it)
            return
    loop.close()
    policy.set_event_loop(None)


@pytest.fixture
def capture(steptrace_capture: Capture) -> Capture:
    steptrace_capture.configure(capture_content=True)
    return steptrace_capture


def chat_model(server: F.FakeServer) -> OpenAIChatModel:
    # No keep-alive: each run_sync ends its event loop, and a pooled socket would outlive it.
    http_client = openai.DefaultAsyncHttpxClient(limits=HTTP.Limits(max_keepalive_connections=0))
    client = openai.AsyncOpenAI(
        base_url=server.url("/v1"), api_key=F.API_KEY, max_retries=0, http_client=http_client
    )
    return OpenAIChatModel("gpt-4o", provider=OpenAIProvider(openai_client=client))


def weather_agent(server: F.FakeServer, **options: Any) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(chat_model(server), name="weather", **options)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


def shape(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The records as a hand-decorated agent's: (type, agent_step, name-ish), in step order."""
    out = []
    for record in sorted(records, key=lambda r: r["step"]):
        kind = record["type"]
        if kind == "tool_call":
            out.append((kind, record["agent_step"], record["tool"], record["tool_call_id"], record["status"]))
        elif kind == "llm_call":
            out.append(
                (
                    kind,
                    record["agent_step"],
                    record["input_tokens"],
                    record["output_tokens"],
                    record["stop_reason"],
                )
            )
        elif kind == "agent_step":
            out.append((kind, record["agent_step"], record["ends_run"]))
        elif kind == "run":
            out.append((kind, record["agent"], record["stop_reason"], record["steps"], record["llm_calls"]))
    return out


def our_records(capture: Capture) -> list[dict[str, Any]]:
    return [r for r in capture.records if r["type"] != "span"]


def two_step_turns() -> ModelTurns:
    return ModelTurns(call_turn("get_weather", '{"city": "Paris"}', "call_w1"), text_turn("Sunny in Paris."))


TWO_STEPS = [
    ("run", "weather", "end_turn", 2, 2),
    ("agent_step", 1, False),
    ("llm_call", 1, *TOKENS, "tool_use"),
    ("tool_call", 1, "get_weather", "call_w1", "ok"),
    ("agent_step", 2, True),
    ("llm_call", 2, *TOKENS, "end_turn"),
]


def test_run_sync_with_a_tool_is_one_run_of_steps(capture: Capture) -> None:
    """A Pydantic AI run would not show as run > steps > model call and tool call with its ids."""
    with F.FakeServer(two_step_turns()) as server:
        result = weather_agent(server).run_sync("Weather in Paris?")
    assert result.output == "Sunny in Paris."
    records = our_records(capture)
    assert shape(records) == TWO_STEPS
    run = next(r for r in records if r["type"] == "run")
    assert {r["run_id"] for r in records} == {run["run_id"]}
    llm = [r for r in records if r["type"] == "llm_call"]
    assert {(r["provider"], r["request_model"]) for r in llm} == {("openai", "gpt-4o")}
    assert llm[0]["tool_calls"] == [{"name": "get_weather", "id": "call_w1"}]
    tool = next(r for r in records if r["type"] == "tool_call")
    assert tool["input"] == {"city": "Paris"} and tool["output"] == "sunny in Paris"
    steps = {r["agent_step"]: r["span_id"] for r in records if r["type"] == "agent_step"}
    assert all(
        r["parent_span_id"] == steps[r["agent_step"]]
        for r in records
        if r["type"] in ("llm_call", "tool_call")
    )
    assert all(r["parent_span_id"] == run["span_id"] for r in records if r["type"] == "agent_step")


def test_async_run_and_iter_are_one_run_each(capture: Capture) -> None:
    """``await agent.run(...)`` or a driven ``agent.iter(...)`` would lose its steps or split the run."""

    async def main(server: F.FakeServer) -> list[str]:
        agent = weather_agent(server)
        first = await agent.run("Weather in Paris?")
        kinds = []
        async with agent.iter("Weather in Paris?") as agent_run:
            async for node in agent_run:
                kinds.append(type(node).__name__)
        assert agent_run.result is not None
        return [first.output, agent_run.result.output, *kinds]

    turns = ModelTurns(
        call_turn("get_weather", '{"city": "Paris"}', "call_w1"),
        text_turn("Sunny in Paris."),
        call_turn("get_weather", '{"city": "Paris"}', "call_w1"),
        text_turn("Sunny in Paris."),
    )
    with F.FakeServer(turns) as server:
        outputs = asyncio.run(main(server))
    assert outputs[:2] == ["Sunny in Paris.", "Sunny in Paris."]
    assert "ModelRequestNode" in outputs and "CallToolsNode" in outputs
    records = our_records(capture)
    runs = sorted({r["run_id"] for r in records})
    assert len(runs) == 2
    for run_id in runs:
        assert shape([r for r in records if r["run_id"] == run_id]) == TWO_STEPS


def test_run_stream_is_one_run_with_a_streamed_llm_request(capture: Capture) -> None:
    """A streamed run would lose its model calls' tokens or end its run before the stream did."""

    async def main(server: F.FakeServer) -> str:
        agent = weather_agent(server)
        async with agent.run_stream("Weather in Paris?") as result:
            return "".join([chunk async for chunk in result.stream_text(delta=True)])

    with F.FakeServer(two_step_turns()) as server:
        text = asyncio.run(main(server))
    assert text == "Sunny in Paris."
    records = our_records(capture)
    llm = [r for r in records if r["type"] == "llm_call"]
    assert [r["stream"] for r in llm] == [True, True]
    assert [r["type"] for r in sorted(records, key=lambda r: r["step"])] == [
        "run", "agent_step", "llm_call", "tool_call", "agent_step", "llm_call"
    ]  # fmt: skip
    run = next(r for r in records if r["type"] == "run")
    assert (run["stop_reason"], run["steps"], run["llm_calls"], run["tool_calls"]) == ("end_turn", 2, 2, 1)


def test_tool_model_retry_fails_the_tool_and_the_retry_is_a_step(capture: Capture) -> None:
    """A tool raising ModelRetry would look like a success, or its retry would hide in one step."""
    turns = ModelTurns(
        call_turn("lookup", '{"city": "Atlantis"}', "call_1"),
        call_turn("lookup", '{"city": "Paris"}', "call_2"),
        text_turn("Found Paris."),
    )
    with F.FakeServer(turns) as server:
        agent: Agent[None, str] = Agent(chat_model(server), name="finder")

        @agent.tool_plain
        def lookup(city: str) -> str:
            """Find a city."""
            if city == "Atlantis":
                raise ModelRetry("no such city, try a real one")
            return "found"

        assert agent.run_sync("Find a city").output == "Found Paris."
    records = our_records(capture)
    tools = sorted((r for r in records if r["type"] == "tool_call"), key=lambda r: r["step"])
    assert [(t["agent_step"], t["tool_call_id"], t["status"]) for t in tools] == [
        (1, "call_1", "error"),
        (2, "call_2", "ok"),
    ]
    assert "no such city" in tools[0]["error"]
    run = next(r for r in records if r["type"] == "run")
    assert (run["stop_reason"], run["steps"], run["tool_calls"]) == ("end_turn", 3, 2)


def test_output_validation_retry_shows_as_a_step(capture: Capture) -> None:
    """An output validator's retry would be invisible: two model calls in one step, or none."""
    turns = ModelTurns(text_turn("rainy"), text_turn("Sunny."))
    with F.FakeServer(turns) as server:
        agent: Agent[None, str] = Agent(chat_model(server), name="checked")

        @agent.output_validator
        def must_be_sunny(output: str) -> str:
            if "Sunny" not in output:
                raise ModelRetry("say it is sunny")
            return output

        assert agent.run_sync("Weather?").output == "Sunny."
    records = our_records(capture)
    assert shape(records) == [
        ("run", "checked", "end_turn", 2, 2),
        ("agent_step", 1, False),
        ("llm_call", 1, *TOKENS, "end_turn"),
        ("agent_step", 2, True),
        ("llm_call", 2, *TOKENS, "end_turn"),
    ]


def test_usage_limit_is_max_steps(capture: Capture) -> None:
    """A run stopped by UsageLimitExceeded would read as a plain error, not as too many steps."""
    turns = ModelTurns(call_turn("get_weather", '{"city": "Paris"}', "call_w1"), repeat_last=True)
    with F.FakeServer(turns) as server:
        agent = weather_agent(server)
        with pytest.raises(UsageLimitExceeded):
            agent.run_sync("Weather forever", usage_limits=UsageLimits(request_limit=2))
    records = our_records(capture)
    run = next(r for r in records if r["type"] == "run")
    assert (run["stop_reason"], run["status"], run["llm_calls"]) == ("max_steps", "error", 2)
    assert run["error_type"] == "pydantic_ai.exceptions.UsageLimitExceeded"
    assert [r["status"] for r in records if r["type"] == "llm_call"] == ["ok", "ok"]
    # The third model-request node opened its step; the limit stopped it before the request.
    assert [(r["agent_step"], r["ends_run"]) for r in records if r["type"] == "agent_step"] == [
        (1, False),
        (2, False),
        (3, True),
    ]


@pytest.mark.parametrize("how", ["agent", "instrument_all"])
def test_with_pydantic_ai_instrumentation_its_spans_are_enriched_not_doubled(
    capture: Capture, how: str
) -> None:
    """With instrument=True each call would have two spans (Pydantic AI's and ours), or none of the
    framework's spans would carry the run id, step numbers and step records."""
    # instrument=True with the global providers, which the capture does not replace.
    settings = InstrumentationSettings(
        tracer_provider=capture.tracer_provider, meter_provider=capture.meter_provider
    )
    with F.FakeServer(two_step_turns()) as server:
        agent = weather_agent(server)
        if how == "instrument_all":
            Agent.instrument_all(settings)
        else:
            agent.instrument = settings
        assert agent.run_sync("Weather in Paris?").output == "Sunny in Paris."
    spans = capture.spans
    ours = [
        s
        for s in spans
        if s.instrumentation_scope is not None and s.instrumentation_scope.name == "steptrace"
    ]
    # Steps are ours (Pydantic AI has none); the run, model and tool calls are Pydantic AI's spans.
    assert sorted(s.name for s in ours) == ["agent_step", "agent_step"]
    framework = [s for s in spans if s not in ours]
    chat = [s for s in framework if (s.attributes or {}).get(A.GEN_AI_OPERATION_NAME) == "chat"]
    tools = [s for s in framework if (s.attributes or {}).get(A.GEN_AI_OPERATION_NAME) == "execute_tool"]
    runs = [s for s in framework if (s.attributes or {}).get(A.GEN_AI_OPERATION_NAME) == "invoke_agent"]
    assert (len(chat), len(tools), len(runs)) == (2, 1, 1)
    assert [s.attributes[A.AGENT_STEP_NUMBER] for s in chat] == [1, 2]  # type: ignore[index]
    assert tools[0].attributes[A.GEN_AI_TOOL_CALL_ID] == "call_w1"  # type: ignore[index]
    records = our_records(capture)
    assert shape(records) == TWO_STEPS
    run = next(r for r in records if r["type"] == "run")
    assert run["name"] == runs[0].name and run["span_id"] == f"{runs[0].context.span_id:016x}"  # type: ignore[union-attr]
    assert {r["name"] for r in records if r["type"] == "llm_call"} == {chat[0].name}
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)
    assert_nested_as_hand_decorated(records)


def assert_nested_as_hand_decorated(records: list[dict[str, Any]]) -> None:
    """Each model and tool call is a child of its step, each step of the run: the tree that
    ``steptrace view`` draws and ``replay`` indents, as for a hand-decorated agent."""
    run = next(r for r in records if r["type"] == "run")
    steps = {r["agent_step"]: r["span_id"] for r in records if r["type"] == "agent_step"}
    calls = [r for r in records if r["type"] in ("llm_call", "tool_call")]
    assert [(r["type"], r["parent_span_id"]) for r in calls] == [
        (r["type"], steps[r["agent_step"]]) for r in calls
    ]
    assert {r["parent_span_id"] for r in records if r["type"] == "agent_step"} == {run["span_id"]}


@pytest.mark.parametrize("how", ["run", "iter"])
def test_with_pydantic_ai_instrumentation_calls_nest_in_their_steps_async(capture: Capture, how: str) -> None:
    """With instrument=True, ``agent.run``/``iter`` would show model and tool calls beside their
    steps (children of Pydantic AI's run span) in view, replay and debug. (``run_stream`` streams
    its model requests outside every node hook: there they stay children of the run span.)"""
    settings = InstrumentationSettings(
        tracer_provider=capture.tracer_provider, meter_provider=capture.meter_provider
    )

    async def main(agent: Agent[None, str]) -> str:
        if how == "run":
            return (await agent.run("Weather in Paris?")).output
        async with agent.iter("Weather in Paris?") as agent_run:
            async for _node in agent_run:
                pass
        assert agent_run.result is not None
        return agent_run.result.output

    with F.FakeServer(two_step_turns()) as server:
        agent = weather_agent(server)
        agent.instrument = settings
        assert asyncio.run(main(agent)) == "Sunny in Paris."
    records = our_records(capture)
    assert shape(records) == TWO_STEPS
    assert_nested_as_hand_decorated(records)


def test_with_openai_instrumented_too_each_model_call_is_counted_once(capture: Capture) -> None:
    """A model call over an instrumented openai client would be two llm_requests and double tokens."""
    steptrace.instrument_openai()
    try:
        with F.FakeServer(two_step_turns()) as server:
            assert weather_agent(server).run_sync("Weather in Paris?").output == "Sunny in Paris."
    finally:
        steptrace.uninstrument_openai()
    records = our_records(capture)
    assert shape(records) == TWO_STEPS
    assert len(capture.spans_named("llm_request")) == 2
    llm = [r for r in records if r["type"] == "llm_call"]
    assert [r["response_id"] for r in llm] == ["chatcmpl-1", "chatcmpl-1"]  # read from the HTTP response
    assert [r["model"] for r in llm] == ["gpt-4o-2024-08-06"] * 2


def test_uninstrument_restores_pydantic_ai(capture: Capture) -> None:
    """uninstrument_pydantic_ai() would leave runs traced (or break them)."""
    steptrace.uninstrument_pydantic_ai()
    with F.FakeServer(two_step_turns()) as server:
        assert weather_agent(server).run_sync("Weather in Paris?").output == "Sunny in Paris."
    assert our_records(capture) == []


def test_untraced_without_configuration() -> None:
    """An instrumented Pydantic AI without steptrace configured would fail or trace somewhere."""
    with F.FakeServer(two_step_turns()) as server:
        assert weather_agent(server).run_sync("Weather in Paris?").output == "Sunny in Paris."


def test_entry_point_names_the_instrumentor() -> None:
    """opentelemetry-instrument would not find the Pydantic AI instrumentor."""
    from importlib.metadata import entry_points

    (entry,) = [
        e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "steptrace_pydantic_ai"
    ]
    assert entry.load() is PydanticAIInstrumentor


def test_agent_run_inside_the_users_own_run_adds_its_steps_to_that_run(capture: Capture) -> None:
    """An agent run inside the user's agent_run would be a second run instead of that run's steps."""
    with F.FakeServer(two_step_turns()) as server, steptrace.agent_run(agent="mine") as run:
        assert weather_agent(server).run_sync("Weather in Paris?").output == "Sunny in Paris."
    records = our_records(capture)
    assert {r["run_id"] for r in records} == {run.run_id}
    assert [r["agent"] for r in records if r["type"] == "run"] == ["mine"]
    assert len([r for r in records if r["type"] == "agent_step"]) == 2


def test_example_runs_offline(tmp_path: Path) -> None:
    """examples/pydantic_ai_agent.py would fail offline, or its log would not show the agent's steps."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "STEPTRACE_JSONL_PATH"}
    done = subprocess.run(
        [sys.executable, "-W", "error", str(root / "examples" / "pydantic_ai_agent.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "In Paris: 18°C and sunny in Paris." in done.stdout
    assert "step 1: tool get_weather (call_weather)" in done.stdout
    assert "step 2: model gpt-4o-2024-08-06 -> end_turn" in done.stdout
    records = list(steptrace.read_steps(tmp_path / "steptrace-logs" / "steps.jsonl"))
    (run,) = [r for r in records if r["type"] == "run"]
    assert (run["agent"], run["stop_reason"], run["steps"], run["tool_calls"]) == (
        "weather",
        "end_turn",
        2,
        1,
    )


def test_rerun_serves_a_recorded_pydantic_ai_run_with_the_server_gone(capture: Capture) -> None:
    """steptrace.rerun would hand Pydantic AI plain dicts (and crash it) or call the stopped server."""
    capture.configure(record_for_rerun=True)
    with F.FakeServer(two_step_turns()) as server:
        agent = weather_agent(server)
        assert agent.run_sync("Weather in Paris?").output == "Sunny in Paris."
    (recorded,) = [r for r in our_records(capture) if r["type"] == "run"]
    capture.clear()
    with steptrace.rerun(recorded["run_id"], log=capture.jsonl_path.parent) as rerun:
        assert agent.run_sync("Weather in Paris?").output == "Sunny in Paris."  # all served
    assert rerun.report is not None and rerun.report.reproduced, rerun.report.verdict
    (run_record,) = [r for r in our_records(capture) if r["type"] == "run"]
    assert run_record["rerun_of"] == recorded["run_id"]
    assert (run_record["steps"], run_record["tool_calls"]) == (2, 1)


def test_pydantic_ai_instrumentation_on_another_provider_leaves_our_spans_whole(capture: Capture) -> None:
    """Pydantic AI's spans sent to a provider steptrace does not write from would be borrowed, and
    the run, model and tool records would never reach the step log."""
    other = TracerProvider()
    exporter = InMemorySpanExporter()
    other.add_span_processor(SimpleSpanProcessor(exporter))
    with F.FakeServer(two_step_turns()) as server:
        agent = weather_agent(server)
        agent.instrument = InstrumentationSettings(tracer_provider=other)
        assert agent.run_sync("Weather in Paris?").output == "Sunny in Paris."
    assert shape(our_records(capture)) == TWO_STEPS
    assert len(exporter.get_finished_spans()) >= 4  # Pydantic AI's own, untouched, on its provider
    assert not any(A.SPAN_STANDS_FOR in (s.attributes or {}) for s in exporter.get_finished_spans())


def test_borrowed_spans_keep_pydantic_ais_content_out_of_the_log_unless_captured(
    steptrace_capture: Capture,
) -> None:
    """Pydantic AI writes prompts and answers on its spans (include_content): with steptrace's
    capture off, they would land in the step records of the spans steptrace borrowed."""
    capture = steptrace_capture
    capture.configure(capture_content=False)
    settings = InstrumentationSettings(tracer_provider=capture.tracer_provider)
    with F.FakeServer(two_step_turns()) as server:
        agent = weather_agent(server)
        agent.instrument = settings
        assert agent.run_sync("Weather in Paris?").output == "Sunny in Paris."
    records = our_records(capture)
    assert shape(records) == TWO_STEPS
    chat = [s for s in capture.spans if (s.attributes or {}).get(A.GEN_AI_OPERATION_NAME) == "chat"]
    assert all(A.GEN_AI_INPUT_MESSAGES in (s.attributes or {}) for s in chat)  # Pydantic AI's, kept
    assert [(r["input"], r["output"]) for r in records if r["type"] in ("llm_call", "tool_call")] == [
        (None, None)
    ] * 3


def test_a_tool_raising_fails_its_tool_step_and_run_once(capture: Capture) -> None:
    """An exception leaving a tool would be counted twice in the run, or leave its step open."""
    with F.FakeServer(ModelTurns(call_turn("explode", "{}", "call_x"))) as server:
        agent: Agent[None, str] = Agent(chat_model(server), name="fragile")

        @agent.tool_plain
        def explode() -> str:
            """Always fails."""
            raise ValueError("kaboom")

        with pytest.raises(ValueError, match="kaboom"):
            agent.run_sync("Go")
    records = our_records(capture)
    run = next(r for r in records if r["type"] == "run")
    (tool,) = [r for r in records if r["type"] == "tool_call"]
    (step,) = [r for r in records if r["type"] == "agent_step"]
    assert (tool["status"], tool["error_type"], tool["tool_call_id"]) == ("error", "ValueError", "call_x")
    assert (step["status"], run["status"], run["stop_reason"], run["errors"]) == (
        "error",
        "error",
        "error",
        1,
    )


def test_runs_of_durable_agents_accept_steptrace_as_safe_per_run() -> None:
    """Pydantic AI's durable agents refuse per-run capabilities not marked safe: if Pydantic AI
    renamed the flag steptrace sets, every Temporal/DBOS/Prefect agent run would fail."""
    from pydantic_ai.capabilities import AbstractCapability, Instrumentation

    from steptrace.instrumentation.pydantic_ai import _capability_class

    assert "_safe_at_runtime" in vars(AbstractCapability)  # the flag Pydantic AI reads
    assert Instrumentation._safe_at_runtime is True  # what its own observer says of itself
    assert _capability_class()._safe_at_runtime is True  # type: ignore[attr-defined]


def test_patches_only_the_public_iter(capture: Capture) -> None:
    """steptrace would reach into a private Pydantic AI method that a release may change or drop."""
    instrumented = dict(vars(Agent))
    steptrace.uninstrument_pydantic_ai()
    try:
        assert [name for name, value in vars(Agent).items() if instrumented[name] is not value] == ["iter"]
    finally:
        steptrace.instrument_pydantic_ai()
