"""steptrace.instrument_langchain: real LangGraph graphs and LangChain's ChatOpenAI against a fake
OpenAI server on 127.0.0.1. A ReAct agent (invoke, ainvoke, stream), a failing tool, the recursion
limit, an interrupt and its resume, a subgraph, and instrument_openai() on at the same time."""

from __future__ import annotations

import asyncio
import json
import operator
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition
from langgraph.types import Command, interrupt
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import sdk_fakes as F
import steptrace
from agents_fakes import ModelTurns, call_turn, text_turn
from steptrace import _attributes as A
from steptrace.analysis import debug_run, load
from steptrace.testing import Capture

# create_react_agent moved to langchain.agents (a package the extra does not need); it still works.
pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

TOKENS = (12, 5)  # what each fake chat completion reports (sdk_fakes defaults)


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    steptrace.instrument_langchain()
    yield
    steptrace.uninstrument_langchain()


@pytest.fixture
def capture(steptrace_capture: Capture) -> Capture:
    steptrace_capture.configure(capture_content=True)
    return steptrace_capture


@pytest.fixture
def server() -> Iterator[F.FakeServer]:
    with F.FakeServer(ModelTurns()) as fake:
        yield fake


def script_of(server: F.FakeServer) -> ModelTurns:
    script = server.script
    assert isinstance(script, ModelTurns)
    return script


def model_for(server: F.FakeServer, *turns: Any, **options: Any) -> ChatOpenAI:
    script_of(server).turns.extend(turns)
    return ChatOpenAI(model="gpt-4o", base_url=server.url("/v1"), api_key=F.API_KEY, max_retries=0, **options)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == "Atlantis":
        raise ValueError("no such city")
    return f"sunny in {city}"


@tool
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


def steps(capture: Capture) -> list[ReadableSpan]:
    return sorted(capture.spans_named(A.SPAN_AGENT_STEP), key=lambda s: attrs(s)[A.AGENT_STEP_NUMBER])


def record_of(capture: Capture, kind: str) -> list[dict[str, Any]]:
    return [r for r in capture.records if r["type"] == kind]


