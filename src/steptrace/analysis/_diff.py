"""``diff(baseline, candidate)``: compare two sets of runs (two releases, two days) metric by
metric, each with its delta and a plain-words verdict."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from steptrace.analysis._debug import format_ms
from steptrace.analysis._runs import STOP_INCOMPLETE, Run, RunSet
from steptrace.analysis._stats import percentile

Unit = Literal["ratio", "ms", "tokens", "usd"]
Direction = Literal["better", "worse", "same", "changed", "new", "gone"]

# Below these changes a metric is "about the same": noise, not a regression.
_SAME_RATIO_POINTS = 0.01  # one percentage point
_SAME_RELATIVE = 0.05  # 5 %
# Fewer runs than this on either side and the verdict carries a warning.
_FEW_RUNS = 30
# Stop reasons whose share going up is bad news; end_turn going up is good news.
_BAD_STOPS = frozenset({"error", "max_steps", STOP_INCOMPLETE, "cancelled", "max_tokens", "content_filter"})
_GOOD_STOPS = frozenset({"end_turn"})


@dataclass(frozen=True)
class MetricChange:
    """One metric on both sides. ``delta`` is candidate minus baseline (None when a side has
    no data); ``verdict`` says it in words, e.g. ``worse: up 7.5 points (2.0% -> 9.5%)``."""

    name: str
    unit: Unit
    baseline: float | None
    candidate: float | None
    delta: float | None
    direction: Direction
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "delta": self.delta,
            "direction": self.direction,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class DiffReport:
    """Baseline against candidate: run-level metrics, per-tool p95, and the stop-reason mix."""

    baseline_label: str
    candidate_label: str
    baseline_runs: int
    candidate_runs: int
    metrics: list[MetricChange]
    tool_p95_ms: list[MetricChange]
    stop_reasons: list[MetricChange]
    verdict: str
    tokens_note: str | None = None
    """Which runs ``tokens_per_run`` leaves out (a model call reported no usage), or None."""

    def all_changes(self) -> list[MetricChange]:
        return [*self.metrics, *self.tool_p95_ms, *self.stop_reasons]

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": {"label": self.baseline_label, "runs": self.baseline_runs},
            "candidate": {"label": self.candidate_label, "runs": self.candidate_runs},
            "metrics": [m.to_dict() for m in self.metrics],
            "tool_p95_ms": [m.to_dict() for m in self.tool_p95_ms],
            "stop_reasons": [m.to_dict() for m in self.stop_reasons],
            "verdict": self.verdict,
            "tokens_note": self.tokens_note,
        }


def format_value(value: float | None, unit: Unit) -> str:
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return format_ms(value)
    if unit == "usd":
        return format_usd(value)
    return f"{value:,.0f}"


def format_usd(value: float | None) -> str:
    """``$0.0123``, ``$0.035``, ``$12.34``: three significant digits under a dollar, cents
    above; ``-`` for unknown (never a guessed $0)."""
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if value < 0:
        return "-" + format_usd(-value)
    size = value
    if size < 0.000001:
        return "<$0.000001"
    if size >= 1:
        return f"${value:,.2f}"
    decimals = 2 - math.floor(math.log10(size))
    text = f"{value:.{decimals}f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _change(
    name: str,
    unit: Unit,
    baseline: float | None,
    candidate: float | None,
    *,
    higher_is_worse: bool | None = True,
) -> MetricChange:
    """Compare one metric; ``higher_is_worse=None`` for metrics with no good direction."""
    span = f"({format_value(baseline, unit)} -> {format_value(candidate, unit)})"
    if baseline is None and candidate is None:
        return MetricChange(name, unit, None, None, None, "same", "no data on either side")
    if baseline is None:
        return MetricChange(name, unit, None, candidate, None, "new", f"new in candidate {span}")
    if candidate is None:
        return MetricChange(name, unit, baseline, None, None, "gone", f"not in candidate {span}")
    delta = candidate - baseline
    if unit == "ratio":
        same = abs(delta) < _SAME_RATIO_POINTS
        amount = f"{abs(delta) * 100:.1f} points"
    else:
        relative = abs(delta) / abs(baseline) if baseline else (0.0 if delta == 0 else 1.0)
        same = relative < _SAME_RELATIVE
        pct = f"{relative * 100:.0f}%" if baseline else "from zero"
        magnitude = (
            format_ms(abs(delta))
            if unit == "ms"
            else format_usd(abs(delta))
            if unit == "usd"
            else f"{abs(delta):,.0f}"
        )
        amount = f"{magnitude}, {pct}"
    if same:
        return MetricChange(name, unit, baseline, candidate, delta, "same", f"about the same {span}")
    word = "up" if delta > 0 else "down"
    direction: Direction
    if higher_is_worse is None:
        direction = "changed"
    else:
        direction = "worse" if (delta > 0) == higher_is_worse else "better"
    return MetricChange(
        name, unit, baseline, candidate, delta, direction, f"{direction}: {word} {amount} {span}"
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _share(runs: Sequence[Run], flag: Iterable[bool]) -> float | None:
    return sum(flag) / len(runs) if runs else None


@dataclass(frozen=True)
class SideStats:
    """What :func:`diff` compares of one side: computed from runs here, or by a database
    source in SQL (``RunSet.side_stats``); either way the same numbers for the same runs."""

    runs: int
    with_errors_rate: float | None
    """Share of *runs with errors* (any error, also one the agent recovered from)."""
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    tokens_per_run: float | None
    cost_per_run: float | None
    repeated_call_rate: float | None
    tool_p95_ms: dict[str, float]
    """p95 of each tool's call durations, for the tools this side called."""
    stop_reason_shares: dict[str, float]
    """Share of runs per stop reason, for the reasons this side's runs stopped with."""
    failed_rate: float | None = None
    """Share of *failed runs* (stopped with an error: ``--status error``)."""
    runs_without_usage: int = 0
    """Runs left out of ``tokens_per_run``: a model call of theirs reported no usage."""
    llm_calls_without_usage: int = 0
    """Model calls that reported no usage (unknown tokens, never counted as 0)."""


