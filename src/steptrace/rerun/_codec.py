"""How recorded values are written and rebuilt: exactly, or not at all.

A recorded value is ``{"value": tagged}``: the value itself, rebuilt exactly as the type it had
(see ``encode_tagged``: JSON data as is; tuples, sets, dicts with other keys, big integers, NaN
and infinities, bytes, pydantic models, dataclasses, named tuples, enums, datetimes tagged with
``"$t"``), or ``{"unreplayable": "why", "shown": ...}`` when it cannot be served as it was: a
secret was redacted from it, it was cut (over 1 MiB), or its type has no exact form. ``shown`` is
the value as the step log shows it (redacted, bounded), for reports. Recordings of format 1 hold
``{"json": value}`` and ``{"sdk": "module:Qualname", "data": {...}}``; they are still read.
An exception is ``{"type": "module:Qualname", "name": "ValueError", "message": "..."}``.

What is *compared* (a model request, a tool's arguments) is ``match_form``: plain data in which a
value steptrace cannot represent the same way in another process (an object whose ``repr`` holds
a memory address, a function) is left out, and its path listed (``unmatched_args``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import decimal
import enum
import importlib
import json
import math
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence, Set
from typing import Any, TypeVar

from steptrace._content import CARD_DIGITS_FIRST, ContentPolicy, as_plain_data, is_stable_repr
from steptrace._redaction import Redactor, is_card_number, may_hold_secret
from steptrace._spans import error_type_name

MAX_VALUE_BYTES = 1024 * 1024
TAG = "$t"
_CUT_MARK = "...[truncated: "
_UNENCODABLE = '"[unencodable: '
_MAX_DEPTH = 200
_MAX_MESSAGE_CHARS = 64 * 1024
LEFT_OUT = "[left out of the match]"
_SURROGATE = re.compile("[\ud800-\udfff]")


def recording_policy(redactor: Redactor) -> ContentPolicy:
    """The step log's redaction (same detectors, patterns, ``redact`` callable), 1 MiB per value."""
    return ContentPolicy(True, redactor, MAX_VALUE_BYTES)


def type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_pydantic(value: Any) -> bool:
    cls = type(value)
    return callable(getattr(cls, "model_dump", None)) and callable(getattr(cls, "model_validate", None))


def to_plain(policy: ContentPolicy, value: Any) -> tuple[Any, str | None]:
    """(the redacted, bounded JSON value, None) or (None, why it cannot be encoded)."""
    text = policy.to_json(value)
    if text.startswith(_UNENCODABLE):
        return None, "the value could not be encoded"
    if _CUT_MARK in text and len(text.encode("utf-8", "replace")) >= MAX_VALUE_BYTES // 2:
        return None, "the value is over 1 MiB"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "the value could not be encoded"


# --- exact values -------------------------------------------------------------------------------
class Unrecordable(Exception):
    """Why a value has no exact recorded form (its text is the reason shown in the report)."""


