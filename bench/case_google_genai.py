"""Case 2, Google Gen AI: instrumenting the real ``google-genai`` client, on an in-process mock
HTTP transport (``http_options={"httpx_client": ...}``).

    .venv-bench/bin/python bench/case_google_genai.py

One process; variants alternate batch by batch, like case 2's OpenAI half: bare (nothing
instrumented), steptrace (``instrument_google_genai()`` inside an agent_run/agent_step, writing
its JSONL record and its histograms), steptrace outside a run (span and histograms only), and
opentelemetry-instrumentation-google-generativeai when installed (on its own SDK TracerProvider
whose SimpleSpanProcessor ends in an exporter that only counts, plus an SDK MeterProvider).
Content capture is off for all. Each variant is instrumented before its batch and uninstrumented
after it.

Measured: one ``models.generate_content``, and ``generate_content_stream`` streams of 20 and 200
chunks; the cost per chunk is the slope between the two stream lengths. The same again in CPU
time (``cpu_time`` in the JSON), the steadier figure on a shared machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions
from case_tool import CountingExporter

CALL_NUMBER = int(os.environ.get("BENCH_GENAI_NUMBER", "200"))
STREAM_NUMBER = int(os.environ.get("BENCH_GENAI_STREAM_NUMBER", "20"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
STREAM_BATCHES = int(os.environ.get("BENCH_GENAI_STREAM_BATCHES", str(BATCHES + 10)))
CPU_ROUNDS = int(os.environ.get("BENCH_GENAI_CPU_ROUNDS", "15"))
SHORT, LONG = 20, 200
MODEL = "gemini-2.5-flash"
PEER = "opentelemetry-instrumentation-google-generativeai"


def _response(
    parts: list[dict[str, Any]], finish: str | None, usage: dict[str, int] | None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "r1",
    }
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def _usage(output: int) -> dict[str, int]:
    return {"promptTokenCount": 12, "candidatesTokenCount": output, "totalTokenCount": 12 + output}


def _stream_events(chunks: int) -> list[bytes]:
    bodies = [_response([{"text": f" tok{i}"}], None, None) for i in range(chunks - 1)]
    bodies.append(_response([{"text": "."}], "STOP", _usage(chunks)))
    return [f"data: {json.dumps(body)}\r\n\r\n".encode() for body in bodies]


def make_client() -> Any:
    import httpx2
    from google import genai

    answer = json.dumps(_response([{"text": "Paris."}], "STOP", _usage(5))).encode()
    streams = {SHORT: _stream_events(SHORT), LONG: _stream_events(LONG)}

    class Body(httpx2.SyncByteStream):
        def __init__(self, events: list[bytes]) -> None:
            self.events = events

        def __iter__(self) -> Iterator[bytes]:
            yield from self.events

    def handler(request: httpx2.Request) -> httpx2.Response:
        if "streamGenerateContent" in request.url.path:
            text = json.loads(request.content)["contents"][0]["parts"][0]["text"]
            count = int(text.rsplit(" ", 1)[-1])
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, stream=Body(streams[count])
            )
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=answer)

    return genai.Client(
        api_key="bench-key",
        http_options={
            "base_url": "http://127.0.0.1:9",
            "httpx_client": httpx2.Client(transport=httpx2.MockTransport(handler)),
        },
    )


def calls(client: Any) -> dict[str, Callable[[], object]]:
    def generate() -> object:
        return client.models.generate_content(model=MODEL, contents="What is the capital of France?")

    def stream(chunks: int) -> Callable[[], object]:
        contents = f"count {chunks}"

        def consume() -> object:
            seen = 0
            for _chunk in client.models.generate_content_stream(model=MODEL, contents=contents):
                seen += 1
            assert seen == chunks, seen
            return seen

        return consume

    return {"call": generate, f"stream{SHORT}": stream(SHORT), f"stream{LONG}": stream(LONG)}


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
        steptrace.instrument_google_genai()
        exits = contextlib.ExitStack()
        exits.enter_context(steptrace.agent_run(agent="bench"))
        exits.enter_context(steptrace.agent_step())
        run.append(exits)

    def st_off() -> None:
        run.pop().close()
        steptrace.uninstrument_google_genai()

    found["steptrace"] = (st_on, st_off)
    found["steptrace, outside an agent run (no step record)"] = (
        steptrace.instrument_google_genai,
        steptrace.uninstrument_google_genai,
    )

    # Profile evidence for the per-chunk cost: the same, without the time-per-chunk histogram.
    from steptrace._spans import LlmRequest

    original = LlmRequest.record_chunk_times

    def no_chunk_histogram_on() -> None:
        LlmRequest.record_chunk_times = lambda self, times: None  # type: ignore[method-assign]
        st_on()

    def no_chunk_histogram_off() -> None:
        st_off()
        LlmRequest.record_chunk_times = original  # type: ignore[method-assign]

    found["steptrace, without the per-chunk histogram records"] = (
        no_chunk_histogram_on,
        no_chunk_histogram_off,
    )

    try:
        # The peer records prompts and completions unless told not to; steptrace's capture is off.
        os.environ["TRACELOOP_TRACE_CONTENT"] = "false"
        from opentelemetry.instrumentation.google_generativeai import GoogleGenerativeAiInstrumentor

        counters[PEER] = exporter = CountingExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
        options = {
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        }
        found[PEER] = (
            lambda: GoogleGenerativeAiInstrumentor().instrument(**options),
            lambda: GoogleGenerativeAiInstrumentor().uninstrument(),
        )
    except ImportError as exc:
        missing[PEER] = repr(exc)
    return found


def cpu_times(
    instrumented: dict[str, tuple[Any, Any]], work: dict[str, Callable[[], object]], repeats: int
) -> dict[str, Any]:
    """The same calls timed in this thread's CPU time (``time.thread_time``), variants rotating
    per round: on a loaded machine wall time mostly measures waiting for a core, CPU time the
    work. Medians over rounds, and what each variant adds to bare (per chunk: the slope)."""
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
        out["added_us"][name] = {"call": median["call"] - bare["call"], "chunk": slope / (LONG - SHORT)}
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
        interleave([v for v in variants if "|stream" in v.name], number=STREAM_NUMBER, batches=STREAM_BATCHES)
        cpu = cpu_times(instrumented, work, CPU_ROUNDS)
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    result = {
        "case": "google-genai",
        "batches": BATCHES,
        "stream_batches": STREAM_BATCHES,
        "call_number": CALL_NUMBER,
        "stream_number": STREAM_NUMBER,
        "chunks": [SHORT, LONG],
        "load_average_start": load_start,
        "variants": summarize(variants),
        "cpu_time": cpu,
        "spans_exported": {name: c.count for name, c in info["spans_exported"].items()},
        "peers_missing": info["peers_missing"],
        "steptrace_records_written": records,
        "versions": versions("google-genai", "httpx2", "opentelemetry-sdk", PEER, "steptrace"),
    }
    emit(result)


if __name__ == "__main__":
    main()
