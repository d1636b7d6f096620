"""Captured content: make any Python value safe, redacted, bounded JSON text — without ever raising.

Tool arguments and results arrive as arbitrary objects: cycles, raising ``__repr__``, invalid
bytes, lone surrogates, NaN, huge integers, 10,000-deep nesting, 50 MB strings. Each becomes JSON
that every backend accepts, with secrets replaced and a size bound, before it reaches a span.
The pipeline is: the user's ``redact=`` callable, then one bounded walk that sanitises, redacts
(text detectors, sensitive keys) and truncates, then JSON text.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import json
import math
import re
import types
import uuid
from collections import UserString
from collections.abc import Mapping, Sequence, Set
from pathlib import PurePath
from typing import Any

from steptrace._redaction import (
    REDACTION_MARGIN_CHARS,
    Redactor,
    all_keys_plain,
    is_card_number,
    marker,
    may_hold_secret,
    secret_forms,
    sensitive_key_kind,
)

DEFAULT_MAX_CONTENT_BYTES = 8 * 1024
_MAX_DEPTH = 32
_MAX_NODES = 5_000
_MAX_ITEMS_PER_CONTAINER = 1_000
_MAX_REPR_CHARS = 1_000
_MAX_KEY_CHARS = 256
# Integers beyond 64 bits are kept as decimal text up to this size, then summarised.
_MAX_INT_BITS = 1_024
CARD_DIGITS_FIRST = "23456"  # card networks' first digits; spares ns timestamps and snowflake ids


def truncation_marker(original_length: int) -> str:
    return f"...[truncated: {original_length} chars]"


def bounded_repr(value: object, limit: int = _MAX_REPR_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters; a raising ``__repr__`` gives a placeholder."""
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {_type_name(value)}>"
    if not isinstance(text, str):
        return f"<unrepresentable {_type_name(value)}>"
    if len(text) > limit:
        return text[:limit] + truncation_marker(len(text))
    return text


# A memory address in a repr (``<Client object at 0x7f22...>``, ``<function f at 0x...>``).
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def is_stable_repr(value: object) -> bool:
    """Whether ``repr(value)`` reads the same in every process (no memory address in it)."""
    text = bounded_repr(value)
    return not text.startswith("<unrepresentable ") and _ADDRESS.search(text) is None


def stable_text(value: object) -> str:
    """``repr(value)`` when it is the same in every process, else ``<TypeName>``: what an
    argument hash sees of an object (a client object, a function) it cannot compare."""
    return bounded_repr(value) if is_stable_repr(value) else f"<{_type_name(value)}>"


def _type_name(value: object) -> str:
    try:
        return type(value).__qualname__
    except Exception:
        return "object"