class _Encoder:
    """One walk: the tagged form of a value, and whether redaction would change any part of it."""

    __slots__ = ("budget", "path", "redacted", "redactor", "secrets")

    def __init__(self, redactor: Redactor | None, secrets: Sequence[str]) -> None:
        self.redactor = redactor
        self.secrets = secrets
        self.redacted = False
        self.budget = MAX_VALUE_BYTES
        self.path: set[int] = set()

    def spend(self, size: int) -> None:
        self.budget -= size
        if self.budget < 0:
            raise Unrecordable("the value is over 1 MiB")

    def scan(self, text: str) -> None:
        redactor = self.redactor
        if redactor is None or self.redacted:
            return
        may = self.secrets or redactor.has_custom_patterns or may_hold_secret(text)
        if may and redactor.spans(text, self.secrets):
            self.redacted = True

    def encode(self, value: Any, depth: int = 0) -> Any:
        kind = type(value)
        if value is None or kind is bool:
            self.spend(5)
            return value
        if kind is str:
            self.spend(len(value) + 2)
            self.scan(value)
            if _SURROGATE.search(value) is None:
                return value
            # JSON reads the escapes of a high and a low surrogate back as one character.
            return {TAG: "str", "v": base64.b64encode(value.encode("utf-8", "surrogatepass")).decode()}
        if kind is int:
            self.spend(20)
            if (
                self.redactor is not None
                and 10**12 <= abs(value) < 10**19
                and str(abs(value))[0] in CARD_DIGITS_FIRST
                and is_card_number(str(abs(value)))
            ):
                self.redacted = True
            if -(2**63) <= value < 2**63:
                return value
            self.spend(value.bit_length() // 4)
            return {TAG: "int", "v": hex(value)}
        if kind is float:
            self.spend(24)
            if math.isfinite(value):
                return value
            return {TAG: "float", "v": repr(value)}  # 'nan', 'inf', '-inf'
        if kind is bytes or kind is bytearray:
            self.spend(len(value) * 4 // 3 + 40)
            self.scan(bytes(value).decode("utf-8", "replace"))
            return {TAG: kind.__name__, "v": base64.b64encode(value).decode("ascii")}
        if depth >= _MAX_DEPTH:
            raise Unrecordable("the value is nested too deep")
        identity = id(value)
        if identity in self.path:
            raise Unrecordable("the value holds a cycle")
        self.path.add(identity)
        try:
            return self._container(value, kind, depth + 1)
        finally:
            self.path.discard(identity)

    def _container(self, value: Any, kind: type, depth: int) -> Any:
        if kind is list:
            self.spend(2 + len(value))
            return [self.encode(item, depth) for item in value]
        if kind is dict:
            self.spend(2)
            if TAG not in value and all(type(key) is str and not _SURROGATE.search(key) for key in value):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    self.spend(len(key) + 3)
                    self.scan(key)
                    self._sensitive(key, item)
                    out[key] = self.encode(item, depth)
                return out
            pairs = []
            for key, item in value.items():
                if type(key) is str:
                    self._sensitive(key, item)
                pairs.append([self.encode(key, depth), self.encode(item, depth)])
            return {TAG: "dict", "v": pairs}
        if kind is tuple:
            self.spend(2 + len(value))
            return {TAG: "tuple", "v": [self.encode(item, depth) for item in value]}
        if kind is set or kind is frozenset:
            self.spend(2 + len(value))
            return {TAG: kind.__name__, "v": [self.encode(item, depth) for item in value]}
        if isinstance(value, enum.Enum):
            return {TAG: "enum", "cls": type_path(kind), "v": self.encode(value.value, depth)}
        if kind is datetime.datetime or kind is datetime.date or kind is datetime.time:
            self.spend(40)
            return {TAG: kind.__name__, "v": value.isoformat()}
        if kind is datetime.timedelta:
            self.spend(40)
            return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
        if kind is uuid.UUID or kind is decimal.Decimal:
            self.spend(50)
            return {TAG: kind.__name__, "v": str(value)}
        if isinstance(value, type):
            raise Unrecordable(f"a class ({value.__name__}) has no recorded form")
        if _is_pydantic(value):
            if _builds_from_json(kind):  # an SDK response: its JSON, rebuilt as the SDK builds it
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    data = value.model_dump(mode="json", exclude_unset=True)
                apart = [[path, name, self.encode(item, depth)] for path, name, item in _json_loses(value)]
                encoded = self.encode(data, depth)
                if apart:  # set again on the rebuilt response, as the objects they were
                    return {TAG: "model", **_model_class(kind), "v": encoded, "apart": apart}
                return {TAG: "model", **_model_class(kind), "v": encoded}
            # Field by field, so a nested model keeps its own class: LangChain's ChatResult
            # holds ChatGenerations of AIMessages, which its JSON cannot tell from their bases.
            data = _model_fields(value)
            return {TAG: "model", **_model_class(kind), "v": self.encode(data, depth)}
        if dataclasses.is_dataclass(value):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            for name, item in fields.items():
                self._sensitive(name, item)
            encoded = {name: self.encode(item, depth) for name, item in fields.items()}
            return {TAG: "dataclass", "cls": type_path(kind), "v": encoded}
        if isinstance(value, tuple) and type(getattr(kind, "_fields", None)) is tuple:
            for name, item in zip(kind._fields, value, strict=False):  # type: ignore[attr-defined]
                self._sensitive(name, item)
            items = [self.encode(item, depth) for item in value]
            return {TAG: "namedtuple", "cls": type_path(kind), "v": items}
        raise Unrecordable(f"a {kind.__name__} has no exact recorded form")

    def _sensitive(self, key: str, item: Any) -> None:
        if self.redactor is not None and item is not None and self.redactor.sensitive_key_kind(key):
            self.redacted = True


def encode_tagged(value: Any) -> Any:
    """``value``'s exact recorded form (no redaction check); raises ``Unrecordable``."""
    return _Encoder(None, ()).encode(value)


_PROBE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_PROBE_NODES = 1_000
_PROBE_CHARS = 64 * 1024


def _plain_exact(value: Any) -> bool:
    """Small JSON data that JSON gives back as it was: dicts with string keys, lists, strings,
    64-bit ints, finite floats (checked by the encoder), bools, None. No tuple: it comes back a list."""
    stack = [value]
    nodes = chars = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        nodes += 1
        if kind is str:
            chars += len(item)
        elif kind is int:
            if not -(2**63) <= item < 2**63:
                return False
        elif kind is dict:
            if TAG in item:
                return False
            for key in item:
                if type(key) is not str:
                    return False
                chars += len(key)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif not (kind is float or kind is bool or item is None):
            return False
        if nodes > _PROBE_NODES or chars > _PROBE_CHARS:
            return False
    return True


def _fast_plain(redactor: Redactor, value: Any, secrets: Sequence[str]) -> bool:
    """True when ``value`` is recorded as it is: plain data one scan of its JSON clears of every
    detector (sensitive key names are among ``may_hold_secret``'s triggers)."""
    if secrets or redactor.has_custom_patterns or redactor.has_user_callable or not _plain_exact(value):
        return False
    try:
        text = _PROBE.encode(value)
    except ValueError:  # NaN or infinity
        return False
    return not may_hold_secret(text) and _SURROGATE.search(text) is None


def encode_value(policy: ContentPolicy, value: Any, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """A recorded value (see the module docstring); never raises."""
    try:
        redactor = policy.redactor
        if _fast_plain(redactor, value, secrets):
            return {"value": value}
        encoder = _Encoder(redactor, secrets)
        why: str | None = None
        try:
            tagged = encoder.encode(value)
        except Unrecordable as exc:
            why = str(exc)
        except RecursionError:
            why = "the value is nested too deep"
        if why is None and encoder.redacted:
            why = "a secret was redacted from it at recording"
        changed = redactor.has_user_callable and not _same(redactor.apply_user_callable(value), value)
        if why is None and changed:
            why = "the redact= callable changed it at recording"
        if why is None:
            return {"value": tagged}
        shown, _ = to_plain(policy, match_form(value)[0])  # no memory address in the file
        return {"unreplayable": why, "shown": shown}
    except Exception as exc:  # never fail the user's call because of the recording
        return {"unreplayable": f"the value could not be encoded ({type(exc).__name__})"}


def _same(left: Any, right: Any) -> bool:
    try:
        return left is right or bool(left == right)
    except Exception:
        return False


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


def _class(path: Any) -> type:
    try:
        cls = _import(str(path))
    except Exception as exc:
        why = f"the recorded type {path} cannot be imported here ({type(exc).__name__})"
        raise Unrecordable(why) from None
    if not isinstance(cls, type):
        raise Unrecordable(f"the recorded type {path} is not a class here")
    return cls


def decode_tagged(data: Any) -> Any:
    """The value ``encode_tagged`` recorded; raises ``Unrecordable`` for a form it cannot rebuild."""
    if isinstance(data, list):
        return [decode_tagged(item) for item in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {key: decode_tagged(item) for key, item in data.items()}
    v = data.get("v")
    rebuild = _REBUILD.get(str(tag))
    if rebuild is None:
        raise Unrecordable(f"unknown recorded form {tag!r}")
    try:
        return rebuild(data, v)
    except Unrecordable:
        raise
    except Exception as exc:
        raise Unrecordable(f"a recorded {tag} could not be rebuilt ({type(exc).__name__}: {exc})") from None


def _dataclass(data: dict[str, Any], v: Any) -> Any:
    cls = _class(data.get("cls"))
    fields = {name: decode_tagged(item) for name, item in dict(v).items()}
    init = {f.name: fields[f.name] for f in dataclasses.fields(cls) if f.init and f.name in fields}
    try:
        made = cls(**init)
    except Exception:
        made = object.__new__(cls)
    for name, item in fields.items():
        if getattr(made, name, _MISSING) is not item:
            object.__setattr__(made, name, item)
    return made


_MISSING = object()


def _model_fields(value: Any) -> dict[str, Any]:
    """The fields a pydantic model was given (as ``exclude_unset`` keeps them), as objects."""
    given = value.model_fields_set
    fields = {name: getattr(value, name) for name in type(value).model_fields if name in given}
    fields.update(getattr(value, "model_extra", None) or {})
    # A str subclass in a field (LangChain's TextAccessor) is its text: the model's validation
    # makes it that class again when the model is rebuilt.
    return {name: str(item) if isinstance(item, str) else item for name, item in fields.items()}


def _model_class(kind: type) -> dict[str, Any]:
    """Where a model's class is found: a parametrized generic model (the SDKs' parse results,
    ``ParsedMessage[Answer]``) is named by its generic class and its parameters, which a new
    process imports and puts together again (its own name is not importable)."""
    generic = getattr(kind, "__pydantic_generic_metadata__", None) or {}
    origin, args = generic.get("origin"), generic.get("args") or ()
    if origin is None:
        return {"cls": type_path(kind)}
    recorded: list[Any] = []
    for arg in args:
        if isinstance(arg, type):
            recorded.append(type_path(arg))
        elif isinstance(arg, TypeVar) and _type_variable(arg.__module__, arg.__name__) is arg:
            # Left unspecialized: older SDKs build ParsedMessage[ResponseFormatT] with the type
            # variable of their parsing module.
            recorded.append({"typevar": f"{arg.__module__}:{arg.__name__}"})
        else:
            raise Unrecordable(f"a {kind.__name__} has no exact recorded form (a parameter is not a class)")
    return {"cls": type_path(origin), "args": recorded}


def _type_variable(module_name: str, name: str) -> Any:
    """The module-level type variable ``name`` of ``module_name``, or None."""
    try:
        found = getattr(importlib.import_module(module_name), name, None)
    except Exception:
        return None
    return found if isinstance(found, TypeVar) else None


def _type_argument(recorded: Any) -> Any:
    if isinstance(recorded, dict):
        module_name, _, name = str(recorded.get("typevar")).partition(":")
        found = _type_variable(module_name, name)
        if found is None:
            why = f"the recorded type variable {recorded.get('typevar')} cannot be imported here"
            raise Unrecordable(why)
        return found
    return _class(recorded)


def _json_loses(value: Any) -> list[tuple[list[Any], str, Any]]:
    """What an SDK response's JSON loses, anywhere in it: fields it keeps out of its JSON
    (``exclude=True``) and the user's own models it holds (JSON gives back a dict): as (the path
    to the model that holds one, the field, its value). The SDKs' ``parse`` put the parsed answer
    there (anthropic's ``ParsedTextBlock.parsed_output``, an instance of the caller's class)."""
    from pydantic import BaseModel

    found: list[tuple[list[Any], str, Any]] = []
    stack: list[tuple[list[Any], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        children: Any = ()
        if isinstance(item, BaseModel):
            for name, info in type(item).model_fields.items():
                child = item.__dict__.get(name)
                if child is None:
                    continue
                users_model = isinstance(child, BaseModel) and not _builds_from_json(type(child))
                if info.exclude is True or users_model:
                    found.append((path, name, child))
                elif isinstance(child, (BaseModel, list, dict)):
                    stack.append(([*path, name], child))
        elif isinstance(item, list):
            children = enumerate(item)
        elif isinstance(item, dict):
            children = item.items()
        for key, child in children:
            if isinstance(child, (BaseModel, list, dict)):
                stack.append(([*path, key], child))
    return found


def _put_apart(made: Any, apart: Any) -> None:
    """Set again what ``_json_loses`` found, on the rebuilt response."""
    for path, name, item in apart:
        target = made
        for key in path:
            by_index = isinstance(key, int) or isinstance(target, Mapping)
            target = target[key] if by_index else getattr(target, key)
        object.__setattr__(target, name, decode_tagged(item))


def _model(data: dict[str, Any], v: Any) -> Any:
    cls: Any = _class(data.get("cls"))
    args = data.get("args")
    if isinstance(args, list) and args:
        parameters = tuple(_type_argument(arg) for arg in args)
        cls = cls[parameters if len(parameters) > 1 else parameters[0]]
    fields = decode_tagged(v)
    if _builds_from_json(cls):  # openai's and anthropic's models: built as the SDK builds them
        made = cls.model_construct(**fields)
        _put_apart(made, data.get("apart") or ())
        return made
    try:
        return cls.model_validate(fields)
    except Exception:
        return cls.model_construct(**fields)


def _builds_from_json(cls: type) -> bool:
    """The SDK overrides ``model_construct`` to build nested models from a response's JSON."""
    try:
        from pydantic import BaseModel
    except ImportError:
        return False
    own = getattr(cls, "model_construct", None)
    return getattr(own, "__func__", own) is not getattr(BaseModel.model_construct, "__func__", None)


_REBUILD: dict[str, Any] = {
    "str": lambda d, v: base64.b64decode(str(v), validate=True).decode("utf-8", "surrogatepass"),
    "int": lambda d, v: int(str(v), 16),
    "float": lambda d, v: float(str(v)),
    "bytes": lambda d, v: base64.b64decode(str(v), validate=True),
    "bytearray": lambda d, v: bytearray(base64.b64decode(str(v), validate=True)),
    "tuple": lambda d, v: tuple(decode_tagged(item) for item in v),
    "set": lambda d, v: {decode_tagged(item) for item in v},
    "frozenset": lambda d, v: frozenset(decode_tagged(item) for item in v),
    "dict": lambda d, v: {decode_tagged(key): decode_tagged(item) for key, item in v},
    "enum": lambda d, v: _class(d.get("cls"))(decode_tagged(v)),
    "datetime": lambda d, v: datetime.datetime.fromisoformat(str(v)),
    "date": lambda d, v: datetime.date.fromisoformat(str(v)),
    "time": lambda d, v: datetime.time.fromisoformat(str(v)),
    "timedelta": lambda d, v: datetime.timedelta(*v),
    "UUID": lambda d, v: uuid.UUID(str(v)),
    "Decimal": lambda d, v: decimal.Decimal(str(v)),
    "model": _model,
    "dataclass": _dataclass,
    "namedtuple": lambda d, v: _class(d.get("cls"))(*(decode_tagged(item) for item in v)),
}


def decode_value(recorded: Any) -> Any:
    """The value a rerun returns for a recorded value; raises ``Unrecordable`` when it cannot
    be rebuilt exactly (then serving it would be a divergence)."""
    if not isinstance(recorded, dict):
        raise Unrecordable("the recording holds no value here")
    if "value" in recorded:
        return decode_tagged(recorded["value"])
    why = recorded.get("unreplayable")
    if why is not None:
        raise Unrecordable(str(why))
    if "json" in recorded:  # format 1
        return recorded["json"]
    path, data = recorded.get("sdk"), recorded.get("data")
    if isinstance(path, str):  # format 1: a pydantic object
        cls = _class(path)
        try:
            return cls.model_validate(data)  # type: ignore[attr-defined]
        except Exception:
            try:
                return cls.model_construct(**data) if isinstance(data, dict) else data  # type: ignore[attr-defined]
            except Exception:
                return data
    raise Unrecordable("the recording holds no value here")


# --- what is compared ---------------------------------------------------------------------------
def match_form(value: Any) -> tuple[Any, list[str]]:
    """``value`` as plain data that is the same in every process, and the paths left out of it.

    Records become dicts of their fields, sets sorted lists; an object whose ``repr`` holds a
    memory address (a client, a function, a lock) is left out: dropped from its mapping, or
    ``LEFT_OUT`` in its list. Its path (``client``, ``tools[0].on_invoke_tool``) is listed.
    """
    left_out: list[str] = []
    try:
        form = _stable(value, "", 0, set(), left_out)
    except RecursionError:
        return LEFT_OUT, ["(the whole value: nested too deep)"]
    return (LEFT_OUT if form is _LEAVE_OUT else form), sorted(left_out)


_LEAVE_OUT = object()
_PLAIN = (str, int, float, bool, type(None), bytes, bytearray)


def _stable(value: Any, path: str, depth: int, seen: set[int], left_out: list[str]) -> Any:
    if isinstance(value, _PLAIN) and not isinstance(value, enum.Enum):
        return value
    if depth >= 32:
        return "[truncated: nested too deep]"
    identity = id(value)
    if identity in seen:
        return "[cycle]"
    seen.add(identity)
    try:
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in list(value.items()):
                name = key if isinstance(key, str) else str(_stable(key, "", depth + 1, seen, []))
                where = f"{path}.{name}" if path else name
                form = _stable(item, where, depth + 1, seen, left_out)
                if form is _LEAVE_OUT:
                    left_out.append(where)
                else:
                    out[key if isinstance(key, (str, int, float, bool)) else name] = form
            return out
        fields = as_plain_data(value)
        if fields is not None:
            return _stable(fields, path, depth + 1, seen, left_out)
        if isinstance(value, (list, tuple)) or (
            isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray, memoryview))
        ):
            items = []
            for index, item in enumerate(value):
                where = f"{path}[{index}]"
                form = _stable(item, where, depth + 1, seen, left_out)
                if form is _LEAVE_OUT:
                    left_out.append(where)
                    form = LEFT_OUT
                items.append(form)
            return items
        if isinstance(value, Set):
            forms = [_stable(item, path, depth + 1, seen, left_out) for item in value]
            kept = [form for form in forms if form is not _LEAVE_OUT]
            return sorted(kept, key=lambda form: json.dumps(form, sort_keys=True, default=repr))
        if isinstance(value, (enum.Enum, datetime.date, datetime.time, uuid.UUID, decimal.Decimal)):
            return value
        if is_stable_repr(value):
            return value  # the walk that encodes it writes its repr: the same in every process
        return _LEAVE_OUT
    finally:
        seen.discard(identity)


# --- exceptions ---------------------------------------------------------------------------------
def encode_error(policy: ContentPolicy, exc: BaseException, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """A recorded exception; ``unreplayable`` when its message was redacted or cut."""
    try:
        message = str(exc)
    except Exception:
        message = ""
    shown = policy.redactor.redact_message(message, _MAX_MESSAGE_CHARS, secrets)
    error: dict[str, Any] = {"type": type_path(type(exc)), "name": error_type_name(exc), "message": shown}
    if shown != message:
        error["unreplayable"] = "its message was redacted or cut at recording"
    return error


class _RecordedError(Exception):
    """Stands in for a recorded exception whose class cannot be imported here."""


# botocore makes each service's error classes at run time (``client.exceptions.ThrottlingException``).
_AWS_ERRORS = "botocore.errorfactory:"
_AWS_OPERATION = re.compile(r"when calling the (\w+) operation(?: \([^)]*\))?: (.*)", re.S)


def _aws_service_error(code: str, message: str) -> BaseException | None:
    """A recorded AWS service error as a botocore ``ClientError`` of the same name, whose
    ``response["Error"]["Code"]`` is the code, so ``except ClientError`` handlers see what they saw."""
    try:
        from botocore.exceptions import ClientError
    except ImportError:
        return None
    cls: Any = type(code or "ClientError", (ClientError,), {"__module__": "botocore.errorfactory"})
    error: BaseException = cls.__new__(cls)
    BaseException.__init__(error, message)
    found = _AWS_OPERATION.search(message)
    error.response = {"Error": {"Code": code, "Message": found.group(2) if found else message}}  # type: ignore[attr-defined]
    error.operation_name = found.group(1) if found else None  # type: ignore[attr-defined]
    return error


def decode_error(recorded: dict[str, Any]) -> BaseException:
    """The recorded exception, rebuilt: its type (when importable) and its message."""
    message = str(recorded.get("message", ""))
    path = recorded.get("type")
    cls: Any = None
    if isinstance(path, str) and path.startswith(_AWS_ERRORS):
        aws = _aws_service_error(path.partition(":")[2], message)
        if aws is not None:
            return aws
    if isinstance(path, str):
        try:
            cls = _import(path)
        except Exception:
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
