"""Case 2: instrumenting the real ``openai`` client, on an in-process mock HTTP transport.

    .venv-bench/bin/python bench/case_openai.py

One process; variants alternate batch by batch: bare (nothing instrumented), steptrace
(``instrument_openai()``, inside an agent_run/agent_step, writing its JSONL record and its
histograms), opentelemetry-instrumentation-openai-v2 and openinference-instrumentation-openai
(each on its own SDK TracerProvider whose SimpleSpanProcessor ends in an exporter that only
counts, plus an SDK MeterProvider where the instrumentation records metrics). Each variant is
instrumented before its batch and uninstrumented after it.

Measured: one ``chat.completions.create``, and streams of 20 and 200 chunks; the cost per
chunk is the slope between the two stream lengths (per-call costs cancel out).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions
from case_tool import CountingExporter

CALL_NUMBER = int(os.environ.get("BENCH_OPENAI_NUMBER", "200"))
STREAM_NUMBER = int(os.environ.get("BENCH_OPENAI_STREAM_NUMBER", "30"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
# The per-chunk slope is a small difference of large stream times: more batches for streams.
STREAM_BATCHES = int(os.environ.get("BENCH_OPENAI_STREAM_BATCHES", str(BATCHES + 10)))
SHORT, LONG = 20, 200
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _completion() -> bytes:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Paris.", "refusal": None}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }).encode()  # fmt: skip


def _stream_events(chunks: int) -> list[bytes]:
    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else [],
            **extra,
        }  # fmt: skip
        return f"data: {json.dumps(body)}\n\n".encode()

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": f" tok{i}"}) for i in range(chunks - 3)]  # + role, finish, usage
    events.append(event({}, "stop"))
    events.append(
        event(None, usage={"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks})
    )  # type: ignore[arg-type]
    events.append(b"data: [DONE]\n\n")
    return events


def make_client() -> Any:
    import httpx2
    import openai

    completion = _completion()
    streams = {SHORT: _stream_events(SHORT), LONG: _stream_events(LONG)}

    class Body(httpx2.SyncByteStream):
        def __init__(self, events: list[bytes]) -> None:
            self.events = events

        def __iter__(self) -> Iterator[bytes]:
            yield from self.events

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            count = int(body["messages"][0]["content"].rsplit(" ", 1)[-1])
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, stream=Body(streams[count])
            )
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=completion)

    return openai.OpenAI(
        api_key="sk-bench", base_url="http://127.0.0.1:9/v1", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )  # fmt: skip


def calls(client: Any) -> dict[str, Callable[[], object]]:
    def chat() -> object:
        return client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    def stream(chunks: int) -> Callable[[], object]:
        messages = [{"role": "user", "content": f"count {chunks}"}]

        def consume() -> object:
            seen = 0
            for _chunk in client.chat.completions.create(
                model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
            ):
                seen += 1
            assert seen == chunks, seen
            return seen

        return consume

    return {"call": chat, f"stream{SHORT}": stream(SHORT), f"stream{LONG}": stream(LONG)}


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
        steptrace.instrument_openai()
        exits = contextlib.ExitStack()
        exits.enter_context(steptrace.agent_run(agent="bench"))
        exits.enter_context(steptrace.agent_step())
        run.append(exits)

    def st_off() -> None:
        run.pop().close()
        steptrace.uninstrument_openai()

    found["steptrace"] = (st_on, st_off)

    def st_bare_on() -> None:
        steptrace.instrument_openai()

    # Outside any agent run no step record is written: the span and histograms only, like the peers.
    found["steptrace, outside an agent run (no step record)"] = (st_bare_on, steptrace.uninstrument_openai)

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

    def providers(name: str) -> dict[str, Any]:
        counters[name] = exporter = CountingExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
        return {
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        }

    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2

        v2_options = providers("opentelemetry-instrumentation-openai-v2")
        found["opentelemetry-instrumentation-openai-v2"] = (
            lambda: V2().instrument(**v2_options),
            lambda: V2().uninstrument(),
        )
    except ImportError as exc:
        missing["opentelemetry-instrumentation-openai-v2"] = repr(exc)
    try:
        from openinference.instrumentation.openai import OpenAIInstrumentor as OI

        oi_options = providers("openinference-instrumentation-openai")
        oi_options.pop("meter_provider")
        found["openinference-instrumentation-openai"] = (
            lambda: OI().instrument(**oi_options),
            lambda: OI().uninstrument(),
        )
    except ImportError as exc:
        missing["openinference-instrumentation-openai"] = repr(exc)
    return found


def main() -> None:
    load_start = load_average()
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        client = make_client()
        work = calls(client)
        variants: list[Variant] = []
        for name, (on, off) in instrumentations(Path(tmp), info).items():
            for what, fn in work.items():
                variants.append(Variant(f"{name}|{what}", fn, on, off))
        # Calls and streams differ ~10x in cost: time them in separate interleaved groups.
        interleave([v for v in variants if v.name.endswith("|call")], number=CALL_NUMBER, batches=BATCHES)
        interleave([v for v in variants if "|stream" in v.name], number=STREAM_NUMBER, batches=STREAM_BATCHES)
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    result = {
        "case": "openai",
        "batches": BATCHES,
        "stream_batches": STREAM_BATCHES,
        "call_number": CALL_NUMBER,
        "stream_number": STREAM_NUMBER,
        "chunks": [SHORT, LONG],
        "load_average_start": load_start,
        "variants": summarize(variants),
        "spans_exported": {name: c.count for name, c in info["spans_exported"].items()},
        "peers_missing": info["peers_missing"],
        "steptrace_records_written": records,
        "versions": versions(
            "openai", "httpx2", "opentelemetry-sdk", "opentelemetry-instrumentation-openai-v2",
            "openinference-instrumentation-openai", "steptrace",
        ),
    }  # fmt: skip
    emit(result)


if __name__ == "__main__":
    main()
