"""``RerunReport``: did the rerun reproduce the original run, where did it diverge, how it ended."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from steptrace.rerun._serving import RecordedRun, RerunSession, call_key

STOP_INCOMPLETE = "incomplete"


@dataclass
class Outcome:
    """How a run ended: the numbers the report compares."""

    stop_reason: str
    steps: int
    tool_calls: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop_reason": self.stop_reason,
            "steps": self.steps,
            "tool_calls": dict(self.tool_calls),
            "errors": self.errors,
            "tokens": dict(self.tokens),
        }

    def tools_text(self) -> str:
        ranked = sorted(self.tool_calls.items(), key=lambda item: (-item[1], item[0]))[:3]
        return ", ".join(f"{name} x{count}" for name, count in ranked)


@dataclass
class RerunReport:
    """What a rerun showed. ``verdict`` says it in one line; ``to_dict()`` for JSON."""

    original_run_id: str
    run_id: str | None
    reproduced: bool
    diverged_at: int | None
    divergence: str | None
    original: Outcome
    rerun: Outcome | None
    verdict: str
    llm: str = "recorded"
    tools: str = "recorded"
    ran: dict[str, Any] = field(default_factory=dict)
    """What was served and what ran for real: ``{"llm": {"served", "out_of_match",
    "out_of_match_from", "live"}, "tools": {"served", "live"}}`` (counts; a call number)."""
    warnings: list[str] = field(default_factory=list)
    """What the rerun said at the time (an SDK it had to instrument, nothing to serve from)."""
    unmatched_args: list[str] = field(default_factory=list)
    """Arguments left out of the match (no stable form across processes), per call:
    ``"step 1 model call: tools[0].on_invoke_tool"``, from the recording's ``unmatched_args``."""

    @property
    def ran_text(self) -> str:
        """``model calls: 6 served from the recording, 0 live; tools: 6 served from the
        recording, 0 ran your code``, with the call from which model calls were out of match."""
        llm, tools = self.ran.get("llm") or {}, self.ran.get("tools") or {}
        served = int(llm.get("served") or 0)
        model = f"model calls: {served} served from the recording"
        if llm.get("out_of_match"):
            model += (
                f" ({llm['out_of_match']} out of match, from model call {llm.get('out_of_match_from')} on)"
            )
        model += f", {int(llm.get('live') or 0)} live"
        return (
            f"{model}; tools: {int(tools.get('served') or 0)} served from the recording, "
            f"{int(tools.get('live') or 0)} ran your code"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_run_id": self.original_run_id,
            "run_id": self.run_id,
            "reproduced": self.reproduced,
            "diverged_at": self.diverged_at,
            "divergence": self.divergence,
            "original": self.original.to_dict(),
            "rerun": self.rerun.to_dict() if self.rerun is not None else None,
            "verdict": self.verdict,
            "llm": self.llm,
            "tools": self.tools,
            "ran": {key: dict(value) for key, value in self.ran.items()},
            "warnings": list(self.warnings),
            "unmatched_args": list(self.unmatched_args),
        }


def original_outcome(recorded: RecordedRun) -> Outcome:
    """From the recording's end line; a recording cut short (a crash) counts what it holds."""
    end = recorded.end
    if end is not None and isinstance(end.get("outcome"), dict):
        data = end["outcome"]
        return Outcome(
            str(data.get("stop_reason") or STOP_INCOMPLETE),
            int(data.get("steps") or 0),
            {str(k): int(v) for k, v in (data.get("tool_calls") or {}).items()},
            int(data.get("errors") or 0),
            {str(k): int(v) for k, v in (data.get("tokens") or {}).items()},
        )
    steps = {line.get("agent_step") for line in recorded.calls if isinstance(line.get("agent_step"), int)}
    tools = Counter(str(line.get("name")) for line in recorded.calls if line.get("recording") == "tool")
    errors = sum(1 for line in recorded.calls if line.get("error") is not None)
    return Outcome(STOP_INCOMPLETE, len(steps) or len(recorded.calls), dict(tools), errors)


def rerun_outcome(session: RerunSession) -> Outcome | None:
    run = session.run
    if run is None:
        return None
    state = run.state
    return Outcome(
        state.stop_reason or STOP_INCOMPLETE,
        state.steps or state.llm_calls + state.tool_calls,
        dict(session.tool_counts),
        state.errors,
        {"input": state.input_tokens, "output": state.output_tokens},
    )


