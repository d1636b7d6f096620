"""``debug_run(run)``: what went wrong in one run, as hypotheses that name their evidence.

Each hypothesis (tool-layer failure, model failure, loop, latency over an SLO, unfinished run)
lists the spans that support it, so a reader can jump straight to them with
``steptrace replay RUN_ID --step N``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steptrace._where import where_text
from steptrace.analysis._agents import agents_line
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
    """One span, as evidence: enough to find it again (``step``, ``span_id``) and to read it.

    ``step`` is the span's sequence number in its run (the record field; ``#7`` in every output,
    ``replay --span 7``); ``agent_step`` the loop iteration it ran in (``step 2``, ``replay --step 2``).
    """

    step: int | None
    type: str
    name: str
    label: str
    span_id: str
    duration_ms: float
    status: str
    error_type: str | None = None
    error: str | None = None
    agent_step: int | None = None
    agent: str | None = None
    """The agent that acted (the step's agent; after a handoff, the agent handed to)."""
    raised_at: str | None = None
    """Where a failure was raised: ``tools.py:41 in refund`` (the user's innermost frame)."""

    @classmethod
    def of(cls, record: Record) -> SpanRef:
        agent_step = record.get("agent_step")
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
            agent_step=agent_step if type(agent_step) is int else None,
            agent=record.get("acting_agent") if type(record.get("acting_agent")) is str else None,
            raised_at=where_text(record.get("error_where")),
        )

    def describe(self) -> str:
        """``tool_call get_weather (#3, step 2, agent weather)``: span #3 of the run, in its 2nd
        agent step, which the agent ``weather`` ran."""
        where = f"#{self.step}" if self.step is not None else f"span {self.span_id}"
        if self.agent_step is not None and self.type != "agent_step":
            where += f", step {self.agent_step}"
        if self.agent is not None and self.type not in ("agent_step", "run"):
            where += f", agent {self.agent}"
        return f"{self.type} {self.label} ({where})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "agent_step": self.agent_step,
            "type": self.type,
            "name": self.name,
            "label": self.label,
            "span_id": self.span_id,
            "duration_ms": self.duration_ms,
            "status": self.status,
            "error_type": self.error_type,
            "error": self.error,
            "agent": self.agent,
            "raised_at": self.raised_at,
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
    """A likely cause. ``kind`` is one of ``guard`` (a guard stopped the run, or warned),
    ``tool_failure``, ``flaky_tool``, ``model_failure``, ``code_failure``, ``loop``, ``latency``,
    ``incomplete``; ``culprit`` names the tool, model or span (or guard) it blames; ``score``
    (0..1) is how much of the run it explains: its share of the run's failures, steps or time.
    ``evidence`` are the spans that support it."""

    kind: str
    title: str
    evidence: list[SpanRef] = field(default_factory=list)
    culprit: str | None = None
    score: float = 0.0
    # What the score is a share of: "failures", "steps", "tool calls", "time" or "run".
    share_of: str = "run"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "culprit": self.culprit,
            "score": round(self.score, 4),
            "share_of": self.share_of,
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
    # What `steptrace rerun` showed for this run: the reports' to_dict(), oldest first.
    reruns: list[dict[str, Any]] = field(default_factory=list)
    # The run's error count, as `runs` and `summary` show it (Run.error_count); error_classes
    # counts where errors began (root causes), which a step body's own failure may add to.
    error_count: int = 0
    cost_usd: float | None = None
    """The run's cost in USD (priced model calls); None when none could be priced."""
    unpriced_llm_calls: int = 0
    most_expensive_call: SpanRef | None = None
    most_expensive_call_cost_usd: float | None = None
    agents: str = "-"
    """Who acted: ``triage → billing (handoff at step 1)`` (the starting agent first)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "agents": self.agents,
            "stop_reason": self.stop_reason,
            "complete": self.complete,
            "duration_ms": self.duration_ms,
            "slo_ms": self.slo_ms,
            "first_error_span": self.first_error_span.to_dict() if self.first_error_span else None,
            "slowest_span": self.slowest_span.to_dict() if self.slowest_span else None,
            "error_classes": dict(self.error_classes),
            "repeated_tool_calls": [r.to_dict() for r in self.repeated_tool_calls],
            "hypotheses": [h.to_dict() for h in self.hypotheses],
            "reruns": list(self.reruns),
            "error_count": self.error_count,
            "cost_usd": self.cost_usd,
            "unpriced_llm_calls": self.unpriced_llm_calls,
            "most_expensive_call": self.most_expensive_call.to_dict() if self.most_expensive_call else None,
            "most_expensive_call_cost_usd": self.most_expensive_call_cost_usd,
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


def token_text(record: Record) -> str:
    """``120→30 tok (90 cached)`` for a model call that reported usage, ``— tok (no usage)`` for
    one that did not (unknown, never 0), else ``""``. The input count includes cache reads and
    writes (the GenAI conventions); the cached reads are shown."""
    if record.get("type") != "llm_call":
        return ""
    tokens_in, tokens_out = record.get("input_tokens"), record.get("output_tokens")
    if type(tokens_in) is not int and type(tokens_out) is not int:
        return "" if record.get("status") == "error" else "— tok (no usage)"
    text = (
        f"{tokens_in if type(tokens_in) is int else '—'}→{tokens_out if type(tokens_out) is int else '—'} tok"
    )
    cached = record.get("cache_read_input_tokens")
    if type(cached) is int and cached:
        text += f" ({cached} cached)"
    return text


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


def where(record: Record) -> str:
    """``#7 in step 2``: span #7 of the run, in its 2nd agent step (the words every command uses)."""
    seq = record.get("step")
    text = f"#{seq}" if type(seq) is int else f"span {record.get('span_id')}"
    agent_step = record.get("agent_step")
    if type(agent_step) is int and record.get("type") != "agent_step":
        text += f" in step {agent_step}"
    return text


