"""``debug_run(run)``: what went wrong in one run, as hypotheses that name their evidence.

Each hypothesis (tool-layer failure, model failure, loop, latency over an SLO, unfinished run)
lists the spans that support it, so a reader can jump straight to them with
``steptrace replay RUN_ID --step N``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steptrace.analysis._runs import Record, Run

# Operations that do work themselves, as opposed to containers (run, agent_step) whose time and
# failures are mostly their children's.
_LEAF_TYPES = ("llm_call", "tool_call", "span")
# Model stop reasons that mean the answer is unusable even though the call "succeeded".
_BAD_MODEL_STOPS = {
    "max_tokens": "ran out of output tokens (answer cut off)",
    "content_filter": "was stopped by the content filter",
}


@dataclass(frozen=True)
class SpanRef:
    """One span, as evidence: enough to find it again (``step``, ``span_id``) and to read it."""

    step: int | None
    type: str
    name: str
    label: str
    span_id: str
    duration_ms: float
    status: str
    error_type: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, record: Record) -> SpanRef:
        return cls(
            step=record.get("step"),
            type=str(record.get("type")),
            name=str(record.get("name")),
            label=span_label(record),
            span_id=str(record.get("span_id")),
            duration_ms=float(record.get("duration_ms") or 0.0),
            status=str(record.get("status")),
            error_type=record.get("error_type"),
            error=record.get("error"),
        )

    def describe(self) -> str:
        """``tool_call get_weather (step 3)``."""
        where = f"step {self.step}" if self.step is not None else f"span {self.span_id}"
        return f"{self.type} {self.label} ({where})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "type": self.type,
            "name": self.name,
            "label": self.label,
            "span_id": self.span_id,
            "duration_ms": self.duration_ms,
            "status": self.status,
            "error_type": self.error_type,
            "error": self.error,
        }


@dataclass(frozen=True)
class RepeatedToolCall:
    """The same tool called with the same arguments (equal ``args_hash``) more than once."""

    tool: str
    args_hash: str
    count: int
    steps: list[int | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "args_hash": self.args_hash,
            "count": self.count,
            "steps": list(self.steps),
        }


@dataclass(frozen=True)
class Hypothesis:
    """A likely cause. ``kind`` is one of ``tool_failure``, ``model_failure``, ``loop``,
    ``latency``, ``incomplete``; ``evidence`` are the spans that support it."""

    kind: str
    title: str
    evidence: list[SpanRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "evidence": [span.to_dict() for span in self.evidence],
        }


@dataclass(frozen=True)
class DebugReport:
    """Everything ``steptrace debug`` prints about one run."""

    run_id: str
    stop_reason: str
    complete: bool
    duration_ms: float
    slo_ms: float | None
    first_error_span: SpanRef | None
    slowest_span: SpanRef | None
    error_classes: dict[str, int]
    repeated_tool_calls: list[RepeatedToolCall]
    hypotheses: list[Hypothesis]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "stop_reason": self.stop_reason,
            "complete": self.complete,
            "duration_ms": self.duration_ms,
            "slo_ms": self.slo_ms,
            "first_error_span": self.first_error_span.to_dict() if self.first_error_span else None,
            "slowest_span": self.slowest_span.to_dict() if self.slowest_span else None,
            "error_classes": dict(self.error_classes),
            "repeated_tool_calls": [r.to_dict() for r in self.repeated_tool_calls],
            "hypotheses": [h.to_dict() for h in self.hypotheses],
        }


def span_label(record: Record) -> str:
    """What a person calls this span: the tool's name, the model, or the span name."""
    kind = record.get("type")
    if kind == "tool_call" and record.get("tool"):
        return str(record["tool"])
    if kind == "llm_call" and (record.get("model") or record.get("request_model")):
        return str(record.get("model") or record.get("request_model"))
    if kind == "agent_step" and record.get("agent_step") is not None:
        return f"agent_step {record['agent_step']}"
    return str(record.get("name"))


