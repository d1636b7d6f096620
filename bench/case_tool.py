"""Case 1: the cost of a decorated, trivial tool call, side by side in one process.

    .venv-bench/bin/python bench/case_tool.py off   # tracing disabled: no-op paths
    .venv-bench/bin/python bench/case_tool.py on    # tracing on: steptrace, raw SDK, peers

``off`` runs where no SDK TracerProvider was ever installed (as in an application that never
configured tracing); ``on`` installs steptrace, the raw SDK and the peers. Peers get a
SimpleSpanProcessor with an exporter that only counts spans (no I/O); steptrace writes its real
JSONL record to a file and records its real histograms, so the comparison favours the peers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_NUMBER", "2000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))


def add(a: int, b: int) -> int:
    return a + b


def off_variants() -> list[Variant]:
    from opentelemetry import trace

    import steptrace
    from steptrace import _config

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    traced_add = steptrace.tool(add)
    api_tracer = trace.get_tracer("bench")  # the API with no SDK installed: a no-op

    def api_add(a: int, b: int) -> int:
        with api_tracer.start_as_current_span("tool_execution"):
            return add(a, b)

    def disable() -> None:
        os.environ["OTEL_SDK_DISABLED"] = "true"
        steptrace.configure("bench")

    def undo_disable() -> None:
        _config.reset_for_tests()
        del os.environ["OTEL_SDK_DISABLED"]

    return [
        Variant("bare function", lambda: add(1, 2)),
        Variant("steptrace @tool, no configure()", lambda: traced_add(1, 2), _config.reset_for_tests),
        Variant("steptrace @tool, OTEL_SDK_DISABLED=true", lambda: traced_add(1, 2), disable, undo_disable),
        Variant("OTel API no-op span (no SDK)", lambda: api_add(1, 2)),
    ]


class CountingExporter:
    """A SpanExporter that only counts: the peers' pipelines end here, without I/O."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _attached(context_manager_factory: Any) -> tuple[Any, Any]:
    """enter/leave hooks keeping ``context_manager_factory()`` open for one batch."""
    stack: list[contextlib.ExitStack] = []

    def enter() -> None:
        exits = contextlib.ExitStack()
        exits.enter_context(context_manager_factory())
        stack.append(exits)

    def leave() -> None:
        stack.pop().close()

    return enter, leave


