"""Case 13: the step record and a histogram measurement, each alone, in CPU time.

    .venv-bench/bin/python bench/case_record.py

Step record: a finished span (captured from real runs) handed to steptrace's span processor,
whose step log builds the record, encodes it and appends it: CPU time (``time.thread_time``) from
span end to bytes in the file, per record, beside its parts and the floor (the same record
dict encoded by msgspec and written with one ``O_APPEND`` write) and the append of the previous
protocol (flock, fstat, write, unlock). Variants interleave batch by batch; median and
interquartile range over batches. System calls per record: ``strace -c`` of a child appending
N records less one appending none (skipped without strace).

Histogram: what recording one measurement costs the caller (steptrace's buffered histogram, the
SDK's ``Histogram.record``), and what a collection then pays per buffered measurement.
"""

from __future__ import annotations

import fcntl
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_average, versions
from case_jsonl import capture_spans

NUMBER = int(os.environ.get("BENCH_NUMBER", "2000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
STRACE_RECORDS = 20_000

# A child appending N records of a real tool call through the processor (argv: log, N).
STRACE_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from case_jsonl import capture_spans
from steptrace._jsonl import JsonlSpanExporter
from steptrace._processors import Delegates, SteptraceSpanProcessor
spans = capture_spans(Path(sys.argv[1]).parent, False)
tool = [s for s in spans if s.name == "tool_execution"][0]
processor = SteptraceSpanProcessor()
processor.delegates = Delegates(JsonlSpanExporter(sys.argv[1]), ())
for _ in range(int(sys.argv[2])):
    processor.on_end(tool)
"""


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (ordered[0],) * 3
    return {"median_us": statistics.median(ordered), "min_us": ordered[0], "q1_us": q1, "q3_us": q3}


def interleave_cpu(
    variants: dict[str, Callable[[], object]], after_batch: Callable[[], None] | None = None
) -> dict[str, dict[str, float]]:
    """CPU µs per call of each variant: BATCHES rounds (after two warm-up ones), rotating order."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(BATCHES + 2):
        gc.collect()
        for offset in range(len(names)):
            name = names[(round_number + offset) % len(names)]
            call = variants[name]
            start = time.thread_time()
            for _ in range(NUMBER):
                call()
            elapsed = time.thread_time() - start
            if after_batch is not None:
                after_batch()
            if round_number >= 2:
                samples[name].append(elapsed / NUMBER * 1e6)
    return {name: _stats(values) for name, values in samples.items()}


def step_record(directory: Path) -> dict[str, Any]:
    import msgspec

    from steptrace._jsonl import JsonlSpanExporter, encode_record, span_to_record
    from steptrace._processors import Delegates, SteptraceSpanProcessor

    spans = capture_spans(directory, False)
    tool = next(s for s in spans if s.name == "tool_execution")
    llm = next(s for s in spans if s.name == "llm_request")
    exporter = JsonlSpanExporter(directory / "steps.jsonl")
    processor = SteptraceSpanProcessor()
    processor.delegates = Delegates(exporter, ())
    record = span_to_record(tool)
    assert record is not None
    encode = msgspec.json.Encoder().encode
    floor_fd = os.open(directory / "floor.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    old_fd = os.open(directory / "old.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    old_lock = os.open(directory / "old.jsonl.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    line = encode_record(record)

    def previous_protocol_append() -> None:  # what every record's append did before (issue 24)
        fcntl.flock(old_lock, fcntl.LOCK_EX)
        try:
            os.fstat(old_lock)
            os.write(old_fd, line)
        finally:
            fcntl.flock(old_lock, fcntl.LOCK_UN)

    variants: dict[str, Callable[[], object]] = {
        "tool_execution: span end to bytes in the file (processor on_end)": lambda: processor.on_end(tool),
        "llm_request: span end to bytes in the file (processor on_end)": lambda: processor.on_end(llm),
        "part: span_to_record (tool_execution)": lambda: span_to_record(tool),
        "part: encode_record (tool_execution)": lambda: encode_record(record),
        "part: RotatingFile.append (one line)": lambda: exporter.file.append(line),
        "floor: msgspec encode + one O_APPEND write": lambda: os.write(floor_fd, encode(record) + b"\n"),
        "previous protocol's append: flock, fstat, write, unlock": previous_protocol_append,
    }
    result = interleave_cpu(variants)
    exporter.shutdown()
    for fd in (floor_fd, old_fd, old_lock):
        os.close(fd)
    return {"variants": result, "bytes_per_record": len(line)}


def syscalls_per_record(directory: Path) -> float | None:
    """System calls a record costs in the steady state: strace -c of N records less of none."""
    if shutil.which("strace") is None:
        return None
    totals = []
    for count in (0, STRACE_RECORDS):
        log = directory / f"strace-{count}" / "steps.jsonl"
        log.parent.mkdir()
        out = directory / f"strace-{count}.txt"
        command = ["strace", "-f", "-c", "-o", str(out), sys.executable, "-c", STRACE_CHILD]
        done = subprocess.run(
            [*command, str(log), str(count), str(Path(__file__).resolve().parent)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            return None
        total = [row for row in out.read_text().splitlines() if row.strip().endswith("total")]
        if not total:
            return None
        fields = total[0].split()
        totals.append(int(fields[3]))  # % time, seconds, usecs/call, calls[, errors], total
    return (totals[1] - totals[0]) / STRACE_RECORDS


def histogram() -> dict[str, Any]:
    from opentelemetry import trace
    from opentelemetry.context import get_current
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from steptrace import _attributes as A
    from steptrace._metrics import NO_EXEMPLAR, create_instruments

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments(provider)
    deferred = instruments.operation_duration
    sdk = deferred._histogram  # the SDK histogram steptrace's buffers feed
    attrs = {
        A.GEN_AI_OPERATION_NAME: "chat",
        A.GEN_AI_PROVIDER_NAME: "openai",
        A.GEN_AI_REQUEST_MODEL: "gpt-4o",
    }
    tracer = TracerProvider().get_tracer("bench")
    with tracer.start_as_current_span("llm_request"):  # a sampled span: exemplars are taken
        context = get_current()
        assert trace.get_current_span(context).get_span_context().is_valid
        variants: dict[str, Callable[[], object]] = {
            "steptrace: a measurement, no exemplar (tool, step, chunk)": lambda: deferred.record(
                0.25, attrs, NO_EXEMPLAR
            ),
            "steptrace: a measurement with its exemplar's context (model call)": lambda: deferred.record(
                0.25, attrs, context
            ),
            "SDK Histogram.record, no exemplar": lambda: sdk.record(0.25, attrs, NO_EXEMPLAR),
            "SDK Histogram.record with an exemplar": lambda: sdk.record(0.25, attrs, context),
        }
        result = interleave_cpu(variants, after_batch=reader.get_metrics_data)
        # What a collection pays per buffered measurement (on the reader's thread).
        collect = []
        for _ in range(BATCHES):
            for _ in range(NUMBER):
                deferred.record(0.25, attrs, context)
            start = time.thread_time()
            reader.get_metrics_data()
            collect.append((time.thread_time() - start) / NUMBER * 1e6)
    provider.shutdown()
    return {
        "variants": result,
        "collection_per_measurement": _stats(collect),
        "dropped": instruments.dropped_measurements,
    }


def main() -> None:
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        record = step_record(Path(tmp))
        calls = syscalls_per_record(Path(tmp))
    measurements = histogram()
    emit({
        "case": "record",
        "batches": BATCHES,
        "number": NUMBER,
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "step_record": record,
        "syscalls_per_record": calls,
        "histogram": measurements,
        "versions": versions("steptrace", "msgspec", "opentelemetry-sdk"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
