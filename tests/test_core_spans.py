"""The four span kinds: names, kinds, parent links, GenAI attributes, run totals, stop reasons."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture


@steptrace.tool
def search_documents(query: str, limit: int = 3) -> dict[str, list[str]]:
    """Search the documents."""
    return {"hits": [query] * limit}


@steptrace.tool(name="lookup")
def failing_lookup(key: str) -> str:
    raise KeyError(key)


def _agent(capture: Capture) -> str:
    with steptrace.agent_run(agent="researcher", release="v1.4.2", conversation_id="conv-1") as run:
        with steptrace.agent_step():
            with steptrace.llm_request(model="claude-sonnet-4-6", provider="anthropic") as llm:
                llm.record_usage(input_tokens=120, output_tokens=30, stop_reason="tool_use")
            search_documents(query="Q3 revenue")
        with steptrace.agent_step() as step:
            with steptrace.llm_request(model="claude-sonnet-4-6", provider="anthropic") as llm:
                llm.record_usage(input_tokens=200, output_tokens=50, stop_reason="end_turn")
            step.stop_reason = "end_turn"
        return run.run_id


def test_span_names_kinds_and_parents(steptrace_capture: Capture) -> None:
    """A backend groups on span names and draws the tree from parent links."""
    _agent(steptrace_capture)
    spans = {s.context.span_id: s for s in steptrace_capture.spans}
    names = sorted(s.name for s in spans.values())
    assert names == sorted(
        ["agent_run", "agent_step", "agent_step", "llm_request", "llm_request", "tool_execution"]
    )
    (run,) = steptrace_capture.spans_named("agent_run")
    assert run.parent is None
    steps = steptrace_capture.spans_named("agent_step")
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in steps)
    step_ids = {s.context.span_id for s in steps}
    for span in steptrace_capture.spans_named("llm_request") + steptrace_capture.spans_named(
        "tool_execution"
    ):
        assert span.parent is not None and span.parent.span_id in step_ids
    kinds = {s.name: s.kind for s in spans.values()}
    assert kinds == {
        "agent_run": SpanKind.INTERNAL,
        "agent_step": SpanKind.INTERNAL,
        "llm_request": SpanKind.CLIENT,
        "tool_execution": SpanKind.INTERNAL,
    }
    assert len({s.context.trace_id for s in spans.values()}) == 1


def test_genai_attributes(steptrace_capture: Capture) -> None:
    """The GenAI semantic-convention keys a backend's LLM view reads are present and exact."""
    run_id = _agent(steptrace_capture)
    (run,) = steptrace_capture.spans_named("agent_run")
    assert run.attributes is not None
    assert run.attributes[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert run.attributes[A.GEN_AI_AGENT_NAME] == "researcher"
    assert run.attributes[A.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert run.attributes[A.RUN_ID] == run_id
    llm = steptrace_capture.spans_named("llm_request")[0]
    assert llm.attributes is not None
    assert llm.attributes[A.GEN_AI_OPERATION_NAME] == "chat"
    assert llm.attributes[A.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert llm.attributes[A.GEN_AI_REQUEST_MODEL] == "claude-sonnet-4-6"
    assert llm.attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert llm.attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert tuple(llm.attributes[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ("tool_use",)  # type: ignore[arg-type]
    assert "gen_ai.system" not in llm.attributes
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert tool.attributes is not None
    assert tool.attributes[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool.attributes[A.GEN_AI_TOOL_NAME] == "search_documents"
    assert len(str(tool.attributes[A.TOOL_ARGS_HASH])) == 16


def test_run_totals_and_stop_reason(steptrace_capture: Capture) -> None:
    """The run span answers 'how many turns, tools and tokens, and why did it stop'."""
    _agent(steptrace_capture)
    (run,) = steptrace_capture.spans_named("agent_run")
    attributes = dict(run.attributes or {})
    assert attributes[A.STOP_REASON] == "end_turn"
    assert attributes[A.RUN_STEPS] == 2
    assert attributes[A.RUN_LLM_CALLS] == 2
    assert attributes[A.RUN_TOOL_CALLS] == 1
    assert attributes[A.RUN_INPUT_TOKENS] == 320
    assert attributes[A.RUN_OUTPUT_TOKENS] == 80
    assert attributes[A.RUN_ERRORS] == 0
    assert attributes[A.RUN_LLM_CALLS_WITHOUT_USAGE] == 0
    assert A.STEP not in attributes
    ending = [
        s
        for s in steptrace_capture.spans_named("agent_step")
        if (s.attributes or {}).get(A.AGENT_STEP_ENDS_RUN)
    ]
    assert len(ending) == 1 and (ending[0].attributes or {})[A.AGENT_STEP_NUMBER] == 2


def test_step_sequence_numbers_follow_start_order(steptrace_capture: Capture) -> None:
    """Every span inside a run carries step 1..n in start order; agent steps count 1, 2 separately."""
    _agent(steptrace_capture)
    spans = sorted(steptrace_capture.spans, key=lambda s: s.start_time or 0)
    sequence = [(s.attributes or {}).get(A.STEP) for s in spans if s.name != "agent_run"]
    assert sequence == [1, 2, 3, 4, 5]
    numbers = [(s.attributes or {})[A.AGENT_STEP_NUMBER] for s in spans if s.name == "agent_step"]
    assert numbers == [1, 2]


def test_default_stop_reason_is_error_when_an_exception_escapes(steptrace_capture: Capture) -> None:
    """A run that crashed says so, and the user's exception comes out unchanged."""
    boom = RuntimeError("model went away")
    with pytest.raises(RuntimeError) as raised, steptrace.agent_run(agent="a"):
        raise boom
    assert raised.value is boom
    (run,) = steptrace_capture.spans_named("agent_run")
    assert (run.attributes or {})[A.STOP_REASON] == "error"
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})[A.ERROR_TYPE] == "RuntimeError"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), asyncio.CancelledError()])
def test_stop_reason_cancelled(steptrace_capture: Capture, interrupt: BaseException) -> None:
    """Ctrl-C or task cancellation is reported as 'cancelled', not as a failure."""
    with pytest.raises(type(interrupt)), steptrace.agent_run(agent="a"):
        raise interrupt
    (run,) = steptrace_capture.spans_named("agent_run")
    assert (run.attributes or {})[A.STOP_REASON] == "cancelled"
    assert run.status.status_code is not StatusCode.ERROR


def test_tool_error_event_and_type(steptrace_capture: Capture) -> None:
    """A failing tool shows error.type, a bounded traceback event, and the error count."""
    with steptrace.agent_run(agent="a"), pytest.raises(KeyError):
        failing_lookup("missing")
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert tool.status.status_code is StatusCode.ERROR
    assert (tool.attributes or {})[A.ERROR_TYPE] == "KeyError"
    (event,) = [e for e in tool.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "KeyError"
    assert "failing_lookup" in str(event.attributes["exception.stacktrace"])
    (run,) = steptrace_capture.spans_named("agent_run")
    assert (run.attributes or {})[A.RUN_ERRORS] == 1


def test_error_type_names_third_party_classes_by_public_path(steptrace_capture: Capture) -> None:
    """error.type tells which library raised, without its private module names."""
    import json

    with steptrace.agent_run(agent="a"), pytest.raises(json.JSONDecodeError), steptrace.tool("parse"):
        json.loads("{")
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert (tool.attributes or {})[A.ERROR_TYPE] == "json.decoder.JSONDecodeError"


def test_foreign_spans_inside_a_run_carry_run_id(steptrace_capture: Capture) -> None:
    """HTTP or database spans of other instrumentations can be pulled up by run_id."""
    other = steptrace_capture.tracer_provider.get_tracer("httpx-instrumentation")
    with steptrace.agent_run(agent="a") as run:
        with other.start_as_current_span("GET /search"):
            pass
    with other.start_as_current_span("outside"):
        pass
    spans = {s.name: s for s in steptrace_capture.spans}
    assert (spans["GET /search"].attributes or {})[A.RUN_ID] == run.run_id
    assert A.RUN_ID not in (spans["outside"].attributes or {})
    records = {r["name"]: r for r in steptrace_capture.records}
    assert records["GET /search"]["type"] == "span"
    assert "outside" not in records


def test_nested_run_has_its_own_id_and_parent_run(steptrace_capture: Capture) -> None:
    """A sub-agent's run is separate but points back at the run that started it."""
    with steptrace.agent_run(agent="outer") as outer, steptrace.agent_step():
        with steptrace.agent_run(agent="inner") as inner, steptrace.agent_step() as step:
            assert step.number == 1
    runs = {(s.attributes or {})[A.GEN_AI_AGENT_NAME]: s for s in steptrace_capture.spans_named("agent_run")}
    assert (runs["inner"].attributes or {})[A.PARENT_RUN_ID] == outer.run_id
    assert inner.run_id != outer.run_id


def test_handles_work_without_configure() -> None:
    """Code written against the handles runs unchanged when tracing is off."""
    with steptrace.agent_run(agent="a") as run:
        assert len(run.run_id) == 32
        with steptrace.agent_step() as step:
            assert step.number == 1
            with steptrace.llm_request(model="m") as llm:
                llm.record_usage(input_tokens=1, output_tokens=2, stop_reason="stop")
            step.stop_reason = "end_turn"
        with steptrace.agent_step() as step:
            assert step.number == 2
    assert run.stop_reason == "end_turn"
    assert search_documents("x", limit=1) == {"hits": ["x"]}


def test_run_counts_llm_calls_without_usage(steptrace_capture: Capture) -> None:
    """Token totals say when they are incomplete instead of silently counting missing usage as 0."""
    with steptrace.agent_run(agent="a"):
        with steptrace.llm_request(model="m") as llm:
            llm.record_usage(input_tokens=5, output_tokens=1)
        with steptrace.llm_request(model="m"):
            pass
    (record,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert record["llm_calls"] == 2
    assert record["llm_calls_without_usage"] == 1
    assert record["input_tokens"] == 5
