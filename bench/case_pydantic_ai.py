"""Pydantic AI: what ``instrument_pydantic_ai()`` adds per model request and per tool call of an
agent run, next to Pydantic AI's own instrumentation (``instrument=True``), in one process.

    .venv-bench/bin/python bench/case_pydantic_ai.py

The model is Pydantic AI's own ``FunctionModel`` (no network: the run is Pydantic AI's graph,
capabilities and message handling plus what the instrumentation adds), answering with usage and a
finish reason; the tool a plain ``@agent.tool_plain`` function. Four run shapes, each
``Agent.run`` on one event loop: ``run0`` (one model request, no tool), ``run1`` (a request asking
for one tool call, the tool, the final request), ``par9`` (the same with nine tool calls in one
request) and ``seq9`` (nine requests asking for one tool call each, then the final one). Per tool
call = (par9 − run1) / 8; per model request = (seq9 − par9) / 8 (both make nine tool calls, seq9
eight requests more); each less the bare figure, batch by batch. Variants, timed interleaved
(``_common.interleave``):

- ``bare``: not instrumented (``instrument=False``);
- ``steptrace``: ``instrument_pydantic_ai()`` (each run an ``agent_run``, each request a step with
  its ``llm_request``, each tool call a ``tool_execution``; JSONL record and histograms; content
  capture off);
- ``Pydantic AI instrument=True``: its ``InstrumentationSettings`` on an SDK TracerProvider whose
  SimpleSpanProcessor ends in an exporter that only counts, plus an SDK MeterProvider, content off;
- ``steptrace + instrument=True``: both, Pydantic AI's spans on steptrace's provider, which
  steptrace borrows (run id, step numbers, records) instead of opening its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, added, emit, interleave, load_average, profile, summarize, versions
from case_tool import CountingExporter

NUMBER = int(os.environ.get("BENCH_PYDANTIC_AI_NUMBER", "30"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
PEER = "Pydantic AI instrument=True"
BOTH = "steptrace + instrument=True (its spans borrowed)"
# shape -> (tool calls, asked for all in the first request or one per request)
SHAPES = {"run0": (0, "par"), "run1": (1, "par"), "par9": (9, "par"), "seq9": (9, "seq")}
INTEGRATION = "steptrace/instrumentation/pydantic_ai.py"
SDK_TRACE = "opentelemetry/sdk/trace/__init__.py"
# Per tool call: the slope between run1 and par9; per model request: between par9 and seq9.
TERMS = {
    "model request": {"seq9": 1 / 8, "par9": -1 / 8},
    "tool call": {"par9": 1 / 8, "run1": -1 / 8},
    "run with one model request": {"run0": 1.0},
}


def answer(messages: list[Any], info: Any) -> Any:
    """The model: the tool calls the prompt asks for, then (or at once) a text answer."""
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.usage import RequestUsage

    usage = RequestUsage(input_tokens=12, output_tokens=5)
    _, how, count = str(messages[0].parts[-1].content).rsplit(" ", 2)
    done = sum(getattr(part, "part_kind", None) == "tool-return" for m in messages for part in m.parts)
    if how == "seq" and done < int(count):
        call = ToolCallPart("add", {"a": 1, "b": done}, f"call_{done}")
        return ModelResponse([call], usage=usage, model_name="bench-model", finish_reason="tool_call")
    if how == "par" and not done and int(count):
        calls = [ToolCallPart("add", {"a": 1, "b": i}, f"call_{i}") for i in range(int(count))]
        return ModelResponse(calls, usage=usage, model_name="bench-model", finish_reason="tool_call")
    return ModelResponse([TextPart("ok")], usage=usage, model_name="bench-model", finish_reason="stop")


def make_agent(instrument: Any) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.function import FunctionModel

    agent: Any = Agent(FunctionModel(answer, model_name="bench-model"), name="bench")
    agent.instrument = instrument  # False, or Pydantic AI's InstrumentationSettings

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return agent


def setup(directory: Path, info: dict[str, Any]) -> dict[str, tuple[Any, Any, Any]]:
    """name -> (agent, instrument, uninstrument)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from pydantic_ai.models.instrumented import InstrumentationSettings

    import steptrace

    steptrace_provider = TracerProvider()
    steptrace.configure(
        "bench", tracer_provider=steptrace_provider, jsonl_path=directory / "steps.jsonl",
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]), capture_content=False,
    )  # fmt: skip
    exporter = CountingExporter()
    info["spans_exported"] = {PEER: exporter}
    peer_provider = TracerProvider()
    peer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
    peer = InstrumentationSettings(
        tracer_provider=peer_provider,
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        include_content=False,
    )
    on_steptrace = InstrumentationSettings(
        tracer_provider=steptrace_provider,
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        include_content=False,
    )
    nothing = (lambda: None, lambda: None)
    st = (steptrace.instrument_pydantic_ai, steptrace.uninstrument_pydantic_ai)
    bare_agent = make_agent(False)
    return {
        "bare": (bare_agent, *nothing),
        "steptrace": (bare_agent, *st),
        PEER: (make_agent(peer), *nothing),
        BOTH: (make_agent(on_steptrace), *st),
    }


