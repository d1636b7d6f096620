"""The ``steptrace`` command: a thin shim over :mod:`steptrace.analysis`.

Exit codes: 0 success, 1 nothing matched or run not found, 2 usage error or unreadable input,
3 internal error (a bug in steptrace: one line on stderr, the traceback with STEPTRACE_DEBUG=1).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

from steptrace._pricing import cost_available
from steptrace._where import where_text
from steptrace.analysis import (
    DebugReport,
    LogError,
    Run,
    RunSet,
    debug_run,
    diff,
    load,
    summarize,
    write_html,
)
from steptrace.analysis._agents import agents_line, handoff_text, parts_text, with_agent
from steptrace.analysis._debug import SpanRef, format_ms, span_label, token_text
from steptrace.analysis._diff import DiffReport, MetricChange, format_usd, format_value
from steptrace.analysis._loading import fast_path_available, find_sources, msgspec_module
from steptrace.analysis._logs import (
    interleave,
    last_warning_of,
    log_line,
    place_logs,
    run_logs,
    warning_summary,
)
from steptrace.analysis._runs import parse_duration_ms, parse_time
from steptrace.analysis._terminal import TerminalStream, terminal_text, unescaped
from steptrace.analysis._transcript import Item, item_line, transcript

_MSGSPEC = msgspec_module()
DEFAULT_LOG = "./steptrace-logs"
LOG_ENV = "STEPTRACE_JSONL_PATH"
EXIT_OK, EXIT_NO_MATCH, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DEBUG_ENV = "STEPTRACE_DEBUG"
# Captured content longer than this is cut in the replay unless --full (or it is the --step).
_CONTENT_PREVIEW_CHARS = 240


class _Exit(Exception):
    """Stop a command with a one-line message and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Progress:
    """A progress bar on stderr, drawn only once loading has taken ``delay`` seconds and only on
    a terminal (a bar in a CI log or a pipe is noise)."""

    def __init__(
        self,
        total_bytes: int,
        stream: TextIO,
        *,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.delay = delay
        self.clock = clock
        self.enabled = stream.isatty() if enabled is None else enabled
        self.started = clock()
        self.last_draw = -1.0
        self.drawn = False

    def __call__(self, done_bytes: int) -> None:
        now = self.clock()
        if not self.enabled or now - self.started < self.delay or now - self.last_draw < 0.1:
            return
        self.last_draw = now
        fraction = min(done_bytes / self.total, 1.0)
        filled = int(fraction * 30)
        self.stream.write(
            f"\rloading step logs [{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:3.0f}%"
            f"  {done_bytes / 1e6:,.0f}/{self.total / 1e6:,.0f} MB"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()


# --- helpers -------------------------------------------------------------------------------------


def log_paths(cli_paths: Sequence[str] | None) -> list[str]:
    """``--log`` paths, else ``$STEPTRACE_JSONL_PATH``, else ``./steptrace-logs``."""
    if cli_paths:
        return list(cli_paths)
    env = os.environ.get(LOG_ENV)
    return [env] if env else [DEFAULT_LOG]


def _load(args: argparse.Namespace, run_id_prefix: str | None = None) -> RunSet:
    """The runs of ``--log``/``--source``, warnings on stderr. ``run_id_prefix`` (a command
    about one run): from step logs, only the runs whose id starts with it (see :func:`load`,
    several times faster), unless no run or several do: then all of them, for the message."""
    if getattr(args, "source", None):
        return _load_source(args, args.source)
    if getattr(args, "explain", False) or getattr(args, "service", None):
        raise _Exit(EXIT_USAGE, "--explain and --service apply to --source clickhouse://... only")
    paths = log_paths(args.log)
    if not args.log and not os.environ.get(LOG_ENV) and not Path(DEFAULT_LOG).exists():
        raise LogError(
            f"no step log at {DEFAULT_LOG} (the default): run an agent with steptrace "
            f"configured, or pass --log PATH, or set {LOG_ENV}"
        )
    total = 0
    for source in find_sources(paths):
        with contextlib.suppress(OSError):
            total += source.stat().st_size
    progress = Progress(total, unescaped(sys.stderr))  # its own \r redraws the bar
    started = time.monotonic()
    try:
        runs = load(
            *paths, progress=progress, prices=getattr(args, "prices", None), run_id_prefix=run_id_prefix
        )
    finally:
        progress.close()
    if run_id_prefix is not None and runs.get(run_id_prefix) is None:
        return _load(args)  # the message names the closest run ids and counts all runs
    if not fast_path_available() and time.monotonic() - started > 2.0:
        print(
            "steptrace: tip: msgspec (a dependency) is missing; large logs load 3.5x faster with it",
            file=sys.stderr,
        )
    for issue in runs.issues:
        print(f"steptrace: warning: {issue.message()}", file=sys.stderr)
    if not cost_available() and any(run.llm_call_count for run in runs):
        print(
            "steptrace: note: model calls are not priced (COST shows -): pip install 'steptrace[cost]'",
            file=sys.stderr,
        )
    return runs


def _load_source(args: argparse.Namespace, url: str) -> RunSet:
    """Runs from a database (``--source clickhouse://...``), bounded by --since/--until."""
    from steptrace.analysis._clickhouse import is_clickhouse_url, load_clickhouse

    if not is_clickhouse_url(url):
        raise _Exit(EXIT_USAGE, f"--source {url!r}: expected clickhouse://USER@HOST:PORT/DATABASE?table=otel_traces"
                    " (clickhouses:// for TLS); step log files go to --log")  # fmt: skip
    if args.log:
        raise _Exit(EXIT_USAGE, "--source and --log read different places: give one of them")
    runs = load_clickhouse(
        url,
        since=_time_filter("--since", getattr(args, "since", None)),
        until=_time_filter("--until", getattr(args, "until", None)),
        service=getattr(args, "service", None),
        explain=sys.stderr if getattr(args, "explain", False) else None,
        prices=getattr(args, "prices", None),
    )
    if runs.window_note:
        print(f"steptrace: note: {runs.window_note}", file=sys.stderr)
    return runs


def _find_run(runs: RunSet, run_id: str) -> Run:
    run = runs.get(run_id)
    if run is not None:
        return run
    where = runs.describe_sources()
    plural = "" if len(runs) == 1 else "s"
    message = f"no run {run_id!r} in {where} ({len(runs)} run{plural})"
    prefixed = [r.run_id for r in runs if run_id and r.run_id.startswith(run_id)]
    if len(prefixed) > 1:
        message = f"run id prefix {run_id!r} is ambiguous: it matches {len(prefixed)} runs"
    closest = runs.closest_run_ids(run_id)
    if closest:
        message += "; did you mean " + ", ".join(closest) + "?"
    elif len(runs):
        message += "; list them with: steptrace runs"
    raise _Exit(EXIT_NO_MATCH, message)


def _print_json(value: Any, *, plain: bool = False) -> None:
    """``value`` as indented JSON on stdout, in one write (json.dump would make thousands of
    small ones through the terminal's escaping).

    ``plain``: the value holds only JSON's own types (str, int, float, bool, None, list, dict),
    as ``runs`` and ``summary`` give; msgspec (a dependency) then writes it ~10x faster than the
    stdlib. The two differ only in how some floats are spelled (1e+16 / 1e16: the same number),
    and a NaN from a hand-edited log is null (valid JSON) instead of the stdlib's NaN."""
    if plain and _MSGSPEC is not None:
        try:
            text = _MSGSPEC.json.format(_MSGSPEC.json.encode(value), indent=2).decode("utf-8")
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            sys.stdout.write(text + "\n")
            return
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    rows = [[terminal_text(cell) for cell in row] for row in rows]  # widths of what is shown
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _one_line(value: Any, limit: int | None) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = terminal_text(text.replace("\n", "\\n"))
    if limit is not None and len(text) > limit:
        if "[truncated: " in text:  # the marker _content writes: the log never held the rest
            return text[:limit] + (
                f"... [{len(text)} chars kept of a value already cut when it was captured "
                "(configure(max_content_bytes=...)); --full shows what was kept]"
            )
        return text[:limit] + f"... [{len(text)} chars; --full shows all]"
    return text


# --- commands ------------------------------------------------------------------------------------


def _time_filter(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise _Exit(
            EXIT_USAGE,
            f"bad filter: {option} {value!r} is not an ISO 8601 time; write e.g. {option} "
            f"2026-11-21T00:00Z or {option} 2026-11-21 (UTC when no zone is given)",
        ) from None


def _no_match_hint(args: argparse.Namespace, runs: RunSet) -> str:
    """What the logs do hold, for each filter whose value no run has."""
    hints: list[str] = []
    release = getattr(args, "release", None)
    if release is not None and release not in runs.releases():
        hints.append(
            "releases present: " + (", ".join(runs.releases()[:10]) or "none (runs carry no release)")
        )
    reasons = sorted({r.stop_reason for r in runs})
    if getattr(args, "stop_reason", None) is not None and args.stop_reason not in reasons:
        hints.append("stop reasons present: " + ", ".join(reasons))
    tools = sorted({tool for r in runs for tool in r.tools})
    if getattr(args, "tool", None) is not None and args.tool not in tools:
        hints.append(
            "tools present: " + (", ".join(tools[:10]) or "none") + (", ..." if len(tools) > 10 else "")
        )
    agents = sorted({r.agent for r in runs if r.agent is not None})
    if getattr(args, "agent", None) and not set(args.agent) & set(agents):
        hints.append(
            "agents present: " + (", ".join(agents[:10]) or "none") + (", ..." if len(agents) > 10 else "")
        )
    if not getattr(args, "reruns", True):
        reruns = sum(1 for r in runs if r.rerun_of is not None)
        if reruns:
            hints.append(f"{reruns} rerun{'s' if reruns != 1 else ''} left out: --reruns includes them")
    return f" ({'; '.join(hints)})" if hints else ""


def add_run_filter_arguments(parser: argparse.ArgumentParser, *, release: bool = True) -> None:
    """The run filters of ``runs``, ``diff`` and ``report``; read them with :func:`run_filter_kwargs`."""
    parser.add_argument("--stop-reason", help="e.g. end_turn, error, max_steps, incomplete")
    parser.add_argument("--min-steps", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--tool", help="runs that called this tool")
    if release:
        parser.add_argument("--release")
    parser.add_argument(
        "--agent",
        action="append",
        metavar="NAME",
        help="runs in which this agent acted: it started the run or was handed the conversation "
        "(repeatable: any of them)",
    )
    parser.add_argument(
        "--starting-agent",
        action="append",
        metavar="NAME",
        help="runs this agent started (repeatable: any of them)",
    )
    parser.add_argument(
        "--conversation", metavar="ID", help="runs of this conversation (gen_ai.conversation.id)"
    )
    parser.add_argument(
        "--status",
        choices=["ok", "error"],
        help="error: failed runs (stopped with an error: the run span failed or the stop reason is "
        "error); ok: any other finished run",
    )
    parser.add_argument(
        "--has-errors",
        action="store_true",
        help="runs with errors: any error, also one the agent recovered from (every failed run is one)",
    )
    parser.add_argument("--min-duration", metavar="TIME", help="at least this long, e.g. 2s, 500ms, 1.5m")
    parser.add_argument("--max-duration", metavar="TIME", help="at most this long, e.g. 30s")
    parser.add_argument("--since", help="ISO time, e.g. 2026-11-21T00:00Z (UTC if no zone)")
    parser.add_argument("--until", help="ISO time (exclusive)")
    parser.add_argument(
        "--slower-than-percentile",
        type=float,
        metavar="P",
        help="only runs slower than the P-th percentile of the matching runs",
    )
    parser.add_argument(
        "--reruns",
        action="store_true",
        help="include reruns (steptrace rerun; left out by default: they are not production runs)",
    )


def _duration_filter(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration_ms(value, option)
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, f"bad filter: {exc}") from None


def run_filter_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :func:`steptrace.analysis.filter_runs` / ``RunSet.runs`` from the
    options :func:`add_run_filter_arguments` added; a bad value is ``_Exit`` 2 with an example."""
    percentile = args.slower_than_percentile
    if percentile is not None and not 0 <= percentile <= 100:
        raise _Exit(EXIT_USAGE, f"bad filter: --slower-than-percentile {percentile:g} is not 0..100, e.g. 95")
    return {
        "stop_reason": args.stop_reason,
        "min_steps": args.min_steps,
        "max_steps": args.max_steps,
        "tool": args.tool,
        "release": getattr(args, "release", None),
        "since": _time_filter("--since", args.since),
        "until": _time_filter("--until", args.until),
        "slower_than_percentile": percentile,
        "agent": args.agent,
        "starting_agent": getattr(args, "starting_agent", None),
        "conversation": args.conversation,
        "status": args.status,
        "has_errors": True if getattr(args, "has_errors", False) else None,
        "min_duration": _duration_filter("--min-duration", args.min_duration),
        "max_duration": _duration_filter("--max-duration", args.max_duration),
        "reruns": True if getattr(args, "reruns", False) else None,
    }


def _cursor_id(runs: RunSet, option: str, value: str | None) -> str | None:
    """The full run id a ``--after``/``--before`` cursor names (a prefix will do)."""
    if value is None:
        return None
    run = runs.get(value)
    if run is None:
        example = next(iter(runs)).run_id if len(runs) else "RUN_ID"
        closest = runs.closest_run_ids(value)
        hint = f"; did you mean {', '.join(closest)}?" if closest else ""
        raise _Exit(
            EXIT_USAGE,
            f"bad filter: {option} {value!r} is not one run id in these logs{hint} "
            f"(e.g. {option} {example}, an id from steptrace runs)",
        )
    return run.run_id


def _cost_text(cost: float | None, unpriced: int) -> str:
    text = format_usd(cost)
    if unpriced:
        text += f" (+{unpriced} unpriced)" if cost is not None else f" ({unpriced} unpriced)"
    return text


def _tokens_cell(run: Run) -> str:
    """``2,746``; ``≥62`` when some model call reported no usage; ``—`` when none did."""
    known = run.known_total_tokens
    if known is None:
        return "—"
    return ("≥" if run.llm_calls_without_usage else "") + f"{known:,}"


def _no_usage_text(calls: int) -> str:
    return f"{_count(calls, 'model call')} reported no usage: unknown, not counted"


def cmd_runs(args: argparse.Namespace) -> int:
    filters = run_filter_kwargs(args)
    runs = _load(args)
    after = _cursor_id(runs, "--after", args.after)
    before = _cursor_id(runs, "--before", args.before)
    by_started = args.order_by == "started"
    # The page: the start of the list after --after (or with --ascending), else its end: the
    # most recent runs, or those right before --before. Duration order pages from its start.
    if by_started:
        from_start = after is not None or (args.ascending and before is None)
    else:
        from_start = after is not None or before is None
    try:
        # A terminal lists runs oldest first (started) or slowest first (duration); --ascending
        # turns the duration order around and, for started, pages from the oldest end. Only
        # the page is read (a database selects, orders and cuts it where it can).
        shown, matched = runs.runs_page(
            args.limit if args.limit and args.limit > 0 else None,
            from_end=not from_start,
            **filters,
            order_by=args.order_by,
            ascending=True if by_started else args.ascending or None,
            after=after,
            before=before,
        )
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, f"bad filter: {exc}") from exc
    if not matched:
        if args.json:
            _print_json([])  # a script's parser still gets JSON; the exit code says "no match"
        raise _Exit(
            EXIT_NO_MATCH, f"no runs match these filters among {len(runs)} runs{_no_match_hint(args, runs)}"
        )
    if after is not None or before is not None:
        which = "next page" if from_start else "previous page"
    elif by_started:
        which = "oldest" if from_start else "most recent"
    else:
        which = "fastest" if args.ascending else "slowest"
    cut_note = f"{len(shown)} of {matched} matching runs shown ({which}); --limit 0 shows all"
    if len(shown) < matched:
        if from_start:
            cut_note += f"; next page: --after {shown[-1].run_id}"
        else:
            cut_note += f"; previous page: --before {shown[0].run_id}"
    if args.json:
        _print_json([r.to_dict() for r in shown], plain=True)
        if len(shown) < matched:
            print(f"steptrace: {cut_note}", file=sys.stderr)
        return EXIT_OK
    rows = [
        [
            r.run_id,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            " → ".join(r.agents) or r.agent or "-",  # the starting agent, then those handed to
            r.release or "-",
            str(r.total_steps),
            _tokens_cell(r),
            # "≥": some calls have no known price, so the run cost at least this much.
            ("≥" if r.unpriced_llm_calls and r.cost_usd is not None else "") + format_usd(r.cost_usd),
            str(r.error_count),
            format_ms(r.duration_ms),
            r.stop_reason + (f" (rerun of {r.rerun_of[:8]})" if r.rerun_of else ""),
        ]
        for r in shown
    ]
    headers = [
        "RUN ID",
        "STARTED (UTC)",
        "AGENT",
        "RELEASE",
        "STEPS",
        "TOKENS",
        "COST",
        "ERRORS",
        "DURATION",
        "STOP REASON",
    ]
    print(_table(headers, rows, right={4, 5, 6, 7, 8}))
    if len(shown) < matched:
        print(f"\n{cut_note}")
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    run = _find_run(_load(args, args.run_id), args.run_id)
    summary = summarize(run)
    who = agents_line(run.agents, run.records() if len(run.agents) > 1 else ())
    if args.json:
        _print_json(summary.to_dict(), plain=True)
        return EXIT_OK
    tools = ", ".join(f"{name} ×{count}" for name, count in summary.tools_used.items()) or "-"
    rows = [
        ("run", summary.run_id + (f"  (a rerun of {summary.rerun_of})" if summary.rerun_of else "")),
        ("agent", f"{summary.agent or '-'}  (release {summary.release or '-'})"),
        ("agents", who),
        ("started", summary.started_at),
        (
            "stop reason",
            summary.stop_reason + ("" if summary.complete else "  (no run record: crashed or still running)"),
        ),
        ("duration", format_ms(summary.duration_ms)),
        (
            "steps",
            f"{summary.total_steps}  ({_count(summary.llm_call_count, 'LLM call')}, "
            f"{_count(summary.tool_call_count, 'tool call')})",
        ),
        (
            "tokens",
            (
                f"{'≥' if summary.llm_calls_without_usage else ''}{summary.total_tokens:,}  "
                f"({summary.input_tokens:,} in"
                + _cached_text(summary.cache_read_input_tokens, summary.cache_creation_input_tokens)
                + f", {summary.output_tokens:,} out)"
                if summary.tokens_reported
                else "—"
            )
            + (
                f"  ({_no_usage_text(summary.llm_calls_without_usage)})"
                if summary.llm_calls_without_usage
                else ""
            ),
        ),
        (
            "cost",
            _cost_text(summary.cost_usd, summary.unpriced_llm_calls)
            + ("  (model calls served from the recording cost nothing)" if summary.rerun_of else ""),
        ),
        ("errors", str(summary.error_count)),
        ("tools used", tools),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    return EXIT_OK


def _cached_text(read: int, written: int) -> str:
    """``, of which 3,000 cache reads and 200 cache writes``: input tokens include both."""
    parts = [f"{read:,} cache reads"] * bool(read) + [f"{written:,} cache writes"] * bool(written)
    return f" incl. {' and '.join(parts)}" if parts else ""


def _count(number: int, noun: str) -> str:
    """``1 LLM call``, ``2 LLM calls``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _span_line(span: SpanRef) -> str:
    text = f"{span.describe()}, {format_ms(span.duration_ms)}"
    if span.error:
        text += f", {span.error}"
    return text


def _print_debug(report: DebugReport, warning: dict[str, Any] | None = None) -> None:
    print(
        f"run {report.run_id}: stop reason {report.stop_reason}, "
        f"{format_ms(report.duration_ms)}" + ("" if report.complete else " (unfinished)")
    )
    first, slowest = report.first_error_span, report.slowest_span
    print(f"agents:        {report.agents}")
    print(f"first error:   {_span_line(first) if first else '-'}")
    if first is not None and first.raised_at:
        print(f"raised at:     {_one_line(first.raised_at, None)}")
    if warning is not None:  # what the application itself said just before it failed
        where = f" (step {warning['agent_step']})" if warning.get("agent_step") is not None else ""
        print(f"last warning:  {_one_line(log_line(warning), _CONTENT_PREVIEW_CHARS)}{where}")
    print(f"slowest span:  {_span_line(slowest) if slowest else '-'}")
    cost = _cost_text(report.cost_usd, report.unpriced_llm_calls)
    costliest = report.most_expensive_call
    if costliest is not None:
        most = format_usd(report.most_expensive_call_cost_usd)
        cost += f"; most expensive call: {costliest.describe()}, {most}"
    print(f"cost:          {cost}")
    classes = ", ".join(f"{k} ×{v}" for k, v in report.error_classes.items()) or "-"
    print(f"errors:        {report.error_count}")
    print(f"error classes: {classes}")
    if report.repeated_tool_calls:
        print("repeated tool calls (same tool, same arguments):")
        for call in report.repeated_tool_calls:
            at = ", ".join(f"#{s}" for s in call.steps)
            print(f"  {call.tool} ×{call.count}  args_hash {call.args_hash}  spans {at}")
    else:
        print("repeated tool calls: none")
    for rerun in report.reruns:
        print(
            f"rerun:         {rerun.get('run_id') or '-'} ({rerun.get('llm')}/{rerun.get('tools')}): "
            f"{rerun.get('verdict')}"
        )
    print()
    if not report.hypotheses:
        slo = f" and it met the {format_ms(report.slo_ms)} SLO" if report.slo_ms else ""
        print(f"No problem found: no failed spans, no loop{slo}.")
        return
    print("Hypotheses, the most explained first (with the spans that are their evidence):")
    for number, hypothesis in enumerate(report.hypotheses, 1):
        share = f"{hypothesis.score:.0%} of the {hypothesis.share_of}"
        print(f"{number}. [{hypothesis.kind}] {hypothesis.title}  (explains {share})")
        for span in hypothesis.evidence[:8]:
            print(f"     - {_span_line(span)}")
        if len(hypothesis.evidence) > 8:
            print(f"     - ... and {len(hypothesis.evidence) - 8} more")
    spans = [s.step for h in report.hypotheses for s in h.evidence if s.step is not None]
    if spans:
        print(f"\nNext: steptrace replay {report.run_id} --span {spans[0]}")


def cmd_debug(args: argparse.Namespace) -> int:
    if args.slo_ms is not None and not (math.isfinite(args.slo_ms) and args.slo_ms > 0):
        raise _Exit(
            EXIT_USAGE, f"--slo-ms {args.slo_ms:g}: give a positive number of milliseconds, e.g. 5000"
        )
    from steptrace.rerun import rerun_reports

    runs = _load(args)
    run = _find_run(runs, args.run_id)
    reruns: dict[tuple[Any, Any], dict[str, Any]] = {}
    for log in log_paths(args.log):  # two --log paths in one directory hold one set of reports
        for found in rerun_reports(run.run_id, log):
            reruns.setdefault((found.get("ts"), found.get("run_id")), found)
    report = debug_run(run, slo_ms=args.slo_ms, reruns=list(reruns.values()))
    first = report.first_error_span
    warning = last_warning_of(run, run_logs(runs, run), first.span_id if first else None)
    if args.json:
        _print_json({**report.to_dict(), "last_warning": warning_summary(warning)})
    else:
        _print_debug(report, warning)
    return EXIT_OK


def _agent_step(record: dict[str, Any]) -> int | None:
    """The loop iteration a record ran in (an agent_step record: its own number)."""
    number = record.get("agent_step")
    return number if type(number) is int else None


def _depths(records: Sequence[dict[str, Any]]) -> list[int]:
    parents = {r.get("span_id"): r.get("parent_span_id") for r in records}
    out = []
    for record in records:
        depth, parent = 0, record.get("parent_span_id")
        while parent in parents and depth < 32:
            depth += 1
            parent = parents[parent]
        out.append(depth)
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    runs = _load(args)
    run = _find_run(runs, args.run_id)
    records = run.records()
    logs = run_logs(runs, run)  # captured log lines (capture_logs), shown in place
    start_index = 0
    # Two numbers, two flags: --span N is span #N (the record's `step`, what debug's evidence
    # cites), --step N the agent's N-th loop iteration (the STEP column, `step.number`).
    if args.span is not None:
        indexes = [i for i, r in enumerate(records) if r.get("step") == args.span]
        if not indexes:
            seqs = [r["step"] for r in records if isinstance(r.get("step"), int)]
            known = f"#{min(seqs)}..#{max(seqs)}" if seqs else "none"
            raise _Exit(EXIT_NO_MATCH, f"run {run.run_id} has no span #{args.span} (spans: {known})")
        start_index = indexes[0]
    elif args.step is not None:
        indexes = [i for i, r in enumerate(records) if _agent_step(r) == args.step]
        if not indexes:
            numbers = sorted({n for n in map(_agent_step, records) if n is not None})
            known = f"1..{numbers[-1]}" if numbers else "none: the run has no agent_step spans"
            raise _Exit(EXIT_NO_MATCH, f"run {run.run_id} has no agent step {args.step} (steps: {known})")
        start_index = indexes[0]
    shown = records[start_index:]
    placed = place_logs(records, logs)
    if args.json:
        _print_json(interleave(shown, [log for after in placed[start_index:] for log in after]))
        return EXIT_OK
    origin = min(
        (float(r.get("ts") or 0) - float(r.get("duration_ms") or 0) / 1000 for r in records),
        default=0.0,
    )
    print(
        f"run {run.run_id} · {' → '.join(run.agents) or run.agent or '-'} {run.release or ''}"
        f" · stop {run.stop_reason}"
        f" · {format_ms(run.duration_ms)} · {len(records)} spans"
    )
    if start_index:
        target = f"span #{args.span}" if args.span is not None else f"step {args.step}"
        print(f"(jumped to {target}; {start_index} earlier spans hidden)")
    print()
    all_depths = _depths(records)
    span_depths = {r.get("span_id"): d for r, d in zip(records, all_depths, strict=True)}
    depths = all_depths[start_index:]
    width = max([14, *(len(token_text(r)) + 1 for r in shown)])  # "120→30 tok (90 cached)"
    print(f"  {'#':>4} {'STEP':>4}  {'START':>9}  {'DURATION':>9}  {'TOKENS':<{width}}{'STATUS':<7}SPAN")
    for index, (record, depth) in enumerate(zip(shown, depths, strict=True), start_index):
        seq = record.get("step")
        agent_step = _agent_step(record)
        start = (float(record.get("ts") or 0) - float(record.get("duration_ms") or 0) / 1000 - origin) * 1000
        tokens = token_text(record)
        marker = (
            "▶"
            if (args.span is not None and seq == args.span)
            or (args.span is None and args.step is not None and agent_step == args.step)
            else " "
        )
        status = "ERROR" if record.get("status") == "error" else "ok"
        indent = "  " * depth
        print(
            f"{marker} {'#' + str(seq) if seq is not None else '-':>4} "
            f"{agent_step if agent_step is not None else '-':>4}  +{format_ms(start):>8}  "
            f"{format_ms(float(record.get('duration_ms') or 0)):>9}  {tokens:<{width}}{status:<7}"
            f"{indent}{record.get('type')} {with_agent(span_label(record), record)}"
        )
        pad = " " * (42 + width) + indent + "  "
        limit = None if args.full or marker == "▶" else _CONTENT_PREVIEW_CHARS
        if record.get("error"):
            print(f"{pad}error:  {_one_line(record.get('error'), limit)}")
            raised_at = where_text(record.get("error_where"))
            if raised_at is not None:
                print(f"{pad}at:     {_one_line(raised_at, limit)}")
            if args.full and isinstance(record.get("error_stack"), str):
                for line in str(record["error_stack"]).rstrip("\n").splitlines():
                    print(f"{pad}  {_one_line(line, None)}")
        if record.get("stop_reason") and record.get("type") in ("llm_call", "agent_step"):
            print(f"{pad}stop:   {record.get('stop_reason')}")
        handoff = handoff_text(record)
        if handoff is not None:
            print(f"{pad}handoff: {handoff}")
        turns = transcript(record) if args.full else None
        if turns is not None:  # --full: the model call as a conversation, then its answer
            answered = False
            for turn in turns:
                if turn.output and not answered:
                    print(f"{pad}── answer")
                    answered = True
                for number, item in enumerate(turn.items or [Item("text", "")]):
                    head = f"{turn.role + ':':<12}" if number == 0 else " " * 12
                    for line_number, line in enumerate(item_line(item).split("\n")):
                        print(f"{pad}{head if line_number == 0 else ' ' * 12} {_one_line(line, None)}")
        shown_as_turns = turns is not None
        instructions = record.get("system_instructions")
        if instructions is not None and not shown_as_turns:  # what the model was told (capture on)
            told = parts_text(instructions)
            print(f"{pad}system: {_one_line(told if told is not None else instructions, limit)}")
        for key in ("input", "output"):
            if record.get(key) is not None and not shown_as_turns:
                print(f"{pad}{key + ':':<7} {_one_line(record.get(key), limit)}")
        for log in placed[index]:
            at = (log["ts"] - origin) * 1000
            log_indent = "  " * (span_depths.get(log["span_id"], depth) + 1)
            print(
                f"  {'':>4} {log['agent_step'] if log['agent_step'] is not None else '-':>4}  "
                f"+{format_ms(at):>8}  {'':>9}  {'':<14}{'log':<7}{log_indent}"
                f"{_one_line(log_line(log), None if args.full else _CONTENT_PREVIEW_CHARS)}"
            )
    return EXIT_OK


def _signed(delta: float, magnitude: str) -> str:
    """``+120 ms``, ``-3``; a change that rounds to nothing is ``0 ms``, never ``-0 ms``."""
    if not any(ch in "123456789" for ch in magnitude.split(" ", maxsplit=1)[0]):
        return magnitude
    return ("+" if delta > 0 else "-") + magnitude


def _print_diff(report: DiffReport) -> None:
    print(
        f"baseline {report.baseline_label} ({report.baseline_runs} runs)  vs  "
        f"candidate {report.candidate_label} ({report.candidate_runs} runs)\n"
    )

    def rows(changes: Sequence[MetricChange]) -> list[list[str]]:
        out = []
        for change in changes:
            if change.delta is None:
                delta = "-"
            elif change.unit == "ratio":
                delta = _signed(change.delta, f"{abs(change.delta) * 100:.1f} pts")
            elif change.unit == "ms":
                delta = _signed(change.delta, format_ms(abs(change.delta)))
            elif change.unit == "usd":
                delta = _signed(change.delta, format_usd(abs(change.delta)))
            else:
                delta = _signed(change.delta, f"{abs(change.delta):,.0f}")
            out.append(
                [
                    change.name,
                    format_value(change.baseline, change.unit),
                    format_value(change.candidate, change.unit),
                    delta,
                    change.verdict.split(" (")[0],
                ]
            )
        return out

    headers = ["METRIC", "BASELINE", "CANDIDATE", "DELTA", "VERDICT"]
    all_rows = rows(report.metrics) + rows(report.tool_p95_ms) + rows(report.stop_reasons)
    print(_table(headers, all_rows, right={1, 2, 3}))
    if report.tokens_note:
        print(f"\n{report.tokens_note}")
    print(f"\nVerdict: {report.verdict}")


def cmd_diff(args: argparse.Namespace) -> int:
    filters = run_filter_kwargs(args)
    runs = _load(args)
    try:
        # The same filters as `steptrace runs` narrow both sides (e.g. --agent, --since). What
        # is compared of each side (a database computes it in SQL where it can).
        base = runs.side_stats(**{**filters, "release": args.baseline})
        cand = runs.side_stats(**{**filters, "release": args.candidate})
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, f"bad filter: {exc}") from exc
    missing = [rel for rel, side in ((args.baseline, base), (args.candidate, cand)) if not side.runs]
    if missing:
        releases = runs.releases()
        known = ", ".join(releases[:10]) if releases else "none (runs carry no release)"
        raise _Exit(
            EXIT_NO_MATCH,
            f"no runs with release {', '.join(map(repr, missing))}; releases in the logs: {known}",
        )
    report = diff(base, cand, baseline_label=args.baseline, candidate_label=args.candidate)
    if args.json:
        _print_json(report.to_dict())
    else:
        _print_diff(report)
    return EXIT_OK


def cmd_view(args: argparse.Namespace) -> int:
    runs = _load(args)
    run = _find_run(runs, args.run_id)
    output = args.output or "steptrace-" + re.sub(r"[^A-Za-z0-9_.-]", "_", run.run_id) + ".html"
    try:
        path = write_html(run, output, logs=run_logs(runs, run))
    except OSError as exc:
        raise _Exit(EXIT_USAGE, f"{output}: cannot write ({exc.strerror or exc})") from exc
    if args.json:
        _print_json({"run_id": run.run_id, "path": str(path), "spans": len(run.records())})
    else:
        print(
            f"wrote {path} ({len(run.records())} spans of run {run.run_id}); "
            "open it in a browser, no network needed"
        )
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from steptrace.analysis._report import write_report

    filters = run_filter_kwargs(args)
    runs = _load(args)
    try:
        selected = runs.runs(**filters)
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, f"bad filter: {exc}") from exc
    if not selected:
        raise _Exit(
            EXIT_NO_MATCH, f"no runs match these filters among {len(runs)} runs{_no_match_hint(args, runs)}"
        )

    # The filters as given, for the page's header (a report must say what it leaves out).
    def shown(name: str, value: Any) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        return format_ms(value).replace(" ", "") if name.endswith("_duration") else str(value)

    selection = " ".join(
        f"--{name.replace('_', '-')}" + ("" if value is True else f" {shown(name, value)}")
        for name, given in filters.items()
        if given is not None
        for value in (given if isinstance(given, list) else [given])
    )
    try:
        written = write_report(runs, args.output, selected, selection=selection)
    except OSError as exc:
        raise _Exit(EXIT_USAGE, f"{args.output}: cannot write ({exc.strerror or exc})") from exc
    if args.json:
        _print_json(written.to_dict())
    else:
        print(
            f"wrote {written.path} ({written.bytes / 1e6:.1f} MB: {written.runs:,} runs, "
            f"{len(written.timeline_run_ids):,} with their timeline); open it in a browser, no network needed"
        )
    return EXIT_OK


DEMO_MODULE = "steptrace._demo"


def cmd_demo(args: argparse.Namespace) -> int:
    # The quickstart agent ships inside the package; a fresh process keeps its configure() out
    # of this one.
    completed = subprocess.run([sys.executable, "-m", DEMO_MODULE], check=False)
    if completed.returncode != 0:
        raise _Exit(EXIT_USAGE, f"the demo agent ({DEMO_MODULE}) exited with {completed.returncode}")
    if args.json:
        _print_json({"quickstart": DEMO_MODULE, "log": log_paths(None)[0]})
        return EXIT_OK
    print("\nNext, look at what it recorded:")
    for line in (
        "steptrace runs",
        "steptrace summary RUN_ID",
        "steptrace debug RUN_ID",
        "steptrace replay RUN_ID",
        "steptrace view RUN_ID -o run.html",
    ):
        print(f"  {line}")
    return EXIT_OK


# --- parser --------------------------------------------------------------------------------------

_EPILOG = """examples:
  steptrace runs --stop-reason error            # failing runs, most recent last
  steptrace debug 3f2a9c --slo-ms 5000          # why did this run fail or crawl?
  steptrace diff --baseline 1.4.0 --candidate 1.5.0
logs are read from --log PATH (repeatable: file, directory, glob, .jsonl[.gz], OTLP JSON),
else $STEPTRACE_JSONL_PATH, else ./steptrace-logs.
exit codes: 0 ok, 1 nothing matched / run not found, 2 usage error or unreadable input,
3 internal error (STEPTRACE_DEBUG=1 shows the traceback)."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log",
        action="append",
        metavar="PATH",
        help=f"step log file, directory or glob (repeatable; default: ${LOG_ENV} or {DEFAULT_LOG})",
    )
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    common.add_argument(
        "--prices",
        metavar="FILE",
        help="JSON prices (USD per million tokens) adding to or overriding genai-prices, e.g. "
        '{"acme-llm": {"input_mtok": 1.0, "output_mtok": 2.0}}',
    )
    common.add_argument(
        "--source",
        metavar="URL",
        help="read runs from ClickHouse instead: clickhouse[s]://USER@HOST:PORT/DATABASE?table=otel_traces"
        " (password from $STEPTRACE_CLICKHOUSE_PASSWORD)",
    )
    common.add_argument("--service", metavar="NAME", help="with --source: only spans of this service.name")
    common.add_argument("--explain", action="store_true", help="with --source: print each SQL query (stderr)")

    parser = argparse.ArgumentParser(
        prog="steptrace",
        description="Find, debug, replay and compare agent runs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, help_text: str, example: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    p = command(
        "runs",
        "list runs, with filters",
        "steptrace runs --stop-reason max_steps --order-by duration --limit 10",
        cmd_runs,
    )
    add_run_filter_arguments(p)
    p.add_argument("--order-by", choices=["started", "duration"], default="started")
    p.add_argument(
        "--ascending",
        action="store_true",
        help="page from the oldest runs (--order-by duration: list fastest first)",
    )
    p.add_argument("--after", metavar="RUN_ID", help="the page after this run (cursor pagination)")
    p.add_argument("--before", metavar="RUN_ID", help="the page before this run")
    p.add_argument("--limit", type=int, default=20, help="rows to show (default 20, 0 = all)")

    p = command("summary", "headline numbers of one run", "steptrace summary 3f2a9c", cmd_summary)
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")

    p = command(
        "debug",
        "first error, slowest span, loops and likely causes of one run",
        "steptrace debug 3f2a9c --slo-ms 5000",
        cmd_debug,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument("--slo-ms", type=float, help="run-duration objective in milliseconds")

    p = command(
        "replay",
        "step-by-step timeline of one run with captured input/output",
        "steptrace replay 3f2a9c --step 2   # or --span 7",
        cmd_replay,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument(
        "--step", type=int, metavar="N", help="start at the agent's step N (the STEP column), shown in full"
    )
    p.add_argument(
        "--span",
        type=int,
        metavar="N",
        help="start at span #N (the # column; what debug's evidence cites), shown in full",
    )
    p.add_argument("--full", action="store_true", help="do not shorten captured content")

    p = command(
        "diff",
        "compare two releases: errors, latency, tokens, loops, stop reasons",
        "steptrace diff --baseline 1.4.0 --candidate 1.5.0",
        cmd_diff,
    )
    p.add_argument("--baseline", required=True, metavar="REL")
    p.add_argument("--candidate", required=True, metavar="REL")
    add_run_filter_arguments(p, release=False)

    p = command(
        "view",
        "write a self-contained HTML waterfall of one run",
        "steptrace view 3f2a9c -o run.html",
        cmd_view,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="HTML file to write (default steptrace-RUN_ID.html)"
    )

    p = command(
        "report",
        "write a self-contained HTML report over many runs: releases, charts, tools, runs table",
        "steptrace report --since 2026-11-01 -o report.html",
        cmd_report,
    )
    p.add_argument("-o", "--output", metavar="FILE", default="steptrace-report.html",
                   help="HTML file to write (default steptrace-report.html)")  # fmt: skip
    add_run_filter_arguments(p)

    command(
        "demo",
        "run the offline quickstart agent, then show what to try next",
        "steptrace demo",
        cmd_demo,
    )

    p = command(
        "rerun",
        "re-run a recorded run: COMMAND runs with recorded model and tool outputs fed back in",
        "steptrace rerun 45d5 --tools live -- python agent.py",
        cmd_rerun,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (or prefix) recorded with record_for_rerun")
    p.add_argument("--llm", choices=["recorded", "until-divergence", "live"], default="recorded")
    p.add_argument("--tools", choices=["recorded", "until-divergence", "live"], default="recorded")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    p = command(
        "export",
        "one self-contained JSONL file with a run's step records and its rerun recording",
        "steptrace export 45d5 -o incident-45d5.jsonl",
        cmd_export,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (or prefix) recorded with record_for_rerun")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="the file to write")
    # The ClickHouse source reads a time window: every analysis command takes one (runs and
    # report already have --since/--until as filters, which bound the query the same way).
    for name in ("runs", "summary", "debug", "replay", "diff", "view", "report", "export"):
        if name in sub.choices:
            for option, text in (("--since", "ISO time"), ("--until", "ISO time, exclusive")):
                with contextlib.suppress(argparse.ArgumentError):
                    sub.choices[name].add_argument(
                        option, help=f"{text}; with --source: bounds the runs read (default: the last 24 h)"
                    )
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    """Step records plus recording in one file: ``--log FILE`` and ``steptrace.rerun(FILE)`` read it."""
    import steptrace.rerun._serving  # noqa: F401  (the package; steptrace.rerun is the function)

    rerun_module = sys.modules["steptrace.rerun"]
    try:
        recording = rerun_module.find_recording(args.run_id, args.log[0] if args.log else None)
    except rerun_module.RecordingNotFound as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from exc
    run = _find_run(_load(args), recording.stem)
    records = run.records()
    output = Path(args.output)
    try:
        with output.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            out.write(recording.read_text(encoding="utf-8"))
        output.chmod(0o600)
    except OSError as exc:  # a missing directory, a directory given as the file, a full disk
        raise _Exit(EXIT_USAGE, f"{args.output}: cannot write ({exc.strerror or exc})") from exc
    print(f"wrote {len(records)} step records and the recording of run {run.run_id} to {output}")
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace) -> int:
    """Run COMMAND with the rerun switched on through the environment; print its report."""
    import tempfile

    import steptrace.rerun._serving  # noqa: F401  (the package; steptrace.rerun is the function)

    rerun_module = sys.modules["steptrace.rerun"]

    command = list(args.cmd)
    if "--" in command:  # options given after RUN_ID land here, before the "--"
        split = command.index("--")
        late = argparse.ArgumentParser(prog="steptrace rerun", add_help=False)
        late.add_argument("--llm", choices=["recorded", "until-divergence", "live"], default=args.llm)
        late.add_argument("--tools", choices=["recorded", "until-divergence", "live"], default=args.tools)
        late.add_argument("--log", action="append", default=args.log)
        late.add_argument("--json", action="store_true", default=args.json)
        try:
            options = late.parse_args(command[:split])
        except SystemExit as exc:
            raise _Exit(EXIT_USAGE, "bad rerun options before --") from exc
        args.llm, args.tools, args.log, args.json = options.llm, options.tools, options.log, options.json
        command = command[split + 1 :]
    if not command:
        raise _Exit(EXIT_USAGE, "rerun needs a command after --: steptrace rerun 45d5 -- python agent.py")
    try:
        path = rerun_module.find_recording(args.run_id, args.log[0] if args.log else None)
        sys.modules["steptrace.rerun._serving"].RecordedRun.read(path)  # corrupt: one line, exit 2
    except rerun_module.RecordingNotFound as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from exc
    with tempfile.TemporaryDirectory() as directory:
        report_path = Path(directory) / "report.json"
        environment = {
            **os.environ,
            rerun_module.ENV_RUN: str(path.resolve()),
            rerun_module.ENV_LLM: args.llm,
            rerun_module.ENV_TOOLS: args.tools,
            rerun_module.ENV_REPORT: str(report_path),
        }
        try:
            subprocess.run(command, env=environment, check=False)
        except OSError as exc:
            raise _Exit(EXIT_USAGE, f"cannot run {command[0]}: {exc.strerror or exc}") from exc
        data = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None
    if not isinstance(data, dict) or data.get("run_id") is None:
        raise _Exit(
            EXIT_NO_MATCH,
            "no run in the command matched the recording (it must call steptrace.configure() "
            "and start an agent_run)",
        )
    if args.json:
        print(json.dumps(data))
        return EXIT_OK
    print(f"rerun {data['run_id']} of {data['original_run_id']} (llm {args.llm}, tools {args.tools})")
    print(data["verdict"])
    if data.get("divergence"):
        print(f"divergence: {data['divergence']}")
    for warning in data.get("warnings") or []:
        print(f"warning: {warning}")
    for unmatched in data.get("unmatched_args") or []:
        print(f"left out of the match: {unmatched}")
    if path.parent.name != rerun_module.RECORDING_DIR:  # an exported file: say where the verdict went
        kept = data.get("kept_in")
        print(
            f"verdict kept in {kept} (steptrace debug {str(data['original_run_id'])[:8]} --log {path})"
            if kept
            else "verdict not kept (see the command's warnings)"
        )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``steptrace`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    # A command is a short-lived process that builds a large acyclic structure (one aggregate
    # per run); the cyclic collector would only rescan it, costing ~1 s on a million records.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    # Everything a command prints goes through terminal_text: a logged error message or captured
    # content holding ESC/BEL sequences is shown escaped, never run by the terminal.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, TerminalStream(stdout))
    sys.stderr = cast(TextIO, TerminalStream(stderr))
    try:
        return handler(args)
    except _Exit as exc:
        print(f"steptrace: {exc}", file=sys.stderr)
        return exc.code
    except LogError as exc:
        print(f"steptrace: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("steptrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `steptrace runs | head` closed the pipe early; that is not an error.
        stderr.close()
        return EXIT_OK
    except Exception as exc:
        # Never a traceback, and never exit 1 (which means "nothing matched") for a bug of ours.
        if os.environ.get(DEBUG_ENV):
            raise
        text = str(exc).replace("\n", " ")
        text = text if len(text) <= 200 else text[:200] + "..."
        print(
            f"steptrace: internal error: {type(exc).__name__}: {text} (a bug in steptrace, please "
            f"report it; {DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        if gc_was_enabled:
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())
