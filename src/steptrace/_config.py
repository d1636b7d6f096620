"""``configure()``: where telemetry goes (OTLP, the JSONL step log, both), and what it captures.

Every bad setting raises ``ConfigError`` here, at start-up, never later on the hot path. Calling
configure() again replaces the previous configuration: its exporters are flushed and detached,
and functions decorated earlier use the new one.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import ProxyTracerProvider, TracerProvider

from steptrace import _state
from steptrace._content import DEFAULT_MAX_CONTENT_BYTES, ContentPolicy
from steptrace._errors import ConfigError
from steptrace._guards import GuardPolicy, Guards, OnGuard, check_on_guard
from steptrace._jsonl import JsonlSpanExporter
from steptrace._logs import LogSettings, configure_logs, parse_capture_logs
from steptrace._logs import uninstall as uninstall_log_hooks
from steptrace._metrics import Instruments
from steptrace._processors import Delegates, SteptraceSpanProcessor
from steptrace._redaction import Redactor
from steptrace._settings import env_flag, sdk_disabled
from steptrace.export import OtlpSettings, make_metric_reader, make_span_processor
from steptrace.export.otlp_logs import OtlpLogs
from steptrace.export.rotation import RotationSettings

logger = logging.getLogger("steptrace")

DEFAULT_JSONL_PATH = Path("steptrace-logs") / "steps.jsonl"

_lock = threading.Lock()
_current: Telemetry | None = None
_atexit_registered = False


class CaptureOverride:
    """Where configure() sends telemetry while a test fixture captures it (``steptrace.testing``).

    While one is set, every configure() call uses its providers and step log, exports nothing over
    OTLP, and takes its capture default; the caller's other settings (redaction, sizes) still apply.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        jsonl_path: Path,
        capture_content: bool = True,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.jsonl_path = jsonl_path
        self.capture_content = capture_content


_override: CaptureOverride | None = None


def set_capture_override(override: CaptureOverride | None) -> None:
    """Make configure() keep ``override``'s providers and step log (None: back to normal)."""
    global _override
    _override = override