def side_stats(runs: Iterable[Run]) -> SideStats:
    """The numbers :func:`diff` compares, of one set of runs."""
    side = list(runs)
    durations = [r.duration_ms for r in side]
    tool_durations: dict[str, list[float]] = {}
    for run in side:
        for tool, values in run.tool_durations_ms.items():
            tool_durations.setdefault(tool, []).extend(values)
    tool_p95 = {tool: percentile(values, 95) for tool, values in tool_durations.items()}
    return SideStats(
        runs=len(side),
        with_errors_rate=_share(side, (r.has_errors for r in side)),
        failed_rate=_share(side, (r.failed for r in side)),
        runs_without_usage=sum(1 for r in side if not r.tokens_known),
        llm_calls_without_usage=sum(r.llm_calls_without_usage for r in side),
        p50_duration_ms=percentile(durations, 50),
        p95_duration_ms=percentile(durations, 95),
        # Unknown is not zero: a run with a call that reported no usage has no token count.
        tokens_per_run=_mean([r.total_tokens for r in side if r.tokens_known]),
        cost_per_run=_mean([r.cost_usd for r in side if r.cost_usd is not None]),
        repeated_call_rate=_share(side, (r.repeated_call_count > 0 for r in side)),
        tool_p95_ms={tool: value for tool, value in tool_p95.items() if value is not None},
        stop_reason_shares={
            reason: count / len(side) for reason, count in Counter(r.stop_reason for r in side).items()
        },
    )


