"""``steptrace report``: one self-contained HTML page over many runs and releases.

Headline figures per release with the release diff's verdicts, charts over time and per tool
(inline SVG drawn here), the slowest runs, the runs that hit ``max_steps``, the failing tools, and
a runs table that sorts and filters in the page. A run opens its ``view`` waterfall, embedded for
the runs the page lists (within a byte budget). The page is built like ``view``: text from the
logs is escaped here or set with ``textContent``, data travels as JSON in non-executable script
tags, and a Content-Security-Policy allows only the page's own scripts, by hash, and no fetch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from steptrace.analysis._debug import format_ms
from steptrace.analysis._diff import MetricChange, diff
from steptrace.analysis._html import _SCRIPT as _VIEW_SCRIPT
from steptrace.analysis._html import _script_json, render_html
from steptrace.analysis._runs import (
    Record,
    Run,
    RunSet,
    clean_record,
    most_complete_copies,
    sort_records,
    span_key,
)
from steptrace.analysis._stats import percentile

DEFAULT_TIMELINE_BYTES = 8_000_000
"""Budget for the embedded run waterfalls; the rest of the page is aggregates (a few MB at most)."""
LISTED = 10
"""Rows in each list visible on load (slowest runs, runs that hit max_steps, failing tools)."""
_EXAMPLES_PER_TOOL = 3
_TOP_TOOLS = 12
_NO_RELEASE = "(no release)"
Bucket = Literal["hour", "day"]


def run_cost(run: Run) -> float | None:
    """The run's cost in USD when the logs were priced, else None (never 0 for unknown)."""
    value = getattr(run, "cost_usd", None)
    return float(value) if isinstance(value, (int, float)) else None


# --- figures ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseFigures:
    """Headline figures of one release; ``changes`` compare it with the release before it."""

    release: str
    runs: int
    failed_rate: float
    """Share of failed runs (stopped with an error)."""
    with_errors_rate: float
    """Share of runs with errors (any error, also one the agent recovered from)."""
    loop_rate: float
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    tokens_per_run: float | None
    """Mean over the runs whose every model call reported usage (None: no such run)."""
    cost_per_run: float | None
    changes: dict[str, MetricChange] = field(default_factory=dict)
    verdict: str | None = None
    baseline: str | None = None
    runs_without_usage: int = 0
    """Runs left out of ``tokens_per_run``: a model call reported no usage (unknown, not 0)."""


@dataclass(frozen=True)
class TimeBucket:
    start: datetime
    runs: int
    failed_rate: float
    with_errors_rate: float
    p95_duration_ms: float | None
    cost_usd: float | None


@dataclass(frozen=True)
class ToolFigures:
    tool: str
    calls: int
    failures: int
    p95_duration_ms: float | None
    last_error: str | None
    failing_run_ids: list[str]

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


@dataclass
class FleetReport:
    """Everything the page shows, computed from the runs (tests read it without a browser)."""

    runs: list[Run]
    releases: list[ReleaseFigures]
    bucket: Bucket
    buckets: list[TimeBucket]
    tools: list[ToolFigures]
    slowest: list[Run]
    max_steps: list[Run]
    timelines: dict[str, str]
    """run id -> the run's ``view`` page, for the runs the page lists (within the budget)."""


def _share(runs: Sequence[Run], flag: Callable[[Run], bool]) -> float:
    return sum(1 for run in runs if flag(run)) / len(runs) if runs else 0.0


def _mean_cost(runs: Sequence[Run]) -> float | None:
    costs = [c for c in (run_cost(run) for run in runs) if c is not None]
    return sum(costs) / len(costs) if costs else None


def _mean_tokens(runs: Sequence[Run]) -> float | None:
    known = [run.total_tokens for run in runs if run.tokens_known]
    return sum(known) / len(known) if known else None


def _release_figures(runs: Sequence[Run]) -> list[ReleaseFigures]:
    """Releases in order of their first run; each compared with the one before it."""
    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.started_at, r.run_id)):
        groups.setdefault(run.release if run.release is not None else _NO_RELEASE, []).append(run)
    out: list[ReleaseFigures] = []
    previous: tuple[str, list[Run]] | None = None
    for release, group in groups.items():
        durations = [run.duration_ms for run in group]
        changes: dict[str, MetricChange] = {}
        verdict = baseline = None
        if previous is not None:
            report = diff(previous[1], group, baseline_label=previous[0], candidate_label=release)
            changes = {change.name: change for change in report.metrics}
            verdict, baseline = report.verdict, previous[0]
        out.append(
            ReleaseFigures(
                release=release,
                runs=len(group),
                failed_rate=_share(group, lambda r: r.failed),
                with_errors_rate=_share(group, lambda r: r.has_errors),
                loop_rate=_share(group, lambda r: r.repeated_call_count > 0),
                p50_duration_ms=percentile(durations, 50),
                p95_duration_ms=percentile(durations, 95),
                tokens_per_run=_mean_tokens(group),
                runs_without_usage=sum(1 for run in group if not run.tokens_known),
                cost_per_run=_mean_cost(group),
                changes=changes,
                verdict=verdict,
                baseline=baseline,
            )
        )
        previous = (release, group)
    return out