def runner(loop: asyncio.AbstractEventLoop, agent: Any, shape: tuple[int, str]) -> Callable[[], object]:
    tools, how = shape
    prompt = f"call the tool {how} {tools}"

    def run() -> object:
        result = loop.run_until_complete(agent.run(prompt))
        assert result.output == "ok", result.output
        return result

    return run


def profile_steptrace(loop: asyncio.AbstractEventLoop, agent: Any) -> dict[str, Any]:
    """Where steptrace's time goes in a run of each shape (cProfile, µs of CPU per run, profiled):
    its own (the run less the same run uninstrumented) and the parts of it."""
    import steptrace

    whole = {"the whole run": ("bench/case_pydantic_ai.py", "run")}  # runner's function
    parts = {
        **whole,
        "SDK Tracer.start_span": (SDK_TRACE, "start_span"),
        "SDK Span.end (with the step record)": (SDK_TRACE, "end"),
        "steptrace step record (processor on_end)": ("steptrace/_processors.py", "on_end"),
        "steptrace handle finish (span attributes, metrics, span end)": ("steptrace/_spans.py", "finish"),
        "steptrace opening a step (_Run.next_step)": (INTEGRATION, "next_step"),
        "steptrace joining the run's capabilities (_resolve_wrapper)": (INTEGRATION, "traced"),
        "steptrace opening model requests (_open_model_call)": (INTEGRATION, "_open_model_call"),
        "steptrace reading responses (_record_model_response)": (INTEGRATION, "_record_model_response"),
        "steptrace tool arguments (_tool_arguments)": (INTEGRATION, "_tool_arguments"),
        "steptrace borrowing check (_config_for)": (INTEGRATION, "_config_for"),
    }
    out = {}
    for label, shape in (("run of nine requests, one tool each", "seq9"), ("run of nine tool calls", "par9")):
        run = runner(loop, agent, SHAPES[shape])
        bare = profile(run, lambda: None, lambda: None, 200, whole)["the whole run"]
        total, *rest = profile(
            run, steptrace.instrument_pydantic_ai, steptrace.uninstrument_pydantic_ai, 200, parts
        ).items()
        out[label] = {"own_us": total[1] - bare, "parts_us": dict(rest)}
    return out


def main() -> None:
    load_start = load_average()
    info: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        setups = setup(Path(tmp), info)
        variants: dict[str, Variant] = {}
        for shape, how in SHAPES.items():
            group = [
                Variant(f"{name}|{shape}", runner(loop, agent, how), on, off)
                for name, (agent, on, off) in setups.items()
            ]
            interleave(group, number=NUMBER, batches=BATCHES)
            variants.update((v.name, v) for v in group)
        profiled = profile_steptrace(loop, setups["bare"][0])
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    with contextlib.suppress(Exception):
        loop.close()
    emit(
        {
            "case": "pydantic-ai",
            "batches": BATCHES,
            "number": NUMBER,
            "load_average_start": load_start,
            "variants": summarize(list(variants.values())),
            "added": {
                name: {what: added(variants, name, terms) for what, terms in TERMS.items()}
                for name in setups
                if name != "bare"
            },
            "steptrace_profile_us": profiled,
            "spans_exported": {name: c.count for name, c in info["spans_exported"].items()},
            "peers_missing": {},
            "steptrace_records_written": records,
            "versions": versions("steptrace", "pydantic-ai-slim", "opentelemetry-sdk"),
        }
    )


if __name__ == "__main__":
    main()
