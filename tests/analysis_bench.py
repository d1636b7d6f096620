"""Benchmark ``steptrace runs`` / ``summary`` over a large generated step log (not a test).

    .venv/bin/python tests/analysis_bench.py --records 1000000 --out /tmp/steptrace-bench

Generates the log once (runs of every kind, realistic record sizes), then times each command in
a fresh process and reports wall seconds and peak RSS (``ru_maxrss`` of the child).
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import analysis_logs as logs

KINDS = ["ok"] * 6 + ["tool_error", "loop", "model_error", "slow"]


def generate(path: Path, records: int) -> int:
    """Write about ``records`` step records; returns the exact count."""
    written = 0
    # Build one template run per kind and release, then stamp out copies with new run ids and
    # shifted times: building every span through build_record would take minutes.
    templates: list[tuple[str, list[str]]] = []
    for release in ("1.4.0", "1.5.0"):
        for number, kind in enumerate(KINDS):
            run_id = f"tmpl-{release}-{number}"
            spans = logs.make_run(run_id, kind, release=release, seed=number)
            templates.append((run_id, logs.jsonl_lines(spans)))
    with path.open("w") as out:
        i = 0
        while written < records:
            template_id, lines = templates[i % len(templates)]
            new_id = f"run-{i:08x}"
            minute = i // 60
            stamp = f"2026-11-{18 + (minute // 1440) % 10:02d}T{(minute // 60) % 24:02d}:{minute % 60:02d}"
            chunk = "".join(lines).replace(template_id, new_id).replace("2026-11-18T11:06", stamp)
            out.write(chunk)
            written += len(lines)
            i += 1
    return written


STDLIB = (
    "import sys; from steptrace.analysis import _loading; _loading.use_fast_path(False); "
    "from steptrace.cli import main; sys.exit(main(sys.argv[1:]))"
)


def measure(argv: list[str], stdlib: bool = False) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one CLI call in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    entry = ["-c", STDLIB] if stdlib else ["-m", "steptrace.cli"]
    completed = subprocess.run([sys.executable, *entry, *argv], stdout=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: run the largest last or alone.
    return wall, max(peak_kib, before) / 1024, completed.returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/steptrace-bench"))
    parser.add_argument("--command", action="append", help="CLI args to time, e.g. 'runs'")
    parser.add_argument("--stdlib", action="store_true", help="force the stdlib json decoder")
    parser.add_argument("--gzip", action="store_true", help="read a .jsonl.gz copy of the log")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"steps-{args.records}.jsonl"
    if not log.exists():
        start = time.perf_counter()
        count = generate(log, args.records)
        print(
            f"generated {count:,} records, {log.stat().st_size / 1e6:,.0f} MB "
            f"in {time.perf_counter() - start:.1f} s -> {log}"
        )
    if args.gzip:
        zipped = log.with_suffix(".jsonl.gz")
        if not zipped.exists():
            with log.open("rb") as source, gzip.open(zipped, "wb", compresslevel=6) as target:
                shutil.copyfileobj(source, target)
        log = zipped
    commands = args.command or ["runs --limit 5", "summary run-00000007"]
    results = []
    for command in commands:
        wall, peak, code = measure([*command.split(), "--log", str(log)], stdlib=args.stdlib)
        results.append(
            {
                "command": command,
                "log": log.name,
                "decoder": "stdlib json" if args.stdlib else "msgspec",
                "seconds": round(wall, 2),
                "peak_rss_mib": round(peak),
                "exit": code,
            }
        )
        print(json.dumps(results[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
