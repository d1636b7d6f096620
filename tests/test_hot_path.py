"""The step log's hot path reads span attributes from the SDK's plain dict (a private reach-in
that makes every span end several µs cheaper): if an SDK release moves it, the records stay right
through the public mapping, and these tests say the fast path is gone."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, cast

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider

from steptrace import _attributes as A
from steptrace._context import BAGGAGE_AGENT_STEP, BAGGAGE_RUN_ID, attribute_dict, remote_run
from torture_checks import strict_loads


class _Text(str):
    pass


def test_span_attributes_are_read_from_the_sdks_own_dict() -> None:
    """A started span and the ReadableSpan its end hands to processors expose their attributes as
    the plain dict the SDK keeps (opentelemetry-sdk 1.x: ``_attributes._dict``)."""
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("tool_execution", attributes={"a": 1, "b": ("x", "y")})
    live = attribute_dict(span)
    assert type(live) is dict
    assert live == {"a": 1, "b": ("x", "y")}
    span.end()
    ended = attribute_dict(span._readable_span())  # type: ignore[attr-defined]
    assert type(ended) is dict
    assert ended == dict(span.attributes or {})


def test_spans_of_other_kinds_fall_back_to_their_public_attributes() -> None:
    """A span without the SDK's internals (the API's non-recording span, another vendor's) is
    read through its public ``attributes``, or has none."""

    class Vendor:
        def __init__(self) -> None:
            self.attributes = {"steptrace.run_id": "r1"}

    assert attribute_dict(Vendor()) == {"steptrace.run_id": "r1"}
    assert attribute_dict(trace.INVALID_SPAN) is None


def test_a_remote_run_is_read_from_baggage_or_from_the_parent_span() -> None:
    """A process serving another's run finds its id in the baggage, else on the parent span the
    library made current; with neither, no run."""
    tracer = TracerProvider().get_tracer("t")
    context = baggage.set_baggage(BAGGAGE_RUN_ID, "run-1")
    context = baggage.set_baggage(BAGGAGE_AGENT_STEP, "4", context)
    assert remote_run(context) == ("run-1", 4)
    parent = tracer.start_span("server", attributes={BAGGAGE_RUN_ID: "run-2", BAGGAGE_AGENT_STEP: "7"})
    assert remote_run(trace.set_span_in_context(parent)) == ("run-2", 7)
    plain = tracer.start_span("server", attributes={"http.method": "GET"})
    assert remote_run(trace.set_span_in_context(plain)) is None
    assert remote_run(None) is None


def test_span_fields_are_read_from_the_sdks_own_slots() -> None:
    """The step log reads a finished span's name, ids, status and times from the SDK's own fields
    (opentelemetry-sdk 1.x ``ReadableSpan``; the API's ``SpanContext`` tuple, trace id then span
    id): if a release renames them, records still come out right (next test) but slower."""
    tracer = TracerProvider().get_tracer("t")
    parent = tracer.start_span("parent")
    span = tracer.start_span("tool_execution", context=trace.set_span_in_context(parent))
    span.set_status(trace.StatusCode.ERROR, "boom")
    span.end()
    readable = span._readable_span()  # type: ignore[attr-defined]
    fields = vars(readable)
    assert fields["_name"] == readable.name and fields["_context"] is readable.context
    assert fields["_parent"] is readable.parent
    assert (fields["_start_time"], fields["_end_time"]) == (readable.start_time, readable.end_time)
    assert vars(fields["_status"]) == {"_status_code": trace.StatusCode.ERROR, "_description": "boom"}
    assert tuple(readable.context)[:2] == (readable.context.trace_id, readable.context.span_id)
    assert tuple(readable.parent)[:2] == (readable.parent.trace_id, readable.parent.span_id)


def test_a_span_without_the_sdks_fields_gets_the_same_record() -> None:
    """A span exposing only the public ReadableSpan properties (another SDK release, a wrapper)
    gets the very record the SDK's own span gets."""
    from steptrace._jsonl import span_to_record

    tracer = TracerProvider().get_tracer("t")
    parent = tracer.start_span("agent_step")
    span = tracer.start_span(
        A.SPAN_TOOL_EXECUTION,
        context=trace.set_span_in_context(parent),
        attributes={A.RUN_ID: "r", A.STEP: 2, A.GEN_AI_TOOL_NAME: "search"},
    )
    span.set_status(trace.StatusCode.ERROR, "boom")
    span.end()
    readable = span._readable_span()  # type: ignore[attr-defined]

    class Public:
        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(readable, name)

    record = span_to_record(readable)
    assert record is not None and record["error"] == "boom" and record["tool"] == "search"
    assert record["parent_span_id"] == format(parent.get_span_context().span_id, "016x")
    assert span_to_record(cast(Any, Public())) == record


