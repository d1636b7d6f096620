"""Case 4: the JSONL step log — exporter throughput, and the analysis commands over big logs.

    .venv-bench/bin/python bench/case_jsonl.py [--records 100000 1000000 10000000]

Throughput: ``JsonlSpanExporter.export`` over finished spans captured from real steptrace runs
(tool calls and model calls, content capture off and on), median of batches: records per second
and bytes per record. Analysis: a log is stamped out from real runs (each copy with new run,
trace and span ids), then ``steptrace runs`` and ``steptrace summary RUN_ID`` each run in a fresh
process: wall time and that process's peak RSS (from ``wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_average, versions

BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
# The child reports its own peak RSS (VmHWM) at exit: a forked child's ru_maxrss starts at its
# parent's size, which would floor every reading at this process's.
_PEAK = (
    "import atexit, os\n"
    "def _peak():\n"
    "    with open('/proc/self/status') as status, open(os.environ['BENCH_PEAK_FILE'], 'w') as out:\n"
    "        out.write(next(line for line in status if line.startswith('VmHWM:')))\n"
    "atexit.register(_peak)\n"
)
CLI = _PEAK + "import sys; from steptrace.cli import main; sys.exit(main(sys.argv[1:]))"
CLI_STDLIB = _PEAK + (
    "import sys; from steptrace.analysis import _loading; _loading.use_fast_path(False); "
    "from steptrace.cli import main; sys.exit(main(sys.argv[1:]))"
)
STARTUP = _PEAK + "import steptrace.cli"
# Where `runs` spends its time: own (tottime) CPU seconds of a cProfile run grouped by module, or by
# builtin for C functions (msgspec's decode, the file reads). Profiling inflates parts made of many
# small calls; the shares are for ranking, the table's seconds are the unprofiled ones.
PROFILE = (
    "import cProfile, json, os, pstats, sys\n"
    "from steptrace.cli import main\n"
    "profile = cProfile.Profile()\n"
    "profile.enable()\n"
    "try:\n"
    "    main(sys.argv[2:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "profile.disable()\n"
    "parts = {}\n"
    "for (file, _, name), (_, _, own, _, _) in pstats.Stats(profile).stats.items():\n"
    "    key = name if file == '~' else '/'.join(file.split(os.sep)[-2:])\n"
    "    parts[key] = parts.get(key, 0.0) + own\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    json.dump(parts, out)\n"
)
# The floor of the aggregate commands: read the log and decode every line into the loader's own
# struct of the fields they read (the same msgspec decoder, one line per call as the loader does;
# many lines per call measured slower, the list of records it builds costing more than the calls),
# keeping nothing: no aggregation, no pricing, no output.
DECODE_FLOOR = _PEAK + (
    "import sys, typing, msgspec\n"
    "from steptrace.analysis._loading import STEP_FIELDS\n"
    "struct = msgspec.defstruct('Fields', [(name, typing.Any, None) for name in STEP_FIELDS])\n"
    "decode = msgspec.json.Decoder(struct).decode\n"
    "with open(sys.argv[1], 'rb') as log:\n"
    "    for line in log:\n"
    "        decode(line)\n"
)


def _agent(steptrace: Any, run_number: int) -> None:
    """A small but complete agent run: three steps, model calls with usage, tool calls."""

    @steptrace.tool
    def search_documents(query: str, limit: int = 5) -> list[str]:
        return [f"{query}-{i}" for i in range(limit)]

    with steptrace.agent_run(agent="researcher", release="1.4.0") as run:
        for number in range(3):
            with steptrace.agent_step():
                with steptrace.llm_request(model="gpt-4o", provider="openai") as llm:
                    llm.record_input([{"role": "user", "content": f"question {run_number}"}])
                    llm.record_usage(input_tokens=1200 + number, output_tokens=80, stop_reason="tool_calls")
                    llm.record_output([{"role": "assistant", "content": "searching"}])
                search_documents(f"q{number}")
                search_documents(f"r{number}", limit=3)
        run.stop_reason = "end_turn"


def capture_spans(directory: Path, capture_content: bool) -> list[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import steptrace

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = steptrace.configure(
        "bench", tracer_provider=provider, jsonl_path=directory / f"capture-{capture_content}.jsonl",
        capture_content=capture_content,
    )  # fmt: skip
    for number in range(20):
        _agent(steptrace, number)
    telemetry.shutdown()
    return list(memory.get_finished_spans())


def exporter_throughput(directory: Path) -> dict[str, Any]:
    from steptrace import JsonlSpanExporter

    results: dict[str, Any] = {}
    for capture in (False, True):
        spans = capture_spans(directory, capture)
        for kind in ("tool_execution", "llm_request", None):
            chosen = [s for s in spans if kind is None or s.name == kind]
            chosen = (chosen * (2000 // len(chosen) + 1))[:2000]
            path = directory / f"throughput-{capture}-{kind}.jsonl"
            exporter = JsonlSpanExporter(path)
            samples = []
            for batch in range(BATCHES + 2):
                start = time.perf_counter()
                for span in chosen:
                    exporter.export((span,))
                seconds = (time.perf_counter() - start) / len(chosen)
                if batch >= 2:
                    samples.append(seconds)
            exporter.shutdown()
            records = path.read_bytes().count(b"\n")
            label = f"{kind or 'all spans of a run'}, content capture {'on' if capture else 'off'}"
            results[label] = {
                "us_per_record": statistics.median(samples) * 1e6,
                "records_per_second": 1 / statistics.median(samples),
                "bytes_per_record": path.stat().st_size / records,
            }
    return results


def make_log(directory: Path, records: int) -> tuple[Path, str]:
    """A log of about ``records`` records stamped out from real runs; returns (path, a run id)."""
    import json

    template_path = directory / "capture-True.jsonl"
    if not template_path.exists():
        capture_spans(directory, True)
    lines = template_path.read_text().splitlines(keepends=True)
    by_run: dict[str, list[str]] = {}
    for line in lines:
        by_run.setdefault(json.loads(line)["run_id"], []).append(line)
    templates = list(by_run.items())
    path = directory / f"steps-{records}.jsonl"
    written = copy = 0
    last_run = ""
    with path.open("w") as out:
        while written < records:
            run_id, run_lines = templates[copy % len(templates)]
            new_run = f"{(copy + 1) * 0x9E3779B97F4A7C15 % (1 << 128):032x}"
            chunk = "".join(run_lines).replace(run_id, new_run)
            trace_ids = {json.loads(line)["trace_id"] for line in run_lines}
            for trace_id in trace_ids:
                chunk = chunk.replace(trace_id, f"{copy + 1:032x}"[::-1])
            out.write(chunk)
            written += len(run_lines)
            last_run = new_run
            copy += 1
    return path, last_run


def run_cli(code: str, argv: list[str]) -> dict[str, Any]:
    """Wall seconds, peak RSS (MiB, the child's VmHWM) and exit code of one call in a fresh process."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        env = {**os.environ, "BENCH_PEAK_FILE": peak.name}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL, env=env, check=False
        )
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        kib = int(peak.read().split()[1])
    # CPU seconds (user + system) of that child alone: on a shared machine wall time also counts
    # waiting for a core.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": kib / 1024, "exit_code": done.returncode}


