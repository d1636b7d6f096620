"""Guards: stop a looping or overspending run while it happens, not in tomorrow's report.

``Guards`` holds a run's limits (repeated identical tool calls, agent steps, tokens, cost);
``RunGuard`` is one run's live check, called by the handles in ``_spans`` as a call opens and as
it finishes, so every traced call (decorated, ``with`` block, SDK, framework) is guarded alike.
A trip records a ``guard`` event and, under ``on_guard="raise"``, the runner raises a
``GuardTripped`` from the call site before the call starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from steptrace import _attributes as A
from steptrace._errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import Span

logger = logging.getLogger("steptrace")

REPEAT_CALLS: str = "repeat_calls"
MAX_STEPS: str = "max_steps"
MAX_TOKENS: str = "max_tokens"
MAX_COST_USD: str = "max_cost_usd"

STOP_LOOP = A.STOP_LOOP
STOP_BUDGET = A.STOP_BUDGET

_MAX_RECORDED_TRIPS = 16  # per run, on the run span (later trips are still events on their calls)
_CAUSE_DEPTH = 8


@dataclass(frozen=True)
class GuardEvent:
    """One trip of a guard: which (``guard``, its ``limit``), what it saw (``value``), where.

    ``step`` is the span sequence number of the tripped call (``#7``), ``agent_step`` its loop
    iteration; for ``repeat_calls``, ``tool``, ``args_hash`` and ``earlier_steps`` (the span
    numbers of the last ``repeat_calls - 1`` earlier successful identical calls, at most 16).
    ``action`` is ``"raise"`` or ``"warn"``.
    """

    guard: str
    limit: float
    value: float
    message: str
    run_id: str
    step: int | None = None
    agent_step: int | None = None
    tool: str | None = None
    args_hash: str | None = None
    earlier_steps: tuple[int, ...] = ()
    action: str = "raise"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "guard": self.guard,
            "limit": self.limit,
            "value": self.value,
            "action": self.action,
            "message": self.message,
            "step": self.step,
            "agent_step": self.agent_step,
        }
        if self.tool is not None:
            out.update(tool=self.tool, args_hash=self.args_hash, earlier_steps=list(self.earlier_steps))
        return out


class GuardTripped(Exception):
    """A guard stopped a call before it started; ``event`` says which guard and why.

    ``stop_reason`` is the run's stop reason when this exception ends the run.
    """

    stop_reason: ClassVar[str] = STOP_BUDGET

    def __init__(self, event: GuardEvent | str) -> None:
        if isinstance(event, str):  # rebuilt from its message (a rerun serving a recorded error)
            event = GuardEvent(_GUARD_OF.get(type(self), ""), 0, 0, event, "")
            super().__init__(event.message)
        else:
            super().__init__(f"{event.message}; the call did not run")
        self.event = event

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.event,))

    @property
    def guard(self) -> str:
        return self.event.guard

    @property
    def limit(self) -> float:
        return self.event.limit


class LoopDetected(GuardTripped):
    """``repeat_calls``: the tool was about to run again with the same arguments."""

    stop_reason: ClassVar[str] = STOP_LOOP

    @property
    def tool(self) -> str:
        return self.event.tool or ""

    @property
    def count(self) -> int:
        """How many identical calls, this one included."""
        return int(self.event.value)

    @property
    def steps(self) -> tuple[int, ...]:
        """The span numbers (``step`` in the step log) of the last ``repeat_calls - 1`` earlier
        identical calls (at most 16)."""
        return self.event.earlier_steps


class StepLimit(GuardTripped):
    """``max_steps``: the run has used all its agent steps."""

    stop_reason: ClassVar[str] = A.STOP_MAX_STEPS


class TokenLimit(GuardTripped):
    """``max_tokens``: the run's model calls have used all its tokens (input + output)."""


class BudgetExceeded(GuardTripped):
    """``max_cost_usd``: the run's priced model calls have spent its budget."""


_EXCEPTIONS: dict[str, type[GuardTripped]] = {
    REPEAT_CALLS: LoopDetected,
    MAX_STEPS: StepLimit,
    MAX_TOKENS: TokenLimit,
    MAX_COST_USD: BudgetExceeded,
}
_GUARD_OF: dict[type[GuardTripped], str] = {cls: guard for guard, cls in _EXCEPTIONS.items()}


def _check_count(name: str, value: object, minimum: int) -> None:
    if value is None:
        return
    if type(value) is not int or value < minimum:
        raise ConfigError(f"Guards({name}={value!r}): a whole number of at least {minimum}, or None")


@dataclass(frozen=True)
class Guards:
    """Per-run limits; each is optional (None: not checked).

    - ``repeat_calls=N``: a tool about to run with the same name and arguments (``args_hash``) as
      N-1 earlier successful calls of the run does not run: ``LoopDetected``. A retry after a
      failure is not a repeat.
    - ``max_steps``: an agent step past this many raises ``StepLimit`` as it opens.
    - ``max_tokens``: once the run's model calls used this many tokens (input + output), the next
      model call or step raises ``TokenLimit`` before it starts.
    - ``max_cost_usd``: once the run's priced model calls cost this much (genai-prices, the
      ``cost`` extra), the next model call or step raises ``BudgetExceeded``. A model without a
      price is not counted (never as $0): a warning says so, once per model.
    """

    repeat_calls: int | None = None
    max_steps: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        _check_count(REPEAT_CALLS, self.repeat_calls, 2)
        _check_count(MAX_STEPS, self.max_steps, 1)
        _check_count(MAX_TOKENS, self.max_tokens, 1)
        cost = self.max_cost_usd
        if cost is not None and (type(cost) not in (int, float) or not math.isfinite(cost) or cost <= 0):
            raise ConfigError(f"Guards(max_cost_usd={cost!r}): a positive number of USD, or None")

    @property
    def enabled(self) -> bool:
        return any(
            limit is not None
            for limit in (self.repeat_calls, self.max_steps, self.max_tokens, self.max_cost_usd)
        )

    @classmethod
    def from_env(cls) -> Guards | None:
        """``STEPTRACE_GUARD_REPEAT_CALLS``, ``_MAX_STEPS``, ``_MAX_TOKENS``, ``_MAX_COST_USD``;
        None when none is set. A malformed value raises ``ConfigError`` (at configure time)."""
        values: dict[str, Any] = {}
        for name in (REPEAT_CALLS, MAX_STEPS, MAX_TOKENS, MAX_COST_USD):
            variable = f"STEPTRACE_GUARD_{name.upper()}"
            text = os.environ.get(variable, "").strip()
            if not text:
                continue
            try:
                values[name] = float(text) if name == MAX_COST_USD else int(text)
            except ValueError:
                kind = "a number of USD" if name == MAX_COST_USD else "a whole number"
                raise ConfigError(f"{variable}={text!r} is not {kind}") from None
        if not values:
            return None
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from the STEPTRACE_GUARD_* variables)") from None


