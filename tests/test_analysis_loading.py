"""Loading step logs: formats, inputs, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis_logs import (
    STANDARD_RUNS,
    make_run,
    records,
    standard_log,
    standard_spans,
    write_jsonl,
    write_otlp,
)
from steptrace.analysis import STOP_INCOMPLETE, LogError, _loading, load


@pytest.fixture(params=["fast", "stdlib"])
def decoder(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test under msgspec (a dependency) and under the stdlib json fallback."""
    assert _loading.fast_path_available(), "msgspec is a steptrace dependency"
    _loading.use_fast_path(request.param == "fast")
    yield request.param
    _loading.use_fast_path(True)


def test_jsonl_log_gives_one_run_per_run_id(tmp_path: Path, decoder: str) -> None:
    """`steptrace runs` would list missing or merged runs."""
    runs = load(standard_log(tmp_path))
    assert sorted(r.run_id for r in runs) == sorted(run_id for run_id, *_ in STANDARD_RUNS)
    assert runs.issues == []


def test_run_aggregates_match_the_records(tmp_path: Path, decoder: str) -> None:
    """Summary counts (steps, calls, tokens, tools) would disagree with the log."""
    run = load(standard_log(tmp_path)).get("run-loop")
    assert run is not None
    assert (run.agent, run.release, run.service) == ("weather-agent", "1.1.0", "weather-svc")
    assert run.stop_reason == "max_steps" and run.complete
    assert (run.agent_step_count, run.llm_call_count, run.tool_call_count) == (6, 6, 6)
    assert (run.input_tokens, run.output_tokens) == (6 * 120, 6 * 30)
    assert run.tools == {"search": 6}
    assert run.repeated_call_count == 5
    assert run.record_count == len(run.records()) == 19


def test_run_without_run_record_is_incomplete(tmp_path: Path, decoder: str) -> None:
    """A crashed run would vanish or show a made-up stop reason."""
    run = load(standard_log(tmp_path)).get("run-crashed")
    assert run is not None
    assert run.stop_reason == STOP_INCOMPLETE and not run.complete
    assert run.agent is None
    assert run.llm_call_count == 2 and run.tool_call_count == 1
    spans = [s for s in standard_spans() if s.attributes.get("steptrace.run_id") == "run-crashed"]
    first_start = min(s.start_ns for s in spans)
    last_end = max(s.end_ns for s in spans)
    assert run.duration_ms == pytest.approx((last_end - first_start) / 1e6, abs=0.01)


def test_corrupt_lines_are_counted_with_line_numbers_and_skipped(tmp_path: Path, decoder: str) -> None:
    """A bad line would abort loading or be silently dropped without a warning."""
    lines = [json.dumps(r) + "\n" for r in records(make_run("r1"))]
    lines.insert(1, "this is not json\n")
    lines.insert(3, "[1, 2, 3]\n")
    lines.insert(4, '{"no": "run id"}\n')
    lines.insert(5, "\n")  # blank lines are not corrupt
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(lines))
    runs = load(path)
    assert [r.run_id for r in runs] == ["r1"]
    (issue,) = runs.issues
    assert issue.corrupt_lines == 3
    assert issue.first_corrupt_line_numbers == [2, 4, 5]
    assert not issue.torn_last_line
    assert "skipped 3 corrupt lines (line 2, 4, 5)" in issue.message()


def test_torn_last_line_is_reported_as_torn_not_corrupt(tmp_path: Path, decoder: str) -> None:
    """A log cut mid-write by a killed process would be reported as damaged data."""
    good = records(make_run("r1"))
    torn = json.dumps(records(make_run("r2"))[0])[:40]
    path = write_jsonl(tmp_path / "steps.jsonl", make_run("r1"), extra=torn)
    runs = load(path)
    assert [r.run_id for r in runs] == ["r1"]
    assert runs.get("r1") is not None and runs.get("r1").record_count == len(good)  # type: ignore[union-attr]
    (issue,) = runs.issues
    assert issue.torn_last_line and issue.corrupt_lines == 0
    assert "torn last line" in issue.message()


def test_gzip_log_reads_like_plain(tmp_path: Path, decoder: str) -> None:
    """Rotated .jsonl.gz logs would be ignored or misread."""
    plain = load(standard_log(tmp_path))
    zipped = load(standard_log(tmp_path, "steps.jsonl.gz"))
    assert [r.to_dict() for r in zipped] == [r.to_dict() for r in plain]
    assert zipped.get("run-loop").records() == plain.get("run-loop").records()  # type: ignore[union-attr]


