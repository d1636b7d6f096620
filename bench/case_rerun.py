"""Case: what recording for rerun costs (``configure(record_for_rerun=True)``), side by side.

    .venv-bench/bin/python bench/case_rerun.py

A decorated tool call and a decorated model call (returning an OpenAI-shaped dict), each inside
an open agent_run/agent_step, with recording off and on. Each batch opens its own run, so every
recorded call appends a line to that run's recording file (the real write path, to a temporary
directory); the step log is written in both variants.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_NUMBER", "2000"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))

REPLY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


def main() -> None:
    import steptrace

    directory = Path(tempfile.mkdtemp(prefix="steptrace-bench-rerun-"))

    @steptrace.tool
    def lookup(city: str, units: str = "metric") -> dict[str, Any]:
        return {"city": city, "temperature": 21, "units": units}

    @steptrace.llm_request(provider="openai", model="gpt-4o-mini")
    def model(messages: list[dict[str, str]]) -> dict[str, Any]:
        return REPLY

    messages = [{"role": "user", "content": "Capital of France?"}]
    stack = ExitStack()

    def opener(record: bool) -> Any:
        def enter() -> None:
            steptrace.configure(
                "bench-rerun",
                jsonl_path=directory / ("on" if record else "off") / "steps.jsonl",
                record_for_rerun=record,
                capture_content=True,
            )
            stack.enter_context(steptrace.agent_run(agent="bench"))
            stack.enter_context(steptrace.agent_step())

        return enter

    def leave() -> None:
        stack.close()

    variants = [
        Variant("tool call, recording off", lambda: lookup("Paris"), opener(False), leave),
        Variant("tool call, recording on", lambda: lookup("Paris"), opener(True), leave),
        Variant("model call, recording off", lambda: model(messages), opener(False), leave),
        Variant("model call, recording on", lambda: model(messages), opener(True), leave),
    ]
    start = load_average()
    interleave(variants, number=NUMBER, batches=BATCHES)
    recordings = sorted((directory / "on" / "rerun").glob("*.jsonl"))
    emit(
        {
            "case": "rerun",
            "number": NUMBER,
            "batches": BATCHES,
            "load_average_start": start,
            "variants": summarize(variants),
            "recordings_written": len(recordings),
            "recorded_bytes": sum(path.stat().st_size for path in recordings),
            "versions": versions("steptrace", "opentelemetry-sdk"),
        }
    )


if __name__ == "__main__":
    main()
