"""Small things a user reads and trips on: `-0 ms` in diff, `1 LLM calls` in summary, and a replay
preview that blamed the terminal for a value already cut when it was captured."""

from __future__ import annotations

from pathlib import Path

import pytest

import steptrace
from analysis_logs import make_run, write_jsonl
from steptrace.cli import main
from steptrace.testing import Capture


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_diff_never_prints_minus_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A p95 that moved by 0.4 ms printed as `-0 ms` (and a count that moved by 0.3 as `-0`)."""
    spans = make_run("base-1", "ok", release="1.0") + make_run("cand-1", "ok", release="1.1", start_ns=10**12)
    for span in spans:
        if span.name == "tool_execution" and span.attributes.get("steptrace.run_id") == "cand-1":
            span.end_ns -= 400_000  # 0.4 ms faster
    log = write_jsonl(tmp_path / "steps.jsonl", spans)
    out = _out(capsys, "diff", "--baseline", "1.0", "--candidate", "1.1", "--log", str(log))
    assert "-0 ms" not in out and " -0 " not in out and "-0.0 pts" not in out
    (line,) = [row for row in out.splitlines() if row.startswith("p95_ms[get_weather]")]
    assert " 0 ms " in line


def test_summary_counts_in_the_singular(
    steptrace_capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`steps  1  (1 LLM calls, 1 tool calls)`."""

    @steptrace.tool
    def lookup(key: str) -> str:
        return key

    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        with steptrace.llm_request(model="m") as llm:
            llm.record_usage(10, 2)
        lookup("k")
    out = _out(capsys, "summary", run.run_id, "--log", str(steptrace_capture.jsonl_path))
    assert "(1 LLM call, 1 tool call)" in out


def test_replay_says_when_a_value_was_cut_at_capture(
    steptrace_capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[7373 chars; --full shows all]` sent the user to --full, which showed the same cut value:
    the rest was never recorded (max_content_bytes)."""

    @steptrace.tool
    def fetch(url: str) -> str:
        return "x" * 20_000

    with steptrace.agent_run(agent="a") as run:
        fetch("https://example.test")
    log = str(steptrace_capture.jsonl_path)
    out = _out(capsys, "replay", run.run_id, "--log", log)
    assert "already cut when it was captured" in out and "--full shows what was kept" in out
    assert "--full shows all" not in out
    full = _out(capsys, "replay", run.run_id, "--log", log, "--full")
    assert "[truncated: 20000 chars]" in full

    @steptrace.tool
    def echo(text: str) -> str:
        return text

    with steptrace.agent_run(agent="a") as short_run:
        echo("y" * 1_000)  # under max_content_bytes: only the preview cuts it
    out = _out(capsys, "replay", short_run.run_id, "--log", log)
    assert "--full shows all" in out and "already cut" not in out