def _spans_text(records: Sequence[Record], shown: int = 6) -> str:
    text = ", ".join(f"#{r.get('step')}" if r.get("step") is not None else "#?" for r in records[:shown])
    return text + (", ..." if len(records) > shown else "")


def _reason(record: Record) -> str:
    return str(record.get("error") or record.get("error_type") or "an error")


@dataclass
class _Facts:
    """What every hypothesis reads, computed once per run."""

    records: list[Record]
    run: Run
    causes: list[Record]  # root-cause failures in start order (causes[0]: the first error)
    owners: dict[int, Record | None]  # id(cause) -> the tool or model call it happened in
    # Calls a guard stopped before they ran (configure(guards=...)): the guard hypothesis
    # explains them; they are no tool, model or code failure.
    guarded: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, run: Run) -> _Facts:
        records = run.records()
        causes = root_cause_errors(records)
        by_id = {r.get("span_id"): r for r in records if r.get("span_id") is not None}
        owners: dict[int, Record | None] = {}
        for cause in causes:
            current: Record | None = cause
            for _ in range(32):  # a corrupt log may hold a parent cycle
                if current is None or current.get("type") in ("tool_call", "llm_call"):
                    break
                current = by_id.get(current.get("parent_span_id"))
            owners[id(cause)] = current
        guarded = {id(r) for r in records if r.get("guard") and r.get("status") == "error"}
        return cls(records, run, causes, owners, guarded)

    def causes_in(self, calls: Sequence[Record]) -> list[Record]:
        """The root causes that happened in ``calls`` (the call itself or a span under it)."""
        ids = {id(call) for call in calls}
        return [c for c in self.causes if id(self.owners.get(id(c))) in ids]

    def share_of_failures(self, causes: Sequence[Record]) -> float:
        return len(causes) / len(self.causes) if self.causes else 0.0


