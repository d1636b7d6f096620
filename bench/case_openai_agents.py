"""Case: instrumenting the OpenAI Agents SDK, its Responses model on an in-process mock transport.

    .venv-bench/bin/python bench/case_openai_agents.py

One process, one event loop; variants alternate batch by batch: bare (nothing instrumented),
steptrace (``instrument_openai_agents()``: run, step, model and tool spans, step records and
histograms), and steptrace with ``instrument_openai()`` on too (the openai patch enriches the same
``llm_request``). The SDK's own tracing is disabled in every variant, so only steptrace's cost
differs. Measured: a one-turn run (a text answer) and a two-turn run (a function tool call, then
the answer); ``per_turn_overhead_us`` is the two-turn run's extra cost over bare, per turn.
The SDK spends milliseconds per run, so on a busy machine that difference drowns in noise: the
same two-turn run is also timed with the SDK's pieces replaced by trivial coroutines, bare and
through steptrace's wrappers (``instrumentation path only``): steptrace's own cost per turn.
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
PATH_NUMBER = NUMBER * 20  # the instrumentation path alone is ~20x faster than a real run
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


def instrumentation_path(loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], object]]:
    """The same two-turn run (a tool call, then the answer) with the SDK's loop, model and tool
    replaced by trivial coroutines, bare and through steptrace's wrappers: steptrace's own cost
    per run, without the SDK's few milliseconds (and their noise) around it."""
    from types import SimpleNamespace

    from agents.items import ModelResponse
    from agents.usage import Usage
    from openai.types.responses import ResponseFunctionToolCall

    from steptrace.instrumentation import openai_agents as oa
    from steptrace.instrumentation._common import ConfigSource

    source = ConfigSource()
    agent = SimpleNamespace(name="bench")
    bindings = SimpleNamespace(public_agent=agent)
    model = SimpleNamespace(model="gpt-4.1")
    tool = SimpleNamespace(name="lookup")
    tool_context = SimpleNamespace(tool_call_id="call_1")
    usage = Usage(requests=1, input_tokens=20, output_tokens=7, total_tokens=27)
    call = ResponseFunctionToolCall(
        type="function_call", call_id="call_1", name="lookup", arguments='{"city": "Paris"}'
    )
    responses = [ModelResponse([call], usage, "resp_1"), ModelResponse([], usage, "resp_2")]
    final = SimpleNamespace(next_step=SimpleNamespace())
    run_wrapper, turn_wrapper = oa._run_wrapper(source), oa._turn_wrapper(source, 0)
    model_wrapper, tool_wrapper = oa._model_wrapper(source), oa._tool_wrapper(source)

    async def get_response(turn: int) -> object:
        return responses[turn]

    async def invoke_tool(**kwargs: object) -> object:
        return SimpleNamespace(output="18C", is_sdk_generated_error=False)

    def bare_turn(turn: int) -> Callable[..., object]:
        async def body(**kwargs: object) -> object:
            await get_response(turn)
            if turn == 0:
                await invoke_tool(function_tool=tool, context=tool_context, arguments='{"city": "Paris"}')
            return final

        return body

    def traced_turn(turn: int) -> Callable[..., object]:
        async def body(**kwargs: object) -> object:
            await model_wrapper(get_response, model, (turn,), {})
            if turn == 0:
                kwargs = {"function_tool": tool, "context": tool_context, "arguments": '{"city": "Paris"}'}
                await tool_wrapper(invoke_tool, None, (), kwargs)
            return final

        return body

    async def bare_run(agent: object) -> None:
        for turn in (0, 1):
            await bare_turn(turn)(bindings=bindings)

    async def traced_run(agent: object) -> None:
        for turn in (0, 1):
            await turn_wrapper(traced_turn(turn), None, (), {"bindings": bindings})

    return {
        "bare": lambda: loop.run_until_complete(bare_run(agent)),
        "steptrace": lambda: loop.run_until_complete(run_wrapper(traced_run, None, (agent,), {})),
    }


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
        paths = [
            Variant(f"{name}|2 turns, instrumentation path only", fn)
            for name, fn in instrumentation_path(loop).items()
        ]
        interleave(paths, number=PATH_NUMBER, batches=BATCHES)
        variants += paths
        records = (Path(tmp) / "steps.jsonl").read_bytes().count(b"\n")
    loop.close()
    medians = {v.name: v.median_us for v in variants}
    per_turn = {
        name: (medians[f"{name}|2 turns (tool)"] - medians["bare|2 turns (tool)"]) / 2
        for name in ("steptrace", "steptrace + instrument_openai")
    }
    per_turn["steptrace, instrumentation path only"] = (
        medians["steptrace|2 turns, instrumentation path only"]
        - medians["bare|2 turns, instrumentation path only"]
    ) / 2
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
