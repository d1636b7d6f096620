"""Serving a recorded run: which recorded call answers a call of the rerun, and divergences.

Model calls match by order (the k-th model call gets the k-th recorded response), after their
requests are compared (model, messages, system, input, instructions, tools; google-genai's
contents and its config's system instruction and tools; Bedrock's modelId and toolConfig — as
redacted in the recording); tool
calls match by tool name and ``args_hash``, by occurrence, so parallel calls in threads find their
own result whatever order they start in.

In ``recorded`` mode nothing is ever called for real: after a divergence the recorded model
responses are still served, in order ("out of match": the model's recorded decisions), and a call
the recording has nothing left for raises ``RerunDivergence``. A session belongs to the context
that entered it (a ``ContextVar``), so two reruns in two threads or tasks never share one.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steptrace._context import RunState
from steptrace.rerun._recording import RECORDING_KEY, read_lines

MODES = ("recorded", "until-divergence", "live")
logger = logging.getLogger("steptrace.rerun")
# What of an SDK request is compared: what the model is asked, not transport options. Bedrock's
# converse names its model ``modelId`` and its tools ``toolConfig``.
COMPARED_REQUEST_KEYS = (
    "model",
    "messages",
    "system",
    "input",
    "instructions",
    "tools",
    "contents",
    "modelId",
    "toolConfig",
)
# google-genai sends its system instruction and tools inside ``config``, beside sampling options
# (not compared, as for the other SDKs); unset and None are the same request.
COMPARED_CONFIG_KEYS = ("system_instruction", "tools")


class RerunDivergence(Exception):
    """The rerun asked for a call the recording does not have (raised into the agent in
    ``recorded`` mode): names the step, what was expected and what was asked."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