OnGuard = Literal["raise", "warn"] | Callable[[GuardEvent], bool]


def check_on_guard(on_guard: object) -> OnGuard:
    if on_guard in ("raise", "warn") or callable(on_guard):
        return on_guard
    raise ConfigError(f"on_guard={on_guard!r}: 'raise', 'warn' or a callable taking the GuardEvent")


@dataclass(frozen=True)
class GuardPolicy:
    """The configured guards and what a trip does (``configure(guards=..., on_guard=...)``)."""

    guards: Guards
    on_guard: OnGuard = "raise"


def guard_cause(exc: BaseException | None) -> GuardTripped | None:
    """The ``GuardTripped`` that ``exc`` is or was raised from (a framework may wrap it)."""
    for _ in range(_CAUSE_DEPTH):
        if exc is None:
            return None
        if isinstance(exc, GuardTripped):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


_warned_unpriced: set[tuple[str | None, str | None]] = set()
_warned_lock = threading.Lock()


def _warn_unpriced(provider: str | None, model: str | None, limit: float) -> None:
    key = (provider, model)
    with _warned_lock:
        if key in _warned_unpriced or len(_warned_unpriced) > 256:
            return
        _warned_unpriced.add(key)
    logger.warning(
        "steptrace: max_cost_usd=%s cannot be enforced for model %r (provider %r): genai-prices has "
        "no price for it, so its calls are not counted in the run's cost (never as $0); "
        "max_tokens still limits them",
        limit,
        model,
        provider,
    )


