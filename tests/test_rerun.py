"""steptrace.rerun with decorated tools and a scripted model: recording, serving, divergence,
threads, asyncio, a crashed recording, oversized values, redaction, and the report."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import rerun_agents as agents
import steptrace
import steptrace.analysis
from steptrace import _attributes as A
from steptrace import _spans
from steptrace.testing import Capture

QUESTION = "What was our Q3 revenue, in euros?"


@pytest.fixture
def recording(steptrace_capture: Capture) -> Iterator[Capture]:
    """The capture fixture with record_for_rerun on."""
    steptrace_capture.configure(record_for_rerun=True)
    agents.reset()
    yield steptrace_capture
    agents.reset()


def recordings(capture: Capture) -> list[Path]:
    return sorted((capture.jsonl_path.parent / "rerun").glob("*.jsonl"))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def record_looping_run(capture: Capture) -> str:
    assert agents.run_agent(QUESTION) is None
    (path,) = recordings(capture)
    return path.stem


# --- recording ---------------------------------------------------------------------------------
def test_recording_is_off_by_default_and_costs_one_check(steptrace_capture: Capture) -> None:
    """Without record_for_rerun nothing is written and no hook is installed in the runners."""
    agents.reset()
    agents.run_agent(QUESTION)
    assert _spans.rerun_hook is None
    assert recordings(steptrace_capture) == []


def test_env_variable_turns_recording_on(steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """STEPTRACE_RECORD_FOR_RERUN=true records with no code change."""
    monkeypatch.setenv("STEPTRACE_RECORD_FOR_RERUN", "true")
    steptrace_capture.configure()
    agents.reset()
    agents.run_agent(QUESTION)
    assert len(recordings(steptrace_capture)) == 1


def test_recording_holds_every_call_in_a_private_file(recording: Capture) -> None:
    """One 0600 file per run: the run's arguments, each model request/response, each tool's
    arguments and result or exception, and the outcome."""
    run_id = record_looping_run(recording)
    (path,) = recordings(recording)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    recorded = lines(path)
    kinds = [line["recording"] for line in recorded]
    assert kinds[0] == "run" and kinds[-1] == "end"
    assert kinds.count("llm") == 6 and kinds.count("tool") == 6
    first_llm = next(line for line in recorded if line["recording"] == "llm")
    assert first_llm["request"] == {"messages": [QUESTION]}
    assert first_llm["response"] == {"value": {"tool": "search", "arguments": {"query": "Q3 revenue"}}}
    failures = [line for line in recorded if line["recording"] == "tool" and "error" in line]
    assert len(failures) == 4
    assert failures[0]["error"] == {
        "type": "builtins:ValueError",
        "name": "ValueError",
        "message": "no exchange rate for EUR",
    }
    assert failures[0]["arguments"] == {"amount": 1_200_000.0, "to": "EUR"}
    end = recorded[-1]
    assert end["run_id"] == run_id
    assert end["outcome"] == {
        "stop_reason": "max_steps",
        "steps": 6,
        "tool_calls": {"search": 2, "convert_currency": 4},
        "errors": 4,
        "tokens": {"input": 0, "output": 0},
    }


def test_secrets_are_redacted_as_in_the_step_log(recording: Capture) -> None:
    """A secret in a tool result is redacted in the recording exactly as in the step log."""
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"

    @steptrace.tool
    def fetch_config(name: str) -> dict[str, Any]:
        return {"name": name, "note": f"use {secret} to call", "password": "hunter2-long"}

    with steptrace.agent_run(agent="leaky"):
        fetch_config("prod")
    (path,) = recordings(recording)
    text = path.read_text()
    assert secret not in text and "hunter2-long" not in text
    (tool_line,) = [line for line in lines(path) if line["recording"] == "tool"]
    (record,) = [r for r in recording.records if r["type"] == "tool_call"]
    assert tool_line["result"]["shown"] == record["output"]
    assert tool_line["unreplayable"] == "a secret was redacted from it at recording"


def test_values_over_one_mebibyte_are_recorded_as_not_replayable(recording: Capture) -> None:
    """A 2 MiB result is not cut into a wrong value: the rerun reaching it says it cannot serve it."""

    @steptrace.tool
    def dump_table(table: str) -> str:
        return "x" * (2 * 1024 * 1024)

    with steptrace.agent_run(agent="dumper"):
        dump_table("sales")
    (path,) = recordings(recording)
    assert path.stat().st_size < 64 * 1024
    (tool_line,) = [line for line in lines(path) if line["recording"] == "tool"]
    assert tool_line["unreplayable"] == "the value is over 1 MiB"
    with steptrace.rerun(path.stem, log=recording.jsonl_path) as rerun:
        with steptrace.agent_run(agent="dumper"), pytest.raises(steptrace.RerunDivergence) as raised:
            dump_table("sales")
    assert "not replayable (the value is over 1 MiB)" in str(raised.value)
    assert rerun.report is not None and not rerun.report.reproduced


# --- serving -----------------------------------------------------------------------------------
def test_looping_run_reruns_as_reproduced_without_calling_model_or_tools(recording: Capture) -> None:
    """llm/tools "recorded": the same 6 steps and max_steps, and no model or tool body runs."""
    run_id = record_looping_run(recording)
    agents.reset()
    with steptrace.rerun(run_id[:6], log=recording.jsonl_path.parent) as rerun:
        assert agents.run_agent(QUESTION) is None
    assert agents.CALLS == {"model": 0, "search": 0, "convert_currency": 0}
    report = rerun.report
    assert report is not None
    assert report.reproduced
    assert report.verdict == (
        "reproduced: 6 steps, max_steps, convert_currency x4, search x2 (same as the original); "
        "model calls: 6 served from the recording, 0 live; tools: 6 served from the recording, "
        "0 ran your code"
    )
    data = report.to_dict()
    assert data["original_run_id"] == run_id
    assert data["rerun"] == data["original"]
    assert set(data["original"]) == {"stop_reason", "steps", "tool_calls", "errors", "tokens"}


def test_rerun_is_a_new_run_that_names_the_original(recording: Capture) -> None:
    """The rerun has its own run id; its run span and run record carry rerun_of."""
    run_id = record_looping_run(recording)
    with steptrace.rerun(run_id, log=recording.jsonl_path) as rerun:
        agents.run_agent(QUESTION)
    assert rerun.run_id is not None and rerun.run_id != run_id
    span = next(s for s in recording.spans_named(A.SPAN_AGENT_RUN) if s.attributes[A.RUN_ID] == rerun.run_id)
    assert span.attributes[A.RERUN_OF] == run_id
    (record,) = [r for r in recording.records if r["type"] == "run" and r["run_id"] == rerun.run_id]
    assert record["rerun_of"] == run_id
    runs = steptrace.analysis.load(recording.jsonl_path)
    assert rerun.run_id in runs and run_id in runs


def test_fixed_tool_live_reports_the_divergence_and_the_new_outcome(recording: Capture) -> None:
    """tools="live", llm="until-divergence" after fixing the tool: diverged at step 3, end_turn."""
    run_id = record_looping_run(recording)
    agents.reset(fixed=True)
    with steptrace.rerun(run_id, log=recording.jsonl_path, llm="until-divergence", tools="live") as rerun:
        answer = agents.run_agent(QUESTION)
    assert answer == "1104000.0 EUR"
    assert agents.CALLS["model"] == 1  # steps 1-3 served; step 4's request differs: live from there
    report = rerun.report
    assert report is not None and not report.reproduced
    assert report.diverged_at == 3
    assert report.verdict == (
        "changed: diverged at step 3 (convert_currency returned a result instead of ValueError); "
        "the run now ends with end_turn after 4 steps instead of max_steps after 6 steps; "
        "0 errors instead of 4; "
        "model calls: 3 served from the recording, 1 live; tools: 0 served from the recording, "
        "3 ran your code"
    )
    assert report.ran["llm"]["live"] == 1  # asked for: until-divergence
    assert report.to_dict()["rerun"]["stop_reason"] == "end_turn"


def test_recorded_mode_keeps_serving_the_recorded_model_after_a_divergence(recording: Capture) -> None:
    """llm="recorded" never calls the model: a request that differs is a divergence (named in
    the report), and the recorded responses keep coming, in order, out of match."""
    run_id = record_looping_run(recording)
    agents.reset()
    with steptrace.rerun(run_id, log=recording.jsonl_path) as rerun:
        assert agents.run_agent("What was our Q4 revenue?") is None
    assert agents.CALLS == {"model": 0, "search": 0, "convert_currency": 0}
    report = rerun.report
    assert report is not None and not report.reproduced and report.diverged_at == 1
    assert report.divergence is not None
    assert report.divergence.startswith("step 1: model call 1 asked for something else")
    assert (
        "messages[0]: expected 'What was our Q3 revenue, in euros?', got 'What was our Q4 revenue?'"
        in report.divergence
    )
    assert report.ran["llm"] == {"served": 6, "out_of_match": 6, "out_of_match_from": 1, "live": 0}
    assert report.verdict.endswith(
        "model calls: 6 served from the recording (6 out of match, from model call 1 on), 0 live; "
        "tools: 6 served from the recording, 0 ran your code"
    )
    assert report.rerun is not None and report.rerun.stop_reason == "max_steps"


def test_recorded_mode_raises_when_the_recording_has_nothing_left(recording: Capture) -> None:
    """A 7th model call where the original made 6: RerunDivergence naming the call, no live call."""
    run_id = record_looping_run(recording)
    agents.reset(fixed=False)
    with (
        steptrace.rerun(run_id, log=recording.jsonl_path) as rerun,
        pytest.raises(steptrace.RerunDivergence, match="model call 7 has no recorded counterpart"),
    ):
        agents.run_agent(QUESTION, max_steps=8)
    assert agents.CALLS["model"] == 0
    assert rerun.report is not None and rerun.report.diverged_at == 7


def test_tool_called_with_other_arguments_diverges(recording: Capture) -> None:
    """tools="recorded": a tool call whose args_hash was never recorded is a divergence."""

    @steptrace.tool
    def lookup(key: str) -> str:
        return key.upper()

    with steptrace.agent_run(agent="lookup"):
        lookup("a")
    (path,) = recordings(recording)
    with steptrace.rerun(path.stem, log=recording.jsonl_path):
        with steptrace.agent_run(agent="lookup"):
            assert lookup("a") == "A"
            never_called = r"lookup \(args_hash \w+\) was not called with these"
            with pytest.raises(steptrace.RerunDivergence, match=never_called):
                lookup("b")


def test_parallel_tool_calls_in_threads_match_by_arguments(recording: Capture) -> None:
    """Parallel calls finishing in another order still get their own recorded results."""
    bodies: list[str] = []

    @steptrace.tool
    def fetch(city: str) -> dict[str, Any]:
        bodies.append(city)
        time.sleep(random.random() / 100)
        return {"city": city, "temperature": len(city) * 3}

    cities = ["Paris", "Oslo", "Lima", "Quito", "Accra", "Hanoi"]

    def agent() -> list[dict[str, Any]]:
        with steptrace.agent_run(agent="weather"), ThreadPoolExecutor(4) as pool:
            return list(pool.map(steptrace.bind_context(fetch), cities + cities))

    original = agent()
    (path,) = recordings(recording)
    bodies.clear()
    with steptrace.rerun(path.stem, log=recording.jsonl_path) as rerun:
        again = agent()
    assert again == original
    assert bodies == []
    assert rerun.report is not None and rerun.report.reproduced


def test_asyncio_tools_and_model_are_served(recording: Capture) -> None:
    """Async tools gathered concurrently and an async model are served from the recording."""
    bodies: list[str] = []

    @steptrace.tool
    async def price(item: str) -> float:
        bodies.append(item)
        await asyncio.sleep(random.random() / 100)
        return float(len(item))

    @steptrace.llm_request(model="async-scripted")
    async def plan(goal: str) -> dict[str, Any]:
        bodies.append("model")
        return {"items": ["apple", "kiwi", "banana"]}

    async def agent() -> float:
        with steptrace.agent_run(agent="shopper"):
            items = (await plan("fruit salad"))["items"]
            prices = await asyncio.gather(*(price(item) for item in items))
            return sum(prices)

    assert asyncio.run(agent()) == 15.0
    (path,) = recordings(recording)
    bodies.clear()
    with steptrace.rerun(path.stem, log=recording.jsonl_path) as rerun:
        assert asyncio.run(agent()) == 15.0
    assert bodies == []
    assert rerun.report is not None and rerun.report.reproduced


def test_generator_model_is_served_as_its_recorded_items(recording: Capture) -> None:
    """A decorated streaming model (a generator) yields its recorded chunks again."""

    @steptrace.llm_request(model="streamer")
    def speak(prompt: str) -> Iterator[str]:
        yield from ["Hel", "lo", "!"]

    with steptrace.agent_run(agent="talker"):
        assert "".join(speak("hi")) == "Hello!"
    (path,) = recordings(recording)
    with steptrace.rerun(path.stem, log=recording.jsonl_path), steptrace.agent_run(agent="talker"):
        assert list(speak("hi")) == ["Hel", "lo", "!"]


def test_a_crashed_recording_reruns_up_to_where_it_stops(tmp_path: Path, recording: Capture) -> None:
    """A process killed at step 4 keeps steps 1-3: the rerun serves them, then says it ran out."""
    environment = {
        **os.environ,
        "STEPTRACE_JSONL_PATH": str(tmp_path / "crash" / "steps.jsonl"),
        "STEPTRACE_RECORD_FOR_RERUN": "true",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    child = subprocess.run(
        [sys.executable, str(Path(agents.__file__)), "--crash-at", "4"],
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9
    (path,) = (tmp_path / "crash" / "rerun").glob("*.jsonl")
    assert [line["recording"] for line in lines(path)].count("tool") == 3
    agents.reset()
    with (
        steptrace.rerun(path.stem, log=tmp_path / "crash") as rerun,
        pytest.raises(steptrace.RerunDivergence, match="model call 4 has no recorded counterpart"),
    ):
        agents.run_agent(QUESTION)
    assert agents.CALLS == {"model": 0, "search": 0, "convert_currency": 0}
    report = rerun.report
    assert report is not None and report.diverged_at == 4
    assert report.original.stop_reason == "incomplete"


def test_missing_recording_says_why(steptrace_capture: Capture) -> None:
    """A run recorded without record_for_rerun: one clear line, nothing to re-run."""
    steptrace_capture.configure(record_for_rerun=False)
    with steptrace.agent_run(agent="plain") as run:
        pass
    with pytest.raises(
        LookupError, match=r"run .{8}… was recorded without record_for_rerun; nothing to re-run"
    ):
        steptrace.rerun(run.run_id, log=steptrace_capture.jsonl_path)
    with pytest.raises(LookupError, match="no recording of run 'ffff'"):
        steptrace.rerun("ffff", log=steptrace_capture.jsonl_path)
    steptrace_capture.configure(record_for_rerun=True)
    run_id = record_looping_run(steptrace_capture)
    with pytest.raises(ValueError, match="llm='replay': use one of recorded, until-divergence, live"):
        steptrace.rerun(run_id, log=steptrace_capture.jsonl_path, llm="replay")


# --- two reruns at once ------------------------------------------------------------------------
def record_in_another_process(log: Path, *options: str) -> Path:
    """One run of tests/rerun_agents.py recorded by its own process; its recording file."""
    environment = {
        **os.environ,
        "STEPTRACE_JSONL_PATH": str(log / "steps.jsonl"),
        "STEPTRACE_RECORD_FOR_RERUN": "true",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    subprocess.run(
        [sys.executable, str(Path(agents.__file__)), *options],
        env=environment,
        capture_output=True,
        timeout=60,
        check=True,
    )
    (path,) = (log / "rerun").glob("*.jsonl")
    return path


def test_two_reruns_in_two_threads_keep_their_own_sessions(
    tmp_path: Path, steptrace_capture: Capture
) -> None:
    """Two threads, each re-running another recording (made by other processes) at the same
    time: no tool or model body runs, and each report is its own run's."""
    looping = record_in_another_process(tmp_path / "looping")
    fixed = record_in_another_process(tmp_path / "fixed", "--fixed")
    agents.reset()
    both_inside = threading.Barrier(2, timeout=10)

    def rerun(path: Path) -> steptrace.RerunReport | None:
        with steptrace.rerun(path) as active:
            both_inside.wait()  # both sessions are active before either agent starts
            agents.run_agent(QUESTION)
            both_inside.wait()
        return active.report

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(rerun, [looping, fixed])
    assert agents.CALLS == {"model": 0, "search": 0, "convert_currency": 0}
    assert first is not None and second is not None
    assert first.original_run_id == looping.stem and second.original_run_id == fixed.stem
    assert first.verdict.startswith("reproduced: 6 steps, max_steps, convert_currency x4, search x2")
    assert second.verdict.startswith("reproduced: 4 steps, end_turn, search x2, convert_currency x1")
    assert first.ran["tools"] == {"served": 6, "live": 0}
    assert second.ran["tools"] == {"served": 3, "live": 0}