class RecordingNotFound(LookupError):
    """No recording for this run (or its id prefix is ambiguous): nothing to re-run."""


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_difference(expected: Any, got: Any, path: str = "") -> str | None:
    """Where two JSON values first differ, in words; None when equal."""
    if expected == got:
        return None
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in list(expected) + [k for k in got if k not in expected]:
            where = f"{path}.{key}" if path else str(key)
            if key not in got:
                return f"{where} is missing (expected {_short(expected[key])})"
            if key not in expected:
                return f"{where} is new ({_short(got[key])})"
            found = first_difference(expected[key], got[key], where)
            if found is not None:
                return found
    if isinstance(expected, list) and isinstance(got, list):
        for index, (left, right) in enumerate(zip(expected, got, strict=False)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found is not None:
                return found
        return f"{path or 'the list'} has {len(got)} items instead of {len(expected)}"
    return f"{path or 'the value'}: expected {_short(expected)}, got {_short(got)}"


def request_view(request: Any, sdk: bool) -> Any:
    if sdk and isinstance(request, dict):
        view = {key: request[key] for key in COMPARED_REQUEST_KEYS if key in request}
        config = request.get("config")
        if isinstance(config, dict):
            for key in COMPARED_CONFIG_KEYS:
                if config.get(key) is not None:
                    view[f"config.{key}"] = config[key]
        return view
    return request


def uncomparable(entry: dict[str, Any]) -> bool:
    """A recorded SDK model call whose request holds nothing: anthropic's ``messages.stream()``
    and ``beta.messages.stream()`` recorded before steptrace took their request from the
    keywords of ``stream(...)``. Any prompt would match it, so none is compared."""
    return bool(entry.get("sdk")) and entry.get("request") == {}


def step_label(line: dict[str, Any]) -> int | None:
    step = line.get("agent_step")
    return step if isinstance(step, int) else line.get("seq") if isinstance(line.get("seq"), int) else None


def call_key(line: dict[str, Any]) -> tuple[int, str, str, str]:
    """A call, for comparing two runs' calls (start order within a step may differ in threads)."""
    step = line.get("agent_step")
    return (
        step if isinstance(step, int) else 0,
        str(line.get(RECORDING_KEY)),
        str(line.get("name") or ""),
        str(line.get("args_hash") or ""),
    )


@dataclass
class RecordedRun:
    """A recording as read back: the run's model calls in order, its tool calls by key."""

    run_id: str
    path: Path
    agent: str | None = None
    llm: list[dict[str, Any]] = field(default_factory=list)
    tools: dict[tuple[str, str | None], list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    arguments: Any = None
    exported: bool = False

    @classmethod
    def read(cls, path: Path) -> RecordedRun:
        """Read a recording file (or an exported run); torn or foreign lines are skipped, corrupt
        calls cannot be served (``_recording.read_lines``)."""
        try:
            lines, exported = read_lines(path)
        except OSError as exc:
            raise RecordingNotFound(f"{path}: cannot read the recording ({exc.strerror or exc})") from None
        runs = [line for line in lines if line.get(RECORDING_KEY) == "run"]
        if not runs:
            raise RecordingNotFound(f"{path}: not a steptrace recording (no run line)")
        head = runs[0]
        run = cls(str(head.get("run_id")), path, head.get("agent"), exported=exported)
        for line in lines:
            kind = line.get(RECORDING_KEY)
            if kind == "llm":
                run.llm.append(line)
                run.calls.append(line)
            elif kind == "tool":
                run.tools.setdefault((str(line.get("name")), line.get("args_hash")), []).append(line)
                run.calls.append(line)
            elif kind == "end" and line.get("run_id") == run.run_id:
                run.end = line
            elif kind == "arguments" and line.get("run_id") == run.run_id:
                run.arguments = line.get("arguments")
        run.llm.sort(key=lambda line: int(line.get("number") or 0))
        for entries in run.tools.values():
            entries.sort(key=lambda line: int(line.get("seq") or 0))
        run.calls.sort(key=lambda line: int(line.get("seq") or 0))
        return run


class RerunSession:
    """One active rerun: the recording, the modes, what was served, the first divergence."""

    def __init__(self, recorded: RecordedRun, llm: str, tools: str) -> None:
        for name, mode in (("llm", llm), ("tools", tools)):
            if mode not in MODES:
                raise ValueError(f"{name}={mode!r}: use one of {', '.join(MODES)}")
        self.recorded = recorded
        self.llm_mode = llm
        self.tools_mode = tools
        self.run: Any = None  # the AgentRun handle of the rerun
        self.run_ids: set[str] = set()
        self._lock = threading.Lock()
        self._llm_count = 0
        self._llm_used: set[int] = set()
        self._tool_used: dict[tuple[str, str | None], int] = {}
        self.llm_live = llm == "live"
        self.tools_live = tools == "live"
        self.divergence: tuple[int | None, str] | None = None
        self.observed: list[dict[str, Any]] = []
        self.tool_counts: dict[str, int] = {}
        # What ran: served from the recording (model: in match / out of match) or for real.
        self.llm_served = 0
        self.llm_out_of_match = 0
        self.llm_out_of_match_from: int | None = None  # the first model call served out of match
        self.llm_live_calls = 0
        self.tools_served = 0
        self.tools_ran = 0
        self.warnings: list[str] = []
        # Model calls served in order whose recorded request holds nothing to compare (see
        # ``uncomparable``): the rerun cannot say whether they asked the same.
        self.llm_not_compared: list[int] = []

    # --- which calls are the rerun's ------------------------------------------------------------
    def claim(self, run: Any, attrs: dict[str, Any], parent_run: Any, rerun_of_key: str) -> None:
        with self._lock:
            first = self.run is None
            if first:
                self.run = run
                self.run_ids.add(run.run_id)
                attrs[rerun_of_key] = self.recorded.run_id
            elif isinstance(parent_run, RunState) and parent_run.run_id in self.run_ids:
                self.run_ids.add(run.run_id)
            else:
                return
            _by_run[run.run_id] = self  # threads given the run's context (bind_context) find it
        if first:
            self.check_sources()

    def warn(self, text: str) -> None:
        """Said once, at the time: in the log (``steptrace.rerun``) and in the report."""
        with self._lock:
            if text in self.warnings:
                return
            self.warnings.append(text)
        logger.warning("steptrace rerun: %s", text)

    def check_sources(self) -> None:
        """At the rerun's start: a recorded SDK's model calls can only be served through its
        instrumentation. Without it they would reach the network unseen, so an uninstrumented
        SDK is instrumented now (``recorded``/``until-divergence``), and the rerun says so."""
        if self.llm_mode == "live":
            return
        providers: dict[str, int] = {}
        for entry in self.recorded.llm:
            provider = entry.get("sdk")
            if isinstance(provider, str):
                providers[provider] = providers.get(provider, 0) + 1
        for provider, count in sorted(providers.items()):
            calls = f"{count} {provider} model call{'s' if count != 1 else ''}"
            found = _instrumentor(provider)
            if found is None:
                continue
            instrumentor, module = found
            if instrumentor.is_instrumented_by_opentelemetry or len(instrumentor._clients):
                continue
            if module not in sys.modules:
                self.warn(
                    f"the recording has {calls}, but {module} is not imported: nothing to serve them from"
                )
                continue
            instrumentor.instrument()
            if instrumentor.is_instrumented_by_opentelemetry:
                self.warn(
                    f"the recording has {calls}, but {module} was not instrumented in this process: "
                    f"steptrace instrumented it so they are served from the recording, not sent"
                )
            else:
                self.warn(f"the recording has {calls}, but {module} could not be instrumented")

    def serves(self, run: Any) -> bool:
        """Calls of the rerun's run (and nested runs), and calls outside any run, are served."""
        return run is None or (isinstance(run, RunState) and run.run_id in self.run_ids)

    def note(self, step: int | None, text: str) -> None:
        with self._lock:
            if self.divergence is None:
                self.divergence = (step, text)

    def observe(self, line: dict[str, Any]) -> None:
        with self._lock:
            self.observed.append(line)
            if line.get(RECORDING_KEY) == "tool":
                name = str(line.get("name"))
                self.tool_counts[name] = self.tool_counts.get(name, 0) + 1

    # --- model calls ------------------------------------------------------------------------------
    def llm_decision(
        self, step: int | None, request: Any, sdk: bool
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        """("serve", entry, None), ("live", None, divergence or None) or ("raise", None, text).

        ``recorded``: a request that matches gets its response; one that does not is a
        divergence, and still gets the next recorded response in order (served out of match);
        nothing left to serve raises. ``until-divergence``: live from the first difference on.
        """
        view = request_view(request, sdk)
        out_of_match: dict[str, Any] | None = None
        with self._lock:
            self._llm_count += 1
            number = self._llm_count
            live = self.llm_live
            entries = self.recorded.llm
            expected = entries[number - 1] if number <= len(entries) else None
            chosen: dict[str, Any] | None = None
            if (
                expected is not None
                and int(expected.get("number") or 0) not in self._llm_used
                and request_view(expected.get("request"), bool(expected.get("sdk"))) == view
            ):
                chosen = expected
            if chosen is None:  # parallel calls may start in another order: an unused equal request
                for entry in entries:
                    key = int(entry.get("number") or 0)
                    if (
                        key not in self._llm_used
                        and request_view(entry.get("request"), bool(entry.get("sdk"))) == view
                    ):
                        chosen = entry
                        break
            if (
                chosen is None
                and expected is not None
                and int(expected.get("number") or 0) not in self._llm_used
                and uncomparable(expected)
            ):  # served in order, and the report says it was not compared (never "reproduced")
                chosen = expected
                self.llm_not_compared.append(number)
            if chosen is None and not live and self.llm_mode == "recorded":
                # the model's recorded decision, in order: the first response not served yet
                out_of_match = next(
                    (e for e in entries if int(e.get("number") or 0) not in self._llm_used), None
                )
            served = chosen if chosen is not None else out_of_match
            if served is not None and not live and not served.get("unreplayable"):
                self._llm_used.add(int(served.get("number") or 0))
        where = f"step {step}" if step is not None else f"model call {number}"
        text: str | None = None
        if chosen is None:
            if expected is None:
                text = (
                    f"{where}: model call {number} has no recorded counterpart "
                    f"(the original run made {len(entries)} model calls)"
                )
            else:
                difference = first_difference(
                    request_view(expected.get("request"), bool(expected.get("sdk"))), view
                )
                text = f"{where}: model call {number} asked for something else ({difference})"
        elif chosen.get("unreplayable"):
            text = f"{where}: model call {number} was recorded as not replayable ({chosen['unreplayable']})"
        if live:
            if text is not None:
                self.note(step, text)
            with self._lock:
                self.llm_live_calls += 1
            return "live", None, text
        if text is None and chosen is not None:
            with self._lock:
                self.llm_served += 1
            return "serve", chosen, None
        self.note(step, text or where)
        if self.llm_mode == "until-divergence":
            with self._lock:
                self.llm_live = True
                self.llm_live_calls += 1
            return "live", None, text
        if out_of_match is not None and chosen is None:
            if out_of_match.get("unreplayable"):
                return (
                    "raise",
                    None,
                    (
                        f"{where}: model call {number} would get recorded model call "
                        f"{out_of_match.get('number')}, which was recorded as not replayable "
                        f"({out_of_match['unreplayable']})"
                    ),
                )
            with self._lock:
                self.llm_served += 1
                self.llm_out_of_match += 1
                if self.llm_out_of_match_from is None:
                    self.llm_out_of_match_from = number
            return "serve", out_of_match, None
        if chosen is None and expected is not None:  # every recorded response was served already
            text = (
                f"{where}: model call {number} has nothing left to serve "
                f"(the original run made {len(entries)} model call{'s' if len(entries) != 1 else ''}"
                f"{', all served' if entries else ''}); llm='recorded' never calls the model"
            )
        return "raise", None, text

    # --- tool calls -------------------------------------------------------------------------------
    def tool_decision(
        self, name: str, args_hash: str | None, step: int | None
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        key = (name, args_hash)
        with self._lock:
            occurrence = self._tool_used.get(key, 0)
            self._tool_used[key] = occurrence + 1
            entries = self.recorded.tools.get(key, [])
            entry = entries[occurrence] if occurrence < len(entries) else None
            live = self.tools_live
        where = f"step {step}" if step is not None else "a tool call"
        text: str | None = None
        if entry is None:
            if entries:
                text = (
                    f"{where}: {name} was called a {_ordinal(occurrence + 1)} time with these "
                    f"arguments (args_hash {args_hash}); the original run called it {len(entries)} "
                    f"time{'s' if len(entries) != 1 else ''}"
                )
            else:
                text = (
                    f"{where}: {name} (args_hash {args_hash}) was not called with these arguments "
                    "in the original run"
                )
        elif entry.get("unreplayable"):
            text = f"{where}: {name}'s result was recorded as not replayable ({entry['unreplayable']})"
        if live:
            if entry is None and text is not None:
                self.note(step, text)
            with self._lock:
                self.tools_ran += 1
            return "live", entry, None
        if text is None:
            with self._lock:
                self.tools_served += 1
            return "serve", entry, None
        self.note(step, text)
        if self.tools_mode == "until-divergence":
            with self._lock:
                self.tools_live = True
                self.tools_ran += 1
            return "live", None, text
        return "raise", None, text


def _instrumentor(provider: str) -> tuple[Any, str] | None:
    """The SDK instrumentor that serves a recorded provider's calls, and the module it patches."""
    if provider == "openai":
        from steptrace.instrumentation.openai import OpenAIInstrumentor

        return OpenAIInstrumentor(), "openai"
    if provider == "anthropic":
        from steptrace.instrumentation.anthropic import AnthropicInstrumentor

        return AnthropicInstrumentor(), "anthropic"
    if provider.startswith("gcp."):
        from steptrace.instrumentation.google_genai import GoogleGenAIInstrumentor

        return GoogleGenAIInstrumentor(), "google.genai"
    return None


# --- which session is active: the context's ---------------------------------------------------
_SESSION: ContextVar[RerunSession | None] = ContextVar("steptrace_rerun_session", default=None)
_process_session: RerunSession | None = None  # ``steptrace rerun -- COMMAND``: the whole process
_entered: list[RerunSession] = []  # entered and not left, in any context: the hook stays installed
_by_run: dict[str, RerunSession] = {}  # the runs a session claimed (and their nested runs)


def current_session() -> RerunSession | None:
    """The rerun of this context (a ``with steptrace.rerun(...)`` block, and the threads and
    tasks it starts with the context copied), else the process's (the CLI's), else the one
    rerun active in the process (a thread started without the context), else None."""
    session = _SESSION.get()
    if session is not None:
        return session
    if _process_session is not None:
        return _process_session
    entered = _entered
    return entered[0] if len(entered) == 1 else None


def session_for(run: Any) -> RerunSession | None:
    """The rerun a call belongs to: its run's (wherever the run's context was carried, threads
    included), else the calling context's."""
    if isinstance(run, RunState):
        found = _by_run.get(run.run_id)
        if found is not None:
            return found
    return current_session()


def sessions_active() -> bool:
    return bool(_entered) or _process_session is not None


def activate(session: RerunSession, *, process: bool = False) -> Token[RerunSession | None] | None:
    """Make ``session`` this context's rerun (``process``: the process's); the caller holds
    the hook's lock, and undoes it with ``deactivate``."""
    global _process_session
    if process:
        _process_session = session
        return None
    _entered.append(session)
    return _SESSION.set(session)


def deactivate(session: RerunSession, token: Token[RerunSession | None] | None) -> None:
    global _process_session
    for run_id in session.run_ids:
        if _by_run.get(run_id) is session:
            del _by_run[run_id]
    if token is None:
        if _process_session is session:
            _process_session = None
        return
    if session in _entered:
        _entered.remove(session)
    try:
        _SESSION.reset(token)
    except ValueError:  # left in another context than it was entered in: clear this one's
        if _SESSION.get() is session:
            _SESSION.set(None)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def compare_tool_outcome(entry: dict[str, Any], result: Any, error: dict[str, Any] | None) -> str | None:
    """How a live tool call's outcome differs from the recorded one, in words; None if the same."""
    name = entry.get("name")
    recorded_error = entry.get("error")
    if recorded_error is not None and error is None:
        return f"{name} returned a result instead of {recorded_error.get('name')}"
    if recorded_error is None and error is not None:
        return f"{name} raised {error.get('name')} instead of returning a result"
    if recorded_error is not None and error is not None:
        if recorded_error.get("name") != error.get("name"):
            return f"{name} raised {error.get('name')} instead of {recorded_error.get('name')}"
        return None
    if entry.get("result") != result:
        return f"{name} returned a different result"
    return None
