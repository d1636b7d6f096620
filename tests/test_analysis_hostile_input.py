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


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_log(directory: Path, depth: int, *, first: bool = False) -> Path:
    """The good run's log with one record whose captured input is nested ``depth`` levels."""
    good = [json.loads(line) for line in GOOD]
    deep = dict(good[0], span_id="00000000000deep0", step=99, input="@@deep@@")
    deep_line = json.dumps(deep).replace('"@@deep@@"', _nested(depth))
    lines = [deep_line + "\n", *GOOD] if first else [*GOOD[:2], deep_line + "\n", *GOOD[2:]]
    path = directory / "steps.jsonl"
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("first", [False, True], ids=["mid-file", "first-line"])
def test_line_nested_thousands_deep_is_skipped_as_corrupt(tmp_path: Path, first: bool) -> None:
    """A record nested 5,000 levels deep made loading raise RecursionError."""
    runs = load(_deep_log(tmp_path, 5000, first=first))
    good = runs.get("good-run")
    assert good is not None and good.record_count == len(GOOD)
    (issue,) = runs.issues
    assert issue.corrupt_lines == 1 and "skipped 1 corrupt line" in issue.message()


def test_otlp_line_nested_thousands_deep_is_skipped_as_corrupt(tmp_path: Path) -> None:
    """An OTLP JSON line whose attribute value nests kvlists thousands deep raised RecursionError."""
    from analysis_logs import write_otlp

    path = write_otlp(tmp_path / "traces.json", make_run("otlp-run", "ok"))
    value = '{"stringValue": "x"}'
    for _ in range(3000):
        value = '{"kvlistValue": {"values": [{"key": "k", "value": ' + value + "}]}}"
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x", "attributes": []}
    span["attributes"] = "@@"
    line = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    line = line.replace(
        '"@@"',
        '[{"key": "steptrace.run_id", "value": {"stringValue": "otlp-run"}}, '
        '{"key": "deep", "value": ' + value + "}]",
    )
    with path.open("a") as out:
        out.write(line + "\n")
    runs = load(path)
    assert runs.get("otlp-run") is not None
    assert sum(i.corrupt_lines for i in runs.issues) == 1


@pytest.mark.parametrize("depth", [990, 5000])
@pytest.mark.parametrize(
    "argv",
    [
        ["runs"],
        ["summary", "good-run"],
        ["debug", "good-run"],
        ["replay", "good-run", "--full"],
        ["replay", "good-run", "--json"],
        ["view", "good-run", "-o", "run.html"],
        ["diff", "--baseline", "1.0.0", "--candidate", "1.0.0"],
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_no_command_prints_a_traceback_on_deep_nesting(tmp_path: Path, argv: list[str], depth: int) -> None:
    """`steptrace` printed a RecursionError traceback and exited 1, the code for "nothing matched"."""
    import os
    import subprocess
    import sys

    path = _deep_log(tmp_path, depth)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPTRACE_")}
    completed = subprocess.run(
        [sys.executable, "-m", "steptrace.cli", *argv, "--log", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "Traceback" not in completed.stderr, completed.stderr[-2000:]
    assert completed.returncode == 0, completed.stderr
    if depth > 1000:
        assert "skipped 1 corrupt line" in completed.stderr


def test_read_steps_skips_a_deeply_nested_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`steptrace.read_steps` (and the test fixture's `records`) raised RecursionError."""
    from steptrace import read_steps

    path = _deep_log(tmp_path, 5000)
    assert len(list(read_steps(path))) == len(GOOD)
    assert "steps.jsonl:3: skipped a corrupt line" in caplog.text


def test_records_whose_run_id_is_not_a_string_are_counted(tmp_path: Path) -> None:
    """A record with `"run_id": 7` or null vanished without a word in the skip warning."""
    path = tmp_path / "steps.jsonl"
    bad = [dict(json.loads(GOOD[0]), run_id=7), dict(json.loads(GOOD[0]), run_id=None)]
    path.write_text("".join(GOOD) + "".join(json.dumps(r) + "\n" for r in bad))
    runs = load(path)
    assert runs.get("good-run") is not None and runs.get("good-run").record_count == len(GOOD)  # type: ignore[union-attr]
    (issue,) = runs.issues
    assert "2 records whose run_id is not a string" in issue.message()
    assert str(len(GOOD) + 1) in issue.message()  # the first such line is named