def _bucket_start(moment: datetime, bucket: Bucket) -> datetime:
    moment = moment.astimezone(timezone.utc)
    if bucket == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _time_buckets(runs: Sequence[Run]) -> tuple[Bucket, list[TimeBucket]]:
    """Hour buckets for up to three days of runs, else day buckets; empty buckets are kept."""
    if not runs:
        return "hour", []
    first = min(run.started_at for run in runs)
    last = max(run.started_at for run in runs)
    bucket: Bucket = "hour" if last - first <= timedelta(days=3) else "day"
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    groups: dict[datetime, list[Run]] = {}
    for run in runs:
        groups.setdefault(_bucket_start(run.started_at, bucket), []).append(run)
    out: list[TimeBucket] = []
    start, end = _bucket_start(first, bucket), _bucket_start(last, bucket)
    # A stray timestamp years off would make millions of empty buckets: keep only non-empty ones then.
    dense = (end - start) / step <= 400
    moments = (start + step * i for i in range(int((end - start) / step) + 1)) if dense else sorted(groups)
    for moment in moments:
        group = groups.get(moment, [])
        costs = [c for c in (run_cost(run) for run in group) if c is not None]
        out.append(
            TimeBucket(
                moment,
                len(group),
                _share(group, lambda r: r.failed),
                _share(group, lambda r: r.has_errors),
                percentile([run.duration_ms for run in group], 95),
                sum(costs) if costs else None,
            )
        )
    return bucket, out


@dataclass
class _Failures:
    count: int = 0
    last_error: str | None = None
    last_at: str = ""
    runs: dict[str, str] = field(default_factory=dict)  # run id -> latest failure time


def _scan(
    runs: RunSet, wanted: set[str], origin: RunSet | None = None
) -> tuple[dict[str, _Failures], dict[str, list[Record]]]:
    """One pass over the logs: failing tool calls per tool, and the records of the wanted runs.

    Copies of a span in several files (step log and spill file) count once, as in ``load``.
    """
    selected_ids = {run.run_id for run in runs}
    failures: dict[str, _Failures] = {}
    seen_failures: set[tuple[Any, Any]] = set()
    records: dict[str, list[Record]] = {}
    for record in (origin or runs).scan_records(wanted):
        run_id = record.get("run_id")
        if run_id in wanted:
            records.setdefault(run_id, []).append(record)
        if record.get("type") == "tool_call" and record.get("status") == "error" and run_id in selected_ids:
            key = span_key(record)
            if type(record.get("span_id")) is str:
                if key in seen_failures:
                    continue
                seen_failures.add(key)
            tool = record.get("tool")
            tool = tool if type(tool) is str else str(record.get("name"))
            entry = failures.setdefault(tool, _Failures())
            entry.count += 1
            started = record.get("started_at")
            started = started if type(started) is str else ""
            if started >= entry.last_at:
                entry.last_at = started
                error = record.get("error")
                entry.last_error = None if error is None else str(error)
            if started >= entry.runs.get(str(run_id), ""):
                entry.runs[str(run_id)] = started
    return failures, records


def build_report(
    runs: RunSet,
    selected: Sequence[Run] | None = None,
    *,
    timeline_bytes: int = DEFAULT_TIMELINE_BYTES,
) -> FleetReport:
    """The figures, lists and embedded waterfalls of a report over ``selected`` (default: all)."""
    chosen = sorted(runs if selected is None else selected, key=lambda r: (r.started_at, r.run_id))
    chosen_set = RunSet(chosen, runs.sources, [])
    slowest = sorted(chosen, key=lambda r: (-r.duration_ms, r.run_id))[:LISTED]
    max_steps = [run for run in reversed(chosen) if run.stop_reason == "max_steps"][:LISTED]
    recent_failing = [run for run in reversed(chosen) if run.error_count > 0][: LISTED * 3]
    # Priority for the timeline budget: what the page lists, then the most recent runs.
    priority: dict[str, Run] = {}
    for run in [*slowest, *max_steps, *recent_failing, *reversed(chosen)]:
        priority.setdefault(run.run_id, run)
    # ~1.4 KB of page per record (see render_html); read only what can fit.
    wanted: set[str] = set()
    estimate = 0
    for run in priority.values():
        cost = 1400 * max(run.record_count, 1) + 2000
        if estimate + cost > timeline_bytes:
            if run in slowest or run in max_steps or run in recent_failing:
                continue
            break
        wanted.add(run.run_id)
        estimate += cost
    failures, raw = _scan(chosen_set, wanted, runs)  # runs: the source (files, a database)

    calls: dict[str, int] = {}
    durations: dict[str, list[float]] = {}
    for run in chosen:
        for tool, count in run.tools.items():
            calls[tool] = calls.get(tool, 0) + count
        for tool, values in run.tool_durations_ms.items():
            durations.setdefault(tool, []).extend(values)
    tools = []
    for tool in sorted(calls, key=lambda t: (-calls[t], t)):
        entry = failures.get(tool, _Failures())
        examples = sorted(entry.runs, key=lambda rid: entry.runs[rid], reverse=True)
        # Prefer example runs whose timeline is embedded.
        examples.sort(key=lambda rid: rid not in wanted)
        tools.append(
            ToolFigures(
                tool,
                calls[tool],
                entry.count,
                percentile(durations.get(tool, []), 95),
                entry.last_error,
                examples[:_EXAMPLES_PER_TOOL],
            )
        )

    timelines: dict[str, str] = {}
    used = 0
    by_id = {run.run_id: run for run in chosen}
    for run_id in priority:
        if run_id not in raw:
            continue
        run = by_id[run_id]
        records = sort_records(clean_record(r) for r in most_complete_copies(raw[run_id]))
        page = render_html(run, records)
        if used + len(page) > timeline_bytes:
            continue
        timelines[run_id] = page
        used += len(page)
    bucket, buckets = _time_buckets(chosen)
    return FleetReport(
        runs=chosen,
        releases=_release_figures(chosen),
        bucket=bucket,
        buckets=buckets,
        tools=tools,
        slowest=slowest,
        max_steps=max_steps,
        timelines=timelines,
    )