def on_variants(directory: Path) -> tuple[list[Variant], dict[str, Any]]:
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    import steptrace
    from steptrace import _attributes as A
    from steptrace._content import arguments_hash
    from steptrace._metrics import NO_EXEMPLAR, TOOL_DURATION_BUCKETS_S

    info: dict[str, Any] = {}
    resource = Resource.create({"service.name": "bench"})
    jsonl = directory / "steps.jsonl"

    # --- steptrace: its own provider, JSONL on, an SDK MeterProvider with a reader ---
    st_provider = TracerProvider(resource=resource)
    st_meters = MeterProvider(metric_readers=[InMemoryMetricReader()], resource=resource)
    base_options: dict[str, Any] = {
        "tracer_provider": st_provider,
        "meter_provider": st_meters,
        "jsonl_path": jsonl,
        "capture_content": False,
    }
    steptrace.configure("bench", **base_options)
    traced_add = steptrace.tool(add)

    def in_run() -> Any:
        exits = contextlib.ExitStack()
        exits.enter_context(steptrace.agent_run(agent="bench"))
        exits.enter_context(steptrace.agent_step())
        return exits

    def reconfigure(**options: Any) -> Any:
        def enter() -> None:
            steptrace.configure("bench", **{**base_options, **options})

        return enter

    def restore() -> None:
        steptrace.configure("bench", **base_options)

    run_enter, run_leave = _attached(in_run)

    def with_options(**options: Any) -> tuple[Any, Any]:
        configure = reconfigure(**options)

        def enter() -> None:
            configure()
            run_enter()

        def leave() -> None:
            run_leave()
            restore()

        return enter, leave

    # --- the raw SDK: the same six attributes steptrace's tool span carries ---
    attrs = {
        A.GEN_AI_OPERATION_NAME: A.OPERATION_EXECUTE_TOOL,
        A.GEN_AI_TOOL_NAME: "add",
        A.TOOL_ARGS_HASH: arguments_hash({"a": 1, "b": 2}),
        A.AGENT_STEP_NUMBER: 1,
        A.RUN_ID: "0" * 32,
        A.STEP: 3,
    }
    raw_provider = TracerProvider(resource=resource)  # no processor: the span machinery alone
    raw_tracer = raw_provider.get_tracer("bench")
    # steptrace's provider: its processor turns the raw span into a step record
    raw_on_st_tracer = st_provider.get_tracer("bench-raw")
    # steptrace's processor alone, with no step log: what it adds to another library's span
    # (the run id looked up where the span starts) apart from the record.
    from steptrace._processors import SteptraceSpanProcessor

    stamp_provider = TracerProvider(resource=resource)
    stamp_provider.add_span_processor(SteptraceSpanProcessor())
    stamp_tracer = stamp_provider.get_tracer("bench-raw")
    histogram = st_meters.get_meter("bench-raw").create_histogram(
        A.METRIC_EXECUTE_TOOL_DURATION, unit="s", explicit_bucket_boundaries_advisory=TOOL_DURATION_BUCKETS_S
    )
    metric_attrs = {A.GEN_AI_OPERATION_NAME: A.OPERATION_EXECUTE_TOOL, A.GEN_AI_TOOL_NAME: "add"}

    def raw_add(a: int, b: int) -> int:
        with raw_tracer.start_as_current_span("tool_execution", kind=SpanKind.INTERNAL, attributes=attrs):
            return add(a, b)

    def raw_st_add(a: int, b: int) -> int:
        with raw_on_st_tracer.start_as_current_span(
            "tool_execution", kind=SpanKind.INTERNAL, attributes=attrs
        ):
            return add(a, b)

    def raw_stamp_add(a: int, b: int) -> int:
        with stamp_tracer.start_as_current_span("tool_execution", kind=SpanKind.INTERNAL, attributes=attrs):
            return add(a, b)

    def sdk_floor_add(a: int, b: int) -> int:
        """The pure SDK: the span and the execute_tool histogram, no step record."""
        start = time.perf_counter()
        with raw_tracer.start_as_current_span("tool_execution", kind=SpanKind.INTERNAL, attributes=attrs):
            result = add(a, b)
        histogram.record(time.perf_counter() - start, metric_attrs, NO_EXEMPLAR)
        return result

    def floor_add(a: int, b: int) -> int:
        """The same outputs without steptrace's decorator and handles: span, step record, histogram."""
        start = time.perf_counter()
        with raw_on_st_tracer.start_as_current_span(
            "tool_execution", kind=SpanKind.INTERNAL, attributes=attrs
        ):
            result = add(a, b)
        histogram.record(time.perf_counter() - start, metric_attrs, NO_EXEMPLAR)
        return result

    raw_parent = raw_tracer.start_span("agent_step")
    raw_enter, raw_leave = _attached(lambda: trace.use_span(raw_parent, end_on_exit=False))
    st_parent = raw_on_st_tracer.start_span("agent_step")
    st_raw_enter, st_raw_leave = _attached(lambda: trace.use_span(st_parent, end_on_exit=False))
    stamp_parent = stamp_tracer.start_span("agent_step")
    stamp_enter, stamp_leave = _attached(lambda: trace.use_span(stamp_parent, end_on_exit=False))

    # --- the agent-step-log approach: open, append, close and json.dumps per record ---
    step_log_path = directory / "agent-step-log.jsonl"

    def step_log_tool(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.time()
            result = fn(*args, **kwargs)
            record = {
                "run_id": "0" * 32,
                "step": 3,
                "type": "tool_call",
                "tool": fn.__name__,
                "ts": time.time(),
                "duration_ms": (time.time() - started) * 1000.0,
                "status": "ok",
            }
            with open(step_log_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            return result

        return wrapper

    step_log_add = step_log_tool(add)
    # Guards (issue 26) that never trip: the checks and counts of every call, the repeat count of
    # one (tool, args_hash) growing by one per call.
    never_trip = steptrace.Guards(repeat_calls=10**9, max_steps=10**9, max_tokens=10**12)

    variants = [
        Variant("bare function", lambda: add(1, 2)),
        Variant("raw SDK span, 6 attributes, provider without processors", lambda: raw_add(1, 2),
                raw_enter, raw_leave),
        Variant("raw SDK span, 6 attributes, on steptrace's provider (writes the record)",
                lambda: raw_st_add(1, 2), st_raw_enter, st_raw_leave),
        Variant("raw SDK span, 6 attributes, steptrace's processor without a step log",
                lambda: raw_stamp_add(1, 2), stamp_enter, stamp_leave),
        Variant("raw SDK span + SDK Histogram.record (the SDK floor)", lambda: sdk_floor_add(1, 2),
                raw_enter, raw_leave),
        Variant("raw SDK span + step record + SDK Histogram.record (the floor)", lambda: floor_add(1, 2),
                st_raw_enter, st_raw_leave),
        Variant("steptrace @tool in agent_run/agent_step, JSONL + metrics", lambda: traced_add(1, 2),
                run_enter, run_leave),
        Variant("steptrace @tool, JSONL + metrics + content capture", lambda: traced_add(1, 2),
                *with_options(capture_content=True)),
        Variant("steptrace @tool, metrics off (no-op meter)", lambda: traced_add(1, 2),
                *with_options(meter_provider=_noop_meter_provider())),
        Variant("steptrace @tool, JSONL off", lambda: traced_add(1, 2), *with_options(jsonl_path=False)),
        Variant("steptrace @tool, guards on (repeat_calls, max_steps, max_tokens)", lambda: traced_add(1, 2),
                *with_options(guards=never_trip)),
        Variant("agent-step-log approach (open/append/close + json.dumps)", lambda: step_log_add(1, 2)),
    ]  # fmt: skip
    variants += peer_variants(info)
    info["profile"] = lambda: profile_shares(lambda: traced_add(1, 2), run_enter, run_leave)
    return variants, info


def profile_shares(call: Any, enter: Any, leave: Any, number: int = 20_000) -> dict[str, float]:
    """Where a steptrace tool call's time goes, as shares of the decorated call (cProfile).

    cProfile adds a fixed cost to every function call, so parts made of many small calls look
    bigger than they are; the shares are for locating the cost, the timings above for sizing it.
    """
    import cProfile
    import pstats

    enter()
    try:
        for _ in range(500):
            call()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(number):
            call()
        profiler.disable()
    finally:
        leave()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cumulative(path_part: str, function: str) -> float:
        return sum(
            row[3] for (path, _line, name), row in stats.items() if name == function and path_part in path
        )

    total = cumulative("steptrace/_decorators.py", "traced")
    start_span = cumulative("opentelemetry/sdk/trace/__init__.py", "start_span")
    span_end = cumulative("opentelemetry/sdk/trace/__init__.py", "end")
    record = cumulative("steptrace/_processors.py", "on_end")
    histogram = cumulative("opentelemetry/sdk/metrics/_internal/instrument.py", "record")
    args_hash = cumulative("steptrace/_content.py", "arguments_hash")
    parts = {
        "SDK Tracer.start_span (attribute cleaning, sampler, Span.__init__, on_start)": start_span,
        "SDK Span.end without steptrace's record (ReadableSpan, processor dispatch)": span_end - record,
        "steptrace step record (span_to_record, encode, os.write) in the processor's on_end": record,
        "SDK Histogram.record (execute_tool duration)": histogram,
        "steptrace arguments hash (canonical JSON + blake2b)": args_hash,
    }
    parts["steptrace glue (decorator, context attach/detach, run counters, handles)"] = total - sum(
        parts.values()
    )
    return {name: value / total for name, value in parts.items()} if total else {}


def _noop_meter_provider() -> Any:
    from opentelemetry.metrics import NoOpMeterProvider

    return NoOpMeterProvider()


def peer_variants(info: dict[str, Any]) -> list[Variant]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    variants: list[Variant] = []
    counters: dict[str, CountingExporter] = {}
    missing: dict[str, str] = info.setdefault("peers_missing", {})

    @contextlib.contextmanager
    def peer(name: str) -> Any:
        try:
            yield
        except ImportError as exc:  # reported in RESULTS.md, never silently left out
            missing[name] = f"{type(exc).__name__}: {exc}"

    # traceloop-sdk: Traceloop.init installs its provider globally; metrics off with a custom
    # exporter; its banner goes to stderr so stdout stays JSON.
    with peer("traceloop-sdk"):
        os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
        from traceloop.sdk import Traceloop
        from traceloop.sdk.decorators import tool as traceloop_tool
        from traceloop.sdk.decorators import workflow as traceloop_workflow

        counters["traceloop"] = exporter = CountingExporter()
        with contextlib.redirect_stdout(sys.stderr):
            Traceloop.init(
                app_name="bench", exporter=exporter, disable_batch=True, telemetry_enabled=False,
                instruments=set(),
            )  # fmt: skip
        tl_add = traceloop_tool(name="add")(add)

        # The tool call runs inside a traceloop workflow span, as steptrace's inside its run.
        def tl_in_workflow() -> Any:
            from opentelemetry import trace

            tracer = trace.get_tracer_provider().get_tracer("traceloop.tracer")
            parent = tracer.start_span("bench.workflow")
            return trace.use_span(parent, end_on_exit=False)

        del traceloop_workflow
        variants.append(Variant("traceloop-sdk @tool", lambda: tl_add(1, 2), *_attached(tl_in_workflow)))

    with peer("openinference-instrumentation"):
        from openinference.instrumentation import TracerProvider as OITracerProvider
        from opentelemetry import trace

        counters["openinference"] = exporter = CountingExporter()
        oi_provider = OITracerProvider()
        oi_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
        oi_tracer = oi_provider.get_tracer("bench")
        oi_add = oi_tracer.tool(add)
        oi_parent = oi_tracer.start_span("agent")
        oi_enter, oi_leave = _attached(lambda: trace.use_span(oi_parent, end_on_exit=False))
        variants.append(Variant("openinference @tracer.tool", lambda: oi_add(1, 2), oi_enter, oi_leave))

    with peer("logfire"):
        import logfire

        counters["logfire"] = exporter = CountingExporter()
        logfire.configure(
            send_to_logfire=False, console=False, metrics=False, service_name="bench",
            additional_span_processors=[SimpleSpanProcessor(exporter)],  # type: ignore[arg-type]
        )  # fmt: skip
        lf_add = logfire.instrument()(add)
        variants.append(Variant("logfire @instrument", lambda: lf_add(1, 2),
                                *_attached(lambda: logfire.span("agent"))))  # fmt: skip

    info["peer_exporters"] = counters
    return variants


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "on"
    load_start = load_average()
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        if mode == "off":
            variants = off_variants()
        else:
            variants, info = on_variants(Path(tmp))
        interleave(variants, number=NUMBER, batches=BATCHES)
        result: dict[str, Any] = {
            "case": f"tool-{mode}",
            "number": NUMBER,
            "batches": BATCHES,
            "load_average_start": load_start,
            "variants": summarize(variants),
        }
        counters = info.get("peer_exporters", {})
        result["peer_spans_exported"] = {name: c.count for name, c in counters.items()}
        result["peers_missing"] = info.get("peers_missing", {})
        if mode == "on":
            result["steptrace_profile_shares"] = info["profile"]()
            lines = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
            result["steptrace_records_written"] = lines
    result["versions"] = versions(
        "steptrace",
        "opentelemetry-sdk",
        "traceloop-sdk",
        "openinference-instrumentation",
        "logfire",
        "orjson",
    )
    emit(result)


if __name__ == "__main__":
    main()
