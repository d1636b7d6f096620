"""Baggage comes from the network: whatever a request's ``baggage`` header carries, no steptrace
block, decorator or span raises into the service, bad values are ignored and warned about once
per process (issue 21, item 1)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import StatusCode

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture

# The header of the report: a valid run id, and a step number that is a Unicode digit
# ('²'.isdigit() is true, int('²') raises).
HOSTILE_HEADER = "steptrace.run_id=abc,steptrace.agent_step.number=%C2%B2"

SPECS: dict[str, Callable[[], Any]] = {
    "agent_run": lambda: steptrace.agent_run(agent="a"),
    "agent_step": steptrace.agent_step,
    "tool": lambda: steptrace.tool("t"),
    "llm_request": lambda: steptrace.llm_request(model="m", provider="p"),
}
SPAN_OF = {
    "agent_run": A.SPAN_AGENT_RUN,
    "agent_step": A.SPAN_AGENT_STEP,
    "tool": A.SPAN_TOOL_EXECUTION,
    "llm_request": A.SPAN_LLM_REQUEST,
}


def extracted(header: str, how: str = "propagate") -> otel_context.Context:
    """What an OTel server instrumentation extracts from the request's headers."""
    carrier = {"baggage": header}
    if how == "propagate":
        return propagate.extract(carrier)
    return W3CBaggagePropagator().extract(carrier)


def call_in_shape(kind: str, shape: str) -> str:
    """One use of ``kind`` in ``shape``; returns what the user's code returned."""
    spec = SPECS[kind]
    if shape == "with":
        with spec():
            return "ok"
    if shape == "sync":

        @spec()
        def work() -> str:
            return "ok"

        return work()
    if shape == "async":

        @spec()
        async def awork() -> str:
            await asyncio.sleep(0)
            return "ok"

        return asyncio.run(awork())
    if shape == "generator":

        @spec()
        def items() -> Iterator[str]:
            yield "o"
            yield "k"

        return "".join(items())
    if shape == "async_generator":

        @spec()
        async def aitems() -> AsyncIterator[str]:
            yield "o"
            yield "k"

        async def collect() -> str:
            return "".join([item async for item in aitems()])

        return asyncio.run(collect())
    if shape == "async_with":

        async def block() -> str:
            async with spec():
                return "ok"

        return asyncio.run(block())
    raise AssertionError(shape)


SHAPES = ["with", "async_with", "sync", "async", "generator", "async_generator"]


@pytest.mark.parametrize("how", ["propagate", "w3c"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", list(SPECS))
def test_unicode_digit_step_number_in_baggage_does_not_break_the_service(
    steptrace_capture: Capture, caplog: pytest.LogCaptureFixture, kind: str, shape: str, how: str
) -> None:
    """``baggage: steptrace.run_id=abc,steptrace.agent_step.number=%C2%B2`` made every block raise
    ValueError into the request handler: a remote denial of service."""
    token = otel_context.attach(extracted(HOSTILE_HEADER, how))
    try:
        with caplog.at_level(logging.WARNING, logger="steptrace"):
            assert call_in_shape(kind, shape) == "ok"
    finally:
        otel_context.detach(token)
    (span,) = steptrace_capture.spans
    assert span.name == SPAN_OF[kind]
    assert span.status.status_code is not StatusCode.ERROR
    attributes = dict(span.attributes or {})
    if kind == "agent_run":  # a run of its own, started by a request of run "abc"
        assert attributes[A.PARENT_RUN_ID] == "abc"
    else:  # the valid run id is kept, the bad step number ignored
        assert attributes[A.RUN_ID] == "abc"
        assert attributes.get(A.AGENT_STEP_NUMBER) in (None, 1)  # 1: the step's own number
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if "baggage" in r.getMessage()]) <= 1


def test_foreign_spans_under_hostile_baggage_are_stamped_with_the_valid_run_only(
    steptrace_capture: Capture,
) -> None:
    """An HTTP or database span of another instrumentation, started under the hostile header."""
    tracer = steptrace_capture.tracer_provider.get_tracer("some.http.client")
    token = otel_context.attach(extracted(HOSTILE_HEADER))
    try:
        with tracer.start_as_current_span("GET /search"):
            pass
    finally:
        otel_context.detach(token)
    (span,) = steptrace_capture.spans
    assert dict(span.attributes or {}) == {A.RUN_ID: "abc"}


BAD_STEP_NUMBERS = ["²", "٣", "１", "-1", "0", "+3", " 3", "3 ", "1e3", "99999999999999999999", "", "3\x1b"]
BAD_RUN_IDS = ["", "x" * 129, "run\x1b[2J", "run\nid", "run\u2028id", "a\x00b", " "]


