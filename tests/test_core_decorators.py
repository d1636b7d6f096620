"""One decorator, four paths: sync, async, generator and async generator, bare and with arguments."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture


@steptrace.agent_run(agent="researcher", release="v2")
def sync_agent(question: str) -> str:
    """Answer a question."""
    return answer_step(question)


@steptrace.agent_step
def answer_step(question: str) -> str:
    return lookup(question)


@steptrace.tool
def lookup(key: str) -> str:
    return key.upper()


@steptrace.agent_run
async def async_agent(question: str) -> str:
    return await async_lookup(question)


@steptrace.tool(name="async_lookup_tool")
async def async_lookup(key: str) -> str:
    await asyncio.sleep(0)
    return key[::-1]


@steptrace.llm_request(provider="openai")
def call_model(prompt: str) -> dict[str, object]:
    return {
        "object": "chat.completion",
        "id": "chatcmpl-1",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"finish_reason": "length", "message": {"role": "assistant", "content": prompt}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }


@steptrace.llm_request(model="scripted", provider="scripted")
def stream_tokens(n: int) -> Iterator[str]:
    for index in range(n):
        yield f"token-{index}"


@steptrace.tool
async def async_pages(count: int) -> AsyncIterator[int]:
    for page in range(count):
        await asyncio.sleep(0)
        yield page


def test_decorated_functions_keep_name_doc_and_signature() -> None:
    """Frameworks that introspect tools (schemas from signatures) still see the original."""
    assert sync_agent.__name__ == "sync_agent"
    assert sync_agent.__doc__ == "Answer a question."
    assert list(inspect.signature(sync_agent).parameters) == ["question"]
    assert inspect.signature(sync_agent).return_annotation in (str, "str")
    assert inspect.iscoroutinefunction(async_agent)
    assert inspect.isgeneratorfunction(stream_tokens)
    assert inspect.isasyncgenfunction(async_pages)


def test_sync_decorators_nest(steptrace_capture: Capture) -> None:
    """Decorated entry point, loop body and tool produce run > step > tool."""
    assert sync_agent("q3") == "Q3"
    (run,) = steptrace_capture.spans_named("agent_run")
    (step,) = steptrace_capture.spans_named("agent_step")
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert step.parent is not None and step.parent.span_id == run.context.span_id
    assert tool.parent is not None and tool.parent.span_id == step.context.span_id
    assert (run.attributes or {})[A.GEN_AI_AGENT_VERSION] == "v2"
    assert (tool.attributes or {})[A.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"key":"q3"}'
    assert (tool.attributes or {})[A.GEN_AI_TOOL_CALL_RESULT] == '"Q3"'


def test_async_decorators(steptrace_capture: Capture) -> None:
    """Coroutines are traced across awaits and the agent is named after the function."""
    assert asyncio.run(async_agent("abc")) == "cba"
    (run,) = steptrace_capture.spans_named("agent_run")
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert (run.attributes or {})[A.GEN_AI_AGENT_NAME] == "async_agent"
    assert (tool.attributes or {})[A.GEN_AI_TOOL_NAME] == "async_lookup_tool"
    assert tool.parent is not None and tool.parent.span_id == run.context.span_id


def test_llm_decorator_reads_the_return_value(steptrace_capture: Capture) -> None:
    """Model, usage and a normalised stop reason come from the response without extra code."""
    with steptrace.agent_run(agent="a"):
        call_model("hi")
    (llm,) = steptrace_capture.spans_named("llm_request")
    attributes = llm.attributes or {}
    assert attributes[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 11
    assert tuple(attributes[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ("length",)  # type: ignore[arg-type]
    assert attributes[A.STOP_REASON] == "max_tokens"
    (record,) = [r for r in steptrace_capture.records if r["type"] == "llm_call"]
    assert record["stop_reason"] == "max_tokens"
    assert record["model"] == "gpt-4o-2024-08-06"


def test_generator_span_covers_iteration_and_records_ttft(steptrace_capture: Capture) -> None:
    """A streaming generator's span ends when exhausted, with time to first chunk."""
    with steptrace.agent_run(agent="a"):
        assert list(stream_tokens(5)) == [f"token-{i}" for i in range(5)]
    (llm,) = steptrace_capture.spans_named("llm_request")
    attributes = llm.attributes or {}
    assert attributes[A.GEN_AI_REQUEST_STREAM] is True
    assert attributes[A.LLM_STREAM_COMPLETED] is True
    assert float(attributes[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]) >= 0  # type: ignore[arg-type]
    assert len(steptrace_capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK)) == 1


