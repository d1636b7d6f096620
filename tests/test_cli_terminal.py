"""What the ``steptrace`` command prints reaches a terminal: a logged error message, captured
content, a log line, an agent or tool name holding ESC/BEL sequences is shown escaped, never run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from analysis_logs import make_run, records
from steptrace.analysis._terminal import terminal_text
from steptrace.cli import main

HOSTILE = "boom \x1b]0;pwned\x07 \x1b[2J\rover \x9b31m \u202eevil\x00\x08 end"
# Raw controls a terminal acts on: C0 but tab and newline, DEL, C1, bidirectional overrides.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _hostile(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key in ("error", "input", "output", "output_text", "stop_reason_detail"):
        if isinstance(out.get(key), str):
            out[key] = f"{out[key]} {HOSTILE}"
    if out.get("type") == "tool_call":
        out["tool"] = f"get_weather {HOSTILE}"
        out["input"] = {"city": HOSTILE}
        out["output"] = f"multi\nline {HOSTILE}"
    if out.get("type") == "run":
        out["agent"] = f"agent {HOSTILE}"
    return out


@pytest.fixture
def hostile_log(tmp_path: Path) -> Path:
    lines: list[dict[str, Any]] = []
    for run_id, release in (("run-old", "1.0.0"), ("run-new", "2.0.0")):
        rows = [_hostile(r) for r in records(make_run(run_id, "tool_error", release=release))]
        tool = next(r for r in rows if r["type"] == "tool_call")
        lines.extend(rows)
        lines.append(
            {
                "type": "log",
                "run_id": run_id,
                "level": "WARNING",
                "levelno": 30,
                "logger": f"agent.tools {HOSTILE}",
                "message": f"retrying {HOSTILE}",
                "exception": f"ValueError: {HOSTILE}",
                "ts": tool["ts"] - 0.01,
                "span_id": tool["span_id"],
                "trace_id": tool["trace_id"],
                "agent_step": tool["agent_step"],
            }
        )
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


COMMANDS = [
    ["runs"],
    ["runs", "--json"],
    ["summary", "run-old"],
    ["summary", "run-old", "--json"],
    ["debug", "run-old"],
    ["debug", "run-old", "--json"],
    ["replay", "run-old"],
    ["replay", "run-old", "--full"],
    ["replay", "run-old", "--span", "3"],
    ["replay", "run-old", "--json"],
    ["diff", "--baseline", "1.0.0", "--candidate", "2.0.0"],
    ["diff", "--baseline", "1.0.0", "--candidate", "2.0.0", "--json"],
    ["summary", f"no-such-run{HOSTILE}"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: "-".join(a[:12] for a in argv))
def test_command_output_has_no_raw_control_characters(
    hostile_log: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A logged ``\\x1b]0;pwned\\x07`` or ``\\x1b[2J``: the command retitled or cleared the terminal."""
    code = main([*argv, "--log", str(hostile_log)])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    for stream in (out, err):
        assert RAW_CONTROL.findall(stream) == []
    shown = out + err
    assert "pwned" in shown  # escaped, not dropped
    if "--json" in argv and code == 0:
        decoded = json.dumps(json.loads(out), ensure_ascii=False)
        assert "]0;pwned" in decoded  # still valid JSON, holding the original characters
    elif code == 0 and argv[0] != "diff":
        assert "\\x1b]0;pwned\\x07" in out


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, über 日本", "plain text, über 日本"),
        ("a\tb\nc", "a\tb\nc"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\x1b[2J\rx", "\\x1b[2J\\rx"),
        ("\x9b31m\x7f", "\\u009b31m\\u007f"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
    ],
)
def test_terminal_text_escapes_only_control_characters(text: str, shown: str) -> None:
    """Text for the terminal: a control character passed raw, or a printable one was mangled."""
    assert terminal_text(text) == shown


def test_progress_bar_still_redraws_in_place(tmp_path: Path) -> None:
    """The progress bar's own carriage return: escaped along with the data, it would print garbage."""
    from steptrace.analysis._terminal import TerminalStream, unescaped

    class Tty:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def isatty(self) -> bool:
            return True

    raw = Tty()
    wrapped = TerminalStream(raw)  # type: ignore[arg-type]
    assert unescaped(wrapped) is raw  # type: ignore[comparison-overlap]
    wrapped.write("\r")
    assert raw.text == "\\r"
