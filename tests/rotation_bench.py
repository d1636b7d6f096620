"""What rotation costs the step log's writer: records/s without rotation, with the 100 MiB default
(one flock and one fstat per record, rotation off too: another process may rotate the file) and
rotating every 1 MiB (rename + gzip in the background).

    .venv/bin/python tests/rotation_bench.py [--records 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from steptrace._jsonl import JsonlSpanExporter
from steptrace.export.rotation import RotatingFile, rotated_files

RECORD = {
    "run_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "step": 7,
    "type": "tool_call",
    "name": "tool_execution",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "parent_span_id": "00f067aa0ba902b8",
    "started_at": "2026-12-02T08:00:00.000000Z",
    "ts": 1796198400.0,
    "duration_ms": 1.25,
    "status": "ok",
    "error": None,
    "error_type": None,
    "tool": "search_documents",
    "input": '{"query": "Q3 revenue"}',
    "output": "x" * 400,
}


def bench(label: str, records: int, max_bytes: int, rounds: int) -> None:
    """CPU time of the whole process (writer and background gzip), best of ``rounds``: on a shared
    machine wall-clock time measures the neighbours."""
    best = float("inf")
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "steps.jsonl"
            log = JsonlSpanExporter(path, max_bytes=max_bytes, backups=1000)
            start = time.process_time()
            for index in range(records):
                log.write_record({**RECORD, "step": index})
            log.shutdown()  # waits for the background gzip: its CPU time is counted
            best = min(best, time.process_time() - start)
            files = rotated_files(path)
            size = sum(p.stat().st_size for p in files)
    print(
        f"{label:28} {records / best:>10,.0f} records/CPU-s  {best / records * 1e6:6.2f} CPU-us/record"
        f"  {len(files):4} files  {size / 1e6:7.1f} MB on disk"
    )


def compress_cost() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "steps.jsonl"
        log = JsonlSpanExporter(path, max_bytes=0)
        for index in range(200_000):
            log.write_record({**RECORD, "step": index})
        log.shutdown()
        size = path.stat().st_size
        rotating = RotatingFile(path, max_bytes=1, backups=5)
        start = time.perf_counter()
        rotating.append(b"{}\n")  # renames the full file; compression starts in the background
        switch = time.perf_counter() - start
        rotating.wait_for_compression()
        total = time.perf_counter() - start
        gz = next(p for p in rotated_files(path) if p.suffix == ".gz")
        rotating.close()
        print(
            f"one rotation of {size / 1e6:.0f} MB: writer blocked {switch * 1e3:.2f} ms, "
            f"background gzip {total:.2f} s -> {gz.stat().st_size / 1e6:.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    for label, max_bytes in [
        ("no rotation (max_bytes=0)", 0),
        ("default (100 MiB: flock)", 100 * 1024 * 1024),
        ("rotating every 1 MiB", 1024 * 1024),
    ]:
        bench(label, options.records, max_bytes, options.rounds)
    compress_cost()


if __name__ == "__main__":
    main()
