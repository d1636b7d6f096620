"""The GenAI semantic conventions (v1.41 and the semantic-conventions-genai branch after it):
advised histogram buckets, which metric carries ``error.type``, ``gen_ai.system_instructions``
for Anthropic ``system=`` and Responses ``instructions=``, and Anthropic's ``pause_turn``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace import ReadableSpan

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace._response import normalize_stop_reason
from steptrace.analysis import debug_run, diff, load
from steptrace.testing import Capture

# Advised boundaries, copied from the conventions' text (gen-ai-metrics.md).
OPERATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
AGENT_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)


def point_attributes(point: HistogramDataPoint) -> dict[str, Any]:
    return dict(point.attributes or {})


def bucket_of(point: HistogramDataPoint) -> int:
    """Index of the one bucket holding the point's only measurement."""
    (index,) = [i for i, count in enumerate(point.bucket_counts) if count]
    return index


# --- 1. advised bucket boundaries ---------------------------------------------------------------
def test_invoke_agent_duration_uses_the_agent_buckets(steptrace_capture: Capture) -> None:
    """A 100 s and a 300 s run land in their own buckets, not both in the one past 81.92 s."""
    for seconds in (100.0, 300.0):
        with steptrace.agent_run(agent=f"slow-{int(seconds)}") as run:
            run._started -= seconds  # as if the run had started that long ago
    points = {
        point_attributes(p)[A.GEN_AI_AGENT_NAME]: p
        for p in steptrace_capture.histogram_points(A.METRIC_INVOKE_AGENT_DURATION)
    }
    assert tuple(points["slow-100"].explicit_bounds) == AGENT_BUCKETS
    assert bucket_of(points["slow-100"]) == AGENT_BUCKETS.index(102.4)  # (51.2, 102.4]
    assert bucket_of(points["slow-300"]) == AGENT_BUCKETS.index(409.6)  # (204.8, 409.6]


def test_execute_tool_duration_uses_the_advised_buckets(steptrace_capture: Capture) -> None:
    """gen_ai.execute_tool.duration has the conventions' boundaries, so it merges with peers'."""
    with steptrace.agent_run(agent="calc"), steptrace.tool("add"):
        pass
    (point,) = steptrace_capture.histogram_points(A.METRIC_EXECUTE_TOOL_DURATION)
    assert tuple(point.explicit_bounds) == OPERATION_BUCKETS


def test_agent_step_duration_reaches_past_82_seconds(steptrace_capture: Capture) -> None:
    """A 150 s step (a slow model call plus its tools) is not lost in an overflow bucket."""
    with steptrace.agent_run(agent="slow"), steptrace.agent_step() as step:
        step._started -= 150.0
    (point,) = steptrace_capture.histogram_points(A.METRIC_AGENT_STEP_DURATION)
    assert tuple(point.explicit_bounds) == AGENT_BUCKETS
    assert bucket_of(point) == AGENT_BUCKETS.index(204.8)


# --- 3. error.type: on durations only; _OTHER when the type is unknown ---------------------------
def test_token_usage_and_ttft_carry_no_error_type(steptrace_capture: Capture) -> None:
    """A failed streamed call's tokens and TTFT keep the conventions' attributes; its duration says why."""
    with pytest.raises(TimeoutError), steptrace.llm_request(model="m", provider="openai") as llm:
        llm.first_chunk()
        llm.record_usage(input_tokens=10, output_tokens=2)
        raise TimeoutError
    (duration,) = steptrace_capture.histogram_points(A.METRIC_OPERATION_DURATION)
    assert point_attributes(duration)[A.ERROR_TYPE] == "TimeoutError"
    tokens = steptrace_capture.histogram_points(A.METRIC_TOKEN_USAGE)
    assert sorted(point_attributes(p)[A.GEN_AI_TOKEN_TYPE] for p in tokens) == ["input", "output"]
    (ttft,) = steptrace_capture.histogram_points(A.METRIC_TIME_TO_FIRST_CHUNK)
    for point in [*tokens, ttft]:
        assert A.ERROR_TYPE not in point_attributes(point)


