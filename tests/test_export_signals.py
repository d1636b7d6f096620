"""Each signal as the OpenTelemetry variables say: its own protocol and headers, ``none`` to turn
it off, a traces-only backend told once that it takes no metrics, and a short-lived program's
last metrics sent at exit even when its spans could not be.

Each case runs a real program in a subprocess against the fake collector on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export_servers import FakeCollector, fake_collector
from otlp_servers import free_port, run_python

pytestmark = pytest.mark.integration

AGENT = """
import json, os, time
import steptrace

telemetry = steptrace.configure(service_name="signals-agent")
for index in range(int(os.environ.get("AGENT_RUNS", "1"))):
    with steptrace.agent_run(agent="planner") as run:
        with steptrace.agent_step():
            pass
    time.sleep(float(os.environ.get("AGENT_PAUSE_S", "0")))
print(json.dumps({"run_id": run.run_id}))
"""


def run_agent(tmp_path: Path, env: dict[str, str]) -> tuple[str, list[str]]:
    """Run AGENT; its last run id and the lines it wrote to stderr."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    base = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
        "OTEL_TRACES_EXPORTER": "",
        "OTEL_METRICS_EXPORTER": "",
        "OTEL_EXPORTER_OTLP_HEADERS": "",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "",
        "STEPTRACE_JSONL_PATH": "",
    }
    result = run_python(script, {**base, **env}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    return run_id, [line for line in result.stderr.splitlines() if line.strip()]


def metric_names(collector: FakeCollector) -> set[str]:
    return {points.name for points in collector.metrics}


def test_traces_protocol_does_not_change_the_metrics_protocol(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc (traces to a gRPC receiver) would also send the
    metrics over gRPC, to the HTTP receiver OTEL_EXPORTER_OTLP_PROTOCOL names: none arrive."""
    with fake_collector() as collector:
        run_agent(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            },
        )
    assert "gen_ai.invoke_agent.duration" in metric_names(collector)
    assert "/v1/traces" not in collector.requests


def test_per_signal_headers_win_over_the_shared_ones_key_by_key(tmp_path: Path) -> None:
    """With OTEL_EXPORTER_OTLP_HEADERS set, a per-signal header (a separate token for metrics)
    would be ignored, and the backend would refuse the signal."""
    with fake_collector() as collector:
        run_agent(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=shared,x-team=ai",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=traces-token",
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "authorization=metrics-token,x-extra=1",
            },
        )
        traces = collector.headers["/v1/traces"][0]
        metrics = collector.headers["/v1/metrics"][0]
    assert (traces["authorization"], traces["x-team"]) == ("traces-token", "ai")
    assert "x-extra" not in traces
    assert (metrics["authorization"], metrics["x-team"], metrics["x-extra"]) == ("metrics-token", "ai", "1")


def test_metrics_exporter_none_sends_no_metrics(tmp_path: Path) -> None:
    """OTEL_METRICS_EXPORTER=none (the standard way to turn metrics off) would be ignored: the
    program keeps posting metrics to an endpoint that may not want them."""
    with fake_collector() as collector:
        run_agent(
            tmp_path,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_METRICS_EXPORTER": "none"},
        )
    assert "/v1/metrics" not in collector.requests
    assert {span.name for span in collector.spans} == {"agent_run", "agent_step"}


def test_traces_exporter_none_sends_no_spans_and_keeps_the_step_log(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=none would still send every span over OTLP, or would turn the
    JSONL step log off with it."""
    log = tmp_path / "logs" / "steps.jsonl"
    with fake_collector() as collector:
        run_id, _ = run_agent(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_TRACES_EXPORTER": "none",
                "STEPTRACE_JSONL_PATH": str(log),
            },
        )
    assert "/v1/traces" not in collector.requests
    assert "gen_ai.invoke_agent.duration" in metric_names(collector)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(r["run_id"], r["type"]) for r in records} == {(run_id, "run"), (run_id, "agent_step")}


def test_a_traces_only_backend_gets_one_clear_warning_and_no_more_metric_posts(tmp_path: Path) -> None:
    """Pointed at Arize Phoenix (405 on /v1/metrics), the program would print a vague metric
    export failure, keep posting metrics, and say nothing about OTEL_METRICS_EXPORTER=none."""
    with fake_collector(status={"/v1/metrics": 405}) as collector:
        _, stderr = run_agent(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_METRIC_EXPORT_INTERVAL": "100",
                "AGENT_RUNS": "8",
                "AGENT_PAUSE_S": "0.1",
            },
        )
        metric_posts = collector.requests.get("/v1/metrics", 0)
        assert {span.name for span in collector.spans} == {"agent_run", "agent_step"}
    assert len(stderr) == 1, stderr
    assert "does not accept OTLP metrics" in stderr[0]
    assert "OTEL_METRICS_EXPORTER=none" in stderr[0]
    assert f"127.0.0.1:{collector.port}/v1/metrics" in stderr[0]
    assert metric_posts == 1


def test_last_metrics_reach_the_collector_at_exit_while_spans_are_refused(tmp_path: Path) -> None:
    """A short-lived program whose span export just failed (503 on /v1/traces) would skip its
    last metric export at exit too: the run's durations never reach the collector."""
    with fake_collector(status={"/v1/traces": 503}) as collector:
        _, stderr = run_agent(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint})
    assert collector.requests.get("/v1/traces", 0) >= 1
    durations = [p for p in collector.metrics if p.name == "gen_ai.invoke_agent.duration"]
    assert sum(p.count for p in durations) == 1
    assert len(stderr) == 1 and stderr[0].startswith("steptrace: OTLP export to"), stderr
