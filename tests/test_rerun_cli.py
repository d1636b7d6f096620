"""`steptrace rerun RUN_ID ... -- COMMAND`: the rerun is switched on through the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steptrace.cli import main
from steptrace.testing import Capture

AGENT = str(Path(__file__).parent / "rerun_agents.py")


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """One looping run recorded by a separate process; returns its run id prefix."""
    monkeypatch.setenv("STEPTRACE_JSONL_PATH", str(tmp_path / "logs" / "steps.jsonl"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    environment = {**os.environ, "STEPTRACE_RECORD_FOR_RERUN": "true"}
    subprocess.run([sys.executable, AGENT], env=environment, check=True, capture_output=True, timeout=60)
    (path,) = (tmp_path / "logs" / "rerun").glob("*.jsonl")
    return path.stem[:8]


def test_cli_rerun_reproduces_and_prints_the_report(recorded: str, capfd: pytest.CaptureFixture[str]) -> None:
    """Exit 0 and the verdict; the agent's own output shows no model or tool body ran."""
    assert main(["rerun", recorded, "--", sys.executable, AGENT]) == 0
    out = capfd.readouterr().out
    assert "calls: {'model': 0, 'search': 0, 'convert_currency': 0}" in out
    assert "reproduced: 6 steps, max_steps, convert_currency x4, search x2 (same as the original)" in out


def test_cli_rerun_json_is_the_report_dict(recorded: str, capfd: pytest.CaptureFixture[str]) -> None:
    """--json: report.to_dict() as the last line of stdout; options may follow RUN_ID."""
    argv = ["rerun", recorded, "--tools", "live", "--llm", "until-divergence", "--json"]
    assert main([*argv, "--", sys.executable, AGENT, "--fixed"]) == 0
    report = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert report["diverged_at"] == 3
    assert report["rerun"]["stop_reason"] == "end_turn"


def test_cli_rerun_exit_codes(recorded: str, capfd: pytest.CaptureFixture[str]) -> None:
    """1 when the command starts no matching run, 2 for a missing recording or no command."""
    assert main(["rerun", recorded, "--", sys.executable, AGENT, "--no-run"]) == 1
    assert main(["rerun", "ffff", "--", sys.executable, AGENT]) == 2
    assert main(["rerun", recorded]) == 2
    err = capfd.readouterr().err
    assert "no run in the command matched the recording" in err
    assert "no recording of run 'ffff'" in err