def assert_react_shape(capture: Capture, agent: str = "LangGraph") -> dict[str, Any]:
    """run > step 1 (llm_request asking for get_weather, its tool) > step 2 (llm_request, end_turn):
    the records a hand-decorated loop writes."""
    (run,) = capture.spans_named(A.SPAN_AGENT_RUN)
    first, second = steps(capture)
    assert run.context is not None
    assert [s.parent.span_id for s in (first, second) if s.parent] == [run.context.span_id] * 2
    (first_llm,) = children(capture, first, A.SPAN_LLM_REQUEST)
    (tool_span,) = children(capture, first, A.SPAN_TOOL_EXECUTION)
    (second_llm,) = children(capture, second, A.SPAN_LLM_REQUEST)
    assert children(capture, second, A.SPAN_TOOL_EXECUTION) == []
    assert len(capture.spans_named(A.SPAN_LLM_REQUEST)) == 2
    for llm in (first_llm, second_llm):
        llm_attrs = attrs(llm)
        assert llm_attrs[A.GEN_AI_PROVIDER_NAME] == "openai"
        assert llm_attrs[A.GEN_AI_REQUEST_MODEL] == "gpt-4o"
        assert (llm_attrs[A.GEN_AI_USAGE_INPUT_TOKENS], llm_attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == TOKENS
    assert attrs(first_llm)[A.STOP_REASON] == "tool_use"
    assert json.loads(attrs(first_llm)[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "call_1"}]
    assert attrs(second_llm)[A.STOP_REASON] == "end_turn"
    # Content capture is on (the fixture): messages in the conventions' shapes.
    assert json.loads(attrs(first_llm)[A.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
    ]
    assert json.loads(attrs(first_llm)[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
            ],
        }
    ]
    tool_attrs = attrs(tool_span)
    assert tool_attrs[A.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool_attrs[A.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert json.loads(tool_attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}

    (run_record,) = record_of(capture, "run")
    assert run_record["agent"] == agent
    assert run_record["stop_reason"] == "end_turn"
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (2, 2, 1)
    assert (run_record["input_tokens"], run_record["output_tokens"]) == (2 * TOKENS[0], 2 * TOKENS[1])
    assert run_record["errors"] == 0
    step_records = sorted(record_of(capture, "agent_step"), key=lambda r: r["agent_step"])
    assert [r["agent_step"] for r in step_records] == [1, 2]
    assert [r["ends_run"] for r in step_records] == [False, True]
    assert step_records[1]["stop_reason"] == "end_turn"
    (tool_record,) = record_of(capture, "tool_call")
    assert (tool_record["agent_step"], tool_record["tool_call_id"]) == (1, "call_1")
    llm_records = sorted(record_of(capture, "llm_call"), key=lambda r: r["agent_step"])
    assert [r["agent_step"] for r in llm_records] == [1, 2]
    return run_record


def react_turns() -> tuple[Any, ...]:
    return (call_turn("get_weather", '{"city": "Paris"}'), text_turn("It is sunny."))


# --- the ReAct loop -----------------------------------------------------------------------------
def test_react_agent_invoke_is_one_run_of_steps(capture: Capture, server: F.FakeServer) -> None:
    """A create_react_agent invoke would show no run, or tools outside the step that asked for them."""
    agent = create_react_agent(model_for(server, *react_turns()), [get_weather])
    result = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    assert result["messages"][-1].content == "It is sunny."
    assert_react_shape(capture)


def test_react_agent_ainvoke(capture: Capture, server: F.FakeServer) -> None:
    """The async path (ainvoke, _agenerate, arun) would lose the tree or the tool call id."""
    agent = create_react_agent(model_for(server, *react_turns()), [get_weather], name="weather")
    result = asyncio.run(agent.ainvoke({"messages": [HumanMessage("Weather in Paris?")]}))
    assert result["messages"][-1].content == "It is sunny."
    assert_react_shape(capture, agent="weather")


def test_react_agent_stream_and_messages_stream_mark_time_to_first_chunk(
    capture: Capture, server: F.FakeServer
) -> None:
    """stream() would open a second run per chunk, or streamed model calls would have no TTFT."""
    agent = create_react_agent(model_for(server, *react_turns()), [get_weather])
    updates = list(agent.stream({"messages": [HumanMessage("Weather in Paris?")]}, stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
    assert_react_shape(capture)

    capture.clear()
    script_of(server).turns.extend(react_turns())
    chunks = list(agent.stream({"messages": [HumanMessage("Weather in Paris?")]}, stream_mode="messages"))
    assert "".join(str(c.content) for c, _ in chunks if isinstance(c, AIMessage)).endswith("It is sunny.")
    (run_record,) = record_of(capture, "run")
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (2, 2, 1)
    for llm in capture.spans_named(A.SPAN_LLM_REQUEST):
        assert attrs(llm)[A.GEN_AI_REQUEST_STREAM] is True
        assert attrs(llm)[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
        assert (attrs(llm)[A.GEN_AI_USAGE_INPUT_TOKENS], attrs(llm)[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (12, 50)


def test_model_stream_outside_a_graph_is_one_llm_request(capture: Capture, server: F.FakeServer) -> None:
    """A chat model's own stream() would lose its tokens, tool calls or time to first chunk."""
    model = model_for(server, call_turn("get_weather", '{"city": "Oslo"}', call_id="call_9"))
    chunks = list(model.bind_tools([get_weather]).stream("Weather in Oslo?"))
    assert chunks
    (llm,) = capture.spans_named(A.SPAN_LLM_REQUEST)
    llm_attrs = attrs(llm)
    assert llm_attrs[A.GEN_AI_REQUEST_STREAM] is True
    assert llm_attrs[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert (llm_attrs[A.GEN_AI_USAGE_INPUT_TOKENS], llm_attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (12, 50)
    assert llm_attrs[A.STOP_REASON] == "tool_use"
    assert json.loads(llm_attrs[A.LLM_TOOL_CALLS]) == [{"name": "get_weather", "id": "call_9"}]
    assert llm_attrs[A.LLM_STREAM_COMPLETED] is True


# --- failing tools ------------------------------------------------------------------------------
def test_tool_error_handled_by_tool_node_fails_the_tool_span(capture: Capture, server: F.FakeServer) -> None:
    """A tool error ToolNode hands the model as text would look like a successful tool call."""
    turns = (call_turn("get_weather", '{"city": "Atlantis"}'), text_turn("No such city."))
    tools = ToolNode([get_weather], handle_tool_errors=True)
    agent = create_react_agent(model_for(server, *turns), tools)
    result = agent.invoke({"messages": [HumanMessage("Weather in Atlantis?")]})
    assert result["messages"][-1].content == "No such city."

    (tool_span,) = capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert tool_span.status.status_code is StatusCode.ERROR
    assert attrs(tool_span)[A.ERROR_TYPE] == "ValueError"
    (tool_record,) = record_of(capture, "tool_call")
    assert (tool_record["status"], tool_record["error"]) == ("error", "ValueError: no such city")
    assert tool_record["tool_call_id"] == "call_1"
    (run_record,) = record_of(capture, "run")
    assert (run_record["stop_reason"], run_record["errors"], run_record["steps"]) == ("end_turn", 1, 2)
    run = load(capture.jsonl_path).get(run_record["run_id"])
    assert run is not None
    (hypothesis,) = debug_run(run).hypotheses
    assert hypothesis.kind == "tool_failure"
    assert "get_weather failed" in hypothesis.title


def test_tool_error_that_ends_the_run_is_blamed_on_the_tool(capture: Capture, server: F.FakeServer) -> None:
    """An unhandled tool exception would be blamed on the run, or counted twice."""
    tools = ToolNode([get_weather], handle_tool_errors=False)  # langgraph-prebuilt 1.0's default handles all
    agent = create_react_agent(model_for(server, call_turn("get_weather", '{"city": "Atlantis"}')), tools)
    with pytest.raises(ValueError, match="no such city"):
        agent.invoke({"messages": [HumanMessage("Weather in Atlantis?")]})
    (tool_record,) = record_of(capture, "tool_call")
    assert tool_record["status"] == "error"
    (run_record,) = record_of(capture, "run")
    assert (run_record["stop_reason"], run_record["errors"]) == ("error", 1)


# --- stop reasons -------------------------------------------------------------------------------
def test_recursion_limit_is_max_steps(capture: Capture, server: F.FakeServer) -> None:
    """A graph stopped by its recursion limit would read as a plain error."""
    script_of(server).repeat_last = True
    model = model_for(server, call_turn("search", '{"query": "refund policy"}')).bind_tools([search])
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_node("tools", ToolNode([search]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = builder.compile(name="looper")
    with pytest.raises(GraphRecursionError):
        graph.invoke({"messages": [HumanMessage("Find the refund policy")]}, {"recursion_limit": 6})
    (run_record,) = record_of(capture, "run")
    assert (run_record["agent"], run_record["stop_reason"], run_record["status"]) == (
        "looper",
        "max_steps",
        "error",
    )
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (3, 3, 3)
    step_records = sorted(record_of(capture, "agent_step"), key=lambda r: r["agent_step"])
    assert [r["ends_run"] for r in step_records] == [False, False, True]
    assert step_records[-1]["stop_reason"] == "max_steps"


@tool
def book_flight(city: str) -> str:
    """Book a flight, once a human approved it."""
    answer = interrupt({"question": f"Book a flight to {city}?"})
    return f"booked to {city}" if answer == "yes" else "not booked"


def test_interrupt_ends_the_run_and_resume_is_a_new_run_in_the_conversation(
    capture: Capture, server: F.FakeServer
) -> None:
    """A human-in-the-loop pause would read as a failed run, and its resume as an unrelated one."""
    turns = (call_turn("book_flight", '{"city": "Rome"}'), text_turn("Booked."))
    agent = create_react_agent(model_for(server, *turns), [book_flight], checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "thread-42"}}
    paused = agent.invoke({"messages": [HumanMessage("Fly me to Rome")]}, thread)
    assert paused["__interrupt__"]
    (first,) = record_of(capture, "run")
    assert (first["stop_reason"], first["status"], first["errors"]) == ("interrupted", "ok", 0)
    assert first["conversation_id"] == "thread-42"
    (tool_record,) = record_of(capture, "tool_call")
    assert tool_record["status"] == "ok"
    (step_record,) = record_of(capture, "agent_step")
    assert (step_record["ends_run"], step_record["stop_reason"]) == (True, "interrupted")

    capture.clear()
    done = agent.invoke(Command(resume="yes"), thread)
    assert done["messages"][-1].content == "Booked."
    (second,) = record_of(capture, "run")
    assert second["run_id"] != first["run_id"]
    assert (second["stop_reason"], second["conversation_id"]) == ("end_turn", "thread-42")
    (tool_record,) = record_of(capture, "tool_call")
    assert (tool_record["status"], tool_record["tool_call_id"]) == ("ok", "call_1")
    assert json.loads(attrs(capture.spans_named(A.SPAN_TOOL_EXECUTION)[0])[A.GEN_AI_TOOL_CALL_RESULT]) == (
        "booked to Rome"
    )
    assert (second["llm_calls"], second["tool_calls"]) == (1, 1)


# --- a subgraph ---------------------------------------------------------------------------------
class Notes(TypedDict):
    messages: Annotated[list[Any], operator.add]


def test_subgraph_super_steps_are_steps_of_the_parent_run(capture: Capture, server: F.FakeServer) -> None:
    """A subgraph would open a run of its own, or its model calls would nest under one step."""
    model = model_for(server, *react_turns(), text_turn("Summary: sunny."))
    researcher = create_react_agent(model, [get_weather], name="researcher")

    def summarize(state: Notes) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(Notes)
    builder.add_node("research", researcher)
    builder.add_node("summarize", summarize)
    builder.add_edge(START, "research")
    builder.add_edge("research", "summarize")
    builder.add_edge("summarize", END)
    graph = builder.compile(name="planner")
    result = graph.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    assert result["messages"][-1].content == "Summary: sunny."

    (run_record,) = record_of(capture, "run")
    assert run_record["agent"] == "planner"
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (3, 3, 1)
    assert run_record["stop_reason"] == "end_turn"
    by_step = sorted(
        (r["agent_step"], r["type"]) for r in capture.records if r["type"] in ("llm_call", "tool_call")
    )
    assert by_step == [(1, "llm_call"), (1, "tool_call"), (2, "llm_call"), (3, "llm_call")]


# --- no double counting -------------------------------------------------------------------------
@pytest.mark.parametrize("streaming", [False, True])
def test_with_instrument_openai_one_llm_request_per_model_call(
    capture: Capture, server: F.FakeServer, streaming: bool
) -> None:
    """ChatOpenAI over an instrumented openai client would count every model call twice."""
    steptrace.instrument_openai()
    try:
        agent = create_react_agent(model_for(server, *react_turns(), streaming=streaming), [get_weather])
        agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    finally:
        steptrace.uninstrument_openai()
    llm_spans = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(llm_spans) == 2
    tokens = (12, 50) if streaming else TOKENS
    (run_record,) = record_of(capture, "run")
    assert (run_record["llm_calls"], run_record["input_tokens"], run_record["output_tokens"]) == (
        2,
        2 * tokens[0],
        2 * tokens[1],
    )
    for llm in llm_spans:
        llm_attrs = attrs(llm)
        assert llm_attrs[A.SERVER_ADDRESS] == "127.0.0.1"
        assert llm_attrs[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
        if streaming:
            assert llm_attrs[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert [attrs(s)[A.STOP_REASON] for s in sorted(llm_spans, key=lambda s: s.start_time or 0)] == [
        "tool_use",
        "end_turn",
    ]


# --- the same records as a hand-decorated agent -------------------------------------------------
def shape(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a step log says about a run, without ids, times and names."""
    rows = []
    for r in records:
        if r["type"] == "run":
            rows.append(
                ("run", r["stop_reason"], r["steps"], r["llm_calls"], r["tool_calls"], r["input_tokens"])
            )
        elif r["type"] == "agent_step":
            rows.append(("agent_step", r["agent_step"], r["ends_run"], r["stop_reason"]))
        elif r["type"] == "llm_call":
            rows.append(
                ("llm_call", r["agent_step"], r["input_tokens"], r["output_tokens"], r["stop_reason"])
            )
        elif r["type"] == "tool_call":
            rows.append(("tool_call", r["agent_step"], r["tool"], r["tool_call_id"], r["status"]))
    return sorted(rows, key=str)


def test_records_have_the_shape_of_a_hand_decorated_agent(capture: Capture, server: F.FakeServer) -> None:
    """The graph's step log would differ from the loop the README decorates by hand."""
    import openai

    agent = create_react_agent(model_for(server, *react_turns()), [get_weather])
    agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    from_graph = capture.records
    capture.clear()

    script_of(server).turns.extend(react_turns())
    client = openai.OpenAI(base_url=server.url("/v1"), api_key=F.API_KEY, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    with steptrace.agent_run(agent="by-hand"):
        for _ in range(5):
            with steptrace.agent_step() as step:
                with steptrace.llm_request(model="gpt-4o", provider="openai") as llm:
                    reply = client.chat.completions.create(model="gpt-4o", messages=messages)
                    llm.record_response(reply)
                message = reply.choices[0].message
                if not message.tool_calls:
                    step.stop_reason = "end_turn"
                    break
                messages.append(message.model_dump(exclude_none=True))
                for call in message.tool_calls:
                    arguments = json.loads(call.function.arguments)
                    with steptrace.tool("get_weather", call_id=call.id, arguments=arguments):
                        result = f"sunny in {arguments['city']}"
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    assert shape(from_graph) == shape(capture.records)


# --- instrumenting ------------------------------------------------------------------------------
def test_graph_called_in_the_users_run_adds_its_steps_to_it(capture: Capture, server: F.FakeServer) -> None:
    """A graph called inside the user's own agent_run would open a second, nested run."""
    agent = create_react_agent(model_for(server, *react_turns()), [get_weather])
    with steptrace.agent_run(agent="mine", release="v2") as run:
        agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    (run_record,) = record_of(capture, "run")
    assert (run_record["run_id"], run_record["agent"], run_record["release"]) == (run.run_id, "mine", "v2")
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (2, 2, 1)
    assert run_record["stop_reason"] == "end_turn"


def assert_one_loop_per_run(capture: Capture, user_run: str) -> None:
    """Two ReAct loops under the user's run: the first loop's steps are the user's run's, the
    second is a child run (``parent_run_id``) with steps of its own; no step numbers shared, each
    call in a step of its own run."""
    runs = {r["run_id"]: r for r in record_of(capture, "run")}
    assert len(runs) == 2 and user_run in runs
    (child,) = [r for r in runs.values() if r["run_id"] != user_run]
    assert (runs[user_run]["agent"], runs[user_run]["parent_run_id"]) == ("mine", None)
    assert (child["agent"], child["parent_run_id"]) == ("LangGraph", user_run)
    for run in runs.values():
        assert (run["steps"], run["llm_calls"], run["tool_calls"]) == (2, 2, 1)
        mine = [r for r in capture.records if r["run_id"] == run["run_id"]]
        steps = {r["span_id"]: r["agent_step"] for r in mine if r["type"] == "agent_step"}
        assert sorted(steps.values()) == [1, 2]
        calls = [r for r in mine if r["type"] in ("llm_call", "tool_call")]
        assert len(calls) == 3
        assert all(steps.get(r["parent_span_id"]) == r["agent_step"] for r in calls)


def two_agents(first: F.FakeServer, second: F.FakeServer) -> list[Any]:
    return [create_react_agent(model_for(fake, *react_turns()), [get_weather]) for fake in (first, second)]


def test_graphs_gathered_in_the_users_run_do_not_share_its_steps(capture: Capture) -> None:
    """Two graphs run side by side with asyncio.gather inside one agent_run would interleave their
    step numbers and mix up which model and tool calls belong to which loop (or lose steps)."""

    async def main(agents: list[Any]) -> str:
        with steptrace.agent_run(agent="mine") as run:
            await asyncio.gather(
                *(a.ainvoke({"messages": [HumanMessage("Weather in Paris?")]}) for a in agents)
            )
        return run.run_id

    with F.FakeServer(ModelTurns()) as first, F.FakeServer(ModelTurns()) as second:
        user_run = asyncio.run(main(two_agents(first, second)))
    assert_one_loop_per_run(capture, user_run)


def test_graphs_run_in_threads_in_the_users_run_do_not_share_its_steps(capture: Capture) -> None:
    """The same with two threads (bind_context carrying the run into each)."""
    from concurrent.futures import ThreadPoolExecutor

    with F.FakeServer(ModelTurns()) as first, F.FakeServer(ModelTurns()) as second:
        agents = two_agents(first, second)
        with steptrace.agent_run(agent="mine") as run, ThreadPoolExecutor(2) as pool:
            ask = steptrace.bind_context(lambda agent: agent.invoke({"messages": [HumanMessage("Weather?")]}))
            list(pool.map(ask, agents))
    assert_one_loop_per_run(capture, run.run_id)


def test_graphs_run_one_after_the_other_in_the_users_run_add_to_its_steps(
    capture: Capture, server: F.FakeServer
) -> None:
    """A second graph called after the first ended (not beside it) would become a run of its own."""
    agent = create_react_agent(model_for(server, *react_turns(), *react_turns()), [get_weather])
    with steptrace.agent_run(agent="mine") as run:
        agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
        agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    (run_record,) = record_of(capture, "run")
    assert (run_record["run_id"], run_record["steps"], run_record["llm_calls"]) == (run.run_id, 4, 4)


def test_uninstrument_restores_langgraph_and_langchain(capture: Capture, server: F.FakeServer) -> None:
    """After uninstrument_langchain() graphs would still be traced (or stay patched)."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.tools import BaseTool
    from langgraph.pregel import Pregel

    steptrace.uninstrument_langchain()
    for owner, name in ((Pregel, "stream"), (BaseChatModel, "_generate_with_cache"), (BaseTool, "run")):
        assert not hasattr(owner.__dict__[name], "__wrapped__")
    agent = create_react_agent(model_for(server, *react_turns()), [get_weather])
    assert (
        agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})["messages"][-1].content
        == "It is sunny."
    )
    assert capture.spans == []
    steptrace.instrument_langchain()
    steptrace.instrument_langchain()  # a logged no-op
    assert hasattr(Pregel.__dict__["stream"], "__wrapped__")
    assert not hasattr(Pregel.__dict__["stream"].__wrapped__, "__wrapped__")


def test_entry_point_names_the_instrumentor() -> None:
    """opentelemetry-instrument would not find the LangChain instrumentor."""
    from importlib.metadata import entry_points

    from steptrace.instrumentation.langchain import LangChainInstrumentor

    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["steptrace_langchain"].load() is LangChainInstrumentor
    assert LangChainInstrumentor() is LangChainInstrumentor()


def test_untraced_without_configuration(server: F.FakeServer) -> None:
    """Without steptrace configured, an instrumented graph would fail or change its result."""
    turns = (call_turn("get_weather", '{"city": "Atlantis"}'), text_turn("No such city."))
    agent = create_react_agent(model_for(server, *turns), ToolNode([get_weather], handle_tool_errors=True))
    assert agent.invoke({"messages": [HumanMessage("Weather?")]})["messages"][-1].content == "No such city."


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream"])
def test_react_agents_own_step_limit_ends_max_steps(capture: Capture, server: F.FakeServer, how: str) -> None:
    """create_react_agent answering "Sorry, need more steps" by itself (remaining_steps ran out)
    would read as a run that ended its turn, not one stopped by its step limit."""
    script_of(server).repeat_last = True
    agent = create_react_agent(model_for(server, call_turn("search", '{"query": "refund policy"}')), [search])
    request = {"messages": [HumanMessage("Find the refund policy")]}
    config: Any = {"recursion_limit": 6}
    if how == "invoke":
        messages = agent.invoke(request, config)["messages"]
    elif how == "ainvoke":
        messages = asyncio.run(agent.ainvoke(request, config))["messages"]
    else:
        messages = [
            m for chunk in agent.stream(request, config) for m in chunk.get("agent", {}).get("messages", [])
        ]
    assert "need more steps" in messages[-1].content
    (run_record,) = record_of(capture, "run")
    assert (run_record["stop_reason"], run_record["status"], run_record["steps"]) == ("max_steps", "ok", 3)
    step_records = sorted(record_of(capture, "agent_step"), key=lambda r: r["agent_step"])
    assert [(r["ends_run"], r["stop_reason"]) for r in step_records] == [
        (False, None),
        (False, None),
        (True, "max_steps"),
    ]


def test_a_graph_answering_like_the_step_limit_on_its_own_ends_end_turn(capture: Capture) -> None:
    """A node of the user's own that writes an answer with the same words (no step limit behind
    it: the model asked for no tool) would be read as a run stopped by its step limit."""
    with F.FakeServer(ModelTurns(text_turn("Sorry, need more steps to process this request."))) as fake:
        model = ChatOpenAI(model="gpt-4o", base_url=fake.url("/v1"), api_key=F.API_KEY, max_retries=0)
        agent = create_react_agent(model, [search])
        agent.invoke({"messages": [HumanMessage("Find the refund policy")]})
    (run_record,) = record_of(capture, "run")
    assert run_record["stop_reason"] == "end_turn"


def test_example_runs_offline(tmp_path: Path) -> None:
    """examples/langgraph_agent.py would fail offline, or its log would not show the ReAct steps."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "STEPTRACE_JSONL_PATH"}
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "langgraph_agent.py")],
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


def test_a_recorded_graph_run_reproduces_in_a_new_process(tmp_path: Path) -> None:
    """`steptrace rerun RUN -- python examples/langgraph_agent.py` (a new process): LangGraph gives
    every new message a random id each run; the match must not see it, and the served ChatResult
    must be the classes LangChain reads (ChatGeneration of an AIMessage)."""
    root = Path(__file__).resolve().parents[1]
    example = str(root / "examples" / "langgraph_agent.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPTRACE_")}
    recorded = subprocess.run(
        [sys.executable, example],
        cwd=tmp_path,
        env={**env, "STEPTRACE_RECORD_FOR_RERUN": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    run_id = recorded.stdout.strip().splitlines()[-1].split()[1].rstrip(":")
    rerun = subprocess.run(
        [sys.executable, "-m", "steptrace", "rerun", run_id, "--", sys.executable, example],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    verdict = "reproduced: 2 steps, end_turn, get_weather x1 (same as the original)"
    assert verdict in rerun.stdout, rerun.stdout
    assert "model calls: 2 served from the recording, 0 live" in rerun.stdout


# --- parallel tool calls, abandoned streams -----------------------------------------------------
def test_parallel_tool_calls_run_in_the_step_that_asked_for_them(capture: Capture) -> None:
    """Tool calls LangGraph runs side by side (one task each) would leave their step or lose their ids."""
    calls = [("call_a", "get_weather", '{"city": "Paris"}'), ("call_b", "get_weather", '{"city": "Rome"}')]
    script = F.Script(
        F.json_reply(F.chat_completion(None, tool_calls=calls, finish_reason="tool_calls")),
        F.json_reply(F.chat_completion("Sunny in both.")),
    )
    with F.FakeServer(script) as fake:
        model = ChatOpenAI(model="gpt-4o", base_url=fake.url("/v1"), api_key=F.API_KEY, max_retries=0)
        agent = create_react_agent(model, [get_weather])
        agent.invoke({"messages": [HumanMessage("Weather in Paris and Rome?")]})
    first, _second = steps(capture)
    tool_spans = children(capture, first, A.SPAN_TOOL_EXECUTION)
    assert sorted(attrs(s)[A.GEN_AI_TOOL_CALL_ID] for s in tool_spans) == ["call_a", "call_b"]
    (run_record,) = record_of(capture, "run")
    assert (run_record["steps"], run_record["llm_calls"], run_record["tool_calls"]) == (2, 2, 2)


@pytest.mark.parametrize("is_async", [False, True])
def test_a_stream_left_early_ends_its_run_and_step(
    capture: Capture, server: F.FakeServer, is_async: bool
) -> None:
    """A consumer that stops reading a graph's stream would leave its run or step open forever."""
    agent = create_react_agent(model_for(server, *react_turns()), [get_weather])
    request = {"messages": [HumanMessage("Weather in Paris?")]}

    async def first_update() -> Any:
        stream = agent.astream(request, stream_mode="updates")
        async for update in stream:
            await stream.aclose()
            return update
        return None

    if is_async:
        update = asyncio.run(first_update())
    else:
        stream = agent.stream(request, stream_mode="updates")
        update = next(stream)
        stream.close()
    assert next(iter(update)) == "agent"
    (run_record,) = record_of(capture, "run")
    (step_record,) = record_of(capture, "agent_step")
    assert (run_record["steps"], run_record["llm_calls"], step_record["agent_step"]) == (1, 1, 1)


def test_v2_content_block_events_mark_time_to_first_chunk(capture: Capture, server: F.FakeServer) -> None:
    """A model streamed through LangChain's v2 events (no on_llm_new_token) would have no TTFT."""
    from langchain_core.callbacks import BaseCallbackHandler

    streaming = pytest.importorskip("langchain_core.tracers._streaming")
    if not hasattr(streaming, "_V2StreamingCallbackHandler"):
        pytest.skip("this langchain-core has no v2 content-block events")
    _V2StreamingCallbackHandler = streaming._V2StreamingCallbackHandler

    class EventHandler(BaseCallbackHandler, _V2StreamingCallbackHandler):
        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_stream_event(self, event: Any, **kwargs: Any) -> None:
            self.events.append(event)

    handler = EventHandler()
    reply = model_for(server, text_turn("Sunny.")).invoke("Weather?", {"callbacks": [handler]})
    assert reply.text == "Sunny."
    assert any(e.get("event") == "content-block-delta" for e in handler.events)
    (llm,) = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert attrs(llm)[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert (attrs(llm)[A.GEN_AI_USAGE_INPUT_TOKENS], attrs(llm)[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (12, 50)
