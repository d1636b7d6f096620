"""Generate step logs for the analysis tests: ok, failing, looping, slow and crashed runs.

Spans are built as plain values and turned into records by the real ``build_record``, so the
JSONL written here is what the exporter writes; the same spans can be written as OTLP JSON
(the Collector's file exporter format) to check both readers agree.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steptrace import _attributes as A
from steptrace._records import build_record

T0_NS = 1_795_000_000 * 1_000_000_000  # 2026-11-18, a fixed start so outputs are reproducible
MS = 1_000_000


@dataclass
class Span:
    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_ns: int
    end_ns: int
    status: str = "ok"
    description: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def record(self, service: str | None = "weather-svc") -> dict[str, Any]:
        record = build_record(
            name=self.name,
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            status=self.status,
            status_description=self.description,
            attributes=self.attributes,
            service=service,
        )
        assert record is not None
        return record


def args_hash(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _RunBuilder:
    """Lays out one run's spans on a clock, numbering steps in start order."""

    def __init__(self, run_id: str, start_ns: int, rng: random.Random) -> None:
        self.run_id = run_id
        self.rng = rng
        self.trace_id = rng.getrandbits(128)
        self.clock = start_ns
        self.next_step = 1
        self.spans: list[Span] = []  # end order, as the exporter writes them

    def new_id(self) -> int:
        return self.rng.getrandbits(64) | 1

    def base(self, agent_step: int | None) -> dict[str, Any]:
        attributes: dict[str, Any] = {A.RUN_ID: self.run_id, A.STEP: self.next_step}
        self.next_step += 1
        if agent_step is not None:
            attributes[A.AGENT_STEP_NUMBER] = agent_step
        return attributes

    def llm(
        self,
        parent: int,
        agent_step: int,
        duration_ms: float,
        *,
        stop: str = "tool_use",
        tokens: tuple[int, int] = (120, 30),
        error: tuple[str, str] | None = None,
        tool_calls: Sequence[str] = (),
    ) -> None:
        attributes = self.base(agent_step)
        attributes.update(
            {
                A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                A.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
                A.GEN_AI_PROVIDER_NAME: "openai",
                A.GEN_AI_INPUT_MESSAGES: json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
                ),
            }
        )
        start = self.clock
        self.clock += int(duration_ms * MS)
        status, description = "ok", None
        if error is None:
            attributes.update(
                {
                    A.GEN_AI_USAGE_INPUT_TOKENS: tokens[0],
                    A.GEN_AI_USAGE_OUTPUT_TOKENS: tokens[1],
                    A.STOP_REASON: stop,
                    A.GEN_AI_RESPONSE_FINISH_REASONS: ["tool_calls" if stop == "tool_use" else "stop"],
                    A.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny"}]}]
                    ),
                    A.LLM_TOOL_CALLS: json.dumps(
                        [{"name": n, "id": f"call_{i}"} for i, n in enumerate(tool_calls)]
                    ),
                }
            )
        else:
            attributes[A.ERROR_TYPE] = error[0]
            status, description = "error", f"{error[0]}: {error[1]}"
        self.spans.append(
            Span(
                A.SPAN_LLM_REQUEST,
                self.trace_id,
                self.new_id(),
                parent,
                start,
                self.clock,
                status,
                description,
                attributes,
            )
        )
        self.clock += 1 * MS

    def tool(
        self,
        parent: int,
        agent_step: int,
        tool: str,
        arguments: dict[str, Any],
        duration_ms: float,
        *,
        result: Any = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        attributes = self.base(agent_step)
        attributes.update(
            {
                A.GEN_AI_TOOL_NAME: tool,
                A.GEN_AI_TOOL_CALL_ID: f"call_{self.next_step}",
                A.GEN_AI_TOOL_CALL_ARGUMENTS: json.dumps(arguments),
                A.TOOL_ARGS_HASH: args_hash(arguments),
            }
        )
        status, description = "ok", None
        if error is None:
            attributes[A.GEN_AI_TOOL_CALL_RESULT] = json.dumps(result)
        else:
            attributes[A.ERROR_TYPE] = error[0]
            status, description = "error", f"{error[0]}: {error[1]}"
        start = self.clock
        self.clock += int(duration_ms * MS)
        self.spans.append(
            Span(
                A.SPAN_TOOL_EXECUTION,
                self.trace_id,
                self.new_id(),
                parent,
                start,
                self.clock,
                status,
                description,
                attributes,
            )
        )
        self.clock += 1 * MS


def make_run(
    run_id: str,
    kind: str = "ok",
    *,
    release: str = "1.0.0",
    agent: str = "weather-agent",
    start_ns: int = T0_NS,
    seed: int = 0,
    complete: bool = True,
    max_steps: int = 6,
    llm_ms: float = 400.0,
    tool_ms: float = 40.0,
    tool_result: Any = None,
) -> list[Span]:
    """One run's spans in end order. ``kind``: ok, tool_error, loop, model_error, slow."""
    rng = random.Random(f"{run_id}-{seed}")
    b = _RunBuilder(run_id, start_ns, rng)
    run_span_id = b.new_id()
    run_start = b.clock
    b.clock += 2 * MS
    run_status, run_error, stop = "ok", None, "end_turn"
    jitter = 1.0 + rng.random() * 0.2
    if kind == "slow":
        llm_ms *= 10
    agent_steps = 2 if kind != "loop" else max_steps
    for number in range(1, agent_steps + 1):
        step_attributes = b.base(None)
        step_attributes.update({A.AGENT_STEP_NUMBER: number, A.AGENT_STEP_ID: f"{run_id}-s{number}"})
        step_id = b.new_id()
        step_start = b.clock
        b.clock += 1 * MS
        step_status, step_error = "ok", None
        last = number == agent_steps
        if kind == "model_error" and number == 1:
            b.llm(step_id, number, 50, error=("openai.RateLimitError", "rate limit exceeded"))
            step_status, step_error = "error", ("openai.RateLimitError", "rate limit exceeded")
        elif kind == "loop":
            b.llm(step_id, number, llm_ms * jitter, tool_calls=["search"])
            b.tool(step_id, number, "search", {"query": "weather paris"}, tool_ms, result={"hits": 0})
            if last:
                stop = "max_steps"
        elif not last:
            b.llm(step_id, number, llm_ms * jitter, tool_calls=["get_weather"])
            if kind == "tool_error":
                b.tool(
                    step_id,
                    number,
                    "get_weather",
                    {"city": "Atlantis"},
                    tool_ms,
                    error=("ValueError", "no such city"),
                )
                step_status, step_error = "error", ("ValueError", "no such city")
            else:
                b.tool(
                    step_id,
                    number,
                    "get_weather",
                    {"city": "Paris"},
                    tool_ms * jitter,
                    result=tool_result if tool_result is not None else {"temp_c": 21},
                )
        else:
            b.llm(step_id, number, llm_ms * jitter, stop="end_turn")
            step_attributes[A.AGENT_STEP_ENDS_RUN] = True
            step_attributes[A.STOP_REASON] = "end_turn"
        b.clock += 1 * MS
        if step_error is not None:
            step_attributes[A.ERROR_TYPE] = step_error[0]
        if kind == "loop" and last:
            step_attributes[A.AGENT_STEP_ENDS_RUN] = True
            step_attributes[A.STOP_REASON] = "max_steps"
        b.spans.append(
            Span(
                A.SPAN_AGENT_STEP,
                b.trace_id,
                step_id,
                run_span_id,
                step_start,
                b.clock,
                step_status,
                None if step_error is None else ": ".join(step_error),
                step_attributes,
            )
        )
        if step_error is not None:
            run_status, run_error, stop = "error", step_error, "error"
            break
    b.clock += 2 * MS
    if not complete:
        return b.spans
    llm = [s for s in b.spans if s.name == A.SPAN_LLM_REQUEST]
    run_attributes: dict[str, Any] = {
        A.RUN_ID: run_id,
        A.GEN_AI_AGENT_NAME: agent,
        A.GEN_AI_AGENT_VERSION: release,
        A.STOP_REASON: stop,
        A.RUN_STEPS: sum(1 for s in b.spans if s.name == A.SPAN_AGENT_STEP),
        A.RUN_LLM_CALLS: len(llm),
        A.RUN_TOOL_CALLS: sum(1 for s in b.spans if s.name == A.SPAN_TOOL_EXECUTION),
        A.RUN_INPUT_TOKENS: sum(s.attributes.get(A.GEN_AI_USAGE_INPUT_TOKENS, 0) for s in llm),
        A.RUN_OUTPUT_TOKENS: sum(s.attributes.get(A.GEN_AI_USAGE_OUTPUT_TOKENS, 0) for s in llm),
        A.RUN_ERRORS: 1 if run_error else 0,
    }
    if run_error is not None:
        run_attributes[A.ERROR_TYPE] = run_error[0]
    b.spans.append(
        Span(
            A.SPAN_AGENT_RUN,
            b.trace_id,
            run_span_id,
            None,
            run_start,
            b.clock,
            run_status,
            None if run_error is None else ": ".join(run_error),
            run_attributes,
        )
    )
    return b.spans


def records(spans: Iterable[Span], service: str | None = "weather-svc") -> list[dict[str, Any]]:
    return [span.record(service) for span in spans]


def jsonl_lines(spans: Iterable[Span]) -> list[str]:
    return [json.dumps(record) + "\n" for record in records(spans)]


def write_jsonl(path: Path, spans: Iterable[Span], *, extra: str = "") -> Path:
    """Write spans as step records; ``extra`` is appended raw (corrupt or torn lines)."""
    text = "".join(jsonl_lines(spans)) + extra
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_otlp_value(v) for v in value]}}
    return {"stringValue": str(value)}


