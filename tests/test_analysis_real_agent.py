"""Analysis of a log written by steptrace itself: a real decorated agent that loops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from steptrace.analysis import debug_run, load, summarize

REPO = Path(__file__).resolve().parents[1]

AGENT = textwrap.dedent(
    """
    import steptrace

    @steptrace.llm_request(provider="scripted")
    def call_model(turn):
        return {
            "type": "message", "id": f"msg_{turn}", "model": "scripted-1", "role": "assistant",
            "content": [{"type": "tool_use", "id": f"t{turn}", "name": "lookup",
                         "input": {"key": "same"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 100, "output_tokens": 10},
        }

    @steptrace.tool
    def lookup(key):
        return {"found": None, "note": "</script><script>alert(1)</script>"}

    telemetry = steptrace.configure(service_name="looper")
    with steptrace.agent_run(agent="looper", release="2.0.0") as run:
        for turn in range(4):
            with steptrace.agent_step():
                call_model(turn)
                lookup(key="same")
        run.stop_reason = "max_steps"
    telemetry.shutdown()
    """
)


def test_real_agent_log_is_analysed_like_generated_ones(tmp_path: Path) -> None:
    """Logs from the real exporter would be misread (counts, loop detection, stop reason)."""
    log = tmp_path / "steps.jsonl"
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "STEPTRACE_JSONL_PATH": str(log)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120)

    (run,) = load(log)
    raw = [json.loads(line) for line in log.read_text().splitlines()]
    (run_record,) = [r for r in raw if r["type"] == "run"]
    summary = summarize(run)
    # The analysis derives counts from the records; the core totals them on the run span.
    assert summary.total_steps == run_record["steps"] == 4
    assert summary.llm_call_count == run_record["llm_calls"] == 4
    assert summary.tool_call_count == run_record["tool_calls"] == 4
    assert summary.input_tokens == run_record["input_tokens"] == 400
    assert summary.output_tokens == run_record["output_tokens"] == 40
    assert (summary.agent, summary.release, summary.stop_reason) == ("looper", "2.0.0", "max_steps")
    assert summary.tools_used == {"lookup": 4}

    report = debug_run(run)
    (repeated,) = report.repeated_tool_calls
    assert repeated.tool == "lookup" and repeated.count == 4
    assert [h.kind for h in report.hypotheses] == ["loop"]
    tool_steps = [r["step"] for r in raw if r["type"] == "tool_call"]
    assert sorted(repeated.steps) == sorted(tool_steps)


def test_crashed_run_keeps_its_agent_and_release(tmp_path: Path) -> None:
    """A process killed mid-run leaves no run record; the run still shows its agent and release."""
    log = tmp_path / "steps.jsonl"
    script = textwrap.dedent(
        f"""
        import os, steptrace
        steptrace.configure(jsonl_path={str(log)!r})
        run = steptrace.agent_run(agent="billing", release="v9").__enter__()
        with steptrace.agent_step():
            pass
        os._exit(1)  # dies before the run ends: no run record
        """
    )
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    types = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert types == ["agent_step"]
    (run,) = load(log).runs()
    assert (run.agent, run.release, run.stop_reason) == ("billing", "v9", "incomplete")
    assert [r.run_id for r in load(log).runs(release="v9")] == [run.run_id]
