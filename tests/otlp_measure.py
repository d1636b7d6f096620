"""Measure what a dead collector costs an agent: per decorated call and at shutdown.

    .venv/bin/python tests/otlp_measure.py [--calls 3000]
    .venv/bin/python tests/otlp_measure.py --starve [--spans 200000]

Each case runs in a fresh subprocess: steptrace.configure() with only OTLP (no JSONL log, so the
numbers are the OTLP path's), default settings (10 s export timeout), then one agent run of
``--calls`` decorated tool calls, each timed, then ``telemetry.shutdown()`` timed. Cases: a healthy
collector (rotel), no collector (closed port), one answering 503/UNAVAILABLE, one that never
answers, over gRPC and http/protobuf. Prints a Markdown table.

``--starve``: the benchmark issue's case. One thread ends spans as fast as it can with a short
GIL-releasing call (os.urandom, uuid4, an unbuffered write) between them, exporting over OTLP/HTTP
to a healthy rotel; compares how many spans the SDK's BatchSpanProcessor and steptrace's
processor deliver, and what happens to the rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from otlp_servers import (  # after the path tweak
    ROOT,
    Blackhole,
    RefusingGrpcServer,
    RefusingHttpServer,
    Rotel,
    free_port,
)

CHILD = r"""
import json, os, statistics, sys, time
import steptrace

calls = int(sys.argv[1])

@steptrace.tool
def lookup(i: int) -> int:
    return i

telemetry = steptrace.configure(service_name="measure", jsonl_path=False)
durations = []
with steptrace.agent_run(agent="measure"):
    for i in range(calls):
        started = time.perf_counter()
        lookup(i)
        durations.append(time.perf_counter() - started)
started = time.perf_counter()
telemetry.shutdown()
shutdown_s = time.perf_counter() - started
durations.sort()
print(json.dumps({
    "mean_us": statistics.fmean(durations) * 1e6,
    "p50_us": durations[len(durations) // 2] * 1e6,
    "p99_us": durations[int(len(durations) * 0.99)] * 1e6,
    "max_ms": durations[-1] * 1e3,
    "shutdown_s": shutdown_s,
}))
"""


def run_case(endpoint: str, protocol: str, calls: int, workdir: Path) -> dict[str, Any]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "PYTHONPATH": str(ROOT / "src"),
        "PATH": "/usr/bin:/bin",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(calls)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    numbers: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    numbers["process_s"] = time.perf_counter() - started
    numbers["warnings"] = sum("steptrace:" in line for line in result.stderr.splitlines())
    return numbers


def starve(spans: int) -> None:
    import os
    import uuid

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

    from steptrace.export import ResilientSpanProcessor

    class Counting(OTLPSpanExporter):
        delivered = 0

        def export(self, batch: Any) -> SpanExportResult:
            result = super().export(batch)
            if result is SpanExportResult.SUCCESS:
                Counting.delivered += len(batch)
            return result

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        grpc_port, http_port = free_port(), free_port()
        rotel = Rotel(workdir, grpc_port=grpc_port, http_port=http_port, signal_="logs")
        stack.callback(rotel.stop)
        print("| processor | app cost per span (µs) | delivered | dropped (counted) | spilled |")
        print("|---|---|---|---|---|")
        for round_ in range(2):
            for kind in ("sdk", "steptrace"):
                Counting.delivered = 0
                exporter = Counting(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
                spill = workdir / f"spill-{round_}.jsonl"
                processor: SpanProcessor = (
                    BatchSpanProcessor(exporter)
                    if kind == "sdk"
                    else ResilientSpanProcessor(exporter, spill_path=spill)
                )
                provider = TracerProvider()
                provider.add_span_processor(processor)
                tracer = provider.get_tracer("starve")
                with (workdir / "scratch.bin").open("wb", buffering=0) as scratch:
                    started = time.perf_counter()
                    for index in range(spans):
                        with tracer.start_as_current_span(
                            "tool_execution", attributes={"steptrace.run_id": "starve", "i": index}
                        ):
                            os.urandom(16)
                            uuid.uuid4()
                            scratch.write(b"x" * 64)
                    per_span_us = (time.perf_counter() - started) / spans * 1e6
                provider.force_flush()
                provider.shutdown()
                dropped = getattr(processor, "dropped_spans", "not counted")
                spilled = getattr(processor, "spilled_spans", "-")
                share = 100 * Counting.delivered / spans
                print(
                    f"| {kind} | {per_span_us:.1f} | {Counting.delivered} ({share:.1f} %) "
                    f"| {dropped} | {spilled} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--starve", action="store_true")
    parser.add_argument("--spans", type=int, default=200_000)
    args = parser.parse_args()
    if args.starve:
        starve(args.spans)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        for protocol in ("grpc", "http/protobuf"):
            grpc_port, http_port = free_port(), free_port()
            rotel = Rotel(workdir, grpc_port=grpc_port, http_port=http_port, signal_="traces")
            stack.callback(rotel.stop)
            healthy = grpc_port if protocol == "grpc" else http_port
            refusing: Any = RefusingGrpcServer() if protocol == "grpc" else RefusingHttpServer(503)
            stack.callback(refusing.close)
            blackhole = Blackhole()
            stack.callback(blackhole.close)
            cases = {
                "healthy (rotel)": healthy,
                "closed port": free_port(),
                "503 / UNAVAILABLE": refusing.port,
                "never answers": blackhole.port,
            }
            for case, port in cases.items():
                numbers = run_case(f"http://127.0.0.1:{port}", protocol, args.calls, workdir)
                rows.append((protocol, case, numbers))
                print(protocol, case, numbers, file=sys.stderr)
    print(
        "| protocol | collector | per call mean / p50 / p99 (µs) | slowest call (ms) "
        "| shutdown (s) | warnings |"
    )
    print("|---|---|---|---|---|---|")
    for protocol, case, n in rows:
        print(
            f"| {protocol} | {case} | {n['mean_us']:.0f} / {n['p50_us']:.0f} / {n['p99_us']:.0f} "
            f"| {n['max_ms']:.1f} | {n['shutdown_s']:.2f} | {n['warnings']} |"
        )


if __name__ == "__main__":
    main()
