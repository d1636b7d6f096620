"""The step log's hot path reads span attributes from the SDK's plain dict (a private reach-in
that makes every span end several µs cheaper): if an SDK release moves it, the records stay right
through the public mapping, and these tests say the fast path is gone."""

from __future__ import annotations

from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider

from steptrace._context import BAGGAGE_AGENT_STEP, BAGGAGE_RUN_ID, attribute_dict, remote_run


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


def test_a_list_of_anything_but_text_takes_the_json_modules_path() -> None:
    """The fast encoder writes bytes as base64 and NaN as null: a record whose list holds either
    keeps the json module's readable text ("x", "NaN") instead, and a list of text stays fast
    and identical."""
    import json

    from steptrace._jsonl import encode_record

    head = {"run_id": "r", "step": 1, "type": "llm_call"}
    assert json.loads(encode_record({**head, "finish_reasons": ["stop", b"x"]}))["finish_reasons"] == [
        "stop",
        "x",
    ]
    line = encode_record({**head, "finish_reasons": ["stop", float("nan")]})
    assert json.loads(line)["finish_reasons"] == ["stop", "NaN"]
    assert encode_record({**head, "finish_reasons": ["stop", "length"]}) == (
        json.dumps({**head, "finish_reasons": ["stop", "length"]}, separators=(",", ":")).encode() + b"\n"
    )
