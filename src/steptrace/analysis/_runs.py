"""Runs and run sets: one streaming pass folds step records into per-run aggregates.

Memory grows with the number of runs, not records. A run's full records are read back lazily
(a second pass that skips other runs' lines unparsed) only when a command needs them.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import math
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from steptrace._pricing import Pricer, PricesSource
from steptrace.analysis._loading import (
    LoadIssue,
    ProgressCallback,
    StepFields,
    find_sources,
    hold_open,
    iter_records,
    iter_step_fields,
    max_line_bytes,
    run_id_needle,
)
from steptrace.analysis._stats import percentile

if TYPE_CHECKING:
    from steptrace.analysis._diff import SideStats

STOP_INCOMPLETE = "incomplete"
"""Stop reason of a run whose ``run`` record never arrived (the process died or is still going)."""

SPILL_PREFIX = "otlp-spill"
"""Name of the OTLP spill file, written next to the step log (same spans, step-record schema)."""

Record = dict[str, Any]
OrderBy = Literal["started", "duration"]
RunStatus = Literal["ok", "error"]


def parse_time(value: datetime | str) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO 8601 string; naive means UTC."""
    if isinstance(value, str):
        if sys.version_info >= (3, 11):
            # Fast path for the records' own stamps; 3.11 reads a trailing "Z" itself.
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    else:
        parsed = value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _number(value: Any) -> float:
    return float(value) if type(value) in (int, float) else 0.0


def _text(value: Any) -> str | None:
    return None if value is None else value if type(value) is str else str(value)


def span_key(record: Record) -> tuple[str | None, str | None]:
    """(trace id, span id) of a record as text: a hand-edited log's list or object ids still key."""
    trace_id, span_id = record.get("trace_id"), record.get("span_id")
    if type(trace_id) is not str:
        trace_id = _text(trace_id)
    return trace_id, span_id if type(span_id) is str else _text(span_id)


def clean_record(record: Record) -> Record:
    """The record with its common fields of the schema's types, so a hand-edited or foreign log
    cannot break debug, replay or view: bad numbers become 0, bad ids and names text."""
    step = record.get("step")
    out = dict(record)
    out.update(
        step=step if type(step) is int else None,
        type=_text(record.get("type")) or "span",
        name=_text(record.get("name")) or "",
        trace_id=_text(record.get("trace_id")),
        span_id=_text(record.get("span_id")),
        parent_span_id=_text(record.get("parent_span_id")),
        started_at=record.get("started_at") if type(record.get("started_at")) is str else "",
        ts=_number(record.get("ts")),
        duration_ms=_number(record.get("duration_ms")),
        status=_text(record.get("status")) or "unset",
        error=_text(record.get("error")),
        error_type=_text(record.get("error_type")),
    )
    for key in ("input_tokens", "output_tokens"):
        if key in out and type(out[key]) is not int:
            out[key] = None
    for key in ("tool", "model", "request_model", "args_hash", "stop_reason"):
        if key in out and out[key] is not None:
            out[key] = _text(out[key])
    return out


def restore_instructions(records: Sequence[Record]) -> None:
    """Give each model call its ``system_instructions``: the step log writes repeated ones once
    a run, on one call; the others carry only their ``system_instructions_id``."""
    texts = {
        record["system_instructions_id"]: record["system_instructions"]
        for record in records
        if record.get("system_instructions") is not None and type(record.get("system_instructions_id")) is str
    }
    for record in records:
        key = record.get("system_instructions_id")
        if record.get("system_instructions") is None and type(key) is str and key in texts:
            record["system_instructions"] = texts[key]


def mark_acting_agents(records: Sequence[Record], starting_agent: str | None) -> None:
    """Set each record's ``acting_agent``: the agent of the agent step it ran in (after a
    handoff, the agent handed to), else the run's starting agent. An ``agent_step`` record names
    its agent; its spans inherit it through their parents, or by their ``agent_step`` number."""
    by_span: dict[Any, str] = {}
    by_number: dict[int, str] = {}
    for record in records:
        agent = record.get("agent")
        if record.get("type") == "agent_step" and type(agent) is str:
            by_span[record.get("span_id")] = agent
            number = record.get("agent_step")
            if type(number) is int:
                by_number.setdefault(number, agent)
    parents = {record.get("span_id"): record.get("parent_span_id") for record in records}
    for record in records:
        acting = by_span.get(record.get("span_id"))
        parent, hops = record.get("parent_span_id"), 0
        while acting is None and parent is not None and hops < 64:
            acting, parent, hops = by_span.get(parent), parents.get(parent), hops + 1
        if acting is None:
            number = record.get("agent_step")
            acting = by_number.get(number) if type(number) is int else None
        if acting is None:
            agent = record.get("agent")
            acting = agent if record.get("type") == "run" and type(agent) is str else starting_agent
        record["acting_agent"] = acting


