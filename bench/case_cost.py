"""The cost of ``configure(record_cost=True)``: one model call with and without its price.

    .venv-bench/bin/python bench/case_cost.py

One process, one configuration writing the real JSONL step log; the variants alternate batch by
batch and differ only in the active configuration's ``record_cost`` (what configure() sets):
a ``@steptrace.llm_request`` function returning an OpenAI-shaped response with usage (cached
and reasoning tokens), inside an agent_run/agent_step. The difference of the medians is what
pricing adds to each model call; "price only" times the pricing call alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_NUMBER", "2000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))

RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris."}}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 50,
        "total_tokens": 1250,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def main() -> None:
    import steptrace
    from steptrace import _state
    from steptrace._pricing import price_now

    start = load_average()
    directory = tempfile.mkdtemp(prefix="steptrace-bench-cost-")
    telemetry = steptrace.configure(
        "bench-cost", jsonl_path=Path(directory) / "steps.jsonl", capture_content=False, record_cost=True
    )
    config = _state.active()
    assert config is not None and config.record_cost

    @steptrace.llm_request(provider="openai", model="gpt-4o")
    def call_model() -> dict[str, Any]:
        return RESPONSE

    def pricing(on: bool) -> None:
        config.record_cost = on

    with steptrace.agent_run(agent="bench", release="1"), steptrace.agent_step():
        variants = interleave(
            [
                Variant("llm_request, record_cost off", call_model, lambda: pricing(False)),
                Variant("llm_request, record_cost on", call_model, lambda: pricing(True)),
                Variant(
                    "price only", lambda: price_now("openai", "gpt-4o-2024-08-06", 1200, 50, 1024, None, 0)
                ),
            ],
            number=NUMBER,
            batches=BATCHES,
        )
    telemetry.shutdown()
    result = summarize(variants)
    emit(
        {
            "case": "cost",
            "number": NUMBER,
            "batches": BATCHES,
            "versions": versions("opentelemetry-sdk", "genai-prices"),
            "load_average_start": start,
            "variants": result,
            "record_cost_adds_us": result["llm_request, record_cost on"]["median_us"]
            - result["llm_request, record_cost off"]["median_us"],
        }
    )


if __name__ == "__main__":
    main()