@pytest.mark.parametrize("number", BAD_STEP_NUMBERS)
def test_a_bad_step_number_is_ignored_and_the_run_kept(steptrace_capture: Capture, number: str) -> None:
    """Digits of other scripts, signs, zero, overflow: the step is unknown, the run still joins."""
    context = baggage.set_baggage(
        "steptrace.agent_step.number", number, baggage.set_baggage("steptrace.run_id", "r1")
    )
    token = otel_context.attach(context)
    try:
        with steptrace.tool("t"):
            pass
    finally:
        otel_context.detach(token)
    (span,) = steptrace_capture.spans
    attributes = dict(span.attributes or {})
    assert attributes[A.RUN_ID] == "r1"
    assert A.AGENT_STEP_NUMBER not in attributes


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_a_bad_run_id_is_ignored_with_its_step(steptrace_capture: Capture, run_id: str) -> None:
    """Empty, 129 characters, terminal escapes, line breaks: no run id is taken, nor its step."""
    context = baggage.set_baggage(
        "steptrace.agent_step.number", "2", baggage.set_baggage("steptrace.run_id", run_id)
    )
    token = otel_context.attach(context)
    try:
        with steptrace.tool("t"):
            pass
    finally:
        otel_context.detach(token)
    (span,) = steptrace_capture.spans
    attributes = dict(span.attributes or {})
    assert A.RUN_ID not in attributes
    assert A.AGENT_STEP_NUMBER not in attributes


def test_good_baggage_still_joins_the_callers_run_and_step(steptrace_capture: Capture) -> None:
    """The cross-process recipe keeps working: run id and step number from the caller's header."""
    token = otel_context.attach(extracted("steptrace.run_id=4f2a-run_1%3A7,steptrace.agent_step.number=12"))
    try:
        with steptrace.tool("t"):
            pass
    finally:
        otel_context.detach(token)
    (span,) = steptrace_capture.spans
    attributes = dict(span.attributes or {})
    assert attributes[A.RUN_ID] == "4f2a-run_1:7"
    assert attributes[A.AGENT_STEP_NUMBER] == 12


def test_hostile_baggage_warns_once_per_process(tmp_path: Any) -> None:
    """A service flooded with bad and random headers logs one warning, not one per request."""
    script = textwrap.dedent(
        f"""
        import logging
        from opentelemetry import propagate
        from opentelemetry import context as otel_context
        import steptrace

        logging.basicConfig(level=logging.WARNING, format="WARNING %(name)s %(message).300s")
        # OpenTelemetry's propagator warns about each oversized header itself; not ours to count
        logging.getLogger("opentelemetry").setLevel(logging.ERROR)
        steptrace.configure(service_name="svc", jsonl_path={str(tmp_path / "steps.jsonl")!r})
        for number in ["%C2%B2", "-1", "0", "x" * 300]:
            for _ in range(50):
                context = propagate.extract(
                    {{"baggage": "steptrace.run_id=abc,steptrace.agent_step.number=" + number}}
                )
                token = otel_context.attach(context)
                try:
                    with steptrace.tool("t"):
                        pass
                finally:
                    otel_context.detach(token)
        # then a flood of random headers: random bytes and code points, huge values, many entries
        import random
        from urllib.parse import quote
        rng = random.Random(21)
        for _ in range(300):
            entries = []
            for _ in range(rng.choice([1, 2, 5, 60])):
                size = rng.choice([0, 1, 3, 12, 200, 3000])
                value = "".join(chr(rng.randrange(0x110000 if rng.random() < 0.5 else 256))
                                for _ in range(size))
                key = rng.choice(["steptrace.run_id", "steptrace.agent_step.number", "k"])
                entries.append(key + "=" + quote(value, errors="replace"))
            token = otel_context.attach(propagate.extract({{"baggage": ",".join(entries)}}))
            try:
                with steptrace.agent_run(agent="a"), steptrace.agent_step(), steptrace.tool("t"):
                    pass
            finally:
                otel_context.detach(token)
        print("served")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "OTEL_SDK_DISABLED": "false"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "served"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING steptrace ")]
    assert len(warnings) == 1, done.stderr
    assert "baggage" in warnings[0]
    assert "Traceback" not in done.stderr


# --- fuzz: random headers and values, huge values, many entries --------------------------------
_KEYS = st.sampled_from(["steptrace.run_id", "steptrace.agent_step.number", "other", "steptrace.x"])
_VALUES = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")),
    st.integers().map(str),
    st.sampled_from(["²", "%C2%B2", "%FF%FE", "%", "=", ",", ";", "\x1b[31m", "9" * 5000, "a" * 10_000]),
)
_ENTRIES = st.lists(st.tuples(_KEYS, _VALUES), max_size=200)


def _assert_valid_stamps(capture: Capture) -> None:
    for span in capture.spans:
        attributes = dict(span.attributes or {})
        run_id = attributes.get(A.RUN_ID)
        if run_id is not None:
            assert isinstance(run_id, str) and 0 < len(run_id) <= 128 and run_id.isprintable()
        number = attributes.get(A.AGENT_STEP_NUMBER)
        if number is not None:
            assert type(number) is int and number >= 1


def _serve(capture: Capture, context: otel_context.Context) -> None:
    """A request handler's calls, under the extracted context: nothing may raise."""
    foreign = capture.tracer_provider.get_tracer("some.http.client")
    token = otel_context.attach(context)
    try:
        with steptrace.tool("t"), foreign.start_as_current_span("GET"):
            pass
        with steptrace.agent_run(agent="a"), steptrace.agent_step(), steptrace.llm_request(model="m"):
            pass
    finally:
        otel_context.detach(token)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")))
)
def test_fuzz_random_baggage_headers_never_raise(steptrace_capture: Capture, header: str) -> None:
    """Any header text at all, through the real W3C propagator."""
    steptrace_capture.clear()
    _serve(steptrace_capture, extracted(header))
    _assert_valid_stamps(steptrace_capture)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=_ENTRIES, quote=st.booleans())
