"""Case 3: completeness under load — spans created vs step records written vs spans exported.

    .venv-bench/bin/python bench/case_load.py

The calling threads make traced tool calls back to back, with short GIL-releasing calls between
them (``os.urandom(16)``, ``uuid.uuid4()``, a 64-byte file write): the pattern that starves a
batch processor's worker thread. Compared, in one process, one after the other:

* steptrace: the JSONL step log (synchronous) and OTLP/HTTP export through its own processor
  to a counting receiver on 127.0.0.1 (a separate process, ``_collector.py``);
* the raw SDK: ``BatchSpanProcessor`` with its default queue and an in-memory exporter.

A span counter on each provider counts the spans that ended; warnings logged are counted too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_average, versions

CALLS = int(os.environ.get("BENCH_LOAD_CALLS", "20000"))
THREADS = (1, 4)
SLOW_COLLECTOR_S = 0.2


def add(a: int, b: int) -> int:
    return a + b


class WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:200])


def _ended_counter() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class Ended(SpanProcessor):
        def __init__(self) -> None:
            self.count = 0
            self._lock = threading.Lock()

        def on_end(self, span: Any) -> None:
            with self._lock:
                self.count += 1

    return Ended()


def _run_threads(threads: int, body: Callable[[int], None]) -> float:
    workers = [threading.Thread(target=body, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def _between_calls(scratch: int) -> None:
    os.urandom(16)
    uuid.uuid4()
    os.write(scratch, b"x" * 63 + b"\n")


def steptrace_case(directory: Path, threads: int, port: int) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    import steptrace

    provider = TracerProvider()
    ended = _ended_counter()
    provider.add_span_processor(ended)
    jsonl = directory / f"steps-{threads}.jsonl"
    telemetry = steptrace.configure(
        "bench", tracer_provider=provider, jsonl_path=jsonl, capture_content=False,
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        otlp_endpoint=f"http://127.0.0.1:{port}", otlp_protocol="http/protobuf",
    )  # fmt: skip
    traced_add = steptrace.tool(add)
    scratch = os.open(directory / "scratch", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def body(number: int) -> None:
        with steptrace.agent_run(agent=f"load-{number}"), steptrace.agent_step():
            for _ in range(CALLS):
                traced_add(1, 2)
                _between_calls(scratch)

    seconds = _run_threads(threads, body)
    processors = telemetry._delegates.processors if telemetry._delegates else ()
    otlp = processors[0] if processors else None
    flushed = telemetry.force_flush(30_000)
    telemetry.shutdown()
    counters = {
        name: getattr(otlp, name, None)
        for name in ("exported_spans", "failed_spans", "dropped_spans", "spilled_spans")
    }
    os.close(scratch)
    received = int(urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10).read())
    return {
        "threads": threads,
        "spans_created": ended.count,
        "jsonl_records": jsonl.read_bytes().count(b"\n"),
        "otlp_received_by_collector": received,
        "otlp_counters": counters,
        "force_flush_ok": flushed,
        "seconds": seconds,
    }


def raw_batch_case(directory: Path, threads: int, port: int | None) -> dict[str, Any]:
    """The SDK's BatchSpanProcessor with its defaults; in-memory exporter, or OTLP/HTTP to ``port``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    ended = _ended_counter()
    exporter: Any = InMemorySpanExporter()
    if port is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    provider.add_span_processor(ended)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "add", "step": 1}
    scratch = os.open(directory / "scratch", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def body(number: int) -> None:
        with tracer.start_as_current_span("agent_run"):
            for _ in range(CALLS):
                with tracer.start_as_current_span("tool_execution", attributes=attributes):
                    add(1, 2)
                _between_calls(scratch)

    seconds = _run_threads(threads, body)
    provider.force_flush(30_000)
    provider.shutdown()
    os.close(scratch)
    if port is None:
        exported = len(exporter.get_finished_spans())
    else:
        exported = int(urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10).read())
    return {
        "exporter": "in-memory" if port is None else "OTLP/HTTP",
        "threads": threads,
        "spans_created": ended.count,
        "exported": exported,
        "seconds": seconds,
    }


@contextlib.contextmanager
def _collector(port_file: Path, delay: float = 0.0) -> Iterator[int]:
    """A fresh counting OTLP receiver (its own process) for one measurement."""
    script = str(Path(__file__).parent / "_collector.py")
    process = subprocess.Popen([sys.executable, script, str(port_file), str(delay)])
    try:
        for _ in range(200):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    load_start = load_average()
    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    logging.getLogger().setLevel(logging.WARNING)
    results: dict[str, Any] = {"steptrace": [], "raw_sdk_batch": [], "raw_sdk_batch_otlp": []}
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        for threads in THREADS:
            with _collector(Path(tmp) / f"port-{threads}") as port:
                directory = Path(tmp) / f"st-{threads}"
                directory.mkdir()
                before = len(warnings.messages)
                entry = steptrace_case(directory, threads, port)
                entry["warnings"] = warnings.messages[before:]
                results["steptrace"].append(entry)
                before = len(warnings.messages)
                entry = raw_batch_case(Path(tmp), threads, None)
                entry["warnings"] = warnings.messages[before:]
                results["raw_sdk_batch"].append(entry)
        for threads in THREADS:
            with _collector(Path(tmp) / f"port-raw-{threads}") as port:
                before = len(warnings.messages)
                entry = raw_batch_case(Path(tmp), threads, port)
                entry["warnings"] = warnings.messages[before:]
                results["raw_sdk_batch_otlp"].append(entry)
        # A collector that cannot keep up: export must shed load. Is the loss counted, or silent?
        for pipeline in ("steptrace", "raw_sdk_batch_otlp"):
            with _collector(Path(tmp) / f"port-slow-{pipeline}", SLOW_COLLECTOR_S) as port:
                before = len(warnings.messages)
                if pipeline == "steptrace":
                    directory = Path(tmp) / "st-slow"
                    directory.mkdir()
                    entry = steptrace_case(directory, 1, port)
                else:
                    entry = raw_batch_case(Path(tmp), 1, port)
                entry["warnings"] = warnings.messages[before:]
                entry["collector_delay_s"] = SLOW_COLLECTOR_S
                results[pipeline].append(entry)
    emit({
        "case": "load",
        "calls_per_thread": CALLS,
        "between_calls": "os.urandom(16), uuid.uuid4(), os.write(64 bytes)",
        "load_average_start": load_start,
        **results,
        "versions": versions("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "steptrace"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
