"""Every span ends exactly once, on its own request (issue 21, item 4).

A spec shared by concurrent requests (``SEARCH = steptrace.tool("search")``) whose ``with`` block
is driven in copied contexts (Starlette's ``iterate_in_threadpool``, anyio, threads) must end the
block it opened, even when the contexts of the two requests are copies of one parent; a sync
function returning an awaitable that is never run still ends its span, as cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from starlette.concurrency import iterate_in_threadpool

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture

SPECS = {
    "tool": lambda: steptrace.tool("search"),
    "llm_request": lambda: steptrace.llm_request(model="m", provider="p"),
    "agent_step": steptrace.agent_step,
    "agent_run": lambda: steptrace.agent_run(agent="a"),
}


def by_request(capture: Capture, name: str) -> dict[str, ReadableSpan]:
    """The spans named ``name``, keyed by the ``request`` attribute their block set."""
    spans: dict[str, ReadableSpan] = {}
    for span in capture.spans_named(name):
        request = (span.attributes or {})["request"]
        assert request not in spans, f"request {request} has two {name} spans"
        spans[str(request)] = span
    return spans


def assert_failure_on_its_own_request(capture: Capture, name: str, failed: str, ok: str) -> None:
    spans = by_request(capture, name)
    assert set(spans) == {failed, ok}, "a span never ended"
    assert spans[failed].status.status_code is StatusCode.ERROR
    assert f"request {failed} failed" in str(spans[failed].status.description)
    assert spans[ok].status.status_code is not StatusCode.ERROR, spans[ok].status
    assert A.ERROR_TYPE not in (spans[ok].attributes or {})


def search_stream(spec: Any, request: str, fail: bool) -> Iterator[str]:
    """A streaming response's body: the shared spec's block spans the chunks."""
    with spec as call:
        call.set_attribute("request", request)
        yield f"{request}:1"
        if fail:
            raise RuntimeError(f"request {request} failed")
        yield f"{request}:2"


@pytest.mark.parametrize("kind", list(SPECS))
def test_shared_spec_in_starlette_streams_fails_only_the_failing_request(
    steptrace_capture: Capture, kind: str
) -> None:
    """Two concurrent requests stream through ``iterate_in_threadpool``; A fails while B's block
    is open: A's error was recorded on B's span, and A's span never ended."""
    spec = SPECS[kind]()
    a_entered, b_entered, a_failed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def request_a() -> None:
        chunks = iterate_in_threadpool(search_stream(spec, "A", fail=True))
        assert await chunks.__anext__() == "A:1"
        a_entered.set()
        await b_entered.wait()
        with pytest.raises(RuntimeError):
            await chunks.__anext__()
        a_failed.set()

    async def request_b() -> list[str]:
        await a_entered.wait()
        chunks = iterate_in_threadpool(search_stream(spec, "B", fail=False))
        got = [await chunks.__anext__()]
        b_entered.set()
        await a_failed.wait()
        got.extend([chunk async for chunk in chunks])
        return got

    async def server() -> list[str]:  # both request tasks copy this one context
        _, got = await asyncio.gather(request_a(), request_b())
        return got

    assert asyncio.run(server()) == ["B:1", "B:2"]
    assert_failure_on_its_own_request(steptrace_capture, SPECS_SPAN[kind], failed="A", ok="B")


SPECS_SPAN = {
    "tool": A.SPAN_TOOL_EXECUTION,
    "llm_request": A.SPAN_LLM_REQUEST,
    "agent_step": A.SPAN_AGENT_STEP,
    "agent_run": A.SPAN_AGENT_RUN,
}


