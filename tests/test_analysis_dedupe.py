"""Each span counts once, whatever files hold it: step log, OTLP spill file, archives, OTLP JSON."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from analysis_logs import make_run, records, standard_log, standard_spans, write_jsonl, write_otlp
from steptrace.analysis import load, summarize
from steptrace.cli import main

AGENT = """
import steptrace

@steptrace.tool
def lookup(city: str) -> str:
    return "sunny in " + city

@steptrace.llm_request(provider="scripted")
def model(turn: int) -> dict:
    return {"type": "message", "id": f"m{turn}", "model": "m-1", "role": "assistant",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 800, "output_tokens": 63}}

telemetry = steptrace.configure(service_name="svc")
with steptrace.agent_run(agent="a", release="v1"):
    for turn in range(3):
        with steptrace.agent_step():
            model(turn)
            lookup("paris")
telemetry.shutdown()
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def production_logs(tmp_path: Path) -> Path:
    """The README's production recipe with the collector down: step log plus spill file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    env["STEPTRACE_JSONL_PATH"] = "./steptrace-logs/steps.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", AGENT],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    logs = tmp_path / "steptrace-logs"
    assert (logs / "otlp-spill.jsonl").stat().st_size > 0, "the collector was down: spans must spill"
    return logs


def test_spill_file_next_to_step_log_counts_each_span_once(
    production_logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the collector down, `steptrace runs` showed 6 steps and 5,178 tokens for a 3-step run."""
    code, out, err = run_cli(capsys, "runs", "--log", str(production_logs), "--json")
    assert code == 0
    (run,) = json.loads(out)
    assert run["total_steps"] == 3
    assert run["total_tokens"] == 3 * (800 + 63)
    assert run["llm_call_count"] == 3 and run["tool_call_count"] == 3
    assert "otlp-spill.jsonl: dropped 10 duplicate records" in err

    code, out, _ = run_cli(capsys, "summary", run["run_id"], "--log", str(production_logs))
    assert code == 0
    assert "lookup ×3" in out and "lookup ×6" not in out

    code, out, _ = run_cli(capsys, "replay", run["run_id"], "--log", str(production_logs), "--json")
    replayed = json.loads(out)
    assert len(replayed) == 10  # 1 run + 3 steps + 3 model calls + 3 tool calls
    assert len({r["span_id"] for r in replayed}) == 10


def test_archived_gzip_copy_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--log steps.jsonl --log old.jsonl.gz` over an archived copy doubled every count."""
    log = standard_log(tmp_path)
    archive = tmp_path / "old.jsonl.gz"
    archive.write_bytes(gzip.compress(log.read_bytes()))
    single = {r.run_id: r.to_dict() for r in load(log)}
    code, out, err = run_cli(
        capsys, "runs", "--log", str(log), "--log", str(archive), "--json", "--limit", "0"
    )
    assert code == 0
    assert {r["run_id"]: r for r in json.loads(out)} == single
    assert f"old.jsonl.gz: dropped {len(records(standard_spans()))} duplicate records" in err


def test_otlp_json_copy_of_the_step_log_counts_once(tmp_path: Path) -> None:
    """The Collector's file export next to the step log doubled every run read from both."""
    spans = make_run("run-both", "tool_error")
    write_jsonl(tmp_path / "steps.jsonl", spans)
    write_otlp(tmp_path / "otlp-traces.json", spans)
    runs = load(tmp_path)
    (run,) = runs
    only_jsonl = next(iter(load(tmp_path / "steps.jsonl")))
    assert run.to_dict() == only_jsonl.to_dict()
    assert len(run.records()) == len(spans)
    (issue,) = runs.issues
    assert issue.duplicate_records == len(spans)


def test_the_most_complete_copy_is_kept(tmp_path: Path) -> None:
    """A copy cut down to its ids (an oversized record) must not replace the full one."""
    full = records(make_run("run-cut", "ok"))
    llm = next(r for r in full if r["type"] == "llm_call")
    keep = ("run_id", "step", "type", "name", "trace_id", "span_id", "parent_span_id", "ts")
    cut = {**{k: llm[k] for k in keep}, "truncated": {"original_bytes": 2_000_000}}
    # The cut copy comes first, in the file sorted first.
    (tmp_path / "a-spill.jsonl").write_text(json.dumps(cut) + "\n")
    (tmp_path / "b-steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full))
    (run,) = load(tmp_path)
    assert run.to_dict() == next(iter(load(tmp_path / "b-steps.jsonl"))).to_dict()
    (kept,) = [r for r in run.records() if r["span_id"] == llm["span_id"]]
    assert kept["input_tokens"] == llm["input_tokens"] and "truncated" not in kept


def test_distinct_spans_sharing_nothing_are_all_kept(tmp_path: Path) -> None:
    """De-duplication must not merge different spans (same run, two files, no overlap)."""
    spans = make_run("run-split", "tool_error")
    write_jsonl(tmp_path / "one.jsonl", spans[:3])
    write_jsonl(tmp_path / "two.jsonl", spans[3:])
    runs = load(tmp_path)
    (run,) = runs
    assert run.record_count == len(spans) and len(run.records()) == len(spans)
    assert not runs.issues
    assert summarize(run).error_count == 1


def test_one_file_holding_a_span_twice_counts_it_once_when_asked(tmp_path: Path) -> None:
    """A log concatenated from copies (`cat a.jsonl a.jsonl`) doubled its counts."""
    text = "".join(json.dumps(r) + "\n" for r in records(make_run("run-cat", "tool_error")))
    once = tmp_path / "once" / "steps.jsonl"
    once.parent.mkdir()
    once.write_text(text)
    twice = tmp_path / "steps.jsonl"
    twice.write_text(text + text)
    runs = load(twice, dedupe_single_file=True)
    (run,) = runs
    assert run.to_dict() == next(iter(load(once))).to_dict()
    assert runs.issues[0].duplicate_records == text.count("\n")