def test_fuzz_baggage_entries_never_raise(
    steptrace_capture: Capture, entries: list[tuple[str, str]], quote: bool
) -> None:
    """Many entries, huge values, odd bytes: as a header, and as values set in-process."""
    steptrace_capture.clear()
    if quote:
        from urllib.parse import quote as percent

        header = ",".join(f"{key}={percent(value)}" for key, value in entries)
        context = extracted(header)
    else:
        context = otel_context.Context()
        for key, value in entries:
            context = baggage.set_baggage(key, value, context)
    _serve(steptrace_capture, context)
    _assert_valid_stamps(steptrace_capture)
    expected = dict(entries)
    if quote:
        return  # the propagator drops entries and headers over its own limits
    run_id = expected.get("steptrace.run_id")
    if run_id is None or not (0 < len(run_id) <= 128 and run_id.isprintable()):
        tools = [s for s in steptrace_capture.spans if s.name == A.SPAN_TOOL_EXECUTION]
        assert all(A.RUN_ID not in (s.attributes or {}) for s in tools)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.integers(), st.floats(), st.none(), st.lists(st.integers()), st.binary()))
def test_fuzz_non_text_baggage_values_never_raise(steptrace_capture: Capture, value: Any) -> None:
    """In-process code may put any object in baggage: never a run id or step number unless text."""
    steptrace_capture.clear()
    context = baggage.set_baggage("steptrace.run_id", value)
    context = baggage.set_baggage("steptrace.agent_step.number", value, context)
    _serve(steptrace_capture, context)
    _assert_valid_stamps(steptrace_capture)
    tools = [s for s in steptrace_capture.spans if s.name == A.SPAN_TOOL_EXECUTION]
    assert all(A.RUN_ID not in (s.attributes or {}) for s in tools)


# --- a failure of steptrace's own setup or finish never reaches the host -----------------------
class _BrokenProcessor(SpanProcessor):
    """Another vendor's span processor with a bug: the SDK calls it inside start_span/end."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start" and span.instrumentation_scope.name == A.INSTRUMENTATION_SCOPE:
            raise RuntimeError("vendor processor bug")

    def on_end(self, span: Any) -> None:
        if self.where == "end" and span.instrumentation_scope.name == A.INSTRUMENTATION_SCOPE:
            raise RuntimeError("vendor processor bug")


@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", list(SPECS))
def test_a_span_processor_failing_never_reaches_the_users_code(
    steptrace_capture: Capture,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    shape: str,
    where: str,
) -> None:
    """A span that cannot start or end: the user's code still runs and returns, nothing raised."""
    monkeypatch.setenv("STEPTRACE_RAISE_INTERNAL_ERRORS", "0")  # production behaviour
    steptrace_capture.tracer_provider.add_span_processor(_BrokenProcessor(where))
    outer = steptrace_capture.tracer_provider.get_tracer("app").start_span("request")
    token = otel_context.attach(trace.set_span_in_context(outer))
    try:
        with caplog.at_level(logging.WARNING, logger="steptrace"):
            assert call_in_shape(kind, shape) == "ok"
            if shape == "with":  # the body still sees the caller's span when setup failed
                with SPECS[kind]():
                    assert trace.get_current_span() is outer or where == "end"
    finally:
        otel_context.detach(token)
    assert "Traceback" not in caplog.text or "telemetry degraded" in caplog.text