def _record_line(name: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """The step record a finished SDK span with ``attributes`` gets, read back strictly."""
    from steptrace._jsonl import encode_record, span_to_record

    span = TracerProvider().get_tracer("t").start_span(name, attributes={A.RUN_ID: "r", **attributes})
    span.end()
    record = span_to_record(span._readable_span())  # type: ignore[attr-defined]
    assert record is not None
    return cast(dict[str, Any], strict_loads(encode_record(record)))


def test_odd_span_values_stay_readable_in_the_record() -> None:
    """The encoder no longer walks a record's values (msgspec would write NaN as null and bytes
    as base64): a NaN or infinite float and bytes on a span still read as text in its record,
    in a foreign span's attributes and in captured content parsed from JSON text."""
    foreign = _record_line(
        "http",
        {
            "score": math.nan,
            "limit": -math.inf,
            "body": b"hi\xff",
            "items": (1.5, math.inf),
            "blobs": (b"a",),
        },
    )["attributes"]
    assert foreign == {
        "score": "NaN",
        "limit": "-Infinity",
        "body": "hi\ufffd",
        "items": [1.5, "Infinity"],
        "blobs": ["a"],
    }
    tool = _record_line(
        A.SPAN_TOOL_EXECUTION,
        {
            A.GEN_AI_TOOL_CALL_ARGUMENTS: '{"x": NaN, "y": [Infinity, -Infinity]}',
            A.GEN_AI_TOOL_CALL_RESULT: "NaN",
        },
    )
    assert tool["input"] == {"x": "NaN", "y": ["Infinity", "-Infinity"]}
    assert tool["output"] == "NaN"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\ud800b", "a?b"),  # a lone surrogate: msgspec raises, the json module's path mends it
        (10**30, 10**30),  # past 64 bits
        (Decimal("1.5"), "1.5"),
        (_Text("sub"), "sub"),  # a str subclass: msgspec raises
        ({1: "a", None: "b"}, {"1": "a", "null": "b"}),  # a None key: msgspec raises
    ],
)
def test_values_msgspec_refuses_take_the_careful_path(value: Any, expected: Any) -> None:
    """A record holding a value msgspec cannot encode is still written whole, as strict JSON."""
    from steptrace._jsonl import encode_record

    line = encode_record({"run_id": "r", "step": 1, "type": "tool_call", "output": value})
    assert strict_loads(line) == {"run_id": "r", "step": 1, "type": "tool_call", "output": expected}


def test_an_arbitrary_object_is_written_as_its_bounded_repr() -> None:
    """An object of no JSON type in a record: the record is written, the object as its repr."""
    from steptrace._jsonl import encode_record

    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert strict_loads(encode_record({"run_id": "r", "output": Thing()}))["output"] == "<thing>"


def test_a_record_of_plain_values_is_msgspecs_line() -> None:
    """The common record (text, numbers, lists of text) is written as msgspec encodes it."""
    import json

    from steptrace._jsonl import encode_record

    record = {
        "run_id": "r",
        "step": 1,
        "type": "llm_call",
        "ts": 1.5,
        "finish_reasons": ["stop"],
        "input": {"a": [1]},
    }
    assert encode_record(record) == json.dumps(record, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("served", [False, True])
def test_struct_records_write_what_the_dict_records_hold(served: bool) -> None:
    """Tool and model call records are built as msgspec Structs on the step log's path: each line
    holds exactly the keys and values (in the schema's order) of the plain dict ``build_record``
    returns for the same span, optional keys included only when set."""
    import json

    from steptrace._jsonl import encode_record, span_to_record
    from steptrace._records import build_record

    extra = {A.RERUN_SERVED: True, A.GUARD_NAME: "budget", A.LLM_COST_USD: 0.5} if served else {}
    for name, attributes in [
        (A.SPAN_TOOL_EXECUTION, {A.GEN_AI_TOOL_NAME: "search", A.GEN_AI_TOOL_CALL_ARGUMENTS: '{"q": 1}'}),
        (A.SPAN_LLM_REQUEST, {A.GEN_AI_REQUEST_MODEL: "m", A.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",)}),
    ]:
        span = (
            TracerProvider()
            .get_tracer("t")
            .start_span(name, attributes={A.RUN_ID: "r", **attributes, **extra})
        )
        span.set_status(trace.StatusCode.ERROR, "boom")
        span.end()
        readable = span._readable_span()  # type: ignore[attr-defined]
        record = span_to_record(readable)
        assert record is not None
        plain = build_record(
            name=name,
            trace_id=readable.context.trace_id,
            span_id=readable.context.span_id,
            parent_span_id=None,
            start_ns=readable.start_time,
            end_ns=readable.end_time,
            status="error",
            status_description="boom",
            attributes=dict(readable.attributes),
        )
        assert type(plain) is dict
        line = encode_record(record)
        assert line == json.dumps(plain, separators=(",", ":")).encode() + b"\n"
        assert ("served" in record) is served and record.get("guard") == ("budget" if served else None)
        assert list(json.loads(line)) == list(plain)
