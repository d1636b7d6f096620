"""Amazon Bedrock: what ``instrument_bedrock()`` adds to the real boto3 ``bedrock-runtime``
client, next to OpenLLMetry's opentelemetry-instrumentation-bedrock, with botocore's whole pipeline
(serializing, signing, parsing, the event-stream decoder) and canned replies handed back in-process
by a ``before-send`` handler, so no socket adds noise.

    .venv-bench/bin/python bench/case_bedrock.py

One process; variants alternate batch by batch (``_common.interleave``: wall and this thread's CPU
time): bare (nothing instrumented), steptrace (``instrument_bedrock()`` inside an
agent_run/agent_step, writing its JSONL record and its histograms), steptrace outside a run (span
and histograms only), and opentelemetry-instrumentation-bedrock (SimpleSpanProcessor into an
exporter that only counts, content tracing off). The peer patches each client as it is created,
and its ``uninstrument`` leaves those clients patched: it gets a client of its own, made while it
is instrumented. Content capture is off for all. Measured: one ``converse``, and
``converse_stream`` streams of 20 and 200 text deltas (per delta: the slope between the two
lengths, less the bare slope, batch by batch). Also a cProfile breakdown of steptrace's converse.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, added, emit, interleave, load_average, profile, summarize, versions
from case_tool import CountingExporter

CALL_NUMBER = int(os.environ.get("BENCH_BEDROCK_NUMBER", "200"))
STREAM_NUMBER = int(os.environ.get("BENCH_BEDROCK_STREAM_NUMBER", "20"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
SHORT, LONG = 20, 200
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PEER = "opentelemetry-instrumentation-bedrock"
MESSAGES = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
TERMS = {
    "call": {"call": 1.0},
    "delta": {f"stream{LONG}": 1 / (LONG - SHORT), f"stream{SHORT}": -1 / (LONG - SHORT)},
    f"stream of {SHORT} deltas": {f"stream{SHORT}": 1.0},
}
INTEGRATION = "steptrace/instrumentation/bedrock.py"
SDK_TRACE = "opentelemetry/sdk/trace/__init__.py"


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack("!H", len(raw_value)) + raw_value


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = (
        _header(":event-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", "event")
    )
    body = json.dumps(payload).encode()
    prelude = struct.pack("!II", 16 + len(headers) + len(body), len(headers))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + headers + body
    return message + struct.pack("!I", binascii.crc32(message))


def _stream_body(deltas: int) -> list[bytes]:
    usage = {"inputTokens": 12, "outputTokens": deltas, "totalTokens": 12 + deltas}
    return [
        _event("messageStart", {"role": "assistant"}),
        *(
            _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f" tok{i}"}})
            for i in range(deltas)
        ),
        _event("contentBlockStop", {"contentBlockIndex": 0}),
        _event("messageStop", {"stopReason": "end_turn"}),
        _event("metadata", {"usage": usage, "metrics": {"latencyMs": 100}}),
    ]


class _Raw:
    """What botocore reads a reply's body from (urllib3's response, for a real request)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        pass


def make_client() -> Any:
    import boto3
    from botocore.awsrequest import AWSResponse

    answer = json.dumps(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Paris."}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
            "metrics": {"latencyMs": 100},
        }
    ).encode()
    streams = {SHORT: _stream_body(SHORT), LONG: _stream_body(LONG)}

    def reply(request: Any, **kwargs: Any) -> Any:
        if request.url.endswith("/converse-stream"):
            count = int(json.loads(request.body)["messages"][0]["content"][0]["text"].rsplit(" ", 1)[-1])
            headers = {"content-type": "application/vnd.amazon.eventstream"}
            return AWSResponse(request.url, 200, headers, _Raw(streams[count]))
        return AWSResponse(request.url, 200, {"content-type": "application/json"}, _Raw([answer]))

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client.meta.events.register("before-send.bedrock-runtime.*", reply)
    return client


def calls(client: Any) -> dict[str, Callable[[], object]]:
    def converse() -> object:
        return client.converse(modelId=MODEL, messages=MESSAGES)

    def stream(deltas: int) -> Callable[[], object]:
        messages = [{"role": "user", "content": [{"text": f"count {deltas}"}]}]

        def consume() -> object:
            seen = sum(1 for _event in client.converse_stream(modelId=MODEL, messages=messages)["stream"])
            assert seen == deltas + 4, seen
            return seen

        return consume

    return {"call": converse, f"stream{SHORT}": stream(SHORT), f"stream{LONG}": stream(LONG)}