def _completeness(record: Record) -> tuple[bool, int, int]:
    """Which of two copies of one span is fuller: not cut for size, more fields, more content."""
    content = record.get("input"), record.get("output")
    return (
        "truncated" not in record and "encoding_error" not in record,
        sum(value is not None for value in record.values()),
        sum(len(value) if isinstance(value, str) else 0 if value is None else 1 for value in content),
    )


def most_complete_copies(records: Iterable[Record]) -> list[Record]:
    """Records with one per span (trace id, span id), the most complete copy, in first-seen order.

    The same span reaches several files (the step log and the OTLP spill file, an archived copy,
    the Collector's OTLP JSON): it must count once. Records without a span id are all kept.
    """
    kept: dict[Any, Record] = {}
    for number, record in enumerate(records):
        key: Any = span_key(record) if type(record.get("span_id")) is str else number
        current = kept.get(key)
        if current is None or _completeness(record) > _completeness(current):
            kept[key] = record
    return list(kept.values())


def sort_records(records: Iterable[Record]) -> list[Record]:
    """Records in start order: by start time, then step (a parent starts no later than a child)."""
    return sorted(
        records,
        key=lambda r: (
            str(r.get("started_at") or ""),
            r["step"] if isinstance(r.get("step"), int) else 1 << 62,
        ),
    )