def test_failure_without_an_exception_is_error_type_other(steptrace_capture: Capture) -> None:
    """fail("...") gives the conventions' fallback _OTHER on the duration histograms."""
    with steptrace.agent_run(agent="a") as run:
        with steptrace.llm_request(model="m", provider="openai") as llm:
            llm.fail("the provider said no")
        with steptrace.tool("lookup") as tool:
            tool.fail("not found")
        run.fail("gave up")
    for name in (A.METRIC_OPERATION_DURATION, A.METRIC_EXECUTE_TOOL_DURATION, A.METRIC_INVOKE_AGENT_DURATION):
        (point,) = steptrace_capture.histogram_points(name)
        assert point_attributes(point).get(A.ERROR_TYPE) == A.ERROR_TYPE_OTHER, name


# --- 2. system instructions --------------------------------------------------------------------
def only_llm_attributes(capture: Capture) -> dict[str, Any]:
    spans: list[ReadableSpan] = capture.spans_named(A.SPAN_LLM_REQUEST)
    assert len(spans) == 1
    return dict(spans[0].attributes or {})


@pytest.fixture
def anthropic_instrumented() -> Iterator[None]:
    steptrace.instrument_anthropic()
    yield
    steptrace.uninstrument_anthropic()


@pytest.fixture
def openai_instrumented() -> Iterator[None]:
    steptrace.instrument_openai()
    yield
    steptrace.uninstrument_openai()


