"""Every histogram keeps recording, exactly once per event, when configure() runs again on the
same MeterProvider: the steptrace_capture fixture's configure(), a main() configuring under the
fixture, an explicit ``meter_provider=``, the global provider (set before or after configure())."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture

# The measurements one_of_each() makes: one model call streaming three chunks (time to first
# chunk once, time per output chunk for the two after it), input and output tokens, one tool.
EXPECTED = {
    A.METRIC_OPERATION_DURATION: 1,
    A.METRIC_TOKEN_USAGE: 2,
    A.METRIC_TIME_TO_FIRST_CHUNK: 1,
    A.METRIC_TIME_PER_OUTPUT_CHUNK: 2,
    A.METRIC_EXECUTE_TOOL_DURATION: 1,
    A.METRIC_INVOKE_AGENT_DURATION: 1,
    A.METRIC_AGENT_STEP_DURATION: 1,
}


def times(n: int) -> dict[str, int]:
    return {name: n * count for name, count in EXPECTED.items()}


@steptrace.tool
def search(query: str) -> str:
    return query


def one_of_each() -> None:
    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        with steptrace.llm_request(model="m", provider="openai") as llm:
            for _ in range(3):
                llm.chunk_received()
            llm.record_usage(input_tokens=10, output_tokens=3)
        search("q")


def counts(reader: InMemoryMetricReader) -> dict[str, int]:
    """Measurements per histogram so far (cumulative), summed over attribute sets."""
    found = dict.fromkeys(EXPECTED, 0)
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if isinstance(point, HistogramDataPoint):
                        found[metric.name] = found.get(metric.name, 0) + point.count
    return found


def test_fixture_configure_again_keeps_every_histogram(steptrace_capture: Capture) -> None:
    """After steptrace_capture.configure(...) and a main()'s own configure() under the fixture,
    time per output chunk got 0 measurements: its second observable instrument was dropped."""
    reader = steptrace_capture.metric_reader
    one_of_each()
    assert counts(reader) == times(1)
    steptrace_capture.configure(capture_logs=True)
    one_of_each()
    assert counts(reader) == times(2)
    steptrace.configure(service_name="main")  # the code under test configures too
    one_of_each()
    one_of_each()
    assert counts(reader) == times(4)
    assert counts(reader) == times(4)  # a second read adds nothing


def test_explicit_meter_provider_configured_again_and_after_shutdown() -> None:
    """configure(meter_provider=p) twice, then shutdown() and configure() again: each event is
    measured once on p, in every histogram."""
    reader = InMemoryMetricReader()
    meters, tracer_provider = MeterProvider(metric_readers=[reader]), TracerProvider()

    def configure() -> steptrace.Telemetry:
        return steptrace.configure(
            service_name="t", jsonl_path=False, tracer_provider=tracer_provider, meter_provider=meters
        )

    telemetry = configure()
    try:
        one_of_each()
        configure()
        one_of_each()
        assert counts(reader) == times(2)
        steptrace.configure(
            service_name="t", jsonl_path=False, tracer_provider=tracer_provider, meter_provider=meters
        ).shutdown()
        telemetry = configure()
        one_of_each()
        assert counts(reader) == times(3)
    finally:
        telemetry.shutdown()
        meters.shutdown()


# Run in a fresh interpreter (the global providers can be set once per process): sets the
# global MeterProvider before the first configure() or right after it, configures twice with an
# event after each, and prints the histogram counts as JSON.
GLOBAL_PROVIDER = """
import json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
import steptrace
from test_metrics_reconfigure import counts, one_of_each

reader = InMemoryMetricReader()
tracer_provider = TracerProvider()
if sys.argv[1] == "before":
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
steptrace.configure(service_name="t", jsonl_path=False, tracer_provider=tracer_provider)
if sys.argv[1] == "between":
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
one_of_each()
steptrace.configure(service_name="t", jsonl_path=False, tracer_provider=tracer_provider)
one_of_each()
print(json.dumps(counts(reader)))
"""


@pytest.mark.parametrize("when", ["before", "between"])
def test_global_meter_provider_configured_twice(tmp_path: Path, when: str) -> None:
    """configure() twice on the global MeterProvider, set before the first configure() or after
    it (the first configure()'s instruments are the API's proxies then, connected to the provider
    when it is set, and the second's are the provider's own): each event counted once."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), environment.get("PYTHONPATH", "")]
    )
    result = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER, when],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == times(2), result.stderr
