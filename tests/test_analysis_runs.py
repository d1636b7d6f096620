"""RunSet.runs() filters and ordering, run lookup, and summarize()."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from analysis_logs import MS, T0_NS, make_run, standard_log, write_jsonl
from steptrace.analysis import RunSet, load, summarize
from steptrace.analysis._stats import percentile

T0 = datetime.fromtimestamp(T0_NS / 1e9, tz=timezone.utc)


@pytest.fixture
def runs(tmp_path: Path) -> RunSet:
    return load(standard_log(tmp_path))


def ids(selected: list) -> list[str]:  # type: ignore[type-arg]
    return [r.run_id for r in selected]


def test_default_order_is_chronological(runs: RunSet) -> None:
    """`steptrace runs` would list runs in file order instead of start order."""
    assert ids(runs.runs()) == [
        "run-ok-1",
        "run-ok-2",
        "run-tool-err",
        "run-loop",
        "run-model-err",
        "run-slow",
        "run-crashed",
    ]


def test_filter_by_stop_reason(runs: RunSet) -> None:
    """`--stop-reason error` would show runs that did not fail."""
    assert ids(runs.runs(stop_reason="error")) == ["run-tool-err", "run-model-err"]
    assert ids(runs.runs(stop_reason="max_steps")) == ["run-loop"]
    assert ids(runs.runs(stop_reason="incomplete")) == ["run-crashed"]


def test_filter_by_steps_uses_agent_steps(runs: RunSet) -> None:
    """`--min-steps` would count LLM and tool calls for agents that do have a step loop."""
    assert ids(runs.runs(min_steps=3)) == ["run-loop"]
    assert ids(runs.runs(max_steps=1)) == ["run-tool-err", "run-model-err"]
    assert ids(runs.runs(min_steps=2, max_steps=2)) == ["run-ok-1", "run-ok-2", "run-slow", "run-crashed"]


def test_total_steps_without_agent_steps_counts_calls(tmp_path: Path) -> None:
    """An agent without agent_step spans would show 0 steps."""
    spans = [s for s in make_run("flat") if s.name != "agent_step"]
    run = load(write_jsonl(tmp_path / "steps.jsonl", spans)).get("flat")
    assert run is not None
    assert run.agent_step_count == 0
    assert run.total_steps == run.llm_call_count + run.tool_call_count == 3


def test_filter_by_tool_and_release(runs: RunSet) -> None:
    """`--tool` or `--release` would keep runs that never used that tool or release."""
    assert ids(runs.runs(tool="search")) == ["run-loop"]
    assert ids(runs.runs(tool="get_weather", release="1.0.0")) == ["run-ok-1", "run-ok-2", "run-tool-err"]
    assert runs.runs(tool="no_such_tool") == []


def test_since_until_accept_iso_strings_and_datetimes(runs: RunSet) -> None:
    """A time window would include runs outside it or reject ISO strings with a Z."""
    since = T0 + timedelta(minutes=2)
    until = T0 + timedelta(minutes=4)
    expected = ["run-tool-err", "run-loop"]
    assert ids(runs.runs(since=since, until=until)) == expected
    assert ids(runs.runs(since=since.isoformat().replace("+00:00", "Z"), until=until.isoformat())) == expected
    naive = since.replace(tzinfo=None)  # naive means UTC
    assert ids(runs.runs(since=naive, until=until)) == expected


def test_order_by_duration_is_slowest_first_with_limit(runs: RunSet) -> None:
    """`--order-by duration --limit 2` would not show the two slowest runs."""
    by_duration = runs.runs(order_by="duration")
    durations = [r.duration_ms for r in by_duration]
    assert durations == sorted(durations, reverse=True)
    assert ids(runs.runs(order_by="duration", limit=2)) == ids(by_duration[:2])
    assert by_duration[0].run_id == "run-slow"


def test_slower_than_percentile(tmp_path: Path) -> None:
    """`--slower-than-percentile 80` would not keep exactly the runs above p80."""
    spans = []
    for i in range(10):
        spans += make_run(f"r{i}", llm_ms=100.0 * (i + 1), start_ns=T0_NS + i * 60_000 * MS)
    runs = load(write_jsonl(tmp_path / "steps.jsonl", spans))
    threshold = percentile([r.duration_ms for r in runs], 80)
    assert threshold is not None
    slow = runs.runs(slower_than_percentile=80)
    assert ids(slow) == ["r8", "r9"]
    assert all(r.duration_ms > threshold for r in slow)


def test_bad_order_by_is_rejected(runs: RunSet) -> None:
    """A typo in order_by would silently fall back to another order."""
    with pytest.raises(ValueError, match="order_by"):
        runs.runs(order_by="tokens")  # type: ignore[arg-type]


def test_get_accepts_a_unique_prefix_and_suggests_close_ids(runs: RunSet) -> None:
    """`steptrace debug run-lo` would not find run-loop, or a typo would get no suggestion."""
    assert runs.get("run-lo") is runs.get("run-loop")
    assert runs.get("run-ok") is None  # ambiguous: run-ok-1 and run-ok-2
    assert runs.closest_run_ids("run-lop")[0] == "run-loop"
    assert set(runs.closest_run_ids("run-ok")) >= {"run-ok-1", "run-ok-2"}


def test_summarize_reports_the_headline_numbers(runs: RunSet) -> None:
    """`steptrace summary` would show wrong counts, tokens or tools."""
    run = runs.get("run-tool-err")
    assert run is not None
    summary = summarize(run)
    assert summary.to_dict() == {
        "run_id": "run-tool-err",
        "agent": "weather-agent",
        "agents": ["weather-agent"],
        "release": "1.0.0",
        "started_at": (T0 + timedelta(minutes=2)).isoformat(),
        "total_steps": 1,
        "llm_call_count": 1,
        "tool_call_count": 1,
        "input_tokens": 120,
        "output_tokens": 30,
        "total_tokens": 150,
        "llm_calls_without_usage": 0,
        "error_count": 1,  # the tool's error, not also its step's and run's
        "duration_ms": run.duration_ms,
        "stop_reason": "error",
        "complete": True,
        "tools_used": {"get_weather": 1},
        # gpt-4o-mini: 120 in x $0.15/Mtok + 30 out x $0.60/Mtok
        "cost_usd": pytest.approx(120 * 0.15e-6 + 30 * 0.6e-6),
        "unpriced_llm_calls": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    spans = make_run("run-tool-err", "tool_error", start_ns=T0_NS + 2 * 60_000 * MS)
    run_span = spans[-1]
    assert run.duration_ms == pytest.approx((run_span.end_ns - run_span.start_ns) / 1e6)


def test_percentile_interpolates() -> None:
    """p50/p95 in diff would be off for small samples."""
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 95) == 10
    assert percentile([], 50) is None
    assert percentile(list(range(101)), 95) == 95