def test_two_reruns_in_two_asyncio_tasks_keep_their_own_sessions(
    tmp_path: Path, steptrace_capture: Capture
) -> None:
    """The same with asyncio tasks in one loop: each task's rerun serves only its own run."""
    looping = record_in_another_process(tmp_path / "looping")
    fixed = record_in_another_process(tmp_path / "fixed", "--fixed")
    agents.reset()

    inside: list[str] = []

    async def rerun(path: Path, both_inside: asyncio.Event) -> steptrace.RerunReport | None:
        with steptrace.rerun(path) as active:
            inside.append(path.stem)
            if len(inside) == 2:
                both_inside.set()
            await both_inside.wait()  # both sessions are active before either agent starts
            await asyncio.to_thread(steptrace.bind_context(agents.run_agent), QUESTION)
        return active.report

    async def main() -> list[steptrace.RerunReport | None]:
        both_inside = asyncio.Event()
        return list(await asyncio.gather(rerun(looping, both_inside), rerun(fixed, both_inside)))

    first, second = asyncio.run(main())
    assert agents.CALLS == {"model": 0, "search": 0, "convert_currency": 0}
    assert first is not None and first.reproduced and first.original.stop_reason == "max_steps"
    assert second is not None and second.reproduced and second.original.stop_reason == "end_turn"


