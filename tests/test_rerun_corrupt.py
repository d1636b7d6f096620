"""A corrupt or truncated recording: ``RerunDivergence`` (or ``RecordingNotFound``) from the rerun
and one line with exit 2 from the CLI, never ValueError/TypeError/AttributeError from steptrace
(issue 22, item 6). The recording is made by another process, as ``steptrace rerun`` finds it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rerun_agents as agents
import steptrace
from steptrace.cli import main
from steptrace.rerun import RecordingNotFound, RerunDivergence
from steptrace.testing import Capture

AGENT = str(Path(__file__).parent / "rerun_agents.py")
STEPTRACE_SOURCE = str(Path(steptrace.__file__).parent)
WRONG_VALUES: list[Any] = [None, "x", -1, 1.5, [], {}, [1, "a"], {"a": 1}, True, "\ud800", 10**30]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    environment = {
        **os.environ,
        "STEPTRACE_JSONL_PATH": str(tmp_path / "logs" / "steps.jsonl"),
        "STEPTRACE_RECORD_FOR_RERUN": "true",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    subprocess.run([sys.executable, AGENT], env=environment, check=True, capture_output=True, timeout=60)
    (path,) = (tmp_path / "logs" / "rerun").glob("*.jsonl")
    return path


@pytest.fixture
def configured(steptrace_capture: Capture) -> Iterator[None]:
    steptrace_capture.configure()
    agents.reset()
    yield
    agents.reset()


def corruptions(data: bytes, seed: int) -> bytes:
    """One way a recording is damaged: cut, a line dropped or doubled, a field of another type,
    bytes overwritten."""
    rng = random.Random(seed)
    lines = data.splitlines(keepends=True)
    how = seed % 5
    if how == 0:
        return data[: rng.randrange(len(data))]
    if how == 1:
        del lines[rng.randrange(len(lines))]
    elif how == 2:
        lines.insert(rng.randrange(len(lines)), lines[rng.randrange(len(lines))])
    elif how == 3:
        index = rng.randrange(len(lines))
        line = json.loads(lines[index])
        key = rng.choice(sorted(line))
        line[key] = rng.choice(WRONG_VALUES)
        if isinstance(line.get("outcome"), dict) and rng.random() < 0.5:
            line["outcome"][rng.choice(sorted(line["outcome"]))] = rng.choice(WRONG_VALUES)
        lines[index] = (json.dumps(line) + "\n").encode("utf-8", "surrogatepass")
    else:
        position = rng.randrange(len(data))
        return data[:position] + bytes(rng.randrange(256) for _ in range(8)) + data[position + 8 :]
    return b"".join(lines)


SERVING_RECORDED_ERRORS = {"rebuild", "_items_then"}  # where a recorded exception is raised again


def from_steptrace(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of steptrace's own code (not the agent's, not a served one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return (
        bool(frames)
        and frames[-1].filename.startswith(STEPTRACE_SOURCE)
        and frames[-1].name not in SERVING_RECORDED_ERRORS
    )


def test_a_damaged_recording_gives_divergence_never_a_type_error(
    recording: Path, tmp_path: Path, configured: None
) -> None:
    """int('x') in the reader, a dict method on a list, a missing key: each escaped rerun()."""
    original = recording.read_bytes()
    damaged = tmp_path / "damaged.jsonl"
    outcomes: dict[str, int] = {}
    for seed in range(150):
        damaged.write_bytes(corruptions(original, seed))
        agents.reset()
        try:
            with steptrace.rerun(damaged) as rerun:
                agents.run_agent("What was our Q3 revenue, in euros?")
            assert rerun.report is not None
            outcome = "reproduced" if rerun.report.reproduced else "changed"
        except (RerunDivergence, RecordingNotFound) as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # the agent's own code may fail on a value that was edited
            assert not from_steptrace(exc), (seed, "".join(traceback.format_exception(exc)))
            outcome = "the agent failed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert agents.CALLS == {"model": 0, "search": 0, "convert_currency": 0}, seed
    assert outcomes.get("RerunDivergence", 0) > 10 and outcomes.get("reproduced", 0) > 0, outcomes


def test_the_cli_says_in_one_line_that_a_recording_is_unreadable(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 and one line, before the command starts (its configure() raised a traceback)."""
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b'{"recording": "llm", "number": "one"}\n\xff\xfe not json\n')
    assert main(["rerun", str(garbage), "--", sys.executable, AGENT]) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a steptrace recording (no run line)" in err, err


def test_the_cli_reports_a_damaged_call_as_the_divergence(
    recording: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A model call line with fields of the wrong type: the agent's rerun stops there with
    RerunDivergence naming it, and the report says where (no int('x') traceback from configure())."""
    lines = [json.loads(line) for line in recording.read_text().splitlines()]
    first = next(line for line in lines if line["recording"] == "llm")
    first["number"], first["response"] = "one", 5
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["rerun", str(damaged), "--json", "--", sys.executable, AGENT]) == 0
    out, err = capfd.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["divergence"] == (
        "step 1: model call 1 was recorded as not replayable "
        "(the recording is corrupt here (number, response))"
    )
    assert "RerunDivergence" in err and "ValueError" not in err
