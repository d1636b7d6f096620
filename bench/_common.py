"""Shared by the benchmark cases: interleaved timing, the machine's description, JSON output.

Every case runs in a process of its own and measures its variants side by side: each batch runs
every variant once (in a rotating order), so a neighbour's load spike hits all variants alike;
the reported figure is the median over batches, after warm-up. Each batch is timed in wall time
and in the calling thread's CPU time (``time.thread_time``): on a loaded machine the wall time
mostly measures waiting for a core, the CPU time what the call costs.
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
from collections.abc import Callable, Mapping, Sequence
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


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """Median and interquartile range of ``values`` (already in µs)."""
    ordered = sorted(values)
    q1, median, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (ordered[0],) * 3
    return {"median_us": median, "q1_us": q1, "q3_us": q3}


def summarize(variants: Sequence[Variant]) -> dict[str, dict[str, Any]]:
    return {
        v.name: {
            "median_us": v.median_us,
            "min_us": v.min_us,
            "cpu_median_us": v.cpu_median_us,
            "batches": len(v.samples),
            "samples_us": [sample * 1e6 for sample in v.samples],
            "cpu_samples_us": [sample * 1e6 for sample in v.cpu_samples],
        }
        for v in variants
    }


def added(
    variants: Mapping[str, Variant], name: str, terms: Mapping[str, float], bare: str = "bare"
) -> dict[str, dict[str, float]]:
    """What variant ``name`` adds to ``bare``, batch by batch: the sum over ``terms`` ({what:
    weight}) of weight × (``name|what`` − ``bare|what``), whose batches ran side by side; the
    median and IQR over batches, in wall and in CPU time (µs). A weight of 1/(long − short) on
    two stream lengths gives the cost per chunk (the slope), less the bare slope."""
    out = {}
    for clock, attribute in (("wall", "samples"), ("cpu", "cpu_samples")):
        per_batch = [
            sum(
                weight * (getattr(variants[f"{name}|{what}"], attribute)[batch]
                          - getattr(variants[f"{bare}|{what}"], attribute)[batch])
                for what, weight in terms.items()
            ) * 1e6
            for batch in range(len(variants[f"{bare}|{next(iter(terms))}"].samples))
        ]  # fmt: skip
        out[clock] = quartiles(per_batch)
    return out


def profile(
    call: Callable[[], object],
    enter: Callable[[], None],
    leave: Callable[[], None],
    number: int,
    parts: Mapping[str, tuple[str, str]],
) -> dict[str, float]:
    """cProfile's cumulative µs per call of each part of ``call``, in this thread's CPU time (a
    neighbour's load does not inflate it): ``parts`` maps a label to (path fragment, function name);
    a name written ``self:name`` counts the function's own time, without the calls it makes.
    cProfile adds a fixed cost to every function call, so parts made of many small calls look
    bigger than they are: these locate the cost, timings size it."""
    import cProfile
    import pstats

    enter()
    try:
        for _ in range(min(number, 200)):
            call()
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        for _ in range(number):
            call()
        profiler.disable()
    finally:
        leave()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def seconds(fragment: str, function: str) -> float:
        own = function.startswith("self:")
        function = function.removeprefix("self:")
        matched = {key for key in stats if key[2] == function and fragment in key[0]}
        if own:
            return sum(stats[key][2] for key in matched)  # pstats row: calls, calls, own, cumulative
        # Cumulative, counted once where one matched function calls another (an override calling
        # super(), say): less what each got from a matched caller.
        nested = sum(row[3] for key in matched for caller, row in stats[key][4].items() if caller in matched)
        return sum(stats[key][3] for key in matched) - nested

    return {label: seconds(*where) / number * 1e6 for label, where in parts.items()}
