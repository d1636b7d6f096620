"""The histograms steptrace records, created once per MeterProvider with the conventions' buckets.

No instrument ever carries a run id, a step id or any other unbounded value (cardinality).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context, get_current
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


# Measurements (a stream's chunk intervals: one entry) each histogram holds between collections.
# Past it, once a reader has collected, a measurement is dropped, counted and warned about (the
# caller never pays the SDK's work); before any collection (a meter nobody reads: the API's proxy
# without a provider, a reader read only on demand) they are recorded on the caller's thread.
MAX_PENDING_MEASUREMENTS = 65_536

logger = logging.getLogger("steptrace")


class DeferredHistogram:
    """A histogram whose measurements are recorded at the next metric collection, not at once.

    One ``Histogram.record`` in the SDK is ~80 Python calls (attribute cleaning and hashing,
    exemplar sampling), ~6 µs; a model call records three. Buffered, a measurement costs the
    caller one append; the SDK's work runs when a reader collects (a periodic exporter's thread,
    ``get_metrics_data()``, the final collection of ``shutdown()``), through an observable
    instrument's callback that reports nothing of its own and runs before the collection reads
    the histograms. The histogram exported is the same: same measurements, attributes and
    buckets, in the same collection. The context is taken when the measurement is made, so
    exemplars point at the span that was current then (their timestamp is the collection's).
    """

    __slots__ = (
        "__weakref__",
        "_collected",
        "_histogram",
        "_lock",
        "_noop",
        "_pending",
        "_warned",
        "dropped",
    )

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._noop = isinstance(histogram, NoOpHistogram)  # metrics off: keep nothing
        self._lock = threading.Lock()
        # (amounts, attributes, context): one entry per measurement, or per stream (its chunks).
        # deque.append and popleft are atomic: the caller takes no lock.
        self._pending: deque[tuple[Sequence[float], Mapping[str, Any] | None, Context | None]] = deque()
        self._collected = False  # a reader has collected since this histogram was made
        self._warned = False
        self.dropped = 0  # measurements dropped because the buffer was full
        if not self._noop:
            with _live_lock:
                _live.add(self)

    def record(
        self, amount: float, attributes: Mapping[str, Any] | None = None, context: Context | None = None
    ) -> None:
        if self._noop:
            return
        pending = self._pending
        if len(pending) < MAX_PENDING_MEASUREMENTS:
            pending.append(((amount,), attributes, get_current() if context is None else context))
        else:
            self._full(((amount,), attributes, get_current() if context is None else context))

    def record_all(
        self, amounts: Sequence[float], attributes: Mapping[str, Any] | None, context: Context | None
    ) -> None:
        """One measurement per amount, with the same attributes (a stream's chunks)."""
        if self._noop or not amounts:
            return
        entry = (amounts, attributes, get_current() if context is None else context)
        if len(self._pending) < MAX_PENDING_MEASUREMENTS:
            self._pending.append(entry)
        else:
            self._full(entry)

    def _full(self, entry: tuple[Sequence[float], Mapping[str, Any] | None, Context | None]) -> None:
        if not self._collected:  # nobody collects (yet): record now rather than lose anything
            self._pending.append(entry)
            self.flush()
            return
        with self._lock:
            self.dropped += len(entry[0])
            warn = not self._warned
            self._warned = True
        if warn:
            logger.warning(
                "steptrace: %d measurements of %s are waiting for the next metric collection; "
                "later ones are dropped and counted until it comes (collect more often: "
                "OTEL_METRIC_EXPORT_INTERVAL)",
                MAX_PENDING_MEASUREMENTS,
                getattr(self._histogram, "name", "a histogram"),
            )

    def flush(self, collecting: bool = False) -> None:
        """Record every pending measurement now (those made meanwhile wait for the next one)."""
        if collecting:
            self._collected = True
            self._warned = False  # a new streak of drops warns again
        pending = self._pending
        record = self._histogram.record
        for _ in range(len(pending)):
            try:
                amounts, attributes, context = pending.popleft()
            except IndexError:  # another collection took them
                return
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
    histogram, once (flush takes each entry once): a collection of one provider may record
    another's early, which that provider's next collection reports as it would have."""
    with _live_lock:
        live = list(_live)
    for histogram in live:
        histogram.flush(collecting=True)
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
        self.operation_duration = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_OPERATION_DURATION,
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            )
        )
        self.token_usage = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
        )
        self.time_to_first_chunk = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_TIME_TO_FIRST_CHUNK,
                unit="s",
                description="Time to receive the first chunk of a streaming response.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            )
        )
        self.time_per_output_chunk = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_TIME_PER_OUTPUT_CHUNK,
                unit="s",
                description="Time per output chunk after the first one in a streaming response.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            )
        )
        self.execute_tool_duration = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_EXECUTE_TOOL_DURATION,
                unit="s",
                description="Duration of a tool execution.",
                explicit_bucket_boundaries_advisory=TOOL_DURATION_BUCKETS_S,
            )
        )
        self.invoke_agent_duration = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_INVOKE_AGENT_DURATION,
                unit="s",
                description="Duration of an agent run.",
                explicit_bucket_boundaries_advisory=AGENT_DURATION_BUCKETS_S,
            )
        )
        self.agent_step_duration = DeferredHistogram(
            meter.create_histogram(
                A.METRIC_AGENT_STEP_DURATION,
                unit="s",
                description="Duration of one step of an agent's loop.",
                explicit_bucket_boundaries_advisory=AGENT_STEP_DURATION_BUCKETS_S,
            )
        )
        meter.create_observable_gauge(
            A.METRIC_PENDING_FLUSH,
            callbacks=[_flush_all_on_collect],
            description="Records buffered measurements at collection; never observes a value.",
        )

    @property
    def dropped_measurements(self) -> int:
        """Measurements dropped because a buffer was full between two collections."""
        return sum(getattr(self, name).dropped for name in self.__slots__)


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
