"""The `steptrace` command: every subcommand, --json, exit codes and bad inputs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis_logs import make_run, records, standard_log, write_jsonl
from steptrace.analysis import load, summarize
from steptrace.cli import Progress, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("STEPTRACE_JSONL_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    return standard_log(tmp_path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_runs_lists_every_run_as_a_table(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace runs` would miss runs or print an unreadable table."""
    code, out, err = run_cli(capsys, "runs", "--log", str(log))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        "RUN",
        "ID",
        "STARTED",
        "(UTC)",
        "AGENT",
        "RELEASE",
        "STEPS",
        "TOKENS",
        "COST",
        "ERRORS",
        "DURATION",
        "STOP",
        "REASON",
    ]
    assert [line.split()[0] for line in lines[1:]] == [r.run_id for r in load(log).runs()]
    assert "run-loop" in out and "max_steps" in out and "incomplete" in out


def test_runs_json_and_filters(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Scripts using `steptrace runs --json --stop-reason error` would get the wrong runs."""
    code, out, _ = run_cli(capsys, "runs", "--log", str(log), "--json", "--stop-reason", "error")
    assert code == 0
    assert [r["run_id"] for r in json.loads(out)] == ["run-tool-err", "run-model-err"]
    code, out, _ = run_cli(
        capsys, "runs", "--log", str(log), "--json", "--order-by", "duration", "--limit", "1"
    )
    assert [r["run_id"] for r in json.loads(out)] == ["run-slow"]
    code, out, _ = run_cli(
        capsys,
        "runs",
        "--log",
        str(log),
        "--json",
        "--tool",
        "search",
        "--min-steps",
        "5",
        "--release",
        "1.1.0",
        "--since",
        "2026-01-01",
        "--until",
        "2027-01-01T00:00Z",
    )
    assert [r["run_id"] for r in json.loads(out)] == ["run-loop"]


def test_runs_limit_shows_the_most_recent(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--limit 2` would show the oldest runs, or hide that more exist."""
    code, out, _ = run_cli(capsys, "runs", "--log", str(log), "--limit", "2")
    assert code == 0
    body = out.split("\n\n")[0].splitlines()[1:]
    assert [line.split()[0] for line in body] == ["run-slow", "run-crashed"]
    assert "2 of 7 matching runs shown (most recent)" in out


def test_runs_nothing_matched_exits_1(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A filter matching nothing would exit 0 and print an empty table."""
    code, out, err = run_cli(capsys, "runs", "--log", str(log), "--stop-reason", "cancelled")
    assert code == 1 and out == ""
    assert "no runs match" in err and "max_steps" in err


def test_runs_bad_time_is_a_usage_error(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --since would crash with a traceback."""
    code, _, err = run_cli(capsys, "runs", "--log", str(log), "--since", "yesterday")
    assert code == 2 and err.count("\n") == 1 and "bad filter" in err


def test_summary_text_and_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace summary` would print numbers that differ from summarize()."""
    code, out, _ = run_cli(capsys, "summary", "run-loop", "--log", str(log))
    assert code == 0
    assert "stop reason  max_steps" in out and "search ×6" in out
    assert "6  (6 LLM calls, 6 tool calls)" in out
    code, out, _ = run_cli(capsys, "summary", "run-loop", "--log", str(log), "--json")
    run = load(log).get("run-loop")
    assert run is not None
    assert json.loads(out) == summarize(run).to_dict()


def test_unknown_run_exits_1_with_suggestions(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped run id would give a traceback or no hint."""
    for command in ("summary", "debug", "replay", "view"):
        code, out, err = run_cli(capsys, command, "run-lop", "--log", str(log))
        assert code == 1 and out == ""
        assert err.startswith("steptrace: no run 'run-lop'") and "did you mean run-loop" in err
    code, _, err = run_cli(capsys, "summary", "run-ok", "--log", str(log))
    assert code == 1 and "ambiguous" in err and "run-ok-1" in err


def test_summary_accepts_a_unique_prefix(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Typing the start of a long run id would not be enough."""
    code, out, _ = run_cli(capsys, "summary", "run-mod", "--log", str(log))
    assert code == 0 and "run          run-model-err" in out


def test_debug_prints_hypotheses_with_evidence(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace debug` would not point at the failing tool or the loop."""
    code, out, _ = run_cli(capsys, "debug", "run-tool-err", "--log", str(log))
    assert code == 0
    assert "first error:   tool_call get_weather (#3, step 1, agent weather-agent)" in out
    assert "1. [tool_failure]" in out and "Next: steptrace replay run-tool-err --span 3" in out
    code, out, _ = run_cli(capsys, "debug", "run-loop", "--log", str(log), "--json")
    report = json.loads(out)
    assert [h["kind"] for h in report["hypotheses"]] == ["loop"]
    assert report["repeated_tool_calls"][0]["steps"] == [3, 6, 9, 12, 15, 18]


def test_debug_slo(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--slo-ms` would be ignored, or a negative value accepted."""
    code, out, _ = run_cli(capsys, "debug", "run-slow", "--log", str(log), "--slo-ms", "1000")
    assert code == 0 and "[latency]" in out and "above the 1.00 s SLO" in out
    code, _, err = run_cli(capsys, "debug", "run-slow", "--log", str(log), "--slo-ms", "-5")
    assert code == 2 and "--slo-ms" in err


def test_replay_timeline_and_step_jump(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace replay` would skip spans or hide the captured input/output and errors."""
    code, out, _ = run_cli(capsys, "replay", "run-tool-err", "--log", str(log))
    assert code == 0
    assert "error:  ValueError: no such city" in out
    assert 'input:  {"city": "Atlantis"}' in out
    assert "120→30 tok" in out
    rows = [
        line.split()[:2] for line in out.splitlines() if line[:7].strip()[:2] in {f"#{n}" for n in range(10)}
    ]
    assert rows == [["#0", "-"], ["#1", "1"], ["#2", "1"], ["#3", "1"]]  # span # and agent step
    code, out, _ = run_cli(capsys, "replay", "run-loop", "--log", str(log), "--span", "15")
    assert code == 0
    assert "(jumped to span #15; 15 earlier spans hidden)" in out
    assert "▶  #15    5" in out and "#14" not in out
    code, out, _ = run_cli(capsys, "replay", "run-loop", "--log", str(log), "--span", "3", "--json")
    assert [r["step"] for r in json.loads(out)] == list(range(3, 19))


def test_replay_step_means_the_agents_step(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`replay --step 2` jumped to span #2 (a model call of step 1), not to the agent's 2nd step,
    while the STEP column, `runs` and step.number count loop iterations."""
    code, out, _ = run_cli(capsys, "replay", "run-loop", "--log", str(log), "--step", "5")
    assert code == 0
    assert "(jumped to step 5; 13 earlier spans hidden)" in out
    marked = [line.split()[1:3] for line in out.splitlines() if line.startswith("▶")]
    assert marked == [["#13", "5"], ["#14", "5"], ["#15", "5"]]  # the step and its children
    code, out, _ = run_cli(capsys, "replay", "run-loop", "--log", str(log), "--step", "2", "--json")
    shown = json.loads(out)
    assert shown[0]["type"] == "agent_step" and shown[0]["agent_step"] == 2


def test_replay_shortens_long_content_unless_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A huge tool output would flood the terminal, or --full would still cut it."""
    path = write_jsonl(tmp_path / "s.jsonl", make_run("big", tool_result="x" * 5000))
    _, out, _ = run_cli(capsys, "replay", "big", "--log", str(path))
    assert "x" * 5000 not in out and "--full shows all" in out
    _, out, _ = run_cli(capsys, "replay", "big", "--log", str(path), "--full")
    assert "x" * 5000 in out


def test_replay_missing_step_exits_1(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--step 99` on a shorter run would print nothing and exit 0."""
    code, _, err = run_cli(capsys, "replay", "run-ok-1", "--log", str(log), "--step", "99")
    assert code == 1 and "has no agent step 99 (steps: 1..2)" in err
    code, _, err = run_cli(capsys, "replay", "run-ok-1", "--log", str(log), "--span", "99")
    assert code == 1 and "has no span #99 (spans: #0..#5)" in err


def test_diff_by_release(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace diff` would compare the wrong runs or print no verdict."""
    argv = ["diff", "--baseline", "1.0.0", "--candidate", "1.1.0", "--log", str(log)]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    # The crashed run never wrote its run record, so it carries no release.
    assert "baseline 1.0.0 (3 runs)  vs  candidate 1.1.0 (3 runs)" in out
    assert (
        "failed_rate" in out
        and "with_errors_rate" in out
        and "stop_reason[max_steps]" in out
        and "Verdict:" in out
    )
    code, out, _ = run_cli(capsys, *argv, "--json")
    report = json.loads(out)
    assert report["baseline"] == {"label": "1.0.0", "runs": 3}
    assert {m["name"] for m in report["metrics"]} == {
        "failed_rate",
        "with_errors_rate",
        "p50_duration_ms",
        "p95_duration_ms",
        "tokens_per_run",
        "cost_per_run",
        "repeated_call_rate",
    }


def test_diff_unknown_release_exits_1(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped release would compare against nothing without saying so."""
    code, _, err = run_cli(capsys, "diff", "--baseline", "1.0.0", "--candidate", "9.9", "--log", str(log))
    assert code == 1 and "no runs with release '9.9'" in err and "1.0.0, 1.1.0" in err


def test_diff_needs_both_releases(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace diff` without --candidate would crash instead of showing usage."""
    code, _, err = run_cli(capsys, "diff", "--baseline", "1.0.0", "--log", str(log))
    assert code == 2 and "--candidate" in err


def test_view_writes_html(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace view -o` would write nothing, or an unwritable path would give a traceback."""
    out_file = tmp_path / "run.html"
    code, out, _ = run_cli(capsys, "view", "run-loop", "-o", str(out_file), "--log", str(log))
    assert code == 0 and f"wrote {out_file} (19 spans" in out
    assert out_file.read_text().count('class="row"') == 19
    code, _, err = run_cli(
        capsys, "view", "run-loop", "-o", str(tmp_path / "no" / "x.html"), "--log", str(log)
    )
    assert code == 2 and "cannot write" in err
    code, out, _ = run_cli(capsys, "view", "run-loop", "--log", str(log), "--json")
    assert json.loads(out)["path"] == "steptrace-run-loop.html"
    assert (tmp_path / "steptrace-run-loop.html").exists()


@pytest.mark.parametrize(
    ("log_arg", "message"),
    [
        ("missing.jsonl", "missing.jsonl: no such file or directory"),
        ("empty-dir", "empty-dir: no step logs in this directory"),
        ("*.nothing", r"*.nothing: no files match this pattern"),
    ],
)
def test_unreadable_log_exits_2_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_arg: str,
    message: str,
) -> None:
    """A wrong --log path would end in a traceback instead of one clear line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty-dir").mkdir()
    code, out, err = run_cli(capsys, "runs", "--log", log_arg)
    assert code == 2 and out == ""
    assert err.startswith(f"steptrace: {message}") and err.count("\n") == 1


def test_corrupt_lines_warn_and_keep_going(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Corrupt lines would abort the command or be skipped silently."""
    lines = [json.dumps(r) + "\n" for r in records(make_run("r1"))]
    lines[2:2] = ["garbage\n", "{not json\n"]
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(lines) + '{"run_id": "r2", "ty')
    code, out, err = run_cli(capsys, "runs", "--log", str(path))
    assert code == 0 and "r1" in out
    (warning,) = err.splitlines()
    assert warning == (
        f"steptrace: warning: {path}: skipped 2 corrupt lines (line 3, 4); skipped a torn "
        "last line (the writer probably stopped mid-write)"
    )


def test_default_log_location_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --log the command would not find ./steptrace-logs or $STEPTRACE_JSONL_PATH."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEPTRACE_JSONL_PATH", raising=False)
    code, _, err = run_cli(capsys, "runs")
    assert code == 2 and "no step log at ./steptrace-logs" in err and "STEPTRACE_JSONL_PATH" in err
    (tmp_path / "steptrace-logs").mkdir()
    write_jsonl(tmp_path / "steptrace-logs" / "steps.jsonl", make_run("default-run"))
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and "default-run" in out
    write_jsonl(tmp_path / "elsewhere.jsonl", make_run("env-run"))
    monkeypatch.setenv("STEPTRACE_JSONL_PATH", str(tmp_path / "elsewhere.jsonl"))
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and "env-run" in out and "default-run" not in out
    code, out, _ = run_cli(capsys, "runs", "--log", "steptrace-logs", "--log", "elsewhere.jsonl")
    assert code == 0 and "env-run" in out and "default-run" in out


@pytest.mark.parametrize("command", ["runs", "summary", "debug", "replay", "diff", "view", "demo"])
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace CMD --help` would show no example to copy."""
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert f"example:\n  steptrace {command}" in out
    assert "--json" in out and "--log PATH" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command or an unknown option would exit 0 or with a traceback."""
    assert run_cli(capsys)[0] == 2
    assert run_cli(capsys, "runs", "--no-such-option")[0] == 2
    assert run_cli(capsys, "nonsense")[0] == 2
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "exit codes: 0 ok, 1 nothing matched" in out


def test_progress_bar_appears_only_after_a_second() -> None:
    """Loading a big log would show no progress, or small loads would flicker a bar."""
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(1_000_000, stream, clock=lambda: now[0], enabled=True)
    bar(100_000)
    now[0] = 0.5
    bar(500_000)
    assert stream.getvalue() == ""
    now[0] = 1.2
    bar(600_000)
    assert "loading step logs [##################............]  60%" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\r")
    quiet = io.StringIO()
    off = Progress(10, quiet, clock=lambda: now[0] + 5)  # not a terminal: never drawn
    off(5)
    assert quiet.getvalue() == ""


def test_console_script_exit_codes_without_traceback(tmp_path: Path) -> None:
    """The installed command would print a traceback for a missing log."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("STEPTRACE_JSONL_PATH", None)
    completed = subprocess.run(
        [sys.executable, "-m", "steptrace.cli", "summary", "x", "--log", "nope.jsonl"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr == "steptrace: nope.jsonl: no such file or directory\n"
    path = standard_log(tmp_path)
    completed = subprocess.run(
        [sys.executable, "-m", "steptrace.cli", "runs", "--log", str(path), "--stop-reason", "x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 1 and "Traceback" not in completed.stderr


def test_demo_runs_the_quickstart_and_points_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """`steptrace demo` would fail or leave the user without a next command."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEPTRACE_JSONL_PATH", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    code = main(["demo"])
    out = capfd.readouterr().out
    assert code == 0
    assert "steptrace debug RUN_ID" in out
    runs = load(tmp_path / "steptrace-logs")
    (run,) = runs
    assert run.complete and run.stop_reason == "end_turn" and run.error_count == 1


def test_runs_json_no_match_prints_an_empty_list(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace runs --json | jq` got no JSON at all when nothing matched."""
    code, out, err = run_cli(capsys, "runs", "--log", str(log), "--json", "--stop-reason", "cancelled")
    assert code == 1
    assert json.loads(out) == []
    assert "no runs match" in err


def test_runs_json_says_on_stderr_when_limit_cut_the_list(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script reading `runs --json` believed it had every run when --limit (default 20) cut it."""
    code, out, err = run_cli(capsys, "runs", "--log", str(log), "--json", "--limit", "2")
    assert code == 0 and len(json.loads(out)) == 2
    assert err.count("\n") == 1 and "2 of 7 matching runs" in err and "--limit 0" in err


def test_runs_unparseable_since_gives_an_example(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--since yesterday` printed Python's "Invalid isoformat string" instead of how to write it."""
    code, _, err = run_cli(capsys, "runs", "--log", str(log), "--since", "yesterday")
    assert code == 2 and err.count("\n") == 1
    assert "isoformat" not in err
    assert "--since 'yesterday'" in err and "2026-11-21T00:00Z" in err


def test_runs_release_no_match_lists_the_releases(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After `--release v3` matched nothing, the hint listed stop reasons, not the releases there are."""
    code, _, err = run_cli(capsys, "runs", "--log", str(log), "--release", "v3")
    assert code == 1
    assert "releases present: 1.0.0, 1.1.0" in err or "releases present: 1.1.0, 1.0.0" in err
    assert "stop reasons" not in err


def test_an_internal_error_is_one_line_and_exit_3(
    log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a command printed a traceback and exited 1, which scripts read as "nothing matched"."""
    from steptrace import cli

    def broken(run: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cli, "summarize", broken)
    monkeypatch.delenv("STEPTRACE_DEBUG", raising=False)
    code, out, err = run_cli(capsys, "summary", "run-loop", "--log", str(log))
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and "internal error: RecursionError" in err and "STEPTRACE_DEBUG=1" in err
    monkeypatch.setenv("STEPTRACE_DEBUG", "1")
    with pytest.raises(RecursionError):
        main(["summary", "run-loop", "--log", str(log)])


def test_demo_and_python_m_steptrace_work_from_an_installed_wheel(tmp_path: Path) -> None:
    """From a wheel (no checkout), `steptrace demo` said examples/quickstart.py was missing and
    `python -m steptrace` said "No module named steptrace.__main__"."""
    import shutil

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src" / "steptrace",
        source / "src" / "steptrace",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    if built.returncode != 0 and any(
        word in built.stderr for word in ("No matching distribution", "connection", "Could not find")
    ):
        pytest.skip(f"cannot fetch the build backend offline: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("steptrace-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_"))}
    env["PYTHONPATH"] = str(site)  # the wheel's copy, not the checkout's src/
    where = subprocess.run(
        [sys.executable, "-c", "import steptrace; print(steptrace.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site))
    demo = subprocess.run(
        [sys.executable, "-m", "steptrace", "demo"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "steptrace debug RUN_ID" in demo.stdout and "Traceback" not in demo.stderr
    runs = subprocess.run(
        [sys.executable, "-m", "steptrace", "runs", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert runs.returncode == 0, runs.stderr
    (run,) = json.loads(runs.stdout)
    assert run["agent"] == "quickstart-researcher" and run["stop_reason"] == "end_turn"