def test_a_rerun_that_serves_nothing_says_so(recording: Capture) -> None:
    """The agent's model call no longer goes through steptrace (the decorator was removed): the
    report says none of the recorded model calls were made through it, instead of a silent
    "changed"."""
    run_id = record_looping_run(recording)

    def undecorated_agent() -> None:
        with steptrace.agent_run(agent="accountant") as run:
            run.stop_reason = "end_turn"

    with steptrace.rerun(run_id, log=recording.jsonl_path) as rerun:
        undecorated_agent()
    assert rerun.report is not None
    assert rerun.report.warnings == [
        "the rerun made none of the 6 recorded model calls through steptrace: nothing was served "
        "(is the SDK instrumented, and the same decorated function called?)"
    ]
    assert rerun.report.ran["llm"] == {"served": 0, "out_of_match": 0, "out_of_match_from": None, "live": 0}


def test_a_thread_started_without_the_context_is_still_served(recording: Capture) -> None:
    """A plain thread (no bind_context) inside the one active rerun: its tool call is served,
    not run for real."""
    run_id = record_looping_run(recording)
    agents.reset()
    results: list[Any] = []
    with steptrace.rerun(run_id, log=recording.jsonl_path):
        thread = threading.Thread(target=lambda: results.append(agents.search("Q3 revenue")))
        thread.start()
        thread.join()
    assert agents.CALLS["search"] == 0
    assert results == [{"query": "Q3 revenue", "hits": ["Q3 revenue: 1.2M USD"]}]


def test_the_report_names_arguments_left_out_of_the_match(recording: Capture) -> None:
    """A recorded call whose recording lists unmatched_args (no stable form across processes):
    the report names them, per call."""
    run_id = record_looping_run(recording)
    (path,) = recordings(recording)
    edited = []
    for line in lines(path):
        if line["recording"] == "tool" and line.get("agent_step") == 1:
            line["unmatched_args"] = ["client"]
        edited.append(json.dumps(line))
    path.write_text("\n".join(edited) + "\n")
    agents.reset()
    with steptrace.rerun(run_id, log=recording.jsonl_path) as rerun:
        agents.run_agent(QUESTION)
    assert rerun.report is not None and rerun.report.reproduced
    assert rerun.report.unmatched_args == ["step 1 search: client"]
    assert rerun.report.to_dict()["unmatched_args"] == ["step 1 search: client"]
