"""One owner for every span's life: every shape a real agent takes ends each span once, with the
right status (issue: spans left open, normal exits recorded as errors, reused specs mutated)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def names(capture: Capture) -> list[str]:
    return sorted(span.name for span in capture.spans)


def assert_all_ok(capture: Capture, expected: list[str]) -> None:
    assert names(capture) == sorted(expected)
    for span in capture.spans:
        assert span.status.status_code is not StatusCode.ERROR, (span.name, span.status)
        assert A.ERROR_TYPE not in attrs(span), (span.name, attrs(span))


BLOCKS: dict[str, Callable[[], Any]] = {
    "agent_run": lambda: steptrace.agent_run(agent="a"),
    "agent_step": steptrace.agent_step,
    "tool": lambda: steptrace.tool("t"),
    "llm_request": lambda: steptrace.llm_request(model="m", provider="p"),
}
SPAN_OF = {
    "agent_run": A.SPAN_AGENT_RUN,
    "agent_step": A.SPAN_AGENT_STEP,
    "tool": A.SPAN_TOOL_EXECUTION,
    "llm_request": A.SPAN_LLM_REQUEST,
}


# --- 1. a with block inside a generator left early is a normal exit ----------------------------
@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("how", ["break", "close", "gc"])
def test_with_block_in_generator_left_early_is_not_a_failure(
    steptrace_capture: Capture, kind: str, how: str
) -> None:
    """A consumer that stops reading a generator early must not turn its spans into errors."""

    def pages() -> Iterator[int]:
        with BLOCKS[kind]():
            yield from range(10)

    with steptrace.agent_run(agent="outer") as run:
        gen = pages()
        for page in gen:
            if page == 1:
                break
        if how == "close":
            gen.close()
        del gen
        gc.collect()
    assert_all_ok(steptrace_capture, [A.SPAN_AGENT_RUN, SPAN_OF[kind]])
    assert run.stop_reason == A.STOP_END_TURN


@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("how", ["break", "aclose"])
def test_async_with_block_in_async_generator_left_early_is_not_a_failure(
    steptrace_capture: Capture, kind: str, how: str
) -> None:
    """The async twin: ``async with`` inside an async generator closed with aclose() or a break."""

    async def pages() -> AsyncIterator[int]:
        async with BLOCKS[kind]():
            for page in range(10):
                await asyncio.sleep(0)
                yield page

    async def main() -> None:
        async with steptrace.agent_run(agent="outer"):
            gen = pages()
            async for page in gen:
                if page == 1:
                    break
            await gen.aclose()

    asyncio.run(main())
    assert_all_ok(steptrace_capture, [A.SPAN_AGENT_RUN, SPAN_OF[kind]])


def test_async_generator_collected_by_the_loop_ends_its_block_cleanly(
    steptrace_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """An abandoned async generator is closed by the event loop's finalizer, in another task."""

    async def pages() -> AsyncIterator[int]:
        with steptrace.tool("paged"):
            for page in range(10):
                yield page

    async def main() -> None:
        gen = pages()
        async for _ in gen:
            break
        del gen
        gc.collect()
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert_all_ok(steptrace_capture, [A.SPAN_TOOL_EXECUTION])
    assert "Failed to detach context" not in caplog.text


