"""The object the runners consult (``_spans.rerun_hook``) while a recording or a rerun is on.

At "invoke" it swaps the user's callable for one that records what the call returned or raised
(``record_for_rerun``), or that serves the recorded outcome instead of running (a rerun). It is
installed only while one of them is active: otherwise the runners pay one ``None`` test.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context

from steptrace import _attributes as A
from steptrace import _spans
from steptrace._content import ContentPolicy, arguments_hash
from steptrace._context import CAPTURE_KEY, RunState
from steptrace._internal import report_internal_error
from steptrace._spans import AgentRun, LlmRequest, ToolCall
from steptrace.rerun import _serving
from steptrace.rerun._codec import (
    Unrecordable,
    decode_error,
    decode_value,
    encode_error,
    encode_value,
    match_form,
    recording_policy,
    to_plain,
)
from steptrace.rerun._recording import FORMAT_VERSION, RECORDING_KEY, Recorder, recording_dir
from steptrace.rerun._serving import RerunDivergence, RerunSession, compare_tool_outcome, step_label
from steptrace.rerun._streams import AsyncRecordedStream, RecordedStream

_TRANSPORT_KWARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


_FENCED = "made inside capture_content(False): its content was not recorded"


def _fenced() -> bool:
    """Inside a ``capture_content(False)`` block (or function): nothing of the call is recorded.
    ``configure(capture_content=False)`` alone is no fence: ``record_for_rerun`` opted in."""
    return otel_context.get_value(CAPTURE_KEY) is False


def _compared(policy: ContentPolicy, value: Any) -> tuple[Any, list[str]]:
    """What a rerun compares of a request or of arguments (redacted, the same in every process),
    and the paths left out of it (``unmatched_args``)."""
    form, left_out = match_form(value)
    plain, _ = to_plain(policy, form)
    return plain, left_out


class _ToolState:
    __slots__ = ("args_hash", "arguments", "secrets", "unmatched")

    def __init__(self, args_hash: str | None, arguments: Any, secrets: Any) -> None:
        self.args_hash = args_hash
        self.arguments = arguments
        self.secrets = secrets
        self.unmatched: list[str] = []


class _LlmState:
    """One model call being recorded/served; marks the handle as taken care of by its runner."""

    __slots__ = ("chunks", "fenced", "line", "recorder")

    def __init__(self) -> None:
        self.recorder: Recorder | None = None
        self.line: dict[str, Any] | None = None
        self.chunks: list[Any] | None = None
        self.fenced = False


def _items(policy: ContentPolicy, items: Any, secrets: Any = ()) -> list[dict[str, Any]]:
    return [encode_value(policy, item, secrets) for item in items]


def _with_outcome(line: dict[str, Any], key: str, encoded: Any) -> dict[str, Any]:
    """``line`` with its outcome (a value, an error or the items); a part that cannot be served
    exactly makes the whole call not replayable (the rerun reaching it raises RerunDivergence)."""
    out = dict(line)
    out[key] = encoded
    if "unreplayable" not in out:
        parts = encoded if isinstance(encoded, list) else [encoded]
        for part in parts:
            why = part.get("unreplayable") if isinstance(part, dict) else None
            if why is not None:
                out["unreplayable"] = f"an item it yielded: {why}" if key == "chunks" else str(why)
                break
    return out


class _RecordingObserver:
    """A stream observer that also keeps the chunks for the recording (written at the end)."""

    __slots__ = ("chunks", "inner")

    def __init__(self, inner: Any, chunks: list[Any]) -> None:
        self.inner = inner
        self.chunks = chunks

    def observe(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        self.inner.observe(chunk)

    def finalize(self) -> None:
        self.inner.finalize()

    @property
    def times(self) -> Any:
        return self.inner.times

    @property
    def handle(self) -> Any:
        return self.inner.handle


def _steps(handle: Any) -> tuple[int | None, int | None]:
    """(the span's sequence number in its run, its agent step number)."""
    attributes = getattr(handle.span, "attributes", None) or {}
    seq, step = attributes.get(A.STEP), attributes.get(A.AGENT_STEP_NUMBER)
    return (seq if isinstance(seq, int) else None, step if isinstance(step, int) else None)


_readers: dict[Any, Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]] = {}