def make_utf8_safe(text: str) -> str:
    """Replace lone surrogates, which no UTF-8 encoder (nor OTLP's protobuf) accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class _Walk:
    """One pass over a value producing JSON-safe data; bounded in depth, nodes and total size.

    ``budget`` counts the characters emitted so far against the policy's size: once spent,
    strings are cut and containers end with a ``[truncated: ...]`` entry.
    """

    __slots__ = ("budget", "nodes_left", "redactor", "scan_text", "secrets", "stable", "string_limit")

    def __init__(
        self,
        redactor: Redactor | None,
        string_limit: int,
        scan_text: bool = True,
        secrets: Sequence[str] = (),
        stable: bool = False,
    ) -> None:
        self.redactor = redactor
        # True for hashing: an object is written as something the same in every process.
        self.stable = stable
        # False when a scan of the whole value found nothing any text detector could match.
        self.scan_text = scan_text and redactor is not None
        # Literal secret values to scrub from every string (a tool's secret-named arguments).
        self.secrets = secrets
        self.string_limit = string_limit
        self.budget = string_limit
        self.nodes_left = _MAX_NODES

    def text(self, value: str, original_length: int | None = None) -> str:
        """Redacted text cut to what the budget allows; ``original_length`` forces the marker."""
        length = len(value) if original_length is None else original_length
        limit = min(self.string_limit, self.budget)
        if limit <= 0:
            self.budget -= 30
            return f"[truncated: {length} chars]"
        if self.scan_text:
            value, cut = self.redactor.redact_prefix(value, limit, self.secrets)  # type: ignore[union-attr]
        else:
            cut = len(value) > limit
            value = value[:limit]
        if cut or original_length is not None:
            value += truncation_marker(length)
        value = make_utf8_safe(value)
        self.budget -= len(value) + 2
        return value

    def value(self, value: Any, depth: int, path: set[int]) -> Any:
        """``value`` as JSON-safe data; a value that cannot be read becomes a placeholder."""
        try:
            return self._convert(value, depth, path)
        except RecursionError:
            return "[truncated: nested too deep]"
        except Exception:
            return f"<unrepresentable {_type_name(value)}>"

    def _convert(self, value: Any, depth: int, path: set[int]) -> Any:
        self.nodes_left -= 1
        if self.nodes_left < 0:
            return "[truncated: too many values]"
        if value is None or isinstance(value, bool):
            self.budget -= 5
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int):
            return self.integer(int(value))
        if isinstance(value, float):
            self.budget -= 12
            if math.isfinite(value):
                return float(value)
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.binary(value)
        if isinstance(value, (datetime.date, datetime.time)):
            return self.text(value.isoformat())
        if isinstance(value, (uuid.UUID, PurePath, UserString)):
            return self.text(str(value))
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
        # Records before sequences: a NamedTuple is a tuple, but its field names decide redaction.
        converted = as_plain_data(value)
        if converted is not None:
            path.add(identity)
            try:
                return self.value(converted, depth + 1, path)
            finally:
                path.discard(identity)
        if self.stable and isinstance(value, Set):  # iteration order differs between processes
            value = sorted(value, key=bounded_repr)
        if isinstance(value, (list, tuple, Set)) or (
            isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))
        ):
            path.add(identity)
            try:
                return self.sequence(value, depth, path)
            finally:
                path.discard(identity)
        return self.text(stable_text(value) if self.stable else bounded_repr(value))

    def integer(self, value: int) -> int | str:
        if -(2**63) <= value < 2**63:
            if (
                self.redactor is not None
                and 10**12 <= abs(value) < 10**19
                and str(abs(value))[0] in CARD_DIGITS_FIRST
                and is_card_number(str(abs(value)))
            ):
                self.budget -= 24
                return marker("card-number")
            self.budget -= 20
            return value
        if value.bit_length() <= _MAX_INT_BITS:  # JSON numbers this long break most parsers
            return self.text(str(value))
        self.budget -= 20
        return f"[int: {value.bit_length()} bits]"

    def binary(self, value: bytes | bytearray | memoryview) -> str:
        """Bytes as text (invalid UTF-8 replaced), decoding only what can be kept."""
        view = memoryview(value).cast("B") if isinstance(value, memoryview) else value
        window = bytes(view[: self.string_limit + REDACTION_MARGIN_CHARS])
        truncated = len(view) > len(window)
        return self.text(window.decode("utf-8", "replace"), len(view) if truncated else None)

    def sequence(self, value: Any, depth: int, path: set[int]) -> list[Any]:
        out: list[Any] = []
        self.budget -= 2
        for index, item in enumerate(itertools.islice(value, _MAX_ITEMS_PER_CONTAINER + 1)):
            if index >= _MAX_ITEMS_PER_CONTAINER or self.budget <= 0:
                out.append(f"[truncated: {_size(value)} items]")
                break
            out.append(self.value(item, depth + 1, path))
        return out

    def mapping(self, value: Mapping[Any, Any], depth: int, path: set[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.budget -= 2
        try:
            items = list(itertools.islice(value.items(), _MAX_ITEMS_PER_CONTAINER + 1))
        except Exception:
            return {"[unreadable mapping]": self.text(bounded_repr(value))}
        for index, (key, item) in enumerate(items):
            if index >= _MAX_ITEMS_PER_CONTAINER or self.budget <= 0:
                out["[truncated]"] = f"{_size(value)} items"
                break
            name = self.key(key)
            if self.redactor is not None and item is not None:
                kind = self.redactor.sensitive_key_kind(name)
                if kind is not None:
                    out[name] = marker(kind)
                    self.budget -= 24
                    continue
            out[name] = self.value(item, depth + 1, path)
        return out

    def key(self, key: Any) -> str:
        """A mapping key as bounded, redacted text (secrets hide in keys too)."""
        if type(key) is str and self.redactor is not None and self.scan_text and not self.secrets:
            cached = self.redactor.key_cache.get(key)
            if cached is not None:
                self.budget -= len(cached) + 3
                return cached
        name = key if isinstance(key, str) else bounded_repr(key, _MAX_KEY_CHARS)
        if self.scan_text:
            name, cut = self.redactor.redact_prefix(name, _MAX_KEY_CHARS, self.secrets)  # type: ignore[union-attr]
        else:
            cut = len(name) > _MAX_KEY_CHARS
            name = name[:_MAX_KEY_CHARS]
        if cut:
            name += truncation_marker(len(key) if isinstance(key, str) else _MAX_KEY_CHARS)
        name = make_utf8_safe(name)
        self.budget -= len(name) + 3
        if (
            type(key) is str
            and self.redactor is not None
            and self.scan_text
            and not self.secrets
            and len(key) <= _CACHED_KEY_CHARS
        ):
            cache = self.redactor.key_cache
            if len(cache) >= _KEY_CACHE_SIZE:
                cache.clear()
            cache[key] = name
        return name


# Keys repeat (the same tool, the same fields): each redactor caches their redacted form.
_KEY_CACHE_SIZE = 4_096
_CACHED_KEY_CHARS = 64


def _size(value: Any) -> str:
    try:
        return str(len(value))
    except Exception:
        return "more"


def as_plain_data(value: Any) -> Any:
    """A record-like object as ``{field: value}`` (a pydantic model as its dump), else None.

    NamedTuples, dataclasses, attrs classes, msgspec Structs, pydantic models,
    ``SimpleNamespace`` and objects with ``_asdict()`` (database rows): their field names are
    what redaction of sensitive keys reads, so they are never flattened to bare values.
    """
    cls = type(value)
    if cls is list or cls is tuple or cls is dict or isinstance(value, type):
        return None
    try:
        if isinstance(value, tuple):  # NamedTuple / collections.namedtuple
            fields = getattr(cls, "_fields", None)
            if type(fields) is tuple and len(fields) == len(value):
                return dict(zip(fields, value, strict=True))
        if dataclasses.is_dataclass(value):
            return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        attributes = getattr(cls, "__attrs_attrs__", None)  # attrs classes
        if attributes is not None:
            return {a.name: getattr(value, a.name, None) for a in attributes}
        struct_fields = getattr(cls, "__struct_fields__", None)  # msgspec Structs
        if type(struct_fields) is tuple:
            return {name: getattr(value, name, None) for name in struct_fields}
        dump = getattr(cls, "model_dump", None)  # pydantic v2
        if callable(dump):
            return dump(value, mode="python")
        if isinstance(value, types.SimpleNamespace):
            return dict(vars(value))
        as_dict = getattr(value, "_asdict", None)
        if callable(as_dict):
            fields = as_dict()
            return fields if isinstance(fields, Mapping) else None
    except Exception:
        return None
    return None


# Reused encoders: json.dumps with options builds a new one on every call (~2 µs).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


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

    def to_json(self, value: Any, secrets: Sequence[str] = ()) -> str:
        """Redacted JSON text for ``value``, at most ``max_bytes`` UTF-8 bytes plus a marker; never raises.

        ``secrets``: literal values scrubbed wherever they occur (``secret_argument_values`` of
        the tool's arguments, so its result cannot repeat them).
        """
        try:
            if self.redactor.has_user_callable:
                value = self.redactor.apply_user_callable(value)
            plain, scan_text = self._probe(value, secrets)
            if plain is not None:
                return plain
            budget = self.max_bytes
            for _attempt in range(3):
                walk = _Walk(self.redactor, budget, scan_text, secrets)
                text = _COMPACT.encode(walk.value(value, 0, set()))
                size = len(text) if len(text) * 4 <= self.max_bytes else len(text.encode("utf-8"))
                if size <= self.max_bytes + 64:
                    return text
                # Escapes and multi-byte characters outran the character budget: walk again smaller.
                budget = max(16, budget * self.max_bytes // size * 9 // 10)
        except Exception as exc:  # a bug here must not lose the record, nor leak the raw value
            return _COMPACT.encode(f"[unencodable: {type(exc).__name__}]")
        # Still too big (mostly keys or markers): the redacted text itself, cut, as a string.
        data = text.encode("utf-8")[: self.max_bytes].decode("utf-8", "ignore")
        return _COMPACT.encode(data + truncation_marker(len(text)))

    def _probe(self, value: Any, secrets: Sequence[str] = ()) -> tuple[str | None, bool]:
        """(the final JSON, if ``value`` needs no walk at all; whether strings need scanning).

        Encoding plain JSON data once and scanning that text is much cheaper than the walk with
        its per-string detectors. The scan is a superset test: text it clears holds no secret any
        built-in detector finds (sensitive key names are among its triggers). With custom
        patterns, or when the value is not plain JSON data, every string is scanned.
        """
        if self.redactor.has_custom_patterns or not _small_plain_data(value, self.max_bytes):
            return None, True
        try:
            probe = _PROBE.encode(value)
        except Exception:  # cycles, NaN, objects, bytes, deep nesting: the walk handles them
            return None, True
        if len(probe) > _PROBE_MAX_CHARS or may_hold_secret(probe):
            return None, True
        if secrets and any(form in probe for form in secret_forms(secrets)):
            return None, True
        if len(probe) > self.max_bytes or _LONG_DIGITS.search(probe) is not None:
            return None, False  # too big, or an int beyond 64 bits: walk, without text scans
        try:
            size = len(probe.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates: the walk replaces them
            return None, False
        return (probe, False) if size <= self.max_bytes else (None, False)


_SCALARS = frozenset({int, float, bool, type(None)})


def _small_plain_data(value: Any, limit: int) -> bool:
    """Exactly dicts (str keys), lists, tuples, str and numbers, with about ``limit`` characters.

    Checked before encoding the value whole, so a 50 MB string is never copied into a probe.
    """
    stack = [value]
    total = 0
    nodes = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        nodes += 1
        if kind is str:
            total += len(item) + 2
        elif kind in _SCALARS:
            total += 8
        elif kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
                total += len(key) + 4
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            total += 2 + len(item)
            stack.extend(item)
        else:
            return False
        if total > limit or nodes > _MAX_ITEMS_PER_CONTAINER:
            return False
    return True


# Plain JSON data up to this size is probed whole before the walk (see ContentPolicy._probe).
_PROBE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_PROBE_MAX_CHARS = 64 * 1024
_LONG_DIGITS = re.compile(r"[0-9]{19}")


def _hash_default(value: Any) -> Any:
    """An object in a hashed value: its fields, a set sorted, or text the same in every process."""
    fields = as_plain_data(value)
    if fields is not None:
        return fields
    if isinstance(value, Set):
        return sorted(value, key=_CANONICAL.encode)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return stable_text(value)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_hash_default)
_REDACTED_FOR_HASH = "[REDACTED]"


# What a value under a secret-named key becomes in a walk that needs no marker kind.
_HASH_PLAIN = frozenset({str, int, float, bool, type(None)})
# Values of secret-named arguments shorter than this are not scrubbed from other text: too
# likely to match ordinary words and numbers.
MIN_SCRUBBED_SECRET_CHARS = 6


def _without_secrets(value: Any, depth: int, path: set[int], found: list[str] | None) -> Any:
    """``value`` with every value under a secret-named key replaced, at every depth.

    Mapping keys and record fields (see ``_as_plain_data``) are both names. The same object comes
    back when nothing was replaced, so arguments without secrets hash as they always did. With
    ``found``, the secret strings themselves are collected (see ``secret_argument_values``).
    ``path`` holds the containers being walked (cycles); an exception aborts the whole walk.
    """
    kind = type(value)
    if kind is dict:
        if all_keys_plain(value) and _HASH_PLAIN.issuperset(map(type, value.values())):
            return value  # known harmless names, plain values: nothing to look into
        items: Any = value.items()
    elif kind is list or kind is tuple:
        if _HASH_PLAIN.issuperset(map(type, value)):
            return value  # numbers or words only: no name anywhere inside
        items = None
    elif kind in _HASH_PLAIN:
        return value
    elif isinstance(value, Mapping):
        items = value.items()
    else:
        fields = as_plain_data(value)
        if fields is not None:
            new = _without_secrets(fields, depth, path, found)
            return value if new is fields else new
        if not isinstance(value, (list, tuple)) and (
            not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray, memoryview))
        ):
            return value
        items = None
    if depth >= _MAX_DEPTH:
        return "[truncated: nested too deep]"
    identity = id(value)
    if identity in path:
        return "[cycle]"
    path.add(identity)
    changed = False
    if items is not None:
        out: dict[Any, Any] = {}
        for key, item in items:
            if type(key) is str and sensitive_key_kind(key) is not None:
                if found is not None:
                    _collect_secrets(item, found, depth)
                out[key] = _REDACTED_FOR_HASH
                changed = True
            elif type(item) in _HASH_PLAIN:
                out[key] = item
            else:
                new = out[key] = _without_secrets(item, depth + 1, path, found)
                changed = changed or new is not item
        result: Any = out
    else:
        result = []
        for item in value:
            new = _without_secrets(item, depth + 1, path, found)
            changed = changed or new is not item
            result.append(new)
    path.discard(identity)
    return result if changed else value


def _collect_secrets(value: Any, found: list[str], depth: int) -> None:
    """Every string of ``MIN_SCRUBBED_SECRET_CHARS`` or more inside a secret-named value."""
    if depth >= _MAX_DEPTH or len(found) >= _MAX_SECRET_VALUES:
        return
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:_MAX_SECRET_CHARS]).decode("utf-8", "replace")
    if isinstance(value, str):
        value = value[:_MAX_SECRET_CHARS]
        if len(value) >= MIN_SCRUBBED_SECRET_CHARS:
            found.append(value)
            space = value.find(" ", 0, 8)  # "Bearer abc...": the token may appear on its own
            if space > 0 and value[:space].lower() in _AUTH_SCHEMES:
                token = value[space:].strip()
                if len(token) >= MIN_SCRUBBED_SECRET_CHARS:
                    found.append(token)
        return
    if isinstance(value, Mapping):
        for item in itertools.islice(value.values(), _MAX_ITEMS_PER_CONTAINER):
            _collect_secrets(item, found, depth + 1)
        return
    fields = as_plain_data(value) if type(value) is not list and type(value) is not tuple else None
    if fields is not None:
        _collect_secrets(fields, found, depth + 1)
    elif isinstance(value, (list, tuple, Set)):
        for item in itertools.islice(value, _MAX_ITEMS_PER_CONTAINER):
            _collect_secrets(item, found, depth + 1)


_MAX_SECRET_VALUES = 64
_MAX_SECRET_CHARS = 4_096
_AUTH_SCHEMES = frozenset({"basic", "bearer", "token", "digest"})
# Redacts values under sensitive keys only (strings are not scanned): args_hash's fallback.
_KEYS_ONLY = Redactor()


def _needs_secret_walk(arguments: Any) -> bool:
    """False for the common call: a dict of plain values none of whose names is secret."""
    if type(arguments) is dict:
        if not _HASH_PLAIN.issuperset(map(type, arguments.values())):
            return True
        if all_keys_plain(arguments):
            return False
        return any(isinstance(key, str) and sensitive_key_kind(key) is not None for key in arguments)
    return type(arguments) not in _HASH_PLAIN


def arguments_hash(arguments: Any) -> str:
    """A stable short hash of the canonical JSON of tool arguments: equal hashes, repeated call.

    Values under secret-named keys (``password``, ``api_key``, ``headers={"Authorization": ...}``,
    a NamedTuple's ``token`` field), at any depth, are left out, so the hash cannot be used to
    test guesses of a short secret.
    """
    return arguments_digest(arguments, collect=False)[0]


def secret_argument_values(arguments: Any) -> tuple[str, ...]:
    """The strings (6+ characters) under secret-named keys of ``arguments``, at any depth.

    They are scrubbed from the same span's error message, stack trace and result, where a
    tool's code may repeat them (``Redactor.redact_message(..., secrets=...)``).
    """
    return arguments_digest(arguments)[1]


def arguments_digest(arguments: Any, collect: bool = True) -> tuple[str, tuple[str, ...]]:
    """``(arguments_hash(arguments), secret_argument_values(arguments))`` from one walk.

    The secrets are only looked for when ``collect``; the walk runs only when some name could
    be secret or some value is a container or record.
    """
    secrets: tuple[str, ...] = ()
    if _needs_secret_walk(arguments):
        found: list[str] | None = [] if collect else None
        try:
            arguments = _without_secrets(arguments, 0, set(), found)
        except Exception:  # a container that cannot be read: the safe form, sensitive keys redacted
            arguments = _Walk(_KEYS_ONLY, 1 << 20, scan_text=False, stable=True).value(arguments, 0, set())
        if found:
            # Longest first: a token inside a longer secret is never matched on its own first.
            secrets = (found[0],) if len(found) == 1 else tuple(sorted(set(found), key=len, reverse=True))
    data: bytes | None = None
    if _SORTED_MSGSPEC is not None:
        try:  # plain JSON data: ~4x faster, the same bytes as the stdlib for ASCII text
            data = _SORTED_MSGSPEC.encode(arguments)
        except Exception:
            data = None
    if data is None:
        try:
            canonical = _CANONICAL.encode(arguments)
        except Exception:  # cycles, unsortable keys, huge ints, deep nesting: hash the safe form
            safe = _Walk(None, 1 << 20, stable=True).value(arguments, 0, set())
            canonical = json.dumps(safe, sort_keys=True, separators=(",", ":"))
        data = canonical.encode("utf-8", "replace")
    return hashlib.blake2b(data, digest_size=8).hexdigest(), secrets


def _sorted_msgspec_encoder() -> Any:
    try:
        import msgspec
    except ImportError:  # a dependency, but the stdlib path is complete without it
        return None
    return msgspec.json.Encoder(order="sorted")


_SORTED_MSGSPEC = _sorted_msgspec_encoder()