class Telemetry:
    """The handle configure() returns: flush and shut down what it set up."""

    def __init__(
        self,
        *,
        enabled: bool,
        service_name: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        jsonl_path: Path | None = None,
        rotation: RotationSettings | None = None,
        otlp: OtlpSettings | None = None,
        capture_content: bool = False,
        delegates: Delegates | None = None,
        switch: SteptraceSpanProcessor | None = None,
        owned_meter_provider: SdkMeterProvider | None = None,
        logs: LogSettings | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self.enabled = enabled
        self.service_name = service_name
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.jsonl_path = jsonl_path
        self.rotation = rotation
        self.otlp = otlp
        self.capture_content = capture_content
        self._delegates = delegates
        self._switch = switch
        self._owned_meter_provider = owned_meter_provider
        self._logs = logs
        self._instruments = instruments
        self._closed = False

    @property
    def dropped_measurements(self) -> int:
        """Histogram measurements dropped because too many waited for a metric collection.

        steptrace's histograms hold measurements until a metric reader collects; past 65,536
        waiting in one histogram after a collection has come, further ones are dropped, counted
        here and warned about once per streak. The count covers every configuration on the same
        MeterProvider (they share its histograms); 0 when tracing is disabled.
        """
        instruments = self._instruments
        return instruments.dropped_measurements if instruments is not None else 0

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send everything pending; False if an exporter failed since the last flush."""
        if not self.enabled or self._closed:
            return True
        ok = True
        if self._delegates is not None:
            ok = self._delegates.force_flush(timeout_millis)
        if self._owned_meter_provider is not None:
            try:
                ok = self._owned_meter_provider.force_flush(timeout_millis) and ok
            except Exception:
                ok = False
        otlp_logs = self._logs.otlp if self._logs is not None else None
        if otlp_logs is not None:
            try:
                ok = otlp_logs.force_flush(timeout_millis) and ok
            except Exception:
                ok = False
        return ok

    def shutdown(self) -> None:
        """Flush and close this configuration's exporters; steptrace then traces nothing new.

        A span started before and ended later (another thread, the program exiting) still gets
        its step record, and with OTLP on is counted and spilled."""
        global _current
        with _lock:
            if _current is self:
                _state.set_active(None)
                _current = None
                _configure_rerun(False, None, None)
                # Only here: at exit, logging.shutdown() may still format records with %(run_id)s.
                uninstall_log_hooks()
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._logs is not None:
            self._logs.close()
        # Flush and shut down while still attached, and stay attached until the next configure():
        # a span started before and ending meanwhile or later (another thread, the program
        # exiting) gets its step record and is counted and spilled by the closed OTLP processor,
        # never silently lost.
        if self._delegates is not None:
            self._delegates.close()
            self._delegates.force_flush(5_000)
            self._delegates.shutdown()
        if self._owned_meter_provider is not None:
            try:
                self._owned_meter_provider.shutdown(timeout_millis=5_000)
            except Exception:
                logger.debug("steptrace: meter provider shutdown failed", exc_info=True)

    def __repr__(self) -> str:
        where = []
        if self.otlp is not None:
            where.append(f"otlp={self.otlp.traces_endpoint} ({self.otlp.protocol})")
        if self.jsonl_path is not None:
            where.append(f"jsonl={self.jsonl_path}")
        state = "enabled" if self.enabled else "disabled"
        return f"<steptrace.Telemetry {self.service_name!r} {state} {' '.join(where)}>"


def _default_service_name() -> str:
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    return script if script and script not in ("-c", "-m") else "unknown_service"


def _resolve_jsonl_path(
    jsonl_path: str | os.PathLike[str] | bool | None, otlp: OtlpSettings | None
) -> Path | None:
    if jsonl_path is False:
        return None
    if jsonl_path is None or jsonl_path is True:
        from_env = os.environ.get("STEPTRACE_JSONL_PATH")
        if from_env:
            return Path(from_env)
        if otlp is None or jsonl_path is True:
            return DEFAULT_JSONL_PATH
        return None
    return Path(jsonl_path)


def _open_step_log(path: Path, rotation: RotationSettings) -> JsonlSpanExporter:
    if path.is_dir() or str(path).endswith(os.sep):
        path = path / "steps.jsonl"
    try:
        return JsonlSpanExporter(path, max_bytes=rotation.max_bytes, backups=rotation.backups)
    except OSError as exc:
        raise ConfigError(f"cannot write the step log at {path}: {exc.strerror or exc}") from exc


def _warn_if_renamed(provider: TracerProvider, name: str, *, renamed_metrics: bool) -> None:
    """Say once, for this configure(), that its spans keep the first service name."""
    old = getattr(provider, "resource", Resource.get_empty()).attributes.get("service.name")
    if old is None or old == name:
        return
    logger.warning(
        "steptrace: configure(service_name=%r) cannot rename this process's spans: they keep "
        "service.name=%r, because OpenTelemetry fixes the global TracerProvider's resource when "
        "it is first set. %sSet the name in the first configure() (or OTEL_SERVICE_NAME).",
        name,
        old,
        f"Its metrics use {name!r}. " if renamed_metrics else "",
    )


def _attach_processor(provider: TracerProvider) -> SteptraceSpanProcessor:
    """The one steptrace processor on ``provider``, added the first time."""
    existing = getattr(provider, "_steptrace_processor", None)
    if isinstance(existing, SteptraceSpanProcessor):
        return existing
    if not isinstance(provider, SdkTracerProvider):
        raise ConfigError(
            f"tracer_provider must be an opentelemetry-sdk TracerProvider, not {type(provider).__name__}"
        )
    processor = SteptraceSpanProcessor()
    provider.add_span_processor(processor)
    provider._steptrace_processor = processor  # type: ignore[attr-defined]
    return processor


def configure(
    service_name: str | None = None,
    *,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    otlp_headers: dict[str, str] | None = None,
    jsonl_path: str | os.PathLike[str] | bool | None = None,
    jsonl_max_bytes: int | None = None,
    jsonl_backups: int | None = None,
    capture_content: bool | None = None,
    redact_patterns: Sequence[str | re.Pattern[str]] = (),
    redact: Callable[[Any], Any] | None = None,
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
    record_for_rerun: bool | None = None,
    record_cost: bool | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    correlate_logs: bool | None = None,
    capture_logs: bool | str | int | None = None,
    guards: Guards | None = None,
    on_guard: OnGuard | None = None,
) -> Telemetry:
    """Set up steptrace; returns a handle with ``force_flush() -> bool`` and ``shutdown()``.

    - OTLP traces and metrics go to ``otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the
      per-signal variables), over ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` by default, or
      ``http/protobuf``).
    - The JSONL step log goes to ``jsonl_path`` or ``STEPTRACE_JSONL_PATH``; without an OTLP
      endpoint it defaults to ``./steptrace-logs/steps.jsonl``. ``jsonl_path=False`` turns it off.
      Past ``jsonl_max_bytes`` (``STEPTRACE_JSONL_MAX_BYTES``, default 100 MiB, 0: never) it is
      rotated to ``steps.<UTC time>.jsonl.gz``, keeping ``jsonl_backups`` of them
      (``STEPTRACE_JSONL_BACKUPS``, default 5); the OTLP spill file rotates the same way.
    - ``capture_content`` (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) defaults to on
      in JSONL-only development, off when exporting OTLP. Captured values are always redacted
      (built-in detectors, ``redact_patterns``, the ``redact`` callable) and cut at
      ``max_content_bytes``.
    - An SDK TracerProvider/MeterProvider already installed globally is extended, not replaced;
      or pass ``tracer_provider=``/``meter_provider=``.
    - ``record_for_rerun`` (``STEPTRACE_RECORD_FOR_RERUN``, off by default: it stores content)
      keeps a full-fidelity recording of each run for ``steptrace.rerun`` in
      ``<log dir>/rerun/<run_id>.jsonl`` (mode 0600), redacted like the step log.
    - ``record_cost`` (``STEPTRACE_RECORD_COST``, off by default) prices each model call with
      genai-prices (the ``cost`` extra; its bundled data, no network) and puts the USD figure on
      the ``llm_request`` span (``steptrace.llm.cost_usd``) and its step record (``cost_usd``),
      for backends that show cost. The analysis prices logs either way.
    - ``correlate_logs`` (``STEPTRACE_CORRELATE_LOGS``, on by default) gives every stdlib log
      record ``run_id``, ``step`` (agent step number), ``trace_id`` and ``span_id`` attributes,
      empty outside a run, for ``%(run_id)s`` in a format string.
    - ``capture_logs`` (``STEPTRACE_CAPTURE_LOGS``, off by default; ``True`` or a level such as
      ``"WARNING"``) writes the log records made inside a run into the step log as
      ``type: "log"`` records, redacted and bounded like error messages. With an OTLP endpoint
      and ``OTEL_LOGS_EXPORTER`` not ``none``, log records made inside runs are also exported
      as OTLP logs (whatever ``capture_logs`` says).
    - ``guards=steptrace.Guards(repeat_calls=3, max_steps=30, max_tokens=200_000,
      max_cost_usd=0.50)`` (``STEPTRACE_GUARD_REPEAT_CALLS``, ``_MAX_STEPS``, ``_MAX_TOKENS``,
      ``_MAX_COST_USD``; off by default) limits every run; ``agent_run(guards=...)`` overrides
      them for one run. A trip records a ``guard`` event; ``on_guard`` says what else happens:
      ``"raise"`` (the default) raises ``LoopDetected``, ``StepLimit``, ``TokenLimit`` or
      ``BudgetExceeded`` from the call site before the call starts, ``"warn"`` logs a warning and
      lets the run go on, and a callable receives the ``GuardEvent`` and returns whether to raise
      (an exception it raises itself is raised from the call site instead).
    - ``OTEL_SDK_DISABLED=true`` makes every steptrace call a cheap no-op.
    """
    global _current, _atexit_registered
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or _default_service_name()
    if sdk_disabled():
        telemetry = Telemetry(enabled=False, service_name=name)
        with _lock:
            previous, _current = _current, telemetry
            _state.set_active(None, disabled=True)
            _configure_rerun(False, None, None)
            # Runs keep their id without tracing; a format naming %(run_id)s must still find it.
            configure_logs(LogSettings(correlate=correlate_logs is not False))
        if previous is not None:
            previous._close()
        return telemetry

    if max_content_bytes < 64:
        raise ConfigError(f"max_content_bytes={max_content_bytes} is too small (at least 64)")
    otlp = OtlpSettings.from_env(otlp_endpoint, otlp_protocol, otlp_headers)
    override = _override
    if override is not None:  # a test fixture is capturing: keep its providers, stay off the network
        otlp, jsonl_path = None, override.jsonl_path
        tracer_provider, meter_provider = override.tracer_provider, override.meter_provider
        if capture_content is None:  # the environment variable still decides, as without the fixture
            flag = env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
            capture_content = override.capture_content if flag is None else flag
    path = _resolve_jsonl_path(jsonl_path, otlp)
    rotation = RotationSettings.resolve(jsonl_max_bytes, jsonl_backups)
    if correlate_logs is None:
        flag = env_flag("STEPTRACE_CORRELATE_LOGS")
        correlate_logs = True if flag is None else flag
    if capture_logs is None:
        capture_level = parse_capture_logs(os.environ.get("STEPTRACE_CAPTURE_LOGS"), "STEPTRACE_CAPTURE_LOGS")
    else:
        capture_level = parse_capture_logs(capture_logs)
    otlp_logs = (
        OtlpLogs.from_env(otlp, protocol=otlp_protocol, headers=otlp_headers, service_name=name)
        if otlp is not None
        else None
    )
    if otlp is not None:
        spill = (path.parent if path is not None else DEFAULT_JSONL_PATH.parent) / "otlp-spill.jsonl"
        otlp = dataclasses.replace(otlp, spill_path=spill, spill_rotation=rotation)
    if capture_content is None:
        flag = env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        capture_content = flag if flag is not None else otlp is None
    try:
        redactor = Redactor(redact_patterns, redact)
    except re.error as exc:
        raise ConfigError(f"a redact_patterns entry is not a valid regular expression: {exc}") from exc
    except TypeError as exc:  # a bytes pattern, a non-pattern entry, a non-callable redact=
        raise ConfigError(str(exc)) from exc

    guard_policy = _guard_policy(guards, on_guard)
    if record_for_rerun is None:
        record_for_rerun = bool(env_flag("STEPTRACE_RECORD_FOR_RERUN"))
    if record_cost is None:
        record_cost = bool(env_flag("STEPTRACE_RECORD_COST"))
    if record_cost:
        from steptrace._pricing import warm_up_runtime_pricing

        # Load the price data now, at startup, not inside the first model call.
        record_cost = warm_up_runtime_pricing()
    step_log = _open_step_log(path, rotation) if path is not None else None
    try:
        processors = [make_span_processor(otlp)] if otlp is not None and otlp.export_traces else []
        resource = Resource.create({"service.name": name})
        provider = tracer_provider
        if provider is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, ProxyTracerProvider):
                provider = SdkTracerProvider(resource=resource)
                provider._steptrace_owned = True  # type: ignore[attr-defined]
                trace.set_tracer_provider(provider)
        switch = _attach_processor(provider)

        owned_meter_provider: SdkMeterProvider | None = None
        meters = meter_provider
        if meters is None:
            meters = metrics.get_meter_provider()
            # A provider an earlier configure() made is shut down with that configuration (and
            # the global one cannot be replaced): this one makes its own, with its service name.
            earlier = getattr(meters, "_steptrace_owned", False)
            renew = earlier or not isinstance(meters, SdkMeterProvider)
            if otlp is not None and otlp.export_metrics and renew:
                owned_meter_provider = SdkMeterProvider(
                    resource=resource, metric_readers=[make_metric_reader(otlp)]
                )
                owned_meter_provider._steptrace_owned = True  # type: ignore[attr-defined]
                meters = owned_meter_provider
                if type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
                    metrics.set_meter_provider(owned_meter_provider)
            elif earlier:
                meters = NoOpMeterProvider()
        if tracer_provider is None and getattr(provider, "_steptrace_owned", False):
            _warn_if_renamed(provider, name, renamed_metrics=owned_meter_provider is not None)
    except Exception:
        if step_log is not None:
            step_log.shutdown()
        raise

    delegates = Delegates(step_log, processors)
    content = ContentPolicy(capture_content, redactor, max_content_bytes)
    active = _state.make_active_config(provider, meters, content, record_cost, guard_policy)
    logs = LogSettings(
        correlate=correlate_logs,
        capture_level=capture_level,
        step_log=step_log,
        content=content,
        otlp=otlp_logs,
    )
    telemetry = Telemetry(
        enabled=True,
        service_name=name,
        tracer_provider=provider,
        meter_provider=meters,
        jsonl_path=step_log.path if step_log is not None else None,
        rotation=rotation,
        otlp=otlp,
        capture_content=capture_content,
        delegates=delegates,
        switch=switch,
        owned_meter_provider=owned_meter_provider,
        logs=logs,
        instruments=active.instruments,
    )
    with _lock:
        previous, _current = _current, telemetry
        old_delegates = switch.delegates
        switch.delegates = delegates
        _state.set_active(active)
        log_dir = step_log.path.parent if step_log is not None else DEFAULT_JSONL_PATH.parent
        _configure_rerun(record_for_rerun, log_dir, content)
        configure_logs(logs)
        if not _atexit_registered:
            atexit.register(_flush_at_exit)
            _atexit_registered = True
    if previous is not None:
        previous._close()
    elif old_delegates.step_log is not None or old_delegates.processors:
        old_delegates.shutdown()
    return telemetry


def _guard_policy(guards: Guards | None, on_guard: OnGuard | None) -> GuardPolicy | None:
    """The configured guards (the argument, else the STEPTRACE_GUARD_* variables), or None."""
    if guards is None:
        guards = Guards.from_env()
    elif not isinstance(guards, Guards):
        raise ConfigError(f"guards= takes a steptrace.Guards, not {type(guards).__name__}")
    action = check_on_guard(on_guard) if on_guard is not None else "raise"
    if (guards is None or not guards.enabled) and on_guard is None:
        return None
    guards = guards or Guards()
    if guards.max_cost_usd is not None:
        from steptrace._pricing import cost_available, warm_up_runtime_pricing

        if not cost_available():
            raise ConfigError(
                "Guards(max_cost_usd=...) prices model calls with genai-prices: pip install 'steptrace[cost]'"
            )
        warm_up_runtime_pricing()  # load the price data now, not inside the first model call
    return GuardPolicy(guards, action)


def _configure_rerun(record: bool, directory: Path | None, content: ContentPolicy | None) -> None:
    """Recording for ``steptrace.rerun`` on or off; a rerun asked for by ``steptrace rerun``."""
    from steptrace.rerun import RecordingNotFound, start_from_environment
    from steptrace.rerun._codec import recording_policy
    from steptrace.rerun._hook import set_recording

    if record and directory is not None and content is not None:
        set_recording(directory, recording_policy(content.redactor))
    else:
        set_recording(None, None)
    if content is not None:
        try:
            start_from_environment()
        except (RecordingNotFound, OSError) as exc:
            raise ConfigError(f"STEPTRACE_RERUN: {exc}") from exc


def _flush_at_exit() -> None:
    telemetry = _current
    if telemetry is not None:
        telemetry._close()


def current_telemetry() -> Telemetry | None:
    """The configuration in force, if configure() was called."""
    return _current


def reset_for_tests() -> None:
    """Forget any configuration (the testing plugin uses it between tests)."""
    global _current
    with _lock:
        previous, _current = _current, None
        _state.set_active(None)
        _configure_rerun(False, None, None)
        uninstall_log_hooks()
    if previous is not None:
        previous._close()