@pytest.mark.parametrize("order", ["a_fails_first", "b_ends_first"])
@pytest.mark.parametrize("kind", list(SPECS))
def test_shared_spec_driven_from_threads_in_copies_of_one_context(
    steptrace_capture: Capture, kind: str, order: str
) -> None:
    """Every ``next()`` in a worker thread, in a fresh copy of ONE parent context: nothing in the
    contexts tells the two requests apart, and each exit still ends its own block."""
    spec = SPECS[kind]()
    parent = contextvars.copy_context()
    streams = {"A": search_stream(spec, "A", fail=True), "B": search_stream(spec, "B", fail=False)}
    steps = ["A", "B", "A", "B", "B"] if order == "a_fails_first" else ["A", "B", "B", "B", "A"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for request in steps:
            future = pool.submit(parent.copy().run, next, streams[request])
            with contextlib.suppress(StopIteration, RuntimeError):
                future.result()
    assert_failure_on_its_own_request(steptrace_capture, SPECS_SPAN[kind], failed="A", ok="B")


def test_threads_racing_on_one_shared_spec_end_their_own_blocks(steptrace_capture: Capture) -> None:
    """16 threads, each entering and leaving the shared spec in copies of one context, all at once:
    each span carries its own thread's outcome."""
    spec = steptrace.tool("search")
    parent = contextvars.copy_context()
    start = threading.Barrier(16)

    def request(number: int) -> None:
        stream = search_stream(spec, str(number), fail=number % 2 == 0)
        start.wait()
        for _ in range(3):
            with contextlib.suppress(StopIteration, RuntimeError):
                parent.copy().run(next, stream)

    workers = [threading.Thread(target=request, args=(n,)) for n in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    spans = by_request(steptrace_capture, A.SPAN_TOOL_EXECUTION)
    assert sorted(spans, key=int) == [str(n) for n in range(16)]
    for request, span in spans.items():
        failed = int(request) % 2 == 0
        assert (span.status.status_code is StatusCode.ERROR) is failed, request
        if failed:
            assert f"request {request} failed" in str(span.status.description)


async def search_astream(spec: Any, request: str, fail: bool) -> AsyncIterator[str]:
    async with spec as call:
        call.set_attribute("request", request)
        yield f"{request}:1"
        if fail:
            raise RuntimeError(f"request {request} failed")
        yield f"{request}:2"


@pytest.mark.parametrize("kind", list(SPECS))
def test_shared_spec_in_async_generators_stepped_by_tasks_in_copied_contexts(
    steptrace_capture: Capture, kind: str
) -> None:
    """``async with SEARCH:`` in async generators, each item fetched by a new task whose context is
    a copy of one parent (as anyio task groups do): each exit ends its own block."""
    spec = SPECS[kind]()

    async def main() -> None:
        parent = contextvars.copy_context()
        streams = {"A": search_astream(spec, "A", True), "B": search_astream(spec, "B", False)}
        for request in ["A", "B", "A", "B", "B"]:
            task = parent.copy().run(asyncio.ensure_future, streams[request].__anext__())
            with contextlib.suppress(StopAsyncIteration, RuntimeError):
                await task

    asyncio.run(main())
    assert_failure_on_its_own_request(steptrace_capture, SPECS_SPAN[kind], failed="A", ok="B")


def test_shared_spec_nested_in_itself_across_copied_contexts(steptrace_capture: Capture) -> None:
    """``with SEARCH: with SEARCH:`` in two streams driven in copies: inner ends before outer,
    each on its own request."""
    spec = steptrace.tool("search")

    def stream(request: str) -> Iterator[int]:
        with spec as outer:
            outer.set_attribute("request", f"{request}-outer")
            with spec as inner:
                inner.set_attribute("request", f"{request}-inner")
                yield 1
            assert inner.finished and not outer.finished
            yield 2

    parent = contextvars.copy_context()
    streams = {"A": stream("A"), "B": stream("B")}
    for request in ["A", "B", "A", "B", "A", "B"]:
        with contextlib.suppress(StopIteration):
            parent.copy().run(next, streams[request])
    spans = by_request(steptrace_capture, A.SPAN_TOOL_EXECUTION)
    assert set(spans) == {"A-outer", "A-inner", "B-outer", "B-inner"}
    for request in "AB":
        inner, outer = spans[f"{request}-inner"], spans[f"{request}-outer"]
        assert inner.parent is not None and outer.context is not None
        assert inner.parent.span_id == outer.context.span_id


def test_exit_stack_entering_a_shared_spec_still_ends_each_block(steptrace_capture: Capture) -> None:
    """``ExitStack.enter_context(SEARCH)`` enters and exits from the stack's frames, not the user's."""
    spec = steptrace.tool("search")
    with contextlib.ExitStack() as outer_stack:
        first = outer_stack.enter_context(spec)
        first.set_attribute("request", "first")
        with contextlib.ExitStack() as inner_stack:
            second = inner_stack.enter_context(spec)
            second.set_attribute("request", "second")
        assert second.finished and not first.finished
    assert set(by_request(steptrace_capture, A.SPAN_TOOL_EXECUTION)) == {"first", "second"}


# --- a sync function returning an awaitable that never runs -------------------------------------
def _fetch_spec(kind: str) -> Any:
    return {"tool": steptrace.tool, "llm_request": steptrace.llm_request}[kind]


@pytest.mark.parametrize("kind", ["tool", "llm_request"])
def test_awaitable_of_a_sync_function_cancelled_before_it_runs_ends_as_cancelled(
    steptrace_capture: Capture, kind: str
) -> None:
    """``task = ensure_future(fetch()); task.cancel()`` before the task runs: the span stayed
    open and the run counted nothing."""
    ran: list[str] = []

    async def request() -> str:
        ran.append("request")
        return "done"

    @_fetch_spec(kind)
    def fetch() -> Any:
        return request()  # a sync function handing back a coroutine

    async def main() -> None:
        async with steptrace.agent_run(agent="a"):
            task = asyncio.ensure_future(fetch())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            created = asyncio.get_running_loop().create_task(fetch())
            created.cancel()
            with pytest.raises(asyncio.CancelledError):
                await created

    asyncio.run(main())
    assert ran == []
    name = SPECS_SPAN[kind]
    spans = steptrace_capture.spans_named(name)
    assert len(spans) == 2, "the span of a call cancelled before it ran never ended"
    for span in spans:
        assert (span.attributes or {})[A.CANCELLED] is True
        assert span.status.status_code is not StatusCode.ERROR
    (run,) = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)
    counted = A.RUN_TOOL_CALLS if kind == "tool" else A.RUN_LLM_CALLS
    assert (run.attributes or {})[counted] == 2
    assert (run.attributes or {})[A.RUN_ERRORS] == 0


@pytest.mark.parametrize("kind", ["tool", "llm_request"])
def test_awaitable_of_a_sync_function_never_awaited_ends_as_cancelled(
    steptrace_capture: Capture, kind: str
) -> None:
    """``fetch()`` called, its awaitable dropped and garbage-collected: the span ends, cancelled."""
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()  # an awaitable that is not a coroutine: no warning of its own

        @_fetch_spec(kind)
        def fetch() -> Any:
            return future

        with steptrace.agent_run(agent="a"):
            pending = fetch()
            assert steptrace_capture.spans_named(SPECS_SPAN[kind]) == []  # open until awaited
            del pending
            gc.collect()
            (span,) = steptrace_capture.spans_named(SPECS_SPAN[kind])
    finally:
        loop.close()
    assert (span.attributes or {})[A.CANCELLED] is True
    (run,) = steptrace_capture.spans_named(A.SPAN_AGENT_RUN)
    counted = A.RUN_TOOL_CALLS if kind == "tool" else A.RUN_LLM_CALLS
    assert (run.attributes or {})[counted] == 1


def test_awaitable_of_a_sync_function_closed_unawaited_ends_as_cancelled(steptrace_capture: Capture) -> None:
    """``coro = fetch(); coro.close()`` (what asyncio does to a coroutine it will not run)."""

    async def request() -> str:
        return "done"

    @steptrace.tool
    def fetch() -> Any:
        return request()

    pending = fetch()
    pending.close()
    (span,) = steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert (span.attributes or {})[A.CANCELLED] is True


def test_awaitable_of_a_sync_function_still_works_as_a_coroutine(steptrace_capture: Capture) -> None:
    """What callers do with a coroutine keeps working: create_task, gather, wait_for, a failure."""

    async def request(value: str) -> str:
        await asyncio.sleep(0)
        if value == "boom":
            raise ValueError("boom")
        return value

    @steptrace.tool
    def fetch(value: str) -> Any:
        return request(value)

    async def main() -> list[Any]:
        task = asyncio.get_running_loop().create_task(fetch("task"))
        return await asyncio.gather(
            task,
            fetch("gathered"),
            asyncio.wait_for(fetch("waited"), 5),
            fetch("boom"),
            return_exceptions=True,
        )

    task_result, gathered, waited, failed = asyncio.run(main())
    assert (task_result, gathered, waited) == ("task", "gathered", "waited")
    assert isinstance(failed, ValueError)
    spans = steptrace_capture.spans_named(A.SPAN_TOOL_EXECUTION)
    assert len(spans) == 4
    assert sorted(str((s.attributes or {}).get(A.ERROR_TYPE)) for s in spans) == [
        "None",
        "None",
        "None",
        "ValueError",
    ]
