"""Torture: many threads, many asyncio runs, several processes writing one step log at once.

Each case checks the log strictly (every line parses, the record count is exact, each run's steps
are 1..n, parents are spans of the same trace) and reports its figures (see torture_checks).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider

import steptrace
from steptrace._config import reset_for_tests
from steptrace._state import active
from torture_checks import check_log, report

pytestmark = pytest.mark.torture

SECRET = "sk-proj-CONCURRENTsecret0123456789ABCDEFGH"
WRITER = Path(__file__).with_name("torture_writer.py")


@pytest.fixture
def step_log(tmp_path: Path) -> Iterator[Path]:
    """steptrace writing only the JSONL step log (no in-memory span list to grow)."""
    path = tmp_path / "steps.jsonl"
    provider = TracerProvider()
    steptrace.configure("torture", jsonl_path=path, capture_content=True, tracer_provider=provider)
    try:
        yield path
    finally:
        reset_for_tests()
        provider.shutdown()


@steptrace.tool
def lookup(query: str, api_key: str) -> dict[str, str]:
    return {"query": query, "answer": f"answer to {query}", "echo": f"Bearer {api_key}"}


def test_sixteen_threads_fifty_runs(step_log: Path) -> None:
    """16 threads x 5,000 tool calls over 50 open runs: a torn, lost or misnumbered record fails."""
    threads, calls_per_thread, run_count = 16, 5_000, 50
    config = active()
    assert config is not None
    runs = [steptrace.AgentRun(config, f"agent-{index}") for index in range(run_count)]
    errors: list[BaseException] = []
    start_together = threading.Barrier(threads)

    def work(thread_index: int) -> None:
        try:
            start_together.wait()
            for call in range(calls_per_thread):
                run = runs[(thread_index * calls_per_thread + call) % run_count]
                token = otel_context.attach(run.context)
                try:
                    query = f"t{thread_index}-c{call}"
                    result = lookup(query, SECRET)
                finally:
                    otel_context.detach(token)
                assert result["answer"] == f"answer to {query}"
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for run in runs:
        run.finish()
    seconds = time.perf_counter() - started
    assert errors == []

    log = check_log(step_log)
    tools = log.by_type("tool_call")
    expected = threads * calls_per_thread
    assert len(tools) == expected
    assert len(log.by_type("run")) == run_count
    assert len(log.records) == expected + run_count
    run_spans = {r["span_id"] for r in log.by_type("run")}
    assert all(r["parent_span_id"] in run_spans for r in tools)
    assert SECRET.encode() not in step_log.read_bytes()
    report(
        "threads",
        threads=threads,
        runs=run_count,
        records_written=len(log.records),
        records_expected=expected + run_count,
        records_lost=expected + run_count - len(log.records),
        seconds=round(seconds, 2),
    )


@steptrace.llm_request(model="fake-model", provider="fake")
async def think(prompt: str) -> dict[str, object]:
    await asyncio.sleep(0)
    return {
        "model": "fake-model",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "stop_reason": "tool_use",
    }


@steptrace.tool
async def search(query: str, token: str) -> str:
    await asyncio.sleep(0)
    return f"found {query}"


@steptrace.agent_run
async def async_agent(index: int, steps: int) -> int:
    done = 0
    for step in range(steps):
        async with steptrace.agent_step():
            await think(f"agent {index} step {step}")
            found = await search(f"a{index}s{step}", SECRET)
            assert found == f"found a{index}s{step}"
            done += 1
    return done


def test_five_hundred_concurrent_asyncio_runs(step_log: Path) -> None:
    """500 interleaved asyncio runs: a span filed under another task's run or step fails."""
    run_count, steps = 500, 4

    async def main() -> list[int]:
        return await asyncio.gather(*(async_agent(index, steps) for index in range(run_count)))

    started = time.perf_counter()
    assert asyncio.run(main()) == [steps] * run_count
    seconds = time.perf_counter() - started

    log = check_log(step_log)
    per_run = 1 + steps * 3
    assert len(log.records) == run_count * per_run
    assert len(log.runs) == run_count
    by_span = {r["span_id"]: r for r in log.records}
    for record in log.records:
        if record["type"] in ("tool_call", "llm_call"):
            parent = by_span[record["parent_span_id"]]
            assert parent["type"] == "agent_step" and parent["run_id"] == record["run_id"]
            assert record["agent_step"] == parent["agent_step"]
        elif record["type"] == "agent_step":
            assert by_span[record["parent_span_id"]]["type"] == "run"
    assert SECRET.encode() not in step_log.read_bytes()
    report(
        "asyncio",
        runs=run_count,
        records_written=len(log.records),
        records_expected=run_count * per_run,
        records_lost=run_count * per_run - len(log.records),
        seconds=round(seconds, 2),
    )


def test_four_processes_append_to_one_file(tmp_path: Path) -> None:
    """4 processes appending to one log, records larger than a pipe buffer: interleaving fails."""
    path = tmp_path / "shared.jsonl"
    processes, runs, calls = 4, 10, 500
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, str(WRITER), "runs", str(path), "--runs", str(runs), "--calls", str(calls),
             "--size", "3000", "--big-every", "5", "--tag", f"p{index}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(processes)
    ]  # fmt: skip
    summaries = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.perf_counter() - started
    assert all(s["flushed"] and s["warnings"] == [] for s in summaries)

    log = check_log(path)
    expected = processes * runs * (calls + 1)
    assert len(log.records) == expected
    assert len(log.runs) == processes * runs
    assert max(len(line) for line in path.read_bytes().splitlines()) > 8192  # beyond PIPE_BUF
    report(
        "processes",
        processes=processes,
        records_written=len(log.records),
        records_expected=expected,
        records_lost=expected - len(log.records),
        seconds=round(seconds, 2),
    )
