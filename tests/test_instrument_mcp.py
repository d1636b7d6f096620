"""instrument_mcp() against a real MCP server in a subprocess (stdio), itself traced by steptrace.

The client side is this process (the ``steptrace_capture`` fixture, made the global provider so
the mcp package's own spans land there too); the server, tests/mcp_server.py, writes its own step
log into the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import mcp.shared._otel as mcp_otel
import pytest
import tomllib
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import steptrace
from steptrace.analysis import debug_run, load
from steptrace.instrumentation.mcp import McpInstrumentor
from steptrace.testing import Capture

SERVER = Path(__file__).with_name("mcp_server.py")
ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _instrumented(steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """mcp's spans go to the global provider: make it the fixture's (and re-resolve mcp's tracer)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", steptrace_capture.tracer_provider)
    monkeypatch.setattr(mcp_otel, "_tracer", trace.get_tracer("mcp-python-sdk"))
    steptrace.instrument_mcp()
    try:
        yield
    finally:
        steptrace.uninstrument_mcp()


def server_log(tmp_path: Path) -> Path:
    return tmp_path / "server" / "steps.jsonl"


def with_server(tmp_path: Path, body: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Start tests/mcp_server.py, connect over stdio, run ``body(session)``, stop the server."""

    async def main() -> T:
        params = StdioServerParameters(
            command=sys.executable,
            args=[str(SERVER)],
            env={"STEPTRACE_JSONL_PATH": str(server_log(tmp_path)), "STEPTRACE_RAISE_INTERNAL_ERRORS": "1"},
            cwd=str(tmp_path),
        )
        with (tmp_path / "server-stderr.txt").open("w", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await body(session)

    return asyncio.run(main())


def server_records(tmp_path: Path) -> list[dict[str, Any]]:
    return list(steptrace.read_steps(server_log(tmp_path)))


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_call_tool_is_a_tool_execution_span_like_a_decorated_tool(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """An MCP tool call would be missing from the run, or differ from a decorated tool's span and record."""

    @steptrace.tool
    def add(a: int, b: int) -> int:
        return a + b

    async def agent(session: ClientSession) -> Any:
        with steptrace.agent_run(agent="calc") as run, steptrace.agent_step():
            add(a=1, b=2)
            result = await session.call_tool("add", {"a": 1, "b": 2})
        return run.run_id, result, session.protocol_version

    run_id, result, version = with_server(tmp_path, agent)
    assert isinstance(result, CallToolResult) and result.structured_content == {"result": 3}
    decorated, mcp_tool = steptrace_capture.spans_named("tool_execution")
    attributes = dict(mcp_tool.attributes or {})
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "add"
    assert attributes["gen_ai.tool.type"] == "extension"
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["mcp.protocol.version"] == version == "2025-11-25"
    assert attributes["steptrace.run_id"] == run_id
    assert attributes["steptrace.agent_step.number"] == 1
    assert attributes["steptrace.tool.args_hash"] == (decorated.attributes or {})["steptrace.tool.args_hash"]
    assert attributes["gen_ai.tool.call.arguments"] == '{"a":1,"b":2}'
    assert '"structuredContent":{"result":3}' in str(attributes["gen_ai.tool.call.result"])
    assert mcp_tool.status.status_code is StatusCode.UNSET
    record = only_record(steptrace_capture, span_id=mcp_tool.context.span_id)
    assert {k: record[k] for k in ("type", "tool", "agent_step", "status", "error", "input")} == {
        "type": "tool_call",
        "tool": "add",
        "agent_step": 1,
        "status": "ok",
        "error": None,
        "input": {"a": 1, "b": 2},
    }
    assert record["output"]["content"] == [{"type": "text", "text": "3"}]
    (run,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert run["tool_calls"] == 2 and run["errors"] == 0
    (point,) = [
        p
        for p in steptrace_capture.histogram_points("gen_ai.execute_tool.duration")
        if (p.attributes or {}).get("gen_ai.tool.name") == "add"
    ]
    assert point.count == 2  # the decorated and the MCP call, one series


def only_record(capture: Capture, span_id: int) -> dict[str, Any]:
    (record,) = [r for r in capture.records if r["span_id"] == f"{span_id:016x}"]
    return record


def test_steptrace_span_parents_mcps_client_span_and_the_server_joins_trace_and_run(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """The MCP call would show twice, or the server's spans would start a new trace outside the run."""

    async def agent(session: ClientSession) -> str:
        with steptrace.agent_run(agent="calc") as run:
            with steptrace.agent_step():
                pass
            with steptrace.agent_step():
                await session.call_tool("add", {"a": 2, "b": 3})
        return run.run_id

    run_id = with_server(tmp_path, agent)
    tool = only(steptrace_capture.spans_named("tool_execution"))
    client = only(steptrace_capture.spans_named("MCP send tools/call add"))
    assert client.kind is SpanKind.CLIENT and client.parent is not None
    assert client.parent.span_id == tool.context.span_id
    assert (client.attributes or {})["steptrace.run_id"] == run_id
    # No second execute_tool span on the client side: the mcp span is the transport hop.
    assert [
        s.name
        for s in steptrace_capture.spans
        if (s.attributes or {}).get("gen_ai.operation.name") == "execute_tool"
    ] == ["tool_execution"]
    trace_id = f"{tool.context.trace_id:032x}"
    (served,) = [r for r in server_records(tmp_path) if r["name"] == "tools/call add"]
    assert served["run_id"] == run_id
    assert served["trace_id"] == trace_id
    assert served["parent_span_id"] == f"{client.context.span_id:016x}"
    assert served["agent_step"] == 2  # the client's step that made the call
    assert served["type"] == "span" and served["attributes"]["gen_ai.tool.name"] == "add"
    # Every span the server wrote during the run belongs to it (tools/list of the output check too).
    assert {r["run_id"] for r in server_records(tmp_path)} == {run_id}


def test_servers_own_steptrace_spans_join_the_callers_run(steptrace_capture: Capture, tmp_path: Path) -> None:
    """A @steptrace.tool inside the MCP server would be left out of the caller's run (no run open there)."""

    async def agent(session: ClientSession) -> str:
        with steptrace.agent_run(agent="fx") as run, steptrace.agent_step():
            await session.call_tool("convert_currency", {"amount": 10, "currency": "GBP"})
        return run.run_id

    run_id = with_server(tmp_path, agent)
    records = {r["name"]: r for r in server_records(tmp_path)}
    served, rate = records["tools/call convert_currency"], records["tool_execution"]
    assert (rate["type"], rate["tool"], rate["input"], rate["output"]) == (
        "tool_call",
        "lookup_rate",
        {"currency": "GBP"},
        0.79,
    )
    assert (rate["run_id"], rate["agent_step"], rate["trace_id"]) == (run_id, 1, served["trace_id"])
    assert rate["parent_span_id"] == served["span_id"]


def test_is_error_result_fails_the_span_and_is_returned_unchanged(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """A tool that answered isError would look successful, or the agent would get an exception."""

    async def agent(session: ClientSession) -> CallToolResult:
        with steptrace.agent_run(agent="fx"), steptrace.agent_step():
            return await session.call_tool("convert_currency", {"amount": 4.2, "currency": "EURO"})

    result = with_server(tmp_path, agent)
    assert result.is_error is True
    assert "unknown currency code 'EURO'" in result.content[0].text  # type: ignore[union-attr]
    tool = only(steptrace_capture.spans_named("tool_execution"))
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.status.description is not None and "unknown currency code 'EURO'" in tool.status.description
    assert (tool.attributes or {})["error.type"] == "tool_error"
    record = only_record(steptrace_capture, tool.context.span_id)
    assert (record["status"], record["error_type"]) == ("error", "tool_error")
    assert "expected one of ['EUR', 'GBP']" in record["error"]
    (run,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert (run["errors"], run["stop_reason"]) == (1, "end_turn")
    (point,) = steptrace_capture.histogram_points("gen_ai.execute_tool.duration")
    assert (point.attributes or {})["error.type"] == "tool_error"
    (served,) = [r for r in server_records(tmp_path) if r["name"] == "tools/call convert_currency"]
    assert (served["status"], served["error_type"]) == ("error", "tool_error")


def test_tool_error_text_and_captured_result_are_redacted(steptrace_capture: Capture, tmp_path: Path) -> None:
    """An API key quoted in a tool's error text would be written to the span and the step log."""

    async def agent(session: ClientSession) -> CallToolResult:
        with steptrace.agent_run(agent="crm"), steptrace.agent_step():
            return await session.call_tool("lookup_account", {"account": "ACME-42"})

    result = with_server(tmp_path, agent)
    assert "sk-proj-abcdefghijklmnopqrstuvwx1234" in result.content[0].text  # type: ignore[union-attr]
    tool = only(steptrace_capture.spans_named("tool_execution"))
    assert tool.status.description is not None
    assert "[REDACTED:openai-key]" in tool.status.description and "sk-proj" not in tool.status.description
    assert "sk-proj" not in str((tool.attributes or {})["gen_ai.tool.call.result"])
    log = steptrace_capture.jsonl_path.read_text(encoding="utf-8")
    assert "ACME-42 not found" in log and "sk-proj" not in log
    assert "sk-proj" not in server_log(tmp_path).read_text(encoding="utf-8")


def test_capture_off_keeps_arguments_and_result_out(steptrace_capture: Capture, tmp_path: Path) -> None:
    """With capture off, MCP tool arguments and results would still be recorded."""
    steptrace_capture.configure(capture_content=False)

    async def agent(session: ClientSession) -> None:
        with steptrace.agent_run(agent="calc"), steptrace.agent_step():
            await session.call_tool("add", {"a": 7, "b": 8})

    with_server(tmp_path, agent)
    attributes = dict(only(steptrace_capture.spans_named("tool_execution")).attributes or {})
    assert "gen_ai.tool.call.arguments" not in attributes and "gen_ai.tool.call.result" not in attributes
    assert attributes["steptrace.tool.args_hash"]  # repeated calls are still spotted
    (record,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert record["input"] is None and record["output"] is None


def test_timeout_and_transport_failure_propagate_unchanged_and_fail_the_span(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """A timeout or a dead server would be swallowed, changed, or leave the span open or successful."""
    caught: list[BaseException] = []

    async def agent(session: ClientSession) -> None:
        with steptrace.agent_run(agent="ops"), steptrace.agent_step():
            for name, arguments, timeout in (("slow", {"seconds": 1.0}, 0.2), ("crash", {}, None)):
                try:
                    await session.call_tool(name, arguments, read_timeout_seconds=timeout)
                except MCPError as exc:
                    caught.append(exc)

    with_server(tmp_path, agent)
    assert [type(e) for e in caught] == [MCPError, MCPError]
    assert "timed out" in str(caught[0]) and "Connection closed" in str(caught[1])
    timed_out, closed = steptrace_capture.spans_named("tool_execution")
    for span, text in ((timed_out, "timed out"), (closed, "Connection closed")):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is not None and text in span.status.description
        assert (span.attributes or {})["error.type"] == "mcp.shared.exceptions.MCPError"
    (run,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert run["errors"] == 2


def test_debug_names_the_failing_mcp_tool(steptrace_capture: Capture, tmp_path: Path) -> None:
    """`steptrace debug` on a run whose MCP tool failed would not name the tool and its error."""

    async def agent(session: ClientSession) -> str:
        with steptrace.agent_run(agent="fx") as run:
            with steptrace.agent_step():
                await session.call_tool("convert_currency", {"amount": 4.2, "currency": "EURO"})
            with steptrace.agent_step():
                await session.call_tool("convert_currency", {"amount": 4.2, "currency": "EUR"})
        return run.run_id

    run_id = with_server(tmp_path, agent)
    run = load(steptrace_capture.jsonl_path, server_log(tmp_path)).get(run_id)
    assert run is not None
    report = debug_run(run)
    assert report.first_error_span is not None
    assert (report.first_error_span.type, report.first_error_span.label) == ("tool_call", "convert_currency")
    assert (
        report.first_error_span.error is not None
        and "unknown currency code 'EURO'" in report.first_error_span.error
    )
    assert report.hypotheses[0].kind == "tool_failure"
    title = report.hypotheses[0].title
    assert "convert_currency failed" in title and "unknown currency code 'EURO'" in title


def test_framework_tool_span_is_enriched_not_duplicated(steptrace_capture: Capture, tmp_path: Path) -> None:
    """A framework that already traces its MCP tool (as a decorated tool) would get two tool spans."""

    async def agent(session: ClientSession) -> CallToolResult:
        @steptrace.tool(name="convert_currency")
        async def framework_tool(**arguments: Any) -> CallToolResult:
            return await session.call_tool("convert_currency", arguments)

        with steptrace.agent_run(agent="fx"), steptrace.agent_step():
            return await framework_tool(amount=1.0, currency="EURO")

    result = with_server(tmp_path, agent)
    assert result.is_error is True
    tool = only(steptrace_capture.spans_named("tool_execution"))
    assert (tool.attributes or {})["mcp.method.name"] == "tools/call"
    assert (tool.attributes or {})["error.type"] == "tool_error"
    assert tool.status.status_code is StatusCode.ERROR
    (run,) = [r for r in steptrace_capture.records if r["type"] == "run"]
    assert (run["tool_calls"], run["errors"]) == (1, 1)


def test_uninstrument_and_per_session_instrumentation(steptrace_capture: Capture, tmp_path: Path) -> None:
    """uninstrument_mcp() would leave call_tool traced, or instrument_mcp(session) would not trace it."""
    steptrace.uninstrument_mcp()

    async def agent(session: ClientSession) -> None:
        with steptrace.agent_run(agent="calc"), steptrace.agent_step():
            await session.call_tool("add", {"a": 1, "b": 1})
            steptrace.instrument_mcp(session)
            await session.call_tool("add", {"a": 2, "b": 2})
            steptrace.uninstrument_mcp(session)
            await session.call_tool("add", {"a": 3, "b": 3})

    with_server(tmp_path, agent)
    (tool,) = steptrace_capture.spans_named("tool_execution")
    assert (tool.attributes or {})["gen_ai.tool.call.arguments"] == '{"a":2,"b":2}'


def test_instrumentor_is_registered_for_opentelemetry_instrument() -> None:
    """`opentelemetry-instrument` would not find steptrace's MCP instrumentor."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = project["project"]["entry-points"]["opentelemetry_instrumentor"]["steptrace_mcp"]
    assert target == "steptrace.instrumentation.mcp:McpInstrumentor"
    assert McpInstrumentor() is McpInstrumentor()
    assert list(McpInstrumentor().instrumentation_dependencies()) == ["mcp >= 2.3, < 3"]


def test_run_id_crosses_to_an_http_service_through_baggage(steptrace_capture: Capture) -> None:
    """A service reached over HTTP with standard propagation would not know the caller's run."""
    tracer = steptrace_capture.tracer_provider.get_tracer("http-service")
    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        headers: dict[str, str] = {}
        propagate.inject(headers)  # what an instrumented HTTP client does
    assert f"steptrace.run_id={run.run_id}" in headers["baggage"]
    assert "steptrace.agent_step.number=1" in headers["baggage"]
    # The service's process: no run open, the request's context extracted.
    token = otel_context.attach(propagate.extract(headers))
    try:
        with tracer.start_as_current_span("GET /rates"), tracer.start_as_current_span("db query"):
            pass
        with steptrace.agent_run(agent="sub-agent") as sub:  # a run of its own there
            pass
    finally:
        otel_context.detach(token)
    spans = {s.name: s for s in steptrace_capture.spans}
    for name in ("GET /rates", "db query"):
        assert (spans[name].attributes or {})["steptrace.run_id"] == run.run_id
        assert (spans[name].attributes or {})["steptrace.agent_step.number"] == 1
    sub_run = [
        s
        for s in steptrace_capture.spans_named("agent_run")
        if (s.attributes or {})["steptrace.run_id"] == sub.run_id
    ]
    assert (sub_run[0].attributes or {})["steptrace.parent_run_id"] == run.run_id


def test_local_run_wins_over_baggage_and_bad_baggage_is_ignored(steptrace_capture: Capture) -> None:
    """A stale or hostile baggage entry would relabel spans of a local run, or of no run at all."""
    tracer = steptrace_capture.tracer_provider.get_tracer("lib")
    context = baggage.set_baggage("steptrace.run_id", "remote-run")
    token = otel_context.attach(context)
    try:
        with steptrace.agent_run(agent="local") as run:
            with tracer.start_as_current_span("inside"):
                pass
    finally:
        otel_context.detach(token)
    token = otel_context.attach(baggage.set_baggage("steptrace.run_id", "x" * 500))
    try:
        with tracer.start_as_current_span("hostile"):
            pass
    finally:
        otel_context.detach(token)
    spans = {s.name: s for s in steptrace_capture.spans}
    assert (spans["inside"].attributes or {})["steptrace.run_id"] == run.run_id
    assert "steptrace.run_id" not in (spans["hostile"].attributes or {})


def test_example_runs_offline_and_debug_names_the_failed_mcp_tool(tmp_path: Path) -> None:
    """examples/mcp_agent.py would fail offline, or `steptrace debug` on its run would miss the cause."""
    env = {k: v for k, v in os.environ.items() if k != "STEPTRACE_JSONL_PATH"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mcp_agent.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "step 1: convert_currency" in done.stdout and "step 2:" in done.stdout
    records = list(steptrace.read_steps(tmp_path / "steptrace-logs" / "steps.jsonl"))
    (run,) = [r for r in records if r["type"] == "run"]
    served = [r for r in records if r["name"] == "tools/call convert_currency"]
    assert len(served) == 2 and {r["run_id"] for r in served} == {run["run_id"]}
    debug = subprocess.run(
        [sys.executable, "-m", "steptrace", "debug", run["run_id"][:8]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert debug.returncode == 0, debug.stderr
    assert "[tool_failure]" in debug.stdout
    assert "convert_currency failed" in debug.stdout and "unknown currency code 'EURO'" in debug.stdout


def test_rerun_serves_recorded_mcp_results_with_the_server_gone(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """A rerun would call the (stopped) MCP server, or hand back dicts instead of CallToolResult."""
    steptrace_capture.configure(record_for_rerun=True)
    kept: list[ClientSession] = []

    async def agent(session: ClientSession) -> list[CallToolResult]:
        with steptrace.agent_run(agent="fx"), steptrace.agent_step():
            return [
                await session.call_tool("convert_currency", {"amount": 4.2, "currency": "EURO"}),
                await session.call_tool("convert_currency", {"amount": 4.2, "currency": "EUR"}),
            ]

    async def record(session: ClientSession) -> list[CallToolResult]:
        kept.append(session)
        return await agent(session)

    original = with_server(tmp_path, record)
    (recording,) = sorted((steptrace_capture.jsonl_path.parent / "rerun").glob("*.jsonl"))
    steptrace_capture.clear()
    with steptrace.rerun(recording.stem, log=steptrace_capture.jsonl_path, tools="recorded") as rerun:
        replayed = asyncio.run(agent(kept[0]))  # the session's server has exited
    assert [type(r) for r in replayed] == [CallToolResult, CallToolResult]
    assert [r.model_dump() for r in replayed] == [r.model_dump() for r in original]
    assert rerun.report is not None and rerun.report.reproduced, rerun.report
    failed, converted = steptrace_capture.spans_named("tool_execution")
    assert (failed.attributes or {})["error.type"] == "tool_error" and "error.type" not in (
        converted.attributes or {}
    )


def test_mcp_client_and_in_memory_transport_are_traced_too(steptrace_capture: Capture) -> None:
    """Tool calls made through the high-level mcp.Client (here in-memory) would be missing."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("in-process")

    @server.tool()
    def echo(text: str) -> str:
        return text

    async def agent() -> str:
        async with Client(server) as client:
            with steptrace.agent_run(agent="echo") as run, steptrace.agent_step():
                result = await client.call_tool("echo", {"text": "hi"})
        assert result.structured_content == {"result": "hi"}
        return run.run_id

    run_id = asyncio.run(agent())
    tool = only(steptrace_capture.spans_named("tool_execution"))
    assert (attrs(tool)["gen_ai.tool.name"], attrs(tool)["steptrace.run_id"]) == ("echo", run_id)
    # In memory there is no client span of mcp's own: the server's span is the tool span's child.
    served = only(steptrace_capture.spans_named("tools/call echo"))
    assert served.parent is not None and served.parent.span_id == tool.context.span_id
    assert attrs(served)["steptrace.run_id"] == run_id


def test_run_is_carried_on_where_a_library_dropped_the_baggage(steptrace_capture: Capture) -> None:
    """A tool in a server whose library drops the baggage (as mcp 2.3 does) would not pass the
    caller's run on to the services it calls in turn."""
    tracer = steptrace_capture.tracer_provider.get_tracer("server-library")
    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        incoming: dict[str, str] = {}
        propagate.inject(incoming)
    onward: dict[str, str] = {}

    @steptrace.tool
    def fetch_rates() -> None:
        propagate.inject(onward)  # the instrumented HTTP client of the tool

    # The server library starts its span from the extracted context but does not attach it.
    with tracer.start_as_current_span("tools/call fetch_rates", context=propagate.extract(incoming)):
        fetch_rates()
    assert f"steptrace.run_id={run.run_id}" in onward["baggage"]
    assert "steptrace.agent_step.number=1" in onward["baggage"]
    tool = only(steptrace_capture.spans_named("tool_execution"))
    assert (attrs(tool)["steptrace.run_id"], attrs(tool)["steptrace.agent_step.number"]) == (run.run_id, 1)
