"""Log correlation: stdlib log records made inside a run carry its run id, agent step, trace and span.

A LogRecord factory wrapper, installed once and restored by ``Telemetry.shutdown()``, stamps
``run_id``, ``step``, ``trace_id`` and ``span_id`` on every record (empty outside a run, so a
``%(run_id)s`` format never fails). A thin wrapper around ``Logger.makeRecord`` keeps a user's own
``extra={"step": ...}`` working (it wins instead of raising ``KeyError``) and hands each record
made inside a run to what asked for it: the step log (``capture_logs``), the OTLP logs pipeline,
the testing fixture. Run and step are read from the context ``_context`` defines; nothing here
attaches a context.

Other libraries wrap the same two hooks (OpenTelemetry's LoggingInstrumentor wraps the factory).
Our hooks go into the chain only where the chain does not already reach them (``_install``
probes it), leave it only from its top (a wrapper above us keeps calling ours, which then passes
records through untouched), and never call themselves: a hook reached again below itself on the
same thread goes straight to logging's own, so no order of configure(), shutdown() and another
library's install and uninstall can make a log call recurse.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace

from steptrace._content import ContentPolicy, bounded_repr
from steptrace._context import RUN_KEY, STEP_KEY, RunState, StepState
from steptrace._errors import ConfigError
from steptrace._internal import report_internal_error
from steptrace._records import iso_utc

if TYPE_CHECKING:
    from steptrace._jsonl import JsonlSpanExporter
    from steptrace.export.otlp_logs import OtlpLogs

CORRELATION_KEYS = ("run_id", "step", "trace_id", "span_id")
_KEY_SET = frozenset(CORRELATION_KEYS)
_EMPTY: Mapping[str, Any] = dict.fromkeys(CORRELATION_KEYS, "")
RECORD_TYPE = "log"
# A captured message is bounded like an error message (``_spans``), not like content.
MAX_MESSAGE_CHARS = 2_000
# Records of steptrace's and the SDK's own loggers are correlated but never captured or exported:
# the step log's or the exporter's own warning would otherwise feed itself.
_OWN_LOGGERS = ("steptrace", "opentelemetry")


class LogSettings:
    """What one configure() asked for; ``otlp`` exports records made inside runs."""

    __slots__ = ("capture_level", "content", "correlate", "otlp", "step_log")

    def __init__(
        self,
        *,
        correlate: bool,
        capture_level: int | None = None,
        step_log: JsonlSpanExporter | None = None,
        content: ContentPolicy | None = None,
        otlp: OtlpLogs | None = None,
    ) -> None:
        self.correlate = correlate
        self.capture_level = capture_level if step_log is not None else None
        self.step_log = step_log
        self.content = content if content is not None else ContentPolicy(capture=False)
        self.otlp = otlp

    @property
    def delivers(self) -> bool:
        return self.capture_level is not None or self.otlp is not None or _test_sink is not None

    def close(self) -> None:
        """Flush and stop the OTLP logs pipeline, if one was started."""
        if self.otlp is not None:
            self.otlp.shutdown()


def parse_capture_logs(value: bool | int | str | None, source: str = "capture_logs") -> int | None:
    """``True`` (every level), a level name or number, or off (``False``/``None``/``"false"``)."""
    if value is None or value is False:
        return None
    if value is True:
        return logging.NOTSET
    if isinstance(value, int):
        return value
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("", "0", "false", "no", "off", "none"):
        return None
    if lowered in ("1", "true", "yes", "on"):
        return logging.NOTSET
    level = logging.getLevelName(text.upper())
    if isinstance(level, int):
        return level
    raise ConfigError(f"{source}={value!r} is not a log level; use True, False, or a level such as 'WARNING'")


_settings: LogSettings | None = None
_test_sink: list[dict[str, Any]] | None = None
_install_lock = threading.Lock()
# What our hooks wrap: the factory and makeRecord they found on top when they went in. Kept after
# they leave the chain: a thread that fetched our hook just before still reaches what is below it.
_factory: Callable[..., logging.LogRecord] = logging.LogRecord
_previous_make_record: Any = None
# True while what our hook wraps is logging's own and no probe runs: nothing below it can call it
# again, so it skips the re-entry guard (thread-local reads and writes, ~0.25 µs a record).
_bare_factory = True
_bare_make_record = True


# The last SpanContext seen and its ids in hex (the lines of one span share them).
_last_ids: tuple[Any, str, str] = (None, "", "")


class _Delivering(threading.local):
    active = False


_delivering = _Delivering()


class _InHook(threading.local):
    """Which of our hooks this thread is inside. Reached again from below itself, a hook is in a
    cycle another library's wrapper closed (or ``_install``'s probe): it notes ``reached`` and
    makes the record with logging's own code instead of calling down the chain again."""

    factory = False
    make_record = False
    reached = False


