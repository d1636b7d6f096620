"""Step logs for the report tests and the README screenshot: a fleet over a day, two releases.

Release 1.4.0 mostly succeeds; 1.5.0 fails its tool more often and loops until ``max_steps``
more often, so the release diff has verdicts to show. Two agents, three tools, model errors and
slow runs; ``hostile=True`` adds runs whose agent, tool, model and error carry script payloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis_logs import MS, T0_NS, Span, make_run, write_jsonl
from steptrace import _attributes as A

# Every payload tries to set window.__pwned; the report must show them as text.
PAYLOADS = {
    "script": "<script>window.__pwned = 'script'</script>",
    "close": "</script><script>window.__pwned = 'close'</script>",
    "attribute": '" onmouseover="window.__pwned = \'attribute\'" x="',
    "image": "<img src=x onerror=\"window.__pwned = 'image'\">",
    "comment": "<!-- <script>window.__pwned = 'comment'</script>",
}
HOSTILE_AGENT = "agent" + PAYLOADS["attribute"]
HOSTILE_TOOL = "lookup" + PAYLOADS["image"]
HOSTILE_MODEL = "gpt" + PAYLOADS["script"]
HOSTILE_ERROR = "ValueError: " + PAYLOADS["close"]
HOSTILE_RUN_ID = "__proto__" + PAYLOADS["comment"]
RUNS_PER_RELEASE = 30
_KINDS = {
    "1.4.0": ["ok", "ok", "ok", "ok", "tool_error", "ok", "slow", "ok", "loop", "ok"],
    "1.5.0": ["ok", "loop", "tool_error", "ok", "loop", "model_error", "ok", "tool_error", "slow", "ok"],
}


def _rename_tool(spans: list[Span], old: str, new: str) -> None:
    for span in spans:
        if span.attributes.get(A.GEN_AI_TOOL_NAME) == old:
            span.attributes[A.GEN_AI_TOOL_NAME] = new


def fleet_spans(*, hostile: bool = False) -> list[Span]:
    """60 runs 20 minutes apart (1.4.0 first, then 1.5.0), and with ``hostile`` two more."""
    spans: list[Span] = []
    number = 0
    for release, kinds in _KINDS.items():
        for i in range(RUNS_PER_RELEASE):
            kind = kinds[i % len(kinds)]
            agent = "weather-agent" if i % 3 else "travel-agent"
            run = make_run(
                f"{release}-run-{i:03d}",
                kind,
                release=release,
                agent=agent,
                seed=number,
                start_ns=T0_NS + number * 20 * 60_000 * MS,
                llm_ms=400.0 if release == "1.4.0" else 520.0,
            )
            if agent == "travel-agent":
                _rename_tool(run, "get_weather", "book_hotel")
            spans += run
            number += 1
    if hostile:
        spans += hostile_spans(T0_NS + number * 20 * 60_000 * MS)
    return spans


def hostile_spans(start_ns: int) -> list[Span]:
    """A failing and a looping run whose agent, tool, model and error are payloads, and a slow
    run whose id is one."""
    spans = make_run("hostile-fail", "tool_error", release="1.5.0", agent=HOSTILE_AGENT, start_ns=start_ns)
    spans += make_run(
        "hostile-loop", "loop", release="1.5.0", agent=HOSTILE_AGENT, start_ns=start_ns + 60_000 * MS
    )
    # A run id is text from the logs too (and "__proto__" must stay a plain key in the page).
    spans += make_run(HOSTILE_RUN_ID, "slow", release="1.5.0", start_ns=start_ns + 120_000 * MS)
    for span in spans:
        attributes: dict[str, Any] = span.attributes
        if span.name == A.SPAN_TOOL_EXECUTION:
            attributes[A.GEN_AI_TOOL_NAME] = HOSTILE_TOOL
            if span.status == "error":
                span.description = HOSTILE_ERROR
        if span.name == A.SPAN_LLM_REQUEST:
            attributes[A.GEN_AI_REQUEST_MODEL] = HOSTILE_MODEL
            attributes[A.GEN_AI_RESPONSE_MODEL] = HOSTILE_MODEL
        if span.status == "error" and span.name != A.SPAN_TOOL_EXECUTION:
            span.description = HOSTILE_ERROR
    return spans


def fleet_log(directory: Path, *, hostile: bool = False, name: str = "steps.jsonl") -> Path:
    return write_jsonl(directory / name, fleet_spans(hostile=hostile))