def instrumentations(directory: Path, info: dict[str, Any]) -> dict[str, tuple[Any, Any, Any]]:
    """name -> (instrument, uninstrument, client), the first two run outside the timed loops."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    import steptrace

    client = make_client()
    found: dict[str, tuple[Any, Any, Any]] = {"bare": (lambda: None, lambda: None, client)}
    counters: dict[str, CountingExporter] = info.setdefault("spans_exported", {})
    missing: dict[str, str] = info.setdefault("peers_missing", {})
    steptrace.configure(
        "bench", tracer_provider=TracerProvider(), jsonl_path=directory / "steps.jsonl",
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]), capture_content=False,
    )  # fmt: skip
    run: list[contextlib.ExitStack] = []

    def st_on() -> None:
        steptrace.instrument_bedrock()
        exits = contextlib.ExitStack()
        exits.enter_context(steptrace.agent_run(agent="bench"))
        exits.enter_context(steptrace.agent_step())
        run.append(exits)

    def st_off() -> None:
        run.pop().close()
        steptrace.uninstrument_bedrock()

    found["steptrace"] = (st_on, st_off, client)
    found["steptrace, outside an agent run (no step record)"] = (
        steptrace.instrument_bedrock,
        steptrace.uninstrument_bedrock,
        client,
    )
    try:
        os.environ["TRACELOOP_TRACE_CONTENT"] = "false"
        from opentelemetry.instrumentation.bedrock import BedrockInstrumentor

        counters[PEER] = exporter = CountingExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
        BedrockInstrumentor().instrument(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        )
        try:
            peer_client = make_client()  # patched at creation, for good
        finally:
            BedrockInstrumentor().uninstrument()
        found[PEER] = (lambda: None, lambda: None, peer_client)
    except ImportError as exc:
        missing[PEER] = repr(exc)
    info["st_on"], info["st_off"] = st_on, st_off
    return found


def profile_steptrace(client: Any, info: dict[str, Any]) -> dict[str, Any]:
    """Where steptrace's time goes in one ``converse`` (cProfile µs per call, profiled): its own
    (its wrapper less botocore's call inside it) and the parts of it."""
    parts = {
        "steptrace's wrapper": (INTEGRATION, "traced"),
        "botocore's own call (_make_api_call)": ("botocore/client.py", "_make_api_call"),
        "steptrace opening the call (open_call: request attributes, handle, span start)": (
            "steptrace/instrumentation/_common.py", "open_call"),
        "steptrace reading the reply (_record_converse)": (INTEGRATION, "_record_converse"),
        "steptrace server address (_server)": (INTEGRATION, "_server"),
        "SDK Tracer.start_span": (SDK_TRACE, "start_span"),
        "SDK Span.end (with the step record)": (SDK_TRACE, "end"),
        "steptrace step record (processor on_end)": ("steptrace/_processors.py", "on_end"),
        "steptrace handle finish (span attributes, metrics, span end)": ("steptrace/_spans.py", "finish"),
    }  # fmt: skip
    wrapper, framework, *rest = profile(
        calls(client)["call"], info["st_on"], info["st_off"], 2000, parts
    ).items()
    out = {"call": {"own_us": wrapper[1] - framework[1], "parts_us": dict(rest)}}
    # A stream: steptrace's time is spread over the iteration, so its own is the stream less the
    # same stream uninstrumented; per delta its stream proxy and observer run.
    consume = calls(client)[f"stream{LONG}"]
    whole = {"the whole stream": ("bench/case_bedrock.py", "consume")}
    bare = profile(consume, lambda: None, lambda: None, 100, whole)["the whole stream"]
    stream_parts = {
        **whole,
        "steptrace stream proxy (StreamProxy.__next__'s own time, all deltas)": (
            "steptrace/instrumentation/_common.py", "self:__next__"),
        "steptrace reading each event (_ConverseStreamObserver.observe)": (INTEGRATION, "observe"),
        "steptrace chunk timing (LlmRequest.chunk_received)": ("steptrace/_spans.py", "chunk_received"),
        "steptrace at the stream's end (observer finalize)": (INTEGRATION, "finalize"),
        "SDK Tracer.start_span": (SDK_TRACE, "start_span"),
        "SDK Span.end (with the step record)": (SDK_TRACE, "end"),
    }  # fmt: skip
    total, *rest = profile(consume, info["st_on"], info["st_off"], 100, stream_parts).items()
    out[f"stream of {LONG} deltas"] = {"own_us": total[1] - bare, "parts_us": dict(rest)}
    return out


def main() -> None:
    load_start = load_average()
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        instrumented = instrumentations(Path(tmp), info)
        variants: dict[str, Variant] = {}
        for what, number in (
            ("call", CALL_NUMBER),
            (f"stream{SHORT}", STREAM_NUMBER),
            (f"stream{LONG}", STREAM_NUMBER),
        ):
            group = [
                Variant(f"{name}|{what}", calls(client)[what], on, off)
                for name, (on, off, client) in instrumented.items()
            ]
            interleave(group, number=number, batches=BATCHES)
            variants.update((v.name, v) for v in group)
        profiled = profile_steptrace(instrumented["bare"][2], info)
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    result = {
        "case": "bedrock",
        "batches": BATCHES,
        "call_number": CALL_NUMBER,
        "stream_number": STREAM_NUMBER,
        "deltas": [SHORT, LONG],
        "load_average_start": load_start,
        "variants": summarize(list(variants.values())),
        "added": {
            name: {what: added(variants, name, terms) for what, terms in TERMS.items()}
            for name in instrumented
            if name != "bare"
        },
        "steptrace_profile_us": profiled,
        "spans_exported": {name: c.count for name, c in info["spans_exported"].items()},
        "peers_missing": info["peers_missing"],
        "steptrace_records_written": records,
        "versions": versions("boto3", "botocore", "opentelemetry-sdk", PEER, "steptrace"),
    }
    emit(result)


if __name__ == "__main__":
    main()