ANTHROPIC_CALL: dict[str, Any] = {
    "model": "claude-test-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.mark.usefixtures("anthropic_instrumented")
@pytest.mark.parametrize(
    "system",
    ["Be brief", [{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral"}}]],
    ids=["string", "blocks"],
)
def test_anthropic_system_goes_to_system_instructions(steptrace_capture: Capture, system: Any) -> None:
    """messages.create(system=...) records the system prompt as gen_ai.system_instructions."""
    client = F.anthropic_client(F.Script(F.json_reply(F.anthropic_message())))
    client.messages.create(**ANTHROPIC_CALL, system=system)
    got = only_llm_attributes(steptrace_capture)
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief"}]
    assert [m["role"] for m in json.loads(got[A.GEN_AI_INPUT_MESSAGES])] == ["user"]


@pytest.mark.usefixtures("anthropic_instrumented")
def test_anthropic_stream_system_instructions_are_redacted(steptrace_capture: Capture) -> None:
    """messages.stream(system=...) records them too, redacted like the messages."""
    events = F.anthropic_events(["Hel", "lo"])
    client = F.anthropic_client(F.Script(F.sse_reply(F.anthropic_sse(events))))
    system = "Use Authorization: Bearer abc.DEF-123_xyz~+/= for the API"
    with client.messages.stream(**ANTHROPIC_CALL, system=system) as stream:
        stream.get_final_message()
    text = only_llm_attributes(steptrace_capture)[A.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert "abc.DEF-123" not in text and "[REDACTED:bearer-token]" in text


@pytest.mark.usefixtures("anthropic_instrumented")
def test_anthropic_system_instructions_need_content_capture(steptrace_capture: Capture) -> None:
    """With content capture off, the system prompt is not recorded at all."""
    steptrace_capture.configure(capture_content=False)
    client = F.anthropic_client(F.Script(F.json_reply(F.anthropic_message())))
    client.messages.create(**ANTHROPIC_CALL, system="secret persona")
    got = only_llm_attributes(steptrace_capture)
    assert A.GEN_AI_SYSTEM_INSTRUCTIONS not in got and A.GEN_AI_INPUT_MESSAGES not in got


@pytest.mark.usefixtures("openai_instrumented")
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_responses_instructions_go_to_system_instructions(steptrace_capture: Capture, stream: bool) -> None:
    """responses.create(instructions=...) records them as gen_ai.system_instructions."""
    reply = (
        F.sse_reply(F.responses_sse(F.response_events(["Pa", "ris"])))
        if stream
        else F.json_reply(F.response_object("Paris"))
    )
    client = F.openai_client(F.Script(reply))
    result = client.responses.create(
        model="gpt-4.1", input="Capital?", instructions="Be terse", stream=stream
    )
    if stream:
        for _event in result:  # type: ignore[union-attr]
            pass
    got = only_llm_attributes(steptrace_capture)
    assert json.loads(got[A.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be terse"}]
    assert [m["role"] for m in json.loads(got[A.GEN_AI_INPUT_MESSAGES])] == ["user"]


@pytest.mark.usefixtures("anthropic_instrumented", "openai_instrumented")
def test_async_clients_record_system_instructions(steptrace_capture: Capture) -> None:
    """AsyncAnthropic system= and AsyncOpenAI instructions= land in gen_ai.system_instructions."""
    anthropic_client = F.async_anthropic_client(F.Script(F.json_reply(F.anthropic_message())))
    openai_client = F.async_openai_client(F.Script(F.json_reply(F.response_object("Paris"))))

    async def calls() -> None:
        await anthropic_client.messages.create(**ANTHROPIC_CALL, system="Be brief")
        await openai_client.responses.create(model="gpt-4.1", input="Capital?", instructions="Be terse")

    asyncio.run(calls())
    spans = steptrace_capture.spans_named(A.SPAN_LLM_REQUEST)
    got = {
        dict(s.attributes or {})[A.GEN_AI_PROVIDER_NAME]: json.loads(
            str(dict(s.attributes or {})[A.GEN_AI_SYSTEM_INSTRUCTIONS])
        )
        for s in spans
    }
    assert got == {
        "anthropic": [{"type": "text", "content": "Be brief"}],
        "openai": [{"type": "text", "content": "Be terse"}],
    }


@pytest.mark.usefixtures("openai_instrumented")
def test_chat_system_message_stays_in_input_messages(steptrace_capture: Capture) -> None:
    """A chat system message is part of the history: it stays in gen_ai.input.messages."""
    client = F.openai_client(F.Script(F.json_reply(F.chat_completion())))
    messages = [{"role": "system", "content": "Be terse"}, {"role": "user", "content": "Capital?"}]
    client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    got = only_llm_attributes(steptrace_capture)
    assert A.GEN_AI_SYSTEM_INSTRUCTIONS not in got
    assert [m["role"] for m in json.loads(got[A.GEN_AI_INPUT_MESSAGES])] == ["system", "user"]


# --- 4. pause_turn ---------------------------------------------------------------------------------
def test_pause_turn_is_its_own_stop_reason() -> None:
    """A paused turn is not a finished one: pause_turn keeps its name; end_turn is unchanged."""
    assert normalize_stop_reason("pause_turn") == A.STOP_PAUSE_TURN == "pause_turn"
    assert normalize_stop_reason("end_turn") == A.STOP_END_TURN


@pytest.mark.usefixtures("anthropic_instrumented")
def test_anthropic_pause_turn_on_the_span_and_record(steptrace_capture: Capture) -> None:
    """A real SDK reply with stop_reason pause_turn reads pause_turn in the span and step record."""
    body = F.anthropic_message("Searching...", stop_reason="pause_turn")
    client = F.anthropic_client(F.Script(F.json_reply(body)))
    with steptrace.agent_run(agent="researcher"), steptrace.agent_step():
        client.messages.create(**ANTHROPIC_CALL)
    got = only_llm_attributes(steptrace_capture)
    assert got[A.STOP_REASON] == "pause_turn"
    assert got[A.GEN_AI_RESPONSE_FINISH_REASONS] == ("pause_turn",)
    (llm_record,) = [r for r in steptrace_capture.records if r["type"] == "llm_call"]
    assert llm_record["stop_reason"] == "pause_turn"


def test_paused_runs_are_neither_failed_nor_finished_in_analysis(steptrace_capture: Capture) -> None:
    """diff does not count pause_turn as better or worse; debug does not call it a model failure."""
    for reason in ("end_turn", "pause_turn"):
        with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
            with steptrace.llm_request(model="m", provider="anthropic") as llm:
                llm.record_usage(input_tokens=1, output_tokens=1, stop_reason=reason)
            run.stop_reason = normalize_stop_reason(reason)
    runs = list(load(steptrace_capture.jsonl_path))
    (paused,) = [r for r in runs if r.stop_reason == "pause_turn"]
    assert not [h for h in debug_run(paused).hypotheses if h.kind == "model_failure"]
    finished = [r for r in runs if r is not paused]
    stops = {m.name: m for m in diff(finished, runs).stop_reasons}
    assert stops["stop_reason[pause_turn]"].direction not in ("better", "worse")
