"""Case: the cost steptrace adds to one LangChain chat-model call and one tool call, against the
bare call, in one process.

    .venv/bin/python bench/case_langchain.py

The model is LangChain's own ``GenericFakeChatModel`` (no network: the whole of ``invoke`` is
LangChain's callback and message machinery plus what steptrace adds), answering with usage and a
finish reason as a provider would; the tool a ``@tool`` function. Variants, timed interleaved:
``bare`` (not instrumented), ``steptrace`` (``instrument_langchain()``: the ``llm_request`` or
``tool_execution`` span, its JSONL record and histograms, content capture off) and ``by hand``
(the bare call in a ``with steptrace.llm_request(...)``/``steptrace.tool(...)`` block: what a
hand-decorated agent pays). All run inside an ``agent_run``/``agent_step`` with steptrace
configured, as a graph's calls do.
"""

from __future__ import annotations

import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_LANGCHAIN_NUMBER", "300"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))


def make_model() -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    answer = AIMessage(
        content="ok",
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"finish_reason": "stop", "model_name": "gpt-4o"},
    )
    return GenericFakeChatModel(messages=itertools.repeat(answer))


def make_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return add


def interleave(variants: list[Variant], cpu: dict[str, list[float]], *, warmup_batches: int = 2) -> None:
    """``_common.interleave``, keeping this process's CPU time per call too: on a loaded machine
    the wall time mostly measures waiting for a core, the CPU time what the call costs here."""
    for round_number in range(warmup_batches + BATCHES):
        gc.collect()
        for offset in range(len(variants)):
            variant = variants[(round_number + offset) % len(variants)]
            assert variant.enter is not None and variant.leave is not None
            variant.enter()
            try:
                for _ in range(50):
                    variant.call()
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in range(NUMBER):
                    variant.call()
                elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
            finally:
                variant.leave()
            if round_number >= warmup_batches:
                variant.samples.append(elapsed / NUMBER)
                cpu.setdefault(variant.name, []).append(cpu_elapsed / NUMBER)


def measure(log: Path, cpu: dict[str, list[float]]) -> list[Variant]:
    import steptrace

    model, add = make_model(), make_tool()
    open_blocks: list[Any] = []

    def setup(instrument: bool) -> Callable[[], None]:
        def enter() -> None:
            steptrace.configure("bench", jsonl_path=log, capture_content=False)
            if instrument:
                steptrace.instrument_langchain()
            for spec in (steptrace.agent_run(agent="bench"), steptrace.agent_step()):
                spec.__enter__()
                open_blocks.append(spec)

        return enter

    def leave() -> None:
        while open_blocks:
            open_blocks.pop().__exit__(None, None, None)
        steptrace.uninstrument_langchain()

    def model_by_hand() -> object:
        with steptrace.llm_request(model="gpt-4o", provider="openai") as llm:
            reply = model.invoke("hi")
            llm.record_usage(12, 5, "stop")
        return reply

    def tool_by_hand() -> object:
        with steptrace.tool("add", arguments={"a": 1, "b": 2}):
            return add.invoke({"a": 1, "b": 2})

    calls: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "model": (lambda: model.invoke("hi"), model_by_hand),
        "tool": (lambda: add.invoke({"a": 1, "b": 2}), tool_by_hand),
    }
    variants: list[Variant] = []
    for kind, (call, by_hand) in calls.items():
        group = [
            Variant(f"bare|{kind}", call, setup(False), leave),
            Variant(f"steptrace|{kind}", call, setup(True), leave),
            Variant(f"by hand|{kind}", by_hand, setup(False), leave),
        ]
        interleave(group, cpu)
        variants += group
    return variants


def main() -> None:
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        log = Path(tmp) / "steps.jsonl"
        cpu: dict[str, list[float]] = {}
        variants = measure(log, cpu)
        records = log.read_bytes().count(b"\n")
    emit(
        {
            "case": "langchain",
            "batches": BATCHES,
            "number": NUMBER,
            "load_average_start": load_start,
            "variants": summarize(variants),
            "cpu_median_us": {name: statistics.median(samples) * 1e6 for name, samples in cpu.items()},
            "steptrace_records_written": records,
            "versions": versions("steptrace", "langchain-core", "langgraph", "opentelemetry-sdk"),
        }
    )


if __name__ == "__main__":
    main()
