"""The README's "Turn an incident into a test", run as written: record a failing run, export it,
commit the export beside the README's test, and that test passes on the fixed agent and fails on
the unfixed one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
README = HERE.parent / "README.md"
AGENT = HERE / "rerun_agents.py"
BUG = '    if not FIXED.is_set():\n        raise ValueError(f"no exchange rate for {to}")\n'


def _readme_test() -> str:
    section = README.read_text(encoding="utf-8").split("### Turn an incident into a test", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README lost its incident test"
    return match.group(1)


CLOSED = "http://127.0.0.1:9/v1/chat"  # the model's address with nothing listening: CI's network


def _run(args: list[str], cwd: Path, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """Run in the project; ``offline``: any call to the model fails with a connection error."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    for name in ("STEPTRACE_JSONL_PATH", "OTEL_EXPORTER_OTLP_ENDPOINT", "STEPTRACE_RECORD_FOR_RERUN"):
        env.pop(name, None)
    env.pop("RERUN_AGENT_MODEL_URL", None)
    if offline:
        env["RERUN_AGENT_MODEL_URL"] = CLOSED
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: the agent (unfixed), one recorded production run, its export."""
    root = tmp_path_factory.mktemp("project")
    source = AGENT.read_text(encoding="utf-8")
    assert BUG in source
    (root / "my_agent.py").write_text(source, encoding="utf-8")
    recorded = _run(
        [
            sys.executable,
            "-c",
            "import os; os.environ['STEPTRACE_RECORD_FOR_RERUN'] = 'true'; import my_agent; my_agent.main()",
        ],
        root,
        offline=False,  # production: the model answered
    )
    assert recorded.returncode == 0, recorded.stderr
    (recording,) = (root / "steptrace-logs" / "rerun").glob("*.jsonl")
    (root / "tests").mkdir()
    exported = _run(
        [sys.executable, "-m", "steptrace", "export", recording.stem[:4], "-o", "tests/incident-d157.jsonl"],
        root,
    )
    assert exported.returncode == 0, exported.stderr
    (root / "tests" / "test_incident_d157.py").write_text(_readme_test(), encoding="utf-8")
    return root


def test_the_readme_incident_test_passes_once_the_agent_is_fixed(project: Path) -> None:
    agent = project / "my_agent.py"
    agent.write_text(agent.read_text(encoding="utf-8").replace(BUG, ""), encoding="utf-8")  # the fix
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert not (project / "tests" / "steptrace-logs").exists()  # the fixture kept the test folder clean
    (recording,) = (project / "steptrace-logs" / "rerun").glob("*.jsonl")
    debug = _run(
        [
            sys.executable,
            "-m",
            "steptrace",
            "debug",
            recording.stem[:4],
            "--log",
            "tests/incident-d157.jsonl",
        ],
        project,
    )
    assert "(recorded/live): changed: diverged at step 3" in debug.stdout  # the verdict, kept beside it


def test_the_readme_incident_test_fails_while_the_bug_is_there(project: Path) -> None:
    agent = project / "my_agent.py"
    agent.write_text(AGENT.read_text(encoding="utf-8"), encoding="utf-8")  # the bug is back
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout
    assert "assert None == {'amount': 1104000.0, 'currency': 'EUR'}" in result.stdout
    assert "URLError" not in result.stdout and "Connection refused" not in result.stdout


def test_the_network_is_closed_for_the_incident_test(project: Path) -> None:
    """The guard is real: the agent calling its model in the project's tests fails to connect."""
    result = _run([sys.executable, "-c", "import my_agent; my_agent.model(['hi'])"], project)
    assert result.returncode == 1 and "Connection refused" in result.stderr


def _section(title: str, fence: str, index: int = 0) -> str:
    text = README.read_text(encoding="utf-8").split(title, 1)[1].split("<!-- /section:rerun -->")[0]
    return re.findall(rf"```{fence}\n(.*?)```", text, re.S)[index]


RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")


def test_the_readme_prove_a_fix_console_runs_as_written(tmp_path: Path) -> None:
    """ "Prove a fix" from the command line, as the README shows it, in a fresh project: record,
    re-run (a new process each time), fix the tool, re-run with --tools live, then `debug` lists
    both verdicts. Every rerun runs with the model's address closed."""
    console = _section("## Prove a fix: re-run a recorded run", "console")
    debug_text = _section("## Prove a fix: re-run a recorded run", "text", 3)
    (tmp_path / "agent.py").write_text(AGENT.read_text(encoding="utf-8"), encoding="utf-8")
    prefix = re.search(r"steptrace rerun (\w+) ", console)
    assert prefix is not None
    expected: list[str] = []
    got: list[str] = []
    for block in console.split("$ ")[1:]:
        command, *output = block.rstrip("\n").split("\n")
        command, _, comment = command.partition("#")
        if "after fixing convert_currency" in comment:
            agent = tmp_path / "agent.py"
            agent.write_text(agent.read_text(encoding="utf-8").replace(BUG, ""), encoding="utf-8")
        words = command.split()
        if words[0].startswith("STEPTRACE_RECORD_FOR_RERUN="):
            result = _run(
                [sys.executable, "-c", "import os, runpy; os.environ['STEPTRACE_RECORD_FOR_RERUN'] = "
                 "'true'; runpy.run_path('agent.py', run_name='__main__')"],
                tmp_path,
                offline=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            (recording,) = (tmp_path / "steptrace-logs" / "rerun").glob("*.jsonl")
            run_prefix = recording.stem[:4]
            continue
        assert words[0] == "steptrace", command
        words = [sys.executable if word == "python" else word for word in words[1:]]
        words = [run_prefix if word == prefix.group(1) else word for word in words]
        result = _run([sys.executable, "-m", "steptrace", *words], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        printed = [line for line in result.stdout.splitlines() if not line.startswith(("answer:", "calls:"))]
        expected += [RUN_ID.sub("<id>", line) for line in output]
        got += [RUN_ID.sub("<id>", line) for line in printed]
    assert got == expected
    debug = _run([sys.executable, "-m", "steptrace", "debug", run_prefix], tmp_path)
    shown = [RUN_ID.sub("<id>", line) for line in debug.stdout.splitlines() if line.startswith("rerun:")]
    assert shown == [RUN_ID.sub("<id>", line) for line in debug_text.strip().splitlines()]
