"""Torture: hostile values as tool arguments, results and errors; the JSONL round trip by property.

No exception may reach the application (internal errors re-raise under this suite, so a bug in
the capture path fails here rather than hiding), and every line written must be strict JSON.
"""

from __future__ import annotations

import math
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steptrace
from steptrace._jsonl import JsonlSpanExporter, encode_record, read_steps
from steptrace.testing import Capture
from torture_checks import check_log, report, strict_loads

pytestmark = pytest.mark.torture


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class RaisingEverything:
    """An object every introspection of which raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __iter__(self) -> Any:
        raise RuntimeError("iter")


class ExplodingMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items")


class ExplodingList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("iter")


class HostileError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str of an exception")


def _cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    value["list"] = [value, [value]]
    return value


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _deep_dict(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(depth):
        value = {"next": value}
    return value


HOSTILE: dict[str, Callable[[], Any]] = {
    "cycle": _cyclic_dict,
    "raising_repr": RaisingRepr,
    "raising_everything": RaisingEverything,
    "exploding_mapping": lambda: ExplodingMapping(a=1),
    "exploding_list": lambda: ExplodingList([1, 2]),
    "string_1mb": lambda: "x" * (1 << 20),
    "invalid_utf8": lambda: b"\xff\xfe\xfa valid \xc3\x28 \xed\xa0\x80",
    "lone_surrogates": lambda: "a\ud800b\udfffc",
    "surrogate_key": lambda: {"k\ud800": "v\udc00"},
    "nan_inf": lambda: [math.nan, math.inf, -math.inf, {"x": math.nan}],
    "deep_list_10000": lambda: _deep(10_000),
    "deep_dict_10000": lambda: _deep_dict(10_000),
    "huge_int": lambda: 10**5000,
    "int_64_bit_edges": lambda: [2**63, -(2**63) - 1, 2**64 + 1],
    "huge_key": lambda: {"k" * (1 << 20): 1, b"\xff" * 5000: 2},
    "non_str_keys": lambda: {1: "a", (2, 3): "b", None: "c", frozenset({4}): "d"},
    "mixed_keys_unsortable": lambda: {1: "a", "b": 2},
    "set_and_tuple": lambda: ({1, 2, 3}, (4, 5), frozenset()),
    "memoryview": lambda: memoryview(b"abc" * 10),
    "bytearray_1mb": lambda: bytearray(b"\x80" * (1 << 20)),
    "control_chars": lambda: "\x00\x01\x1b[31m\u2028\u2029\ufeff",
    "wide_list": lambda: list(range(100_000)),
    "wide_dict": lambda: {f"k{i}": i for i in range(20_000)},
    "type_object": lambda: int,
    "module": lambda: os,
}


@pytest.fixture
def capture(steptrace_capture: Capture) -> Capture:
    return steptrace_capture


def _check_outputs(capture: Capture) -> int:
    """Every JSONL line is strict JSON; every span attribute is UTF-8-encodable; returns lines."""
    log = check_log(capture.jsonl_path, complete_runs=False)
    for span in capture.spans:
        for key, value in (span.attributes or {}).items():
            if isinstance(value, str):
                value.encode("utf-8")  # raises on a lone surrogate
                assert len(value) <= 9_000, f"{key} is {len(value)} chars"
        for event in span.events:
            for value in (event.attributes or {}).values():
                if isinstance(value, str):
                    value.encode("utf-8")
    return len(log.records)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_value_as_argument_and_result(capture: Capture, name: str) -> None:
    """A hostile argument or result: an exception reaches the app, or a line is not strict JSON."""
    value = HOSTILE[name]()

    @steptrace.tool
    def echo(payload: Any) -> Any:
        return payload

    with steptrace.agent_run(agent="hostile"):
        assert echo(value) is value
        with steptrace.tool("manual", arguments={"payload": value}) as call:
            call.record_result(value)
        with steptrace.llm_request(model="m") as request:
            request.record_input(value)
            request.record_output(value)
    assert _check_outputs(capture) == 4
    tool_records = [r for r in capture.records if r["type"] == "tool_call"]
    assert all(r["args_hash"] and r["output"] is not None for r in tool_records)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_llm_response_degrades_quietly(
    capture: Capture, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile object returned by a model call: an exception reaches the app in production."""
    monkeypatch.delenv("STEPTRACE_RAISE_INTERNAL_ERRORS")  # production: internal errors are logged
    value = HOSTILE[name]()

    @steptrace.llm_request(model="m")
    def call_model() -> Any:
        return value

    with steptrace.agent_run(agent="hostile"):
        assert call_model() is value
    assert _check_outputs(capture) == 2