_in_hook = _InHook()


def _context_getter() -> Callable[[], otel_context.Context]:
    """The current Context's getter, read on every log record. The API's ``get_current`` is three
    Python calls deep; the SDK's default runtime context keeps it in one ContextVar, read directly.
    A private reach-in (``_RUNTIME_CONTEXT._current_context``): if an SDK release renames it, or
    another runtime context is configured, this falls back to the API (correct, only slower);
    tests/test_logs.py::test_log_records_read_the_context_the_api_reads notices the fallback."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(variable, contextvars.ContextVar):
        return cast(Callable[[], otel_context.Context], variable.get)
    return otel_context.get_current


_current_context = _context_getter()
# Read on every log record; set by configure_logs() and set_test_sink().
_correlate = False
_deliver_on = False


def correlation(context: otel_context.Context | None = None) -> tuple[RunState, int | str, str, str] | None:
    """(run, agent step number or "", trace id, span id in hex) here, or None outside a run."""
    current = _current_context() if context is None else context
    run = current.get(RUN_KEY)
    if not isinstance(run, RunState):
        return None
    return _found(current, run)


def _found(current: otel_context.Context, run: RunState) -> tuple[RunState, int | str, str, str]:
    global _last_ids
    step = current.get(STEP_KEY)
    span_context = trace.get_current_span(current).get_span_context()
    cached = _last_ids
    if cached[0] is span_context:  # a span keeps its SpanContext: format its ids once, not per line
        trace_id, span_id = cached[1], cached[2]
    else:
        if span_context.is_valid:
            trace_id, span_id = f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
        else:
            trace_id = span_id = ""
        _last_ids = (span_context, trace_id, span_id)  # one tuple, replaced whole: thread-safe
    return run, step.number if isinstance(step, StepState) else "", trace_id, span_id


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _factory(*args, **kwargs) if _bare_factory else _guarded_factory(args, kwargs)
    if _correlate:
        try:
            current = _current_context()
            run = current.get(RUN_KEY)
            if isinstance(run, RunState):
                values = record.__dict__
                values["run_id"] = run.run_id
                values["step"], values["trace_id"], values["span_id"] = _found(current, run)[1:]
            else:
                record.__dict__.update(_EMPTY)
        except Exception as exc:  # never break a log call
            report_internal_error("log correlation", exc)
    return record


def _guarded_factory(args: Any, kwargs: Any) -> logging.LogRecord:
    in_hook = _in_hook
    if in_hook.factory:  # reached again below ourselves: a cycle, or the probe
        in_hook.reached = True
        return logging.LogRecord(*args, **kwargs)
    in_hook.factory = True
    try:
        return _factory(*args, **kwargs)
    finally:
        in_hook.factory = False


def _make_record(
    self: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    extra: Mapping[str, object] | None = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """``Logger.makeRecord``, tolerating ``extra`` keys named like ours, then delivering."""
    guarded = not _bare_make_record
    outermost = True
    original = _ORIGINAL_MAKE_RECORD
    if guarded:
        in_hook = _in_hook
        if in_hook.make_record:  # reached again below ourselves: a cycle, or the probe
            in_hook.reached = True
            outermost = False  # logging's own makes the record; the outer call delivers it
        else:
            in_hook.make_record = True
            original = _previous_make_record or _ORIGINAL_MAKE_RECORD
    try:
        if extra and not _KEY_SET.isdisjoint(extra):
            # The application's own "step" (or "run_id") wins over ours, as it did before steptrace.
            ours = {key: extra[key] for key in CORRELATION_KEYS if key in extra}
            rest = {key: value for key, value in extra.items() if key not in _KEY_SET} or None
            record: logging.LogRecord = original(
                self, name, level, fn, lno, msg, args, exc_info, func, rest, sinfo
            )
            record.__dict__.update(ours)
        else:
            record = original(self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo)
    finally:
        if guarded and outermost:
            _in_hook.make_record = False
    if outermost and _deliver_on and not _delivering.active:
        settings = _settings
        if settings is not None:
            _deliver(record, settings)
    return record


_ORIGINAL_MAKE_RECORD = logging.Logger.makeRecord


def _own(name: str) -> bool:
    return any(name == own or name.startswith(own + ".") for own in _OWN_LOGGERS)


def _deliver(record: logging.LogRecord, settings: LogSettings) -> None:
    context = _current_context()
    if not isinstance(context.get(RUN_KEY), RunState):  # outside a run: nothing to deliver
        return
    name = record.name
    if not isinstance(name, str) or _own(name):
        return
    _delivering.active = True
    try:
        found = correlation(context)
        if found is None:
            return
        if settings.capture_level is not None and record.levelno >= settings.capture_level:
            step_log = settings.step_log
            if step_log is not None:
                step_log.write_record(step_record(record, found, settings.content))
        if settings.otlp is not None:
            body = redacted_message(record, settings.content)  # log lines quote secrets as errors do
            settings.otlp.emit(record, context, found[0].run_id, found[1], body)
        sink = _test_sink
        if sink is not None:
            run, step, trace_id, span_id = found
            sink.append(
                {
                    "run_id": run.run_id,
                    "step": step if isinstance(step, int) else None,
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "level": record.levelname,
                    "logger": record.name,
                    "message": message_of(record),
                    "record": record,
                }
            )
    except Exception as exc:  # never break a log call
        report_internal_error("log capture", exc)
    finally:
        _delivering.active = False


def message_of(record: logging.LogRecord) -> str:
    """The record's message; a format that does not match its arguments gives ``msg`` as text."""
    try:
        return record.getMessage()
    except Exception:
        return bounded_repr(record.msg)