# --- formatting ------------------------------------------------------------------------------------

esc = html.escape


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    # Per-run costs are often fractions of a cent: three significant digits, never 1e-05.
    decimals = min(10, max(2, 2 - math.floor(math.log10(abs(value)))))
    return f"${value:.{decimals}f}"


def _usd_short(value: float) -> str:
    """An axis label: no trailing zeros ($0.0005, not $0.000500)."""
    text = _usd(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ms(value: float | None) -> str:
    return "—" if value is None else format_ms(value)


def _run_link(run_id: str, text: str | None = None) -> str:
    return (
        f'<a class="run-link" href="#run={esc(quote(run_id, safe=""))}" data-run="{esc(run_id)}">'
        f"{esc(text if text is not None else run_id)}</a>"
    )


_ARROWS = {"worse": "▲", "better": "▼", "same": "≈", "changed": "△", "new": "+", "gone": "−"}


def _verdict_badge(change: MetricChange | None) -> str:
    if change is None:
        return ""
    direction = change.direction
    arrow = _ARROWS.get(direction, "")
    if direction in ("worse", "better") and change.delta is not None and change.delta < 0:
        arrow = "▼"
    elif direction in ("worse", "better"):
        arrow = "▲"
    return (
        f'<span class="verdict v-{esc(direction)}" data-metric="{esc(change.name)}" '
        f'title="{esc(change.verdict)}">{arrow} {esc(direction)}</span>'
    )


def _headline(releases: Sequence[ReleaseFigures]) -> str:
    head = (
        "<tr><th>Release</th><th>Runs</th>"
        '<th title="stopped with an error">Failed runs</th>'
        '<th title="any error, also one the agent recovered from">Runs with errors</th>'
        "<th>Loop rate</th><th>p50 duration</th><th>p95 duration</th><th>Tokens / run</th>"
        "<th>Cost / run</th></tr>"
    )
    rows = []
    for fig in releases:
        c = fig.changes

        def cell(text: str, metric: str, c: dict[str, MetricChange] = c) -> str:
            return f'<td class="num">{esc(text)} {_verdict_badge(c.get(metric))}</td>'

        rows.append(
            f'<tr data-release="{esc(fig.release)}"><th scope="row">{esc(fig.release)}</th>'
            f'<td class="num">{fig.runs:,}</td>'
            + cell(_pct(fig.failed_rate), "failed_rate")
            + cell(_pct(fig.with_errors_rate), "with_errors_rate")
            + cell(_pct(fig.loop_rate), "repeated_call_rate")
            + cell(_ms(fig.p50_duration_ms), "p50_duration_ms")
            + cell(_ms(fig.p95_duration_ms), "p95_duration_ms")
            + cell(
                ("—" if fig.tokens_per_run is None else f"{fig.tokens_per_run:,.0f}")
                + (f" ({fig.runs_without_usage} unknown)" if fig.runs_without_usage else ""),
                "tokens_per_run",
            )
            + cell(_usd(fig.cost_per_run), "cost_per_run")
            + "</tr>"
        )
    verdicts = "".join(
        f"<li><b>{esc(fig.release)}</b> vs {esc(fig.baseline or '')}: {esc(fig.verdict)}</li>"
        for fig in releases
        if fig.verdict is not None
    )
    note = (
        f'<ul class="verdicts">{verdicts}</ul>'
        if verdicts
        else '<p class="hint">One release only: nothing to compare yet.</p>'
    )
    return f'<table class="headline" id="headline">{head}{"".join(rows)}</table>{note}'


# --- charts (inline SVG; no script needed to see them) ---------------------------------------------

_W, _H, _PAD_L, _PAD_B, _PAD_T = 560, 170, 62, 22, 10


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _time_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    fmt: Callable[[float], str],
    color: str,
    kind: Literal["bar", "line"],
) -> str:
    top = _nice_max(max((v for v in values if v is not None), default=0.0))
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T
    n = max(len(values), 1)
    slot = plot_w / n
    parts = [
        f'<line class="axis" x1="{_PAD_L}" y1="{_PAD_T + plot_h}" x2="{_W - 8}" y2="{_PAD_T + plot_h}"/>',
        f'<text class="tick" x="{_PAD_L - 4}" y="{_PAD_T + 8}" text-anchor="end">{esc(fmt(top))}</text>',
        f'<text class="tick" x="{_PAD_L - 4}" y="{_PAD_T + plot_h}" text-anchor="end">{esc(fmt(0))}</text>',
        f'<line class="grid" x1="{_PAD_L}" y1="{_PAD_T}" x2="{_W - 8}" y2="{_PAD_T}"/>',
    ]
    points: list[tuple[float, float, str]] = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        height = plot_h * value / top
        x = _PAD_L + i * slot
        tip = f"<title>{esc(label)}: {esc(fmt(value))}</title>"
        if kind == "bar":
            parts.append(
                f'<rect class="mark" x="{x + slot * 0.1:.2f}" y="{_PAD_T + plot_h - height:.2f}" '
                f'width="{max(slot * 0.8, 1):.2f}" height="{max(height, 0.5):.2f}" '
                f'fill="{color}">{tip}</rect>'
            )
        else:
            points.append((x + slot / 2, _PAD_T + plot_h - height, tip))
    if points:
        path = " ".join(f"{x:.2f},{y:.2f}" for x, y, _ in points)
        parts.append(
            f'<polyline class="line" points="{path}" stroke="{color}" fill="none" stroke-width="2"/>'
        )
        parts.extend(
            f'<circle class="mark" cx="{x:.2f}" cy="{y:.2f}" r="3" fill="{color}">{tip}</circle>'
            for x, y, tip in points
        )
    if labels:
        parts.append(f'<text class="tick" x="{_PAD_L}" y="{_H - 6}">{esc(labels[0])}</text>')
        if len(labels) > 1:
            parts.append(
                f'<text class="tick" x="{_W - 8}" y="{_H - 6}" text-anchor="end">{esc(labels[-1])}</text>'
            )
    empty = "" if any(v is not None for v in values) else '<p class="hint">no data</p>'
    return (
        f'<figure class="chart" id="{chart_id}"><figcaption>{esc(title)}</figcaption>'
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{esc(title)}">{"".join(parts)}</svg>'
        f"{empty}</figure>"
    )


