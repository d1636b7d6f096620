"""LangChain: what ``instrument_langchain()`` adds to one chat-model call and one tool call inside an
agent run, next to OpenLLMetry's opentelemetry-instrumentation-langchain, in one process.

    .venv-bench/bin/python bench/case_langchain.py

The model is LangChain's own ``GenericFakeChatModel`` (no network: the whole of ``invoke`` is
LangChain's callback and message machinery plus what the instrumentation adds), answering with
usage and a finish reason as a provider would; the tool a ``@tool`` function. Variants, timed
interleaved batch by batch (``_common.interleave``: wall and this thread's CPU time):

- ``bare``: not instrumented;
- ``steptrace``: ``instrument_langchain()``, the calls inside an ``agent_run``/``agent_step``: the
  ``llm_request`` or ``tool_execution`` span, its JSONL record and histograms, content capture off;
- ``by hand``: the bare call in a ``with steptrace.llm_request(...)``/``steptrace.tool(...)`` block
  in the same run: what a hand-decorated agent pays;
- opentelemetry-instrumentation-langchain (OpenLLMetry, its callback handler on every callback
  manager), on its own SDK TracerProvider whose SimpleSpanProcessor ends in an exporter that only
  counts, content tracing off (``TRACELOOP_TRACE_CONTENT=false``).

Each variant is instrumented before its batch and uninstrumented after it. Also a cProfile
breakdown of steptrace's model and tool calls (``steptrace_profile_us``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, added, emit, interleave, load_average, profile, summarize, versions
from case_tool import CountingExporter

NUMBER = int(os.environ.get("BENCH_LANGCHAIN_NUMBER", "300"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
PEER = "opentelemetry-instrumentation-langchain"
PEER_MODULE = "opentelemetry.instrumentation.langchain"
INTEGRATION = "steptrace/instrumentation/langchain.py"
SDK_TRACE = "opentelemetry/sdk/trace/__init__.py"


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


def _unwrap_peer() -> None:
    """opentelemetry-instrumentation-langchain 0.62's ``uninstrument`` unwraps nothing: it hands
    ``unwrap("langchain_core.callbacks", "BaseCallbackManager.__init__")``, which looks the dotted
    name up as one attribute and finds none. Its callback handler would stay on every callback
    manager, the bare variant's included; its patches are undone here instead."""
    import importlib

    owners = [
        ("langchain_core.callbacks", "BaseCallbackManager", "__init__"),
        ("langgraph.pregel", "Pregel", "stream"),
        ("langgraph.pregel", "Pregel", "astream"),
        ("langgraph.types", "Command", "__init__"),
        ("langgraph.prebuilt.chat_agent_executor", None, "create_react_agent"),
        ("langgraph.prebuilt", None, "create_react_agent"),
    ]
    for module_name, class_name, name in owners:
        owner: Any = importlib.import_module(module_name)
        if class_name is not None:
            owner = getattr(owner, class_name)
        current = vars(owner).get(name)
        wrapper = getattr(current, "_self_wrapper", None)
        if wrapper is not None and getattr(wrapper, "__module__", "").startswith(PEER_MODULE):
            setattr(owner, name, current.__wrapped__)


