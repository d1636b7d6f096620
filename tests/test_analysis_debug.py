"""debug_run(): first error, slowest span, repeated calls and hypotheses with evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis_logs import make_run, standard_log, write_jsonl
from steptrace.analysis import Run, RunSet, debug_run, load


@pytest.fixture
def runs(tmp_path: Path) -> RunSet:
    return load(standard_log(tmp_path))


def get(runs: RunSet, run_id: str) -> Run:
    run = runs.get(run_id)
    assert run is not None
    return run


def test_tool_failure_names_the_failed_tool_span(runs: RunSet) -> None:
    """`steptrace debug` would blame the run or the step instead of the tool that raised."""
    report = debug_run(get(runs, "run-tool-err"))
    assert report.first_error_span is not None
    assert (report.first_error_span.type, report.first_error_span.label) == ("tool_call", "get_weather")
    assert report.first_error_span.error == "ValueError: no such city"
    assert report.error_classes == {"ValueError": 1}
    assert [h.kind for h in report.hypotheses] == ["tool_failure"]
    (evidence,) = report.hypotheses[0].evidence
    assert evidence == report.first_error_span
    assert "get_weather failed at #3 in step 1" in report.hypotheses[0].title
    assert report.hypotheses[0].culprit == "get_weather" and report.hypotheses[0].score == 1.0


def test_loop_needs_repeated_calls_and_max_steps(runs: RunSet) -> None:
    """A looping run would not be called a loop, or its repeated calls would be miscounted."""
    report = debug_run(get(runs, "run-loop"))
    (repeated,) = report.repeated_tool_calls
    assert (repeated.tool, repeated.count) == ("search", 6)
    assert repeated.steps == [3, 6, 9, 12, 15, 18]
    (loop,) = [h for h in report.hypotheses if h.kind == "loop"]
    assert [e.step for e in loop.evidence] == repeated.steps
    assert report.first_error_span is None and report.error_classes == {}


def test_repeated_successful_calls_are_a_loop_even_when_the_run_ended_normally(tmp_path: Path) -> None:
    """The same call succeeding again and again was only a loop when the run hit max_steps: a run
    that wasted most of its steps repeating itself and then answered looked healthy."""
    spans = make_run("repeats", "loop", max_steps=3)
    run_span = spans[-1]
    run_span.attributes["steptrace.stop_reason"] = "end_turn"
    run = load(write_jsonl(tmp_path / "steps.jsonl", spans)).get("repeats")
    assert run is not None
    report = debug_run(run)
    assert report.repeated_tool_calls[0].count == 3
    (loop,) = report.hypotheses
    assert loop.kind == "loop" and loop.culprit == "search"
    assert "check dedupe/cache and stop conditions" in loop.title and "#3, #6, #9" in loop.title
    assert loop.score == pytest.approx(2 / 3)  # steps 2 and 3 of 3 repeated step 1


def test_model_failure_names_the_failed_llm_span(runs: RunSet) -> None:
    """A provider error (rate limit) would be reported as a tool or unknown failure."""
    report = debug_run(get(runs, "run-model-err"))
    assert [h.kind for h in report.hypotheses] == ["model_failure"]
    (evidence,) = report.hypotheses[0].evidence
    assert evidence.type == "llm_call" and evidence.error_type == "openai.RateLimitError"
    assert report.error_classes == {"openai.RateLimitError": 1}


def test_model_cut_off_by_max_tokens_is_a_model_failure(tmp_path: Path) -> None:
    """An answer truncated by max_tokens would go unnoticed because no exception was raised."""
    spans = make_run("cut")
    last_llm = [s for s in spans if s.name == "llm_request"][-1]
    last_llm.attributes["steptrace.stop_reason"] = "max_tokens"
    run = load(write_jsonl(tmp_path / "steps.jsonl", spans)).get("cut")
    assert run is not None
    (hypothesis,) = debug_run(run).hypotheses
    assert hypothesis.kind == "model_failure"
    assert "ran out of output tokens" in hypothesis.title
    assert [e.step for e in hypothesis.evidence] == [last_llm.attributes["steptrace.step"]]


def test_latency_hypothesis_only_above_the_slo(runs: RunSet) -> None:
    """A slow run would not be flagged, or a fast one would be, for a given --slo-ms."""
    slow = get(runs, "run-slow")
    assert "latency" not in [h.kind for h in debug_run(slow).hypotheses]
    assert "latency" not in [h.kind for h in debug_run(slow, slo_ms=slow.duration_ms + 1).hypotheses]
    report = debug_run(slow, slo_ms=1000)
    (latency,) = report.hypotheses
    assert latency.kind == "latency"
    assert latency.evidence[0] == report.slowest_span
    assert latency.evidence[0].type == "llm_call"
    assert sum(e.duration_ms for e in latency.evidence) >= slow.duration_ms / 2


def test_slowest_span_is_an_operation_not_a_container(runs: RunSet) -> None:
    """The slowest span would always be the run itself, which says nothing."""
    run = get(runs, "run-slow")
    report = debug_run(run)
    assert report.slowest_span is not None
    leaf_durations = [r["duration_ms"] for r in run.records() if r["type"] in ("llm_call", "tool_call")]
    assert report.slowest_span.duration_ms == max(leaf_durations)


def test_crashed_run_is_explained_as_unfinished(runs: RunSet) -> None:
    """A run without a run record would get no explanation."""
    report = debug_run(get(runs, "run-crashed"))
    assert report.stop_reason == "incomplete" and not report.complete
    (hypothesis,) = report.hypotheses
    assert hypothesis.kind == "incomplete"


def test_healthy_run_has_no_hypotheses(runs: RunSet) -> None:
    """A healthy run would be blamed for something."""
    report = debug_run(get(runs, "run-ok-1"), slo_ms=60_000)
    assert report.hypotheses == [] and report.first_error_span is None
    assert report.to_dict()["hypotheses"] == []


def test_latency_spread_over_many_spans_names_the_kind_of_work(runs: RunSet) -> None:
    """A slow run with no single slow span would get no useful latency explanation."""
    run = get(runs, "run-ok-1")
    (latency,) = debug_run(run, slo_ms=100).hypotheses
    llm = [r["duration_ms"] for r in run.records() if r["type"] == "llm_call"]
    assert max(llm) < run.duration_ms / 2
    assert f"{len(llm)} llm_call spans add up to" in latency.title
