"""`steptrace debug` on real steptrace runs: every signal yields a ranked hypothesis that names its
culprit, retries are flaky tools rather than loops, the first error and its hypothesis agree,
a stream closed on purpose is no failure, one error count everywhere, and reruns show up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import Status, StatusCode

import rerun_agents as agents
import steptrace
from steptrace.analysis import DebugReport, Run, debug_run, load, summarize
from steptrace.cli import main as cli_main
from steptrace.testing import Capture


def _run(capture: Capture) -> Run:
    (run,) = load(capture.jsonl_path)
    return run


def _debug(capture: Capture) -> DebugReport:
    return debug_run(_run(capture))


class Flaky:
    """A tool that fails its first ``failures`` calls, then answers."""

    def __init__(self, failures: int) -> None:
        self.left = failures

    def __call__(self, city: str) -> str:
        if self.left:
            self.left -= 1
            raise TimeoutError(f"weather service timed out for {city}")
        return "sunny"


def test_a_retried_tool_is_flaky_not_a_loop(steptrace_capture: Capture) -> None:
    """The same call failing, then succeeding, was listed as repeated calls and blamed as a tool
    failure that stopped nothing: it is a retry, so a flaky tool, and never a loop."""
    weather = steptrace.tool(name="weather")(Flaky(failures=2))
    with steptrace.agent_run(agent="a"):
        for _ in range(3):
            with steptrace.agent_step():
                try:
                    weather("Paris")
                    break
                except TimeoutError:
                    continue
    report = _debug(steptrace_capture)
    assert [h.kind for h in report.hypotheses] == ["flaky_tool"]
    (flaky,) = report.hypotheses
    assert flaky.culprit == "weather" and flaky.score == 1.0
    assert "weather failed 2 time(s) (#2, #4;" in flaky.title and "a retry, not a loop" in flaky.title
    assert "TimeoutError: weather service timed out for Paris" in flaky.title


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_repeats_that_keep_succeeding_are_a_loop_in_a_normal_run(
    steptrace_capture: Capture, kind: str
) -> None:
    """A run that called search 4 times with the same query and then answered had no hypothesis."""

    @steptrace.tool
    def search(query: str) -> str:
        return "nothing new"

    @steptrace.tool
    async def asearch(query: str) -> str:
        return "nothing new"

    def agent() -> None:
        with steptrace.agent_run(agent="a"):
            for _ in range(4):
                with steptrace.agent_step():
                    if kind == "sync":
                        search("q3 revenue")
                    else:
                        asyncio.run(asearch("q3 revenue"))

    agent()
    report = _debug(steptrace_capture)
    (loop,) = report.hypotheses
    assert loop.kind == "loop" and loop.culprit in ("search", "asearch")
    assert "4 times with the same arguments" in loop.title
    assert "check dedupe/cache and stop conditions" in loop.title
    assert loop.score == pytest.approx(3 / 4)


def test_hypotheses_are_ranked_by_how_much_of_the_run_they_explain(steptrace_capture: Capture) -> None:
    """Hypotheses came in a fixed order (tool before model) whatever each explained."""

    @steptrace.tool
    def lookup(key: str) -> str:
        raise KeyError(key)

    with steptrace.agent_run(agent="a"):
        with pytest.raises(RuntimeError), steptrace.agent_step(), steptrace.llm_request(model="m-1"):
            raise RuntimeError("model overloaded")  # first error: the model
        for key in ("a", "b", "c"):
            with steptrace.agent_step(), pytest.raises(KeyError):
                lookup(key)
        with pytest.raises(RuntimeError), steptrace.agent_step(), steptrace.llm_request(model="m-1"):
            raise RuntimeError("model overloaded again")
    report = _debug(steptrace_capture)
    kinds = [(h.kind, h.culprit, round(h.score, 2)) for h in report.hypotheses]
    # The model holds the first error: it ranks first among failures even though the tool
    # failures are more (3 of 5); the scores say how much each explains.
    assert kinds == [("model_failure", "m-1", 0.4), ("tool_failure", "lookup", 0.6)]
    assert report.first_error_span is not None and report.first_error_span.label == "m-1"


def test_a_step_body_failure_is_a_code_failure_counted_once_everywhere(
    steptrace_capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`with agent_run(): with agent_step(): {}["missing"]`: the run record said errors 0 while
    `runs` said 1, and debug had no hypothesis for an error outside a tool or model call."""
    with pytest.raises(KeyError), steptrace.agent_run(agent="a"), steptrace.agent_step():
        {}["missing"]
    (run_record,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    (run_span,) = steptrace_capture.spans_named("agent_run")
    run = _run(steptrace_capture)
    report = debug_run(run)
    assert run_record["errors"] == 1
    assert (run_span.attributes or {})["steptrace.run.errors"] == 1
    assert run.error_count == summarize(run).error_count == report.error_count == 1
    assert report.error_classes == {"KeyError": 1}
    (code,) = report.hypotheses
    assert code.kind == "code_failure" and code.culprit == "agent_step 1"
    assert "KeyError: 'missing' raised in agent_step 1 (#1), outside any tool or model call" in code.title
    assert cli_main(["runs", "--log", str(steptrace_capture.jsonl_path), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["error_count"] == 1


@pytest.mark.parametrize(
    "shape", ["tool-propagates", "tool-caught", "tool-wrapped", "model-fails", "two-tools-one-step"]
)
def test_run_record_span_runs_summary_and_debug_agree_on_errors(
    steptrace_capture: Capture, shape: str
) -> None:
    """One error count: the run record's `errors`, the run span's steptrace.run.errors, `runs`,
    `summary` and `debug` (its root causes)."""

    @steptrace.tool
    def fails(n: int) -> None:
        raise ValueError(f"bad {n}")

    with pytest.raises(Exception) if shape != "tool-caught" else _nothing(), steptrace.agent_run(agent="a"):
        with steptrace.agent_step():
            if shape == "tool-propagates":
                fails(1)
            elif shape == "tool-caught":
                with pytest.raises(ValueError):
                    fails(1)
            elif shape == "tool-wrapped":
                try:
                    fails(1)
                except ValueError as exc:
                    raise RuntimeError("the agent gave up") from exc
            elif shape == "model-fails":
                with steptrace.llm_request(model="m"):
                    raise ConnectionError("reset")
            else:
                for n in (1, 2):
                    with pytest.raises(ValueError):
                        fails(n)
                raise RuntimeError("two tools failed")
    (run_record,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    (run_span,) = steptrace_capture.spans_named("agent_run")
    run = _run(steptrace_capture)
    counts = {
        "record": run_record["errors"],
        "span": (run_span.attributes or {})["steptrace.run.errors"],
        "runs": run.error_count,
        "summary": summarize(run).error_count,
        "debug": debug_run(run).error_count,
    }
    expected = 3 if shape == "two-tools-one-step" else 1
    assert counts == dict.fromkeys(counts, expected)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_first_error_and_hypothesis_name_the_same_error_under_a_foreign_sdk_span(
    steptrace_capture: Capture,
) -> None:
    """The SDK's own span failed first ("429 Too Many Requests"); debug's first-error line named
    it but the model-failure hypothesis quoted our llm_call's different text."""
    sdk_tracer = steptrace_capture.tracer_provider.get_tracer("acme.sdk")  # as if installed globally
    with pytest.raises(RuntimeError), steptrace.agent_run(agent="a"), steptrace.agent_step():
        with steptrace.llm_request(model="acme-1"):
            with sdk_tracer.start_as_current_span("acme.chat", record_exception=False) as sdk_span:
                sdk_span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
            raise RuntimeError("the acme client gave up")
    report = _debug(steptrace_capture)
    first = report.first_error_span
    assert first is not None and first.name == "acme.chat"
    (model,) = report.hypotheses
    assert model.kind == "model_failure" and model.culprit == "acme-1"
    assert "raised 429 Too Many Requests" in model.title
    assert first.error is not None and first.error in model.title


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_closed_on_purpose_is_not_a_model_failure(
    steptrace_capture: Capture, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent stops reading a streamed answer once it has what it needs (stream_completed false,
    no error): debug called that "Model failure: a streamed response was abandoned"."""

    @steptrace.llm_request(model="m")
    def stream() -> Iterator[str]:
        yield from ("a", "b", "c")

    @steptrace.llm_request(model="m")
    async def astream() -> Any:
        for chunk in ("a", "b", "c"):
            yield chunk

    async def take_one() -> None:
        async for _ in astream():
            break

    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        if kind == "sync":
            for _ in stream():
                break
        else:
            asyncio.run(take_one())
    (llm,) = [r for r in steptrace_capture.records if r["type"] == "llm_call"]
    assert llm["status"] != "error"
    assert _debug(steptrace_capture).hypotheses == []


@pytest.fixture
def recording(steptrace_capture: Capture) -> Iterator[Capture]:
    steptrace_capture.configure(record_for_rerun=True)
    agents.reset()
    yield steptrace_capture
    agents.reset()


def test_debug_shows_the_verdict_of_each_rerun_of_the_run(
    recording: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `steptrace rerun` proved a fix, `debug` of the original run still only guessed."""
    agents.run_agent("What was our Q3 revenue, in euros?")
    (path,) = (recording.jsonl_path.parent / "rerun").glob("*.jsonl")
    run_id = path.stem
    with steptrace.rerun(run_id, log=recording.jsonl_path) as same:
        agents.run_agent("What was our Q3 revenue, in euros?")
    agents.reset(fixed=True)
    with steptrace.rerun(run_id, log=recording.jsonl_path, llm="until-divergence", tools="live") as fixed:
        agents.run_agent("What was our Q3 revenue, in euros?")
    assert same.report is not None and fixed.report is not None
    assert cli_main(["debug", run_id, "--log", str(recording.jsonl_path)]) == 0
    out = capsys.readouterr().out
    assert f"rerun:         {same.report.run_id} (recorded/recorded): {same.report.verdict}" in out
    assert f"rerun:         {fixed.report.run_id} (until-divergence/live): {fixed.report.verdict}" in out
    assert cli_main(["debug", run_id, "--log", str(recording.jsonl_path), "--json"]) == 0
    reruns = json.loads(capsys.readouterr().out)["reruns"]
    assert [r["verdict"] for r in reruns] == [same.report.verdict, fixed.report.verdict]
    assert reruns[0]["reproduced"] is True and reruns[1]["reproduced"] is False
    # The reports sit beside the recordings, never among the step logs `runs` reads.
    assert len(load(recording.jsonl_path.parent)) == 3


def test_cached_input_tokens_are_shown_apart_in_summary_replay_and_view(
    steptrace_capture: Capture, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """input_tokens counts cache reads and writes (GenAI conventions): a 2,130-token call that
    read 2,000 from the cache looked like 2,130 fresh tokens everywhere."""
    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        with steptrace.llm_request(model="claude-sonnet-4-6", provider="anthropic") as llm:
            llm.record_usage(2_130, 30, cache_read_input_tokens=2_000, cache_creation_input_tokens=120)
    log = str(steptrace_capture.jsonl_path)
    summary = summarize(_run(steptrace_capture))
    assert (summary.input_tokens, summary.cache_read_input_tokens) == (2_130, 2_000)
    assert summary.cache_creation_input_tokens == 120
    run_id = summary.run_id
    assert cli_main(["summary", run_id, "--log", log]) == 0
    assert "2,160  (2,130 in incl. 2,000 cache reads and 120 cache writes, 30 out)" in capsys.readouterr().out
    assert cli_main(["replay", run_id, "--log", log]) == 0
    assert "2130→30 tok (2000 cached)" in capsys.readouterr().out
    page = tmp_path / "run.html"
    assert cli_main(["view", run_id, "--log", log, "-o", str(page)]) == 0
    html_text = page.read_text()
    assert "2,130 in (incl. 2,000 cached) / 30 out" in html_text
    assert "2130→30 tok (2000 cached)" in html_text


def test_the_cause_ranks_above_a_minor_repeat(steptrace_capture: Capture) -> None:
    """The rerun agent: search twice (on purpose), then convert_currency fails until max_steps.
    The failing tool explains the run; the two searches were ranked above it as "the loop"."""
    agents.reset()
    agents.run_agent("What was our Q3 revenue, in euros?")
    report = _debug(steptrace_capture)
    assert [(h.kind, h.culprit) for h in report.hypotheses] == [
        ("tool_failure", "convert_currency"),
        ("loop", "search"),
    ]
    assert [round(h.score, 2) for h in report.hypotheses] == [1.0, 0.33]