def format_ms(ms: float) -> str:
    """``850 ms``, ``4.2 s``, ``3 min 5 s``: what a person reads quickest."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


def root_cause_errors(records: Sequence[Record]) -> list[Record]:
    """Failed spans none of whose children failed, in start order: where errors began."""
    failed = [r for r in records if r.get("status") == "error"]
    failed_parents = {r.get("parent_span_id") for r in failed}
    return [r for r in failed if r.get("span_id") not in failed_parents]


def repeated_tool_calls(records: Sequence[Record]) -> list[RepeatedToolCall]:
    """Calls of the same tool with the same arguments hash, most repeated first."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        if record.get("type") == "tool_call" and record.get("args_hash") is not None:
            key = (span_label(record), str(record["args_hash"]))
            groups.setdefault(key, []).append(record)
    repeated = [
        RepeatedToolCall(tool, args_hash, len(calls), [c.get("step") for c in calls])
        for (tool, args_hash), calls in groups.items()
        if len(calls) > 1
    ]
    repeated.sort(key=lambda r: (-r.count, r.tool))
    return repeated


def _steps_text(steps: Sequence[int | None], shown: int = 6) -> str:
    text = ", ".join(str(s) for s in steps[:shown])
    return text + (", ..." if len(steps) > shown else "")


def _tool_failure(records: Sequence[Record], run: Run) -> Hypothesis | None:
    failed = [r for r in records if r.get("type") == "tool_call" and r.get("status") == "error"]
    if not failed:
        return None
    first = failed[0]
    reason = first.get("error") or first.get("error_type") or "an error"
    tools = sorted({span_label(r) for r in failed})
    if len(failed) == 1:
        title = f"Tool layer failure: {tools[0]} failed at step {first.get('step')} with {reason}"
    else:
        title = (
            f"Tool layer failure: {len(failed)} tool calls failed ({', '.join(tools)}); "
            f"the first at step {first.get('step')} with {reason}"
        )
    outcome = (
        "the agent recovered and the run still ended with end_turn"
        if run.stop_reason == "end_turn"
        else f"the run stopped with {run.stop_reason}"
    )
    return Hypothesis(
        "tool_failure",
        f"{title}; {outcome}",
        [SpanRef.of(r) for r in failed],
    )


def _model_failure(records: Sequence[Record]) -> Hypothesis | None:
    llm = [r for r in records if r.get("type") == "llm_call"]
    failed = [r for r in llm if r.get("status") == "error"]
    if failed:
        first = failed[0]
        reason = first.get("error") or first.get("error_type") or "an error"
        count = f"{len(failed)} model calls failed" if len(failed) > 1 else "the model call failed"
        return Hypothesis(
            "model_failure",
            f"Model failure: {count}; the first, {span_label(first)} at step {first.get('step')},"
            f" raised {reason}",
            [SpanRef.of(r) for r in failed],
        )
    bad = [r for r in llm if r.get("stop_reason") in _BAD_MODEL_STOPS]
    if bad:
        first = bad[0]
        return Hypothesis(
            "model_failure",
            f"Model failure: the model {_BAD_MODEL_STOPS[first['stop_reason']]} at step "
            f"{first.get('step')}" + (f" and {len(bad) - 1} more time(s)" if len(bad) > 1 else ""),
            [SpanRef.of(r) for r in bad],
        )
    broken = [r for r in llm if r.get("stream_completed") is False]
    if broken:
        return Hypothesis(
            "model_failure",
            f"Model failure: a streamed response was abandoned before its end at step "
            f"{broken[0].get('step')}",
            [SpanRef.of(r) for r in broken],
        )
    return None


def _loop(records: Sequence[Record], run: Run, repeated: Sequence[RepeatedToolCall]) -> Hypothesis | None:
    if not repeated or run.stop_reason != "max_steps":
        return None
    top = repeated[0]
    evidence = [
        SpanRef.of(r)
        for r in records
        if r.get("type") == "tool_call"
        and span_label(r) == top.tool
        and str(r.get("args_hash")) == top.args_hash
    ]
    return Hypothesis(
        "loop",
        f"Loop: {top.tool} was called {top.count} times with the same arguments "
        f"(steps {_steps_text(top.steps)}) and the run stopped at max_steps",
        evidence,
    )