def _tool_chart(
    chart_id: str, title: str, tools: Sequence[ToolFigures], value: Callable[[ToolFigures], float | None],
    fmt: Callable[[float], str], color: str,
) -> str:  # fmt: skip
    row_h, label_w, width = 20, 150, 420
    values = [value(t) for t in tools]
    top = _nice_max(max((v for v in values if v is not None), default=0.0))
    parts = []
    for i, (tool, v) in enumerate(zip(tools, values, strict=True)):
        y = i * row_h + 4
        name = tool.tool if len(tool.tool) <= 22 else tool.tool[:21] + "…"
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 12}" text-anchor="end">{esc(name)}</text>'
        )
        if v is None:
            parts.append(f'<text class="tick" x="{label_w}" y="{y + 12}">—</text>')
            continue
        bar = (width - label_w - 70) * v / top
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y}" width="{max(bar, 1):.2f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{esc(tool.tool)}: {esc(fmt(v))}</title></rect>'
            f'<text class="tick" x="{label_w + bar + 4:.2f}" y="{y + 12}">{esc(fmt(v))}</text>'
        )
    height = max(len(tools), 1) * row_h + 8
    return (
        f'<figure class="chart tool-chart" id="{chart_id}"><figcaption>{esc(title)}</figcaption>'
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">{"".join(parts)}</svg>'
        "</figure>"
    )


