"""Case: ``steptrace runs``, ``diff`` and ``debug RUN_ID`` over 1M and 10M spans, ClickHouse (chdb)
against JSONL.

    .venv-bench/bin/python bench/case_clickhouse.py [--spans 100000 1000000 10000000]

The same fleet (runs of every kind, two releases, stamped out from templates as in
tests/analysis_bench.py) is written once as a JSONL step log and once into the Collector's
``otel_traces`` table (the exporter's DDL, tests/clickhouse_table.py) in an on-disk chdb
database. Each command then runs in a fresh process: ``--log steps.jsonl`` against
``--source clickhouse://...`` (the same CLI; the ClickHouse engine runs in that process, so its
times include opening the database but no network). Reported: wall seconds and peak RSS per
command and size, and the crossover: the span count above which the table answers faster.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TESTS))

from _common import emit, load_average, versions  # noqa: E402

import analysis_bench  # noqa: E402
import analysis_logs as logs  # noqa: E402
import clickhouse_table as table  # noqa: E402

URL = "clickhouse://bench@localhost:8123/otel?table=otel_traces&max_execution_time=600"
SINCE = "2026-11-01T00:00Z"
COMMANDS = {
    "runs": ["runs", "--json", "--limit", "0"],
    # The default listing: the 20 most recent runs (the table is asked for that page alone).
    "runs-page": ["runs", "--json"],
    "diff": ["diff", "--json", "--baseline", "1.4.0", "--candidate", "1.5.0"],
    # One run: the table is asked for that run alone; the log is read whole.
    "debug": ["debug", "run-00000007", "--json"],
    # The fleet report over the whole window (the page itself goes nowhere).
    "report": ["report", "-o", os.devnull],
}
# A process that opens the on-disk chdb database and routes --source to it, then runs the CLI.
# It reports, on stderr, the seconds from the open database to the answer: what a command would
# take against a server, without the engine's own start-up.
LAUNCHER = (
    "import sys, time; sys.path.insert(0, {tests!r}); from chdb import session; "
    "import clickhouse_table as t; "
    "from steptrace.analysis import _clickhouse as ch; s = session.Session({path!r}); "
    "ch.use_database(lambda url: t.ChdbDatabase(s)); from steptrace.cli import main; "
    "started = time.perf_counter(); code = main(sys.argv[1:]); "
    "print(f'bench-query-seconds {{time.perf_counter() - started:.3f}}', file=sys.stderr); "
    "s.close(); sys.exit(code)"
)


def templates() -> list[tuple[str, list[logs.Span]]]:
    """The template runs analysis_bench.generate stamps out, in its order."""
    out = []
    for release in ("1.4.0", "1.5.0"):
        for number, kind in enumerate(analysis_bench.KINDS):
            run_id = f"tmpl-{release}-{number}"
            out.append((run_id, logs.make_run(run_id, kind, release=release, seed=number)))
    return out


def build_table(path: Path, run_count: int) -> None:
    """otel.otel_traces holding copies 0..run_count-1 of the templates (copy i: template i % 20,
    run id run-%08x, shifted i // 60 minutes): the runs generate() writes to the JSONL log."""
    from chdb import session

    chosen = templates()
    db_session = session.Session(str(path))
    database = table.ChdbDatabase(db_session)
    table.create_table(database, "otel.otel_traces")
    columns = (
        "Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, "
        "ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage, "
        "`Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, `Links.SpanId`, "
        "`Links.TraceState`, `Links.Attributes`"
    )
    for index, (template_id, spans) in enumerate(chosen):
        name = f"tmpl.t{index}"
        table.create_table(database, name)
        table.insert_rows(database, table.rows_from_spans(spans), name)
        copies = len(range(index, run_count, len(chosen)))
        if not copies:
            continue
        # Copy number n of this template is run n * 20 + index.
        database.execute(
            f"INSERT INTO otel.otel_traces ({columns}) SELECT "
            "Timestamp + toIntervalMinute(intDiv(run, 60)), TraceId, SpanId, ParentSpanId, TraceState, "
            "SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, "
            "mapUpdate(SpanAttributes, map('steptrace.run_id', "
            "concat('run-', leftPad(lower(hex(toUInt32(run))), 8, '0')))), "
            "Duration, StatusCode, StatusMessage, `Events.Timestamp`, `Events.Name`, `Events.Attributes`, "
            "`Links.TraceId`, `Links.SpanId`, `Links.TraceState`, `Links.Attributes` "
            f"FROM {name} CROSS JOIN (SELECT number * {len(chosen)} + {index} AS run "
            f"FROM numbers({copies})) AS copies"
        )
        assert template_id  # the template's own id is replaced on every copy
    database.execute("OPTIMIZE TABLE otel.otel_traces FINAL")
    db_session.close()


def run_count_for(spans: int) -> int:
    """How many runs generate() writes for ``spans`` records (it stops at the first run past it)."""
    sizes = [len(spans_of) for _, spans_of in templates()]
    written = runs = 0
    while written < spans:
        written += sizes[runs % len(sizes)]
        runs += 1
    return runs


def measure(argv: list[str]) -> dict[str, Any]:
    """Wall seconds and peak RSS of one CLI call in a fresh process (and, from the ClickHouse
    launcher, the seconds after the database was open)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{argv[-6:]} exited {child.returncode}: {stderr[-500:]}")
    out: dict[str, Any] = {
        "seconds": round(wall, 2),
        # CPU seconds too: on a shared machine they vary less than wall time.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
    }
    for line in stderr.splitlines():
        if line.startswith("bench-query-seconds "):
            out["after_open_seconds"] = round(float(line.split()[1]), 2)
    return out


def crossover(points: list[tuple[int, float, float]]) -> dict[str, Any]:
    """Where the table's time falls below the log's: ``faster_from_spans`` interpolated linearly
    between measured sizes; ``at_smallest`` when it is already faster at the smallest size;
    neither when the log is faster at every size measured."""
    if points and points[0][2] < points[0][1]:
        return {"faster_from_spans": None, "at_smallest": points[0][0]}
    for (s0, log0, ch0), (s1, log1, ch1) in itertools.pairwise(points):
        d0, d1 = log0 - ch0, log1 - ch1
        if d0 <= 0 < d1:
            return {"faster_from_spans": round(s0 + (s1 - s0) * (-d0) / (d1 - d0)), "at_smallest": None}
    return {"faster_from_spans": None, "at_smallest": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    default_sizes = os.environ.get("BENCH_CLICKHOUSE_SPANS", "100000 1000000 10000000")
    parser.add_argument("--spans", type=int, nargs="*", default=[int(s) for s in default_sizes.split()])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/steptrace-clickhouse-bench"))
    parser.add_argument("--commands", nargs="*", choices=list(COMMANDS), default=list(COMMANDS))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "load_average_start": load_average(),
        "versions": versions("chdb", "msgspec"),
        "sizes": {},
    }
    for spans in sorted(args.spans):
        log = args.dir / f"steps-{spans}.jsonl"
        database = args.dir / f"chdb-{spans}"
        timing: dict[str, Any] = {}
        if not log.exists():
            started = time.perf_counter()
            analysis_bench.generate(log, spans)
            timing["generate_jsonl_seconds"] = round(time.perf_counter() - started, 1)
        runs = run_count_for(spans)
        if not database.exists():
            started = time.perf_counter()
            build_table(database, runs)
            timing["build_table_seconds"] = round(time.perf_counter() - started, 1)
        entry: dict[str, Any] = {"runs": runs, "jsonl_bytes": log.stat().st_size, **timing, "commands": {}}
        launcher = LAUNCHER.format(tests=str(TESTS), path=str(database))
        for name in args.commands:
            command = COMMANDS[name]
            from_log = measure([sys.executable, "-m", "steptrace", *command, "--log", str(log)])
            from_table = measure(
                [sys.executable, "-c", launcher, *command, "--source", URL, "--since", SINCE]
            )
            entry["commands"][name] = {"jsonl": from_log, "clickhouse": from_table}
            print(f"{spans:>10,} spans  {name:<5} jsonl {from_log['seconds']:>7.2f} s   "
                  f"chdb {from_table['seconds']:>7.2f} s", file=sys.stderr)  # fmt: skip
        result["sizes"][str(spans)] = entry
    sizes = sorted(int(s) for s in result["sizes"])
    result["crossover_spans"] = {
        name: crossover(
            [
                (
                    s,
                    result["sizes"][str(s)]["commands"][name]["jsonl"]["seconds"],
                    result["sizes"][str(s)]["commands"][name]["clickhouse"]["seconds"],
                )
                for s in sizes
            ]
        )
        for name in args.commands
    }
    emit(result)


if __name__ == "__main__":
    main()
