"""Several processes, one log: whatever each writer's settings, and whoever reads it meanwhile,
no record is lost, torn into another or counted twice."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from steptrace._config import reset_for_tests
from steptrace.export.rotation import RotatingFile, rotated_files

# A worker process: waits for ``go``, then writes RUNS runs of 25 tool calls (27 records each) to
# the step log, rotating past MAX_BYTES (0: never).
WRITER = textwrap.dedent(
    """
    import os, sys, time
    import steptrace

    log, worker, runs, max_bytes, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

    @steptrace.tool
    def fetch(index, worker):
        return f"{worker}:{index} " + "y" * (index % 7) * 40

    steptrace.configure(worker, jsonl_path=log, jsonl_max_bytes=max_bytes, jsonl_backups=100000)
    while not os.path.exists(go):
        time.sleep(0.001)
    for run in range(runs):
        with steptrace.agent_run(agent=worker), steptrace.agent_step():
            for index in range(25):
                fetch(index, worker)
    """
)


@pytest.fixture(autouse=True)
def _clean_configuration() -> object:
    yield
    reset_for_tests()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_"))}


def _records(files: list[Path]) -> list[dict[str, object]]:
    """Every line of every file, parsed: a torn or corrupt line fails the test."""
    records = []
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as lines:  # type: ignore[operator]
            for line in lines:
                assert line.endswith("\n"), f"torn line in {path.name}"
                records.append(json.loads(line))
    return records


def _worker(record: dict[str, object]) -> object:
    """Which worker wrote ``record``: a tool call's result starts with it, the others name it."""
    output = record.get("output")
    return output.split(":")[0] if isinstance(output, str) else record.get("agent")


def _write_together(log: Path, settings: dict[str, str], runs: int) -> None:
    """One worker process per entry of ``settings`` (name -> jsonl_max_bytes), started together."""
    go = log.parent / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log), name, str(runs), max_bytes, str(go)], env=_env()
        )
        for name, max_bytes in settings.items()
    ]
    time.sleep(0.5)  # both configured (most of the time): then they start at once
    go.touch()
    assert [w.wait(timeout=240) for w in workers] == [0] * len(workers)


def _assert_every_record_once(log: Path, workers: list[str], runs: int) -> list[Path]:
    RotatingFile(log, max_bytes=1, backups=100000).close()  # finishes any pending compression
    files = rotated_files(log)
    records = _records(files)
    for worker in workers:
        mine = [r for r in records if _worker(r) == worker]
        ids = {(r["trace_id"], r["span_id"]) for r in mine}
        assert len(mine) == len(ids) == runs * 27, (worker, len(mine), len(ids))
    return files


@pytest.mark.torture
@pytest.mark.parametrize(
    "settings",
    [
        {"rotating": "16KiB", "never": "0"},
        {"small": "8KiB", "large": "64KiB", "never": "0"},
    ],
    ids=["rotating+off", "8KiB+64KiB+off"],
)
def test_a_writer_with_rotation_off_loses_nothing_beside_one_that_rotates(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    """A process with jsonl_max_bytes=0 beside one rotating at 16 KiB lost most of its records: it
    kept writing into the renamed file, which the other then compressed and removed."""
    log = tmp_path / "steps.jsonl"
    runs = 100  # 2,700 records each, about 0.8 MB each: dozens of rotations while all write
    _write_together(log, settings, runs)
    files = _assert_every_record_once(log, list(settings), runs)
    assert len(files) > 20


# A writer from before every writer followed the rotation protocol (steptrace with rotation off
# did this): one O_APPEND write per record, the path re-checked at most once a second.
OLD_WRITER = textwrap.dedent(
    """
    import json, os, sys, time

    log, count, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def open_log():
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stat = os.fstat(fd)
        return fd, (stat.st_dev, stat.st_ino)

    fd, inode = open_log()
    next_check = 0.0
    while not os.path.exists(go):
        time.sleep(0.001)
    for index in range(count):
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 1.0
            try:
                stat = os.stat(log)
                current = (stat.st_dev, stat.st_ino)
            except OSError:
                current = None
            if current != inode:
                os.close(fd)
                fd, inode = open_log()
        record = {"run_id": "old-deploy", "type": "tool_call", "trace_id": "0" * 32,
                  "span_id": format(index, "016x"), "status": "ok", "output": "x" * 300}
        os.write(fd, (json.dumps(record) + "\\n").encode())
        time.sleep(0.0005)
    """
)


@pytest.mark.torture
def test_an_older_writer_with_rotation_off_loses_nothing_beside_one_that_rotates(tmp_path: Path) -> None:
    """A fleet upgraded one process at a time: an older non-rotating writer keeps its descriptor
    for up to a second after another process renames the file; the renamed file must not be
    compressed and removed while such a writer may still append to it."""
    log = tmp_path / "steps.jsonl"
    go = tmp_path / "go"
    count = 3000
    old = subprocess.Popen([sys.executable, "-c", OLD_WRITER, str(log), str(count), str(go)], env=_env())
    new = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), "rotating", "100", "16KiB", str(go)], env=_env()
    )
    time.sleep(0.5)
    go.touch()
    assert [new.wait(timeout=120), old.wait(timeout=120)] == [0, 0]
    files = _assert_every_record_once(log, ["rotating"], 100)
    assert len(files) > 20
    olds = [r["span_id"] for r in _records(files) if r["run_id"] == "old-deploy"]
    assert len(olds) == len(set(olds)) == count, f"{count - len(set(olds))} of {count} records lost"


