"""A steptrace-instrumented agent run as a separate process, for the torture tests.

    python tests/torture_writer.py MODE PATH [options]

Modes:
- ``runs``: ``--runs`` agent runs of ``--calls`` tool calls each, appending to the step log PATH;
  prints a JSON summary. Several of these append to one file at once.
- ``forever``: tool calls with large results until killed; prints ``acked N`` (flushed) after
  every 50 returned calls, so the killer knows which records must be in the log.
- ``disk-full``: like ``runs`` under ``RLIMIT_FSIZE`` of ``--fsize`` bytes (SIGXFSZ ignored), or
  on whatever small filesystem PATH is on; prints what the application and the exporter saw.
- ``read-only``: the log is rotated away while its directory is read-only, then writable again.

Every tool result is checked by the caller here: the application must carry on unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import steptrace
from steptrace._jsonl import JsonlSpanExporter

SECRET = "sk-proj-TORTUREwriterSECRET0123456789abcdef"


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@steptrace.tool
def fetch(index: int, size: int, api_key: str) -> str:
    """A tool whose result is ``size`` characters, ending with its index."""
    return ("r" * max(0, size - 12)) + f"{index:012d}"


def run_agents(runs: int, calls: int, size: int, big_every: int, tag: str) -> int:
    """``runs`` sequential agent runs; returns the number of tool calls made."""
    made = 0
    for run_index in range(runs):
        with steptrace.agent_run(agent=f"writer-{tag}-{run_index}"):
            for call in range(calls):
                wanted = size * 3 if big_every and call % big_every == 0 else size
                result = fetch(made, wanted, SECRET)
                if len(result) != wanted or not result.endswith(f"{made:012d}"):
                    raise SystemExit(f"tool result changed: {len(result)} chars")
                made += 1
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["runs", "forever", "disk-full", "read-only"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--big-every", type=int, default=0)
    parser.add_argument("--fsize", type=int, default=0)
    parser.add_argument("--tag", default=str(os.getpid()))
    args = parser.parse_args(argv)

    handler = _CountingHandler()
    logging.getLogger("steptrace").addHandler(handler)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    if args.mode == "disk-full":
        provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry = steptrace.configure(
        "torture-writer", jsonl_path=args.path, capture_content=True, tracer_provider=provider
    )
    started = time.perf_counter()
    summary: dict[str, Any] = {"mode": args.mode}

    if args.mode == "runs":
        summary["tool_calls"] = run_agents(args.runs, args.calls, args.size, args.big_every, args.tag)
        summary["flushed"] = telemetry.force_flush()
    elif args.mode == "forever":
        made = 0
        with steptrace.agent_run(agent="forever"):
            while True:
                fetch(made, args.size, SECRET)
                made += 1
                if made % 50 == 0:
                    print(f"acked {made}", flush=True)
    elif args.mode == "disk-full":
        if args.fsize:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, resource.RLIM_INFINITY))
        summary["tool_calls"] = run_agents(args.runs, args.calls, args.size, 0, args.tag)
        summary["flushed"] = telemetry.force_flush()
        # The exporter used directly, as another TracerProvider's exporter would be.
        second = JsonlSpanExporter(args.path.with_name("direct.jsonl"))
        if args.fsize:
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
        summary["direct_export"] = second.export(memory.get_finished_spans()[:20]).name
        summary["records_failed"] = second.records_failed
    else:  # read-only
        directory = args.path.parent
        made = run_agents(2, 10, args.size, 0, args.tag)
        os.rename(args.path, args.path.with_name(args.path.name + ".1"))  # logrotate
        directory.chmod(0o555)
        time.sleep(1.2)  # the exporter looks for a rotated file once a second
        made += run_agents(2, 10, args.size, 0, args.tag)
        summary["flushed_while_read_only"] = telemetry.force_flush()
        summary["warnings_while_read_only"] = list(handler.messages)
        directory.chmod(0o755)
        time.sleep(1.2)
        made += run_agents(1, 10, args.size, 0, args.tag)
        summary["flushed_after"] = telemetry.force_flush()
        summary["tool_calls"] = made
        directory.chmod(0o555)
        try:
            steptrace.configure("again", jsonl_path=directory / "new.jsonl", tracer_provider=provider)
            summary["configure_read_only"] = "accepted"
        except steptrace.ConfigError as exc:
            summary["configure_read_only"] = f"ConfigError: {exc}"
        finally:
            directory.chmod(0o755)

    summary["seconds"] = time.perf_counter() - started
    summary["warnings"] = handler.messages
    telemetry.shutdown()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