def _tool_failures(facts: _Facts) -> list[Hypothesis]:
    tools = [r for r in facts.records if r.get("type") == "tool_call" and id(r) not in facts.guarded]
    failed = [r for r in tools if r.get("status") == "error"]
    if not failed:
        return []
    # A failure the same call (tool, args_hash) later got past is a flaky tool, not a broken one.
    last_success: dict[tuple[str, str], int] = {}
    for index, record in enumerate(tools):
        if record.get("status") != "error" and record.get("args_hash") is not None:
            last_success[(span_label(record), str(record["args_hash"]))] = index
    position = {id(r): i for i, r in enumerate(tools)}
    recovered: dict[str, list[Record]] = {}
    unrecovered: list[Record] = []
    for record in failed:
        key = (span_label(record), str(record.get("args_hash")))
        if record.get("args_hash") is not None and last_success.get(key, -1) > position[id(record)]:
            recovered.setdefault(key[0], []).append(record)
        else:
            unrecovered.append(record)
    out: list[Hypothesis] = []
    run = facts.run
    if unrecovered:
        first = unrecovered[0]
        causes = facts.causes_in(unrecovered)
        reason = _reason(causes[0] if causes else first)
        names = sorted({span_label(r) for r in unrecovered})
        if len(unrecovered) == 1:
            title = f"Tool failure: {names[0]} failed at {where(first)} with {reason}"
        else:
            title = (
                f"Tool failure: {len(unrecovered)} tool calls failed ({', '.join(names)}); "
                f"the first, {span_label(first)} at {where(first)}, with {reason}"
            )
        outcome = (
            "the agent recovered and the run still ended with end_turn"
            if run.stop_reason == "end_turn"
            else f"the run stopped with {run.stop_reason}"
        )
        out.append(
            Hypothesis(
                "tool_failure",
                f"{title}; {outcome}",
                [SpanRef.of(r) for r in unrecovered],
                culprit=span_label(first),
                score=facts.share_of_failures(causes),
                share_of="failures",
            )
        )
    for tool, retried in recovered.items():
        causes = facts.causes_in(retried)
        out.append(
            Hypothesis(
                "flaky_tool",
                f"Flaky tool: {tool} failed {len(retried)} time(s) ({_spans_text(retried)}; the first with "
                f"{_reason(causes[0] if causes else retried[0])}) and then succeeded with the same "
                "arguments: a retry, not a loop; check its timeouts and retry policy",
                [SpanRef.of(r) for r in retried],
                culprit=tool,
                score=facts.share_of_failures(causes),
                share_of="failures",
            )
        )
    return out


def _model_failure(facts: _Facts) -> Hypothesis | None:
    llm = [r for r in facts.records if r.get("type") == "llm_call" and id(r) not in facts.guarded]
    failed = [r for r in llm if r.get("status") == "error"]
    if failed:
        first = failed[0]
        causes = facts.causes_in(failed)
        # Name the error where it began (an SDK's own span under ours), as "first error" does.
        reason = _reason(causes[0] if causes else first)
        count = f"{len(failed)} model calls failed" if len(failed) > 1 else "the model call failed"
        return Hypothesis(
            "model_failure",
            f"Model failure: {count}; the first, {span_label(first)} at {where(first)}, raised {reason}",
            [SpanRef.of(r) for r in failed],
            culprit=span_label(first),
            score=facts.share_of_failures(causes),
            share_of="failures",
        )
    bad = [r for r in llm if r.get("stop_reason") in _BAD_MODEL_STOPS]
    if bad:
        first = bad[0]
        return Hypothesis(
            "model_failure",
            f"Model failure: {span_label(first)} {_BAD_MODEL_STOPS[first['stop_reason']]} at "
            f"{where(first)}" + (f" and {len(bad) - 1} more time(s)" if len(bad) > 1 else ""),
            [SpanRef.of(r) for r in bad],
            culprit=span_label(first),
            score=len(bad) / len(llm),
            share_of="model calls",
        )
    # A stream the agent stopped reading on purpose (stream_completed false, no error) is normal.
    return None


def _code_failure(facts: _Facts) -> Hypothesis | None:
    """Failures that began outside any tool or model call: the agent's own code, or another
    library's span (an HTTP client, a database) that is not one of our calls."""
    own = [c for c in facts.causes if facts.owners.get(id(c)) is None and id(c) not in facts.guarded]
    if not own:
        return None
    first = own[0]
    if first.get("type") in ("agent_step", "run"):
        title = (
            f"Agent code failure: {_reason(first)} raised in {span_label(first)} ({where(first)}), "
            "outside any tool or model call"
        )
    else:
        title = f"Failure in {span_label(first)} at {where(first)}: {_reason(first)}"
    if len(own) > 1:
        title += f" (and {len(own) - 1} more such failure(s))"
    return Hypothesis(
        "code_failure",
        title,
        [SpanRef.of(r) for r in own],
        culprit=span_label(first),
        score=facts.share_of_failures(own),
        share_of="failures",
    )


_GUARD_STOPS = frozenset({"loop", "max_steps", "budget"})


