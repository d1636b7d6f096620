"""Run and step state carried in the OpenTelemetry context.

The run (its id, its span counter, its totals) and the current agent step travel inside the
OpenTelemetry ``Context`` next to the current span, so one ``attach`` carries both, asyncio tasks
and ``bind_context`` inherit them, and span processors can read the run from a parent context.
The run id and step number also travel as W3C baggage, to spans started in other processes.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context

if TYPE_CHECKING:
    from steptrace._content import ContentPolicy
    from steptrace._guards import RunGuard

RUN_KEY = otel_context.create_key("steptrace.run")
STEP_KEY = otel_context.create_key("steptrace.agent_step")
LLM_KEY = otel_context.create_key("steptrace.llm_request")
# Set by ``with steptrace.capture_content(...)`` blocks; the innermost wins over the configuration.
CAPTURE_KEY = otel_context.create_key("steptrace.capture_content")

_REMEMBERED_FAILURES = 16  # concurrent tool failures a step can surface, bounded
_REMEMBERED_SECRETS = 64  # per run; scrubbing cost grows with the count
_CAUSE_DEPTH = 8


class RunState:
    """The agent run open here: ``run_id``, ``agent``, ``release`` and a settable ``stop_reason``.

    Also what the run's spans share: the span counter and the running totals.
    """

    __slots__ = (
        "_failures",
        "_lock",
        "_next_agent_step",
        "_next_step",
        "agent",
        "errors",
        "guard",
        "input_tokens",
        "llm_calls",
        "llm_calls_without_usage",
        "output_tokens",
        "release",
        "run_id",
        "secrets",
        "steps",
        "stop_reason",
        "tool_calls",
    )

    def __init__(self, run_id: str, agent: str | None, release: str | None = None) -> None:
        self.run_id = run_id
        self.agent = agent
        self.release = release
        # Settable by user code; "end_turn", "error" or "cancelled" are filled in at the end if unset.
        self.stop_reason: str | None = None
        # itertools.count's __next__ is atomic under the GIL: unique, gap-free numbers across
        # threads without a lock on the hot path.
        self._next_step = itertools.count(1).__next__
        self._next_agent_step = itertools.count(1).__next__
        self._lock = threading.Lock()
        self.steps = 0
        self.llm_calls = 0
        self.llm_calls_without_usage = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.errors = 0
        # The exceptions that failed a tool or model call of this run, while the run is open: the
        # same exception leaving the step and the run is one error, not three (a few at a time).
        self._failures: list[BaseException] = []
        # Values of the run's tools' secret-named arguments: an error carrying one out of the tool
        # (or quoting it later) is scrubbed on the step and run spans too, not only the tool's.
        self.secrets: tuple[str, ...] = ()
        # The run's guards (configure(guards=...), agent_run(guards=...)), or None: off.
        self.guard: RunGuard | None = None

    def add_secrets(self, secrets: tuple[str, ...]) -> None:
        with self._lock:
            known = self.secrets
            new = tuple(value for value in secrets if value not in known)
            if new and len(known) < _REMEMBERED_SECRETS:
                self.secrets = (*known, *new)[:_REMEMBERED_SECRETS]

    def next_step(self) -> int:
        """The sequence number of the next span started in this run: 1, 2, 3 ..."""
        return self._next_step()

    def next_agent_step(self) -> int:
        return self._next_agent_step()

    def add_llm_call(self, input_tokens: int | None, output_tokens: int | None, failed: bool) -> None:
        with self._lock:
            self.llm_calls += 1
            # Totals that silently count a missing usage as 0 would under-report: say how many.
            self.llm_calls_without_usage += input_tokens is None and output_tokens is None
            self.input_tokens += input_tokens or 0
            self.output_tokens += output_tokens or 0
            self.errors += failed

    def note_failure(self, exc: BaseException) -> None:
        """``exc`` failed a tool or model call (already counted in ``errors`` by its add_*)."""
        with self._lock:
            failures = self._failures
            failures.append(exc)
            if len(failures) > _REMEMBERED_FAILURES:
                del failures[0]

    def add_body_failure(self, exc: BaseException) -> None:
        """``exc`` left a step or the run: an error of the run unless a tool or model call it
        came from (``raise ... from``, or raised while handling) was already counted."""
        with self._lock:
            failures = self._failures
            seen: BaseException | None = exc
            for _ in range(_CAUSE_DEPTH):
                if seen is None:
                    break
                if any(seen is known for known in failures):
                    return
                seen = seen.__cause__ or seen.__context__
            self.errors += 1
            failures.append(exc)
            if len(failures) > _REMEMBERED_FAILURES:
                del failures[0]

    def forget_failures(self) -> None:
        """The run ended: let its exceptions (and their tracebacks) go."""
        self._failures = []

    def add_tool_call(self, failed: bool) -> None:
        with self._lock:
            self.tool_calls += 1
            self.errors += failed

    def add_agent_step(self) -> None:
        with self._lock:
            self.steps += 1


class StepState:
    """The agent step open here: its loop ``number`` and, if it ended the run, ``stop_reason``."""

    __slots__ = ("number", "run_stop_reason_at_start", "stop_reason")

    def __init__(self, number: int, run_stop_reason_at_start: str | None) -> None:
        self.number = number
        self.stop_reason: str | None = None
        # A run stop reason set while this step is open means this step ended the run.
        self.run_stop_reason_at_start = run_stop_reason_at_start


def capturing(policy: ContentPolicy, context: otel_context.Context | None = None) -> bool:
    """Whether content may be recorded here: the innermost ``capture_content`` block, else ``policy``."""
    override = otel_context.get_value(CAPTURE_KEY, context)
    return policy.capture if override is None else override is True


def current_run_state() -> RunState | None:
    value = otel_context.get_value(RUN_KEY)
    return value if isinstance(value, RunState) else None


def current_step_state() -> StepState | None:
    value = otel_context.get_value(STEP_KEY)
    return value if isinstance(value, StepState) else None


# --- the run across process boundaries: W3C baggage -------------------------------------------
# The run id and the agent step number ride in the context's baggage, so whatever propagates
# trace context (the mcp package's ``_meta``, an HTTP client instrumentation's ``baggage`` header)
# carries them to the next process; there, the span processor reads them back when no local run
# is open. The names are the span attributes' own.
BAGGAGE_RUN_ID = "steptrace.run_id"
BAGGAGE_AGENT_STEP = "steptrace.agent_step.number"
# Baggage comes from the network (any client can send any header): a value is taken only when it
# looks like ours, else ignored. Step numbers are ASCII digits only: str.isdigit() accepts '²',
# which int() rejects, and int() accepts '١' and '１', which no steptrace process sends.
_MAX_REMOTE_RUN_ID_CHARS = 128
_MAX_REMOTE_STEP_DIGITS = 9
_ASCII_DIGITS = frozenset("0123456789")
_warned_bad_baggage = False
_warn_lock = threading.Lock()


def _warn_bad_baggage(key: str, value: object) -> None:
    """Once per process: a flood of hostile requests must not flood the log too."""
    global _warned_bad_baggage
    if _warned_bad_baggage:
        return
    with _warn_lock:
        if _warned_bad_baggage:
            return
        _warned_bad_baggage = True
    # ascii(): the value is the sender's, it may carry terminal escapes or line breaks.
    shown = ascii(value[:40]) if isinstance(value, str) else f"a {type(value).__name__}"
    logging.getLogger("steptrace").warning(
        "steptrace: ignored a malformed %s in the W3C baggage of an incoming request (%s); "
        "spans are recorded without it, and further malformed entries are ignored without a warning",
        key,
        shown,
    )


def remote_run_id(value: object) -> str | None:
    """``value`` if it can be another process's run id: 1-128 printable characters, no space at
    either end; else None (warned about once per process when it was set at all)."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_REMOTE_RUN_ID_CHARS
        and value.isprintable()
        and value.strip() == value
    ):
        return value
    if value is not None:
        _warn_bad_baggage(BAGGAGE_RUN_ID, value)
    return None