def _named_arguments(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    from steptrace._decorators import _arguments_reader

    try:
        reader = _readers.get(fn)
    except TypeError:  # unhashable callable
        reader = None
    if reader is None:
        reader = _arguments_reader(fn)
        if len(_readers) < 1024:
            with contextlib.suppress(TypeError):
                _readers[fn] = reader
    return reader(args, kwargs)


def _is_sdk_call(hooks: Any) -> bool:
    from steptrace.instrumentation._common import Call

    return isinstance(hooks, Call)


def _is_stream_result(hooks: Any, result: Any) -> bool:
    from steptrace.instrumentation._common import _is_sdk_stream

    if getattr(hooks, "served_stream", None) is not None:  # anthropic's (beta.)messages.stream()
        return True
    key = getattr(hooks, "stream_key", None)
    if key is not None:  # Bedrock's converse_stream: the stream is one value of the response dict
        return bool(hooks.handle.stream) and isinstance(result, dict) and key in result
    if inspect.isgenerator(result) or inspect.isasyncgen(result):  # google-genai's chunk generators
        return bool(hooks.handle.stream)
    return bool(hooks.handle.stream) and _is_sdk_stream(result, hooks.is_async)


def _served(kind: str, produce: Callable[[], Any]) -> Callable[..., Any]:
    """A stand-in for the user's callable, of the same kind, whose outcome is ``produce()``."""
    if kind == "coroutine":

        async def serve_coroutine(*args: Any, **kwargs: Any) -> Any:
            return produce()

        return serve_coroutine
    if kind == "generator":

        def serve_generator(*args: Any, **kwargs: Any) -> Any:
            yield from produce()

        return serve_generator
    if kind == "async_generator":

        async def serve_async_generator(*args: Any, **kwargs: Any) -> Any:
            for item in produce():
                yield item

        return serve_async_generator

    def serve(*args: Any, **kwargs: Any) -> Any:
        return produce()

    return serve


def _observed(
    kind: str,
    fn: Callable[..., Any],
    before: Callable[[tuple[Any, ...], dict[str, Any]], Callable[..., Any]],
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException, list[Any] | None], None],
) -> Callable[..., Any]:
    """``fn`` wrapped: ``before`` picks the callable to run (served or live), the outcome is
    reported to ``on_result``/``on_error`` (generators: the list of items). Never alters it."""

    def report(hook: Callable[..., None], *values: Any) -> None:
        try:
            hook(*values)
        except Exception as exc:
            report_internal_error("rerun.record", exc)

    if kind == "coroutine":

        async def observe_coroutine(*args: Any, **kwargs: Any) -> Any:
            target = before(args, kwargs)
            try:
                result = await target(*args, **kwargs)
            except Exception as exc:
                report(on_error, exc, None)
                raise
            report(on_result, result)
            return result

        return observe_coroutine
    if kind == "generator":

        def observe_generator(*args: Any, **kwargs: Any) -> Any:
            target = before(args, kwargs)
            items: list[Any] = []
            try:
                for item in target(*args, **kwargs):
                    items.append(item)
                    yield item
            except GeneratorExit:
                report(on_result, items)
                raise
            except Exception as exc:
                report(on_error, exc, items)
                raise
            report(on_result, items)

        return observe_generator
    if kind == "async_generator":

        async def observe_async_generator(*args: Any, **kwargs: Any) -> Any:
            target = before(args, kwargs)
            items: list[Any] = []
            try:
                async for item in target(*args, **kwargs):
                    items.append(item)
                    yield item
            except GeneratorExit:
                report(on_result, items)
                raise
            except Exception as exc:
                report(on_error, exc, items)
                raise
            report(on_result, items)

        return observe_async_generator

    def observe(*args: Any, **kwargs: Any) -> Any:
        target = before(args, kwargs)
        try:
            result = target(*args, **kwargs)
        except Exception as exc:
            report(on_error, exc, None)
            raise
        report(on_result, result)
        return result

    return observe