@dataclass(eq=False)
class Run:
    """One agent run, as aggregated from its step records.

    ``total_steps`` is the number of ``agent_step`` records when the run has any, else the number
    of ``llm_call`` plus ``tool_call`` records (an agent without a step loop). ``error_count``
    is the run record's ``errors``: each failed tool or model call, plus each failure raised in a
    step or run body that did not come from one (one exception that propagates from a tool
    through its step to the run counts once). A run without a run record (crashed) counts
    root-cause failures instead: error spans none of whose children failed.
    """

    run_id: str
    agent: str | None
    release: str | None
    service: str | None
    stop_reason: str
    complete: bool
    started_at: datetime
    duration_ms: float
    record_count: int
    agent_step_count: int
    llm_call_count: int
    tool_call_count: int
    input_tokens: int
    output_tokens: int
    error_count: int
    tools: Mapping[str, int]
    """Tool name -> calls. Read-only from step logs: runs with the same counts share one."""
    repeated_call_count: int
    tool_durations_ms: dict[str, list[float]] = field(repr=False)
    _reader: Callable[[str], list[Record]] | None = field(default=None, repr=False, compare=False)
    conversation_id: str | None = None
    run_failed: bool = False
    """The run span itself ended with an error status."""
    cost_usd: float | None = None
    """USD of the priced model calls (genai-prices); None when no call could be priced."""
    unpriced_llm_calls: int = 0
    """Model calls with no known price (unknown model, no usage reported): not in ``cost_usd``."""
    _pricer: Pricer | None = field(default=None, repr=False, compare=False)
    cache_read_input_tokens: int = 0
    """The part of ``input_tokens`` read from the provider's prompt cache (the GenAI
    conventions count cache reads and writes in the input tokens)."""
    cache_creation_input_tokens: int = 0
    """The part of ``input_tokens`` written to the prompt cache."""
    rerun_of: str | None = None
    """A rerun (``steptrace.rerun``): the run it re-ran. Left out of ``runs()`` unless asked."""
    _acted: tuple[tuple[str, ...], int] = field(default=((), 0), repr=False)
    # (agents, llm_calls_without_usage) in one attribute: a Run's instance dict stays within the
    # 29 keys instances share one key table for (one more makes each dict 5x bigger, +1.3 KB).

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent that acted in the run: the starting agent (``agent``) first, then each
        agent a handoff passed the conversation to, in the order they first ran a step."""
        return self._acted[0]

    @property
    def llm_calls_without_usage(self) -> int:
        """Model calls that answered but reported no token usage (an OpenAI stream without
        ``stream_options.include_usage``): unknown, not zero, and not in the token counts. A call
        that failed is not one of them."""
        return self._acted[1]

    @property
    def status(self) -> RunStatus | None:
        """``"error"`` for a *failed run*: the run span failed or it stopped with ``error``;
        ``"ok"`` for another finished run; None for an unfinished one (no run record)."""
        if self.run_failed or self.stop_reason == "error":
            return "error"
        return "ok" if self.complete else None

    @property
    def failed(self) -> bool:
        """A *failed run*: it stopped with an error (``status == "error"``)."""
        return self.status == "error"

    @property
    def has_errors(self) -> bool:
        """A *run with errors*: any error at all (``error_count > 0``), also one the agent
        recovered from; every failed run is one."""
        return self.error_count > 0 or self.failed

    @property
    def total_steps(self) -> int:
        if self.agent_step_count:
            return self.agent_step_count
        return self.llm_call_count + self.tool_call_count

    @property
    def total_tokens(self) -> int:
        """Tokens of the model calls that reported usage (see :attr:`tokens_known`)."""
        return self.input_tokens + self.output_tokens

    @property
    def tokens_known(self) -> bool:
        """Every model call reported its usage, so the token counts are the run's (a run with
        a call without usage has a lower bound; with no call reporting, no count at all)."""
        return not self.llm_calls_without_usage

    @property
    def known_total_tokens(self) -> int | None:
        """``total_tokens``, or None when no model call reported usage (unknown, never 0)."""
        if self.llm_calls_without_usage and self.llm_calls_without_usage >= self.llm_call_count:
            return None
        return self.total_tokens

    def records(self) -> list[Record]:
        """All step records of this run in start order (read from disk once, then cached)."""
        # Set on first read, not in __init__: the instance dict stays within 29 keys (see _acted).
        cached: list[Record] | None = self.__dict__.get("_records")
        if cached is not None:
            return cached
        raw = self._reader(self.run_id) if self._reader else []
        records = sort_records(clean_record(record) for record in raw)
        pricer = self._pricer
        if pricer is not None:
            for record in records:
                if record["type"] == "llm_call":
                    # a call a rerun served from its recording was not paid for
                    record["cost_usd"] = 0.0 if record.get("served") else pricer.price_record(record)
        mark_acting_agents(records, self.agent)
        restore_instructions(records)
        self.__dict__["_records"] = records
        return records

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "agents": list(self.agents),
            "release": self.release,
            "service": self.service,
            "stop_reason": self.stop_reason,
            "complete": self.complete,
            "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms,
            "total_steps": self.total_steps,
            "llm_call_count": self.llm_call_count,
            "tool_call_count": self.tool_call_count,
            "input_tokens": self.input_tokens if self.known_total_tokens is not None else None,
            "output_tokens": self.output_tokens if self.known_total_tokens is not None else None,
            "total_tokens": self.known_total_tokens,
            "llm_calls_without_usage": self.llm_calls_without_usage,
            "error_count": self.error_count,
            "repeated_call_count": self.repeated_call_count,
            "tools": dict(self.tools),
            "conversation_id": self.conversation_id,
            "status": self.status,
            "failed": self.failed,
            "has_errors": self.has_errors,
            "cost_usd": self.cost_usd,
            "unpriced_llm_calls": self.unpriced_llm_calls,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            **({"rerun_of": self.rerun_of} if self.rerun_of else {}),  # only a rerun has it
        }


class _Accumulator:
    """Running totals for one run while its records stream past.

    The containers start as None and are made on first use: most runs never fill some of them,
    and a run's memory is what bounds a long log's (a million runs must fit in well under 1 GiB).
    """

    __slots__ = (
        "agent",
        "agents",
        "cache_read",
        "cache_write",
        "cost",
        "errors",
        "first_started",
        "input_tokens",
        "last_end",
        "llm_calls",
        "no_usage",
        "output_tokens",
        "priced",
        "record_count",
        "release",
        "repeated",
        "run_record",
        "seen_calls",
        "service",
        "steps",
        "tool_calls",
        "tool_durations",
        "tools",
        "unpriced",
    )

    def __init__(self) -> None:
        self.run_record: Any = None  # the run record itself (StepFields, or a dict)
        self.agent: str | None = None
        self.agents: tuple[str, ...] | None = None
        self.release: str | None = None
        self.service: str | None = None
        self.first_started = "~"  # sorts after any ISO timestamp
        self.last_end = 0.0
        self.record_count = 0
        self.steps = 0
        self.llm_calls = 0
        self.no_usage = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.errors: list[tuple[Any, Any]] | None = None
        # None: counted from tool_durations at the end (each tool call adds one duration).
        self.tools: dict[str, int] | None = None
        self.seen_calls: array[int] | set[int] | None = None
        self.repeated = 0
        # [tool, its durations, tool, ...] here; a dict from ClickHouse (filled on first read).
        self.tool_durations: Any = None
        self.cost = 0.0
        self.priced = 0
        self.unpriced = 0


# Distinct tool calls a run keeps in an array before a set (a linear search is quick this short).
_FEW_CALLS = 32


def _accumulate(
    records: Iterable[StepFields],
    runs: dict[str, _Accumulator],
    issue: LoadIssue,
    seen: set[int] | None = None,
    deferred: list[StepFields] | None = None,
    pricer: Pricer | None = None,
) -> None:
    """Fold records into ``runs``. The hot loop of ``steptrace runs``: keep it lean (every
    Python operation here runs once per record, millions of times).

    With ``seen`` (hashes of the spans counted so far), a record of a span already counted is
    dropped and counted in ``issue.duplicate_records``.
    A copy cut down to its ids (no ``status``: an oversized record's last resort) goes to
    ``deferred`` when given, to be counted only if no fuller copy turns up in any file.
    """
    get_acc = runs.get
    price = pricer.price if pricer is not None else None
    # One copy of each short text that many runs repeat (agent, release, tool names): a million
    # runs would otherwise each hold their own.
    shared: dict[str, str] = {}
    share = shared.setdefault
    for record in records:
        run_id = record.run_id
        if type(run_id) is not str:  # counted as skipped by the reader
            continue
        acc = get_acc(run_id)
        if acc is None:
            acc = runs[run_id] = _Accumulator()
        status = record.status
        if seen is not None:
            span_id = record.span_id
            if type(span_id) is str:
                if status is None and deferred is not None:
                    deferred.append(record)
                    continue
                # A 64-bit hash, not the tuple: keeping a million id strings alive would double
                # the memory of `steptrace runs`; a false match within one log is ~n²/2⁶⁴.
                try:
                    span_key = hash((run_id, record.trace_id, span_id))
                except TypeError:  # a trace id that is a list or an object: keyed by its text
                    span_key = hash((run_id, str(record.trace_id), span_id))
                if span_key in seen:
                    issue.duplicate_records += 1
                    continue
                seen.add(span_key)
        acc.record_count += 1
        started = record.started_at
        if type(started) is str and started < acc.first_started:
            acc.first_started = started
        end = record.ts
        if type(end) is float and end > acc.last_end:
            acc.last_end = end
        if status == "error":
            span_id, parent = record.span_id, record.parent_span_id
            error = (span_id if type(span_id) is str else None, parent if type(parent) is str else None)
            if acc.errors is None:
                acc.errors = [error]
            else:
                acc.errors.append(error)
        kind = record.type
        if kind == "tool_call":
            acc.tool_calls += 1
            tool = record.tool
            if type(tool) is not str:
                tool = str(record.name)
            duration = record.duration_ms
            if type(duration) is not float:
                duration = float(duration) if type(duration) is int else 0.0
            # Each tool's durations in an array (8 bytes a call, not a float object and its
            # slot), after its name in a flat list: a run has a few tools, a dict is 3x bigger.
            by_tool = acc.tool_durations
            if by_tool is None:
                acc.tool_durations = [share(tool, tool), array("d", (duration,))]
            else:
                try:
                    at = by_tool.index(tool)  # names only match names: the arrays are never equal
                except ValueError:
                    by_tool += (share(tool, tool), array("d", (duration,)))
                else:
                    by_tool[at + 1].append(duration)
            args_hash = record.args_hash
            if type(args_hash) is str:
                # A 64-bit hash, as for spans: a run's calls, not their id strings, are kept;
                # in an array while few (a set of 6 costs ~900 bytes a run, the array ~100).
                key = hash((tool, args_hash))
                calls = acc.seen_calls
                if calls is None:
                    acc.seen_calls = array("q", (key,))
                elif key in calls:
                    acc.repeated += 1
                elif isinstance(calls, set):
                    calls.add(key)
                else:
                    calls.append(key)
                    if len(calls) > _FEW_CALLS:
                        acc.seen_calls = set(calls)
        elif kind == "llm_call":
            acc.llm_calls += 1
            inputs = record.input_tokens
            known = type(inputs) is int
            if known:
                acc.input_tokens += inputs
            outputs = record.output_tokens
            if type(outputs) is int:
                acc.output_tokens += outputs
            elif not known and status != "error":  # answered, no usage: unknown, never 0
                acc.no_usage += 1
            cache_read = record.cache_read_input_tokens
            if type(cache_read) is int:
                acc.cache_read += cache_read
            cache_write = record.cache_creation_input_tokens
            if type(cache_write) is int:
                acc.cache_write += cache_write
            if record.served is True:
                cost: float | None = 0.0  # served by a rerun from its recording: not paid
            elif price is None:
                cost = None
            else:
                cost = price(
                    record.provider,
                    record.model or record.request_model,
                    inputs,
                    outputs,
                    cache_read,
                    cache_write,
                    record.reasoning_tokens,
                    started if type(started) is str else None,
                )
            if cost is None:
                acc.unpriced += 1
            else:
                acc.cost += cost
                acc.priced += 1
        elif kind == "agent_step":
            acc.steps += 1
            # Steps name the agent too, so a crashed run (no run record) still has one.
            agent = record.agent
            if type(agent) is str:
                # In the order they first acted; a tuple, as a run has few (a dict is 4x bigger).
                agents = acc.agents
                if agents is None:
                    acc.agents = (share(agent, agent),)
                elif agent not in agents:
                    acc.agents = (*agents, share(agent, agent))
                if acc.agent is None:
                    acc.agent = share(agent, agent)
            if acc.release is None and type(record.release) is str:
                acc.release = share(record.release, record.release)
        elif kind == "run":
            agent, release, service, stop_reason = (
                record.agent,
                record.release,
                record.service,
                record.stop_reason,
            )
            acc.run_record = (
                share(agent, agent) if type(agent) is str else agent,
                share(release, release) if type(release) is str else release,
                share(service, service) if type(service) is str else service,
                share(stop_reason, stop_reason) if type(stop_reason) is str else stop_reason,
                started,
                record.duration_ms,
                record.conversation_id,
                status == "error",
                record.errors,
                record.rerun_of,
            )
        elif kind == "span":
            # A crashed run has no run record; a foreign span may still name the agent.
            attributes = record.attributes
            if isinstance(attributes, dict):
                acc.agent = acc.agent or attributes.get("gen_ai.agent.name")
                acc.release = acc.release or attributes.get("gen_ai.agent.version")


_EPOCH = datetime.fromtimestamp(0, tz=timezone.utc)


def _finish(
    run_id: str,
    acc: _Accumulator,
    reader: Callable[[str], list[Record]] | None,
    pricer: Pricer | None = None,
    shared: dict[Any, Any] | None = None,
) -> Run:
    """The run ``acc`` aggregated. ``shared``: equal immutable values already made for other
    runs (most runs of a log have the same agents), to keep one of each."""
    head = acc.run_record
    conversation_id = rerun_of = counted = None
    run_failed = False
    if head is not None:
        # The run record's fields, as _accumulate keeps them.
        (
            agent,
            release,
            service,
            stop_reason,
            started_text,
            duration,
            conversation_id,
            run_failed,
            counted,
            rerun_of,
        ) = head
        if type(started_text) is not str:
            started_text = acc.first_started
        stop_reason = stop_reason or "unknown"
    else:
        started_text = acc.first_started
        agent, release, service = acc.agent, acc.release, acc.service
        stop_reason = STOP_INCOMPLETE
        duration = None
    try:
        started_at = parse_time(started_text)
    except (AttributeError, TypeError, ValueError):
        started_at = _EPOCH
    if type(duration) is float or type(duration) is int:
        duration_ms = float(duration)
    else:
        # No run record: from the first start to the last end seen so far.
        duration_ms = max(0.0, acc.last_end * 1000.0 - started_at.timestamp() * 1000.0)
        if started_at is _EPOCH or not acc.last_end:
            duration_ms = 0.0
    root_causes = 0
    if acc.errors:
        failed_parents = {parent for _, parent in acc.errors}
        root_causes = sum(1 for span_id, _ in acc.errors if span_id not in failed_parents)
    # The run record counts errors as they happened (an exception once, however far it went;
    # a step body's own failure too): prefer it. Without one (a crash), count root causes.
    error_count = counted if type(counted) is int and counted >= 0 else root_causes
    by_tool = acc.tool_durations
    durations: dict[str, list[float]] = (
        {}
        if by_tool is None
        else by_tool
        if isinstance(by_tool, dict)
        else {tool: calls.tolist() for tool, calls in zip(by_tool[::2], by_tool[1::2], strict=True)}
    )
    tools: Mapping[str, int]
    if acc.tools is not None:
        tools = acc.tools
    else:
        counts = {tool: len(calls) for tool, calls in durations.items()}
        # One read-only mapping for all runs with these counts: a dict a run is ~230 bytes.
        tools = MappingProxyType(counts)
        if shared is not None:
            tools = shared.setdefault(("tools", *counts.items()), tools)
    acted = (
        tuple(dict.fromkeys([*([agent] if type(agent) is str else []), *(acc.agents or ())])),
        acc.no_usage,
    )
    return Run(
        run_id,
        agent if agent is None or type(agent) is str else str(agent),
        release if release is None or type(release) is str else str(release),
        service if service is None or type(service) is str else str(service),
        str(stop_reason),
        head is not None,
        started_at,
        duration_ms,
        acc.record_count,
        acc.steps,
        acc.llm_calls,
        acc.tool_calls,
        acc.input_tokens,
        acc.output_tokens,
        error_count,
        tools,
        acc.repeated,
        durations,
        reader,
        conversation_id=_text(conversation_id),
        run_failed=run_failed,
        cost_usd=acc.cost if acc.priced else None,
        unpriced_llm_calls=acc.unpriced,
        _pricer=pricer,
        cache_read_input_tokens=acc.cache_read,
        cache_creation_input_tokens=acc.cache_write,
        rerun_of=_text(rerun_of),
        _acted=acted if shared is None else shared.setdefault(acted, acted),
    )


class RunSet:
    """The runs found in one or more step logs. Build it with :func:`load`."""

    def __init__(self, runs: Sequence[Run], sources: Sequence[Path], issues: Sequence[LoadIssue]) -> None:
        self._runs = list(runs)
        self._by_id = {run.run_id: run for run in self._runs}
        self.sources = list(sources)
        """The log files that were read."""
        self.issues = [issue for issue in issues if issue]
        """Per-file problems (corrupt or torn lines) that loading skipped over."""

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._by_id

    def get(self, run_id: str) -> Run | None:
        """The run with this id, or with this unique id prefix (as git resolves short hashes)."""
        run = self._by_id.get(run_id)
        if run is not None:
            return run
        matches = [r for r in self._runs if r.run_id.startswith(run_id)] if run_id else []
        return matches[0] if len(matches) == 1 else None

    def scan_records(self, wanted: set[str]) -> Iterator[Record]:
        """The records a many-run report reads: at least those of the ``wanted`` runs and every
        failed tool call, in write order (the files give every record they hold)."""
        for source in self.sources:
            yield from iter_records(source, LoadIssue(source))

    def describe_sources(self) -> str:
        """Where the runs were read from, for messages: the first files (a database's URL)."""
        return ", ".join(str(s) for s in self.sources[:3]) + (" ..." if len(self.sources) > 3 else "")

    def closest_run_ids(self, run_id: str, count: int = 3) -> list[str]:
        """Run ids that look like ``run_id``: prefix matches first, then similar spellings."""
        ids = list(self._by_id)
        prefixed = [i for i in ids if run_id and i.startswith(run_id)]
        similar = difflib.get_close_matches(run_id, ids, n=count, cutoff=0.5)
        out = list(dict.fromkeys(prefixed + similar))
        return out[:count]

    def runs_page(
        self, limit: int | None, *, from_end: bool = False, **filters: Any
    ) -> tuple[list[Run], int]:
        """(one page of ``runs(**filters)``, how many runs match): the first ``limit`` runs, or
        with ``from_end`` the last; all of them with ``limit=None``. A database source reads
        only the page where it can."""
        matched = self.runs(**filters)
        if limit is None:
            return matched, len(matched)
        page = matched[max(0, len(matched) - limit) :] if from_end else matched[:limit]
        return page, len(matched)

    def side_stats(self, **filters: Any) -> SideStats:
        """What ``diff`` compares of the runs ``runs(**filters)`` selects (a database source
        computes it in SQL where it can)."""
        from steptrace.analysis._diff import side_stats

        return side_stats(self.runs(**filters))

    def releases(self) -> list[str]:
        """The releases seen, most runs first."""
        counts: dict[str, int] = {}
        for run in self._runs:
            if run.release is not None:
                counts[run.release] = counts.get(run.release, 0) + 1
        return sorted(counts, key=lambda r: (-counts[r], r))

    def runs(
        self,
        *,
        stop_reason: str | None = None,
        min_steps: int | None = None,
        max_steps: int | None = None,
        tool: str | None = None,
        release: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        slower_than_percentile: float | None = None,
        agent: str | Iterable[str] | None = None,
        starting_agent: str | Iterable[str] | None = None,
        conversation: str | None = None,
        status: RunStatus | None = None,
        has_errors: bool | None = None,
        min_duration: float | str | None = None,
        max_duration: float | str | None = None,
        order_by: OrderBy = "started",
        ascending: bool | None = None,
        after: str | None = None,
        before: str | None = None,
        limit: int | None = None,
        reruns: bool = False,
    ) -> list[Run]:
        """The runs matching every given filter: see :func:`filter_runs`.

        >>> load("steptrace-logs").runs(stop_reason="max_steps", order_by="duration", limit=5)
        ... # doctest: +SKIP
        """
        return filter_runs(
            self._runs,
            stop_reason=stop_reason,
            min_steps=min_steps,
            max_steps=max_steps,
            tool=tool,
            release=release,
            since=since,
            until=until,
            slower_than_percentile=slower_than_percentile,
            agent=agent,
            starting_agent=starting_agent,
            conversation=conversation,
            status=status,
            has_errors=has_errors,
            min_duration=min_duration,
            max_duration=max_duration,
            order_by=order_by,
            ascending=ascending,
            after=after,
            before=before,
            limit=limit,
            reruns=reruns,
        )


_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|min|h)\s*", re.IGNORECASE)
_DURATION_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(value: float | str, name: str = "duration") -> float:
    """Milliseconds from ``"2s"``, ``"500ms"``, ``"1.5m"``, ``"1h"``; a number is milliseconds.

    Raises ValueError with an example for anything else (a bare ``"2"`` is ambiguous).
    """
    if not isinstance(value, str):
        number = float(value) if type(value) in (int, float) else -1.0
        if math.isfinite(number) and number >= 0:
            return number
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is not None:
            return float(match.group(1)) * _DURATION_UNIT_MS[match.group(2).lower()]
    raise ValueError(f"{name} {value!r} is not a duration; write e.g. 2s, 500ms, 1.5m or 1h")


def _cursor(runs: Sequence[Run], run_id: str, name: str) -> Run:
    for run in runs:
        if run.run_id == run_id:
            return run
    prefixed = [run for run in runs if run_id and run.run_id.startswith(run_id)]
    if len(prefixed) == 1:
        return prefixed[0]
    what = f"matches {len(prefixed)} runs" if prefixed else "is not a run id in these logs"
    raise ValueError(
        f"{name} {run_id!r} {what}; use a run id from the list, e.g. {name} {runs[0].run_id}"
        if runs
        else f"{name} {run_id!r}: there are no runs"
    )


def _run_id(run: Run) -> str:
    return run.run_id


def _started(run: Run) -> datetime:
    return run.started_at


def _oldest_first(run: Run) -> tuple[datetime, str]:
    return run.started_at, run.run_id


def _slowest_first(run: Run) -> tuple[float, str]:
    return -run.duration_ms, run.run_id


def _fastest_first(run: Run) -> tuple[float, str]:
    return run.duration_ms, run.run_id


def filter_runs(
    runs: Sequence[Run],
    *,
    stop_reason: str | None = None,
    min_steps: int | None = None,
    max_steps: int | None = None,
    tool: str | None = None,
    release: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    slower_than_percentile: float | None = None,
    agent: str | Iterable[str] | None = None,
    starting_agent: str | Iterable[str] | None = None,
    conversation: str | None = None,
    status: RunStatus | None = None,
    has_errors: bool | None = None,
    min_duration: float | str | None = None,
    max_duration: float | str | None = None,
    order_by: OrderBy = "started",
    ascending: bool | None = None,
    after: str | None = None,
    before: str | None = None,
    limit: int | None = None,
    reruns: bool = False,
) -> list[Run]:
    """The runs matching every given filter, in order, one page of them with ``limit``.

    The one place runs are selected: ``steptrace runs``, ``diff`` and ``report`` all come here.

    - ``since``/``until``: datetimes or ISO 8601 strings (naive means UTC); ``since`` inclusive,
      ``until`` exclusive. ``agent``: a name or several: runs in which any of them acted (the
      starting agent or one a handoff passed the conversation to); ``starting_agent``: runs that
      one of them started. ``conversation``: the
      run's ``gen_ai.conversation.id``. ``status="error"``: *failed runs*, the run span failed
      or the run stopped with ``error``; ``"ok"``: any other finished run (unfinished runs are
      neither). ``has_errors=True``: *runs with errors*, any error, also one the agent recovered
      from (every failed run is one); ``False``: runs without any.
    - ``min_duration``/``max_duration``: milliseconds, or text such as ``"2s"``, ``"500ms"``
      (both bounds inclusive). ``slower_than_percentile=95`` keeps the runs slower than the 95th
      percentile of the runs the other filters kept.
    - ``order_by="started"`` lists oldest first, ``"duration"`` slowest first;
      ``ascending=False``/``True`` turns either around (newest first, fastest first).
    - ``reruns``: reruns (``steptrace.rerun``, a run record with ``rerun_of``) are not production
      runs and are left out unless ``reruns=True``.
    - Cursor pagination: ``after``/``before`` take a run id (or unique prefix) and keep the runs
      after/before it in that order (the cursor run itself may be filtered out). ``limit`` keeps
      the first ``limit`` runs, or, given ``before`` without ``after``, the last ``limit``: the page
      right before the cursor.

    Bad values raise ValueError with a message that names the parameter and gives an example.

    >>> page = filter_runs(load("logs").runs(), status="error", ascending=False, limit=20)
    ... # doctest: +SKIP
    >>> next_page = filter_runs(runs, status="error", ascending=False, after=page[-1].run_id, limit=20)
    ... # doctest: +SKIP
    """
    if order_by not in ("started", "duration"):
        raise ValueError(f"order_by must be 'started' or 'duration', got {order_by!r}")
    if status is not None and status not in ("ok", "error"):
        raise ValueError(f"status must be 'ok' or 'error', got {status!r}")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be a whole number >= 0, got {limit!r}")
    since_at = parse_time(since) if since is not None else None
    until_at = parse_time(until) if until is not None else None
    agents = None if agent is None else {agent} if isinstance(agent, str) else set(agent)
    starters = (
        None
        if starting_agent is None
        else {starting_agent}
        if isinstance(starting_agent, str)
        else set(starting_agent)
    )
    low = parse_duration_ms(min_duration, "min_duration") if min_duration is not None else None
    high = parse_duration_ms(max_duration, "max_duration") if max_duration is not None else None
    after_run = _cursor(runs, after, "after") if after is not None else None
    before_run = _cursor(runs, before, "before") if before is not None else None
    selected = [
        run
        for run in runs
        if (stop_reason is None or run.stop_reason == stop_reason)
        and (min_steps is None or run.total_steps >= min_steps)
        and (max_steps is None or run.total_steps <= max_steps)
        and (tool is None or tool in run.tools)
        and (release is None or run.release == release)
        and (since_at is None or run.started_at >= since_at)
        and (until_at is None or run.started_at < until_at)
        and (agents is None or run.agent in agents or not agents.isdisjoint(run.agents))
        and (starters is None or run.agent in starters)
        and (conversation is None or run.conversation_id == conversation)
        and (status is None or run.status == status)
        and (has_errors is None or run.has_errors == has_errors)
        and (low is None or run.duration_ms >= low)
        and (high is None or run.duration_ms <= high)
        and (reruns or run.rerun_of is None)
    ]
    if slower_than_percentile is not None:
        threshold = percentile([r.duration_ms for r in selected], slower_than_percentile)
        selected = [r for r in selected if threshold is not None and r.duration_ms > threshold]
    reverse = order_by == "started" and ascending is False
    if order_by == "duration":
        key: Callable[[Run], tuple[Any, ...]] = _fastest_first if ascending else _slowest_first
    else:
        key = _oldest_first
    if key is _oldest_first:
        # The same order as by (started_at, run_id), from two stable sorts: no key tuple a run
        # (tens of MB over a million runs).
        selected.sort(key=_run_id, reverse=reverse)
        selected.sort(key=_started, reverse=reverse)
    else:
        selected.sort(key=key, reverse=reverse)
    if after_run is not None:
        cut = key(after_run)
        selected = [r for r in selected if (key(r) < cut if reverse else key(r) > cut)]
    if before_run is not None:
        cut = key(before_run)
        selected = [r for r in selected if (key(r) > cut if reverse else key(r) < cut)]
    if limit is None:
        return selected
    if before_run is not None and after_run is None:
        return selected[max(0, len(selected) - limit) :]
    return selected[:limit]


def load(
    *paths: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    dedupe_single_file: bool = False,
    prices: PricesSource | Pricer | None = None,
    run_id_prefix: str | None = None,
) -> RunSet:
    """Read step logs: files, directories, globs; ``.jsonl``, ``.jsonl.gz`` and OTLP JSON.

    Corrupt lines and a torn last line are skipped and listed in ``RunSet.issues``; a path that
    cannot be read raises :class:`LogError`. ``progress`` is called now and then with the number
    of bytes read so far (of ``sum(p.stat().st_size for p in RunSet.sources)``).

    Each span counts once, whichever files hold it (the step log and the OTLP spill file next to
    it, an archived ``.jsonl.gz`` copy, the Collector's OTLP JSON): copies are matched by run,
    trace and span id, the most complete one is kept, and each file's ``LoadIssue`` says how many
    it dropped. One file is taken to hold each span once (``dedupe_single_file=True`` checks).

    Every model call is priced from its provider, model and token counts with genai-prices'
    bundled data (offline); ``prices`` (a JSON file's path, or its mapping: model id -> USD per
    million tokens with genai-prices' field names, see :func:`read_prices`) adds or overrides
    prices. A bad prices file raises :class:`PricesError` (a :class:`LogError`).

    ``run_id_prefix``: only the runs whose id starts with it, each exactly as a full load makes
    it; lines that cannot hold one are skipped undecoded (``steptrace summary RUN`` reads one
    run in a fraction of the time), so ``issues`` cover only the lines read.

    >>> runs = load("steptrace-logs")  # doctest: +SKIP
    >>> failing = runs.runs(stop_reason="error")  # doctest: +SKIP
    """
    pricer = prices if isinstance(prices, Pricer) else Pricer(prices)
    # The step log before the OTLP spill file: the spill's copies are the duplicates.
    sources = sorted(find_sources(paths), key=lambda path: path.name.startswith(SPILL_PREFIX))
    issues = [LoadIssue(path) for path in sources]

    def read_run(run_id: str) -> list[Record]:
        needle = run_id_needle(run_id)
        return most_complete_copies(
            record
            for source in sources
            for record in iter_records(source, LoadIssue(source), needle=needle)
            if record.get("run_id") == run_id
        )

    needle = run_id_needle(run_id_prefix) if run_id_prefix is not None else None
    accumulators: dict[str, _Accumulator] = {}
    cut_copies: list[tuple[LoadIssue, list[StepFields]]] = []
    # A span reaches several files (step log and spill file, archives, OTLP JSON), never one
    # file twice: with a single file the check would only cost time and memory.
    seen: set[int] | None = set() if len(sources) > 1 or dedupe_single_file else None
    done = 0
    # Loading allocates millions of short-lived objects and creates no reference cycles; the
    # cyclic collector would only rescan them over and over (about 15% of the load time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    max_line_bytes()  # a bad $STEPTRACE_MAX_LINE_BYTES is a usage error before any file is held open
    held = hold_open(sources)  # a live log may rotate before each file's turn
    try:
        for source, issue in zip(sources, issues, strict=True):
            file_progress: ProgressCallback | None = None
            if progress is not None:
                base = done

                def file_progress(position: int, base: int = base) -> None:
                    progress(base + position)

            deferred: list[StepFields] = []
            records = iter_step_fields(
                source, issue, progress=file_progress, file=held.pop(source, None), needle=needle
            )
            _accumulate(records, accumulators, issue, seen, deferred, pricer)
            if deferred:
                cut_copies.append((issue, deferred))
            if progress is not None:
                with contextlib.suppress(OSError):  # rotated away meanwhile
                    done += source.stat().st_size
        for issue, deferred in cut_copies:
            _accumulate(deferred, accumulators, issue, seen, pricer=pricer)
        # Each accumulator freed as its run is made: the peak holds one of the two per run.
        # (The sort below orders the runs; the order they are made in does not matter.)
        runs: list[Run] = []
        shared: dict[Any, Any] = {}
        while accumulators:
            run_id, acc = accumulators.popitem()
            # A run whose lines merely mention the prefix was read in part: not one of those asked for.
            if run_id_prefix is None or run_id.startswith(run_id_prefix):
                runs.append(_finish(run_id, acc, read_run, pricer, shared))
        accumulators.clear()  # an emptied dict keeps its table (tens of MB) until cleared
        del shared
        # By (started_at, run_id), as two stable sorts: no key tuple a run.
        runs.sort(key=_run_id)
        runs.sort(key=_started)
        return RunSet(runs, sources, issues)
    finally:
        for file in held.values():
            file.close()
        if gc_was_enabled:
            gc.enable()
