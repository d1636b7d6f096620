"""A run recorded in one process re-runs in another: what ``steptrace rerun RUN -- python agent.py``
always does. Each scenario of ``rerun_processes.py`` records against a fake server, then re-runs
in a new process with no server at all (issue 22, item 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = str(Path(__file__).parent / "rerun_processes.py")


def run_script(*argv: str) -> dict[str, Any]:
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    for name in ("STEPTRACE_JSONL_PATH", "STEPTRACE_RECORD_FOR_RERUN", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        environment.pop(name, None)
    done = subprocess.run(
        [sys.executable, SCRIPT, *argv],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def record_then_rerun(scenario: str, log: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    recorded = run_script(scenario, "record", str(log))
    rerun = run_script(scenario, "rerun", str(log), recorded["run_id"])
    return recorded, rerun


@pytest.mark.parametrize(
    "scenario",
    [
        "decorators",
        "openai",
        "anthropic",
        "anthropic_beta_and_parse",
        "google_genai",
        "agents_sdk",
        "agents_sdk_streamed",
    ],
)
def test_an_unchanged_agent_reproduces_in_a_new_process(scenario: str, tmp_path: Path) -> None:
    """Every rerun in a new process diverged at model call 1 (a client's repr holds its address)."""
    recorded, rerun = record_then_rerun(scenario, tmp_path / "logs")
    assert "error" not in rerun, rerun
    assert rerun["answer"] == recorded["answer"]
    report = rerun["report"]
    assert report["reproduced"] is True, report["verdict"]
    assert report["divergence"] is None


def test_arguments_left_out_of_the_match_are_named_in_the_recording(tmp_path: Path) -> None:
    """A client object and a callback cannot be compared across processes: the recording says so."""
    log = tmp_path / "logs"
    recorded = run_script("decorators", "record", str(log))
    text = (log / "rerun" / f"{recorded['run_id']}.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    (tool,) = [line for line in lines if line["recording"] == "tool"]
    assert tool["unmatched_args"] == ["client", "on_done"]
    model_calls = [line for line in lines if line["recording"] == "llm"]
    assert [line["unmatched_args"] for line in model_calls] == [["client"], ["client"]]
    assert "0x" not in json.dumps(lines)


def test_args_hash_of_an_object_argument_is_the_same_in_every_process(tmp_path: Path) -> None:
    """debug's repeated-call detection and the rerun's tool match read args_hash: no address in it."""
    log = tmp_path / "logs"
    recorded = run_script("decorators", "record", str(log))
    rerun = run_script("decorators", "rerun", str(log), recorded["run_id"])
    assert rerun["report"]["reproduced"] is True
    records = [json.loads(line) for line in (log / "steps.jsonl").read_text().splitlines()]
    hashes = {r["run_id"]: r["args_hash"] for r in records if r.get("type") == "tool_call"}
    assert len(hashes) == 2 and len(set(hashes.values())) == 1, hashes


def test_what_is_served_is_exactly_what_was_returned(tmp_path: Path) -> None:
    """Int keys came back as strings, tuples as lists, 2**80 and NaN as strings, a card-like id and
    a token as markers, a failing generator without its items, and the verdict said reproduced."""
    recorded, rerun = record_then_rerun("values", tmp_path / "logs")
    exact, card, token, generator = recorded["answer"]
    assert exact.startswith("{1: 'one', (2, 'b'): (3, 4.5, [None, True]), 'big': 1208925819614629174706176")
    assert card == "{'id': 4111111111111111}" and token == "{'token': 'abc123'}"
    assert generator == "[1, 2] then RuntimeError: page 3 failed"
    served = rerun["answer"]
    assert served[0] == exact
    assert served[1] == "RerunDivergence: step 2: card_lookup's result was recorded as not replayable " + (
        "(a secret was redacted from it at recording)"
    )
    assert served[2].startswith("RerunDivergence: step 3: session_lookup's result was recorded as not")
    assert served[3] == generator
    report = rerun["report"]
    assert report["reproduced"] is False
    assert report["divergence"].startswith("step 2: card_lookup")


FENCED = "made inside capture_content(False): its content was not recorded"


def test_calls_inside_capture_content_false_are_not_recorded(tmp_path: Path) -> None:
    """The user's fence held in the step log but not in rerun/<run_id>.jsonl: arguments and
    results of fenced calls were written there. Now they are recorded as not replayable."""
    log = tmp_path / "logs"
    recorded, rerun = record_then_rerun("fenced", log)
    assert recorded["answer"][1] == "the vault entry at /vault/patient-4471: patient-4471"
    text = (log / "rerun" / f"{recorded['run_id']}.jsonl").read_text()
    assert "4471" not in text and "private" not in text
    calls = [json.loads(line) for line in text.splitlines()]
    fenced = [
        (c.get("name") or "model", c.get("unreplayable")) for c in calls if c["recording"] in ("llm", "tool")
    ]
    assert fenced == [
        ("search", None),
        ("read_vault", FENCED),
        ("model", FENCED),
        ("search", None),  # capture_content(True) inside the fence: the user opted back in
        ("lookup_patient", FENCED),
    ]
    served = rerun["answer"]
    assert served[0] == recorded["answer"][0] and served[3] == recorded["answer"][3]
    for index in (1, 2, 4):
        assert served[index].startswith("RerunDivergence: ") and FENCED in served[index], served[index]
    assert rerun["report"]["reproduced"] is False


def test_hostile_run_ids_record_inside_the_folder_and_rerun(tmp_path: Path) -> None:
    """A run id like ../../../x wrote outside the log directory; now every recording is a file
    of log/rerun, found again by its run id."""
    import steptrace

    work = tmp_path / "deep" / "er" / "work"
    log = work / "logs"
    log.mkdir(parents=True)
    recorded = run_script("hostile", "record", str(log))
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and log not in p.parents]
    assert outside == []
    assert not Path("/tmp/steptrace-hostile-absolute.jsonl").exists()
    files = sorted(p.name for p in (log / "rerun").iterdir())
    assert len(files) == len(recorded["answer"]) and all(len(name) < 100 for name in files), files
    assert "ok-id.jsonl" in files
    telemetry = steptrace.configure("hostile-rerun", jsonl_path=tmp_path / "rerun-log" / "steps.jsonl")
    try:
        import rerun_processes as agent

        for run_id in recorded["answer"]:
            with steptrace.rerun(run_id, log=log) as rerun, steptrace.agent_run(agent="hostile"):
                agent.search(agent.Client("x"), run_id)
            assert rerun.report is not None and rerun.report.reproduced, (run_id, rerun.report)
            assert rerun.report.original_run_id == run_id
    finally:
        telemetry.shutdown()


@pytest.fixture(scope="module")
def stream_helpers_recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One recording of messages.stream / beta.messages.stream, sync and async (4 model calls)."""
    log = tmp_path_factory.mktemp("stream-helpers") / "logs"
    return log, run_script("anthropic_stream_helpers", "record", str(log))


def test_stream_helpers_unchanged_reproduce(stream_helpers_recorded: tuple[Path, dict[str, Any]]) -> None:
    log, recorded = stream_helpers_recorded
    rerun = run_script("anthropic_stream_helpers", "rerun", str(log), recorded["run_id"])
    assert rerun["answer"] == recorded["answer"] == ["Paris 0.", "Paris 1.", "Paris 2.", "Paris 3."]
    assert rerun["report"]["reproduced"] is True, rerun["report"]["verdict"]


@pytest.mark.parametrize(
    "changed", [1, 2, 3, 4], ids=["messages.stream", "beta.messages.stream", "async", "async-beta"]
)
def test_a_changed_prompt_of_a_stream_helper_is_a_divergence(
    changed: int, stream_helpers_recorded: tuple[Path, dict[str, Any]]
) -> None:
    """The stream helpers' requests were recorded as {}: a rerun asking another question was
    served the recorded answer and said "reproduced". Now it says what changed, as for create."""
    log, recorded = stream_helpers_recorded
    rerun = run_script(f"anthropic_stream_helpers_changed_{changed}", "rerun", str(log), recorded["run_id"])
    report = rerun["report"]
    assert report["reproduced"] is False, report["verdict"]
    assert f"model call {changed} asked for something else" in report["divergence"]
    assert (
        "messages[0].content: expected 'Capital of France?', got 'Capital of Spain?'"
        in (report["divergence"])
    )
    assert report["verdict"].startswith("changed: diverged at step")
    assert rerun["answer"] == recorded["answer"]  # llm="recorded": still served, in order


def _old_shape_copy(log: Path, run_id: str, destination: Path) -> Path:
    """The recording as steptrace wrote it before stream helpers' requests were recorded: every
    stream helper's model call holds ``"request": {}``."""
    shutil.copytree(log / "rerun", destination / "rerun")
    path = destination / "rerun" / f"{run_id}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        if line["recording"] == "llm" and line.get("stream_helper"):
            line["request"] = {}
            line.pop("unmatched_args", None)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return destination


@pytest.mark.parametrize("scenario", ["anthropic_stream_helpers", "anthropic_stream_helpers_changed_2"])
def test_an_old_recording_of_stream_helpers_is_served_but_not_called_reproduced(
    scenario: str, stream_helpers_recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A recording made before the fix cannot tell a changed prompt from an unchanged one: its
    responses are still served in order, and the verdict says the requests were not compared."""
    log, recorded = stream_helpers_recorded
    old = _old_shape_copy(log, recorded["run_id"], tmp_path / "old")
    rerun = run_script(scenario, "rerun", str(old), recorded["run_id"])
    report = rerun["report"]
    assert rerun["answer"] == recorded["answer"]
    assert report["reproduced"] is False, report["verdict"]
    assert report["divergence"] is None
    assert report["verdict"].startswith("not compared: 4 model calls were recorded without their request")
    assert report["ran"]["llm"] == {"served": 4, "out_of_match": 0, "out_of_match_from": None, "live": 0}
