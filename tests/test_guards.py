"""Guards (configure(guards=...)): a looping or overspending run stopped while it happens, in every
shape a call takes: decorated tools, ``with`` blocks, an OpenAI tool loop, the OpenAI Agents SDK's
function tools and MCP tool calls, against the real SDKs and the local fakes (issue 26)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from mcp import ClientSession
from opentelemetry.trace import StatusCode

import sdk_fakes as F
import steptrace
from agents_fakes import ModelTurns, call_turn, text_turn
from steptrace import _attributes as A
from steptrace.analysis import debug_run, load
from steptrace.testing import Capture
from test_instrument_mcp import server_records, with_server
from test_instrument_openai_agents import model_for

LOOP = steptrace.Guards(repeat_calls=3)


def records_of(capture: Capture, kind: str) -> list[dict[str, Any]]:
    return [r for r in capture.records if r["type"] == kind]


def run_record(capture: Capture) -> dict[str, Any]:
    (record,) = records_of(capture, "run")
    return record


def first_hypothesis(capture: Capture) -> str:
    run = load(capture.jsonl_path).get(run_record(capture)["run_id"])
    assert run is not None
    hypothesis = debug_run(run).hypotheses[0]
    assert hypothesis.kind == "guard"
    return hypothesis.title


def assert_stopped_by_loop(capture: Capture, tool: str, ran: int = 2) -> None:
    """The step log and ``debug`` of a run stopped at the third identical call of ``tool``."""
    calls = [r for r in records_of(capture, "tool_call") if r["tool"] == tool]
    assert [r["status"] for r in calls] == ["ok"] * ran + ["error"]
    stopped = calls[-1]
    assert (stopped["guard"], stopped["error_type"]) == ("repeat_calls", "steptrace.LoopDetected")
    assert all("guard" not in r for r in calls[:-1])
    record = run_record(capture)
    assert record["stop_reason"] == "loop"
    (trip,) = record["guards"]
    assert trip["guard"] == "repeat_calls" and trip["action"] == "raise"
    assert (trip["tool"], trip["limit"], trip["value"]) == (tool, 3, 3)
    assert trip["earlier_steps"] == [r["step"] for r in calls[-3:-1]]
    assert trip["step"] == stopped["step"]
    steps = ", ".join(f"#{r['step']}" for r in calls[-3:])
    assert first_hypothesis(capture) == (
        f"Stopped by repeat_calls=3: {tool} ×3 with the same arguments ({steps})"
    )


# --- the five shapes ---------------------------------------------------------------------------------
def test_decorated_tool_loop_is_stopped_at_the_third_call(steptrace_capture: Capture) -> None:
    """An agent calling the same search again and again would run until max_steps or the bill."""
    steptrace_capture.configure(guards=LOOP)
    ran: list[str] = []

    @steptrace.tool
    def search(query: str) -> list[str]:
        ran.append(query)
        return [f"result for {query}"]

    with pytest.raises(steptrace.LoopDetected) as caught, steptrace.agent_run(agent="looper"):
        for _ in range(5):
            with steptrace.agent_step():
                search("weather in Paris")
    assert ran == ["weather in Paris"] * 2  # the third call never ran
    exc = caught.value
    assert isinstance(exc, steptrace.GuardTripped) and isinstance(exc, Exception)
    assert (exc.tool, exc.count, exc.guard, exc.limit) == ("search", 3, "repeat_calls", 3)
    calls = records_of(steptrace_capture, "tool_call")
    assert exc.steps == tuple(r["step"] for r in calls[:2])
    assert "search ×3 with the same arguments" in str(exc) and "#2, #4" in str(exc)
    assert_stopped_by_loop(steptrace_capture, "search")
    (span,) = [
        s
        for s in steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)
        if s.status.status_code is StatusCode.ERROR
    ]
    assert [e.name for e in span.events] == ["guard", "exception"]
    (run_span,) = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)
    assert [e.name for e in run_span.events] == ["guard", "exception"]


def test_with_block_loop_is_stopped_before_its_body(steptrace_capture: Capture) -> None:
    """A with-block tool would run its body a third time with the same arguments."""
    steptrace_capture.configure(guards=LOOP)
    bodies = 0
    with pytest.raises(steptrace.LoopDetected), steptrace.agent_run(agent="looper"):
        for _ in range(5):
            with steptrace.tool("search", arguments={"query": "weather in Paris"}) as call:
                bodies += 1
                call.record_result(["sunny"])
    assert bodies == 2
    assert_stopped_by_loop(steptrace_capture, "search")


def test_openai_tool_loop_is_stopped_at_the_third_call(steptrace_capture: Capture) -> None:
    """A model asking for the same search each turn would keep the loop (and the bill) going."""
    steptrace_capture.configure(guards=LOOP)
    steptrace.instrument_openai()
    ask = F.chat_completion(
        None, tool_calls=[("call_1", "search", '{"query": "weather in Paris"}')], finish_reason="tool_calls"
    )
    script = F.Script(*[F.json_reply(ask) for _ in range(5)])
    client = F.openai_client(script)
    ran: list[str] = []

    @steptrace.tool
    def search(query: str) -> str:
        ran.append(query)
        return "sunny"

    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    try:
        with pytest.raises(steptrace.LoopDetected), steptrace.agent_run(agent="looper"):
            for _ in range(5):
                with steptrace.agent_step():
                    reply = client.chat.completions.create(model="gpt-4o", messages=messages)
                    message = reply.choices[0].message
                    messages.append(message.model_dump(exclude_none=True))
                    for tool_call in message.tool_calls or []:
                        result = search(**json.loads(tool_call.function.arguments))  # type: ignore[union-attr]
                        messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
    finally:
        steptrace.uninstrument_openai()
    assert ran == ["weather in Paris"] * 2 and len(script.requests) == 3
    assert_stopped_by_loop(steptrace_capture, "search")


@pytest.fixture
def agents_sdk() -> Iterator[None]:
    set_tracing_disabled(True)
    steptrace.instrument_openai_agents()
    yield
    steptrace.uninstrument_openai_agents()


searches: list[str] = []


@function_tool
def search(query: str) -> str:
    """Search the web."""
    searches.append(query)
    return "sunny"


def test_agents_sdk_function_tool_loop_raises_in_the_callers_code(
    steptrace_capture: Capture, agents_sdk: None
) -> None:
    """The Agents SDK would hand LoopDetected to the model as a tool error, or wrap it in UserError."""
    steptrace_capture.configure(guards=LOOP)
    searches.clear()
    script = ModelTurns(call_turn("search", '{"query": "weather in Paris"}'), repeat_last=True)
    with F.FakeServer(script) as server:
        agent = Agent(name="looper", tools=[search], model=model_for("chat", server))
        with pytest.raises(steptrace.LoopDetected) as caught:
            asyncio.run(Runner.run(agent, "Weather in Paris?", max_turns=10))
        model_turns = len(script.model_requests)
    assert type(caught.value) is steptrace.LoopDetected and caught.value.tool == "search"
    assert searches == ["weather in Paris"] * 2
    assert model_turns == 3  # the model was never told about the loop: no fourth turn
    assert_stopped_by_loop(steptrace_capture, "search")


def test_agents_sdk_tool_that_calls_a_guarded_tool_is_not_turned_into_a_message(
    steptrace_capture: Capture, agents_sdk: None
) -> None:
    """A LoopDetected raised inside a function tool would become text the model reads."""
    steptrace_capture.configure(guards=LOOP)
    inner: list[str] = []

    @steptrace.tool
    def lookup(query: str) -> str:
        inner.append(query)
        return "sunny"

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return lookup(f"weather in {city.lower()}")  # the same lookup for each spelling

    script = ModelTurns(
        call_turn("weather", '{"city": "Paris"}', "c1"),
        call_turn("weather", '{"city": "paris"}', "c2"),
        call_turn("weather", '{"city": "PARIS"}', "c3"),
        text_turn("never reached"),
    )
    with F.FakeServer(script) as server:
        agent = Agent(name="looper", tools=[weather], model=model_for("chat", server))
        with pytest.raises(steptrace.LoopDetected):
            asyncio.run(Runner.run(agent, "Weather in Paris?"))
        model_turns = len(script.model_requests)
    assert model_turns == 3 and inner == ["weather in paris"] * 2
    assert run_record(steptrace_capture)["stop_reason"] == "loop"


def test_mcp_tool_loop_is_stopped_before_the_request(steptrace_capture: Capture, tmp_path: Path) -> None:
    """The MCP server would be asked a third time for the same call."""
    steptrace_capture.configure(guards=LOOP)
    steptrace.instrument_mcp()

    async def agent(session: ClientSession) -> int:
        answered = 0
        with pytest.raises(steptrace.LoopDetected), steptrace.agent_run(agent="calc"):
            for _ in range(5):
                with steptrace.agent_step():
                    await session.call_tool("add", {"a": 1, "b": 2})
                    answered += 1
        return answered

    try:
        assert with_server(tmp_path, agent) == 2
    finally:
        steptrace.uninstrument_mcp()
    served = [r for r in server_records(tmp_path) if r["type"] == "tool_call"]
    assert served == []  # add is no @steptrace.tool on the server: count its requests instead
    assert_stopped_by_loop(steptrace_capture, "add")


# --- the rule ---------------------------------------------------------------------------------------
def test_a_retry_after_a_failure_is_not_a_repeat(steptrace_capture: Capture) -> None:
    """A flaky tool retried with the same arguments would be stopped as a loop."""
    steptrace_capture.configure(guards=LOOP)
    outcomes = iter([ValueError("timeout"), ValueError("timeout"), "ok", "ok", "ok"])

    @steptrace.tool
    def fetch(url: str) -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    results = []
    with steptrace.agent_run(agent="retrier"):
        for _ in range(4):
            try:
                results.append(fetch("https://example.test"))
            except ValueError:
                results.append("failed")
        with pytest.raises(steptrace.LoopDetected):
            fetch("https://example.test")
    assert results == ["failed", "failed", "ok", "ok"]


def test_different_arguments_and_async_tools(steptrace_capture: Capture) -> None:
    """Calls with other arguments would count as repeats; an async tool would escape the guard."""
    steptrace_capture.configure(guards=LOOP)

    @steptrace.tool
    async def search(query: str) -> str:
        return query

    async def agent() -> None:
        with steptrace.agent_run(agent="a"):
            for query in ["a", "b", "a", "b"]:
                await search(query)
            with pytest.raises(steptrace.LoopDetected):
                await search("a")

    asyncio.run(agent())
    assert run_record(steptrace_capture)["stop_reason"] == "end_turn"  # caught inside the run


# --- budgets ----------------------------------------------------------------------------------------
def priced_reply() -> F.Canned:
    # gpt-4o: $2.50 / M input, $10 / M output: 1,000 + 500 tokens is $0.0075 a call.
    return F.json_reply(F.chat_completion("Paris.", prompt_tokens=1000, completion_tokens=500))


def test_budget_stops_the_run_at_the_first_call_past_it(steptrace_capture: Capture) -> None:
    """A run over its budget would keep calling the model."""
    steptrace_capture.configure(guards=steptrace.Guards(max_cost_usd=0.01))
    steptrace.instrument_openai()
    script = F.Script(*[priced_reply() for _ in range(5)])
    client = F.openai_client(script)
    try:
        with pytest.raises(steptrace.BudgetExceeded) as caught, steptrace.agent_run(agent="spender"):
            for _ in range(5):
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    finally:
        steptrace.uninstrument_openai()
    assert len(script.requests) == 2  # $0.0075, then $0.015: the third call was never sent
    assert caught.value.limit == 0.01 and caught.value.event.value == pytest.approx(0.015)
    calls = records_of(steptrace_capture, "llm_call")
    assert [r["status"] for r in calls] == ["ok", "ok", "error"]
    assert calls[2]["guard"] == "max_cost_usd" and calls[2]["error_type"] == "steptrace.BudgetExceeded"
    assert "cost_usd" not in calls[0]  # record_cost is off: the guard prices without recording
    record = run_record(steptrace_capture)
    assert record["stop_reason"] == "budget" and record["guards"][0]["guard"] == "max_cost_usd"
    assert first_hypothesis(steptrace_capture) == "Stopped by max_cost_usd=0.01: the run had spent $0.0150"


def test_token_and_step_limits(steptrace_capture: Capture) -> None:
    """max_tokens would let the next model call start; max_steps would let step 3 of 2 run."""
    steptrace_capture.configure(guards=steptrace.Guards(max_tokens=3000))
    steptrace.instrument_openai()
    script = F.Script(*[priced_reply() for _ in range(3)])
    client = F.openai_client(script)
    try:
        with pytest.raises(steptrace.TokenLimit), steptrace.agent_run(agent="talker"):
            for _ in range(3):
                with steptrace.agent_step():
                    client.chat.completions.create(model="gpt-4o", messages=[])
    finally:
        steptrace.uninstrument_openai()
    assert len(script.requests) == 2
    record = run_record(steptrace_capture)
    assert record["stop_reason"] == "budget"
    step = records_of(steptrace_capture, "agent_step")[-1]
    assert (step["guard"], step["error_type"]) == ("max_tokens", "steptrace.TokenLimit")  # at the step

    steptrace_capture.clear()
    body = []
    with (
        pytest.raises(steptrace.StepLimit),
        steptrace.agent_run(agent="a", guards=steptrace.Guards(max_steps=2)),
    ):
        for number in range(1, 5):
            with steptrace.agent_step():
                body.append(number)
    assert body == [1, 2]
    assert run_record(steptrace_capture)["stop_reason"] == "max_steps"
    assert first_hypothesis(steptrace_capture).startswith("Stopped by max_steps=2")


def test_an_unpriced_model_is_never_counted_as_free(
    steptrace_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """A model genai-prices cannot price would pass any budget silently."""
    steptrace_capture.configure(guards=steptrace.Guards(max_cost_usd=0.000001))
    unpriced = F.chat_completion(
        "hi", model="my-private-model-7", prompt_tokens=10**6, completion_tokens=10**6
    )
    steptrace.instrument_openai()
    script = F.Script(*[F.json_reply(unpriced) for _ in range(3)])
    client = F.openai_client(script)
    try:
        with caplog.at_level(logging.WARNING, logger="steptrace"), steptrace.agent_run(agent="a"):
            for _ in range(3):
                client.chat.completions.create(model="my-private-model-7", messages=[])
    finally:
        steptrace.uninstrument_openai()
    warnings = [r.getMessage() for r in caplog.records if "cannot be enforced" in r.getMessage()]
    assert len(warnings) == 1 and "my-private-model-7" in warnings[0]
    assert "guards" not in run_record(steptrace_capture)


# --- what a trip does -------------------------------------------------------------------------------
def loop_of_five() -> tuple[list[str], list[Any]]:
    ran: list[str] = []
    outcomes: list[Any] = []

    @steptrace.tool
    def search(query: str) -> str:
        ran.append(query)
        return "sunny"

    with steptrace.agent_run(agent="looper"):
        for _ in range(5):
            try:
                outcomes.append(search("Paris"))
            except Exception as exc:
                outcomes.append(type(exc).__name__)
    return ran, outcomes


def test_warn_changes_nothing_but_the_records(
    steptrace_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """on_guard="warn" would stop the run, or record nothing."""
    steptrace_capture.configure(guards=LOOP, on_guard="warn")
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        ran, outcomes = loop_of_five()
    assert ran == ["Paris"] * 5 and outcomes == ["sunny"] * 5
    calls = records_of(steptrace_capture, "tool_call")
    assert [r["status"] for r in calls] == ["ok"] * 5
    assert [r.get("guard") for r in calls] == [None, None, "repeat_calls", "repeat_calls", "repeat_calls"]
    record = run_record(steptrace_capture)
    assert record["stop_reason"] == "end_turn" and record["errors"] == 0
    assert [t["action"] for t in record["guards"]] == ["warn"] * 3
    assert [t["value"] for t in record["guards"]] == [3, 4, 5]
    assert len([r for r in caplog.records if "guard tripped" in r.getMessage()]) == 3
    run = load(steptrace_capture.jsonl_path).get(record["run_id"])
    assert run is not None
    (guard,) = [h for h in debug_run(run).hypotheses if h.kind == "guard"]
    assert guard.title.startswith("Guard repeat_calls=3: search ×3 with the same arguments")

    steptrace_capture.clear()
    steptrace_capture.configure(on_guard="warn")
    assert loop_of_five() == (["Paris"] * 5, ["sunny"] * 5)
    assert all("guard" not in r for r in steptrace_capture.records)


def test_a_callable_decides(steptrace_capture: Capture) -> None:
    """on_guard=callable would not see the event, or be ignored."""
    seen: list[steptrace.GuardEvent] = []

    def only_from_the_fourth(event: steptrace.GuardEvent) -> bool:
        seen.append(event)
        return event.value >= 4

    steptrace_capture.configure(guards=LOOP, on_guard=only_from_the_fourth)
    ran, outcomes = loop_of_five()
    assert outcomes == ["sunny", "sunny", "sunny", "LoopDetected", "LoopDetected"] and len(ran) == 3
    assert [e.value for e in seen] == [3, 4, 4]  # a stopped call is no successful one
    assert seen[0].tool == "search" and len(seen[0].earlier_steps) == 2

    class Stop(Exception):
        pass

    def raise_my_own(event: steptrace.GuardEvent) -> bool:
        raise Stop(event.message)

    steptrace_capture.clear()
    steptrace_capture.configure(guards=LOOP, on_guard=raise_my_own)
    assert loop_of_five()[1] == ["sunny", "sunny", "Stop", "Stop", "Stop"]


def test_agent_run_overrides_and_environment(
    steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """agent_run(guards=...) would not replace the configured guards; STEPTRACE_GUARD_* would be ignored."""
    monkeypatch.setenv("STEPTRACE_GUARD_REPEAT_CALLS", "3")
    steptrace_capture.configure()
    assert loop_of_five()[1] == ["sunny", "sunny", "LoopDetected", "LoopDetected", "LoopDetected"]

    @steptrace.tool
    def search(query: str) -> str:
        return query

    with steptrace.agent_run(agent="free", guards=steptrace.Guards()):
        for _ in range(5):
            search("Paris")
    with steptrace.agent_run(agent="strict", guards=steptrace.Guards(repeat_calls=2)):
        search("Paris")
        with pytest.raises(steptrace.LoopDetected):
            search("Paris")

    monkeypatch.setenv("STEPTRACE_GUARD_MAX_COST_USD", "lots")
    with pytest.raises(steptrace.ConfigError, match="STEPTRACE_GUARD_MAX_COST_USD='lots'"):
        steptrace_capture.configure()
    with pytest.raises(steptrace.ConfigError, match="repeat_calls"):
        steptrace.Guards(repeat_calls=1)
    with pytest.raises(steptrace.ConfigError, match="on_guard"):
        steptrace_capture.configure(guards=LOOP, on_guard="explode")  # type: ignore[arg-type]


def test_no_guard_configured_records_nothing(steptrace_capture: Capture) -> None:
    """Guards are off by default: a loop would be stopped without anyone asking."""
    steptrace_capture.configure()
    assert loop_of_five() == (["Paris"] * 5, ["sunny"] * 5)
    assert all("guard" not in r and "guards" not in r for r in steptrace_capture.records)
    assert json.dumps(steptrace_capture.records)  # plain JSON, as before


def test_a_high_limit_trips_at_its_count(steptrace_capture: Capture) -> None:
    """repeat_calls above the remembered span numbers would never trip."""
    steptrace_capture.configure(guards=steptrace.Guards(repeat_calls=100))

    @steptrace.tool
    def ping() -> str:
        return "pong"

    with steptrace.agent_run(agent="a"):
        for _ in range(99):
            ping()
        with pytest.raises(steptrace.LoopDetected) as caught:
            ping()
    assert caught.value.count == 100 and len(caught.value.steps) == 16
    assert caught.value.steps == tuple(range(84, 100))


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
@pytest.mark.parametrize("handle_tool_errors", [True, "default"])
def test_langgraph_tool_loop_reaches_the_caller(steptrace_capture: Capture, handle_tool_errors: Any) -> None:
    """ToolNode would hand LoopDetected to the model as an error message, and the graph go on."""
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import ToolNode, create_react_agent

    steptrace_capture.configure(guards=LOOP)
    ran: list[str] = []

    @tool
    def lookup(query: str) -> str:
        """Search the documents."""
        ran.append(query)
        return "nothing found"

    script = ModelTurns(call_turn("lookup", '{"query": "refund policy"}'), repeat_last=True)
    steptrace.instrument_langchain()
    try:
        with F.FakeServer(script) as server:
            model = ChatOpenAI(model="gpt-4o", base_url=server.url("/v1"), api_key=F.API_KEY, max_retries=0)
            options = {} if handle_tool_errors == "default" else {"handle_tool_errors": handle_tool_errors}
            agent = create_react_agent(model, ToolNode([lookup], **options))
            with pytest.raises(steptrace.LoopDetected):
                agent.invoke({"messages": [HumanMessage("Refunds?")]}, {"recursion_limit": 8})
            model_turns = len(script.model_requests)
    finally:
        steptrace.uninstrument_langchain()
    assert ran == ["refund policy"] * 2 and model_turns == 3
    assert_stopped_by_loop(steptrace_capture, "lookup")


def test_budget_stops_async_anthropic_calls(steptrace_capture: Capture) -> None:
    """An async Anthropic client would slip past the budget the OpenAI one keeps."""
    steptrace_capture.configure(guards=steptrace.Guards(max_cost_usd=0.01))
    steptrace.instrument_anthropic()
    # claude-sonnet-4-5: $3 / M input, $15 / M output: 1,000 + 300 tokens is $0.0075 a call.
    body = F.anthropic_message(input_tokens=1000, output_tokens=300)
    script = F.Script(*[F.json_reply(body) for _ in range(3)])
    client = F.async_anthropic_client(script)

    async def agent() -> None:
        with steptrace.agent_run(agent="spender"):
            for _ in range(3):
                await client.messages.create(
                    model="claude-sonnet-4-5", max_tokens=300, messages=[{"role": "user", "content": "Hi"}]
                )

    try:
        with pytest.raises(steptrace.BudgetExceeded):
            asyncio.run(agent())
    finally:
        steptrace.uninstrument_anthropic()
    assert len(script.requests) == 2
    assert run_record(steptrace_capture)["stop_reason"] == "budget"


def test_agents_sdk_streamed_run_raises_loop_from_stream_events(
    steptrace_capture: Capture, agents_sdk: None
) -> None:
    """A streamed Agents SDK run would report the loop as a UserError, or not at all."""
    steptrace_capture.configure(guards=LOOP)
    searches.clear()
    script = ModelTurns(call_turn("search", '{"query": "weather in Paris"}'), repeat_last=True)

    async def consume(agent: Agent[Any]) -> None:
        result = Runner.run_streamed(agent, "Weather in Paris?", max_turns=10)
        async for _ in result.stream_events():
            pass

    with F.FakeServer(script) as server:
        agent = Agent(name="looper", tools=[search], model=model_for("chat", server))
        with pytest.raises(steptrace.LoopDetected):
            asyncio.run(consume(agent))
    assert searches == ["weather in Paris"] * 2
    assert run_record(steptrace_capture)["stop_reason"] == "loop"


def test_guard_exceptions_pickle_and_rebuild_from_their_message(steptrace_capture: Capture) -> None:
    """A LoopDetected crossing a process (multiprocessing, a rerun serving it) would fail to rebuild."""
    import pickle

    steptrace_capture.configure(guards=LOOP)
    _, outcomes = loop_of_five()
    assert outcomes[2] == "LoopDetected"
    with steptrace.agent_run(agent="a"):
        try:
            for _ in range(3):
                steptrace.tool(lambda query: query)("Paris")
        except steptrace.LoopDetected as exc:
            caught = exc
    again = pickle.loads(pickle.dumps(caught))
    assert type(again) is steptrace.LoopDetected and str(again) == str(caught)
    assert (again.tool, again.count, again.steps) == (caught.tool, 3, caught.steps)
    rebuilt = steptrace.BudgetExceeded("max_cost_usd=0.01: the run has spent $0.0150")
    assert rebuilt.guard == "max_cost_usd" and str(rebuilt).startswith("max_cost_usd=0.01")
