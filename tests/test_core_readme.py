"""The README's copy-paste example runs as written and produces the log it describes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_readme_api_example_runs(tmp_path: Path) -> None:
    """A reader who pastes the example gets a step log with a finished run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_JSONL"))}
    result = subprocess.run(
        [sys.executable, "-c", _block_after("## Trace an agent")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "steptrace-logs" / "steps.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["type"] for r in records] == ["llm_call", "tool_call", "agent_step", "run"]
    assert records[-1]["stop_reason"] == "end_turn"
    assert records[0]["input_tokens"] == 812
