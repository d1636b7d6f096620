"""The health of one collector: a circuit that opens after a failure and backs off.

The span processor and the metric exporter of one configuration share it (through
``circuit_for(settings)``), so there is one warning per outage for both and neither waits on a
collector the other has just found dead.
"""

from __future__ import annotations

import threading
import time
import weakref

from steptrace.export.fork import renew_in_child
from steptrace.export.otlp_settings import OtlpSettings


class Circuit:
    """After a failure, attempts pause for a backoff that doubles to a cap; a success closes it."""

    def __init__(self, backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        self.base_backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._backoff_s = backoff_s
        self.retry_at = 0.0
        self.in_outage = False
        self.silent = False  # the failure that opened it was a collector that never answered
        renew_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the child keeps what the parent knew, not its lock holder

    def is_open(self) -> bool:
        """True while attempts are paused after a failure."""
        return time.monotonic() < self.retry_at

    def failed(self, *, escalate: bool = True, silent: bool = False) -> bool:
        """Record a failure; True if it starts an outage (the caller warns). ``escalate=False``
        pauses again without doubling the backoff (the same failure, seen a second time);
        ``silent``: the collector accepted the connection and did not answer in time."""
        with self._lock:
            self.silent = self.silent or silent
            self.retry_at = time.monotonic() + self._backoff_s
            if escalate:
                self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)
            started, self.in_outage = not self.in_outage, True
        return started

    def succeeded(self) -> bool:
        """Record a success; True if it ends an outage (the caller says so)."""
        with self._lock:
            self._backoff_s = self.base_backoff_s
            self.retry_at = 0.0
            self.silent = False
            ended, self.in_outage = self.in_outage, False
        return ended


# configure() passes one settings object to make_span_processor and make_metric_reader: both
# get the same circuit through it (keyed by identity; the entry goes with the object).
_circuits: dict[int, Circuit] = {}


def circuit_for(settings: OtlpSettings, **backoff: float) -> Circuit:
    """The circuit of the collector ``settings`` point at, made at the first call."""
    key = id(settings)
    circuit = _circuits.get(key)
    if circuit is None:
        circuit = _circuits[key] = Circuit(**backoff)
        weakref.finalize(settings, _circuits.pop, key, None)
    return circuit