def _run_writer(log: Path, worker: str, runs: int, max_bytes: str = "0") -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    go = log.parent / "go"
    go.touch()
    command = [sys.executable, "-c", WRITER, str(log), worker, str(runs), max_bytes, str(go)]
    subprocess.run(command, env=_env(), check=True, timeout=120)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "steptrace", *args]
    return subprocess.run(command, check=False, env=_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("separators", ["steptrace", "spaced"])
def test_a_record_appended_after_a_torn_line_counts_in_every_command(tmp_path: Path, separators: str) -> None:
    """A writer killed mid-line, then a new process appends on the same line: read_steps recovered
    that record, `steptrace runs` and load() dropped it (the run lost its run record)."""
    from steptrace import read_steps
    from steptrace.analysis import load

    log = tmp_path / "steps.jsonl"
    _run_writer(log, "first", 1)
    whole = log.read_bytes().splitlines(keepends=True)
    torn = whole[5][: len(whole[5]) // 2]
    if separators == "spaced":  # another JSON writer's spelling: `{"run_id": "...", ...}`
        torn = json.dumps(json.loads(whole[5])).encode()[:60]
    with log.open("ab") as file:
        file.write(torn)  # what a writer killed inside write() leaves
    _run_writer(log, "second", 2)
    if separators == "spaced":  # the record after the fragment, spelt the other way too
        lines = log.read_bytes().split(b"\n")
        lines[len(whole)] = torn + json.dumps(json.loads(lines[len(whole)][len(torn) :])).encode()
        log.write_bytes(b"\n".join(lines))

    expected = 3 * 27  # the torn record's whole copy is on line 6
    steps = list(read_steps(log))
    assert len(steps) == expected
    recovered = steps[len(whole)]  # the second process's first record, after the fragment
    runs = load(log)
    assert len(runs) == 3 and sum(run.record_count for run in runs) == expected
    assert all(run.total_steps == 1 and run.tool_call_count == 25 for run in runs)
    [issue] = runs.issues
    assert issue.torn_records == 1 and issue.corrupt_lines == 0 and not issue.torn_last_line
    assert f"line {len(whole) + 1}" in issue.message()

    listed = _cli("runs", "--log", str(log), "--json")
    assert listed.returncode == 0, listed.stderr
    shown = [(run["tool_call_count"], run["complete"]) for run in json.loads(listed.stdout)]
    assert shown == [(25, True)] * 3
    assert "torn" in listed.stderr
    summary = _cli("summary", "--log", str(log), "--json", str(recovered["run_id"]))
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["tools_used"] == {"fetch": 25}
    replay = _cli("replay", "--log", str(log), "--json", str(recovered["run_id"]))
    assert replay.returncode == 0, replay.stderr
    assert recovered["span_id"] in replay.stdout


# A service writing runs of 25 tool calls (about 16 KB) until ``stop`` exists, some 20 runs a
# second, rotating at MAX_BYTES.
LIVE_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import steptrace

    log, max_bytes, backups, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    @steptrace.tool
    def fetch(index):
        return f"{index} " + "y" * (index % 7) * 40

    steptrace.configure("live", jsonl_path=log, jsonl_max_bytes=max_bytes, jsonl_backups=backups)
    while not os.path.exists(stop):
        with steptrace.agent_run(agent="live"), steptrace.agent_step():
            for index in range(25):
                fetch(index)
        time.sleep(0.05)
    """
)


@pytest.mark.torture
@pytest.mark.parametrize("backups", [200, 2])
def test_commands_read_a_directory_while_the_service_rotates_it(tmp_path: Path, backups: int) -> None:
    """`steptrace runs` on a live log directory failed in 77 of 78 tries ("cannot read ... No such
    file or directory"): a rotated file was compressed and removed between listing and reading."""
    from steptrace.analysis import load

    log = tmp_path / "logs" / "steps.jsonl"
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", LIVE_WRITER, str(log), "16KiB", str(backups), str(stop)], env=_env()
    )
    try:
        deadline = time.monotonic() + 60
        while len(rotated_files(log)) < 3:
            assert time.monotonic() < deadline and writer.poll() is None
            time.sleep(0.05)
        for attempt in range(5):
            listed = _cli("runs", "--log", str(log.parent), "--json", "--limit", "0")
            assert listed.returncode == 0, (attempt, listed.stderr)
            shown = json.loads(listed.stdout)
            assert shown and all(run["tool_call_count"] <= 25 for run in shown)
            assert "duplicate" not in listed.stderr
            if backups > 2:  # the newest run listed a moment ago is still there
                summary = _cli("summary", "--log", str(log.parent), "--json", shown[-1]["run_id"])
                assert summary.returncode == 0, (attempt, summary.stderr)
                assert json.loads(summary.stdout)["tool_call_count"] <= 25
            for _ in range(3):
                runs = load(log.parent)
                assert len(runs) > 0
                assert all(run.record_count <= 27 and run.tool_call_count <= 25 for run in runs)
                assert not any(issue.duplicate_records for issue in runs.issues)
    finally:
        stop.touch()
        assert writer.wait(timeout=60) == 0


# A worker thread keeps making tool calls in an open run while the main thread calls shutdown()
# with the collector down (nothing listens on port 9); the worker's run ends after shutdown()
# returns, as a thread finishing while the process exits does. The SDK's in-memory exporter,
# beside steptrace on the same provider, lists every span that ended.
ENDING_DURING_SHUTDOWN = textwrap.dedent(
    """
    import json, logging, sys, threading, time
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import steptrace

    warnings = []
    logging.getLogger("steptrace").addHandler(logging.Handler())
    logging.getLogger("steptrace").handlers[-1].emit = lambda record: warnings.append(record.getMessage())
    seen = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(seen))
    telemetry = steptrace.configure(
        "closing",
        jsonl_path=sys.argv[1],
        otlp_endpoint=sys.argv[2] or None,
        otlp_protocol="http/protobuf",
        tracer_provider=provider,
        meter_provider=MeterProvider(),
    )

    @steptrace.tool
    def fetch(index):
        time.sleep(0.0002)
        return index

    running, stop = threading.Event(), threading.Event()

    def worker():
        with steptrace.agent_run(agent="worker"), steptrace.agent_step():
            index = 0
            while not stop.is_set():
                fetch(index)
                index += 1
                running.set()

    thread = threading.Thread(target=worker)
    thread.start()
    running.wait()
    time.sleep(0.1)
    telemetry.shutdown()
    stop.set()
    thread.join()
    print(json.dumps({
        "ended": [
            format(span.context.span_id, "016x") for span in seen.get_finished_spans()
            if span.attributes.get("steptrace.run_id")
        ],
        "warnings": warnings,
    }))
    """
)


@pytest.mark.parametrize("collector", ["down", "none"])
def test_spans_ending_while_shutdown_runs_are_written(tmp_path: Path, collector: str) -> None:
    """A worker thread finishing its run while the process shuts down steptrace (the collector
    down): the spans it ended reached no exporter, no spill file and no counter."""
    from steptrace import read_steps

    log = tmp_path / "steps.jsonl"
    endpoint = "http://127.0.0.1:9" if collector == "down" else ""
    result = subprocess.run(
        [sys.executable, "-c", ENDING_DURING_SHUTDOWN, str(log), endpoint],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    written = {record["span_id"] for record in read_steps(log)}
    spill = tmp_path / "otlp-spill.jsonl"
    spilled = {record["span_id"] for record in read_steps(spill)} if spill.exists() else set()
    ended = outcome["ended"]
    assert len(ended) > 10 and len(set(ended)) == len(ended)
    assert set(ended) <= written, f"{len(set(ended) - written)} of {len(ended)} spans not in the step log"
    if collector == "down":  # and OTLP's share: each one spilled, as promised
        assert set(ended) <= spilled, f"{len(set(ended) - spilled)} of {len(ended)} spans not spilled"


def test_the_live_file_rotated_while_the_directory_is_read_still_counts(tmp_path: Path) -> None:
    """`steptrace runs` lists the directory, reads the backups, then the live file: if the
    service rotated it meanwhile, the renamed file was never read and its runs were missing."""
    from steptrace.analysis import load

    log = tmp_path / "logs" / "steps.jsonl"
    _run_writer(log, "first", 3, max_bytes="16KiB")  # one run a file, more or less
    RotatingFile(log, max_bytes=16 * 1024, backups=100).close()  # compress the backups
    _run_writer(log, "second", 1, max_bytes="0")  # a run whose records are all in the live file
    expected = {run.run_id for run in load(log.parent)}
    assert len(expected) == 4

    service = RotatingFile(log, max_bytes=16 * 1024, backups=100)
    rotated: list[int] = []

    def rotate_once(position: int) -> None:  # called by load() as it reads: the service rotates
        if not rotated:
            rotated.append(position)
            service.append(b"x" * 17 * 1024 + b"\n")  # past the limit: rename, then a new file

    try:
        runs = load(log.parent, progress=rotate_once)
    finally:
        service.close()
    assert rotated and service.rotations == 1
    assert {run.run_id for run in runs} == expected
    assert not runs.issues or all(not issue.duplicate_records for issue in runs.issues)


def test_a_record_written_to_a_file_just_renamed_is_kept_until_its_writer_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that read the rotation counter just before another process renamed the file
    appends to the renamed file: that file must not be compressed and removed under it."""
    from steptrace.export import rotation

    monkeypatch.setattr(rotation, "_QUIET_BEFORE_COMPRESS_S", 0.0)
    log = tmp_path / "steps.jsonl"
    never = RotatingFile(log, max_bytes=0)  # rotation off, as another process's
    rotating = RotatingFile(log, max_bytes=8192, backups=100)
    try:
        never.append(b'{"n":0}\n')
        stale = never._seen_counter
        rotating.append(b"x" * 5000 + b"\n")
        rotating.append(b"y" * 5000 + b"\n")  # past the limit: the file is renamed
        assert rotating.rotations == 1
        [renamed] = [p for p in rotated_files(log) if p != log]
        assert rotating.compress_pending() == 0.0 and renamed.exists()  # held by `never`
        # The write of a writer that saw the counter a moment before the rename:
        never._seen_counter = stale
        counter = never._counter
        never._counter = None
        never.append(b'{"n":1}\n')
        never._counter = counter
        assert renamed.read_bytes().endswith(b'{"n":1}\n')
        never.append(b'{"n":2}\n')  # sees the counter: reopens the path, lets the old file go
        assert log.read_bytes().endswith(b'{"n":2}\n')
        rotating.compress_pending()
        assert not renamed.exists()
        lines = b"".join(
            gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            for p in rotated_files(log)
        ).splitlines()
        assert [line for line in lines if line.startswith(b'{"n"')] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    finally:
        never.close()
        rotating.close()


def test_an_append_in_the_steady_state_is_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each record cost flock, fstat, write and unlock (the rotation protocol): four system calls
    per record with rotation off too; the counter is now read from memory."""
    from steptrace.export import rotation

    log = tmp_path / "steps.jsonl"
    files = [RotatingFile(log, max_bytes=0), RotatingFile(log, max_bytes=100 * 1024 * 1024)]
    calls: list[str] = []
    for name in ("flock", "fstat", "stat", "open", "pread", "lseek"):
        module = rotation.fcntl if name == "flock" else rotation.os
        real = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k)
        )
    real_write = os.write
    monkeypatch.setattr(rotation.os, "write", lambda fd, data: calls.append("write") or real_write(fd, data))
    try:
        for writer in files:
            writer._next_check = time.monotonic() + 60  # the once-a-second path check aside
            for index in range(1000):
                writer.append(b'{"n":%d}\n' % index)
        assert calls == ["write"] * 2000
        files[1].append(b"\n")
    finally:
        for writer in files:
            writer.close()
    assert log.read_bytes().count(b"\n") == 2001


def test_reading_the_counter_again_keeps_a_rotations_lock(tmp_path: Path) -> None:
    """A file moved without the counter (by hand, or by a writer of the previous protocol) makes
    a writer map the counter again; doing so inside a rotation released the lock file's flock the
    rotation held, letting another process rotate the same file at the same time."""
    import fcntl

    log = tmp_path / "steps.jsonl"
    writer = RotatingFile(log, max_bytes=8192, backups=100)
    other = os.open(f"{log}.lock", os.O_RDONLY)
    try:
        lock_fd = writer._lock_fd if writer._lock_fd is not None else writer._open_lock()
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # as _rotate_if_full holds it
        writer._map_counter()
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        assert writer._counter is not None and writer._counter[:8] == bytes(8)
    finally:
        os.close(other)
        writer.close()