def test_export_then_rerun_from_the_file(
    recorded: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An exported run is read by `runs --log FILE` and re-run by `steptrace rerun FILE`."""
    exported = tmp_path / "incident.jsonl"
    assert main(["export", recorded, "-o", str(exported)]) == 0
    assert main(["runs", "--log", str(exported), "--json"]) == 0
    assert recorded in capfd.readouterr().out
    assert main(["rerun", str(exported), "--json", "--", sys.executable, AGENT]) == 0
    report = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert report["reproduced"] is True
    assert report["original_run_id"].startswith(recorded)


def test_a_rerun_of_an_exported_file_keeps_its_verdict_beside_it(
    recorded: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], steptrace_capture: Capture
) -> None:
    """The incident file re-run by another process (and by steptrace.rerun in this one): `debug`
    of the run from that file lists both verdicts, and the CLI says where they went."""
    incidents = tmp_path / "tests"
    incidents.mkdir()
    exported = incidents / "incident.jsonl"
    assert main(["export", recorded, "-o", str(exported)]) == 0
    assert main(["rerun", str(exported), "--", sys.executable, AGENT]) == 0
    out = capfd.readouterr().out
    kept = incidents / "rerun" / "verdicts"
    assert f"verdict kept in {kept}" in out and f"--log {exported})" in out
    import rerun_agents
    import steptrace

    with steptrace.rerun(exported, tools="live") as active:
        rerun_agents.run_agent("What was our Q3 revenue, in euros?")
    assert active.kept_in is not None and active.kept_in.parent == kept
    assert main(["debug", recorded, "--log", str(exported)]) == 0
    shown = [line for line in capfd.readouterr().out.splitlines() if line.startswith("rerun:")]
    assert len(shown) == 2
    assert "(recorded/recorded): reproduced: 6 steps" in shown[0]
    assert "(recorded/live): reproduced: 6 steps" in shown[1]


# --- never a silent live call (issue 22) ---------------------------------------------------------
def test_cli_rerun_after_a_fix_serves_the_recorded_model_offline(
    recorded: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tools live after the fix, llm left at recorded: the fixed tool runs, the model's recorded
    decisions are served after the divergence (out of match), and the model is never called —
    its address is closed, as in CI."""
    monkeypatch.setenv("RERUN_AGENT_MODEL_URL", "http://127.0.0.1:9/closed")
    assert main(["rerun", recorded, "--tools", "live", "--", sys.executable, AGENT, "--fixed"]) == 0
    out = capfd.readouterr().out
    assert "calls: {'model': 0, 'search': 2, 'convert_currency': 4}" in out
    assert (
        "changed: diverged at step 3 (convert_currency returned a result instead of ValueError); "
        "the run still ends with max_steps after 6 steps; 0 errors instead of 4; "
        "model calls: 6 served from the recording (3 out of match, from model call 4 on), 0 live; "
        "tools: 0 served from the recording, 6 ran your code"
    ) in out


def _record_sdk_run(log: Path, script: Any) -> str:
    import sdk_fakes as F

    environment = {
        **os.environ,
        "STEPTRACE_JSONL_PATH": str(log / "steps.jsonl"),
        "STEPTRACE_RECORD_FOR_RERUN": "true",
    }
    with F.FakeServer(script) as server:
        subprocess.run(
            [sys.executable, SDK_AGENT, server.url("/v1"), "--instrument"],
            env=environment,
            check=True,
            capture_output=True,
            timeout=60,
        )
    (path,) = (log / "rerun").glob("*.jsonl")
    return path.stem


SDK_AGENT = str(Path(__file__).parent / "rerun_sdk_agent.py")


@pytest.fixture
def recorded_sdk_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two openai chat calls recorded by another process against a local server, now stopped."""
    import sdk_fakes as F

    monkeypatch.setenv("STEPTRACE_JSONL_PATH", str(tmp_path / "logs" / "steps.jsonl"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    script = F.Script(
        F.json_reply(F.chat_completion("Let me check the weather.")),
        F.json_reply(F.chat_completion("21.1 °C in Paris.")),
    )
    run_id = _record_sdk_run(tmp_path / "logs", script)
    assert len(script.requests) == 2
    return run_id


def test_cli_rerun_of_an_sdk_run_in_a_process_that_does_not_instrument_the_sdk(
    recorded_sdk_run: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """The agent forgot instrument_openai() in the rerun's process: the rerun instruments it at
    its start and says so, and the recorded calls are served (the server is stopped)."""
    closed = "http://127.0.0.1:9/v1"
    assert main(["rerun", recorded_sdk_run[:8], "--", sys.executable, SDK_AGENT, closed]) == 0
    captured = capfd.readouterr()
    assert "answer: 21.1 °C in Paris." in captured.out
    assert "APIConnectionError" not in captured.err
    assert "model calls: 2 served from the recording, 0 live; tools: 1 served" in captured.out
    warning = (
        "the recording has 2 openai model calls, but openai was not instrumented in this process: "
        "steptrace instrumented it so they are served from the recording, not sent"
    )
    assert f"warning: {warning}" in captured.out
    assert warning in captured.err  # said at the rerun's start too, by the agent's process


def test_cli_rerun_of_a_fixed_sdk_agent_stays_offline_and_counts_live_calls_when_asked(
    recorded_sdk_run: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """After the fix the second request differs: recorded serves the recorded answer out of
    match (server stopped); until-divergence, asked for explicitly, calls the model and the
    report counts that call."""
    import sdk_fakes as F

    closed = "http://127.0.0.1:9/v1"
    argv = ["rerun", recorded_sdk_run[:8], "--tools", "live", "--json", "--"]
    assert main([*argv, sys.executable, SDK_AGENT, closed, "--instrument", "--fixed"]) == 0
    captured = capfd.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["ran"]["llm"] == {"served": 2, "out_of_match": 1, "out_of_match_from": 2, "live": 0}
    assert report["divergence"] == "step 2: weather returned a different result"
    assert report["rerun"]["stop_reason"] != "error"  # the agent got its answer, offline
    assert "APIConnectionError" not in captured.err

    script = F.Script(F.json_reply(F.chat_completion("21.1 °C, live.")))
    with F.FakeServer(script) as server:
        argv = ["rerun", recorded_sdk_run[:8], "--llm", "until-divergence", "--tools", "live", "--json", "--"]
        assert main([*argv, sys.executable, SDK_AGENT, server.url("/v1"), "--instrument", "--fixed"]) == 0
    report = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert len(script.requests) == 1
    assert report["ran"]["llm"] == {"served": 1, "out_of_match": 0, "out_of_match_from": None, "live": 1}
    assert report["verdict"].endswith(
        "model calls: 1 served from the recording, 1 live; "
        "tools: 0 served from the recording, 1 ran your code"
    )


# --- reruns are not production runs ------------------------------------------------------------
def test_reruns_are_left_out_of_runs_diff_and_report_and_served_calls_cost_nothing(
    recorded_sdk_run: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A production run (priced gpt-4o calls) and its rerun by another process, in one log:
    runs, diff and report leave the rerun out; --reruns shows it marked, at $0 for the served
    calls; summary of the rerun names the run it re-ran."""
    closed = "http://127.0.0.1:9/v1"
    assert main(["rerun", recorded_sdk_run[:8], "--json", "--", sys.executable, SDK_AGENT, closed]) == 0
    rerun_id = json.loads(capfd.readouterr().out.strip().splitlines()[-1])["run_id"]

    assert main(["runs", "--json"]) == 0
    (production,) = json.loads(capfd.readouterr().out)
    assert production["run_id"] == recorded_sdk_run and "rerun_of" not in production
    assert production["cost_usd"] > 0
    assert main(["runs", "--reruns", "--json"]) == 0
    both = {run["run_id"]: run for run in json.loads(capfd.readouterr().out)}
    assert set(both) == {recorded_sdk_run, rerun_id}
    assert both[rerun_id]["rerun_of"] == recorded_sdk_run
    assert both[rerun_id]["cost_usd"] == 0.0 and both[rerun_id]["unpriced_llm_calls"] == 0
    assert main(["runs", "--agent", "weather-sdk", "--min-steps", "4"]) == 1  # 3 steps each
    assert "(1 rerun left out: --reruns includes them)" in capfd.readouterr().err
    assert main(["runs", "--reruns"]) == 0
    table = capfd.readouterr().out
    assert f"end_turn (rerun of {recorded_sdk_run[:8]})" in table

    assert main(["diff", "--baseline", "1.0", "--candidate", "1.0", "--json"]) == 0
    assert '"runs": 1' in capfd.readouterr().out
    assert main(["diff", "--baseline", "1.0", "--candidate", "1.0", "--reruns", "--json"]) == 0
    assert '"runs": 2' in capfd.readouterr().out

    assert main(["report", "-o", str(tmp_path / "r.html"), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["runs"] == 1
    assert main(["report", "-o", str(tmp_path / "all.html"), "--reruns", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["runs"] == 2
    assert "end_turn (rerun)" in (tmp_path / "all.html").read_text(encoding="utf-8")

    assert main(["summary", rerun_id]) == 0
    summary = capfd.readouterr().out
    assert f"(a rerun of {recorded_sdk_run})" in summary
    assert "cost         $0  (model calls served from the recording cost nothing)" in summary
