"""The fast aggregate pass (``runs``, ``summary RUN``) gives the answers a plain reading gives.

A log with every record shape (failed tools and models, reruns with served calls, calls without
usage, log lines, foreign spans, torn and corrupt lines, a ``.gz`` copy, an id spelt with an
escape, many repeated tool calls) is read three ways: the fast pass, the stdlib pass, and a
straightforward reference written here from the step-record schema. Each must agree.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis_logs import make_run, records
from steptrace._pricing import Pricer
from steptrace._records import record_after_torn_prefix
from steptrace.analysis import _loading, load, summarize
from steptrace.cli import main

Record = dict[str, Any]


def _log_records() -> list[Record]:
    """Records of runs of every kind, edited into the shapes the exporter and hand-edits give."""
    out: list[Record] = []
    kinds = ["ok", "tool_error", "loop", "model_error", "slow"]
    for number, kind in enumerate(kinds * 2):
        out += records(make_run(f"run-{number}", kind, seed=number, release=f"1.{number % 2}.0"))
    out += records(make_run("run-crashed", "ok", complete=False))
    # A rerun: its run record names the original; one model call was served from the recording.
    rerun = records(make_run("run-rerun", "ok", seed=7))
    next(r for r in rerun if r["type"] == "run")["rerun_of"] = "run-0"
    next(r for r in rerun if r["type"] == "llm_call")["served"] = True
    out += rerun
    # Calls without usage (unknown tokens, never 0), a model without a price, cache tokens.
    usage = records(make_run("run-usage", "ok", seed=3))
    calls = [r for r in usage if r["type"] == "llm_call"]
    calls[0]["input_tokens"] = calls[0]["output_tokens"] = None
    calls[1].update(model="acme-private-7b", request_model="acme-private-7b", cache_read_input_tokens=100)
    out += usage
    no_usage = records(make_run("run-no-usage", "ok", seed=4))
    for record in no_usage:
        if record["type"] == "llm_call":
            record["input_tokens"] = record["output_tokens"] = None
    out += no_usage
    # Many tool calls, some repeated: past the few a run keeps in an array, into its set.
    many = records(make_run("run-many-tools", "loop", max_steps=3, seed=5))
    tool = next(r for r in many if r["type"] == "tool_call")
    for call in range(80):
        copy = dict(tool, span_id=f"{call:016x}", args_hash=f"h{call % 50}", duration_ms=float(call))
        many.append(copy)
    out += many
    # A captured log line and a foreign span: neither is a step of the run.
    first = out[0]
    out.append({"run_id": first["run_id"], "type": "log", "ts": 1.0, "message": "hello"})
    out.append(
        dict(
            first,
            type="span",
            name="http.get",
            span_id="f0f0f0f0f0f0f0f0",
            attributes={"gen_ai.agent.name": "foreign"},
        )
    )
    # Two runs one of whose ids starts the other's: `summary run-1` is not `run-10`.
    out += records(make_run("run-10", "ok", seed=10))
    return out


def _write_log(directory: Path) -> Path:
    rows = _log_records()
    lines = [json.dumps(row, separators=(",", ":")) + "\n" for row in rows]
    # An id spelt with an escape in one of its records: a byte pre-filter on "run-esc" must not
    # lose it.
    escaped = records(make_run("run-esc", "ok", seed=11))
    escaped_lines = [json.dumps(row, separators=(",", ":")) + "\n" for row in escaped]
    escaped_lines[0] = escaped_lines[0].replace('"run_id":"run-esc"', '"run_id":"\\u0072un-esc"')
    assert "run-esc" not in escaped_lines[0]
    # A writer killed mid-line, then a whole record on the same line; a corrupt line.
    torn = lines[5][: len(lines[5]) // 2] + lines[6]
    body = [*lines[:5], torn, *lines[7:], *escaped_lines, "{not json\n"]
    directory.mkdir()
    (directory / "steps.jsonl").write_text("".join(body) + lines[3][:40])  # a torn last line
    # An archived copy: some spans again (counted once), and one run only there.
    archived = lines[10:20] + [json.dumps(r) + "\n" for r in records(make_run("run-archived", "tool_error"))]
    (directory / "archive.jsonl.gz").write_bytes(gzip.compress("".join(archived).encode()))
    return directory


def _read(path: Path) -> Iterator[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as file:
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                record = record_after_torn_prefix(line)
            if isinstance(record, dict) and isinstance(record.get("run_id"), str) and "type" in record:
                yield record


def _reference(directory: Path) -> dict[str, dict[str, Any]]:
    """Each run's numbers, computed the plain way: every record of a run in a list, then sums."""
    by_run: dict[str, list[Record]] = {}
    seen: set[tuple[str, str, str]] = set()
    for path in sorted(directory.iterdir()):
        for record in _read(path):
            key = (record["run_id"], record.get("trace_id"), record.get("span_id"))
            if record["type"] == "log" or key in seen:
                continue
            seen.add(key)
            by_run.setdefault(record["run_id"], []).append(record)
    pricer = Pricer()
    out: dict[str, dict[str, Any]] = {}
    for run_id, rows in by_run.items():
        calls = [r for r in rows if r["type"] == "llm_call"]
        tools = [r for r in rows if r["type"] == "tool_call"]
        steps = [r for r in rows if r["type"] == "agent_step"]
        head = next((r for r in reversed(rows) if r["type"] == "run"), None)
        no_usage = sum(
            1
            for r in calls
            if r.get("input_tokens") is None and r.get("output_tokens") is None and r["status"] != "error"
        )
        tokens_known = not (no_usage and no_usage >= len(calls))
        costs = [0.0 if r.get("served") else pricer.price_record(r) for r in calls]
        priced = [c for c in costs if c is not None]
        tool_names: dict[str, int] = {}
        for r in tools:
            tool_names[r["tool"]] = tool_names.get(r["tool"], 0) + 1
        keys = [(r["tool"], r["args_hash"]) for r in tools]
        failed = [r for r in rows if r["status"] == "error"]
        failed_parents = {r.get("parent_span_id") for r in failed}
        root_causes = sum(1 for r in failed if r["span_id"] not in failed_parents)
        inputs = sum(r.get("input_tokens") or 0 for r in calls)
        outputs = sum(r.get("output_tokens") or 0 for r in calls)
        # The starting agent: the run record's; without one (crashed, or its line torn), the
        # first step's, else a foreign span's gen_ai.agent.name.
        spans = [r.get("attributes", {}).get("gen_ai.agent.name") for r in rows if r["type"] == "span"]
        agents = [head["agent"]] if head is not None else [r.get("agent") for r in steps] + spans
        agents += [r.get("agent") for r in steps]
        out[run_id] = {
            "llm_call_count": len(calls),
            "tool_call_count": len(tools),
            "total_steps": len(steps) or len(calls) + len(tools),
            "input_tokens": inputs if tokens_known else None,
            "output_tokens": outputs if tokens_known else None,
            "total_tokens": inputs + outputs if tokens_known else None,
            "llm_calls_without_usage": no_usage,
            "cache_read_input_tokens": sum(r.get("cache_read_input_tokens") or 0 for r in calls),
            "error_count": head["errors"] if head is not None else root_causes,
            "repeated_call_count": len(keys) - len(set(keys)),
            "tools": tool_names,
            "cost_usd": sum(priced) if priced else None,
            "unpriced_llm_calls": len(costs) - len(priced),
            "complete": head is not None,
            "stop_reason": head["stop_reason"] if head is not None else "incomplete",
            "agents": list(dict.fromkeys(a for a in agents if isinstance(a, str))),
            "rerun_of": head.get("rerun_of") if head is not None else None,
        }
    return out


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_log(tmp_path_factory.mktemp("fast") / "logs")


