"""The run filters of `steptrace runs`, `diff` and `report`: agent, conversation, status,
duration bounds, order and cursor pagination, through RunSet.runs()/filter_runs() and the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from analysis_logs import MS, STANDARD_RUNS, T0_NS, Span, make_run, write_jsonl
from steptrace import _attributes as A
from steptrace.analysis import Run, RunSet, filter_runs, load, parse_duration_ms
from steptrace.analysis._runs import OrderBy
from steptrace.cli import main

# The standard seven runs, plus: a second agent in two conversations, and a run whose run span
# failed although its stop reason says end_turn (a crash in the agent's own code after the loop).
EXTRA = [
    ("billing-1", "billing-agent", "conv-a", "ok"),
    ("billing-2", "billing-agent", "conv-b", "ok"),
    ("billing-3", "billing-agent", "conv-a", "slow"),
    ("support-1", "support-agent", "conv-a", "span_failed"),
]


def build_spans() -> list[Span]:
    spans: list[Span] = []
    for i, (run_id, kind, release, complete) in enumerate(STANDARD_RUNS):
        spans += make_run(run_id, kind, release=release, complete=complete, start_ns=T0_NS + i * 60_000 * MS)
    for i, (run_id, agent, conversation, kind) in enumerate(EXTRA, start=len(STANDARD_RUNS)):
        run = make_run(
            run_id, "slow" if kind == "slow" else "ok", agent=agent, start_ns=T0_NS + i * 60_000 * MS
        )
        root = run[-1]
        assert root.name == A.SPAN_AGENT_RUN
        root.attributes[A.GEN_AI_CONVERSATION_ID] = conversation
        if kind == "span_failed":
            root.status, root.description = "error", "KeyError: 'total'"
        spans += run
    return spans


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("STEPTRACE_JSONL_PATH", raising=False)
    return write_jsonl(tmp_path / "steps.jsonl", build_spans())


@pytest.fixture
def runs(log: Path) -> RunSet:
    return load(log)


def ids(selected: Sequence[Run]) -> list[str]:
    return [run.run_id for run in selected]


ALL = [r[0] for r in STANDARD_RUNS] + [r[0] for r in EXTRA]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_agent_filter_takes_one_or_several_names(runs: RunSet) -> None:
    """`--agent billing-agent --agent support-agent` would match one of them, or none."""
    assert ids(runs.runs(agent="billing-agent")) == ["billing-1", "billing-2", "billing-3"]
    both = runs.runs(agent=["billing-agent", "support-agent"])
    assert ids(both) == ["billing-1", "billing-2", "billing-3", "support-1"]
    assert runs.runs(agent="nobody") == []


def test_conversation_filter(runs: RunSet) -> None:
    """Runs of one conversation would be mixed with the others."""
    assert ids(runs.runs(conversation="conv-a")) == ["billing-1", "billing-3", "support-1"]
    assert ids(runs.runs(conversation="conv-a", agent="billing-agent")) == ["billing-1", "billing-3"]
    assert runs.get("billing-2").to_dict()["conversation_id"] == "conv-b"  # type: ignore[union-attr]


def test_status_error_is_a_failed_run_span_or_stop_reason_error(runs: RunSet) -> None:
    """A run whose own span failed (stop reason end_turn) would be listed as ok."""
    assert ids(runs.runs(status="error")) == ["run-tool-err", "run-model-err", "support-1"]
    ok = ids(runs.runs(status="ok"))
    # The crashed run (no run record) is neither: its outcome is unknown.
    assert "run-crashed" not in ok and set(ok) | {
        "run-tool-err",
        "run-model-err",
        "support-1",
        "run-crashed",
    } == set(ALL)
    assert runs.get("support-1").status == "error"  # type: ignore[union-attr]
    assert runs.get("run-crashed").status is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="status must be 'ok' or 'error'"):
        runs.runs(status="failed")  # type: ignore[arg-type]


def test_duration_bounds_take_text_or_milliseconds(runs: RunSet) -> None:
    """`--min-duration 2s` would be read as 2 ms, or a bound would be exclusive."""
    durations = {run.run_id: run.duration_ms for run in runs}
    slow = sorted(r for r, ms in durations.items() if ms >= 2000)
    assert slow and sorted(ids(runs.runs(min_duration="2s"))) == slow
    assert sorted(ids(runs.runs(min_duration=2000))) == slow
    fast = sorted(r for r, ms in durations.items() if ms <= 500)
    assert sorted(ids(runs.runs(max_duration="500ms"))) == fast
    some = durations["run-ok-1"]
    assert "run-ok-1" in ids(runs.runs(min_duration=some, max_duration=some))  # both bounds inclusive
    assert parse_duration_ms("1.5m") == 90_000 and parse_duration_ms("1h") == 3_600_000
    for bad in ("2", "2x", "-1s", "fast", ""):
        with pytest.raises(ValueError, match=r"is not a duration; write e\.g\. 2s, 500ms"):
            runs.runs(min_duration=bad)


def test_order_and_ascending(runs: RunSet) -> None:
    """--ascending would not turn the order around, or duration order would not be by duration."""
    assert ids(runs.runs()) == ALL
    assert ids(runs.runs(ascending=False)) == ALL[::-1]
    slowest = runs.runs(order_by="duration")
    assert [r.duration_ms for r in slowest] == sorted((r.duration_ms for r in runs), reverse=True)
    fastest = runs.runs(order_by="duration", ascending=True)
    assert [r.duration_ms for r in fastest] == sorted(r.duration_ms for r in runs)


@pytest.mark.parametrize(
    ("order_by", "ascending"), [("started", None), ("started", False), ("duration", None)]
)
def test_cursor_pages_cover_every_run_once(runs: RunSet, order_by: OrderBy, ascending: bool | None) -> None:
    """Paging with --after would skip or repeat runs."""
    everything = ids(runs.runs(order_by=order_by, ascending=ascending))
    pages: list[list[str]] = []
    after = None
    while True:
        page = ids(runs.runs(order_by=order_by, ascending=ascending, after=after, limit=3))
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    assert [run_id for page in pages for run_id in page] == everything
    # --before the first run of a page is the page before it: the runs closest to the cursor.
    assert ids(runs.runs(order_by=order_by, ascending=ascending, before=pages[2][0], limit=3)) == pages[1]
    assert (
        ids(runs.runs(order_by=order_by, ascending=ascending, after=pages[0][-1], before=pages[2][0]))
        == pages[1]
    )


def test_a_cursor_works_when_its_run_is_filtered_out(runs: RunSet) -> None:
    """Paging a filtered list from a run the filter excludes would fail or restart."""
    assert ids(runs.runs(agent="billing-agent", after="run-crashed")) == [
        "billing-1",
        "billing-2",
        "billing-3",
    ]
    assert ids(runs.runs(agent="billing-agent", after="billing-1")) == ["billing-2", "billing-3"]
    with pytest.raises(ValueError, match="matches 3 runs"):
        runs.runs(after="billing")
    with pytest.raises(ValueError, match="'nope' is not a run id in these logs"):
        runs.runs(before="nope")


def test_filter_runs_is_what_runset_runs_uses(runs: RunSet) -> None:
    """The report, diff and runs would select different runs for the same filters."""
    options: dict[str, Any] = {
        "agent": ["billing-agent"],
        "min_duration": "1ms",
        "status": "ok",
        "order_by": "duration",
    }
    assert filter_runs(list(runs), **options) == runs.runs(**options)


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_filters_match_the_api(log: Path, runs: RunSet, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace runs --agent/--conversation/--status/--min-duration` would be ignored."""
    argv = ["runs", "--log", str(log), "--json", "--limit", "0"]
    cases: list[tuple[list[str], dict[str, Any]]] = [
        (
            ["--agent", "billing-agent", "--agent", "support-agent"],
            {"agent": ["billing-agent", "support-agent"]},
        ),
        (["--conversation", "conv-a"], {"conversation": "conv-a"}),
        (["--status", "error"], {"status": "error"}),
        (["--status", "ok", "--min-duration", "2s"], {"status": "ok", "min_duration": 2000}),
        (["--max-duration", "0.5s", "--tool", "get_weather"], {"max_duration": 500, "tool": "get_weather"}),
    ]
    for options, kwargs in cases:
        code, out, _ = run_cli(capsys, *argv, *options)
        want = ids(runs.runs(**kwargs))
        assert want, options
        assert code == 0 and [row["run_id"] for row in json.loads(out)] == want, options
    code, out, _ = run_cli(capsys, *argv, "--status", "error")
    assert {row["status"] for row in json.loads(out)} == {"error"}


