"""Captured content: make any Python value safe, redacted, bounded JSON text — without ever raising.

Tool arguments and results arrive as arbitrary objects: cycles, raising ``__repr__``, invalid
bytes, lone surrogates, NaN, huge integers, 10,000-deep nesting, 50 MB strings. Each becomes JSON
that every backend accepts, with secrets replaced and a size bound, before it reaches a span.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from steptrace._redaction import Redactor

DEFAULT_MAX_CONTENT_BYTES = 8 * 1024
_MAX_DEPTH = 32
_MAX_NODES = 5_000
_MAX_ITEMS_PER_CONTAINER = 1_000
_MAX_REPR_CHARS = 1_000
# Redaction runs on a window a little larger than what is kept, so a secret straddling the cut
# is still recognised whole and no prefix of it survives truncation.
_REDACTION_MARGIN_CHARS = 8_192


def truncation_marker(original_length: int) -> str:
    return f"...[truncated: {original_length} chars]"


def bounded_repr(value: object, limit: int = _MAX_REPR_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters; a raising ``__repr__`` gives a placeholder."""
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"
    if not isinstance(text, str):
        return f"<unrepresentable {type(value).__qualname__}>"
    if len(text) > limit:
        return text[:limit] + truncation_marker(len(text))
    return text


def make_utf8_safe(text: str) -> str:
    """Replace lone surrogates, which no UTF-8 encoder (nor OTLP's protobuf) accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class _Walk:
    """One pass over a value producing JSON-safe data; bounded in depth, nodes and size."""

    __slots__ = ("nodes_left", "redactor", "string_limit")

    def __init__(self, redactor: Redactor | None, string_limit: int) -> None:
        self.redactor = redactor
        self.string_limit = string_limit
        self.nodes_left = _MAX_NODES

    def text(self, value: str) -> str:
        limit = self.string_limit
        if len(value) > limit + _REDACTION_MARGIN_CHARS:
            window = value[: limit + _REDACTION_MARGIN_CHARS]
            if self.redactor is not None:
                window = self.redactor.redact_text(window)
            return make_utf8_safe(window[:limit]) + truncation_marker(len(value))
        if self.redactor is not None:
            value = self.redactor.redact_text(value)
        if len(value) > limit:
            value = value[:limit] + truncation_marker(len(value))
        return make_utf8_safe(value)

    def value(self, value: Any, depth: int, path: set[int]) -> Any:
        self.nodes_left -= 1
        if self.nodes_left < 0:
            return "[truncated: too many values]"
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int):
            if -(2**63) <= value < 2**63:
                return int(value)
            return f"[int: {value.bit_length()} bits]"
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value[: self.string_limit])
            return self.text(raw.decode("utf-8", "replace")) + (
                truncation_marker(len(value)) if len(value) > self.string_limit else ""
            )
        if depth >= _MAX_DEPTH:
            return "[truncated: nested too deep]"
        identity = id(value)
        if identity in path:
            return "[cycle]"
        if isinstance(value, Mapping):
            path.add(identity)
            try:
                return self.mapping(value, depth, path)
            finally:
                path.discard(identity)
        if isinstance(value, (list, tuple, set, frozenset)):
            path.add(identity)
            try:
                out: list[Any] = []
                for index, item in enumerate(value):
                    if index >= _MAX_ITEMS_PER_CONTAINER:
                        out.append(f"[truncated: {len(value)} items]")
                        break
                    out.append(self.value(item, depth + 1, path))
                return out
            finally:
                path.discard(identity)
        converted = _as_plain_data(value)
        if converted is not None:
            path.add(identity)
            try:
                return self.value(converted, depth + 1, path)
            finally:
                path.discard(identity)
        return self.text(bounded_repr(value))

    def mapping(self, value: Mapping[Any, Any], depth: int, path: set[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            items = list(value.items())
        except Exception:
            return {"[unreadable mapping]": bounded_repr(value)}
        for index, (key, item) in enumerate(items):
            if index >= _MAX_ITEMS_PER_CONTAINER:
                out["[truncated]"] = f"{len(items)} items"
                break
            name = key if isinstance(key, str) else bounded_repr(key, 200)
            name = make_utf8_safe(name)
            if self.redactor is not None:
                kind = self.redactor.sensitive_key_kind(name)
                if kind is not None and item is not None:
                    out[name] = f"[REDACTED:{kind}]"
                    continue
            out[name] = self.value(item, depth + 1, path)
        return out


def _as_plain_data(value: Any) -> Any:
    """Structured objects users pass around (pydantic models, dataclasses) as plain data."""
    try:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        dump = getattr(type(value), "model_dump", None)
        if callable(dump):
            return dump(value, mode="python")
    except Exception:
        return None
    return None


class ContentPolicy:
    """Whether content is captured, and how captured values are redacted and bounded."""

    __slots__ = ("capture", "max_bytes", "redactor")

    def __init__(
        self,
        capture: bool,
        redactor: Redactor | None = None,
        max_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
    ) -> None:
        self.capture = capture
        self.redactor = redactor if redactor is not None else Redactor()
        self.max_bytes = max_bytes

    def to_json(self, value: Any) -> str:
        """Redacted, bounded JSON text for ``value``; never raises."""
        try:
            if self.redactor.has_user_callable:
                value = self.redactor.apply_user_callable(value)
            data = _Walk(self.redactor, self.max_bytes).value(value, 0, set())
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        except Exception as exc:  # a bug here must not lose the record, nor leak the raw value
            text = json.dumps(f"[unencodable: {type(exc).__name__}]")
        if len(text) > self.max_bytes:
            text = json.dumps(text[: self.max_bytes] + truncation_marker(len(text)))
        return text


def _hash_default(value: Any) -> Any:
    return bounded_repr(value)


def arguments_hash(arguments: Any) -> str:
    """A stable short hash of the canonical JSON of tool arguments: equal hashes, repeated call."""
    try:
        canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=_hash_default)
    except Exception:  # cycles, unsortable keys, NaN-free edge cases: hash the safe form instead
        safe = _Walk(None, 1 << 20).value(arguments, 0, set())
        canonical = json.dumps(safe, sort_keys=True, separators=(",", ":"))
    digest = hashlib.blake2b(canonical.encode("utf-8", "replace"), digest_size=8)
    return digest.hexdigest()
