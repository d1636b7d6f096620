"""The histograms steptrace records, created once per meter with the conventions' buckets.

No instrument ever carries a run id, a step id or any other unbounded value (cardinality).
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter, MeterProvider, get_meter_provider

from steptrace import _attributes as A
from steptrace._version import __version__

# Advised boundaries from the GenAI semantic conventions (gen-ai-metrics.md, v1.41 and the
# semantic-conventions-genai repository that continues it). Peers record the same metrics with
# the same boundaries, so their histograms merge with ours in one dashboard.
# Model calls: operation duration, time to first chunk, time per output chunk.
DURATION_BUCKETS_S = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
# An agent invocation is many model calls and tools: 0.1 s to 409.6 s, doubling.
AGENT_DURATION_BUCKETS_S = (
    0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
# The conventions advise the model-call scale for tool executions too: tools under 10 ms share
# the first bucket (their spans keep the exact durations), and ours merge with peers' histograms.
TOOL_DURATION_BUCKETS_S = DURATION_BUCKETS_S
# steptrace.agent.step.duration is ours (no convention): a step is a slice of an agent
# invocation (a model call and its tools; a one-step run's step is the whole run), so it shares
# the agent scale, which does not overflow at 82 s as the model-call scale does.
AGENT_STEP_DURATION_BUCKETS_S = AGENT_DURATION_BUCKETS_S


# Recorded with an empty context, a measurement takes no exemplar. On the hottest paths (tool
# calls, stream chunks) exemplar sampling cost ~7 µs a record, more than the span itself; the
# spans already link those measurements to traces by run id. Model calls keep their exemplars.
# (The SDK treats an empty Context as "no context given" and falls back to the current one.)
NO_EXEMPLAR = Context({"steptrace.no_exemplar": True})


class Instruments:
    """The histograms, created once from one meter."""

    __slots__ = (
        "agent_step_duration",
        "execute_tool_duration",
        "invoke_agent_duration",
        "operation_duration",
        "time_per_output_chunk",
        "time_to_first_chunk",
        "token_usage",
    )

    def __init__(self, meter: Meter) -> None:
        self.operation_duration: Histogram = meter.create_histogram(
            A.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.token_usage: Histogram = meter.create_histogram(
            A.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk: Histogram = meter.create_histogram(
            A.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streaming response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.time_per_output_chunk: Histogram = meter.create_histogram(
            A.METRIC_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time per output chunk after the first one in a streaming response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.execute_tool_duration: Histogram = meter.create_histogram(
            A.METRIC_EXECUTE_TOOL_DURATION,
            unit="s",
            description="Duration of a tool execution.",
            explicit_bucket_boundaries_advisory=TOOL_DURATION_BUCKETS_S,
        )
        self.invoke_agent_duration: Histogram = meter.create_histogram(
            A.METRIC_INVOKE_AGENT_DURATION,
            unit="s",
            description="Duration of an agent run.",
            explicit_bucket_boundaries_advisory=AGENT_DURATION_BUCKETS_S,
        )
        self.agent_step_duration: Histogram = meter.create_histogram(
            A.METRIC_AGENT_STEP_DURATION,
            unit="s",
            description="Duration of one step of an agent's loop.",
            explicit_bucket_boundaries_advisory=AGENT_STEP_DURATION_BUCKETS_S,
        )


def create_instruments(meter_provider: MeterProvider | None = None) -> Instruments:
    provider = meter_provider if meter_provider is not None else get_meter_provider()
    return Instruments(provider.get_meter(A.INSTRUMENTATION_SCOPE, __version__))
