"""Shared by the benchmark cases: interleaved timing, the machine's description, JSON output.

Every case runs in a process of its own and measures its variants side by side: each batch runs
every variant once (in a rotating order), so a neighbour's load spike hits all variants alike;
the reported figure is the median over batches, after warm-up.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Variant:
    """One way of making the call; ``enter``/``leave`` run outside the timed loop, per batch."""

    name: str
    call: Callable[[], object]
    enter: Callable[[], None] | None = None
    leave: Callable[[], None] | None = None
    samples: list[float] = field(default_factory=list)  # seconds per call, one per batch
    # This thread's CPU seconds per call, one per batch: on a shared machine the steadier figure.
    cpu_samples: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) * 1e6

    @property
    def min_us(self) -> float:
        return min(self.samples) * 1e6

    @property
    def cpu_median_us(self) -> float:
        return statistics.median(self.cpu_samples) * 1e6 if self.cpu_samples else float("nan")


def _time_batch(variant: Variant, number: int) -> tuple[float, float]:
    call = variant.call
    if variant.enter is not None:
        variant.enter()
    try:
        for _ in range(min(number, 50)):  # re-warm after the neighbour's batch
            call()
        cpu_start = time.thread_time()
        start = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - start
        cpu = time.thread_time() - cpu_start
    finally:
        if variant.leave is not None:
            variant.leave()
    return elapsed / number, cpu / number


def interleave(
    variants: Sequence[Variant], *, number: int, batches: int, warmup_batches: int = 2
) -> list[Variant]:
    """Time every variant in ``batches`` rounds of ``number`` calls; keeps one sample per round."""
    count = len(variants)
    for round_number in range(warmup_batches + batches):
        gc.collect()
        for offset in range(count):
            variant = variants[(round_number + offset) % count]
            seconds, cpu_seconds = _time_batch(variant, number)
            if round_number >= warmup_batches:
                variant.samples.append(seconds)
                variant.cpu_samples.append(cpu_seconds)
    return list(variants)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
    }


def emit(result: dict[str, Any]) -> None:
    """The case's result as one JSON document on stdout (the driver parses it)."""
    result.setdefault("load_average_end", load_average())
    json.dump(result, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")


def summarize(variants: Sequence[Variant]) -> dict[str, dict[str, float]]:
    return {
        v.name: {
            "median_us": v.median_us,
            "min_us": v.min_us,
            "cpu_median_us": v.cpu_median_us,
            "batches": len(v.samples),
            "samples_us": [sample * 1e6 for sample in v.samples],
        }
        for v in variants
    }
