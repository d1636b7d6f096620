"""No file grows without bound: the step log and the spill file rotate to gzip, read as one log."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import steptrace
from steptrace._config import reset_for_tests
from steptrace._errors import ConfigError
from steptrace.analysis import load
from steptrace.cli import main as cli_main
from steptrace.export.rotation import RotatingFile, RotationSettings, rotated_files


@steptrace.tool
def fetch(index: int) -> str:
    return f"document {index} " + "x" * 200


def _agent(runs: int, calls: int) -> None:
    for _ in range(runs):
        with steptrace.agent_run(agent="indexer"), steptrace.agent_step():
            for index in range(calls):
                fetch(index)


def _lines(files: list[Path]) -> list[dict[str, object]]:
    """Every line of every file, parsed: a torn or corrupt line fails the test."""
    records = []
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as lines:  # type: ignore[operator]
            for line in lines:
                assert line.endswith("\n"), f"torn line in {path.name}"
                records.append(json.loads(line))
    return records


@pytest.fixture(autouse=True)
def _clean_configuration() -> object:
    yield
    reset_for_tests()


def test_step_log_rotates_at_the_threshold_and_commands_read_every_record_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long-running service's step log used to grow forever; now it rotates to .jsonl.gz files."""
    log = tmp_path / "logs" / "steps.jsonl"
    telemetry = steptrace.configure("svc", jsonl_path=log, jsonl_max_bytes=50_000, jsonl_backups=100)
    _agent(runs=20, calls=30)  # 20 x 32 records of ~700 bytes: ~450 kB, about 9 rotations
    telemetry.shutdown()
    assert telemetry.jsonl_path == log
    files = rotated_files(log)
    backups = [p for p in files if p.name.endswith(".jsonl.gz")]
    assert len(backups) >= 8 and files[-1] == log
    assert all(p.name.startswith("steps.") for p in backups)
    assert [p for p in files if p not in backups] == [log]  # all compressed by shutdown
    assert all(p.stat().st_size <= 50_000 for p in [log]) and log.stat().st_mode & 0o777 == 0o600
    records = _lines(files)
    assert len(records) == 20 * 32
    assert len({(r["trace_id"], r["span_id"]) for r in records}) == 20 * 32

    runs = load(log.parent)  # the directory, as `steptrace runs` reads it by default
    assert len(runs) == 20
    assert {run.tool_call_count for run in runs} == {30}
    assert sum(run.record_count for run in runs) == 20 * 32
    assert cli_main(["runs", "--log", str(log.parent), "--json", "--limit", "0"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 20 and {run["tool_call_count"] for run in listed} == {30}


def test_rotation_keeps_only_the_configured_backups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STEPTRACE_JSONL_MAX_BYTES / STEPTRACE_JSONL_BACKUPS bound the disk: N gzips plus the live file."""
    log = tmp_path / "steps.jsonl"
    monkeypatch.setenv("STEPTRACE_JSONL_MAX_BYTES", "20KiB")
    monkeypatch.setenv("STEPTRACE_JSONL_BACKUPS", "2")
    telemetry = steptrace.configure("svc", jsonl_path=log)
    _agent(runs=10, calls=30)
    telemetry.shutdown()
    files = rotated_files(log)
    assert [p.name.endswith(".jsonl.gz") for p in files] == [True, True, False]
    assert sum(p.stat().st_size for p in files) < 3 * 20 * 1024
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in files] + ["steps.jsonl.lock"])


def test_spill_file_rotates_during_a_long_outage_and_counts_once_beside_the_step_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the collector down, otlp-spill.jsonl grew without bound; now it rotates like the step
    log, and `runs` over the directory still counts each span once (step log + spill set)."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the collector is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    log = tmp_path / "logs" / "steps.jsonl"
    telemetry = steptrace.configure(
        "svc",
        otlp_endpoint=f"http://127.0.0.1:{port}",
        jsonl_path=log,
        jsonl_max_bytes=40_000,
        jsonl_backups=100,
    )
    _agent(runs=20, calls=30)
    telemetry.shutdown()
    spill = log.parent / "otlp-spill.jsonl"
    files = rotated_files(spill)
    backups = [p for p in files if p.name.endswith(".jsonl.gz")]
    assert len(backups) >= 5, [p.name for p in files]
    assert all(p.name.startswith("otlp-spill.") for p in backups)
    assert spill.stat().st_size <= 40_000 and spill.stat().st_mode & 0o777 == 0o600
    spilled = _lines(files)
    assert len({(r["trace_id"], r["span_id"]) for r in spilled}) == len(spilled) == 20 * 32

    runs = load(log.parent)  # the step log's set and the spill set hold the same spans
    assert len(runs) == 20 and {run.tool_call_count for run in runs} == {30}
    assert sum(run.record_count for run in runs) == 20 * 32
    capsys.readouterr()
    assert cli_main(["runs", "--log", str(log.parent), "--json", "--limit", "0"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 20 and {run["tool_call_count"] for run in listed} == {30}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STEPTRACE_JSONL_MAX_BYTES", "lots"),
        ("STEPTRACE_JSONL_MAX_BYTES", "-5"),
        ("STEPTRACE_JSONL_MAX_BYTES", "10 parsecs"),
        ("STEPTRACE_JSONL_BACKUPS", "many"),
        ("STEPTRACE_JSONL_BACKUPS", "-1"),
    ],
)
def test_bad_rotation_settings_fail_at_configure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A typo in the rotation variables is a ConfigError at start-up naming the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        steptrace.configure("svc", jsonl_path=tmp_path / "steps.jsonl")


def test_bad_rotation_arguments_fail_at_configure(tmp_path: Path) -> None:
    """configure(jsonl_max_bytes=-1) or a non-number is refused, like every other setting."""
    with pytest.raises(ConfigError, match="jsonl_max_bytes"):
        steptrace.configure("svc", jsonl_path=tmp_path / "s.jsonl", jsonl_max_bytes=-1)
    with pytest.raises(ConfigError, match="jsonl_backups"):
        steptrace.configure("svc", jsonl_path=tmp_path / "s.jsonl", jsonl_backups="3")  # type: ignore[arg-type]


def test_defaults_are_100_mib_and_5_backups(tmp_path: Path) -> None:
    """Without settings the step log still rotates: 100 MiB x 5 compressed backups."""
    telemetry = steptrace.configure("svc", jsonl_path=tmp_path / "steps.jsonl")
    assert telemetry.rotation == RotationSettings(max_bytes=100 * 1024 * 1024, backups=5)


WRITER = textwrap.dedent(
    """
    import sys
    import steptrace

    @steptrace.tool
    def fetch(index, worker):
        return f"{worker}:{index} " + "y" * (index % 7) * 40

    steptrace.configure("worker", jsonl_path=sys.argv[1])
    worker = sys.argv[2]
    for run in range(int(sys.argv[3])):
        with steptrace.agent_run(agent=worker), steptrace.agent_step():
            for index in range(25):
                fetch(index, worker)
    """
)


@pytest.mark.torture
def test_three_processes_appending_across_rotations_lose_and_tear_nothing(tmp_path: Path) -> None:
    """Three workers share one rotating step log: every record of every file parses, none is lost."""
    log = tmp_path / "steps.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_"))}
    env.update(STEPTRACE_JSONL_MAX_BYTES="64KiB", STEPTRACE_JSONL_BACKUPS="1000")
    runs = 40
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(log), f"w{n}", str(runs)], env=env)
        for n in range(3)
    ]
    assert [w.wait(timeout=240) for w in workers] == [0, 0, 0]
    RotatingFile(log, max_bytes=64 * 1024, backups=1000).close()  # finishes any pending compression
    files = rotated_files(log)
    assert len(files) > 20  # ~2 MB in 64 KiB files: many switches while all three write
    assert all(p.name.endswith(".jsonl.gz") for p in files[:-1])
    records = _lines(files)
    expected = 3 * runs * 27
    assert len(records) == expected
    assert len({(r["trace_id"], r["span_id"]) for r in records}) == expected
    tools = [r for r in records if r["type"] == "tool_call"]
    assert len({r["output"] for r in tools}) == 3 * 25  # ids repeat per run; content per worker
    assert sum(run.record_count for run in load(tmp_path)) == expected
