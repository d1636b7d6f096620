"""Case: instrumenting the OpenAI Agents SDK, its Responses model on an in-process mock transport.

    .venv-bench/bin/python bench/case_openai_agents.py

One process, one event loop; variants alternate batch by batch: bare (nothing instrumented),
steptrace (``instrument_openai_agents()``: run, step, model and tool spans, step records and
histograms), and steptrace with ``instrument_openai()`` on too (the openai patch enriches the same
``llm_request``). The SDK's own tracing is disabled in every variant, so only steptrace's cost
differs. Measured: a one-turn run (a text answer) and a two-turn run (a function tool call, then
the answer); ``per_turn_overhead_us`` is the two-turn run's extra cost over bare, per turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_AGENTS_NUMBER", "100"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))


def _response(output: list[dict[str, Any]]) -> bytes:
    return json.dumps({
        "id": "resp_1", "object": "response", "created_at": 0, "model": "gpt-4.1",
        "status": "completed", "output": output, "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 27},
    }).encode()  # fmt: skip


ANSWER = _response([{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                     "content": [{"type": "output_text", "text": "Paris.", "annotations": []}]}])  # fmt: skip
CALL = _response([{"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "lookup",
                   "arguments": '{"city": "Paris"}', "status": "completed"}])  # fmt: skip


def make_client() -> Any:
    import httpx2
    import openai

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        items = body["input"] if isinstance(body["input"], list) else []
        wants_tool = "lookup" in {t.get("name") for t in body.get("tools", [])}
        answered = any(item.get("type") == "function_call_output" for item in items)
        content = CALL if wants_tool and not answered else ANSWER
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=content)

    return openai.AsyncOpenAI(
        api_key="sk-bench", base_url="http://127.0.0.1:9/v1", max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )  # fmt: skip


def calls(loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], object]]:
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)

    @function_tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: 18C"

    model = OpenAIResponsesModel("gpt-4.1", make_client())
    plain = Agent(name="plain", model=model)
    with_tool = Agent(name="with_tool", tools=[lookup], model=model)

    def one_turn() -> object:
        return loop.run_until_complete(Runner.run(plain, "Capital of France?")).final_output

    def two_turns() -> object:
        return loop.run_until_complete(Runner.run(with_tool, "Weather in Paris?")).final_output

    return {"1 turn": one_turn, "2 turns (tool)": two_turns}


def instrumentations(directory: Path) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    import steptrace

    steptrace.configure(
        "bench", tracer_provider=TracerProvider(), jsonl_path=directory / "steps.jsonl",
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]), capture_content=False,
    )  # fmt: skip

    def both_on() -> None:
        steptrace.instrument_openai_agents()
        steptrace.instrument_openai()

    def both_off() -> None:
        steptrace.uninstrument_openai()
        steptrace.uninstrument_openai_agents()

    return {
        "bare": (lambda: None, lambda: None),
        "steptrace": (steptrace.instrument_openai_agents, steptrace.uninstrument_openai_agents),
        "steptrace + instrument_openai": (both_on, both_off),
    }


def main() -> None:
    load_start = load_average()
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        work = calls(loop)
        variants = [
            Variant(f"{name}|{what}", fn, on, off)
            for name, (on, off) in instrumentations(Path(tmp)).items()
            for what, fn in work.items()
        ]
        interleave(variants, number=NUMBER, batches=BATCHES)
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    loop.close()
    medians = {v.name: v.median_us for v in variants}
    per_turn = {
        name: (medians[f"{name}|2 turns (tool)"] - medians["bare|2 turns (tool)"]) / 2
        for name in ("steptrace", "steptrace + instrument_openai")
    }
    result = {
        "case": "openai-agents",
        "batches": BATCHES,
        "number": NUMBER,
        "load_average_start": load_start,
        "variants": summarize(variants),
        "per_turn_overhead_us": per_turn,
        "steptrace_records_written": records,
        "versions": versions("openai-agents", "openai", "httpx2", "opentelemetry-sdk", "steptrace"),
    }
    emit(result)


if __name__ == "__main__":
    main()
