"""Histograms: names, units, advised buckets, bounded attributes."""

from __future__ import annotations

import pytest

import steptrace
from steptrace import _attributes as A
from steptrace._metrics import DURATION_BUCKETS_S, TOKEN_BUCKETS
from steptrace.testing import Capture


@steptrace.tool
def add(a: int, b: int) -> int:
    return a + b


@steptrace.tool
def broken() -> None:
    raise TimeoutError("upstream slow")


def _run(capture: Capture) -> None:
    with steptrace.agent_run(agent="calc") as run:
        with steptrace.agent_step():
            with steptrace.llm_request(model="gpt-4o", provider="openai") as llm:
                llm.record_usage(input_tokens=100, output_tokens=20, stop_reason="tool_calls")
            add(1, 2)
            with pytest.raises(TimeoutError):
                broken()
        with steptrace.agent_step():
            run.stop_reason = "end_turn"


def test_histograms_use_the_conventions_names_units_and_buckets(steptrace_capture: Capture) -> None:
    """Dashboards built on the GenAI metric names and buckets work unchanged."""
    _run(steptrace_capture)
    data = steptrace_capture.metric_reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert metrics[A.METRIC_OPERATION_DURATION].unit == "s"
    assert metrics[A.METRIC_TOKEN_USAGE].unit == "{token}"
    (duration,) = metrics[A.METRIC_OPERATION_DURATION].data.data_points
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS_S  # type: ignore[union-attr]
    tokens = {p.attributes[A.GEN_AI_TOKEN_TYPE]: p for p in metrics[A.METRIC_TOKEN_USAGE].data.data_points}  # type: ignore[index]
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS  # type: ignore[union-attr]
    assert tokens["input"].sum == 100 and tokens["output"].sum == 20  # type: ignore[union-attr]
    assert set(metrics) >= {
        A.METRIC_OPERATION_DURATION,
        A.METRIC_TOKEN_USAGE,
        A.METRIC_EXECUTE_TOOL_DURATION,
        A.METRIC_INVOKE_AGENT_DURATION,
        A.METRIC_AGENT_STEP_DURATION,
    }


def test_tool_duration_per_tool_and_error_type(steptrace_capture: Capture) -> None:
    """Tool latency is split by tool name, and failures carry error.type."""
    _run(steptrace_capture)
    points = steptrace_capture.histogram_points(A.METRIC_EXECUTE_TOOL_DURATION)
    by_tool = {dict(p.attributes or {})[A.GEN_AI_TOOL_NAME]: p for p in points}
    assert by_tool["add"].count == 1
    assert dict(by_tool["broken"].attributes or {})[A.ERROR_TYPE] == "TimeoutError"


def test_step_duration_says_which_step_ended_the_run(steptrace_capture: Capture) -> None:
    """The step-time histogram separates the final step from the others."""
    _run(steptrace_capture)
    points = steptrace_capture.histogram_points(A.METRIC_AGENT_STEP_DURATION)
    ends = sorted((dict(p.attributes or {})[A.METRIC_ENDS_RUN], p.count) for p in points)
    assert ends == [(False, 1), (True, 1)]
    assert all(dict(p.attributes or {})[A.GEN_AI_AGENT_NAME] == "calc" for p in points)


def test_no_metric_carries_run_or_step_ids(steptrace_capture: Capture) -> None:
    """Metric cardinality stays bounded however many runs there are."""
    for _ in range(5):
        _run(steptrace_capture)
    data = steptrace_capture.metric_reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    keys = set(point.attributes or {})
                    assert not keys & {A.RUN_ID, A.STEP, A.AGENT_STEP_ID, A.AGENT_STEP_NUMBER}, metric.name
    (agent_point,) = steptrace_capture.histogram_points(A.METRIC_INVOKE_AGENT_DURATION)
    assert agent_point.count == 5