def profile_runs(log: list[str]) -> dict[str, float]:
    """The own CPU seconds of `steptrace runs` per module (or C builtin), the 12 largest."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-c", PROFILE, out.name, "runs", *log], stdout=subprocess.DEVNULL, check=False
        )
        text = out.read()
    parts: dict[str, float] = json.loads(text) if text else {}
    return dict(sorted(parts.items(), key=lambda item: -item[1])[:12])


def analysis(directory: Path, sizes: list[int]) -> dict[str, Any]:
    from steptrace.analysis import _loading

    fast = _loading.fast_path_available()
    results: dict[str, Any] = {"msgspec_fast_path_available": fast}
    baseline = run_cli(STARTUP, [])  # interpreter + imports, for reference
    results["python startup + import steptrace.cli"] = baseline
    for size in sizes:
        path, run_id = make_log(directory, size)
        log = ["--log", str(path)]
        entry: dict[str, Any] = {"bytes": path.stat().st_size}
        entry["floor: read + decode every record (the loader's struct)"] = run_cli(DECODE_FLOOR, [str(path)])
        # The stdlib decoder for comparison at the sizes it takes in reasonable time.
        variants = [("", CLI)] + ([(" (stdlib json)", CLI_STDLIB)] if fast and size <= 1_000_000 else [])
        for suffix, code in variants:
            entry[f"steptrace runs{suffix}"] = run_cli(code, ["runs", *log])
            entry[f"steptrace summary RUN_ID{suffix}"] = run_cli(code, ["summary", run_id, *log])
        if size == 1_000_000:
            results["profile of steptrace runs, 1,000,000 records"] = profile_runs(log)
        results[f"{size} records"] = entry
        path.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    # 10M records: a 6 GB log in the temporary directory, ~3 minutes (issue 24's memory target).
    parser.add_argument("--records", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000])
    options = parser.parse_args()
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        throughput = exporter_throughput(Path(tmp))
        commands = analysis(Path(tmp), options.records)
    emit({
        "case": "jsonl",
        "batches": BATCHES,
        "load_average_start": load_start,
        "exporter": throughput,
        "analysis": commands,
        "versions": versions("steptrace", "msgspec", "orjson"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