def diff(
    baseline: RunSet | Sequence[Run] | SideStats,
    candidate: RunSet | Sequence[Run] | SideStats,
    *,
    baseline_label: str = "baseline",
    candidate_label: str = "candidate",
) -> DiffReport:
    """Compare two sets of runs: the share of failed runs (``failed_rate``: stopped with an
    error) and of runs with errors (``with_errors_rate``: any error, also recovered), p50/p95
    run duration, p95 per tool, tokens per run (over the runs whose every model call reported
    usage; ``tokens_note`` says how many were left out), cost per run (the mean over runs with a priced
    model call), repeated-call rate (share of runs that called a tool twice with the same
    arguments) and the stop-reason mix. Either side may be its :class:`SideStats` already
    (``RunSet.side_stats``: from a database, computed there).

    >>> logs = load("steptrace-logs")  # doctest: +SKIP
    >>> report = diff(logs.runs(release="1.4.0"), logs.runs(release="1.5.0"))  # doctest: +SKIP
    >>> [m.verdict for m in report.metrics]  # doctest: +SKIP
    """
    base = baseline if isinstance(baseline, SideStats) else side_stats(baseline)
    cand = candidate if isinstance(candidate, SideStats) else side_stats(candidate)
    metrics = [
        _change("failed_rate", "ratio", base.failed_rate, cand.failed_rate),
        _change("with_errors_rate", "ratio", base.with_errors_rate, cand.with_errors_rate),
        _change("p50_duration_ms", "ms", base.p50_duration_ms, cand.p50_duration_ms),
        _change("p95_duration_ms", "ms", base.p95_duration_ms, cand.p95_duration_ms),
        _change("tokens_per_run", "tokens", base.tokens_per_run, cand.tokens_per_run),
        _change("cost_per_run", "usd", base.cost_per_run, cand.cost_per_run),
        _change("repeated_call_rate", "ratio", base.repeated_call_rate, cand.repeated_call_rate),
    ]
    tools = [
        _change(f"p95_ms[{tool}]", "ms", base.tool_p95_ms.get(tool), cand.tool_p95_ms.get(tool))
        for tool in sorted(set(base.tool_p95_ms) | set(cand.tool_p95_ms))
    ]

    def share(side: SideStats, reason: str) -> float | None:
        return side.stop_reason_shares.get(reason, 0.0) if side.runs else None

    reasons = sorted(set(base.stop_reason_shares) | set(cand.stop_reason_shares))
    stops = [
        _change(
            f"stop_reason[{reason}]",
            "ratio",
            share(base, reason),
            share(cand, reason),
            higher_is_worse=True if reason in _BAD_STOPS else False if reason in _GOOD_STOPS else None,
        )
        for reason in reasons
    ]

    worse = [m.name for m in [*metrics, *tools, *stops] if m.direction == "worse"]
    better = [m.name for m in [*metrics, *tools, *stops] if m.direction == "better"]
    if not base.runs or not cand.runs:
        verdict = "cannot compare: " + ("baseline" if not base.runs else "candidate") + " has no runs"
    elif worse:
        verdict = f"{candidate_label} is worse on {len(worse)} metric(s): {', '.join(worse)}"
        if better:
            verdict += f"; better on {', '.join(better)}"
    elif better:
        verdict = f"{candidate_label} is better on {', '.join(better)} and no worse elsewhere"
    else:
        verdict = f"{candidate_label} is about the same as {baseline_label}"
    if base.runs and cand.runs and min(base.runs, cand.runs) < _FEW_RUNS:
        verdict += f" (few runs: {base.runs} vs {cand.runs}; treat small changes as noise)"
    left_out = [
        f"{label}: {side.runs_without_usage} of {side.runs} runs ({side.llm_calls_without_usage} model "
        f"call{'' if side.llm_calls_without_usage == 1 else 's'} without usage)"
        for label, side in ((baseline_label, base), (candidate_label, cand))
        if side.runs_without_usage
    ]
    return DiffReport(
        tokens_note="tokens_per_run leaves out runs whose token count is unknown: " + "; ".join(left_out)
        if left_out
        else None,
        baseline_label=baseline_label,
        candidate_label=candidate_label,
        baseline_runs=base.runs,
        candidate_runs=cand.runs,
        metrics=metrics,
        tool_p95_ms=tools,
        stop_reasons=stops,
        verdict=verdict,
    )