def write_otlp(path: Path, spans: Sequence[Span], service: str = "weather-svc") -> Path:
    """The spans as the Collector's file exporter writes them: a request per line, 3 spans each."""
    lines = []
    for i in range(0, len(spans), 3):
        chunk = spans[i : i + 3]
        otlp_spans = [
            {
                "traceId": f"{s.trace_id:032x}",
                "spanId": f"{s.span_id:016x}",
                "parentSpanId": f"{s.parent_span_id:016x}" if s.parent_span_id else "",
                "name": s.name,
                "kind": 1,
                "startTimeUnixNano": str(s.start_ns),
                "endTimeUnixNano": str(s.end_ns),
                "attributes": [{"key": k, "value": _otlp_value(v)} for k, v in s.attributes.items()],
                "status": (
                    {"code": 2, "message": s.description}
                    if s.status == "error"
                    else {"code": 1 if s.status == "ok" else 0}
                ),
            }
            for s in chunk
        ]
        lines.append(
            json.dumps(
                {
                    "resourceSpans": [
                        {
                            "resource": {
                                "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                            },
                            "scopeSpans": [
                                {
                                    "scope": {"name": "steptrace", "version": "0.1.0"},
                                    "spans": otlp_spans,
                                }
                            ],
                        }
                    ]
                }
            )
            + "\n"
        )
    path.write_text("".join(lines))
    return path


def mixed_spans(
    count: int,
    *,
    release: str = "1.0.0",
    seed: int = 0,
    start_ns: int = T0_NS,
    failure_every: int = 0,
    loop_every: int = 0,
    llm_ms: float = 400.0,
) -> list[Span]:
    """``count`` runs a minute apart; every ``failure_every``-th fails in a tool, every
    ``loop_every``-th loops until max_steps (0 = never)."""
    spans: list[Span] = []
    for i in range(count):
        kind = "ok"
        if failure_every and i % failure_every == failure_every - 1:
            kind = "tool_error"
        elif loop_every and i % loop_every == loop_every - 1:
            kind = "loop"
        spans += make_run(
            f"{release}-run-{i:04d}",
            kind,
            release=release,
            seed=seed,
            start_ns=start_ns + i * 60_000 * MS,
            llm_ms=llm_ms,
        )
    return spans


# Ids of the standard log's runs, one per situation the analysis must recognise.
STANDARD_RUNS = [
    ("run-ok-1", "ok", "1.0.0", True),
    ("run-ok-2", "ok", "1.0.0", True),
    ("run-tool-err", "tool_error", "1.0.0", True),
    ("run-loop", "loop", "1.1.0", True),
    ("run-model-err", "model_error", "1.1.0", True),
    ("run-slow", "slow", "1.1.0", True),
    ("run-crashed", "ok", "1.1.0", False),
]


def standard_spans() -> list[Span]:
    """Seven runs a minute apart: two ok, a tool failure, a loop ending at max_steps, a model
    failure, a slow run and a crashed run (no run record)."""
    spans: list[Span] = []
    for i, (run_id, kind, release, complete) in enumerate(STANDARD_RUNS):
        spans += make_run(run_id, kind, release=release, complete=complete, start_ns=T0_NS + i * 60_000 * MS)
    return spans


def standard_log(directory: Path, name: str = "steps.jsonl", extra: str = "") -> Path:
    return write_jsonl(directory / name, standard_spans(), extra=extra)