def _produce_entry(entry: dict[str, Any], kind: str, sdk_hooks: Any = None) -> Callable[[], Any]:
    """What serves one recorded call: its value (rebuilt), its items or chunks, or its error.
    A value that cannot be rebuilt exactly raises ``RerunDivergence`` naming the call."""

    def produce() -> Any:
        try:
            return rebuild()
        except Unrecordable as exc:
            where = step_label(entry)
            name = entry.get("name") or f"model call {entry.get('number')}"
            label = f"step {where}: " if where is not None else ""
            text = f"{label}{name}'s recorded outcome cannot be served ({exc})"
            raise RerunDivergence(text, where) from None

    def rebuild() -> Any:
        error = entry.get("error")
        if "chunks" in entry:
            chunks = [decode_value(chunk) for chunk in entry["chunks"]]
            failure = decode_error(error) if error is not None else None
            if sdk_hooks is not None:
                return _recorded_sdk_stream(sdk_hooks, entry, chunks, failure)
            if kind in ("generator", "async_generator"):
                return _items_then(chunks, failure)
            return chunks
        if error is not None:
            raise decode_error(error)
        return decode_value(entry.get("result", entry.get("response")))

    return produce


def _items_then(items: list[Any], failure: BaseException | None) -> Any:
    yield from items
    if failure is not None:
        raise failure


def _recorded_sdk_stream(
    hooks: Any, entry: dict[str, Any], chunks: list[Any], failure: BaseException | None
) -> Any:
    stream: Any = (AsyncRecordedStream if hooks.is_async else RecordedStream)(chunks, failure)
    key = getattr(hooks, "stream_key", None)
    if key is not None:  # the rest of the response dict, recorded with the chunks, around them
        response = decode_value(entry["envelope"]) if "envelope" in entry else {}
        response[key] = stream
        return response
    served_stream = getattr(hooks, "served_stream", None)
    if entry.get("stream_helper") and served_stream is not None:
        # anthropic's (beta.)messages.stream(): the call rebuilds its helper over the events
        return served_stream(stream)
    return stream


def _raiser(kind: str, text: str, step: int | None) -> Callable[..., Any]:
    def produce() -> Any:
        raise RerunDivergence(text, step)

    return _served(kind, produce)


