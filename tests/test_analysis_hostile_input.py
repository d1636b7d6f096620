"""Hostile input: arbitrary garbage mixed into a step log never breaks loading or the CLI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis_logs import make_run, records
from steptrace.analysis import debug_run, load, render_html, summarize

GOOD = [json.dumps(r) + "\n" for r in records(make_run("good-run", "tool_error"))]

# Lines that are not step records: random bytes, JSON of the wrong shape, records with fields of
# the wrong type.
garbage_line = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" ") + b"\n"),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode() + b"\n"),
    st.fixed_dictionaries(
        {
            "run_id": st.one_of(st.just("other-run"), st.integers(), st.none()),
            "type": st.sampled_from(["run", "llm_call", "tool_call", "agent_step", "span", 7]),
        },
        optional={
            "status": st.sampled_from(["error", "ok", None, 3]),
            "ts": st.one_of(st.floats(allow_nan=False), st.text(max_size=5), st.none()),
            "started_at": st.one_of(st.text(max_size=30), st.integers(), st.none()),
            "duration_ms": st.one_of(st.floats(allow_nan=False), st.text(max_size=5)),
            "input_tokens": st.one_of(st.integers(), st.text(max_size=3), st.none()),
            "tool": st.one_of(st.text(max_size=5), st.integers(), st.none()),
            "args_hash": st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2)),
            "step": st.one_of(st.integers(), st.text(max_size=3), st.none()),
            "attributes": st.one_of(st.dictionaries(st.text(max_size=5), st.integers()), st.text(max_size=5)),
        },
    ).map(lambda d: json.dumps(d).encode() + b"\n"),
)


@pytest.mark.torture
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(garbage_line, max_size=12), st.integers(min_value=0, max_value=len(GOOD)))
def test_garbage_lines_never_break_loading(garbage: list[bytes], where: int) -> None:
    """A damaged or foreign log would crash `steptrace runs` instead of skipping bad lines."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "steps.jsonl"
        lines = [line.encode() for line in GOOD]
        path.write_bytes(b"".join(lines[:where] + garbage + lines[where:]))
        runs = load(path)
        good = runs.get("good-run")
        assert good is not None and good.record_count == len(GOOD)
        assert good.stop_reason == "error" and good.error_count == 1
        for run in runs:
            summarize(run)
            debug_run(run, slo_ms=1.0)
            render_html(run)
        skipped = sum(i.corrupt_lines for i in runs.issues)
        assert skipped <= len(garbage)
