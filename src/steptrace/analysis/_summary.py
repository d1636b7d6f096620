"""``summarize(run)``: the headline numbers of one run, from its aggregates (no re-read)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steptrace.analysis._runs import Run


@dataclass(frozen=True)
class RunSummary:
    """Headline numbers of one run. ``total_steps``: see :class:`Run`."""

    run_id: str
    agent: str | None
    release: str | None
    started_at: str
    total_steps: int
    llm_call_count: int
    tool_call_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    error_count: int
    duration_ms: float
    stop_reason: str
    complete: bool
    tools_used: dict[str, int]
    cost_usd: float | None = None
    """USD of the priced model calls; None when none could be priced (never a guessed $0)."""
    unpriced_llm_calls: int = 0
    """Model calls without a known price: left out of ``cost_usd``."""
    cache_read_input_tokens: int = 0
    """Of ``input_tokens`` (which counts cache reads and writes, as the GenAI conventions say):
    read from the prompt cache."""
    cache_creation_input_tokens: int = 0
    """Of ``input_tokens``: written to the prompt cache."""
    rerun_of: str | None = None
    """A rerun: the run it re-ran (its served model calls cost $0)."""
    agents: tuple[str, ...] = ()
    """Every agent that acted: the starting agent, then each one a handoff passed the run to."""
    llm_calls_without_usage: int = 0
    """Model calls that reported no usage: not in the token counts (unknown, never 0); when no
    call reported any, ``to_dict()`` gives the counts as null."""

    @property
    def tokens_reported(self) -> bool:
        """Some model call reported usage (or there was none): the counts mean something."""
        return not self.llm_calls_without_usage or self.llm_calls_without_usage < self.llm_call_count

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "agents": list(self.agents),
            "release": self.release,
            "started_at": self.started_at,
            "total_steps": self.total_steps,
            "llm_call_count": self.llm_call_count,
            "tool_call_count": self.tool_call_count,
            "input_tokens": self.input_tokens if self.tokens_reported else None,
            "output_tokens": self.output_tokens if self.tokens_reported else None,
            "total_tokens": self.total_tokens if self.tokens_reported else None,
            "llm_calls_without_usage": self.llm_calls_without_usage,
            "error_count": self.error_count,
            "duration_ms": self.duration_ms,
            "stop_reason": self.stop_reason,
            "complete": self.complete,
            "tools_used": dict(self.tools_used),
            "cost_usd": self.cost_usd,
            "unpriced_llm_calls": self.unpriced_llm_calls,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            **({"rerun_of": self.rerun_of} if self.rerun_of else {}),  # only a rerun has it
        }


def summarize(run: Run) -> RunSummary:
    """The headline numbers of ``run``; ``tools_used`` maps tool name to call count.

    >>> summarize(load("steptrace-logs").get("run-42")).total_tokens  # doctest: +SKIP
    """
    return RunSummary(
        run_id=run.run_id,
        agent=run.agent,
        release=run.release,
        started_at=run.started_at.isoformat(),
        total_steps=run.total_steps,
        llm_call_count=run.llm_call_count,
        tool_call_count=run.tool_call_count,
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        total_tokens=run.total_tokens,
        error_count=run.error_count,
        duration_ms=run.duration_ms,
        stop_reason=run.stop_reason,
        complete=run.complete,
        tools_used=dict(sorted(run.tools.items(), key=lambda kv: (-kv[1], kv[0]))),
        cost_usd=run.cost_usd,
        unpriced_llm_calls=run.unpriced_llm_calls,
        cache_read_input_tokens=run.cache_read_input_tokens,
        cache_creation_input_tokens=run.cache_creation_input_tokens,
        rerun_of=run.rerun_of,
        llm_calls_without_usage=run.llm_calls_without_usage,
        agents=run.agents,
    )
