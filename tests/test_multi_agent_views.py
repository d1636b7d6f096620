"""A two-agent Agents SDK fleet (triage -> billing), read through every view: what "error"
means, unknown tokens, who acted, what the model was told, where it threw (issue 23)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import set_tracing_disabled

import steptrace
from steptrace.analysis import RunSet, diff, load
from steptrace.analysis._html import round_tick_ms
from steptrace.cli import main
from steptrace.testing import Capture
from triage_fleet import BILLING_INSTRUCTIONS, REFUND_LINE, run_fleet


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    steptrace.instrument_openai_agents()
    set_tracing_disabled(True)
    yield
    steptrace.uninstrument_openai_agents()


@pytest.fixture
def fleet(steptrace_capture: Capture) -> tuple[RunSet, dict[str, str], Path]:
    ids = run_fleet(steptrace_capture)
    path = steptrace_capture.jsonl_path
    return load(path), ids, path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_failed_runs_and_runs_with_errors_are_two_filters_and_two_columns(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--status error` and diff's error column would count different runs under one word."""
    runs, ids, path = fleet
    failed = {r.run_id for r in runs.runs(status="error")}
    with_errors = {r.run_id for r in runs.runs(has_errors=True)}
    assert failed == {ids["failed"]}
    assert with_errors == {ids["failed"], ids["recovered"]}
    _, out = cli(capsys, "runs", "--log", str(path), "--has-errors", "--json")
    assert {r["run_id"] for r in json.loads(out)} == with_errors
    assert all(r["has_errors"] for r in json.loads(out))
    _, out = cli(capsys, "runs", "--log", str(path), "--status", "error", "--json")
    assert [(r["run_id"], r["failed"]) for r in json.loads(out)] == [(ids["failed"], True)]
    report = diff([runs.get(ids["ok"])], list(runs))  # type: ignore[list-item]
    rates = {m.name: m.candidate for m in report.metrics}
    assert rates["failed_rate"] == 1 / 4 and rates["with_errors_rate"] == 2 / 4


