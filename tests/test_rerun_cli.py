"""`steptrace rerun RUN_ID ... -- COMMAND`: the rerun is switched on through the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steptrace.cli import main

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
