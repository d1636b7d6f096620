"""Log lines correlate too: stdlib and structlog records made inside a run carry its run id, agent
step, trace and span; the step log can keep them (``capture_logs``) for replay, view and debug."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import steptrace
from steptrace import analysis
from steptrace.analysis._logs import run_logs
from steptrace.cli import main as cli_main
from steptrace.testing import Capture

log = logging.getLogger("agent.tools")


@pytest.fixture
def agent_logger() -> Iterator[logging.Logger]:
    """``agent.tools`` lets INFO through (the root logger's WARNING would not make the record)."""
    previous = log.level
    log.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        log.setLevel(previous)


@pytest.fixture
def formatted() -> Iterator[io.StringIO]:
    """What a handler with ``%(run_id)s`` in its format prints for ``agent.tools``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(run_id)s|%(step)s|%(trace_id)s|%(span_id)s|%(message)s"))
    log.addHandler(handler)
    try:
        yield stream
    finally:
        log.removeHandler(handler)


@steptrace.tool
def fetch_page(url: str) -> str:
    log.warning("retrying %s: the server answered 503", url)
    raise ConnectionError(f"{url} is down")


def _run_failing_tool() -> steptrace.RunState:
    with pytest.raises(ConnectionError):
        with steptrace.agent_run(agent="crawler") as run:
            with steptrace.agent_step():
                log.info("planning")
            with steptrace.agent_step():
                fetch_page("https://example.com")
    return run


def _span_ids(capture: Capture, name: str) -> list[tuple[str, str]]:
    return [
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}")
        for s in capture.spans_named(name)
        if s.context is not None
    ]


def test_tool_warning_carries_run_step_trace_and_span(
    steptrace_capture: Capture, formatted: io.StringIO
) -> None:
    """A warning a tool logs before it fails names the run, the agent step and the tool's span."""
    run = _run_failing_tool()
    ((trace_id, span_id),) = _span_ids(steptrace_capture, "tool_execution")
    warnings = [entry for entry in steptrace_capture.logs if entry["level"] == "WARNING"]
    assert [(w["run_id"], w["step"], w["trace_id"], w["span_id"]) for w in warnings] == [
        (run.run_id, 2, trace_id, span_id)
    ]
    assert warnings[0]["message"] == "retrying https://example.com: the server answered 503"
    record = warnings[0]["record"]
    stamped = (record.run_id, record.step, record.trace_id, record.span_id)
    assert stamped == (run.run_id, 2, trace_id, span_id)
    line = formatted.getvalue().splitlines()[-1]
    assert (
        line == f"{run.run_id}|2|{trace_id}|{span_id}|retrying https://example.com: the server answered 503"
    )


def test_format_string_works_inside_and_outside_runs(
    steptrace_capture: Capture, formatted: io.StringIO, agent_logger: logging.Logger
) -> None:
    """``%(run_id)s`` in a format never raises: outside a run the four keys are empty."""
    agent_logger.warning("before")
    with steptrace.agent_run(agent="a") as run:
        agent_logger.warning("in the run, no step")
        with steptrace.agent_step():
            agent_logger.warning("in step 1")
    agent_logger.warning("after")
    lines = formatted.getvalue().splitlines()
    assert lines[0] == "||||before"
    assert lines[1].startswith(f"{run.run_id}||") and lines[1].endswith("|in the run, no step")
    assert lines[2].startswith(f"{run.run_id}|1|")
    assert lines[3] == "||||after"


def test_applications_own_extra_step_key_wins_instead_of_raising(
    steptrace_capture: Capture, formatted: io.StringIO
) -> None:
    """``extra={"step": ...}`` raised KeyError("Attempt to overwrite 'step'") with a naive factory."""
    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        log.warning("custom", extra={"step": "parse", "user": "ann"})
    line = formatted.getvalue().splitlines()[-1]
    assert line.startswith(f"{run.run_id}|parse|")
    assert steptrace_capture.logs[-1]["step"] == 1  # the fixture still knows the real agent step


def test_threads_with_bind_context_and_asyncio_tasks(steptrace_capture: Capture) -> None:
    """Records made in pool threads (bind_context) and in asyncio tasks name their own tool span."""

    @steptrace.tool
    def search(query: str) -> str:
        log.warning("searching %s", query)
        return query

    @steptrace.tool
    async def lookup(key: str) -> str:
        await asyncio.sleep(0)
        log.warning("looking up %s", key)
        await asyncio.sleep(0)
        return key

    async def gather() -> list[str]:
        return list(await asyncio.gather(*(lookup(k) for k in ("k1", "k2", "k3"))))

    with steptrace.agent_run(agent="fan-out") as run:
        with steptrace.agent_step():
            with ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(steptrace.bind_context(search), ["q1", "q2", "q3"]))
        with steptrace.agent_step():
            asyncio.run(gather())
    spans = {
        next(iter(json.loads(str(s.attributes["gen_ai.tool.call.arguments"])).values())): (
            f"{s.context.span_id:016x}"
        )
        for s in steptrace_capture.spans_named("tool_execution")
        if s.attributes is not None and s.context is not None
    }
    by_message = {entry["message"]: entry for entry in steptrace_capture.logs}
    for step, word in [(1, "searching q1"), (1, "searching q2"), (1, "searching q3")]:
        entry = by_message[word]
        assert (entry["run_id"], entry["step"]) == (run.run_id, step)
        assert entry["span_id"] == spans[word.split()[-1]]
    for key in ("k1", "k2", "k3"):
        entry = by_message[f"looking up {key}"]
        assert (entry["run_id"], entry["step"]) == (run.run_id, 2)
        assert entry["span_id"] == spans[key]


