"""steptrace.instrument_pydantic_ai: the real Pydantic AI, its OpenAI chat model pointed at a fake
OpenAI server on 127.0.0.1. run_sync, run, run_stream and iter; a tool, a failing tool (ModelRetry),
an output validator's retry, a usage limit; with Pydantic AI's own instrumentation on, and over an
instrumented openai client."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import StatusCode
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import UsageLimitExceeded
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
                (kind, record["agent_step"], record["input_tokens"], record["output_tokens"], record["stop_reason"])
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
    assert all(r["parent_span_id"] == steps[r["agent_step"]] for r in records if r["type"] in ("llm_call", "tool_call"))
    assert all(r["parent_span_id"] == run["span_id"] for r in records if r["type"] == "agent_step")
