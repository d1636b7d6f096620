"""The JSONL step log: schema, correlation ids, file safety and reading back."""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture

COMMON_FIELDS = {
    "run_id", "step", "type", "name", "trace_id", "span_id", "parent_span_id",
    "started_at", "ts", "duration_ms", "status", "error", "error_type",
}  # fmt: skip


@steptrace.tool
def get_weather(city: str) -> dict[str, object]:
    if city == "Atlantis":
        raise LookupError("no such city")
    return {"city": city, "temp_c": 17}


def test_records_follow_the_step_record_schema(steptrace_capture: Capture) -> None:
    """Each record has agent-step-log's fields plus trace/span ids, typed as documented."""
    with steptrace.agent_run(agent="weather", release="v3") as run, steptrace.agent_step():
        with steptrace.llm_request(model="gpt-4o", provider="openai") as llm:
            llm.record_usage(input_tokens=10, output_tokens=4, stop_reason="tool_calls")
        get_weather("Paris")
        with pytest.raises(LookupError):
            get_weather("Atlantis")
    records = steptrace_capture.records
    assert [r["type"] for r in records] == ["llm_call", "tool_call", "tool_call", "agent_step", "run"]
    for record in records:
        assert set(record) >= COMMON_FIELDS
        assert record["run_id"] == run.run_id
        assert len(record["trace_id"]) == 32 and record["trace_id"] == record["trace_id"].lower()
        assert len(record["span_id"]) == 16
        assert isinstance(record["duration_ms"], float)
        assert isinstance(record["ts"], float)
        assert datetime.fromisoformat(record["started_at"].replace("Z", "+00:00")).tzinfo is not None
    llm_record, ok_tool, bad_tool, step_record, run_record = records
    assert llm_record["model"] == "gpt-4o" and llm_record["input_tokens"] == 10
    assert llm_record["output_tokens"] == 4 and llm_record["stop_reason"] == "tool_use"
    assert ok_tool["tool"] == "get_weather" and ok_tool["input"] == {"city": "Paris"}
    assert ok_tool["output"] == {"city": "Paris", "temp_c": 17} and ok_tool["error"] is None
    assert bad_tool["error"] == "LookupError: no such city" and bad_tool["output"] is None
    assert step_record["agent_step"] == 1
    assert run_record["step"] == 0 and run_record["agent"] == "weather" and run_record["release"] == "v3"
    assert run_record["tool_calls"] == 2 and run_record["errors"] == 1
    assert run_record["parent_span_id"] is None
    assert {r["parent_span_id"] for r in records[:3]} == {step_record["span_id"]}


def test_content_is_null_when_capture_is_off(steptrace_capture: Capture) -> None:
    """With capture off, arguments and results never reach the log."""
    steptrace_capture.configure(capture_content=False)
    with steptrace.agent_run(agent="a"):
        get_weather("Paris")
    (tool,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert tool["input"] is None and tool["output"] is None
    assert tool["args_hash"]  # repeated calls are still spotted
    (span,) = steptrace_capture.spans_named("tool_execution")
    assert A.GEN_AI_TOOL_CALL_ARGUMENTS not in (span.attributes or {})


def test_exporter_works_on_any_tracer_provider(tmp_path: Path) -> None:
    """JsonlSpanExporter is a real SpanExporter a user can put on their own provider."""
    provider = TracerProvider()
    log = tmp_path / "deep" / "dir" / "steps.jsonl"
    exporter = steptrace.JsonlSpanExporter(log)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("mine")
    with tracer.start_as_current_span("custom", attributes={A.RUN_ID: "r1", A.STEP: 1}):
        pass
    with tracer.start_as_current_span("not-in-a-run"):
        pass
    provider.shutdown()
    (record,) = steptrace.read_steps(log)
    assert record["run_id"] == "r1" and record["type"] == "span" and record["name"] == "custom"
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600


def test_records_are_written_before_the_span_end_returns(steptrace_capture: Capture) -> None:
    """Nothing waits in a queue: a record is on disk as soon as its span has ended."""
    with steptrace.agent_run(agent="a"):
        get_weather("Oslo")
        lines = steptrace_capture.jsonl_path.read_text().splitlines()
        assert [json.loads(line)["type"] for line in lines] == ["tool_call"]


def test_read_steps_skips_torn_and_corrupt_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A log cut by a crash still reads; the reader names the lines it skipped."""
    log = tmp_path / "steps.jsonl"
    good = json.dumps({"run_id": "r", "step": 1, "type": "tool_call"})
    log.write_text(f"{good}\nnot json\n{good}\n{good[:20]}")
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        records = list(steptrace.read_steps(log))
    assert len(records) == 2
    assert "steps.jsonl:2: skipped a corrupt line" in caplog.text
    assert "steps.jsonl:4: skipped a torn last line" in caplog.text


def test_export_reports_failure_when_the_file_is_gone_and_unrecreatable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken disk makes export return FAILURE with one warning; the app is not interrupted."""
    provider = TracerProvider()
    directory = tmp_path / "logs"
    exporter = steptrace.JsonlSpanExporter(directory / "steps.jsonl")
    tracer = provider.get_tracer("t")
    directory_as_file = tmp_path / "logs"
    (directory / "steps.jsonl").unlink()
    directory.rmdir()
    directory_as_file.write_text("now a file, so the log cannot be recreated")
    exporter._next_check = 0.0  # the reopen check runs at most once a second
    spans = []
    for _ in range(3):
        with tracer.start_as_current_span("s", attributes={A.RUN_ID: "r"}) as span:
            pass
        spans.append(span)
    with caplog.at_level(logging.WARNING, logger="steptrace"):
        results = [exporter.export([s]) for s in spans]  # type: ignore[list-item]
    assert results == [SpanExportResult.FAILURE] * 3
    assert caplog.text.count("cannot write the step log") == 1
    assert exporter.force_flush() is False
    assert exporter.force_flush() is True  # the failure is reported once


def test_oversized_record_is_truncated_with_a_marker(tmp_path: Path) -> None:
    """A record larger than the limit is cut, stays valid JSON and says it was cut."""
    exporter = steptrace.JsonlSpanExporter(tmp_path / "s.jsonl", max_record_bytes=4096)
    assert exporter.write_record({"run_id": "r", "type": "tool_call", "output": "x" * 100_000})
    (record,) = steptrace.read_steps(tmp_path / "s.jsonl")
    assert record["truncated"]["original_bytes"] > 100_000
    assert len((tmp_path / "s.jsonl").read_bytes()) <= 4096