def instrumentations(directory: Path, info: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """name -> (instrument, uninstrument), run outside the timed loops."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    import steptrace

    counters: dict[str, CountingExporter] = info.setdefault("spans_exported", {})
    missing: dict[str, str] = info.setdefault("peers_missing", {})
    steptrace.configure(
        "bench", tracer_provider=TracerProvider(), jsonl_path=directory / "steps.jsonl",
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]), capture_content=False,
    )  # fmt: skip
    runs: list[contextlib.ExitStack] = []

    def open_run() -> None:
        exits = contextlib.ExitStack()
        exits.enter_context(steptrace.agent_run(agent="bench"))
        exits.enter_context(steptrace.agent_step())
        runs.append(exits)

    def st_on() -> None:
        steptrace.instrument_langchain()
        open_run()

    def st_off() -> None:
        runs.pop().close()
        steptrace.uninstrument_langchain()

    found: dict[str, tuple[Any, Any]] = {
        "bare": (lambda: None, lambda: None),
        "steptrace": (st_on, st_off),
        "by hand": (open_run, lambda: runs.pop().close()),
    }
    try:
        os.environ["TRACELOOP_TRACE_CONTENT"] = "false"  # steptrace's content capture is off too
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        counters[PEER] = exporter = CountingExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
        options = {
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        }

        def peer_off() -> None:
            LangchainInstrumentor().uninstrument()
            _unwrap_peer()

        found[PEER] = (lambda: LangchainInstrumentor().instrument(**options), peer_off)
    except ImportError as exc:
        missing[PEER] = repr(exc)
    info["open_run"], info["close_run"] = open_run, lambda: runs.pop().close()
    return found


def calls(model: Any, add: Any) -> dict[str, dict[str, Callable[[], object]]]:
    """what -> variant -> the call (``by hand`` wraps the bare call in steptrace's blocks)."""
    import steptrace

    def model_by_hand() -> object:
        with steptrace.llm_request(model="gpt-4o", provider="openai") as llm:
            reply = model.invoke("hi")
            llm.record_usage(12, 5, "stop")
        return reply

    def tool_by_hand() -> object:
        with steptrace.tool("add", arguments={"a": 1, "b": 2}):
            return add.invoke({"a": 1, "b": 2})

    return {
        "model": {"": lambda: model.invoke("hi"), "by hand": model_by_hand},
        "tool": {"": lambda: add.invoke({"a": 1, "b": 2}), "by hand": tool_by_hand},
    }


def profile_steptrace(
    work: dict[str, dict[str, Callable[[], object]]], info: dict[str, Any]
) -> dict[str, Any]:
    """Where steptrace's time goes in each call (cProfile µs per call, profiled): its own (its
    wrapper less LangChain's call inside it) and the parts of it."""
    import steptrace

    def on() -> None:
        steptrace.instrument_langchain()
        info["open_run"]()

    def off() -> None:
        info["close_run"]()
        steptrace.uninstrument_langchain()

    common = {
        "SDK Tracer.start_span": (SDK_TRACE, "start_span"),
        "SDK Span.end (with the step record)": (SDK_TRACE, "end"),
        "steptrace step record (processor on_end)": ("steptrace/_processors.py", "on_end"),
        "steptrace handle finish (span attributes, metrics, span end)": ("steptrace/_spans.py", "finish"),
    }
    model_parts = {
        "steptrace's wrapper": (INTEGRATION, "_generate_wrapper"),
        "LangChain's own call (_generate_with_cache)": (
            "language_models/chat_models.py", "_generate_with_cache"),
        "steptrace opening the call (_open_model_call: LangChain's ls params, handle, span start)": (
            INTEGRATION, "_open_model_call"),
        "steptrace reading the reply (usage, finish reason)": (INTEGRATION, "_record_message"),
        **common,
    }  # fmt: skip
    tool_parts = {
        "steptrace's wrapper": (INTEGRATION, "_tool_run_wrapper"),
        "LangChain's own call (BaseTool.run)": ("langchain_core/tools/base.py", "run"),
        "steptrace opening the call (_open_tool_call: arguments, handle, span start)": (
            INTEGRATION, "_open_tool_call"),
        "steptrace arguments digest": ("steptrace/_content.py", "arguments_digest"),
        **common,
    }  # fmt: skip
    out = {}
    for what, parts in (("model", model_parts), ("tool", tool_parts)):
        wrapper, framework, *rest = profile(work[what][""], on, off, 3000, parts).items()
        out[what] = {"own_us": wrapper[1] - framework[1], "parts_us": dict(rest)}
    return out


def main() -> None:
    load_start = load_average()
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        work = calls(make_model(), make_tool())
        instrumented = instrumentations(Path(tmp), info)
        variants: dict[str, Variant] = {}
        for what, per_variant in work.items():
            group = [
                Variant(f"{name}|{what}", per_variant.get(name, per_variant[""]), on, off)
                for name, (on, off) in instrumented.items()
            ]
            interleave(group, number=NUMBER, batches=BATCHES)
            variants.update((v.name, v) for v in group)
        profiled = profile_steptrace(work, info)
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    emit(
        {
            "case": "langchain",
            "batches": BATCHES,
            "number": NUMBER,
            "load_average_start": load_start,
            "variants": summarize(list(variants.values())),
            "added": {
                name: {what: added(variants, name, {what: 1.0}) for what in work}
                for name in instrumented
                if name != "bare"
            },
            "steptrace_profile_us": profiled,
            "spans_exported": {name: c.count for name, c in info["spans_exported"].items()},
            "peers_missing": info["peers_missing"],
            "steptrace_records_written": records,
            "versions": versions("steptrace", "langchain-core", "langgraph", "opentelemetry-sdk", PEER),
        }
    )


if __name__ == "__main__":
    main()