def test_fast_pass_agrees_with_a_plain_reading(log: Path) -> None:
    """`steptrace runs` would show a count, token sum, cost or error count a plain reading of
    the same log does not give."""
    assert _loading.fast_path_available()
    runs = load(log)
    expected = _reference(log)
    assert {run.run_id for run in runs} == set(expected)
    for run in runs:
        shown = run.to_dict()
        assert {key: shown.get(key) for key in expected[run.run_id]} == expected[run.run_id], run.run_id
    issues = {issue.path.name: issue for issue in runs.issues}
    assert issues["steps.jsonl"].torn_records == 1 and issues["steps.jsonl"].corrupt_lines == 1
    assert issues["steps.jsonl"].torn_last_line
    assert issues["steps.jsonl"].duplicate_records == 10  # the archive's name sorts first


def test_fast_and_stdlib_passes_agree(log: Path) -> None:
    """The msgspec pass would answer differently from the stdlib one on the same log."""
    fast = {run.run_id: run.to_dict() for run in load(log)}
    _loading.use_fast_path(False)
    try:
        plain = {run.run_id: run.to_dict() for run in load(log)}
    finally:
        _loading.use_fast_path(True)
    assert fast == plain


def test_summary_of_one_run_equals_the_full_load(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace summary RUN` reads only the lines that can hold the run: it would miss a record
    whose id is spelt with an escape, or mix `run-1` with `run-10`."""
    everything = load(log)
    for run in everything:
        assert main(["summary", run.run_id, "--log", str(log), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == summarize(run).to_dict(), run.run_id
    # A unique prefix still finds its run; an ambiguous one still says so, naming the runs.
    assert main(["summary", "run-esc"[:5] + "s", "--log", str(log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "run-esc"
    assert main(["summary", "run-1", "--log", str(log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "run-1"
    assert main(["summary", "run-", "--log", str(log)]) == 1
    assert "ambiguous" in capsys.readouterr().err


def test_runs_json_lists_the_same_runs(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace runs --json` would list other numbers than the API, or show reruns unasked."""
    everything = load(log)
    assert main(["runs", "--log", str(log), "--json", "--limit", "0"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [run.to_dict() for run in everything.runs()]
    assert "run-rerun" not in {run["run_id"] for run in listed}
    assert main(["runs", "--log", str(log), "--json", "--limit", "0", "--reruns"]) == 0
    assert "run-rerun" in {run["run_id"] for run in json.loads(capsys.readouterr().out)}