def test_unknown_tokens_are_shown_as_unknown_and_left_out_of_averages(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A streamed call with no usage would read as 0 tokens and pull the averages down."""
    runs, ids, path = fleet
    blind = runs.get(ids["no_usage"])
    assert blind is not None and blind.llm_calls_without_usage == 2 and blind.known_total_tokens is None
    _, out = cli(capsys, "runs", "--log", str(path), "--json")
    rows = {r["run_id"]: r for r in json.loads(out)}
    assert rows[ids["no_usage"]]["total_tokens"] is None
    assert rows[ids["no_usage"]]["llm_calls_without_usage"] == 2
    assert rows[ids["ok"]]["total_tokens"] == 81
    _, out = cli(capsys, "runs", "--log", str(path))
    (line,) = [line for line in out.splitlines() if line.startswith(ids["no_usage"])]
    assert line.split()[8] == "—"  # TOKENS: after id, date, time, "triage → billing", release, steps
    _, out = cli(capsys, "summary", ids["no_usage"], "--log", str(path))
    assert "tokens       —  (2 model calls reported no usage: unknown, not counted)" in out
    _, out = cli(capsys, "summary", ids["no_usage"], "--log", str(path), "--json")
    assert json.loads(out)["total_tokens"] is None
    _, out = cli(capsys, "replay", ids["no_usage"], "--log", str(path))
    assert "— tok (no usage)" in out and "0→0" not in out
    known = [r.total_tokens for r in runs if r.run_id != ids["no_usage"]]
    report = diff(list(runs), list(runs))
    (tokens,) = [m for m in report.metrics if m.name == "tokens_per_run"]
    assert tokens.baseline == sum(known) / len(known)
    assert (
        report.tokens_note is not None and "1 of 4 runs (2 model calls without usage)" in report.tokens_note
    )
    assert cli(capsys, "report", "--log", str(path), "-o", str(path.parent / "r.html"))[0] == 0
    page = (path.parent / "r.html").read_text()
    assert "(1 unknown)" in page


def test_every_view_names_the_agent_that_acted_and_the_handoff(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """After triage handed off to billing, the views would still credit every step to triage,
    and `runs --agent billing` would find nothing."""
    runs, ids, path = fleet
    failed = ids["failed"]
    run = runs.get(failed)
    assert run is not None and run.agent == "triage" and run.agents == ("triage", "billing")
    assert {r.run_id for r in runs.runs(agent="billing")} == set(ids.values())
    assert runs.runs(starting_agent="billing") == []
    assert len(runs.runs(starting_agent="triage")) == 4
    _, out = cli(capsys, "runs", "--log", str(path), "--agent", "billing", "--json")
    assert len(json.loads(out)) == 4 and json.loads(out)[0]["agents"] == ["triage", "billing"]
    assert main(["runs", "--log", str(path), "--starting-agent", "billing"]) == 1
    _, out = cli(capsys, "runs", "--log", str(path))
    assert "triage → billing" in out

    _, out = cli(capsys, "replay", failed, "--log", str(path))
    assert "agent_step agent_step 1 (triage)" in out and "agent_step agent_step 2 (billing)" in out
    assert "handoff: triage → billing" in out
    _, out = cli(capsys, "debug", failed, "--log", str(path))
    assert "agents:        triage → billing (handoff at step 1)" in out
    assert "first error:   tool_call refund (#5, step 2, agent billing)" in out
    _, out = cli(capsys, "summary", failed, "--log", str(path))
    assert "agents       triage → billing (handoff at step 1)" in out
    page = path.parent / "run.html"
    assert main(["view", failed, "--log", str(path), "-o", str(page)]) == 0
    text = page.read_text()
    assert "agent_step 2 (billing)" in text and 'class="handoff">handoff → billing' in text
    assert "agent billing" in text  # the tool's detail title names the agent that called it
    report = path.parent / "report.html"
    assert main(["report", "--log", str(path), "-o", str(report)]) == 0
    assert "agent_step 2 (billing)" in report.read_text()  # the embedded waterfalls


def test_what_the_model_was_told_is_in_the_record_once_a_run_and_redacted(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str], steptrace_capture: Capture
) -> None:
    """`replay` could not answer "what was the model told", or the log would repeat the same
    instructions on every turn, or keep the secret they mention."""
    runs, ids, path = fleet
    text = path.read_text()
    assert "sk-proj-T3stKey" not in text
    raw = [json.loads(line) for line in text.splitlines()]
    calls = [r for r in raw if r["run_id"] == ids["ok"] and r["type"] == "llm_call"]
    assert len(calls) == 3 and all("system_instructions_id" in r for r in calls)
    written = [r["system_instructions"] for r in calls if "system_instructions" in r]
    assert len(written) == 2  # triage's once, billing's once for its two calls
    run = runs.get(ids["ok"])
    assert run is not None
    told = [r["system_instructions"] for r in run.records() if r["type"] == "llm_call"]
    assert [parts[0]["content"][:24] for parts in told] == [
        "Route the customer to th",
        "You handle refunds. Look",
        "You handle refunds. Look",
    ]
    assert BILLING_INSTRUCTIONS[:60] in told[2][0]["content"]
    _, out = cli(capsys, "replay", ids["ok"], "--log", str(path))
    assert out.count("system: You handle refunds. Look the invoice up before answering.") == 2
    assert "system: Route the customer to the right specialist." in out
    page = path.parent / "ok.html"
    assert main(["view", ids["ok"], "--log", str(path), "-o", str(page)]) == 0
    assert "Route the customer to the right specialist." in page.read_text()

    steptrace_capture.clear()
    run_fleet(steptrace_capture, ("ok",), capture_content=False)
    assert not [r for r in steptrace_capture.records if "system_instructions" in r]


def test_debug_replay_and_view_say_where_the_failure_was_raised(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str], steptrace_capture: Capture
) -> None:
    """A failure would name its message only, not the line of the user's code that raised it."""
    runs, ids, path = fleet
    run = runs.get(ids["failed"])
    assert run is not None
    where = [{"file": "tests/triage_fleet.py", "line": REFUND_LINE, "function": "refund"}]
    (tool,) = [r for r in run.records() if r["type"] == "tool_call"]
    assert tool["error_where"] == where
    assert 'raise PermissionError(f"refunds of {invoice} need a supervisor")' in tool["error_stack"]
    (head,) = [r for r in run.records() if r["type"] == "run"]
    assert head["error_where"] == where  # the SDK's UserError, through its cause
    _, out = cli(capsys, "debug", ids["failed"], "--log", str(path))
    assert f"raised at:     tests/triage_fleet.py:{REFUND_LINE} in refund" in out
    _, out = cli(capsys, "replay", ids["failed"], "--log", str(path), "--span", "5", "--full")
    assert f"at:     tests/triage_fleet.py:{REFUND_LINE} in refund" in out
    assert "PermissionError: refunds of INV-7 need a supervisor" in out.splitlines()[-2]
    page = path.parent / "failed.html"
    assert main(["view", ids["failed"], "--log", str(path), "-o", str(page)]) == 0
    assert f'"raised_at": "tests/triage_fleet.py:{REFUND_LINE} in refund"' in page.read_text()

    steptrace_capture.clear()  # capture off: the short form only, no stack
    run_fleet(steptrace_capture, ("failed",), capture_content=False)
    (tool,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert tool["error_where"] == where and "error_stack" not in tool


def test_a_model_call_reads_as_a_conversation_in_replay_full_and_view(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A model call would show as raw message JSON: no turns, tool results not tied to their call."""
    _, ids, path = fleet
    _, out = cli(capsys, "replay", ids["ok"], "--log", str(path), "--full", "--span", "7")
    lines = [line.strip() for line in out.splitlines()]
    start = lines.index("system:      You handle refunds. Look the invoice up before answering. "
                        "Refunds API key: [REDACTED:openai-key]")  # fmt: skip
    assert lines[start + 1 :] == [
        "user:        I want a refund for INV-7",
        "assistant:   → transfer_to_billing({}) [call_1]",
        'tool:        ← transfer_to_billing [call_1]: {"assistant": "billing"}',
        'assistant:   → lookup_invoice({"invoice": "INV-7"}) [call_7]',
        "tool:        ← lookup_invoice [call_7]: INV-7: 42.00 EUR, paid",
        "── answer",
        "assistant:   Refund of 42.00 EUR issued.",
    ]
    page = path.parent / "ok.html"
    assert main(["view", ids["ok"], "--log", str(path), "-o", str(page)]) == 0
    text = page.read_text()
    data = json.loads(
        text.split('<script id="steptrace-data" type="application/json">')[1].split("</script>")[0]
    )
    (last,) = [span for span in data["spans"] if span["title"].startswith("#7 ")]
    roles = [turn["role"] for turn in last["transcript"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    result = last["transcript"][5]["items"][0]
    assert (result["kind"], result["name"], result["call_id"]) == ("tool_result", "lookup_invoice", "call_7")
    assert last["attributes"]["model"] == "gpt-4.1"  # one click away, under the conversation


@pytest.mark.parametrize(
    ("total_ms", "step"), [(242.0, 50.0), (187.0, 50.0), (94.0, 20.0), (1000.0, 200.0), (5970.0, 1000.0)]
)
def test_the_time_axis_uses_round_ticks(total_ms: float, step: float) -> None:
    """The axis would read 0, 94, 187 ms instead of 0, 100, 200 ms."""
    assert round_tick_ms(total_ms) == step


def test_hostile_agent_names_and_frames_stay_text(
    fleet: tuple[RunSet, dict[str, str], Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An agent name, handoff target or frame from the log could run in the page or drive the terminal."""
    _, ids, path = fleet
    evil = "<img src=x onerror=alert(1)>\x1b]0;pwned\x07"
    lines = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["run_id"] != ids["failed"]:
            continue
        if record["type"] == "agent_step":
            record["agent"] = evil if record["agent_step"] == 2 else record["agent"]
            record["handoff_to"] = evil if record["handoff_to"] else None
        if record.get("error_where"):
            record["error_where"][0]["function"] = evil
        lines.append(json.dumps(record))
    log = tmp_path / "hostile.jsonl"
    log.write_text("\n".join(lines) + "\n")
    for command in (
        ["replay", ids["failed"], "--full"],
        ["debug", ids["failed"]],
        ["summary", ids["failed"]],
    ):
        _, out = cli(capsys, *command, "--log", str(log))
        assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07" in out
    page = tmp_path / "hostile.html"
    assert main(["view", ids["failed"], "--log", str(log), "-o", str(page)]) == 0
    assert "<img" not in page.read_text()


def test_a_clickhouse_source_answers_the_same_for_agents_errors_and_unknown_tokens(
    fleet: tuple[RunSet, dict[str, str], Path], steptrace_capture: Capture
) -> None:
    """The Collector's ClickHouse table would match `--agent` on the starting agent only, or
    count a call without usage as 0 tokens, where the JSONL log does not."""
    chdb_session = pytest.importorskip("chdb.session", reason="chdb (the test extra) runs the SQL")
    import clickhouse_table as table
    from steptrace.analysis import _clickhouse as ch
    from steptrace.analysis import load_clickhouse

    runs, ids, _ = fleet
    session = chdb_session.Session()
    engine = table.ChdbDatabase(session)
    try:
        table.create_table(engine, "otel.otel_traces")
        table.insert_rows(engine, table.rows_from_readable_spans(steptrace_capture.spans), "otel.otel_traces")
        ch.use_database(lambda url: engine)
        since = min(run.started_at for run in runs).isoformat()
        stored = load_clickhouse("clickhouse://reader@host:8123/otel?table=otel_traces", since=since)
        assert [r.to_dict() for r in stored] == [r.to_dict() for r in runs]
        for filters in ({"agent": "billing"}, {"starting_agent": "billing"}, {"has_errors": True}):
            assert [r.run_id for r in stored.runs(**filters, limit=10)] == [
                r.run_id for r in runs.runs(**filters)
            ]
        releases = {run.release for run in runs}
        assert releases == {None}  # the fleet has no release: diff's SQL path needs one
        assert stored.side_stats() == runs.side_stats()
        assert stored.get(ids["no_usage"]).known_total_tokens is None  # type: ignore[union-attr]
    finally:
        ch.use_database(None)
        session.close()
