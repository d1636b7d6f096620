"""Reading steptrace's settings from the standard OpenTelemetry environment variables."""

from __future__ import annotations

import os

from steptrace._errors import ConfigError

_TRUE = {"1", "true", "yes", "on", "span_only", "span_and_event", "event_only"}
_FALSE = {"0", "false", "no", "off", "no_content", "none", ""}


def parse_flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def env_flag(name: str) -> bool | None:
    """The variable as a boolean, or None when unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    return parse_flag(name, value)


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def capture_content_from_env(default: bool) -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``, or ``default`` when unset/invalid."""
    try:
        flag = env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    except ConfigError:
        return default
    return default if flag is None else flag
