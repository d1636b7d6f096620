"""Checks shared by the torture tests: a step log that is whole, exact and consistent.

``check_log`` reads a JSONL file strictly (UTF-8, no NaN, one object per line) and verifies what
the issue asks of every torture case: each run's ``step`` values are exactly 1..n, every
``parent_span_id`` names a span of the same trace. ``report`` records the figures of a case.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(line: bytes) -> Any:
    """Parse one line as a JSON-spec document: valid UTF-8, no NaN/Infinity literals."""
    return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)


@dataclass
class LogCheck:
    records: list[dict[str, Any]]
    torn_tail: bytes = b""
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def by_type(self, record_type: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == record_type]


def check_log(path: Path, *, allow_torn_tail: bool = False, complete_runs: bool = True) -> LogCheck:
    """Every line parses; steps are 1..n per run; parents are spans of the same trace.

    ``allow_torn_tail``: the file may end in a partial line (a writer killed mid-write), which is
    returned rather than parsed. ``complete_runs``: each run has its ``run`` record (step 0).
    """
    data = path.read_bytes()
    body, _, tail = data.rpartition(b"\n")
    if tail and not allow_torn_tail:
        raise AssertionError(f"{path} ends in a partial line of {len(tail)} bytes")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(body.split(b"\n") if body else [], start=1):
        if not line.strip():
            continue
        try:
            record = strict_loads(line)
        except ValueError as exc:
            raise AssertionError(f"{path}:{number} is not valid JSON ({exc}): {line[:200]!r}") from exc
        assert isinstance(record, dict), f"{path}:{number} is not an object"
        records.append(record)

    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    spans_by_trace: dict[str, set[str]] = defaultdict(set)
    for record in records:
        runs[record["run_id"]].append(record)
        spans_by_trace[record["trace_id"]].add(record["span_id"])
    span_ids = [r["span_id"] for r in records]
    assert len(span_ids) == len(set(span_ids)), "a span was written twice"
    for run_id, run_records in runs.items():
        steps = sorted(r["step"] for r in run_records if r["type"] != "run")
        assert steps == list(range(1, len(steps) + 1)), f"run {run_id}: steps are not 1..n"
        run_rows = [r for r in run_records if r["type"] == "run"]
        if complete_runs:
            assert len(run_rows) == 1 and run_rows[0]["step"] == 0, f"run {run_id}: no single run record"
    for record in records:
        parent = record["parent_span_id"]
        if parent is not None and complete_runs:
            assert parent in spans_by_trace[record["trace_id"]], (
                f"{record['type']} {record['span_id']}: parent {parent} is not in its trace"
            )
    return LogCheck(records, tail, dict(runs))


def report(case: str, **figures: Any) -> None:
    """Print a case's figures; also append them to ``$STEPTRACE_TORTURE_FIGURES`` when set."""
    line = json.dumps({"case": case, **figures})
    print(f"torture figures: {line}")
    target = os.environ.get("STEPTRACE_TORTURE_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")
