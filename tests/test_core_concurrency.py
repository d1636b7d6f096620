"""Runs under threads and asyncio: exact per-run step numbering, context carried by bind_context."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture


@steptrace.tool
def fetch(page: int) -> int:
    return page * 2


@steptrace.tool
async def afetch(page: int) -> int:
    await asyncio.sleep(0)
    return page


def test_bind_context_carries_the_run_into_a_thread_pool(steptrace_capture: Capture) -> None:
    """Tools run in a ThreadPoolExecutor stay inside the run, under the step that submitted them."""
    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(steptrace.bind_context(fetch), range(20)))
    assert results == [p * 2 for p in range(20)]
    (step,) = steptrace_capture.spans_named("agent_step")
    tools = steptrace_capture.spans_named("tool_execution")
    assert len(tools) == 20
    assert {(t.attributes or {})[A.RUN_ID] for t in tools} == {run.run_id}
    assert all(t.parent is not None and t.parent.span_id == step.context.span_id for t in tools)
    steps = sorted(int((t.attributes or {})[A.STEP]) for t in tools)  # type: ignore[arg-type]
    assert steps == list(range(2, 22))


def test_without_bind_context_threads_do_not_join_the_run(steptrace_capture: Capture) -> None:
    """Documented behaviour: a bare thread has no run context (so bind_context is needed)."""
    with steptrace.agent_run(agent="a"), ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fetch, 1).result()
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert A.RUN_ID not in (tool.attributes or {})


def test_threads_sharing_one_run_get_unique_gap_free_steps(steptrace_capture: Capture) -> None:
    """Step numbers stay exact when 8 threads call tools in one run at the same time."""
    with steptrace.agent_run(agent="a"), ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(steptrace.bind_context(fetch), range(400)))
    (run,) = steptrace_capture.spans_named("agent_run")
    steps = sorted(int((t.attributes or {})[A.STEP]) for t in steptrace_capture.spans_named("tool_execution"))  # type: ignore[arg-type]
    assert steps == list(range(1, 401))
    assert (run.attributes or {})[A.RUN_TOOL_CALLS] == 400


def test_hundred_concurrent_asyncio_runs_number_their_steps_exactly(steptrace_capture: Capture) -> None:
    """asyncio.gather of 100 runs: each run's records have steps exactly 1..n, no cross-talk."""

    async def one_run(index: int) -> str:
        async with steptrace.agent_run(agent="a") as run:
            for _ in range(3):
                async with steptrace.agent_step():
                    await afetch(index)
                    await asyncio.sleep(0)
            return run.run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(one_run(i) for i in range(100)))

    run_ids = asyncio.run(main())
    assert len(set(run_ids)) == 100
    steps_by_run: dict[str, list[int]] = defaultdict(list)
    for record in steptrace_capture.records:
        if record["type"] != "run":
            steps_by_run[record["run_id"]].append(record["step"])
    assert set(steps_by_run) == set(run_ids)
    for steps in steps_by_run.values():
        assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    run_records = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert len(run_records) == 100
    assert all(r["steps"] == 3 and r["tool_calls"] == 3 for r in run_records)