def _guard_text(trip: dict[str, Any]) -> str:
    """``repeat_calls=3: search ×3 with the same arguments (#2, #4, #6)``: what the guard saw."""
    guard, limit, value = trip.get("guard"), trip.get("limit"), trip.get("value")
    if guard == "repeat_calls":
        steps = [s for s in (trip.get("earlier_steps") or []) if type(s) is int]
        if type(trip.get("step")) is int:
            steps.append(trip["step"])
        shown = f" ({', '.join(f'#{s}' for s in steps)})" if steps else ""
        count = int(value) if isinstance(value, (int, float)) else "?"
        return f"repeat_calls={limit}: {trip.get('tool')} ×{count} with the same arguments{shown}"
    if guard == "max_steps":
        return f"max_steps={limit}: step {value} would have been one too many"
    if guard == "max_tokens":
        return f"max_tokens={limit}: the run had used {value} tokens"
    if guard == "max_cost_usd":
        spent = f"${value:.4f}" if isinstance(value, (int, float)) else "its budget"
        return f"max_cost_usd={limit}: the run had spent {spent}"
    return str(trip.get("message") or guard)


def _guard(facts: _Facts) -> Hypothesis | None:
    """A guard (configure(guards=...)) that stopped the run, or warned and let it go on."""
    run_record = next((r for r in facts.records if r.get("type") == "run"), None)
    trips = run_record.get("guards") if run_record is not None else None
    trips = [t for t in trips if isinstance(t, dict)] if isinstance(trips, list) else []
    at = [r for r in facts.records if r.get("guard") and r.get("type") != "run"]
    if not trips and not at:
        return None
    by_step = {r.get("step"): r for r in facts.records if type(r.get("step")) is int}
    raised = [t for t in trips if t.get("action") == "raise"]
    stopped = facts.run.stop_reason in _GUARD_STOPS or (not facts.run.complete and bool(raised))
    if trips:
        trip = raised[-1] if stopped and raised else trips[0]
        text = _guard_text(trip)
        steps = [*(trip.get("earlier_steps") or []), trip.get("step")]
        evidence = [by_step[s] for s in steps if s in by_step]
    else:  # no run record (the process died): the stopped call's own record
        first = at[-1]
        text = str(first.get("error") or first.get("guard"))
        evidence = [first]
    last = trips[-1] if trips else at[-1]
    if stopped:
        title = f"Stopped by {text}"
    else:
        title = f"Guard {text}: on_guard let the run go on ({len(trips)} trip(s))"
    return Hypothesis(
        "guard",
        title,
        [SpanRef.of(r) for r in evidence],
        culprit=str(last.get("tool") or last.get("guard")),
        score=1.0 if stopped else 0.5,
    )


def _loops(facts: _Facts, repeated: Sequence[RepeatedToolCall]) -> list[Hypothesis]:
    run = facts.run
    out: list[Hypothesis] = []
    for group in repeated[:3]:
        calls = [
            r
            for r in facts.records
            if r.get("type") == "tool_call"
            and span_label(r) == group.tool
            and str(r.get("args_hash")) == group.args_hash
        ]
        succeeded = [r for r in calls if r.get("status") != "error"]
        hit_max_steps = run.stop_reason == "max_steps"
        # Failing then succeeding is a retry (flaky_tool); twice in a run that answered is
        # ordinary; again and again, or until max_steps, is a loop.
        if len(succeeded) < (2 if hit_max_steps else 3):
            continue
        # How much of the run it explains: the share of its steps spent on the call (every
        # occurrence when the run ran out of steps, the repeats when it answered anyway).
        counted = succeeded if hit_max_steps else succeeded[1:]
        if hit_max_steps:
            ending = "and the run stopped at max_steps"
        else:
            ending = "and it returned each time: check dedupe/cache and stop conditions"
        steps = {r.get("agent_step") for r in counted if r.get("agent_step") is not None}
        if run.agent_step_count:
            score, share_of = min(1.0, len(steps) / run.agent_step_count), "steps"
        else:
            score, share_of = min(1.0, len(counted) / max(run.tool_call_count, 1)), "tool calls"
        out.append(
            Hypothesis(
                "loop",
                f"Loop: {group.tool} was called {len(succeeded)} times with the same arguments "
                f"({_spans_text(succeeded)}) {ending}",
                [SpanRef.of(r) for r in succeeded],
                culprit=group.tool,
                score=score,
                share_of=share_of,
            )
        )
    return out


