"""How recorded values are written and rebuilt: redacted as in the step log, typed where possible.

A recorded value is one of ``{"json": value}`` (plain data, returned as dicts/lists/str/numbers),
``{"sdk": "module:Qualname", "data": {...}}`` (a pydantic object such as an SDK response, rebuilt
as that type) or ``{"unreplayable": "why"}`` (over 1 MiB, or not encodable). An exception is
``{"type": "module:Qualname", "name": "ValueError", "message": "..."}``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from typing import Any

from steptrace._content import ContentPolicy
from steptrace._redaction import Redactor
from steptrace._spans import error_type_name

MAX_VALUE_BYTES = 1024 * 1024
_CUT_MARK = "...[truncated: "
_UNENCODABLE = '"[unencodable: '


def recording_policy(redactor: Redactor) -> ContentPolicy:
    """The step log's redaction (same detectors, patterns, ``redact`` callable), 1 MiB per value."""
    return ContentPolicy(True, redactor, MAX_VALUE_BYTES)


def type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_pydantic(value: Any) -> bool:
    cls = type(value)
    return callable(getattr(cls, "model_dump", None)) and callable(getattr(cls, "model_validate", None))


def to_plain(policy: ContentPolicy, value: Any) -> tuple[Any, str | None]:
    """(the redacted JSON value, None) or (None, why it cannot be replayed)."""
    text = policy.to_json(value)
    if text.startswith(_UNENCODABLE):
        return None, "the value could not be encoded"
    if _CUT_MARK in text and len(text.encode("utf-8", "replace")) >= MAX_VALUE_BYTES // 2:
        return None, "the value is over 1 MiB"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "the value could not be encoded"


def encode_value(policy: ContentPolicy, value: Any) -> dict[str, Any]:
    """A recorded value (see the module docstring)."""
    try:
        if _is_pydantic(value) and not isinstance(value, type):
            data, why = to_plain(policy, value.model_dump(mode="json"))
            if why is None:
                return {"sdk": type_path(type(value)), "data": data}
            return {"unreplayable": why}
        data, why = to_plain(policy, value)
    except Exception as exc:  # never fail the user's call because of the recording
        return {"unreplayable": f"the value could not be encoded ({type(exc).__name__})"}
    if why is not None:
        return {"unreplayable": why}
    return {"json": data}


def unreplayable(recorded: Any) -> str | None:
    """Why a recorded value cannot be served, or None."""
    if isinstance(recorded, dict):
        why = recorded.get("unreplayable")
        return str(why) if why is not None else None
    return None


def _import(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def decode_value(recorded: Any) -> Any:
    """The value a rerun returns for a recorded value (the SDK type for ``sdk`` values)."""
    if not isinstance(recorded, dict):
        return recorded
    if "json" in recorded:
        return recorded["json"]
    path, data = recorded.get("sdk"), recorded.get("data")
    if isinstance(path, str):
        try:
            cls = _import(path)
        except (ImportError, AttributeError):
            return data
        try:
            return cls.model_validate(data)
        except Exception:
            try:
                return cls.model_construct(**data) if isinstance(data, dict) else data
            except Exception:
                return data
    return recorded


def encode_error(policy: ContentPolicy, exc: BaseException) -> dict[str, Any]:
    try:
        message = str(exc)
    except Exception:
        message = ""
    message = policy.redactor.redact_message(message, 64 * 1024)
    return {"type": type_path(type(exc)), "name": error_type_name(exc), "message": message}


class _RecordedError(Exception):
    """Stands in for a recorded exception whose class cannot be imported here."""


def decode_error(recorded: dict[str, Any]) -> BaseException:
    """The recorded exception, rebuilt: its type (when importable) and its message."""
    message = str(recorded.get("message", ""))
    path = recorded.get("type")
    cls: Any = None
    if isinstance(path, str):
        try:
            cls = _import(path)
        except (ImportError, AttributeError):
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        name = str(recorded.get("name") or "RecordedError").rsplit(".", 1)[-1]
        cls = type(name, (_RecordedError,), {"__module__": "steptrace.rerun"})
    try:
        error: BaseException = cls(message)
        if str(error) == message or not message:
            return error
    except Exception:
        pass
    # Classes whose constructor wants more (an SDK's HTTP errors): same type, same message.
    error = cls.__new__(cls)
    BaseException.__init__(error, message)
    if hasattr(cls, "message") or "APIError" in {c.__name__ for c in cls.__mro__}:
        with contextlib.suppress(Exception):
            error.message = message  # type: ignore[attr-defined]
    return error
