"""diff(): two releases compared metric by metric, with deltas and verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis_logs import MS, T0_NS, make_run, mixed_spans, write_jsonl
from steptrace.analysis import DiffReport, MetricChange, RunSet, diff, load
from steptrace.analysis._stats import percentile


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    """40 healthy runs of 1.4.0; 40 runs of 1.5.0 with tool failures, loops and slower LLMs."""
    directory = tmp_path_factory.mktemp("diff")
    spans = mixed_spans(40, release="1.4.0")
    spans += mixed_spans(
        40, release="1.5.0", start_ns=T0_NS + 3_600_000 * MS, failure_every=5, loop_every=4, llm_ms=800.0
    )
    return load(write_jsonl(directory / "steps.jsonl", spans))


def metric(report: DiffReport, name: str) -> MetricChange:
    (change,) = [m for m in report.all_changes() if m.name == name]
    return change


def test_regression_is_called_worse_with_deltas(two_releases: RunSet) -> None:
    """A release that fails and loops more would not be flagged as worse."""
    base, cand = two_releases.runs(release="1.4.0"), two_releases.runs(release="1.5.0")
    report = diff(base, cand, baseline_label="1.4.0", candidate_label="1.5.0")
    assert (report.baseline_runs, report.candidate_runs) == (40, 40)

    errors = metric(report, "failed_rate")
    assert (errors.baseline, errors.candidate) == (0.0, 8 / 40)
    assert errors.delta == pytest.approx(0.2)
    assert errors.direction == "worse"
    assert errors.verdict.startswith("worse: up 20.0 points")

    p95 = metric(report, "p95_duration_ms")
    assert p95.baseline == percentile([r.duration_ms for r in base], 95)
    assert p95.candidate == percentile([r.duration_ms for r in cand], 95)
    assert p95.direction == "worse"

    repeated = metric(report, "repeated_call_rate")
    loops = sum(1 for r in cand if r.stop_reason == "max_steps")
    assert repeated.candidate == loops / 40 and repeated.direction == "worse"

    max_steps = metric(report, "stop_reason[max_steps]")
    assert (max_steps.baseline, max_steps.candidate) == (0.0, loops / 40)
    assert max_steps.direction == "worse"
    assert metric(report, "stop_reason[end_turn]").direction == "worse"
    assert metric(report, "p95_ms[search]").direction == "new"
    assert "1.5.0 is worse on" in report.verdict and "failed_rate" in report.verdict


def test_same_runs_are_about_the_same(two_releases: RunSet) -> None:
    """Comparing a release with itself would report changes."""
    base = two_releases.runs(release="1.4.0")
    report = diff(base, base)
    assert all(m.direction == "same" for m in report.all_changes())
    assert report.verdict == "candidate is about the same as baseline"


def test_improvement_is_called_better(two_releases: RunSet) -> None:
    """Fixing a regression would not be reported as an improvement."""
    report = diff(two_releases.runs(release="1.5.0"), two_releases.runs(release="1.4.0"))
    assert metric(report, "failed_rate").direction == "better"
    assert metric(report, "failed_rate").verdict.startswith("better: down 20.0 points")
    assert "better" in report.verdict


def test_small_samples_carry_a_warning(tmp_path: Path) -> None:
    """A verdict from a handful of runs would read as certain."""
    runs = load(write_jsonl(tmp_path / "s.jsonl", make_run("a") + make_run("b", "tool_error")))
    report = diff([runs.get("a")], [runs.get("b")])  # type: ignore[list-item]
    assert "few runs: 1 vs 1" in report.verdict


def test_empty_side_cannot_be_compared(two_releases: RunSet) -> None:
    """An empty release would give a misleading verdict instead of saying there is no data."""
    report = diff(two_releases.runs(release="1.4.0"), [])
    assert report.verdict == "cannot compare: candidate has no runs"
    assert metric(report, "failed_rate").candidate is None