def _latency(records: Sequence[Record], run: Run, slo_ms: float | None) -> Hypothesis | None:
    if slo_ms is None or run.duration_ms <= slo_ms:
        return None
    leaves = sorted(
        (r for r in records if r.get("type") in _LEAF_TYPES),
        key=lambda r: -float(r.get("duration_ms") or 0.0),
    )
    # The few slowest operations that together explain at least half of the run's time.
    evidence: list[Record] = []
    covered = 0.0
    for record in leaves[:3]:
        evidence.append(record)
        covered += float(record.get("duration_ms") or 0.0)
        if covered >= run.duration_ms / 2:
            break
    title = f"Latency: the run took {format_ms(run.duration_ms)}, above the {format_ms(slo_ms)} SLO"
    if evidence:
        slowest = evidence[0]
        share = 100.0 * float(slowest.get("duration_ms") or 0.0) / max(run.duration_ms, 1e-9)
        title += (
            f"; the slowest span, {slowest.get('type')} {span_label(slowest)} at step "
            f"{slowest.get('step')}, took "
            f"{format_ms(float(slowest.get('duration_ms') or 0.0))} ({share:.0f}% of the run)"
        )
        # No single culprit: say which kind of work the time went to.
        by_type: dict[str, list[float]] = {}
        for record in leaves:
            by_type.setdefault(str(record.get("type")), []).append(float(record.get("duration_ms") or 0.0))
        kind, durations = max(by_type.items(), key=lambda kv: sum(kv[1]))
        if share < 50 and len(durations) > 1:
            total = sum(durations)
            title += (
                f"; {len(durations)} {kind} spans add up to {format_ms(total)} "
                f"({100.0 * total / max(run.duration_ms, 1e-9):.0f}%)"
            )
    return Hypothesis("latency", title, [SpanRef.of(r) for r in evidence])


def _incomplete(records: Sequence[Record], run: Run) -> Hypothesis | None:
    if run.complete or not records:
        return None
    last = max(records, key=lambda r: float(r.get("ts") or 0.0))
    return Hypothesis(
        "incomplete",
        "Unfinished run: no run record was written, so the process died (or is still running);"
        f" the last span to end was {span_label(last)} at step {last.get('step')}",
        [SpanRef.of(last)],
    )


def debug_run(run: Run, slo_ms: float | None = None) -> DebugReport:
    """Explain ``run``: first error, slowest span, repeated calls and ranked hypotheses.

    ``slo_ms``: the run-duration objective; a slower run gets a latency hypothesis.

    >>> report = debug_run(load("steptrace-logs").get("run-42"), slo_ms=5000)  # doctest: +SKIP
    >>> [h.kind for h in report.hypotheses]  # doctest: +SKIP
    ['tool_failure']
    """
    records = run.records()
    causes = root_cause_errors(records)
    error_classes: dict[str, int] = {}
    for record in causes:
        name = str(record.get("error_type") or "unknown")
        error_classes[name] = error_classes.get(name, 0) + 1
    leaves = [r for r in records if r.get("type") in _LEAF_TYPES]
    candidates = leaves or [r for r in records if r.get("type") != "run"] or list(records)
    slowest = max(candidates, key=lambda r: float(r.get("duration_ms") or 0.0), default=None)
    repeated = repeated_tool_calls(records)
    hypotheses = [
        h
        for h in (
            _tool_failure(records, run),
            _model_failure(records),
            _loop(records, run, repeated),
            _latency(records, run, slo_ms),
            _incomplete(records, run),
        )
        if h is not None
    ]
    return DebugReport(
        run_id=run.run_id,
        stop_reason=run.stop_reason,
        complete=run.complete,
        duration_ms=run.duration_ms,
        slo_ms=slo_ms,
        first_error_span=SpanRef.of(causes[0]) if causes else None,
        slowest_span=SpanRef.of(slowest) if slowest is not None else None,
        error_classes=error_classes,
        repeated_tool_calls=repeated,
        hypotheses=hypotheses,
    )
