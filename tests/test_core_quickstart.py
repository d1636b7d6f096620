"""The quickstart agent end to end: JSONL records correlate exactly with exported spans."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from steptrace.testing import Capture

ROOT = Path(__file__).resolve().parents[1]


def _quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["quickstart"] = module
    spec.loader.exec_module(module)
    return module


def test_records_match_spans_exported_at_the_same_time(steptrace_capture: Capture) -> None:
    """Every JSONL record has the trace_id/span_id/run_id of a span the OTLP side exported."""
    quickstart = _quickstart()
    answer = quickstart.run_agent("What was our Q3 revenue, in euros?")
    assert "4.2M" in answer
    spans = {f"{s.context.span_id:016x}": s for s in steptrace_capture.spans}
    records = steptrace_capture.records
    assert len(records) == len(spans) == 12  # 1 run + 4 steps + 4 llm calls + 3 tool calls
    for record in records:
        span = spans[record["span_id"]]
        assert record["trace_id"] == f"{span.context.trace_id:032x}"
        assert record["run_id"] == (span.attributes or {})["steptrace.run_id"]
        assert record["name"] == span.name
    (run,) = [r for r in records if r["type"] == "run"]
    assert run["stop_reason"] == "end_turn"
    assert run["errors"] == 1 and run["tool_calls"] == 3 and run["llm_calls"] == 4 and run["steps"] == 4
    failed = [r for r in records if r["error"]]
    assert len(failed) == 1 and failed[0]["tool"] == "convert_currency"
    assert failed[0]["error"].startswith("ValueError: unknown currency code 'EURO'")
