"""Amazon Bedrock: instrumenting the real boto3 ``bedrock-runtime`` client, with botocore's whole
pipeline (serializing, signing, parsing, the event-stream decoder) and canned replies handed back
in-process by a ``before-send`` handler, so no socket adds noise.

    .venv/bin/python bench/case_bedrock.py

One process; variants alternate batch by batch: bare (nothing instrumented), steptrace
(``instrument_bedrock()`` inside an agent_run/agent_step, writing its JSONL record and its
histograms), steptrace outside a run (span and histograms only), and OpenLLMetry's
opentelemetry-instrumentation-bedrock when installed (SimpleSpanProcessor into an exporter that
only counts). Content capture is off for all. Measured: one ``converse``, and ``converse_stream``
streams of 20 and 200 text deltas (per delta: the slope); wall time and this thread's CPU time.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions
from case_tool import CountingExporter

CALL_NUMBER = int(os.environ.get("BENCH_BEDROCK_NUMBER", "200"))
STREAM_NUMBER = int(os.environ.get("BENCH_BEDROCK_STREAM_NUMBER", "20"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
CPU_ROUNDS = int(os.environ.get("BENCH_BEDROCK_CPU_ROUNDS", "15"))
SHORT, LONG = 20, 200
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PEER = "opentelemetry-instrumentation-bedrock"
MESSAGES = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]


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


def instrumentations(directory: Path, info: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """name -> (instrument, uninstrument), run outside the timed loops."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    import steptrace

    found: dict[str, tuple[Any, Any]] = {"bare": (lambda: None, lambda: None)}
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

    found["steptrace"] = (st_on, st_off)
    found["steptrace, outside an agent run (no step record)"] = (
        steptrace.instrument_bedrock,
        steptrace.uninstrument_bedrock,
    )
    try:
        os.environ["TRACELOOP_TRACE_CONTENT"] = "false"
        from opentelemetry.instrumentation.bedrock import BedrockInstrumentor

        counters[PEER] = exporter = CountingExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
        options = {
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        }
        found[PEER] = (
            lambda: BedrockInstrumentor().instrument(**options),
            lambda: BedrockInstrumentor().uninstrument(),
        )
    except ImportError as exc:
        missing[PEER] = repr(exc)
    return found


def cpu_times(
    instrumented: dict[str, tuple[Any, Any]], work: dict[str, Callable[[], object]], repeats: int
) -> dict[str, Any]:
    """The same calls in this thread's CPU time, variants rotating per round; what each adds to bare."""
    plan = {"call": 100, f"stream{SHORT}": 10, f"stream{LONG}": 4}
    names = list(instrumented)
    samples: dict[str, dict[str, list[float]]] = {name: {what: [] for what in plan} for name in names}
    for round_number in range(repeats):
        for offset in range(len(names)):
            name = names[(round_number + offset) % len(names)]
            on, off = instrumented[name]
            on()
            try:
                for what, number in plan.items():
                    fn = work[what]
                    for _ in range(3):
                        fn()
                    start = time.thread_time()
                    for _ in range(number):
                        fn()
                    samples[name][what].append((time.thread_time() - start) / number * 1e6)
            finally:
                off()
    medians = {name: {what: statistics.median(v) for what, v in per.items()} for name, per in samples.items()}
    bare = medians["bare"]
    out: dict[str, Any] = {"rounds": repeats, "median_us": medians, "added_us": {}}
    for name, median in medians.items():
        slope = (median[f"stream{LONG}"] - median[f"stream{SHORT}"]) - (
            bare[f"stream{LONG}"] - bare[f"stream{SHORT}"]
        )
        out["added_us"][name] = {"call": median["call"] - bare["call"], "delta": slope / (LONG - SHORT)}
    return out


def main() -> None:
    load_start = load_average()
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        client = make_client()
        work = calls(client)
        variants: list[Variant] = []
        instrumented = instrumentations(Path(tmp), info)
        for name, (on, off) in instrumented.items():
            for what, fn in work.items():
                variants.append(Variant(f"{name}|{what}", fn, on, off))
        interleave([v for v in variants if v.name.endswith("|call")], number=CALL_NUMBER, batches=BATCHES)
        interleave([v for v in variants if "|stream" in v.name], number=STREAM_NUMBER, batches=BATCHES)
        cpu = cpu_times(instrumented, work, CPU_ROUNDS)
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    result = {
        "case": "bedrock",
        "batches": BATCHES,
        "call_number": CALL_NUMBER,
        "stream_number": STREAM_NUMBER,
        "deltas": [SHORT, LONG],
        "load_average_start": load_start,
        "variants": summarize(variants),
        "cpu_time": cpu,
        "spans_exported": {name: c.count for name, c in info["spans_exported"].items()},
        "peers_missing": info["peers_missing"],
        "steptrace_records_written": records,
        "versions": versions("boto3", "botocore", "opentelemetry-sdk", PEER, "steptrace"),
    }
    emit(result)


if __name__ == "__main__":
    main()
