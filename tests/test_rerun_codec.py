"""The rerun's codec: a recorded value comes back exactly (type, sign, NaN, keys), or the recording
says it cannot be served. Never a different value passed off as the recorded one (issue 22, item 5)."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from steptrace._redaction import Redactor
from steptrace.rerun._codec import decode_value, encode_value, match_form, recording_policy
from steptrace.rerun._recording import _ENCODER

POLICY = recording_policy(Redactor())


def through_file(value: Any) -> Any:
    """``value`` as a recording line holds it, written and read back as the file does."""
    line = _ENCODER.encode({"result": encode_value(POLICY, value)}).encode("ascii")
    return json.loads(line)["result"]


def same(left: Any, right: Any) -> bool:
    """Equal with the same types all the way down; NaN equals NaN, -0.0 is not 0.0."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or (
            left == right and math.copysign(1, left) == math.copysign(1, right)
        )
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        pairs = left.items()
        return len(left) == len(right) and all(
            any(same(key, other) and same(item, right[other]) for other in right) for key, item in pairs
        )
    return bool(left == right)


# Text that no detector reads as a secret; with surrogates, accents, the tag key's "$".
SAFE_TEXT = st.text(st.sampled_from(list('abcdefxyz $éü\ud800\udfff\x00\n"\\')), max_size=12)
SAFE_INTS = st.integers(-(10**11), 10**11) | st.integers(2**63, 2**200) | st.integers(-(2**200), -(2**63) - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SCALARS = st.none() | st.booleans() | SAFE_INTS | FLOATS | SAFE_TEXT | st.binary(max_size=16)
KEYS = SAFE_TEXT | SAFE_INTS | st.tuples(SAFE_INTS, SAFE_TEXT) | st.booleans() | st.none()


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(KEYS, children, max_size=4)
        | st.dictionaries(SAFE_TEXT, children, max_size=4)
        | st.frozensets(SAFE_INTS | SAFE_TEXT, max_size=4)
        | st.sets(st.tuples(SAFE_INTS), max_size=3)
        | st.binary(max_size=8).map(bytearray)
    )


VALUES = st.recursive(SCALARS, containers, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_every_accepted_value_round_trips_exactly(value: Any) -> None:
    """Int keys as strings, tuples as lists, big ints and NaN as strings: each came back changed."""
    recorded = through_file(value)
    assert "unreplayable" not in recorded, recorded
    assert same(decode_value(recorded), value)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.text(max_size=30) | st.integers() | FLOATS, containers, max_leaves=15))
def test_any_value_is_served_exactly_or_not_at_all(value: Any) -> None:
    """Whatever redaction found in the value, what a rerun serves is the value or a divergence."""
    recorded = through_file(value)
    if "unreplayable" not in recorded:
        assert same(decode_value(recorded), value)


class Color(enum.Enum):
    RED = "red"


class Point(NamedTuple):
    x: int
    y: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Hit:
    title: str
    score: float
    tags: frozenset[str] = frozenset()


def test_records_enums_and_dates_round_trip_as_their_types() -> None:
    """A tool returning a dataclass got a dict back; a NamedTuple a list; a datetime a string."""
    value = {
        "hit": Hit("Q3", -0.0, frozenset({"a"})),
        "point": Point(1, (2, 3)),
        "color": Color.RED,
        "when": datetime.datetime(2026, 12, 6, 8, 0, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 12, 6),
        "id": uuid.UUID(int=7),
        "price": Decimal("0.10"),
        "wait": datetime.timedelta(seconds=1.5),
    }
    served = decode_value(through_file(value))
    assert served == value
    assert type(served["hit"]) is Hit and type(served["point"]) is Point and served["color"] is Color.RED


def test_redacted_and_cut_values_are_not_replayable() -> None:
    """A Luhn-valid id, a field named token, a key in text, 2 MiB: the rerun must not serve them."""
    for value, why in [
        ({"id": 4111111111111111}, "a secret was redacted from it at recording"),
        ({"token": "abc123"}, "a secret was redacted from it at recording"),
        ("use sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6", "a secret was redacted from it at recording"),
        ("x" * (2 * 1024 * 1024), "the value is over 1 MiB"),
    ]:
        recorded = through_file(value)
        assert recorded["unreplayable"] == why
        assert "4111111111111111" not in json.dumps(recorded) and "abc123" not in json.dumps(recorded)


def test_objects_with_no_exact_form_are_not_replayable() -> None:
    """An object served as its repr string was a different value than the tool returned."""

    class Client:
        pass

    recorded = through_file({"client": Client()})
    assert recorded["unreplayable"] == "a Client has no exact recorded form"
    assert "0x" not in json.dumps(recorded)
    cycle: list[Any] = []
    cycle.append(cycle)
    assert through_file(cycle)["unreplayable"] == "the value holds a cycle"


def test_match_form_leaves_out_what_differs_between_processes() -> None:
    """Addresses in reprs made every rerun in a new process diverge; stable reprs stay compared."""

    class Client:
        pass

    @dataclasses.dataclass
    class Tool:
        name: str
        on_invoke: Any

    form, left_out = match_form(
        {"tools": [Tool("search", lambda: None)], "client": Client(), "tags": {"b", "a"}, "color": Color.RED}
    )
    assert form == {"tools": [{"name": "search"}], "tags": ["a", "b"], "color": Color.RED}
    assert left_out == ["client", "tools[0].on_invoke"]
