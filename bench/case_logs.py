"""Case 7: the cost of one stdlib log call with steptrace's log correlation, side by side.

    .venv-bench/bin/python bench/case_logs.py

Each variant is ``logger.info("fetched %s in %d ms", url, 12)`` on a logger whose handler formats
the record to /dev/null, so the figure is a whole log call as an application pays it. Variants:
steptrace never configured (logging as it ships), ``correlate_logs`` on outside a run, inside a
run (in a tool's span), ``capture_logs=True`` inside a run (a ``type: "log"`` record written to
the step log per call), and structlog with ``steptrace.structlog_processor`` inside a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_NUMBER", "2000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))


def main() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    import steptrace
    from steptrace import _config

    load_at_start = load_average()
    directory = Path(tempfile.mkdtemp(prefix="steptrace-bench-logs-"))
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed at the end
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("bench.agent")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    provider = TracerProvider()

    def log_call() -> None:
        logger.info("fetched %s in %d ms", "https://example.com", 12)

    stack = contextlib.ExitStack()

    def configure(**options: Any) -> None:
        steptrace.configure(
            "bench", tracer_provider=provider, jsonl_path=directory / "steps.jsonl", **options
        )

    def inside_run(**options: Any) -> Any:
        def enter() -> None:
            configure(**options)
            stack.enter_context(steptrace.agent_run(agent="bench"))
            stack.enter_context(steptrace.agent_step())
            stack.enter_context(steptrace.tool("fetch_page", arguments={"url": "https://example.com"}))

        return enter

    def leave() -> None:
        stack.close()
        _config.reset_for_tests()

    variants = [
        Variant("logging, steptrace not configured", log_call, _config.reset_for_tests),
        Variant("correlate_logs (default), outside a run", log_call, configure, leave),
        Variant("correlate_logs (default), inside a run", log_call, inside_run(), leave),
        Variant("correlate_logs=False, inside a run", log_call, inside_run(correlate_logs=False), leave),
        Variant("capture_logs=True, inside a run", log_call, inside_run(capture_logs=True), leave),
    ]
    try:
        import structlog
    except ImportError:
        structlog = None
    if structlog is not None:
        structlog.configure(
            processors=[steptrace.structlog_processor, structlog.processors.KeyValueRenderer()],
            logger_factory=structlog.PrintLoggerFactory(devnull),
            cache_logger_on_first_use=True,
        )
        slog = structlog.get_logger()

        def structlog_call() -> None:
            slog.info("fetched", url="https://example.com", ms=12)

        variants.append(
            Variant("structlog + structlog_processor, inside a run", structlog_call, inside_run(), leave)
        )
    interleave(variants, number=NUMBER, batches=BATCHES)
    devnull.close()
    emit(
        {
            "case": "logs",
            "number": NUMBER,
            "batches": BATCHES,
            "load_average_start": load_at_start,
            "versions": versions("opentelemetry-sdk", "structlog"),
            "variants": summarize(variants),
        }
    )


if __name__ == "__main__":
    main()
