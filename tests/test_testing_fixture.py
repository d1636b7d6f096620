"""The ``steptrace_capture`` fixture keeps capturing when the code under test calls configure()."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import steptrace
from steptrace.testing import Capture

pytest_plugins = ["pytester"]


@steptrace.tool
def lookup(city: str) -> str:
    return f"sunny in {city}"


def main() -> None:
    """A typical application entry point: configures steptrace itself, then runs the agent."""
    steptrace.configure(service_name="x")
    with steptrace.agent_run(agent="weather"), steptrace.agent_step():
        lookup("Paris")


def test_users_main_calling_configure_is_still_captured(
    steptrace_capture: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A main() that calls configure() used to leave the fixture with 0 records and 0 spans."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    main()
    tools = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert [(r["tool"], r["input"], r["output"]) for r in tools] == [
        ("lookup", {"city": "Paris"}, "sunny in Paris")
    ]  # content capture stays on, the fixture's default
    assert [s.name for s in steptrace_capture.spans_named("tool_execution")] == ["tool_execution"]
    assert not (work / "steptrace-logs").exists()
    assert list(work.iterdir()) == []


def test_configure_in_a_test_never_writes_where_it_was_told(
    steptrace_capture: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit jsonl_path, STEPTRACE_JSONL_PATH or an OTLP endpoint in CI stay out of the test."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("STEPTRACE_JSONL_PATH", str(work / "env-steps.jsonl"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    telemetry = steptrace.configure(service_name="x", jsonl_path=work / "app" / "steps.jsonl")
    assert telemetry.jsonl_path == steptrace_capture.jsonl_path
    assert telemetry.otlp is None  # spans go to the fixture's in-memory exporter, not the network
    with steptrace.agent_run(), steptrace.agent_step():
        lookup("Oslo")
    telemetry.shutdown()  # a main() that shuts down at its end keeps what it wrote
    assert [r["tool"] for r in steptrace_capture.records if r["type"] == "tool_call"] == ["lookup"]
    assert len(steptrace_capture.spans) == 3
    assert list(work.iterdir()) == []


def test_explicit_capture_setting_of_the_code_under_test_is_kept(steptrace_capture: Capture) -> None:
    """configure(capture_content=False) in the application is honoured (the fixture only sets defaults)."""
    steptrace.configure(service_name="x", capture_content=False)
    with steptrace.agent_run(), steptrace.agent_step():
        lookup("Rome")
    (tool,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert tool["input"] is None and tool["output"] is None
    assert steptrace_capture.spans_named("tool_execution")


def test_plugin_captures_a_users_main_through_the_entry_point(pytester: pytest.Pytester) -> None:
    """The user's shape: their own test file, the plugin loaded from its pytest11 entry point."""
    pytester.makepyfile(
        app=textwrap.dedent(
            """
            import steptrace

            @steptrace.tool
            def search(query):
                return "found " + query

            def main():
                steptrace.configure(service_name="my-agent")
                with steptrace.agent_run(agent="a"), steptrace.agent_step():
                    search("q3")
            """
        ),
        test_app=textwrap.dedent(
            """
            import os
            import app

            def test_main(steptrace_capture):
                app.main()
                tools = [r["tool"] for r in steptrace_capture.records if r["type"] == "tool_call"]
                assert tools == ["search"]
                assert len(steptrace_capture.spans_named("tool_execution")) == 1
                assert not os.path.exists("steptrace-logs")
            """
        ),
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "steptrace-logs").exists()