def _charts(report: FleetReport) -> str:
    fmt_label = "%Y-%m-%d %H:00" if report.bucket == "hour" else "%Y-%m-%d"
    labels = [b.start.strftime(fmt_label) for b in report.buckets]
    per = "hour" if report.bucket == "hour" else "day"
    time_charts = [
        _time_chart("chart-runs", f"Runs per {per}", labels, [b.runs for b in report.buckets],
                    lambda v: f"{v:,.0f}", "#0a84ff", "bar"),
        _time_chart("chart-error-rate", f"Failed runs (stopped with an error) per {per}", labels,
                    [b.failed_rate if b.runs else None for b in report.buckets], lambda v: f"{v * 100:.0f}%",
                    "#d70015", "line"),
        _time_chart("chart-p95", f"p95 run duration per {per}", labels,
                    [b.p95_duration_ms for b in report.buckets], format_ms, "#5e5ce6", "line"),
        _time_chart("chart-cost", f"Cost per {per} (USD)", labels, [b.cost_usd for b in report.buckets],
                    _usd_short, "#30b158", "bar"),
    ]  # fmt: skip
    tools = report.tools[:_TOP_TOOLS]
    tool_charts = [
        _tool_chart("chart-tool-calls", "Tool calls", tools, lambda t: float(t.calls), lambda v: f"{v:,.0f}",
                    "#0a84ff"),
        _tool_chart("chart-tool-failures", "Tool failure rate", tools, lambda t: t.failure_rate,
                    lambda v: f"{v * 100:.1f}%", "#d70015"),
        _tool_chart("chart-tool-p95", "Tool p95 duration", tools, lambda t: t.p95_duration_ms, format_ms,
                    "#5e5ce6"),
    ]  # fmt: skip
    more = f'<p class="hint">{len(report.tools) - _TOP_TOOLS} more tools in the table filter.</p>'
    return (
        '<section id="over-time"><h2>Over time <span class="hint">(by '
        f'{per})</span></h2><div class="charts">{"".join(time_charts)}</div></section>'
        '<section id="per-tool"><h2>Per tool</h2>'
        + (
            f'<div class="charts">{"".join(tool_charts)}</div>'
            if tools
            else '<p class="hint">No tool calls.</p>'
        )
        + (more if len(report.tools) > _TOP_TOOLS else "")
        + "</section>"
    )


def _stop_text(run: Run) -> str:
    """The stop reason, a rerun marked (reruns are in a report only with ``--reruns``)."""
    return run.stop_reason + (" (rerun)" if run.rerun_of else "")


def _run_list(list_id: str, title: str, runs: Sequence[Run], empty: str, total: int | None = None) -> str:
    if not runs:
        return (
            f'<section class="list" id="{list_id}"><h2>{esc(title)}</h2>'
            f'<p class="hint">{esc(empty)}</p></section>'
        )
    rows = "".join(
        f"<tr><td>{_run_link(run.run_id, run.run_id[:16])}</td><td>{esc(run.agent or '-')}</td>"
        f"<td>{esc(run.release or '-')}</td><td>{esc(_stop_text(run))}</td>"
        f'<td class="num">{esc(format_ms(run.duration_ms))}</td><td class="num">{run.total_steps}</td></tr>'
        for run in runs
    )
    count = f" <span class=hint>({total:,} in all)</span>" if total is not None and total > len(runs) else ""
    return (
        f'<section class="list" id="{list_id}"><h2>{esc(title)}{count}</h2><table>'
        "<tr><th>Run</th><th>Agent</th><th>Release</th><th>Stop reason</th><th>Duration</th>"
        "<th>Steps</th></tr>"
        f"{rows}</table></section>"
    )


def _failing_tools(tools: Sequence[ToolFigures]) -> str:
    failing = sorted((t for t in tools if t.failures), key=lambda t: (-t.failures, t.tool))[:LISTED]
    if not failing:
        return (
            '<section class="list" id="failing-tools"><h2>Failing tools</h2>'
            '<p class="hint">No tool call failed.</p></section>'
        )
    rows = "".join(
        f"<tr><td><b>{esc(t.tool)}</b></td><td class=num>{t.failures:,} / {t.calls:,}</td>"
        f"<td class=num>{esc(_pct(t.failure_rate))}</td>"
        f"<td class=error-text>{esc((t.last_error or '')[:200])}</td>"
        f"<td>{' '.join(_run_link(rid, rid[:10]) for rid in t.failing_run_ids)}</td></tr>"
        for t in failing
    )
    return (
        '<section class="list" id="failing-tools"><h2>Failing tools</h2><table>'
        "<tr><th>Tool</th><th>Failed / calls</th><th>Rate</th><th>Last error</th><th>Runs</th></tr>"
        f"{rows}</table></section>"
    )


# --- the page --------------------------------------------------------------------------------------

