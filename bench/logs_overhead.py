"""What steptrace's log hooks add to making one LogRecord, measured alone (min of many rounds).

    .venv/bin/python bench/logs_overhead.py

A whole log call (bench/case_logs.py) costs 10-25 µs on a loaded machine, so the hooks' own
cost drowns in its noise; here ``Logger.makeRecord`` (which calls the record factory) is timed
with and without the hooks, alternating, and the minimum per variant is reported.
"""

from __future__ import annotations

import logging
import tempfile
import timeit
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

import steptrace
from steptrace import _config

NUMBER, ROUNDS = 20_000, 25


def make_record(logger: logging.Logger) -> None:
    logger.makeRecord("bench", logging.INFO, __file__, 1, "fetched %s in %d ms", ("u", 12), None)


def main() -> None:
    logger = logging.getLogger("bench")
    provider = TracerProvider()
    log_path = Path(tempfile.mkdtemp()) / "steps.jsonl"
    best: dict[str, float] = {}

    def measure(label: str) -> None:
        seconds = min(timeit.repeat(lambda: make_record(logger), number=NUMBER, repeat=1))
        best[label] = min(best.get(label, float("inf")), seconds / NUMBER * 1e6)

    for _ in range(ROUNDS):
        _config.reset_for_tests()
        measure("makeRecord, no hooks")
        steptrace.configure("bench", tracer_provider=provider, jsonl_path=log_path)
        measure("makeRecord, correlate_logs, outside a run")
        with steptrace.agent_run(agent="b"), steptrace.agent_step(), steptrace.tool("t", arguments={}):
            measure("makeRecord, correlate_logs, inside a tool span")
        _config.reset_for_tests()
    base = best["makeRecord, no hooks"]
    for label, micros in best.items():
        print(f"{micros:6.2f} µs  {micros - base:+5.2f} µs  {label}")


if __name__ == "__main__":
    main()