def _format_limit(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class RunGuard:
    """One run's guards: the counts they watch and the trips so far. Thread-safe."""

    __slots__ = (
        "_calls",
        "_cost",
        "_keep",
        "_lock",
        "_max_tokens",
        "_pending",
        "_repeat_calls",
        "_warned",
        "guards",
        "on_guard",
        "run_id",
        "run_span",
        "trips",
        "wants_cost",
    )

    def __init__(self, guards: Guards, on_guard: OnGuard, run_id: str, run_span: Span | None = None) -> None:
        self.guards = guards
        self.on_guard = on_guard
        self.run_id = run_id
        self.run_span = run_span
        self.trips: list[dict[str, Any]] = []
        self.wants_cost = guards.max_cost_usd is not None
        self._repeat_calls = guards.repeat_calls
        self._keep = min((guards.repeat_calls or 1) - 1, 16)
        self._max_tokens = guards.max_tokens
        # (tool, args_hash) -> [counter, successful calls so far, span numbers of the last
        # repeat_calls - 1]. No lock on this path (a lock costs ~150 ns): the counter's __next__,
        # the deque's append and the dict's setdefault are atomic; two identical calls ending at
        # the same moment may store their counts out of order, for one call at most.
        self._calls: dict[tuple[str, str], list[Any]] = {}
        self._pending: dict[str, tuple[float, float]] = {}  # guard -> (value, limit)
        self._warned: set[str] = set()  # guards recorded once under "warn"
        self._cost = 0.0
        self._lock = threading.Lock()

    # --- checks as a call opens: return the exception the runner raises, or None ---------------
    def tool_opening(
        self, span: Span, name: str, args_hash: str | None, step: int | None, agent_step: int | None
    ) -> BaseException | None:
        limit = self._repeat_calls
        if limit is None or args_hash is None:
            return None
        earlier = self._calls.get((name, args_hash))
        if earlier is None or earlier[1] < limit - 1:
            return None
        earlier_steps = tuple(earlier[2])
        count = earlier[1] + 1
        shown = ", ".join(f"#{s}" for s in earlier_steps)
        event = GuardEvent(
            REPEAT_CALLS,
            limit,
            count,
            f"repeat_calls={limit}: {name} ×{count} with the same arguments (earlier calls {shown})",
            self.run_id,
            step,
            agent_step,
            name,
            args_hash,
            earlier_steps,
        )
        return self._trip(event, span, once=False)

    def step_opening(self, span: Span, number: int, step: int | None) -> BaseException | None:
        limit = self.guards.max_steps
        if limit is not None and number > limit:
            event = GuardEvent(
                MAX_STEPS,
                limit,
                number,
                f"max_steps={limit}: the run has used its {limit} agent steps (step {number})",
                self.run_id,
                step,
                number,
            )
            return self._trip(event, span, once=True)
        return self._pending_trip(span, step, number)

    def llm_opening(self, span: Span, step: int | None, agent_step: int | None) -> BaseException | None:
        return self._pending_trip(span, step, agent_step)

    def _pending_trip(self, span: Span, step: int | None, agent_step: int | None) -> BaseException | None:
        pending = self._pending
        if not pending:
            return None
        for guard in (MAX_TOKENS, MAX_COST_USD):
            found = pending.get(guard)
            if found is None or (guard in self._warned):
                continue
            value, limit = found
            if guard == MAX_TOKENS:
                text = f"max_tokens={limit}: the run has used {value:.0f} tokens"
            else:
                text = f"max_cost_usd={_format_limit(limit)}: the run has spent ${value:.4f}"
            event = GuardEvent(guard, limit, value, text, self.run_id, step, agent_step)
            return self._trip(event, span, once=True)
        return None

    # --- counts as a call finishes ------------------------------------------------------------
    def tool_succeeded(self, name: str, args_hash: str | None, step: int | None) -> None:
        if self._repeat_calls is None or args_hash is None:
            return
        key = (name, args_hash)
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls.setdefault(key, [itertools.count(1), 0, deque(maxlen=self._keep)])
        calls[1] = next(calls[0])
        calls[2].append(step if step is not None else 0)

    def llm_finished(
        self, total_tokens: int, cost: float | None, priced: bool, provider: str | None, model: str | None
    ) -> None:
        max_tokens = self._max_tokens
        if max_tokens is not None and total_tokens >= max_tokens:
            self._pending[MAX_TOKENS] = (total_tokens, max_tokens)  # one dict store: atomic
        limit = self.guards.max_cost_usd
        if limit is None:
            return
        if cost is None:
            if priced:  # usage reported, no price: never counted as $0
                _warn_unpriced(provider, model, limit)
            return
        with self._lock:
            self._cost += cost
            if self._cost >= limit:
                self._pending[MAX_COST_USD] = (self._cost, limit)

    # --- a trip: decide, record ----------------------------------------------------------------
    def _trip(self, event: GuardEvent, span: Span, *, once: bool) -> BaseException | None:
        on_guard = self.on_guard
        raised: BaseException | None = None
        if on_guard == "raise":
            raising = True
        elif on_guard == "warn":
            raising = False
        else:
            try:
                raising = bool(on_guard(event))
            except Exception as exc:  # the callable's own exception: raised from the call site
                raising, raised = True, exc
        action = "raise" if raising else "warn"
        event = dataclasses.replace(event, action=action)
        if not raising:
            if once:
                with self._lock:
                    if event.guard in self._warned:
                        return None
                    self._warned.add(event.guard)
            logger.warning(
                "steptrace: guard tripped, the run goes on (on_guard='warn'): %s (run %s)",
                event.message,
                self.run_id,
            )
        self._record(event, span)
        if not raising:
            return None
        return raised if raised is not None else _EXCEPTIONS[event.guard](event)

    def _record(self, event: GuardEvent, span: Span) -> None:
        attributes: dict[str, Any] = {
            A.GUARD_NAME: event.guard,
            A.GUARD_LIMIT: event.limit,
            A.GUARD_VALUE: event.value,
            A.GUARD_ACTION: event.action,
            A.GUARD_MESSAGE: event.message,
        }
        if event.tool is not None:
            attributes[A.GEN_AI_TOOL_NAME] = event.tool
            attributes[A.GUARD_EARLIER_STEPS] = list(event.earlier_steps)
        try:
            span.set_attribute(A.GUARD_NAME, event.guard)
            span.add_event(A.EVENT_GUARD, attributes)
            if self.run_span is not None:
                self.run_span.add_event(A.EVENT_GUARD, attributes)
        except Exception as exc:
            from steptrace._internal import report_internal_error

            report_internal_error("guard.record", exc)
        with self._lock:
            if len(self.trips) < _MAX_RECORDED_TRIPS:
                self.trips.append(event.to_dict())

    def trips_json(self) -> str | None:
        with self._lock:
            return json.dumps(self.trips) if self.trips else None