_STYLE = """
:root { font: 13px/1.4 system-ui, sans-serif; color: #1d1d1f; }
body { margin: 16px 20px; }
h1 { font-size: 20px; margin: 0 0 2px; } h2 { font-size: 15px; margin: 18px 0 6px; }
.meta, .hint { color: #666; } .hint { font-weight: normal; }
table { border-collapse: collapse; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { background: #fafafa; font-weight: 600; }
td.num, .num { text-align: right; font-variant-numeric: tabular-nums; }
.headline td { font-size: 14px; }
.verdict { font-size: 11px; padding: 1px 5px; border-radius: 8px; margin-left: 4px; white-space: nowrap; }
.v-worse { background: #ffe1e3; color: #a1000f; } .v-better { background: #dcf5e3; color: #126b2e; }
.v-same { background: #eee; color: #555; }
.v-changed, .v-new, .v-gone { background: #e8eefc; color: #2b4aa0; }
.verdicts { margin: 6px 0; padding-left: 18px; }
.charts { display: flex; flex-wrap: wrap; gap: 10px 18px; }
.chart { margin: 0; width: 560px; max-width: 100%; }
.tool-chart { width: 360px; }
.chart figcaption { font-weight: 600; margin-bottom: 2px; }
.chart svg { width: 100%; height: auto; background: #fcfcfd; border: 1px solid #eee; border-radius: 4px; }
.chart .axis { stroke: #999; } .chart .grid { stroke: #eee; }
.chart text { font: 10px system-ui, sans-serif; fill: #666; }
.chart .label { fill: #1d1d1f; font-size: 11px; }
.lists { display: flex; flex-wrap: wrap; gap: 0 28px; }
.error-text { color: #a1000f; max-width: 360px; overflow: hidden; text-overflow: ellipsis; }
a.run-link { color: #0a5ad4; font-family: ui-monospace, monospace; }
#filters { margin: 6px 0; display: flex; gap: 12px; flex-wrap: wrap; align-items: center; }
#runs-table th { cursor: pointer; user-select: none; }
#runs-table th[aria-sort=ascending]::after { content: " ▲"; }
#runs-table th[aria-sort=descending]::after { content: " ▼"; }
#runs-table tbody tr { cursor: pointer; } #runs-table tbody tr:hover { background: #eef4ff; }
#runs-table tbody tr.selected { background: #dce8ff; }
#runs-table td.run_id { font-family: ui-monospace, monospace; }
#runs-table tr[data-timeline] td.run_id::before { content: "▸ "; color: #0a84ff; }
tr.failed td.errors { color: #d70015; font-weight: 600; }
#run-detail { margin-top: 12px; border: 1px solid #ddd; border-radius: 4px; padding: 10px; }
#run-detail iframe { width: 100%; border: 1px solid #eee; height: 520px; }
button { font: inherit; }
"""

