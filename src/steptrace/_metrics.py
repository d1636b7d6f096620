"""The histograms steptrace records, created once per MeterProvider with the conventions' buckets.

No instrument ever carries a run id, a step id or any other unbounded value (cardinality).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    MeterProvider,
    NoOpHistogram,
    Observation,
    get_meter_provider,
)

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


# Pending per-chunk measurements kept before they are recorded on the caller's thread anyway
# (no reader collecting: a no-op meter, or a reader read only on demand).
MAX_PENDING_MEASUREMENTS = 65_536


class DeferredHistogram:
    """A histogram whose measurements are recorded at the next metric collection, not at once.

    For the time per output chunk: one measurement per streamed chunk, each ~80 Python calls
    inside the SDK (attribute cleaning and hashing), several times what reading the chunk costs.
    Buffered, a chunk costs one append on the stream's path; the SDK's work runs when a reader
    collects (a periodic exporter's thread, ``get_metrics_data()``), through an observable
    instrument's callback that reports nothing of its own. The histogram exported is the same:
    same measurements, attributes and buckets, in the same collection or an earlier one.
    """

    __slots__ = ("__weakref__", "_count", "_histogram", "_lock", "_noop", "_pending")

    def __init__(self, meter: Meter, histogram: Histogram, flush_name: str) -> None:
        self._histogram = histogram
        self._noop = isinstance(histogram, NoOpHistogram)  # metrics off: keep nothing
        self._lock = threading.Lock()
        # (amounts, attributes, context): one entry per stream, its measurements in one list.
        self._pending: list[tuple[Sequence[float], Mapping[str, Any] | None, Context | None]] = []
        self._count = 0  # measurements pending
        if not self._noop:
            with _live_lock:
                _live.add(self)
        meter.create_observable_gauge(
            flush_name,
            callbacks=[_flush_all_on_collect],
            description="Records buffered measurements at collection; never observes a value.",
        )

    def record(
        self, amount: float, attributes: Mapping[str, Any] | None = None, context: Context | None = None
    ) -> None:
        self.record_all((amount,), attributes, context)

    def record_all(
        self, amounts: Sequence[float], attributes: Mapping[str, Any] | None, context: Context | None
    ) -> None:
        """One measurement per amount, with the same attributes (a stream's chunks)."""
        if self._noop or not amounts:
            return
        with self._lock:
            self._pending.append((amounts, attributes, context))
            self._count += len(amounts)
            full = self._count >= MAX_PENDING_MEASUREMENTS
        if full:
            self.flush()

    def flush(self) -> None:
        """Record every pending measurement now."""
        with self._lock:
            pending, self._pending, self._count = self._pending, [], 0
        record = self._histogram.record
        for amounts, attributes, context in pending:
            for amount in amounts:
                record(amount, attributes, context)


# Every DeferredHistogram alive, flushed by whichever one's callback a meter kept. An SDK meter
# keeps the first observable instrument of a name and drops the callbacks of a later one: a
# histogram made on a meter that already had one (the API's proxy instruments connected to a
# provider set later, say) would otherwise never flush.
_live: weakref.WeakSet[DeferredHistogram] = weakref.WeakSet()
_live_lock = threading.Lock()


def _flush_all_on_collect(options: CallbackOptions) -> Iterable[Observation]:
    """Record what every DeferredHistogram holds. Each measurement goes to its own provider's
    histogram, once (flush takes the pending list whole): a collection of one provider may record
    another's early, which that provider's next collection reports as it would have."""
    with _live_lock:
        live = list(_live)
    for histogram in live:
        histogram.flush()
    return ()


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
        self.time_per_output_chunk = DeferredHistogram(
            meter,
            meter.create_histogram(
                A.METRIC_TIME_PER_OUTPUT_CHUNK,
                unit="s",
                description="Time per output chunk after the first one in a streaming response.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            ),
            A.METRIC_PENDING_FLUSH,
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


# One Instruments per MeterProvider, for as long as the provider lives: configure() again on the
# same provider (the testing fixture's, a main() under it, the global one) reuses them.
_by_provider: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_by_provider_lock = threading.Lock()


def create_instruments(meter_provider: MeterProvider | None = None) -> Instruments:
    """The provider's (or the global provider's) histograms, made the first time it is asked."""
    provider = meter_provider if meter_provider is not None else get_meter_provider()
    with _by_provider_lock:
        try:
            instruments = _by_provider.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: made each time
            return Instruments(provider.get_meter(A.INSTRUMENTATION_SCOPE, __version__))
        if instruments is None:
            instruments = Instruments(provider.get_meter(A.INSTRUMENTATION_SCOPE, __version__))
            _by_provider[provider] = instruments
        return instruments