def redacted_message(record: logging.LogRecord, content: ContentPolicy) -> str:
    """The message redacted like an error message (detectors, ``redact_patterns``, ``redact``)."""
    from steptrace._spans import redact_error_text  # the owner of error-text redaction

    return redact_error_text(message_of(record), MAX_MESSAGE_CHARS, content)


def step_record(
    record: logging.LogRecord,
    found: tuple[RunState, int | str, str, str],
    content: ContentPolicy,
) -> dict[str, Any]:
    """The ``type: "log"`` record for the step log (see docs/step-records.md)."""
    from steptrace._spans import error_type_name, redact_error_text

    run, agent_step, trace_id, span_id = found
    created = float(record.created)
    out: dict[str, Any] = {
        "run_id": run.run_id,
        "step": None,  # a log line is not a span: it has no sequence number of its own
        "type": RECORD_TYPE,
        "name": record.name,
        "trace_id": trace_id,
        "span_id": span_id,
        "started_at": iso_utc(int(created * 1e9)),
        "ts": created,
        "agent_step": agent_step if isinstance(agent_step, int) else None,
        "level": record.levelname,
        "levelno": record.levelno,
        "logger": record.name,
        "message": redacted_message(record, content),
    }
    exc_info = record.exc_info
    if exc_info and exc_info[1] is not None:
        exc = exc_info[1]
        kind = error_type_name(exc)
        try:
            text = str(exc)
        except Exception:
            text = bounded_repr(exc)
        out["exception"] = f"{kind}: {redact_error_text(text, MAX_MESSAGE_CHARS, content)}"
    return out


def configure_logs(settings: LogSettings | None) -> None:
    """Make ``settings`` the one in force (None: correlate and capture nothing); hooks go in once."""
    global _settings
    if settings is not None and (settings.correlate or settings.delivers):
        _install()
    _settings = settings
    _refresh()