# Builds the runs table and the run detail from JSON with textContent only: never innerHTML,
# never eval. The charts and lists are already in the HTML.
_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var timelines = null;
  var lookups = {agent: data.agents, release: data.releases, stop: data.stops};
  var COLS = data.columns;
  var rows = data.rows;
  // A Map, not an object: a run id such as "__proto__" must stay a plain key.
  var byId = new Map();
  for (var i = 0; i < rows.length; i++) byId.set(rows[i][0], rows[i]);
  var sortCol = 1, sortDir = -1, shown = data.page;
  var embedded = new Set(data.timelines);
  var filters = {release: "", stop: "", agent: "", tool: ""};
  function text(el, value) { el.textContent = value; return el; }
  function cell(row, c) {
    var v = row[c.index];
    if (c.lookup) return v === null ? "-" : lookups[c.lookup][v];
    return v;
  }
  function fmtMs(ms) {
    if (ms < 1000) return ms.toFixed(0) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }
  function display(row, c) {
    var v = cell(row, c);
    if (c.kind === "time") return new Date(v).toISOString().slice(0, 19).replace("T", " ");
    if (c.kind === "ms") return fmtMs(v);
    if (c.kind === "usd") {
      if (v === null) return "\\u2014";
      if (v === 0 || v >= 1) return "$" + v.toFixed(2);
      return "$" + v.toFixed(Math.min(10, Math.max(2, 2 - Math.floor(Math.log10(v)))));
    }
    if (c.kind === "int") return v === null ? "\\u2014" : v.toLocaleString("en-US");
    return String(v);
  }
  function fill(select, values, key) {
    for (var i = 0; i < values.length; i++) {
      var o = document.createElement("option");
      o.value = String(i);
      o.textContent = values[i];
      select.appendChild(o);
    }
    select.addEventListener("change", function () {
      filters[key] = select.value; shown = data.page; draw();
    });
  }
  fill(document.getElementById("f-release"), data.releases, "release");
  fill(document.getElementById("f-stop"), data.stops, "stop");
  fill(document.getElementById("f-agent"), data.agents, "agent");
  fill(document.getElementById("f-tool"), data.tools, "tool");
  var IDX = data.index;
  function keep(row) {
    if (filters.release !== "" && String(row[IDX.release]) !== filters.release) return false;
    if (filters.stop !== "" && String(row[IDX.stop]) !== filters.stop) return false;
    if (filters.agent !== "" && String(row[IDX.agent]) !== filters.agent) return false;
    if (filters.tool !== "" && row[IDX.tools].indexOf(Number(filters.tool)) < 0) return false;
    return true;
  }
  var thead = document.querySelector("#runs-table thead tr");
  var tbody = document.querySelector("#runs-table tbody");
  var headers = [];
  COLS.forEach(function (c, n) {
    var th = text(document.createElement("th"), c.title);
    th.setAttribute("data-col", c.key);
    th.addEventListener("click", function () {
      if (sortCol === n) sortDir = -sortDir; else { sortCol = n; sortDir = c.kind === "text" ? 1 : -1; }
      draw();
    });
    headers.push(th);
    thead.appendChild(th);
  });
  function compare(a, b) {
    var c = COLS[sortCol], x = cell(a, c), y = cell(b, c);
    if (x === y) return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
    if (x === null || x === "-") return 1;
    if (y === null || y === "-") return -1;
    return (x < y ? -1 : 1) * sortDir;
  }
  function draw() {
    var kept = rows.filter(keep).sort(compare);
    headers.forEach(function (th, n) {
      if (n === sortCol) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    var frag = document.createDocumentFragment();
    for (var i = 0; i < kept.length && i < shown; i++) {
      var row = kept[i], tr = document.createElement("tr");
      tr.setAttribute("data-run", row[0]);
      if (row[IDX.errors] > 0) tr.className = "failed";
      if (embedded.has(row[0])) tr.setAttribute("data-timeline", "1");
      COLS.forEach(function (c) {
        var td = text(document.createElement("td"), display(row, c));
        td.className = c.key + (c.kind === "text" || c.kind === "time" ? "" : " num");
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    }
    tbody.appendChild(frag);
    text(document.getElementById("runs-count"),
      Math.min(shown, kept.length).toLocaleString("en-US") + " of " + kept.length.toLocaleString("en-US") +
      " matching runs shown (" + rows.length.toLocaleString("en-US") + " in the report)");
    document.getElementById("more").hidden = kept.length <= shown;
  }
  document.getElementById("more").addEventListener("click", function () { shown += data.page; draw(); });
  var detail = document.getElementById("run-detail");
  function openRun(id) {
    var row = byId.get(id);
    if (!row) return;
    var sel = document.querySelectorAll("#runs-table tr.selected");
    for (var i = 0; i < sel.length; i++) sel[i].classList.remove("selected");
    var trs = tbody.querySelectorAll("tr");
    for (var j = 0; j < trs.length; j++) {
      if (trs[j].getAttribute("data-run") === id) trs[j].classList.add("selected");
    }
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    detail.hidden = false;
    detail.setAttribute("data-run", id);
    detail.appendChild(text(document.createElement("h2"), "Run " + id));
    var parts = COLS.slice(1).map(function (c) { return c.title + " " + display(row, c); });
    detail.appendChild(text(document.createElement("p"), parts.join(" \\u00b7 ")));
    if (timelines === null) timelines = JSON.parse(document.getElementById("report-timelines").textContent);
    if (Object.prototype.hasOwnProperty.call(timelines, id)) {
      var frame = document.createElement("iframe");
      frame.setAttribute("sandbox", "allow-scripts");
      frame.setAttribute("title", "timeline of run " + id);
      frame.srcdoc = timelines[id];
      detail.appendChild(frame);
    } else {
      var p = text(document.createElement("p"),
        "This run's timeline is not embedded (the report embeds the " + data.embedded +
        " runs it lists, within its size budget). Open it with: ");
      p.className = "hint";
      p.appendChild(text(document.createElement("code"), "steptrace view " + id + " -o run.html"));
      detail.appendChild(p);
    }
    detail.scrollIntoView({block: "nearest"});
  }
  document.addEventListener("click", function (e) {
    var el = e.target;
    while (el && el !== document && !(el.getAttribute && el.getAttribute("data-run"))) el = el.parentNode;
    if (!el || el === document || el === detail) return;
    e.preventDefault();
    openRun(el.getAttribute("data-run"));
  });
  draw();
  if (location.hash.indexOf("#run=") === 0) openRun(decodeURIComponent(location.hash.slice(5)));
  document.body.setAttribute("data-ready", String(Math.round(performance.now())));
})();
"""

_COLUMNS = [
    ("run_id", "Run", "text", None),
    ("started", "Started (UTC)", "time", None),
    ("agent", "Agent", "text", "agent"),
    ("release", "Release", "text", "release"),
    ("stop_reason", "Stop reason", "text", "stop"),
    ("steps", "Steps", "int", None),
    ("tokens", "Tokens", "int", None),
    ("cost", "Cost", "usd", None),
    ("errors", "Errors", "int", None),
    ("duration", "Duration", "ms", None),
]
PAGE_ROWS = 100
"""Rows the table draws at first (and per "show more"); sorting and filters cover every run."""


def _table_data(report: FleetReport) -> dict[str, Any]:
    agents: dict[str, int] = {}
    releases: dict[str, int] = {}
    stops: dict[str, int] = {}
    tools: dict[str, int] = {}

    def index(table: dict[str, int], value: str | None) -> int | None:
        return None if value is None else table.setdefault(value, len(table))

    rows = []
    for run in report.runs:
        rows.append(
            [
                run.run_id,
                round(run.started_at.timestamp() * 1000),
                index(agents, run.agent),
                index(releases, run.release),
                index(stops, _stop_text(run)),
                run.total_steps,
                run.known_total_tokens,
                run_cost(run),
                run.error_count,
                round(run.duration_ms, 1),
                sorted(index(tools, tool) or 0 for tool in run.tools),
            ]
        )
    columns = [
        {"key": key, "title": title, "kind": kind, "lookup": lookup, "index": n}
        for n, (key, title, kind, lookup) in enumerate(_COLUMNS)
    ]
    return {
        "columns": columns,
        "index": {"release": 3, "stop": 4, "agent": 2, "errors": 8, "tools": 10},
        "rows": rows,
        "agents": list(agents),
        "releases": list(releases),
        "stops": list(stops),
        "tools": list(tools),
        "page": PAGE_ROWS,
        "embedded": len(report.timelines),
        "timelines": list(report.timelines),
    }


def _sha256(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def render_report(report: FleetReport, *, title: str = "steptrace report", selection: str = "") -> str:
    """The report page as one string: no external resource, nothing from the logs runs.

    ``selection`` says which runs were chosen (e.g. the command's filters), shown under the title.
    """
    runs = report.runs
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        # The view's own script runs inside the sandboxed timeline frames, which inherit this policy.
        f"script-src 'sha256-{_sha256(_SCRIPT)}' 'sha256-{_sha256(_VIEW_SCRIPT)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    if runs:
        span = f"{runs[0].started_at:%Y-%m-%d %H:%M} to {runs[-1].started_at:%Y-%m-%d %H:%M} UTC"
    else:
        span = "no runs"
    failed = sum(1 for run in runs if run.error_count > 0)
    costs = [c for c in (run_cost(run) for run in runs) if c is not None]
    total_cost = _usd(sum(costs)) if costs else "— (not priced)"
    meta = (
        f"<b>{len(runs):,}</b> runs · {esc(span)} · <b>{failed:,}</b> with errors · "
        f"{len(report.releases)} release(s) · cost {esc(total_cost)}"
        + (f" · selected by <code>{esc(selection)}</code>" if selection else "")
    )
    embedded = len(report.timelines)
    timeline_hint = (
        f'<span class="hint">▸ timeline embedded ({embedded:,} of {len(runs):,} runs)</span>'
        if embedded < len(runs)
        else ""
    )
    max_steps_total = sum(1 for run in runs if run.stop_reason == "max_steps")
    lists = (
        '<div class="lists">'
        + _run_list("slowest", "Slowest runs", report.slowest, "No runs.")
        + _run_list("max-steps", "Runs that hit max_steps", report.max_steps, "No run hit max_steps.",
                    max_steps_total)
        + _failing_tools(report.tools)
        + "</div>"
    )  # fmt: skip
    filters = "".join(
        f'<label>{esc(label)} <select id="f-{key}"><option value="">all</option></select></label>'
        for key, label in (
            ("release", "Release"),
            ("stop", "Stop reason"),
            ("agent", "Agent"),
            ("tool", "Tool"),
        )
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">',
            f"<title>{esc(title)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>{esc(title)}</h1>",
            f'<div class="meta">{meta}</div>',
            f'<section id="releases"><h2>Per release</h2>{_headline(report.releases)}</section>',
            _charts(report),
            lists,
            '<section id="runs"><h2>Runs</h2>',
            f'<div id="filters">{filters}<span id="runs-count" class="hint"></span>{timeline_hint}</div>',
            '<table id="runs-table"><thead><tr></tr></thead><tbody></tbody></table>',
            '<button id="more" type="button" hidden>Show more</button>',
            '<div id="run-detail" hidden></div></section>',
            f'<script id="report-data" type="application/json">{_script_json(_table_data(report))}</script>',
            '<script id="report-timelines" type="application/json">'
            f"{_script_json(report.timelines)}</script>",
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
    )


@dataclass(frozen=True)
class ReportFile:
    """What ``write_report`` wrote: the page, its size, and which runs carry their timeline."""

    path: Path
    bytes: int
    runs: int
    timeline_run_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "runs": self.runs,
            "timelines_embedded": len(self.timeline_run_ids),
        }


def write_report(
    runs: RunSet,
    path: str | Path,
    selected: Iterable[Run] | None = None,
    *,
    timeline_bytes: int = DEFAULT_TIMELINE_BYTES,
    title: str = "steptrace report",
    selection: str = "",
) -> ReportFile:
    """Write the report over ``selected`` runs (default: all of ``runs``) to ``path``.

    >>> logs = load("steptrace-logs")  # doctest: +SKIP
    >>> write_report(logs, "report.html", logs.runs(since="2026-11-01"))  # doctest: +SKIP
    """
    report = build_report(runs, None if selected is None else list(selected), timeline_bytes=timeline_bytes)
    page = render_report(report, title=title, selection=selection).encode("utf-8")
    out = Path(path)
    out.write_bytes(page)
    return ReportFile(out, len(page), len(report.runs), list(report.timelines))