def test_correlate_logs_off_by_environment(
    steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STEPTRACE_CORRELATE_LOGS=false leaves log records as logging made them."""
    monkeypatch.setenv("STEPTRACE_CORRELATE_LOGS", "false")
    steptrace_capture.configure()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    log.addHandler(handler)
    try:
        with steptrace.agent_run(agent="a"):
            log.warning("plain")
    finally:
        log.removeHandler(handler)
    assert not hasattr(seen[-1], "run_id")


def test_shutdown_restores_logging() -> None:
    """Telemetry.shutdown() puts the record factory and Logger.makeRecord back."""
    factory, make_record = logging.getLogRecordFactory(), logging.Logger.makeRecord
    from opentelemetry.sdk.trace import TracerProvider

    # A provider of its own: the test installs nothing global for the tests after it.
    telemetry = steptrace.configure(jsonl_path=False, service_name="t", tracer_provider=TracerProvider())
    try:
        assert logging.getLogRecordFactory() is not factory
    finally:
        telemetry.shutdown()
    assert logging.getLogRecordFactory() is factory
    assert logging.Logger.makeRecord is make_record


def test_structlog_processor_adds_the_keys(steptrace_capture: Capture) -> None:
    """structlog event dicts get run_id, step, trace_id, span_id inside a run, nothing outside."""
    structlog = pytest.importorskip("structlog")
    from structlog.testing import LogCapture

    captured = LogCapture()
    structlog.configure(processors=[steptrace.structlog_processor, captured])
    try:
        logger = structlog.get_logger()

        @steptrace.tool
        def parse(text: str) -> str:
            logger.warning("odd input", text=text)
            return text

        logger.info("outside")
        with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
            parse("x")
    finally:
        structlog.reset_defaults()
    ((trace_id, span_id),) = _span_ids(steptrace_capture, "tool_execution")
    outside, inside = captured.entries
    assert "run_id" not in outside
    assert {k: inside[k] for k in ("run_id", "step", "trace_id", "span_id", "text")} == {
        "run_id": run.run_id,
        "step": 1,
        "trace_id": trace_id,
        "span_id": span_id,
        "text": "x",
    }


def test_structlog_is_not_imported_by_steptrace() -> None:
    """steptrace.structlog_processor exists without importing structlog (not a dependency)."""
    code = "import sys, steptrace; steptrace.structlog_processor; print('structlog' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _log_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in steptrace.read_steps(path) if r["type"] == "log"]


def test_capture_logs_writes_redacted_bounded_log_records(
    steptrace_capture: Capture, agent_logger: logging.Logger
) -> None:
    """capture_logs=True: each record made in a run is a type "log" record; secrets are redacted."""
    steptrace_capture.configure(capture_logs=True, redact_patterns=[r"acct-\d{6}"])
    agent_logger.warning("outside any run")
    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        agent_logger.info("calling for acct-123456 with api_key=sk-proj-abcdefghijklmnopqrstuvwxyz0123456789")
        agent_logger.debug("x" * 50_000)
        try:
            raise ValueError("token=ghp_abcdefghijklmnopqrstuvwxyz0123456789")
        except ValueError:
            agent_logger.exception("tool failed")
    records = _log_records(steptrace_capture.jsonl_path)
    assert [r["level"] for r in records] == ["INFO", "DEBUG", "ERROR"]
    info, debug, error = records
    assert info["run_id"] == run.run_id and info["agent_step"] == 1 and info["logger"] == "agent.tools"
    assert "sk-proj-abcdefghijklmnopqrstuvwxyz" not in info["message"]
    assert "[REDACTED" in info["message"]
    assert "acct-123456" not in info["message"]  # the configured redact_patterns apply too
    assert len(debug["message"]) < 2_100 and "truncated: 50000 chars" in debug["message"]
    assert error["exception"].startswith("ValueError: ") and "ghp_abcdef" not in error["exception"]
    (agent_step,) = steptrace_capture.spans_named("agent_step")
    assert info["span_id"] == f"{agent_step.context.span_id:016x}"  # type: ignore[union-attr]


def test_capture_logs_level(steptrace_capture: Capture, agent_logger: logging.Logger) -> None:
    """capture_logs="WARNING" keeps warnings and worse; STEPTRACE_CAPTURE_LOGS=bogus is refused."""
    steptrace_capture.configure(capture_logs="WARNING")
    with steptrace.agent_run(agent="a"):
        agent_logger.info("chatty")
        agent_logger.warning("worth keeping")
    assert [r["message"] for r in _log_records(steptrace_capture.jsonl_path)] == ["worth keeping"]
    with pytest.raises(steptrace.ConfigError, match="not a log level"):
        steptrace_capture.configure(capture_logs="LOUD")


def test_capture_logs_from_the_environment(
    steptrace_capture: Capture, agent_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STEPTRACE_CAPTURE_LOGS=error keeps errors only; =LOUD is refused at configure()."""
    monkeypatch.setenv("STEPTRACE_CAPTURE_LOGS", "error")
    steptrace_capture.configure()
    with steptrace.agent_run(agent="a"):
        agent_logger.warning("not kept")
        agent_logger.error("kept")
    assert [r["message"] for r in _log_records(steptrace_capture.jsonl_path)] == ["kept"]
    monkeypatch.setenv("STEPTRACE_CAPTURE_LOGS", "LOUD")
    with pytest.raises(steptrace.ConfigError, match="STEPTRACE_CAPTURE_LOGS='LOUD' is not a log level"):
        steptrace_capture.configure()


def _write_agent_log(capture: Capture) -> str:
    capture.configure(capture_logs=True)

    @steptrace.llm_request(model="m")
    def think() -> dict[str, Any]:
        return {"usage": {"input_tokens": 10, "output_tokens": 5}}

    with pytest.raises(ConnectionError):
        with steptrace.agent_run(agent="crawler") as run:
            with steptrace.agent_step():
                think()
                log.warning("the cache is cold")
            with steptrace.agent_step():
                fetch_page("https://example.com")
    return run.run_id


def test_loader_counts_are_unchanged_by_log_records(steptrace_capture: Capture, tmp_path: Path) -> None:
    """Log records are not spans: runs, steps, calls, tokens, errors and records stay the same."""
    run_id = _write_agent_log(steptrace_capture)
    with_logs = steptrace_capture.jsonl_path
    assert len(_log_records(with_logs)) == 2
    without = tmp_path / "without" / "steps.jsonl"
    without.parent.mkdir()
    without.write_text(
        "".join(line for line in with_logs.read_text().splitlines(True) if '"type":"log"' not in line)
    )
    for loaded, bare in [
        (analysis.load(with_logs), analysis.load(without)),
        (analysis.load(with_logs, dedupe_single_file=True), analysis.load(without, dedupe_single_file=True)),
    ]:
        (run,), (plain,) = list(loaded), list(bare)
        assert run.to_dict() == plain.to_dict()
        assert (run.record_count, run.total_steps, run.total_tokens, run.error_count) == (
            plain.record_count,
            plain.total_steps,
            plain.total_tokens,
            plain.error_count,
        )
        assert run.records() == plain.records()
        assert [entry["message"] for entry in run_logs(loaded, run_id)] == [
            "the cache is cold",
            "retrying https://example.com: the server answered 503",
        ]


def test_replay_shows_the_line_in_its_step(
    steptrace_capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay prints the tool's warning right under the tool span, before the next span."""
    run_id = _write_agent_log(steptrace_capture)
    assert cli_main(["replay", run_id, "--log", str(steptrace_capture.jsonl_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    tool = next(i for i, line in enumerate(lines) if "tool_call fetch_page" in line)
    retry = next(i for i, line in enumerate(lines) if "retrying https://example.com" in line)
    assert lines[retry].split()[0] == "2"  # the STEP column: agent step 2
    assert "WARNING agent.tools: retrying https://example.com: the server answered 503" in lines[retry]
    # The tool's row, its own detail lines (error, where it was raised, input), then what it logged.
    assert tool < retry
    assert all(line.split()[0] in ("error:", "at:", "input:") for line in lines[tool + 1 : retry])
    llm = next(i for i, line in enumerate(lines) if "llm_call" in line)
    cold = next(i for i, line in enumerate(lines) if "the cache is cold" in line)
    assert llm < cold < tool


def test_view_shows_the_line_in_its_step(steptrace_capture: Capture, tmp_path: Path) -> None:
    """The view's waterfall has a log row under the tool's row, with the message."""
    run_id = _write_agent_log(steptrace_capture)
    page = tmp_path / "run.html"
    assert cli_main(["view", run_id, "--log", str(steptrace_capture.jsonl_path), "-o", str(page)]) == 0
    html = page.read_text()
    tool = html.index("<b>fetch_page</b>")
    line = html.index("retrying https://example.com: the server answered 503")
    assert tool < line
    assert 'data-type="t-log"' in html[tool : line + 200]


def test_debug_quotes_the_last_warning_before_the_first_error(
    steptrace_capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    """debug names the last warning logged before the first failure, and where it was logged."""
    run_id = _write_agent_log(steptrace_capture)
    assert cli_main(["debug", run_id, "--log", str(steptrace_capture.jsonl_path)]) == 0
    out = capsys.readouterr().out
    assert "last warning:" in out
    warning_line = next(line for line in out.splitlines() if line.startswith("last warning:"))
    assert "retrying https://example.com: the server answered 503" in warning_line
    assert cli_main(["debug", run_id, "--log", str(steptrace_capture.jsonl_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["last_warning"]["message"] == "retrying https://example.com: the server answered 503"
    assert report["last_warning"]["agent_step"] == 2


OTLP_AGENT = """
import json, logging, steptrace
telemetry = steptrace.configure(service_name="logs-agent")
log = logging.getLogger("agent.tools")

@steptrace.tool
def fetch_page(url):
    log.warning("retrying %s with api_key=sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", url)
    raise ConnectionError(url + " is down")

try:
    with steptrace.agent_run(agent="crawler") as run:
        with steptrace.agent_step():
            fetch_page("https://example.com")
except ConnectionError:
    pass
log.warning("outside the run")
print(json.dumps({"run_id": run.run_id, "flushed": telemetry.force_flush()}))
"""


def _rotel_log_records(text: str) -> list[dict[str, str]]:
    """The log records rotel's debug exporter printed: body, attributes, trace and span id."""
    records: list[dict[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("LogRecord #"):
            records.append({})
        elif records and stripped.startswith("Body: Str("):
            records[-1]["body"] = stripped[len("Body: Str(") : -1]
        elif records and stripped.startswith("SeverityText:"):
            records[-1]["severity"] = stripped.split(":", 1)[1].strip()
        elif records and stripped.startswith("-> ") and ": " in stripped:
            key, value = stripped[3:].split(": ", 1)
            records[-1][key] = value[value.index("(") + 1 : -1]
        elif records and stripped.startswith(("Trace ID", "Span ID")):
            records[-1][stripped.split(":")[0].strip()] = stripped.split(":", 1)[1].strip()
    return records


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_logs_reach_a_real_collector_on_their_span(tmp_path: Path, protocol: str) -> None:
    """rotel (a real OTLP collector) receives the tool's warning with its trace, span and run id;
    the line logged outside the run is not exported, and the secret is redacted."""
    from otlp_servers import Rotel, free_port, run_python, wait_until

    grpc_port, http_port = free_port(), free_port()
    rotel = Rotel(tmp_path, grpc_port=grpc_port, http_port=http_port, signal_="logs")
    try:
        script = tmp_path / "agent.py"
        script.write_text(OTLP_AGENT)
        port = http_port if protocol == "http/protobuf" else grpc_port
        result = run_python(
            script,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_LOGS_EXPORTER": "",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
                "STEPTRACE_JSONL_PATH": str(tmp_path / "steps.jsonl"),
            },
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome["flushed"] is True
        received = wait_until(lambda: _rotel_log_records(rotel.text()), timeout_s=15, what="rotel logs")
    finally:
        rotel.stop()
    (tool,) = [r for r in steptrace.read_steps(tmp_path / "steps.jsonl") if r["type"] == "tool_call"]
    (record,) = received
    assert record["body"] == "retrying https://example.com with api_key=[REDACTED:openai-key]"
    assert record["severity"] == "WARN"
    assert record["steptrace.run_id"] == outcome["run_id"]
    assert record["steptrace.agent_step.number"] == "1"
    assert (record["Trace ID"], record["Span ID"]) == (tool["trace_id"], tool["span_id"])


def test_otel_logs_exporter_none_exports_no_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_LOGS_EXPORTER=none: traces still go to the endpoint, log records do not."""
    from steptrace.export.otlp_logs import OtlpLogs
    from steptrace.export.otlp_settings import OtlpSettings

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    settings = OtlpSettings.from_env()
    assert settings is not None
    logs = OtlpLogs.from_env(settings, service_name="s")
    assert logs is not None and logs.endpoint == "http://127.0.0.1:4318/v1/logs"
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    assert OtlpLogs.from_env(settings, service_name="s") is None


def test_readme_logging_config_runs(tmp_path: Path) -> None:
    """The README's "Correlate your logs" example prints the run, step and span on its line."""
    import os
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Correlate your logs") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_"))}
    result = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"WARNING researcher.tools run=[0-9a-f]{32} step=1 span=[0-9a-f]{16} search index is stale",
        result.stderr,
    ), result.stderr
    (line,) = _log_records(tmp_path / "steptrace-logs" / "steps.jsonl")
    assert (line["level"], line["agent_step"], line["message"]) == ("WARNING", 1, "search index is stale")


@pytest.mark.integration
def test_otlp_logs_to_a_closed_port_warn_once_and_never_fail_the_program(tmp_path: Path) -> None:
    """Nothing listens at the logs endpoint: the program finishes, stderr says so once."""
    from otlp_servers import free_port, run_python

    script = tmp_path / "agent.py"
    # Three more lines in the tool: the outage is still one warning.
    more = "    for i in range(3):\n        log.warning('again %d', i)\n    raise ConnectionError"
    script.write_text(OTLP_AGENT.replace("    raise ConnectionError", more))
    result = run_python(
        script,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "",
            "STEPTRACE_JSONL_PATH": str(tmp_path / "steps.jsonl"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "cannot export log records" in line]
    assert len(warnings) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["flushed"] is False  # force_flush says so


@pytest.mark.integration
@pytest.mark.parametrize("own_provider", [False, True])
def test_an_application_logs_pipeline_is_not_doubled(tmp_path: Path, own_provider: bool) -> None:
    """An SDK LoggerProvider the application installed (its handler exports the records) means
    steptrace exports no second copy; without one, steptrace exports the run's records."""
    from export_servers import fake_collector
    from otlp_servers import run_python

    setup = (
        "from opentelemetry._logs import set_logger_provider\n"
        "from opentelemetry.sdk._logs import LoggerProvider\n"
        "set_logger_provider(LoggerProvider())\n"
    )
    script = tmp_path / "agent.py"
    script.write_text((setup if own_provider else "") + OTLP_AGENT)
    with fake_collector() as collector:
        result = run_python(
            script,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_LOGS_EXPORTER": "",
                "OTEL_TRACES_EXPORTER": "",
                "STEPTRACE_JSONL_PATH": str(tmp_path / "steps.jsonl"),
            },
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        requests = dict(collector.requests)
    assert requests.get("/v1/traces", 0) >= 1
    assert requests.get("/v1/logs", 0) == (0 if own_provider else 1)


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_view_log_row_opens_its_line_in_a_browser(steptrace_capture: Capture, tmp_path: Path) -> None:
    """In chromium, the tool's log row sits under the tool's row and opens the line's fields."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    run_id = _write_agent_log(steptrace_capture)
    page_path = tmp_path / "run.html"
    assert cli_main(["view", run_id, "--log", str(steptrace_capture.jsonl_path), "-o", str(page_path)]) == 0
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(page_path.as_uri())
            labels = [
                page.locator(".row .label").nth(i).inner_text() for i in range(page.locator(".row").count())
            ]
            tool = next(i for i, text in enumerate(labels) if "fetch_page" in text)
            assert labels[tool + 1].startswith("·log WARNING agent.tools")
            page.locator('.row[data-type="t-log"]').nth(1).click()
            detail = page.locator("#detail").inner_text()
        finally:
            browser.close()
    assert "log WARNING agent.tools" in detail
    assert "retrying https://example.com: the server answered 503" in detail
    assert problems == []


def test_format_string_still_works_with_the_sdk_disabled(
    monkeypatch: pytest.MonkeyPatch, formatted: io.StringIO
) -> None:
    """OTEL_SDK_DISABLED=true turns tracing off, not the keys a logging format names: lines keep
    the run id and step (no trace or span), and are empty outside a run."""
    import re

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = steptrace.configure(service_name="off")
    try:
        with steptrace.agent_run(agent="a"), steptrace.agent_step():
            log.warning("in a run that is not traced")
        log.warning("outside")
    finally:
        telemetry.shutdown()
    inside, outside = formatted.getvalue().splitlines()[-2:]
    assert re.fullmatch(r"[0-9a-f]{32}\|1\|\|\|in a run that is not traced", inside), inside
    assert outside == "||||outside"


def test_log_records_read_the_context_the_api_reads(steptrace_capture: Capture) -> None:
    """The log hook reads the SDK's runtime ContextVar directly (a private reach-in, for speed);
    if an SDK release moved it, the hook would fall back to the API and every log call would
    pay for it unnoticed. It must be the fast getter, and agree with the API inside a run."""
    from opentelemetry import context as otel_context

    from steptrace import _logs

    assert _logs._current_context is not otel_context.get_current, "the SDK's runtime context moved"
    with steptrace.agent_run(agent="a"), steptrace.agent_step():
        assert _logs._current_context() is otel_context.get_current()
    assert _logs._current_context() is otel_context.get_current()
