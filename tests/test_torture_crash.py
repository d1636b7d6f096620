"""Torture: a writer killed with SIGKILL, a full disk, a read-only log directory.

The writer runs as a separate process (tests/torture_writer.py), never forked inside pytest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steptrace import read_steps
from steptrace._jsonl import encode_record
from torture_checks import check_log, report, strict_loads

pytestmark = pytest.mark.torture

WRITER = Path(__file__).with_name("torture_writer.py")
CANNOT_WRITE = "cannot write the step log"


def _writer(mode: str, path: Path, *options: str, without_privileges: bool = False) -> dict[str, Any]:
    """Run the writer to completion; its JSON summary.

    ``without_privileges``: as root, run it with no capabilities (``setpriv``), so permission
    bits bind it as they bind any user.
    """
    prefix: list[str] = []
    if without_privileges and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root without setpriv: permission bits cannot be made to bind")
        prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all"]
    done = subprocess.run(
        [*prefix, sys.executable, str(WRITER), mode, str(path), *options],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_sigkill_mid_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """A writer killed with SIGKILL: a record of a call that returned is missing, or a line is torn."""
    path = tmp_path / "steps.jsonl"
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, str(WRITER), "forever", str(path), "--size", "20000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked = 0
    for line in child.stdout:
        acked = int(line.split()[1])
        if acked >= 2_000:
            break
    child.send_signal(signal.SIGKILL)
    remaining, _ = child.communicate(timeout=30)
    for line in remaining.splitlines():
        acked = int(line.split()[1])
    assert child.returncode == -signal.SIGKILL
    seconds = time.perf_counter() - started

    log = check_log(path, allow_torn_tail=True, complete_runs=False)
    tools = log.by_type("tool_call")
    # Every call that returned before the kill has its record, whole (export is synchronous).
    assert len(tools) >= acked
    assert [r["step"] for r in tools] == list(range(1, len(tools) + 1))
    report(
        "sigkill",
        acknowledged_calls=acked,
        records_written=len(tools),
        records_lost=max(0, acked - len(tools)),
        torn_tail_bytes=len(log.torn_tail),
        seconds=round(seconds, 2),
    )


def _torn_copy(record: dict[str, Any]) -> bytes:
    line = encode_record(record)
    return line[: len(line) // 2]  # what a writer killed inside write() can leave


def test_reader_skips_a_torn_line_and_reports_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A log ending in half a record: read_steps raises, drops good records, or stays silent."""
    path = tmp_path / "steps.jsonl"
    _writer("runs", path, "--runs", "2", "--calls", "20")
    whole = list(read_steps(path))
    lines_before = path.read_bytes().count(b"\n")
    with path.open("ab") as log:
        log.write(_torn_copy(whole[3]))
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        after = list(read_steps(path))
    assert after == whole
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"steptrace: {path}:{lines_before + 1}: skipped a torn last line"]


def test_restarted_writer_after_a_torn_line_loses_no_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new process appending after a torn line: its first record is swallowed by the torn one."""
    path = tmp_path / "steps.jsonl"
    _writer("runs", path, "--runs", "1", "--calls", "10")
    first = list(read_steps(path))
    with path.open("ab") as log:
        log.write(_torn_copy(first[0]))
    _writer("runs", path, "--runs", "1", "--calls", "10")
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        records = list(read_steps(path))
    assert len(records) == 2 * 11
    assert len(caplog.records) == 1 and "torn" in caplog.records[0].getMessage()


def _check_disk_full(summary: dict[str, Any], path: Path, case: str) -> None:
    assert summary["tool_calls"] == 300  # the application carried on, results unchanged
    assert summary["flushed"] is False  # force_flush reports the failed exports
    assert summary["direct_export"] == "FAILURE"
    assert summary["records_failed"] > 0
    failures = [w for w in summary["warnings"] if CANNOT_WRITE in w]
    assert len(failures) == 2, summary["warnings"]  # one per exporter, not one per record
    log = check_log(path, allow_torn_tail=True, complete_runs=False)
    assert 0 < len(log.records) < 300
    report(
        case,
        tool_calls=summary["tool_calls"],
        records_written=len(log.records),
        records_refused_by_disk=summary["tool_calls"] + 3 - len(log.records),
        warnings=len(failures),
        seconds=round(summary["seconds"], 2),
    )


def test_full_disk_by_file_size_limit(tmp_path: Path) -> None:
    """RLIMIT_FSIZE reached mid-run: the app crashes, warns per record, or force_flush says True."""
    path = tmp_path / "steps.jsonl"
    summary = _writer(
        "disk-full", path, "--runs", "3", "--calls", "100", "--size", "1000", "--fsize", "65536"
    )
    assert path.stat().st_size <= 65536
    _check_disk_full(summary, path, "disk-full-rlimit")


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount rights; skipped elsewhere, the rlimit case remains)."""
    mount_point = Path(tempfile.mkdtemp(prefix="steptrace-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        mount_point.rmdir()
        pytest.skip("cannot mount a tmpfs here; the RLIMIT_FSIZE test covers a full disk")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
        mount_point.rmdir()


def test_full_disk_on_a_small_tmpfs(small_tmpfs: Path) -> None:
    """ENOSPC on a real full filesystem: the app crashes, warns per record, or force_flush says True."""
    path = small_tmpfs / "steps.jsonl"
    summary = _writer("disk-full", path, "--runs", "3", "--calls", "100", "--size", "1000")
    _check_disk_full(summary, path, "disk-full-tmpfs")


def test_read_only_directory_after_rotation(tmp_path: Path) -> None:
    """Log rotated away while its directory is read-only: the app crashes or the failure is silent.

    Root ignores permission bits, so as root the writer runs without capabilities (setpriv);
    the directory really refuses it, as it refuses any user.
    """
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "steps.jsonl"
    summary = _writer("read-only", path, "--size", "300", without_privileges=True)

    assert summary["tool_calls"] == 50
    assert summary["flushed_while_read_only"] is False
    failures = [w for w in summary["warnings_while_read_only"] if CANNOT_WRITE in w]
    assert len(failures) == 1, summary["warnings_while_read_only"]
    assert "Permission denied" in failures[0]
    assert any("writable again" in w for w in summary["warnings"])
    assert summary["flushed_after"] is True
    # Start-up is different: configure() refuses an unwritable log at once, with a clear error.
    assert summary["configure_read_only"].startswith("ConfigError: cannot write the step log")
    rotated = check_log(directory / "steps.jsonl.1", complete_runs=False)
    current = check_log(path)
    assert len(rotated.records) == 2 * 11 and len(current.records) == 11
    report(
        "read-only-directory",
        tool_calls=summary["tool_calls"],
        records_written=len(rotated.records) + len(current.records),
        records_refused=2 * 11,
        warnings=len(failures),
        seconds=round(summary["seconds"], 2),
    )


def test_lone_surrogate_in_a_record_still_gives_strict_json() -> None:
    """A lone surrogate in a record: the line is not valid UTF-8 JSON, or half a line parses."""
    record = {"run_id": "r", "step": 1, "type": "tool_call", "output": "\ud800 nan"}
    line = encode_record(record)
    assert strict_loads(line.rstrip(b"\n"))["output"] == "? nan"
    with pytest.raises(ValueError):
        strict_loads(_torn_copy(record))
