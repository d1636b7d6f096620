"""Folding the OpenTelemetry SDK exporters' per-attempt log lines while *our* threads export.

The SDK exporters log one line per failed attempt and per retry. On our export threads those
records are collected (they become the reason in our single warning per outage); records the
same loggers make on other threads pass untouched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_SDK_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",  # the logs signal (otlp_logs)
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
)


class _Quiet(threading.local):
    def __init__(self) -> None:
        self.active = False
        self.messages: list[str] = []
        self.on_record: Callable[[str], None] | None = None


_quiet = _Quiet()


class _FoldSdkExporterLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _quiet.active:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break logging
            message = str(record.msg)
        if len(_quiet.messages) < 8:
            _quiet.messages.append(message)
        if _quiet.on_record is not None:  # the exporter complains: it failed once, and retries
            _quiet.on_record(message)
        return False


_fold_filter = _FoldSdkExporterLogs()
for _name in _SDK_EXPORTER_LOGGERS:
    logging.getLogger(_name).addFilter(_fold_filter)


@contextmanager
def sdk_logs_folded(on_record: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Swallow the SDK exporters' log records made on this thread; yield what they said.

    ``on_record`` is called at each record: a healthy export logs nothing, so the first record
    means the exporter is failing and is about to spend its timeout retrying.
    """
    outer = (_quiet.active, _quiet.messages, _quiet.on_record)  # nested: restored at the end
    _quiet.active = True
    _quiet.messages = []
    _quiet.on_record = on_record
    try:
        yield _quiet.messages
    finally:
        _quiet.active, _quiet.messages, _quiet.on_record = outer


def failure_reason(messages: list[str]) -> str:
    """What the SDK exporter said first (the cause) and last (its verdict), bounded."""
    if not messages:
        return "no reason given"
    said = [text if len(text) <= 200 else text[:200] + "..." for text in messages]
    return " / ".join(dict.fromkeys((said[0], said[-1])))