def remote_step_number(value: object) -> int | None:
    """``value`` as an agent step number (1 to 999,999,999, ASCII digits), else None (warned
    about once per process when it was set at all)."""
    if type(value) is int:
        number: int | None = value
    elif (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_REMOTE_STEP_DIGITS
        and _ASCII_DIGITS.issuperset(value)
    ):
        number = int(value)
    else:
        number = None
    if number is not None and 0 < number < 10**_MAX_REMOTE_STEP_DIGITS:
        return number
    if value is not None:
        _warn_bad_baggage(BAGGAGE_AGENT_STEP, value)
    return None


def with_run_baggage(context: otel_context.Context, run_id: str) -> otel_context.Context:
    """``context`` carrying ``run_id`` (and no step yet) to other processes."""
    context = baggage.set_baggage(BAGGAGE_RUN_ID, run_id, context)
    if baggage.get_baggage(BAGGAGE_AGENT_STEP, context) is not None:
        context = baggage.remove_baggage(BAGGAGE_AGENT_STEP, context)
    return context


def with_step_baggage(context: otel_context.Context, number: int) -> otel_context.Context:
    """``context`` carrying the agent step ``number`` to other processes."""
    return baggage.set_baggage(BAGGAGE_AGENT_STEP, str(number), context)


def attribute_dict(span: object) -> Mapping[str, Any] | None:
    """A span's attributes as the plain dict the SDK keeps them in, else its public mapping.

    The SDK hands attributes out through a ``MappingProxyType`` over ``BoundedAttributes``, a
    Python-level Mapping: each ``.get()`` of a missing key raises and catches a KeyError inside
    (~0.4 µs), and every span end reads ~20 keys. The dict underneath (``_attributes._dict``,
    opentelemetry-sdk 1.x) reads in C. If the SDK renames either, this falls back to the public
    mapping (correct, slower); tests/test_hot_path.py fails then, to say the fast path is gone.
    Read only: the SDK's limits and immutability stay the SDK's.
    """
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(plain) is dict:
        return plain
    attributes: Mapping[str, Any] | None = getattr(span, "attributes", None)
    return attributes


def remote_run(context: otel_context.Context | None) -> tuple[str, int | None] | None:
    """The (run id, agent step number) of another process's run, for spans started in ``context``
    when no run is open here: from the baggage the request carried, else from the current span
    of ``context`` when that span was stamped with one (libraries that start their server span
    from the extracted context but make it current without the baggage, as mcp 2.3 does).

    Every value is validated here, the one reader of baggage: a bad one is ignored (a bad run id
    takes its step number with it), warned about once per process, and never raised.
    """
    # Every span another library starts outside a run comes here: one baggage lookup (no copy of
    # the whole baggage) and the parent's plain attribute dict keep the common "no run" answer cheap.
    run_id: object = baggage.get_baggage(BAGGAGE_RUN_ID, context)
    if run_id is not None:
        step: object = baggage.get_baggage(BAGGAGE_AGENT_STEP, context)
    else:
        attributes = attribute_dict(trace.get_current_span(context))
        if not attributes:
            return None
        run_id = attributes.get(BAGGAGE_RUN_ID)
        if run_id is None:
            return None
        step = attributes.get(BAGGAGE_AGENT_STEP)
    valid_run_id = remote_run_id(run_id)
    if valid_run_id is None:
        return None
    return valid_run_id, remote_step_number(step)
