"""Files and options a command is given: an overlong line, an unreadable OTLP span, log lines held
by two files, a record with list ids, an unwritable --output, --slo-ms nan. Each is skipped and
counted or answered with one line and exit 2 — never "internal error", never a lost record.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from analysis_logs import make_run, records, write_otlp
from steptrace.cli import main

AGENT = str(Path(__file__).parent / "rerun_agents.py")


def _run_lines(run_id: str = "r1", release: str = "1.0.0") -> list[bytes]:
    return [json.dumps(r).encode() + b"\n" for r in records(make_run(run_id, "tool_error", release=release))]


def _gzip_member(data: bytes) -> bytes:
    """One gzip member: members concatenated are one .gz file to every reader."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


# --- lines longer than the limit ---------------------------------------------------------------------


def test_one_gib_line_in_a_small_gz_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    """A 1 MB .jsonl.gz holding one 1 GiB line: the CLI took 2.1 GB of memory or died (exit 3)."""
    lines = _run_lines()
    path = tmp_path / "steps.jsonl.gz"
    mebibyte = _gzip_member(b"A" * (1 << 20))
    with path.open("wb") as out:
        out.write(_gzip_member(lines[0] + b'{"run_id": "r1", "type": "tool_call", "output": "'))
        for _ in range(1024):
            out.write(mebibyte)
        out.write(_gzip_member(b'"}\n' + b"".join(lines[1:])))
    assert path.stat().st_size < 2_000_000
    script = (
        "import sys\nfrom steptrace.cli import main\n"
        "code = main(['runs', '--json', '--log', sys.argv[1]])\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent (pytest, large
        # late in the suite) across exec; VmHWM is this process's own peak.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print('RSS', int(hwm) // 1024, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    [run] = json.loads(done.stdout)
    # Every other record read: the run record (the last line) and the one tool call.
    assert (run["run_id"], run["stop_reason"], run["tool_call_count"], run["llm_call_count"]) == (
        "r1",
        "error",
        1,
        1,
    )
    assert (
        "skipped 1 line longer than 64 MiB (line 2; STEPTRACE_MAX_LINE_BYTES raises the limit)" in done.stderr
    )
    peak_mib = int(done.stderr.split("RSS ")[1].split()[0])
    assert peak_mib < 600, done.stderr  # the 64 MiB limit and the interpreter, never the line


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
@pytest.mark.parametrize("where", ["first", "middle", "last-no-newline"])
def test_lines_over_the_stated_limit_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], gz: bool, where: str
) -> None:
    """$STEPTRACE_MAX_LINE_BYTES: a longer line anywhere is counted by its number; the rest is read."""
    monkeypatch.setenv("STEPTRACE_MAX_LINE_BYTES", "4096")
    lines = _run_lines()
    long_line = json.dumps({"run_id": "r1", "type": "tool_call", "output": "x" * 50_000}).encode()
    at = {"first": 0, "middle": 2, "last-no-newline": len(lines)}[where]
    body = (
        b"".join(lines[:at])
        + long_line
        + (b"" if where == "last-no-newline" else b"\n")
        + b"".join(lines[at:])
    )
    path = tmp_path / ("steps.jsonl.gz" if gz else "steps.jsonl")
    path.write_bytes(gzip.compress(body) if gz else body)
    assert main(["replay", "r1", "--json", "--log", str(path)]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == len(lines)
    assert f"skipped 1 line longer than 4,096 bytes (line {at + 1}; " in err


def test_a_bad_line_limit_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """STEPTRACE_MAX_LINE_BYTES=64MB: one clear line and exit 2, not a silent default."""
    path = tmp_path / "steps.jsonl"
    path.write_bytes(b"".join(_run_lines()))
    monkeypatch.setenv("STEPTRACE_MAX_LINE_BYTES", "64MB")
    assert main(["runs", "--log", str(path)]) == 2
    assert "STEPTRACE_MAX_LINE_BYTES='64MB': give a number of bytes" in capsys.readouterr().err


# --- OTLP JSON: one bad span ----------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [1e30, "99999999999999999999999", "soon", -1e30])
def test_otlp_span_with_out_of_range_timestamp_is_skipped_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], timestamp: Any
) -> None:
    """One span's start time out of range: the whole OTLP file was unreadable (exit 2 or 3)."""
    spans = make_run("r1", "tool_error")
    path = write_otlp(tmp_path / "traces.json", spans)
    documents = [json.loads(line) for line in path.read_text().splitlines()]
    bad = documents[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    bad["startTimeUnixNano"] = timestamp
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    assert main(["replay", "r1", "--json", "--log", str(path)]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == len(spans) - 1
    assert "skipped 1 unreadable OTLP span" in err


# --- captured log lines held by two files -------------------------------------------------------


def _log_line(run_id: str, message: str, ts: float) -> bytes:
    record = {
        "run_id": run_id,
        "step": None,
        "type": "log",
        "name": "agent",
        "trace_id": "f" * 32,
        "span_id": "a" * 16,
        "ts": ts,
        "agent_step": 1,
        "level": "WARNING",
        "levelno": 30,
        "logger": "agent",
        "message": message,
    }
    return json.dumps(record).encode() + b"\n"


def test_log_lines_in_the_step_log_and_its_archive_show_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archived copy holding the same log lines: replay showed each captured line twice."""
    lines = _run_lines()
    ts = json.loads(lines[0])["ts"]
    logs = [
        _log_line("r1", "retrying", ts),
        _log_line("r1", "retrying", ts),
        _log_line("r1", "gave up", ts + 0.1),
    ]
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "steps.jsonl").write_bytes(b"".join(lines + logs))
    # The archive: the same records, one repeated line shown once there (a partial copy).
    (directory / "steps.1.jsonl.gz").write_bytes(gzip.compress(b"".join(lines + logs[1:])))
    assert main(["replay", "r1", "--log", str(directory)]) == 0
    out = capsys.readouterr().out
    assert out.count("retrying") == 2  # logged twice in one file: both kept
    assert out.count("gave up") == 1


# --- ids of the wrong type ----------------------------------------------------------------------


@pytest.mark.parametrize("trace_id", [["a", "b"], {"x": 1}, 7])
@pytest.mark.parametrize("files", [1, 2])
@pytest.mark.parametrize("command", ["runs", "summary", "debug", "replay", "view", "report"])
def test_record_whose_trace_id_is_a_list_or_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trace_id: Any, files: int, command: str
) -> None:
    """A hand-edited record with a list trace_id: debug, replay, view and report said "internal error"."""
    rows = records(make_run("r1", "tool_error"))
    rows[1]["trace_id"] = trace_id
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    logs = ["--log", str(path)]
    if files == 2:
        copy = tmp_path / "copy.jsonl"
        copy.write_bytes(b"".join(_run_lines("r2")))  # two files: the cross-file de-duplication path
        logs += ["--log", str(copy)]
    argv = {
        "runs": ["runs"],
        "summary": ["summary", "r1"],
        "debug": ["debug", "r1"],
        "replay": ["replay", "r1", "--json"],
        "view": ["view", "r1", "-o", str(tmp_path / "r1.html")],
        "report": ["report", "-o", str(tmp_path / "report.html")],
    }[command]
    assert main([*argv, *logs]) == 0, capsys.readouterr().err
    out, _err = capsys.readouterr()
    if command == "replay":
        assert len(json.loads(out)) == len(rows)


# --- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5"])
def test_slo_ms_must_be_a_positive_finite_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """--slo-ms nan was accepted (and compared false with every duration)."""
    path = tmp_path / "steps.jsonl"
    path.write_bytes(b"".join(_run_lines()))
    assert main(["debug", "r1", f"--slo-ms={value}", "--log", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--slo-ms" in err and "positive number of milliseconds" in err


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """One run recorded for rerun by a separate process; returns its run id prefix."""
    monkeypatch.setenv("STEPTRACE_JSONL_PATH", str(tmp_path / "logs" / "steps.jsonl"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    environment = {**os.environ, "STEPTRACE_RECORD_FOR_RERUN": "true"}
    subprocess.run([sys.executable, AGENT], env=environment, check=True, capture_output=True, timeout=60)
    (path,) = (tmp_path / "logs" / "rerun").glob("*.jsonl")
    return path.stem[:8]


@pytest.mark.parametrize("where", ["missing/dir/x.jsonl", "a-directory"])
def test_export_to_an_unwritable_path_is_a_usage_error(
    recorded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """export -o missing/dir/x.jsonl or -o SOME_DIR: "internal error ... a bug in steptrace" (exit 3)."""
    (tmp_path / "a-directory").mkdir()
    output = tmp_path / where
    assert main(["export", recorded, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{output}: cannot write" in err and "internal error" not in err
    assert main(["export", recorded, "-o", str(tmp_path / "ok.jsonl")]) == 0  # nothing else changed