class RerunHook:
    """Dispatches the runners' calls to the recording (if on) and the rerun session (if any)."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.policy: ContentPolicy | None = None
        self.recorders: dict[str, Recorder] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> RerunSession | None:
        """The rerun of the calling context (``_serving.current_session``)."""
        return _serving.current_session()

    @property
    def idle(self) -> bool:
        return self.directory is None and not _serving.sessions_active()

    def _policy(self, handle: Any) -> ContentPolicy:
        if self.policy is not None:
            return self.policy
        return recording_policy(handle._config.content.redactor)

    def _recorder(self, run: Any) -> Recorder | None:
        if self.directory is None or not isinstance(run, RunState):
            return None
        return self.recorders.get(run.run_id)

    # --- runs -----------------------------------------------------------------------------------
    def run_opening(self, run: AgentRun, attrs: dict[str, Any], parent_run: Any) -> None:
        try:
            session = _serving.session_for(parent_run)
            if session is not None:
                session.claim(run, attrs, parent_run, A.RERUN_OF)
            directory = self.directory
            if directory is None or self.policy is None:
                return
            parent = self.recorders.get(parent_run.run_id) if isinstance(parent_run, RunState) else None
            if parent is not None:
                self.recorders[run.run_id] = parent
                return
            recorder = Recorder(recording_dir(directory), run.run_id, self.policy)
            self.recorders[run.run_id] = recorder
            line: dict[str, Any] = {
                RECORDING_KEY: "run",
                "format": FORMAT_VERSION,
                "run_id": run.run_id,
                "agent": run.agent,
                "release": run.release,
                "started_at": datetime.now(timezone.utc).isoformat(),
            }
            if A.RERUN_OF in attrs:
                line["rerun_of"] = attrs[A.RERUN_OF]
            recorder.write(line)
        except Exception as exc:
            report_internal_error("rerun.run_opening", exc)

    def run_closing(self, run: AgentRun) -> None:
        try:
            recorder = self.recorders.pop(run.run_id, None)
            if recorder is None or recorder.run_id != run.run_id:
                return
            state = run.state
            recorder.write(
                {
                    RECORDING_KEY: "end",
                    "run_id": run.run_id,
                    "outcome": {
                        "stop_reason": state.stop_reason,
                        "steps": state.steps or state.llm_calls + state.tool_calls,
                        "tool_calls": dict(recorder.tool_counts),
                        "errors": state.errors,
                        "tokens": {"input": state.input_tokens, "output": state.output_tokens},
                    },
                }
            )
            recorder.close()
        except Exception as exc:
            report_internal_error("rerun.run_closing", exc)

    def tool_opening(self, handle: ToolCall, arguments: Any, attrs: dict[str, Any]) -> None:
        digest = attrs.get(A.TOOL_ARGS_HASH)
        if digest is None and arguments is not None:
            digest = arguments_hash(arguments)
        handle._rerun = _ToolState(digest, arguments, handle._secrets)

    # --- invoke ---------------------------------------------------------------------------------
    def substitute(self, handle: Any, hooks: Any, fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
        try:
            if isinstance(handle, ToolCall):
                return self._tool(handle, fn, kind)
            if isinstance(handle, LlmRequest):
                return self._llm(handle, hooks, fn, kind)
            if isinstance(handle, AgentRun):
                return self._run_arguments(handle, fn, kind)
        except Exception as exc:
            report_internal_error("rerun.substitute", exc)
        return fn

    def _run_arguments(self, handle: AgentRun, fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
        recorder = self._recorder(handle.state)
        if recorder is None or recorder.run_id != handle.run_id:
            return fn

        @functools.wraps(fn)
        def record_arguments(*args: Any, **kwargs: Any) -> Any:
            if _fenced():
                return fn(*args, **kwargs)
            try:
                arguments = _named_arguments(fn, args, kwargs)
                recorder.write(
                    {
                        RECORDING_KEY: "arguments",
                        "run_id": handle.run_id,
                        "arguments": encode_value(recorder.policy, arguments),
                    }
                )
            except Exception as exc:
                report_internal_error("rerun.arguments", exc)
            return fn(*args, **kwargs)

        return record_arguments

    def _tool(self, handle: ToolCall, fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
        run = handle._run
        session = _serving.session_for(run)
        session = session if session is not None and session.serves(run) else None
        recorder = self._recorder(run)
        if session is None and recorder is None:
            return fn
        state = getattr(handle, "_rerun", None)
        state = state if isinstance(state, _ToolState) else None
        args_hash = state.args_hash if state is not None else None
        secrets = state.secrets if state is not None else ()
        seq, step = _steps(handle)
        fenced = _fenced()
        policy = recorder.policy if recorder is not None else self._policy(handle)
        line: dict[str, Any] = {
            RECORDING_KEY: "tool",
            "run_id": run.run_id if run is not None else None,
            "seq": seq,
            "agent_step": step,
            "name": handle.name,
            "args_hash": args_hash,
        }
        if fenced:
            line["unreplayable"] = _FENCED
        elif state is not None and state.arguments is not None:
            shown, unmatched = _compared(policy, state.arguments)
            if recorder is not None:
                line["arguments"] = shown
            if unmatched:
                line["unmatched_args"] = unmatched
        live_entry: dict[str, Any] | None = None

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
            nonlocal live_entry
            if session is None:
                return fn
            session.observe(line)
            decision, entry, text = session.tool_decision(
                handle.name, args_hash, step if step is not None else seq
            )
            if decision == "serve" and entry is not None:
                handle.span.set_attribute(A.RERUN_SERVED, True)
                return _served(kind, _produce_entry(entry, kind))
            if decision == "raise":
                return _raiser(kind, str(text), step if step is not None else seq)
            live_entry = entry
            return fn

        def outcome(result: Any, error: dict[str, Any] | None) -> None:
            if session is not None and live_entry is not None:
                recorded = live_entry
                if "result" not in recorded and "chunks" in recorded and "error" not in recorded:
                    recorded = dict(recorded, result=recorded["chunks"])
                difference = compare_tool_outcome(recorded, result, error)
                if difference is not None:
                    where = step if step is not None else seq
                    session.note(where, f"step {where}: {difference}")

        def write(out: dict[str, Any]) -> None:
            if recorder is not None:
                recorder.count_tool(handle.name)
                recorder.write(out)

        def on_result(value: Any) -> None:
            if recorder is None and live_entry is None:
                return
            if fenced:
                outcome(None, None)
                write(dict(line))
                return
            if kind in ("generator", "async_generator"):
                items = _items(policy, value, secrets)
                outcome(items, None)
                write(_with_outcome(line, "chunks", items))
                return
            encoded = encode_value(policy, value, secrets)
            outcome(encoded, None)
            write(_with_outcome(line, "result", encoded))

        def on_error(exc: BaseException, items: list[Any] | None) -> None:
            if isinstance(exc, RerunDivergence):
                return
            error = encode_error(policy, exc, secrets) if not fenced else {"name": type(exc).__name__}
            outcome(None, error)
            if fenced:
                write(dict(line))
                return
            out = _with_outcome(line, "error", error)
            if items is not None:  # a generator that failed: the items it yielded first
                out = _with_outcome(out, "chunks", [encode_value(policy, item, secrets) for item in items])
            write(out)

        return _observed(kind, fn, before, on_result, on_error)

    def _llm(self, handle: LlmRequest, hooks: Any, fn: Callable[..., Any], kind: str) -> Callable[..., Any]:
        if isinstance(getattr(handle, "_rerun", None), _LlmState):
            return fn  # an SDK call inside a decorated llm_request the runner records or serves
        run = handle._run
        session = _serving.session_for(run)
        session = session if session is not None and session.serves(run) else None
        recorder = self._recorder(run)
        if session is None and recorder is None:
            return fn
        state = _LlmState()
        state.recorder = recorder
        handle._rerun = state
        sdk = _is_sdk_call(hooks)
        seq, step = _steps(handle)
        fenced = _fenced()
        state.fenced = fenced
        policy = recorder.policy if recorder is not None else self._policy(handle)
        number = recorder.next_llm_number() if recorder is not None else 0
        line: dict[str, Any] = {
            RECORDING_KEY: "llm",
            "run_id": run.run_id if run is not None else None,
            "number": number,
            "seq": seq,
            "agent_step": step,
            "sdk": hooks.endpoint.provider if sdk else None,
        }
        state.line = line

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
            raw = kwargs if sdk else _named_arguments(fn, args, kwargs)
            # An integration may say what of the arguments the model receives: LangChain not the
            # messages' per-run random ids (so a new process matches an unchanged agent);
            # anthropic's stream helpers the keywords of stream(...), not of the __enter__ that
            # sends them (recorded as {}, any prompt matched).
            shape = getattr(hooks, "rerun_request", None)
            if shape is not None:
                raw = shape(raw)
            if sdk:
                raw = {key: value for key, value in raw.items() if key not in _TRANSPORT_KWARGS}
                if getattr(hooks, "served_stream", None) is not None:
                    line["stream_helper"] = True
            if fenced:  # compared as nothing on both sides: the rerun then says why it cannot serve
                line["request"] = None
                line["unreplayable"] = _FENCED
            else:
                request, unmatched = _compared(policy, raw)
                line["request"] = request
                if unmatched:
                    line["unmatched_args"] = unmatched
                if request is None:
                    line["unreplayable"] = "its request could not be recorded (over 1 MiB)"
            if session is None:
                return fn
            session.observe(line)
            where = step if step is not None else seq
            decision, entry, text = session.llm_decision(where, line["request"], sdk)
            if decision == "serve" and entry is not None:
                handle.span.set_attribute(A.RERUN_SERVED, True)  # priced at $0
                return _served(kind, _produce_entry(entry, kind, hooks if sdk else None))
            if decision == "raise":
                return _raiser(kind, str(text), step if step is not None else seq)
            return fn

        def on_result(value: Any) -> None:
            if recorder is None:
                return
            if sdk and _is_stream_result(hooks, value):
                state.chunks = []  # the observer collects them; written when the stream ends
                key = getattr(hooks, "stream_key", None)
                if key is not None and not fenced:
                    rest = {name: item for name, item in value.items() if name != key}
                    line["envelope"] = encode_value(policy, rest)
                return
            if fenced:
                recorder.write(dict(line))
            elif kind in ("generator", "async_generator"):
                recorder.write(_with_outcome(line, "chunks", _items(policy, value)))
            else:
                recorder.write(_with_outcome(line, "response", encode_value(policy, value)))

        def on_error(exc: BaseException, items: list[Any] | None) -> None:
            if recorder is None or isinstance(exc, RerunDivergence):
                return
            if fenced:
                recorder.write(dict(line))
                return
            out = _with_outcome(line, "error", encode_error(policy, exc))
            if items is not None:
                out = _with_outcome(out, "chunks", [encode_value(policy, item) for item in items])
            recorder.write(out)

        return _observed(kind, fn, before, on_result, on_error)

    # --- streams (the SDK's observer path) ------------------------------------------------------
    def observe_stream(self, call: Any, observer: Any) -> Any:
        state = getattr(call.handle, "_rerun", None)
        if not isinstance(state, _LlmState) or state.recorder is None or state.chunks is None:
            return observer
        return _RecordingObserver(observer, state.chunks)

    def stream_ended(self, call: Any, observer: Any, completed: bool, exc: BaseException | None) -> None:
        if not isinstance(observer, _RecordingObserver):
            return
        try:
            state = call.handle._rerun
            recorder, line = state.recorder, state.line
            if recorder is None or line is None:
                return
            policy = recorder.policy
            if state.fenced:
                recorder.write(dict(line))
                return
            out = _with_outcome(line, "chunks", _items(policy, observer.chunks))
            out["completed"] = completed
            if exc is not None and not isinstance(exc, (GeneratorExit, RerunDivergence)):
                out = _with_outcome(out, "error", encode_error(policy, exc))
            recorder.write(out)
        except Exception as internal:
            report_internal_error("rerun.stream_ended", internal)


HOOK = RerunHook()


def _install() -> None:
    _spans.rerun_hook = None if HOOK.idle else HOOK


def set_recording(directory: Path | None, policy: ContentPolicy | None) -> None:
    """Turn ``record_for_rerun`` on (recordings under ``directory/rerun``) or off (None)."""
    with HOOK._lock:
        HOOK.directory = directory
        HOOK.policy = policy
        if directory is None:
            for recorder in set(HOOK.recorders.values()):
                recorder.close()
            HOOK.recorders.clear()
        _install()


def enter_session(session: RerunSession, *, process: bool = False) -> Any:
    """Make ``session`` the rerun of this context (``process``: of the whole process, the CLI's
    rerun); returns what ``leave_session`` needs to undo it."""
    with HOOK._lock:
        token = _serving.activate(session, process=process)
        _install()
    return token


def leave_session(session: RerunSession, token: Any) -> None:
    with HOOK._lock:
        _serving.deactivate(session, token)
        _install()