# --- 2. a generator driven in copied contexts (Starlette, anyio) still ends its span ------------
@pytest.mark.parametrize("kind", list(BLOCKS))
def test_generator_driven_in_copied_contexts_ends_its_span(
    steptrace_capture: Capture, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``copy_context().run(next, gen)`` per item, as iterate_in_threadpool does: span still ends."""

    def pages() -> Iterator[int]:
        with BLOCKS[kind]():
            yield from range(3)

    gen = pages()
    items = []
    while True:
        try:
            items.append(contextvars.copy_context().run(next, gen))
        except StopIteration:
            break
    assert items == [0, 1, 2]
    assert_all_ok(steptrace_capture, [SPAN_OF[kind]])
    assert "Failed to detach context" not in caplog.text


def test_generator_driven_from_worker_threads_ends_its_span(steptrace_capture: Capture) -> None:
    """Each next() in a different thread (a thread pool driving a sync iterator)."""

    def pages() -> Iterator[int]:
        with steptrace.tool("paged"):
            yield from range(3)

    gen = pages()
    results: list[int] = []

    def step() -> None:
        with contextlib.suppress(StopIteration):
            results.append(contextvars.copy_context().run(next, gen))

    for _ in range(4):
        worker = threading.Thread(target=step)
        worker.start()
        worker.join()
    assert results == [0, 1, 2]
    assert_all_ok(steptrace_capture, [A.SPAN_TOOL_EXECUTION])


# --- 3. specs never change when used -----------------------------------------------------------
def test_one_spec_names_each_decorated_function_after_itself(steptrace_capture: Capture) -> None:
    """``t = agent_run(release="v1")`` on two functions: each run is named after its function."""
    spec = steptrace.agent_run(release="v1")

    @spec
    def planner() -> None:
        pass

    @spec
    def executor() -> None:
        pass

    planner()
    executor()
    with spec:
        pass
    agents = [attrs(s).get(A.GEN_AI_AGENT_NAME) for s in steptrace_capture.spans_named(A.SPAN_AGENT_RUN)]
    assert agents == ["planner", "executor", None]
    assert all(attrs(s)[A.GEN_AI_AGENT_VERSION] == "v1" for s in steptrace_capture.spans)


def test_decorating_a_generator_does_not_make_a_later_block_a_stream(steptrace_capture: Capture) -> None:
    """``spec = llm_request(...)`` on a generator, then ``with spec:`` is not a stream."""
    spec = steptrace.llm_request(model="m", provider="p")

    @spec
    def tokens() -> Iterator[str]:
        yield "a"

    list(tokens())
    with spec as request:
        assert request.stream is False
    spans = steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)
    streams = [attrs(s).get(A.GEN_AI_REQUEST_STREAM) for s in spans]
    assert streams == [True, None]


def test_reused_spec_in_concurrent_tasks_ends_each_block(steptrace_capture: Capture) -> None:
    """A module-level ``STEP = agent_step()`` entered by concurrent tasks: every block ends once."""
    step_spec = steptrace.agent_step()

    async def worker(number: int) -> int:
        async with step_spec as step:
            await asyncio.sleep(0.001 * (5 - number))
            return step.number

    async def main() -> list[int]:
        async with steptrace.agent_run(agent="fan-out"):
            return list(await asyncio.gather(*(worker(n) for n in range(5))))

    numbers = asyncio.run(main())
    assert sorted(numbers) == [1, 2, 3, 4, 5]
    steps = steptrace_capture.spans_named(A.SPAN_AGENT_STEP)
    assert sorted(attrs(s)[A.AGENT_STEP_NUMBER] for s in steps) == [1, 2, 3, 4, 5]
    run = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run)[A.RUN_STEPS] == 5


def test_reused_spec_nested_in_itself_ends_inner_then_outer(steptrace_capture: Capture) -> None:
    """The same spec object entered twice, nested: the inner exit ends the inner span."""
    spec = steptrace.tool("t")
    with spec as outer:
        with spec as inner:
            pass
        assert inner.span.end_time is not None  # type: ignore[attr-defined]
        assert outer.span.end_time is None  # type: ignore[attr-defined]
    assert len(steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)) == 2


# --- 5. an async SDK call opens its span when the request starts -------------------------------
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_async_sdk_call_never_awaited_leaves_no_span(steptrace_capture: Capture, sdk: str) -> None:
    """A coroutine created and dropped (or a task cancelled before it runs) opens no span."""
    started: list[str] = []

    class Starts(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(span.name)

    steptrace_capture.tracer_provider.add_span_processor(Starts())
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    try:
        script = F.Script()

        async def main() -> None:
            async with steptrace.agent_run(agent="a") as run:
                if sdk == "openai":
                    client: Any = F.async_openai_client(script)
                    never = client.chat.completions.create(model="gpt-4o", messages=[])
                    cancelled = client.chat.completions.create(model="gpt-4o", messages=[])
                else:
                    client = F.async_anthropic_client(script)
                    never = client.messages.create(model="c", max_tokens=5, messages=[])
                    cancelled = client.messages.create(model="c", max_tokens=5, messages=[])
                task = asyncio.ensure_future(cancelled)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                never.close()
                run.stop_reason = "done"

        asyncio.run(main())
    finally:
        steptrace.uninstrument_openai()
        steptrace.uninstrument_anthropic()
    assert names(steptrace_capture) == [A.SPAN_AGENT_RUN]
    assert started == [A.SPAN_AGENT_RUN], "a span was opened for a request never sent"
    run_span = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run_span)[A.RUN_LLM_CALLS] == 0


# --- 6. a decorated llm_request helper returning an SDK stream ---------------------------------
def _openai_stream_reply() -> F.Canned:
    return F.sse_reply(F.openai_sse(F.chat_chunks(["Par", "is."], usage=(12, 50))))


def _anthropic_stream_reply() -> F.Canned:
    return F.sse_reply(F.anthropic_sse(F.anthropic_events(["Par", "is."], output_tokens=40)))


def assert_stream_landed_on_its_span(capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    """Usage, TTFT and stream_completed on the one llm_request span, counted in the run's totals."""
    (span,) = capture.spans_named(A.SPAN_LLM_REQUEST)
    got = attrs(span)
    assert got[A.LLM_STREAM_COMPLETED] is True
    assert got[A.GEN_AI_USAGE_OUTPUT_TOKENS] in (50, 40)
    assert A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in got
    run = capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run)[A.RUN_OUTPUT_TOKENS] == got[A.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert "ended span" not in caplog.text


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_decorated_helper_returning_a_stream_keeps_its_span_open(
    steptrace_capture: Capture, sdk: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Usage, stream_completed and TTFT of a returned stream land on the helper's span."""
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    try:
        if sdk == "openai":
            client: Any = F.openai_client(F.Script(_openai_stream_reply()))

            @steptrace.llm_request(provider="openai")
            def ask() -> Any:
                return client.chat.completions.create(
                    model="gpt-4o", messages=[], stream=True, stream_options={"include_usage": True}
                )
        else:
            client = F.anthropic_client(F.Script(_anthropic_stream_reply()))

            @steptrace.llm_request(provider="anthropic")
            def ask() -> Any:
                return client.messages.create(model="c", max_tokens=5, messages=[], stream=True)

        with caplog.at_level(logging.WARNING), steptrace.agent_run(agent="a"):
            chunks = list(ask())
    finally:
        steptrace.uninstrument_openai()
        steptrace.uninstrument_anthropic()
    assert chunks
    assert_stream_landed_on_its_span(steptrace_capture, caplog)


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_async_decorated_helper_returning_a_stream_keeps_its_span_open(
    steptrace_capture: Capture, sdk: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The async twin: ``async def`` helper returning an ``AsyncStream``."""
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    try:
        if sdk == "openai":
            client: Any = F.async_openai_client(F.Script(_openai_stream_reply()))

            @steptrace.llm_request(provider="openai")
            async def ask() -> Any:
                return await client.chat.completions.create(
                    model="gpt-4o", messages=[], stream=True, stream_options={"include_usage": True}
                )
        else:
            client = F.async_anthropic_client(F.Script(_anthropic_stream_reply()))

            @steptrace.llm_request(provider="anthropic")
            async def ask() -> Any:
                return await client.messages.create(model="c", max_tokens=5, messages=[], stream=True)

        async def main() -> list[Any]:
            async with steptrace.agent_run(agent="a"):
                stream = await ask()
                return [chunk async for chunk in stream]

        with caplog.at_level(logging.WARNING):
            chunks = asyncio.run(main())
    finally:
        steptrace.uninstrument_openai()
        steptrace.uninstrument_anthropic()
    assert chunks
    assert_stream_landed_on_its_span(steptrace_capture, caplog)


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_with_block_whose_stream_is_read_after_the_block_keeps_its_span_open(
    steptrace_capture: Capture, sdk: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``with llm_request(): stream = create(stream=True)``, read after the block: same totals."""
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    try:
        with caplog.at_level(logging.WARNING), steptrace.agent_run(agent="a"):
            with steptrace.llm_request(provider=sdk):
                if sdk == "openai":
                    stream = F.openai_client(F.Script(_openai_stream_reply())).chat.completions.create(
                        model="gpt-4o", messages=[], stream=True, stream_options={"include_usage": True}
                    )
                else:
                    stream = F.anthropic_client(F.Script(_anthropic_stream_reply())).messages.create(
                        model="c", max_tokens=5, messages=[], stream=True
                    )
            assert steptrace_capture.spans_named(A.SPAN_LLM_REQUEST) == []  # still open
            chunks = list(stream)
    finally:
        steptrace.uninstrument_openai()
        steptrace.uninstrument_anthropic()
    assert chunks
    assert_stream_landed_on_its_span(steptrace_capture, caplog)


# --- the "also" list ---------------------------------------------------------------------------
def test_sync_callable_returning_an_awaitable_is_traced_until_it_completes(
    steptrace_capture: Capture,
) -> None:
    """``@tool def fetch(): return client.get(...)`` (a coroutine): the span covers the await."""

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    @steptrace.tool
    def fetch() -> Any:
        return slow()

    assert asyncio.run(fetch()) == "done"
    (span,) = steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.045
    assert attrs(span)[A.GEN_AI_TOOL_CALL_RESULT] == '"done"'


def test_tool_of_a_partial_is_named_after_the_function(steptrace_capture: Capture) -> None:
    """``steptrace.tool(functools.partial(search, index="docs"))`` works and keeps the name."""

    def search(query: str, index: str) -> str:
        return f"{index}:{query}"

    traced = steptrace.tool(functools.partial(search, index="docs"))
    assert traced(query="q3") == "docs:q3"
    (span,) = steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert attrs(span)[A.GEN_AI_TOOL_NAME] == "search"


def test_span_ends_even_when_recording_its_metrics_fails(
    steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken histogram must not leave the tool's span open."""
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "0")

    class Broken:
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("metrics backend exploded")

    with steptrace.tool("t") as call:
        monkeypatch.setattr(call._config.instruments, "execute_tool_duration", Broken())
    assert len(steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)) == 1


# --- issue 17, item 4: one error count ---------------------------------------------------------
def test_failure_in_a_step_body_is_an_error_of_the_run(steptrace_capture: Capture) -> None:
    """``{}["missing"]`` in a step body: the run records one error, not zero."""
    with pytest.raises(KeyError), steptrace.agent_run(agent="a"), steptrace.agent_step():
        _ = {}["missing"]
    run = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run)[A.RUN_ERRORS] == 1
    (record,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert record["status"] == "error"
    assert record["errors"] == 1


def test_a_tool_failure_propagating_through_the_step_counts_once(steptrace_capture: Capture) -> None:
    """The tool's exception ends the tool, the step and the run: one error, not three."""

    @steptrace.tool
    def explode() -> None:
        raise ValueError("boom")

    async def main() -> None:
        async with steptrace.agent_run(agent="a"):
            async with steptrace.agent_step():
                explode()

    with pytest.raises(ValueError):
        asyncio.run(main())
    run = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run)[A.RUN_ERRORS] == 1


def test_a_failure_in_the_run_body_outside_steps_counts(steptrace_capture: Capture) -> None:
    """An exception raised directly in the run body is the run's error."""
    with pytest.raises(RuntimeError), steptrace.agent_run(agent="a"):
        raise RuntimeError("no plan")
    run = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run)[A.RUN_ERRORS] == 1


def test_cancelled_step_is_not_an_error(steptrace_capture: Capture) -> None:
    """Cancellation is a way out, not a failure: zero errors, stop reason cancelled."""

    async def main() -> None:
        async with steptrace.agent_run(agent="a"):
            async with steptrace.agent_step():
                raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    run = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)[0]
    assert attrs(run)[A.RUN_ERRORS] == 0
    assert attrs(run)[A.STOP_REASON] == A.STOP_CANCELLED