def _latency(facts: _Facts, slo_ms: float | None) -> Hypothesis | None:
    run = facts.run
    if slo_ms is None or run.duration_ms <= slo_ms:
        return None
    leaves = sorted(
        (r for r in facts.records if r.get("type") in _LEAF_TYPES),
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
    culprit = None
    if evidence:
        slowest = evidence[0]
        culprit = span_label(slowest)
        share = 100.0 * float(slowest.get("duration_ms") or 0.0) / max(run.duration_ms, 1e-9)
        title += (
            f"; the slowest span, {slowest.get('type')} {culprit} at {where(slowest)}, took "
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
    return Hypothesis(
        "latency",
        title,
        [SpanRef.of(r) for r in evidence],
        culprit=culprit,
        score=min(1.0, covered / max(run.duration_ms, 1e-9)),
        share_of="time",
    )


def _incomplete(facts: _Facts) -> Hypothesis | None:
    run, records = facts.run, facts.records
    if run.complete or not records:
        return None
    last = max(records, key=lambda r: float(r.get("ts") or 0.0))
    return Hypothesis(
        "incomplete",
        "Unfinished run: no run record was written, so the process died (or is still running);"
        f" the last span to end was {span_label(last)} at {where(last)}",
        [SpanRef.of(last)],
        culprit=span_label(last),
        score=1.0,
    )


_FAILURE_KINDS = frozenset({"tool_failure", "flaky_tool", "model_failure", "code_failure"})


def _ranked(hypotheses: list[Hypothesis], first_error: Record | None) -> list[Hypothesis]:
    """By how much of the run each explains; among failures, the one holding the first error
    (the earliest root cause) comes before the failures it may have caused."""
    ranked = sorted(hypotheses, key=lambda h: -h.score)  # stable: ties keep the order above
    if first_error is None:
        return ranked
    first_id = first_error.get("span_id")
    holder = next(
        (
            h
            for h in ranked
            if h.kind in _FAILURE_KINDS
            and h.kind != "flaky_tool"
            and any(e.span_id == first_id for e in h.evidence)
        ),
        None,
    ) or next((h for h in ranked if h.kind == "flaky_tool"), None)
    if holder is None:
        return ranked
    slot = next(i for i, h in enumerate(ranked) if h.kind in _FAILURE_KINDS)  # holder's at latest
    ranked.remove(holder)
    ranked.insert(slot, holder)
    return ranked


def debug_run(run: Run, slo_ms: float | None = None, *, reruns: Sequence[dict[str, Any]] = ()) -> DebugReport:
    """Explain ``run``: first error, slowest span, repeated calls and ranked hypotheses.

    ``slo_ms``: the run-duration objective; a slower run gets a latency hypothesis.
    ``reruns``: the reports of ``steptrace rerun`` for this run (``rerun_reports()`` finds them).

    >>> report = debug_run(load("steptrace-logs").get("run-42"), slo_ms=5000)  # doctest: +SKIP
    >>> [h.kind for h in report.hypotheses]  # doctest: +SKIP
    ['tool_failure']
    """
    facts = _Facts.of(run)
    records, causes = facts.records, facts.causes
    error_classes: dict[str, int] = {}
    for record in causes:
        name = str(record.get("error_type") or "unknown")
        error_classes[name] = error_classes.get(name, 0) + 1
    leaves = [r for r in records if r.get("type") in _LEAF_TYPES]
    candidates = leaves or [r for r in records if r.get("type") != "run"] or list(records)
    slowest = max(candidates, key=lambda r: float(r.get("duration_ms") or 0.0), default=None)
    repeated = repeated_tool_calls(records)
    priced = [r for r in records if r.get("type") == "llm_call" and r.get("cost_usd") is not None]
    costliest = max(priced, key=lambda r: float(r["cost_usd"]), default=None)
    found: list[Hypothesis] = [
        *[h for h in (_guard(facts),) if h is not None],
        *_tool_failures(facts),
        *[h for h in (_model_failure(facts), _code_failure(facts)) if h is not None],
        *_loops(facts, repeated),
        *[h for h in (_latency(facts, slo_ms), _incomplete(facts)) if h is not None],
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
        hypotheses=_ranked(found, causes[0] if causes else None),
        reruns=list(reruns),
        error_count=run.error_count,
        cost_usd=run.cost_usd,
        unpriced_llm_calls=run.unpriced_llm_calls,
        most_expensive_call=SpanRef.of(costliest) if costliest is not None else None,
        most_expensive_call_cost_usd=float(costliest["cost_usd"]) if costliest is not None else None,
        agents=agents_line(run.agents, records),
    )