def test_truncated_gzip_keeps_what_was_written(tmp_path: Path) -> None:
    """A .gz cut off by a crash would raise a traceback instead of giving its runs."""
    path = tmp_path / "steps.jsonl.gz"
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in records(standard_spans())).encode())
    path.write_bytes(data[: len(data) * 2 // 3])
    runs = load(path)
    assert 0 < len(runs) <= len(STANDARD_RUNS)
    assert runs.issues and runs.issues[0].truncated_gzip


def test_not_gzip_is_an_unreadable_input(tmp_path: Path) -> None:
    """A file named .gz that is not gzip would crash with a traceback."""
    path = tmp_path / "steps.jsonl.gz"
    path.write_text('{"run_id": "x"}\n')
    with pytest.raises(LogError, match=r"steps\.jsonl\.gz: not a gzip file"):
        load(path)


def test_otlp_json_gives_the_same_records_as_jsonl(tmp_path: Path, decoder: str) -> None:
    """Production traces from the Collector would analyse differently from the local log."""
    spans = standard_spans()
    jsonl = load(write_jsonl(tmp_path / "steps.jsonl", spans))
    otlp = load(write_otlp(tmp_path / "traces.json", spans))
    assert [r.to_dict() for r in otlp] == [r.to_dict() for r in jsonl]
    for run in jsonl:
        other = otlp.get(run.run_id)
        assert other is not None
        assert other.records() == run.records()


def test_otlp_status_codes_and_value_types(tmp_path: Path) -> None:
    """An OTLP span's error status or int/double/bool/array attributes would be lost."""
    line = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "steptrace"},
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "parentSpanId": "",
                                "name": "llm_request",
                                "kind": 3,
                                "startTimeUnixNano": "1795000000000000000",
                                "endTimeUnixNano": "1795000000250000000",
                                "attributes": [
                                    {"key": "steptrace.run_id", "value": {"stringValue": "o1"}},
                                    {"key": "steptrace.step", "value": {"intValue": "3"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                                    {"key": "gen_ai.request.stream", "value": {"boolValue": True}},
                                    {
                                        "key": "gen_ai.response.time_to_first_chunk",
                                        "value": {"doubleValue": 0.125},
                                    },
                                    {
                                        "key": "gen_ai.response.finish_reasons",
                                        "value": {"arrayValue": {"values": [{"stringValue": "length"}]}},
                                    },
                                    {"key": "error.type", "value": {"stringValue": "TimeoutError"}},
                                ],
                                "status": {"code": 2, "message": "TimeoutError: slow"},
                            },
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203332",
                                "name": "http GET",
                                "startTimeUnixNano": "1795000000000000000",
                                "endTimeUnixNano": "1795000000100000000",
                                "attributes": [],
                            },
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(line) + "\n")
    runs = load(path)
    (record,) = runs.get("o1").records()  # type: ignore[union-attr]
    assert record["step"] == 3 and record["type"] == "llm_call"
    assert record["input_tokens"] == 42 and record["stream"] is True
    assert record["ttft_ms"] == 125.0 and record["finish_reasons"] == ["length"]
    assert record["status"] == "error" and record["error"] == "TimeoutError: slow"
    assert record["parent_span_id"] is None and record["duration_ms"] == 250.0


def test_directory_glob_and_several_files(tmp_path: Path) -> None:
    """Logs split over rotated files or directories would be partly ignored."""
    spans = standard_spans()
    half = len(spans) // 2
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    write_jsonl(logs / "steps.jsonl", spans[:half])
    write_jsonl(logs / "old" / "steps.1.jsonl.gz", spans[half:])
    (logs / "notes.txt").write_text("not a log")
    whole = load(write_jsonl(tmp_path / "all.jsonl", spans))
    for runs in (
        load(logs),
        load(str(logs / "**" / "*.jsonl*")),
        load(logs / "steps.jsonl", logs / "old" / "steps.1.jsonl.gz"),
    ):
        assert [r.to_dict() for r in runs] == [r.to_dict() for r in whole]
        assert len(runs.sources) == 2


def test_the_same_file_named_twice_counts_once(tmp_path: Path) -> None:
    """Passing a directory and a file inside it would double every count."""
    path = standard_log(tmp_path)
    runs = load(tmp_path, path)
    assert len(runs.sources) == 1
    assert runs.get("run-loop").tool_call_count == 6  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jsonl", "missing.jsonl: no such file or directory"),
        (lambda d: d, "no step logs in this directory"),
        (lambda d: str(d / "*.jsonl"), r"\*.jsonl: no files match this pattern"),
    ],
    ids=["missing-file", "empty-directory", "glob-without-match"],
)
def test_unreadable_inputs_raise_one_line_errors(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    """A wrong --log path would end in a traceback instead of a clear message."""
    with pytest.raises(LogError, match=message) as caught:
        load(make(tmp_path))
    assert "\n" not in str(caught.value)


def test_progress_reports_bytes_up_to_the_total(tmp_path: Path) -> None:
    """The progress bar would stall or overshoot."""
    first = standard_log(tmp_path, "a.jsonl")
    second = standard_log(tmp_path, "b.jsonl.gz")
    seen: list[int] = []
    load(first, second, progress=seen.append)
    total = first.stat().st_size + second.stat().st_size
    assert seen and seen == sorted(seen)
    assert seen[-1] == total


def test_unescaped_run_ids_still_read_back(tmp_path: Path, decoder: str) -> None:
    """A run id with quotes or non-ASCII characters would show no records in debug/replay."""
    path = write_jsonl(tmp_path / "steps.jsonl", make_run('run "ü" \\ 1', "tool_error"))
    run = load(path).get('run "ü" \\ 1')
    assert run is not None and len(run.records()) == run.record_count == 4


def test_format_is_decided_by_the_first_json_object(tmp_path: Path) -> None:
    """A garbage first line would make a step log read as OTLP (or the reverse), losing it all."""
    steps = tmp_path / "steps.jsonl"
    steps.write_text(
        '"resourceSpans" garbage\n' + "".join(json.dumps(r) + "\n" for r in records(make_run("r1")))
    )
    runs = load(steps)
    assert [r.run_id for r in runs] == ["r1"] and runs.issues[0].corrupt_lines == 1
    otlp = write_otlp(tmp_path / "traces.json", make_run("o1"))
    otlp.write_text("\n{torn\n" + otlp.read_text())
    runs = load(otlp)
    assert [r.run_id for r in runs] == ["o1"]
    assert runs.issues[0].first_corrupt_line_numbers == [2]
