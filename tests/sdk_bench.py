"""Overhead of steptrace's openai/anthropic instrumentation against the bare SDK call, on the
same httpx2 mock transport.

    .venv/bin/python tests/sdk_bench.py

Per call: a non-streamed ``chat.completions.create`` (and anthropic ``messages.create``).
Per chunk: the slope between a 50- and a 500-chunk stream, so per-call costs cancel out; shown
with and without the end-of-stream time-per-chunk histogram records. Spans go to a provider
without processors, metrics to an in-memory reader: the instrumentation's own cost only.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import sdk_fakes as F
from steptrace.instrumentation.anthropic import AnthropicInstrumentor
from steptrace.instrumentation.openai import OpenAIInstrumentor

MESSAGES = [{"role": "user", "content": "hi"}]


class Endless(F.Script):
    """Replies with the same canned response forever."""

    def __init__(self, reply: F.Canned) -> None:
        super().__init__()
        self.reply = reply

    def __call__(self, request: Any) -> Any:
        self.replies = [self.reply]
        return super().__call__(request)


def best_of(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Median seconds per call over ``repeat`` rounds of ``number`` calls."""
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


def measure(
    instrument: Callable[[], None],
    uninstrument: Callable[[], None],
    fn: Callable[[], object],
    repeat: int,
    number: int,
) -> tuple[float, float]:
    for _ in range(50):
        fn()
    bare = best_of(fn, repeat, number)
    instrument()
    try:
        for _ in range(50):
            fn()
        traced = best_of(fn, repeat, number)
    finally:
        uninstrument()
    return bare, traced


def main() -> None:
    providers = {
        "tracer_provider": TracerProvider(),
        "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
    }
    openai_on = lambda: OpenAIInstrumentor().instrument(**providers)  # noqa: E731
    openai_off = OpenAIInstrumentor().uninstrument

    client = F.openai_client(Endless(F.json_reply(F.chat_completion())))
    bare, traced = measure(
        openai_on,
        openai_off,
        lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES),
        7,
        300,
    )
    print(
        f"openai chat.create       bare {bare * 1e6:8.1f} us  traced {traced * 1e6:8.1f} us"
        f"  overhead {(traced - bare) * 1e6:6.1f} us/call"
    )

    anthropic_on = lambda: AnthropicInstrumentor().instrument(**providers)  # noqa: E731
    anthropic_off = AnthropicInstrumentor().uninstrument
    aclient = F.anthropic_client(Endless(F.json_reply(F.anthropic_message())))
    bare, traced = measure(
        anthropic_on,
        anthropic_off,
        lambda: aclient.messages.create(model="claude-test", max_tokens=9, messages=MESSAGES),
        7,
        300,
    )
    print(
        f"anthropic messages.create bare {bare * 1e6:8.1f} us  traced {traced * 1e6:8.1f} us"
        f"  overhead {(traced - bare) * 1e6:6.1f} us/call"
    )

    results = {}
    for chunks in (50, 500):
        body = F.openai_sse(F.chat_chunks([f"t{i}" for i in range(chunks)]))
        stream_client = F.openai_client(Endless(F.sse_reply(body)))

        def consume(c: object = stream_client) -> None:
            for _chunk in c.chat.completions.create(  # type: ignore[attr-defined]
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            ):
                pass

        results[chunks] = measure(openai_on, openai_off, consume, 7, 20)
    (bare_50, traced_50), (bare_500, traced_500) = results[50], results[500]
    per_chunk = ((traced_500 - traced_50) - (bare_500 - bare_50)) / 450
    print(f"openai stream, per call (50 chunks) overhead {(traced_50 - bare_50) * 1e6:7.1f} us")
    print(f"openai stream, per chunk incl. end-of-stream histogram records {per_chunk * 1e6:5.2f} us")

    # The hot path alone: the proxy's __next__ and the observer, without the histogram records.
    from steptrace._spans import LlmRequest

    original = LlmRequest.record_chunk_times
    LlmRequest.record_chunk_times = lambda self, times: None  # type: ignore[method-assign]
    try:
        for chunks in (50, 500):
            body = F.openai_sse(F.chat_chunks([f"t{i}" for i in range(chunks)]))
            stream_client = F.openai_client(Endless(F.sse_reply(body)))

            def consume2(c: object = stream_client) -> None:
                for _chunk in c.chat.completions.create(  # type: ignore[attr-defined]
                    model="gpt-4o", messages=MESSAGES, stream=True
                ):
                    pass

            results[chunks] = measure(openai_on, openai_off, consume2, 7, 20)
    finally:
        LlmRequest.record_chunk_times = original  # type: ignore[method-assign]
    (bare_50, traced_50), (bare_500, traced_500) = results[50], results[500]
    per_chunk = ((traced_500 - traced_50) - (bare_500 - bare_50)) / 450
    print(f"openai stream, per chunk on the hot path (proxy + observer)     {per_chunk * 1e6:5.2f} us")


if __name__ == "__main__":
    main()
