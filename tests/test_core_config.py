"""configure(): where telemetry goes, its defaults, its errors, and reconfiguration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import steptrace
from steptrace.testing import Capture


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a snippet in a fresh interpreter: global OpenTelemetry providers can be set only once."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEPTRACE_JSONL"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_default_is_the_dev_jsonl_log_with_content(tmp_path: Path) -> None:
    """With no endpoint, a bare configure() writes ./steptrace-logs/steps.jsonl, content included."""
    result = run_python(
        """
        import steptrace
        tel = steptrace.configure()
        @steptrace.tool
        def echo(text): return text
        with steptrace.agent_run(agent="a"):
            echo("hello")
        print(tel.service_name, tel.capture_content, tel.jsonl_path)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["unknown_service", "True", "steptrace-logs/steps.jsonl"]
    records = [
        json.loads(line) for line in (tmp_path / "steptrace-logs/steps.jsonl").read_text().splitlines()
    ]
    assert [r["type"] for r in records] == ["tool_call", "run"]
    assert records[0]["input"] == {"text": "hello"}


def test_service_name_from_env_and_capture_off_with_otlp(tmp_path: Path) -> None:
    """Exporting OTLP turns content capture off unless asked; OTEL_SERVICE_NAME names the service."""
    result = run_python(
        """
        import steptrace
        tel = steptrace.configure(jsonl_path="log.jsonl")
        print(tel.service_name, tel.capture_content, tel.otlp.traces_endpoint, tel.otlp.protocol)
        tel.shutdown()
        """,
        tmp_path,
        OTEL_SERVICE_NAME="billing-agent",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_EXPORT_TIMEOUT="500",
        OTEL_EXPORTER_OTLP_TIMEOUT="500",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "billing-agent",
        "False",
        "http://127.0.0.1:9/v1/traces",
        "http/protobuf",
    ]


def test_global_provider_is_extended_not_replaced(tmp_path: Path) -> None:
    """An application's own TracerProvider keeps its exporters and also gets steptrace's."""
    result = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import steptrace
        provider = TracerProvider()
        mine = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(mine))
        trace.set_tracer_provider(provider)
        steptrace.configure(jsonl_path="log.jsonl")
        assert trace.get_tracer_provider() is provider
        with steptrace.agent_run(agent="a"):
            pass
        print(len(mine.get_finished_spans()), open("log.jsonl").read().count("\\n"))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"otlp_endpoint": "localhost:4317"}, {}, "is not an http(s) URL"),
        ({"otlp_endpoint": "http://host:notaport"}, {}, "malformed port"),
        (
            {"otlp_endpoint": "http://127.0.0.1:4317", "otlp_protocol": "carrier-pigeon"},
            {},
            "unknown OTLP protocol",
        ),
        (
            {},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
            "unknown OTLP protocol",
        ),
        ({}, {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "maybe"}, "is not a boolean"),
        ({"redact_patterns": ["("]}, {}, "not a valid regular expression"),
    ],
)
def test_bad_settings_raise_config_error_at_configure(
    kwargs: dict[str, object],
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in a setting fails loudly at start-up, never later on the hot path."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(steptrace.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        steptrace.configure(jsonl_path=tmp_path / "s.jsonl", tracer_provider=_provider(), **kwargs)  # type: ignore[arg-type]


def test_unwritable_jsonl_path_raises_config_error(tmp_path: Path) -> None:
    """A step log that cannot be created is reported by configure(), with the path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(steptrace.ConfigError, match="cannot write the step log"):
        steptrace.configure(jsonl_path=blocker / "steps.jsonl", tracer_provider=_provider())


def _provider():  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


def test_otel_sdk_disabled_makes_everything_a_no_op(tmp_path: Path) -> None:
    """OTEL_SDK_DISABLED=true: decorated code runs, nothing is written, handles still work."""
    result = run_python(
        """
        import steptrace
        tel = steptrace.configure()
        @steptrace.tool
        def echo(text): return text
        with steptrace.agent_run(agent="a") as run:
            assert echo("x") == "x"
        print(tel.enabled, tel.force_flush(), len(run.run_id))
        """,
        tmp_path,
        OTEL_SDK_DISABLED="true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "32"]
    assert not (tmp_path / "steptrace-logs").exists()


def test_reconfigure_takes_effect_for_functions_decorated_earlier(
    steptrace_capture: Capture, tmp_path: Path
) -> None:
    """A test suite can configure() again: the old log is detached, the new one gets the records."""

    @steptrace.tool
    def ping() -> str:
        return "pong"

    first = steptrace_capture.jsonl_path
    with steptrace.agent_run(agent="a"):
        ping()
    second = tmp_path / "second.jsonl"
    steptrace_capture.configure(jsonl_path=second)
    with steptrace.agent_run(agent="b"):
        ping()
    assert [json.loads(x)["type"] for x in first.read_text().splitlines()] == ["tool_call", "run"]
    assert [json.loads(x)["type"] for x in second.read_text().splitlines()] == ["tool_call", "run"]


def test_shutdown_stops_tracing(steptrace_capture: Capture) -> None:
    """After shutdown() decorated code runs untraced and nothing more is written."""
    steptrace_capture.telemetry.shutdown()
    with steptrace.agent_run(agent="a"):
        pass
    assert steptrace_capture.records == []


def test_records_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    """A script that never calls shutdown() still leaves a complete log."""
    result = run_python(
        """
        import steptrace
        steptrace.configure(jsonl_path="s.jsonl")
        with steptrace.agent_run(agent="a"):
            pass
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (record,) = steptrace.read_steps(tmp_path / "s.jsonl")
    assert record["type"] == "run"


def test_force_flush_true_when_healthy(steptrace_capture: Capture) -> None:
    """force_flush() is True when every exporter succeeded."""
    with steptrace.agent_run(agent="a"):
        pass
    assert steptrace_capture.telemetry.force_flush() is True


def test_run_record_carries_service_name(steptrace_capture: Capture) -> None:
    """Local logs say which service wrote them."""
    with steptrace.agent_run(agent="a"):
        pass
    (record,) = steptrace_capture.records
    assert record["service"] == "steptrace-test"
