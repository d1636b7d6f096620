"""End to end: the quickstart agent's spans in a real Arize Phoenix, its metrics in a real collector.

Phoenix (``phoenix serve`` from ``.venv-phoenix``) runs on 127.0.0.1 with a throwaway working
directory; the quickstart runs as a user would run it, configured only by environment variables,
once over gRPC and once over http/protobuf. Spans are read back through Phoenix's REST API and
compared with the JSONL step log written in the same run; metrics go to rotel, a real OTLP
collector, and are read from its debug output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otlp_servers import ROOT, Phoenix, Rotel, free_port, run_python, wait_until
from steptrace import _attributes as A

pytestmark = pytest.mark.integration

HIGH_CARDINALITY = {A.RUN_ID, A.PARENT_RUN_ID, A.STEP, A.AGENT_STEP_ID, A.GEN_AI_RESPONSE_ID}


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """One Phoenix for both protocols; its process group is stopped at the end."""
    server = Phoenix(tmp_path_factory.mktemp("phoenix"))
    try:
        yield server
    finally:
        server.stop()


def run_quickstart(
    tmp_path: Path, protocol: str, traces_endpoint: str, metrics_endpoint: str, project: str
) -> tuple[list[dict[str, Any]], str]:
    """Run examples/quickstart.py as a user would; its step records and its stderr."""
    jsonl = tmp_path / "logs" / "steps.jsonl"
    result = run_python(
        ROOT / "examples" / "quickstart.py",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": traces_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": metrics_endpoint,
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
            "STEPTRACE_JSONL_PATH": str(jsonl),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records, "the quickstart wrote no step records"
    return records, result.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_quickstart_spans_in_phoenix_match_the_step_log(
    protocol: str, phoenix: Phoenix, tmp_path: Path
) -> None:
    """In production the agent's trace would be missing from the backend, broken into orphans,
    lack run_id or GenAI attributes, or carry ids that do not match the local step log."""
    rotel = Rotel(tmp_path, grpc_port=free_port(), http_port=free_port(), signal_="metrics")
    try:
        if protocol == "grpc":
            traces = f"http://127.0.0.1:{phoenix.grpc_port}"
            metrics = f"http://127.0.0.1:{rotel.grpc_port}"
        else:
            traces = phoenix.base_url
            metrics = f"http://127.0.0.1:{rotel.http_port}/v1/metrics"
        project = f"steptrace-e2e-{protocol.replace('/', '-')}"
        records, stderr = run_quickstart(tmp_path, protocol, traces, metrics, project)
        received_metrics = wait_until(
            lambda: (
                (found := rotel.metrics())
                and {A.METRIC_OPERATION_DURATION, A.METRIC_TOKEN_USAGE} <= found.keys()
                and found
            ),
            timeout_s=20,
            what="the quickstart's metrics at the collector",
        )
    finally:
        rotel.stop()
    assert "steptrace:" not in stderr, stderr  # a healthy collector: no warning at all

    trace_ids = {record["trace_id"] for record in records}
    assert len(trace_ids) == 1
    (trace_id,) = trace_ids
    expected = {record["span_id"]: record for record in records}
    spans = wait_until(
        lambda: len(found := phoenix.spans(trace_id, project)) >= len(expected) and found,
        timeout_s=30,
        what=f"{len(expected)} spans of trace {trace_id} in Phoenix",
    )
    by_id = {span["context"]["span_id"]: span for span in spans}
    assert by_id.keys() == expected.keys()

    for span_id, record in expected.items():
        span = by_id[span_id]
        attributes = span["attributes"]
        assert span["name"] == record["name"]
        assert span["context"]["trace_id"] == record["trace_id"]
        assert span["parent_id"] == record["parent_span_id"]
        assert attributes[A.RUN_ID] == record["run_id"]
        if record["type"] == "llm_call":
            assert attributes[A.GEN_AI_OPERATION_NAME] == A.OPERATION_CHAT
            assert attributes[A.GEN_AI_PROVIDER_NAME] == record["provider"]
            assert attributes[A.GEN_AI_RESPONSE_MODEL] == record["model"]
            assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == record["input_tokens"]
            assert attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] == record["output_tokens"]
            assert span["span_kind"] == "LLM"  # Phoenix understood the GenAI attributes
        elif record["type"] == "tool_call":
            assert attributes[A.GEN_AI_OPERATION_NAME] == A.OPERATION_EXECUTE_TOOL
            assert attributes[A.GEN_AI_TOOL_NAME] == record["tool"]
            failed = record["status"] == "error"
            assert (span["status_code"] == "ERROR") == failed
            if failed:
                assert span["status_message"] == record["error"]
        elif record["type"] == "run":
            assert attributes[A.GEN_AI_OPERATION_NAME] == A.OPERATION_INVOKE_AGENT
            assert attributes[A.GEN_AI_AGENT_NAME] == record["agent"]
    names = {record["name"] for record in records}
    assert names == set(A.STEPTRACE_SPAN_NAMES)
    roots = [span for span in spans if span["parent_id"] is None]
    assert [span["name"] for span in roots] == [A.SPAN_AGENT_RUN]

    for name, points in received_metrics.items():
        assert points, f"{name} arrived without data points"
        for point in points:
            assert not point.keys() & HIGH_CARDINALITY, (name, point)
    operations = {
        point.get(A.GEN_AI_OPERATION_NAME) for point in received_metrics[A.METRIC_OPERATION_DURATION]
    }
    assert A.OPERATION_CHAT in operations