def _ends(outcome: Outcome) -> str:
    return f"{outcome.stop_reason} after {outcome.steps} step{'s' if outcome.steps != 1 else ''}"


def build_report(session: RerunSession) -> RerunReport:
    recorded = session.recorded
    original = original_outcome(recorded)
    rerun = rerun_outcome(session)
    run_id = session.run.run_id if session.run is not None else None
    step, divergence = session.divergence if session.divergence is not None else (None, None)
    same_calls = sorted(call_key(line) for line in recorded.calls) == sorted(
        call_key(line) for line in session.observed
    )
    matched = (
        rerun is not None and divergence is None and same_calls and rerun.stop_reason == original.stop_reason
    )
    not_compared = list(session.llm_not_compared)
    reproduced = matched and not not_compared
    if rerun is None:
        verdict = "no rerun: no agent_run was started inside the rerun"
    elif matched and not_compared:
        count = len(not_compared)
        verdict = (
            f"not compared: {count} model call{'s' if count != 1 else ''} "
            f"{'were' if count != 1 else 'was'} recorded without {'their' if count != 1 else 'its'} "
            f"request (model call {', '.join(str(n) for n in not_compared)}: anthropic stream helpers "
            f"recorded by an older steptrace), served in order; the run ends with {_ends(rerun)} as "
            "the original, but whether the same was asked is unknown (record the run again)"
        )
    elif reproduced:
        tools = original.tools_text()
        verdict = (
            f"reproduced: {original.steps} steps, {original.stop_reason}"
            + (f", {tools}" if tools else "")
            + " (same as the original)"
        )
    else:
        parts = []
        if divergence is not None:
            detail = divergence.split(": ", 1)[1] if divergence.startswith("step ") else divergence
            parts.append(
                f"diverged at step {step} ({detail})" if step is not None else f"diverged ({detail})"
            )
        elif not same_calls:
            parts.append("the run made other model or tool calls")
        if (rerun.stop_reason, rerun.steps) != (original.stop_reason, original.steps):
            parts.append(f"the run now ends with {_ends(rerun)} instead of {_ends(original)}")
        else:
            parts.append(f"the run still ends with {_ends(rerun)}")
        if rerun.errors != original.errors:
            parts.append(f"{rerun.errors} errors instead of {original.errors}")
        verdict = "changed: " + "; ".join(parts)
    ran = {
        "llm": {
            "served": session.llm_served,
            "out_of_match": session.llm_out_of_match,
            "out_of_match_from": session.llm_out_of_match_from,
            "live": session.llm_live_calls,
        },
        "tools": {"served": session.tools_served, "live": session.tools_ran},
    }
    warnings = list(session.warnings)
    model_calls = sum(1 for line in session.observed if line.get("recording") == "llm")
    if rerun is not None and recorded.llm and model_calls == 0:
        warnings.append(
            f"the rerun made none of the {len(recorded.llm)} recorded model calls through steptrace: "
            "nothing was served (is the SDK instrumented, and the same decorated function called?)"
        )
    if not_compared and not matched and rerun is not None:
        warnings.append(
            f"model call {', '.join(str(n) for n in not_compared)}: recorded without its request "
            "(anthropic stream helpers recorded by an older steptrace): served in order, not compared"
        )
    unmatched: list[str] = []
    for line in recorded.calls:
        paths = line.get("unmatched_args")
        if isinstance(paths, list) and paths:
            step = line.get("agent_step") if isinstance(line.get("agent_step"), int) else line.get("seq")
            what = "model call" if line.get("recording") == "llm" else str(line.get("name"))
            unmatched.append(f"step {step} {what}: {', '.join(str(path) for path in paths)}")
    if unmatched:
        warnings.append(
            f"{len(unmatched)} recorded call{'s' if len(unmatched) != 1 else ''} matched without "
            "arguments that have no stable form (see unmatched_args)"
        )
    report = RerunReport(
        recorded.run_id,
        run_id,
        reproduced,
        step,
        divergence,
        original,
        rerun,
        verdict,
        session.llm_mode,
        session.tools_mode,
        ran,
        warnings,
        unmatched,
    )
    if rerun is not None:  # the verdict says what ran: a tool served from the recording proves nothing
        report.verdict = f"{verdict}; {report.ran_text}"
    return report