def test_generator_early_break_ends_span_without_detach_errors(
    steptrace_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """Breaking out of a traced stream ends its span and never logs 'Failed to detach context'."""
    caplog.set_level(logging.DEBUG)
    with steptrace.agent_run(agent="a") as run:
        for token in stream_tokens(10):
            if token == "token-2":
                break
        # The consumer's context is the run's, not the abandoned generator's span.
        current = trace.get_current_span()
        assert current.get_span_context().span_id == run.span.get_span_context().span_id
    gc.collect()
    (llm,) = steptrace_capture.spans_named("llm_request")
    assert (llm.attributes or {})[A.LLM_STREAM_COMPLETED] is False
    assert llm.end_time is not None
    assert "Failed to detach context" not in caplog.text


def test_async_generator_early_break(steptrace_capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """An async generator abandoned after break is closed by the loop and its span ends cleanly."""
    caplog.set_level(logging.DEBUG)

    async def consume() -> list[int]:
        seen = []
        with steptrace.agent_run(agent="a"):
            async for page in async_pages(10):
                seen.append(page)
                if page == 2:
                    break
        return seen

    assert asyncio.run(consume()) == [0, 1, 2]
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert tool.end_time is not None
    assert (tool.attributes or {})[A.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"count":10}'
    assert "Failed to detach context" not in caplog.text


def test_generator_exception_propagates_and_marks_error(steptrace_capture: Capture) -> None:
    """An error inside a traced generator reaches the consumer unchanged and fails the span."""

    @steptrace.tool
    def pages() -> Iterator[int]:
        yield 1
        raise ConnectionError("page 2 unavailable")

    with steptrace.agent_run(agent="a"), pytest.raises(ConnectionError, match="page 2"):
        list(pages())
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert (tool.attributes or {})[A.ERROR_TYPE] == "ConnectionError"


def test_generator_send_and_throw_are_forwarded(steptrace_capture: Capture) -> None:
    """Coroutine-style generators keep working: send() values and throw() reach the body."""

    @steptrace.tool
    def accumulator() -> Iterator[int]:
        total = 0
        while True:
            try:
                value = yield total
            except ValueError:
                value = -total
            total += value

    gen = accumulator()
    assert next(gen) == 0
    assert gen.send(5) == 5
    assert gen.throw(ValueError()) == 0
    gen.close()
    assert len(steptrace_capture.spans_named("tool_execution")) == 1


def test_methods_are_hashed_without_self(steptrace_capture: Capture) -> None:
    """Two identical calls on different instances hash the same: repeated calls are spotted."""

    class Tools:
        @steptrace.tool
        def fetch(self, url: str) -> str:
            return url

    with steptrace.agent_run(agent="a"):
        Tools().fetch("https://example.test")
        Tools().fetch(url="https://example.test")
    hashes = {(s.attributes or {})[A.TOOL_ARGS_HASH] for s in steptrace_capture.spans_named("tool_execution")}
    assert len(hashes) == 1


def test_tool_executor_names_span_after_first_argument(steptrace_capture: Capture) -> None:
    """A generic executor gets one span per tool, named by the tool, hashed by its arguments."""

    @steptrace.tool_executor
    def execute_tool(tool_name: str, tool_args: dict[str, object]) -> str:
        return f"{tool_name}:{tool_args}"

    with steptrace.agent_run(agent="a"):
        execute_tool("get_weather", {"city": "Paris"})
        execute_tool("get_weather", {"city": "Paris"})
        execute_tool("search", {"q": "x"})
    spans = steptrace_capture.spans_named("tool_execution")
    names = [(s.attributes or {})[A.GEN_AI_TOOL_NAME] for s in spans]
    assert names == ["get_weather", "get_weather", "search"]
    hashes = [(s.attributes or {})[A.TOOL_ARGS_HASH] for s in spans]
    assert hashes[0] == hashes[1] != hashes[2]
    assert (spans[0].attributes or {})[A.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"city":"Paris"}'


def test_async_context_managers(steptrace_capture: Capture) -> None:
    """``async with`` works for every span kind."""

    async def main() -> None:
        async with steptrace.agent_run(agent="a"), steptrace.agent_step(), steptrace.tool("t"):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert sorted(s.name for s in steptrace_capture.spans) == ["agent_run", "agent_step", "tool_execution"]


def test_one_spec_object_reused_by_concurrent_tasks(steptrace_capture: Capture) -> None:
    """A module-level ``STEP = steptrace.agent_step()`` used by concurrent tasks ends the right spans."""
    shared_step = steptrace.agent_step()

    async def one_run(delay: float) -> int:
        async with steptrace.agent_run(agent="a"):
            async with shared_step as step:
                await asyncio.sleep(delay)
                await async_lookup("x")
                return step.number

    async def main() -> list[int]:
        return await asyncio.gather(one_run(0.02), one_run(0.0), one_run(0.01))

    assert asyncio.run(main()) == [1, 1, 1]
    steps = steptrace_capture.spans_named("agent_step")
    runs = {s.context.span_id: s for s in steptrace_capture.spans_named("agent_run")}
    assert len(steps) == 3
    for step in steps:
        assert step.parent is not None and step.parent.span_id in runs
        (tool,) = [
            t
            for t in steptrace_capture.spans_named("tool_execution")
            if t.parent and t.parent.span_id == step.context.span_id
        ]
        assert tool.end_time is not None and step.end_time is not None and tool.end_time <= step.end_time


def test_agent_run_with_empty_parentheses_names_the_agent(steptrace_capture: Capture) -> None:
    """``@steptrace.agent_run()`` and ``@steptrace.agent_run`` both name the agent after the function."""

    @steptrace.agent_run()
    def billing_agent() -> None:
        pass

    billing_agent()
    (run,) = steptrace_capture.spans_named("agent_run")
    assert (run.attributes or {})[A.GEN_AI_AGENT_NAME] == "billing_agent"