@pytest.mark.parametrize("name", ["raising_str", "huge_message", "surrogates", "nested_cause"])
def test_hostile_exception_reaches_the_app_unchanged(capture: Capture, name: str) -> None:
    """A hostile exception from a tool: it is replaced, wrapped, or its record is not strict JSON."""
    errors: dict[str, BaseException] = {
        "raising_str": HostileError(),
        "huge_message": ValueError("m" * (5 << 20)),
        "surrogates": KeyError("\ud800"),
        "nested_cause": RuntimeError("outer"),
    }
    error = errors[name]
    if name == "nested_cause":
        error.__cause__ = ValueError(_deep(50))

    @steptrace.tool
    def fail() -> None:
        raise error

    with pytest.raises(type(error)) as raised, steptrace.agent_run(agent="hostile"):
        fail()
    assert raised.value is error
    assert _check_outputs(capture) == 2
    record = next(r for r in capture.records if r["type"] == "tool_call")
    assert record["status"] == "error" and len(record["error"]) <= 2_200


def test_fifty_megabyte_result_stays_bounded(capture: Capture) -> None:
    """A 50 MB tool result: memory balloons (a copy per stage) or the log line is huge."""
    big_text = "y" * (50 << 20)
    big_bytes = b"z" * (50 << 20)

    @steptrace.tool
    def download(kind: str) -> Any:
        return big_text if kind == "text" else big_bytes

    with steptrace.agent_run(agent="big"):
        download("text")  # warm up imports and caches outside the measurement
        tracemalloc.start()
        started = time.perf_counter()
        try:
            assert download("text") is big_text
            assert download("bytes") is big_bytes
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        seconds = time.perf_counter() - started
    assert peak < 2 << 20, f"peak {peak} bytes while capturing a 50 MB result"
    lines = capture.jsonl_path.read_bytes().splitlines()
    assert max(len(line) for line in lines) < 20_000
    outputs = [strict_loads(line)["output"] for line in lines if b'"tool_call"' in line]
    assert all(o.endswith(f"...[truncated: {50 << 20} chars]") for o in outputs)
    report("50mb-result", peak_bytes=peak, seconds_for_two_calls=round(seconds, 3))


# --- the JSONL writer and reader, by property ---------------------------------------------------

_keys = st.text(max_size=12)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)
_records = st.fixed_dictionaries(
    {"run_id": st.text(min_size=1, max_size=20), "step": st.integers(0, 10**6), "type": st.just("tool_call")},
    optional={"input": _json_values, "output": _json_values, "error": st.text(max_size=100)},
)
_hostile_scalars = (
    _json_scalars
    | st.floats()
    | st.integers()
    | st.text(alphabet=st.characters(codec=None, categories=["Cs", "Lo", "Cc"]), max_size=10)
    | st.binary(max_size=20)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_records, min_size=1, max_size=8))
def test_jsonl_round_trip(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    """Records written and read back: a value changes on the way, or a record goes missing."""
    path = tmp_path / "round.jsonl"
    path.unlink(missing_ok=True)
    exporter = JsonlSpanExporter(path)
    try:
        assert all(exporter.write_record(record) for record in records)
    finally:
        exporter.shutdown()
    assert list(read_steps(path)) == records


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        _hostile_scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
        max_leaves=20,
    )
)
def test_encode_record_always_strict_json(value: Any) -> None:
    """Any value in a record: its line is not strict UTF-8 JSON, or identity fields change."""
    line = encode_record({"run_id": "r", "step": 3, "type": "tool_call", "output": value}, 4096)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= 4096
    record = strict_loads(line)
    assert (record["run_id"], record["step"], record["type"]) == ("r", 3, "tool_call")


def test_python_accepts_what_the_checks_reject() -> None:
    """Guard on the checks: Python's own json would accept NaN, so strict_loads must not."""
    assert math.isnan(__import__("json").loads("NaN"))
    with pytest.raises(ValueError):
        strict_loads(b'{"x": NaN}')
    with pytest.raises(UnicodeDecodeError):
        strict_loads(b'{"x": "\xff"}')
    assert sys.getrecursionlimit() < 10_000  # the deep values above really are deeper