def _refresh() -> None:
    global _correlate, _deliver_on
    settings = _settings
    _correlate = settings is not None and settings.correlate
    _deliver_on = settings is not None and settings.delivers


def set_test_sink(sink: list[dict[str, Any]] | None) -> None:
    """The testing fixture's list of the log records made inside runs (None: stop collecting)."""
    global _test_sink
    _test_sink = sink
    if sink is not None:
        _install()
    _refresh()


def _install() -> None:
    """Put our hooks on top of the chain, unless the chain already reaches them (a library
    wrapped ours since we went in): wrapping that wrapper would make each call the other's."""
    global _previous_make_record, _factory, _bare_factory, _bare_make_record
    with _install_lock:
        factory = logging.getLogRecordFactory()
        if factory is not _record_factory and not _reaches_ours(_probe_factory, factory):
            _bare_factory = False  # before the new _factory: a thread in between keeps the guard
            _factory = factory
            logging.setLogRecordFactory(_record_factory)
        _bare_factory = _factory is logging.LogRecord
        make_record = logging.Logger.makeRecord
        if make_record is not _make_record and not _reaches_ours(_probe_make_record, make_record):
            _bare_make_record = False
            _previous_make_record = make_record
            logging.Logger.makeRecord = _make_record  # type: ignore[method-assign]
        _bare_make_record = _previous_make_record in (None, _ORIGINAL_MAKE_RECORD)


def _probe_factory(factory: Callable[..., logging.LogRecord]) -> None:
    global _bare_factory
    _bare_factory = False  # ours, if reached, notes it and stops there; _install() resets this
    inside, _in_hook.factory = _in_hook.factory, True
    try:
        factory(__name__, logging.DEBUG, __file__, 0, "steptrace install probe", (), None)
    finally:
        _in_hook.factory = inside


def _probe_make_record(make_record: Any) -> None:
    global _bare_make_record
    _bare_make_record = False
    inside, _in_hook.make_record = _in_hook.make_record, True
    try:
        make_record(
            logging.getLogger(__name__),
            __name__,
            logging.DEBUG,
            __file__,
            0,
            "steptrace install probe",
            (),
            None,
        )
    finally:
        _in_hook.make_record = inside


def _reaches_ours(probe: Callable[[Any], None], hook: Any) -> bool:
    """Whether calling ``hook`` (another library's, on top) calls ours: one record is made through
    it, on this thread only, and goes to no handler. A hook that fails on it is wrapped again; the
    re-entry guard in our hooks keeps even a wrong answer from recursing."""
    _in_hook.reached = False
    try:
        probe(hook)
    except Exception:
        pass  # it raises on every record then, with or without us; ``reached`` still tells
    finally:
        reached, _in_hook.reached = _in_hook.reached, False
    return reached


def uninstall() -> None:
    """Put logging back as it was (``Telemetry.shutdown()``). A hook another library wrapped since
    stays in its chain, passing records through, and is found there by the next configure()."""
    global _settings
    _settings = None
    _refresh()
    if _test_sink is not None:
        return
    with _install_lock:
        if logging.getLogRecordFactory() is _record_factory:
            logging.setLogRecordFactory(_factory)
        if logging.Logger.makeRecord is _make_record:
            logging.Logger.makeRecord = _previous_make_record or _ORIGINAL_MAKE_RECORD  # type: ignore[method-assign]


def structlog_processor(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """A structlog processor adding ``run_id``, ``step``, ``trace_id``, ``span_id`` inside a run.

    Outside a run it adds nothing (structlog has no format string to fail). Keys the event
    already has are kept::

        structlog.configure(processors=[steptrace.structlog_processor, structlog.dev.ConsoleRenderer()])
    """
    try:
        found = correlation()
    except Exception as exc:
        report_internal_error("structlog processor", exc)
        return event_dict
    if found is not None:
        run, step, trace_id, span_id = found
        event_dict.setdefault("run_id", run.run_id)
        event_dict.setdefault("step", step)
        event_dict.setdefault("trace_id", trace_id)
        event_dict.setdefault("span_id", span_id)
    return event_dict
