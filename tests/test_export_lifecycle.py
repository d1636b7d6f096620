"""The OTLP pipeline across a configuration's life: spans that end while it shuts down, and a
second configure() in the same process.

Each case runs a real program in a subprocess (the global providers are set once per process)
against the fake collector on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from export_servers import fake_collector
from otlp_servers import run_python

pytestmark = pytest.mark.integration

ENV = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
    "OTEL_TRACES_EXPORTER": "",
    "OTEL_METRICS_EXPORTER": "",
    "OTEL_EXPORTER_OTLP_HEADERS": "",
    "OTEL_SERVICE_NAME": "",
    "STEPTRACE_JSONL_PATH": "",
}

SPANS_END_DURING_SHUTDOWN = """
import json, os, threading, time
import steptrace

telemetry = steptrace.configure(service_name="closing-agent", jsonl_path=False)
processor = telemetry._delegates.processors[0]
tracer = telemetry.tracer_provider.get_tracer("user-code")
with tracer.start_as_current_span("before-shutdown"):
    pass
open_spans = [tracer.start_span(f"late-{index}") for index in range(300)]
ended = []
started = threading.Event()

def finish_them():
    started.set()
    for span in open_spans:
        span.end()
        ended.append(span.get_span_context().span_id)
        time.sleep(0.002)

worker = threading.Thread(target=finish_them)
worker.start()
started.wait()
telemetry.shutdown()
ended_before_return = len(ended) + 1
worker.join()
print(json.dumps({
    "ended_before_shutdown_returned": ended_before_return,
    "exported": processor.exported_spans,
    "counted_undelivered": processor.dropped_spans + processor.failed_spans,
}))
"""


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


def test_spans_ending_while_shutting_down_are_exported_or_counted(tmp_path: Path) -> None:
    """Spans another thread ends while telemetry.shutdown() flushes (a slow collector) would be
    detached before the flush and vanish: not exported, not spilled, not counted."""
    script = tmp_path / "agent.py"
    script.write_text(SPANS_END_DURING_SHUTDOWN)
    with fake_collector(delay_s=0.3) as collector:
        result = run_python(script, {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        numbers = last_json(result.stdout)
        received = len(collector.spans)
    assert numbers["ended_before_shutdown_returned"] > 1, numbers  # the race really happened
    assert numbers["exported"] == received
    assert numbers["exported"] + numbers["counted_undelivered"] >= numbers["ended_before_shutdown_returned"]


CONFIGURE_TWICE = """
import json, logging, os
import steptrace

endpoint = os.environ["COLLECTOR"]
first = steptrace.configure(service_name="first-agent", otlp_endpoint=endpoint, jsonl_path=False)
with steptrace.agent_run(agent="planner"):
    pass
second = steptrace.configure(service_name="second-agent", otlp_endpoint=endpoint, jsonl_path=False)
for _ in range(3):
    with steptrace.agent_run(agent="planner"):
        pass
print(json.dumps({"flushed": second.force_flush(10_000)}))
second.shutdown()
"""


def test_second_configure_keeps_metrics_flowing_and_says_the_span_name_cannot_change(
    tmp_path: Path,
) -> None:
    """After a second configure(), every histogram point would be recorded into the meter
    provider it had just shut down (lost), and its service_name silently ignored."""
    script = tmp_path / "agent.py"
    script.write_text(CONFIGURE_TWICE)
    with fake_collector() as collector:
        result = run_python(script, {**ENV, "COLLECTOR": collector.endpoint}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        durations: dict[str, int] = {}
        for points in collector.metrics:
            if points.name == "gen_ai.invoke_agent.duration":
                durations[points.service] = max(durations.get(points.service, 0), points.count)
        services = {span.service for span in collector.spans}
    assert last_json(result.stdout) == {"flushed": True}
    assert durations == {"first-agent": 1, "second-agent": 3}
    assert services == {"first-agent"}  # OpenTelemetry cannot change a set TracerProvider's resource
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, warnings
    assert "'second-agent'" in warnings[0] and "'first-agent'" in warnings[0]
    assert "cannot rename" in warnings[0]