def test_cli_pages_with_after_and_before(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal's page and its next/previous hints would skip or repeat runs."""
    base = ["runs", "--log", str(log), "--limit", "4"]
    code, out, _ = run_cli(capsys, *base)
    assert code == 0
    first = [line.split()[0] for line in out.split("\n\n")[0].splitlines()[1:]]
    assert first == ALL[-4:]  # the most recent runs, oldest of them first
    assert f"previous page: --before {ALL[-4]}" in out
    code, out, _ = run_cli(capsys, *base, "--before", ALL[-4])
    assert [line.split()[0] for line in out.split("\n\n")[0].splitlines()[1:]] == ALL[-8:-4]
    code, out, _ = run_cli(capsys, *base, "--ascending")
    assert [line.split()[0] for line in out.split("\n\n")[0].splitlines()[1:]] == ALL[:4]
    assert f"next page: --after {ALL[3]}" in out
    code, out, _ = run_cli(capsys, *base, "--after", ALL[3], "--json")
    assert [row["run_id"] for row in json.loads(out)] == ALL[4:8]
    code, out, _ = run_cli(capsys, *base, "--order-by", "duration", "--ascending", "--json")
    durations = [row["duration_ms"] for row in json.loads(out)]
    assert durations == sorted(durations)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--min-duration", "2"], "bad filter: --min-duration '2' is not a duration; write e.g. 2s, 500ms"),
        (["--max-duration", "soon"], "--max-duration 'soon' is not a duration"),
        (["--after", "nope"], "bad filter: --after 'nope' is not one run id in these logs"),
        (["--before", "billing"], "--before 'billing' is not one run id"),
        (["--slower-than-percentile", "120"], "is not 0..100, e.g. 95"),
    ],
)
def test_cli_bad_filter_values_exit_2_with_an_example(
    log: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    """A typo in a filter would list every run, or crash with a traceback."""
    code, out, err = run_cli(capsys, "runs", "--log", str(log), *options)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "e.g." in err


def test_cli_bad_status_is_a_usage_error(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--status failed` would match nothing instead of saying what is allowed."""
    code, _, err = run_cli(capsys, "runs", "--log", str(log), "--status", "failed")
    assert code == 2 and "'ok', 'error'" in err


def test_cli_no_match_names_the_agents_present(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped agent name would say only that nothing matched."""
    code, _, err = run_cli(capsys, "runs", "--log", str(log), "--agent", "biling-agent")
    assert code == 1 and "agents present: billing-agent, support-agent, weather-agent" in err


def test_diff_takes_the_same_filters(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace diff --agent X` would compare every agent's runs."""
    argv = ["diff", "--baseline", "1.0.0", "--candidate", "1.1.0", "--log", str(log), "--json"]
    code, out, _ = run_cli(capsys, *argv)
    everything = json.loads(out)
    code, out, _ = run_cli(capsys, *argv, "--agent", "weather-agent", "--status", "ok")
    narrowed = json.loads(out)
    assert code == 0
    assert everything["baseline"]["runs"] == 7  # three weather runs and the extra four (1.0.0)
    assert narrowed["baseline"] == {"label": "1.0.0", "runs": 2}  # run-ok-1, run-ok-2
    assert narrowed["candidate"] == {"label": "1.1.0", "runs": 2}  # run-loop, run-slow
    code, _, err = run_cli(capsys, *argv, "--min-duration", "1x")
    assert code == 2 and "--min-duration" in err
