"""OTLP settings from the standard OTEL_EXPORTER_OTLP_* variables, and their validation."""

from __future__ import annotations

import pytest

from steptrace import ConfigError
from steptrace.export import OtlpSettings

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_no_endpoint_means_no_otlp() -> None:
    """Without any endpoint set, steptrace would try to reach a collector nobody configured."""
    assert OtlpSettings.from_env() is None


def test_http_protobuf_appends_signal_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP, spans would be posted to the collector's root instead of /v1/traces."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert settings.traces_endpoint == "http://collector:4318/v1/traces"
    assert settings.metrics_endpoint == "http://collector:4318/v1/metrics"


def test_grpc_uses_the_endpoint_as_is_and_per_signal_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A per-signal endpoint (metrics to another receiver) would be ignored, or gRPC would get a
    URL path it cannot use."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317")
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert settings.traces_endpoint == "http://collector:4317"
    assert settings.metrics_endpoint == "http://metrics:4317"


def test_headers_and_timeout_follow_the_specification(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials with URL-encoded characters would reach the backend mangled, or a timeout in
    milliseconds would be read as seconds (a 10 000 s wait on a dead collector)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://backend.example:443")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20abc%3D%3D,x-team=ai")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert settings.headers == {"authorization": "Basic abc==", "x-team": "ai"}
    assert settings.timeout_s == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:43x7"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten seconds"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
    ],
)
def test_unusable_settings_raise_config_error_at_startup(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in the OTLP settings would surface later as silently missing traces instead of a
    clear ConfigError when the program starts."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        OtlpSettings.from_env()
    assert isinstance(raised.value, ValueError)
    assert value.split("/", maxsplit=1)[0].split("%", maxsplit=1)[0] in str(raised.value)


def test_direct_construction_is_validated_too() -> None:
    """Settings built in code (not from the environment) would skip validation and fail later."""
    with pytest.raises(ConfigError, match="protocol"):
        OtlpSettings(None, "http://x:4317", "http://x:4317", "thrift")
    with pytest.raises(ConfigError, match="not an http"):
        OtlpSettings(None, "x:4317", "http://x:4317", "grpc")


def test_each_signal_has_its_own_protocol_endpoint_path_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL would also set the metrics protocol, and
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL / _METRICS_TIMEOUT would be ignored."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "500")
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert (settings.protocol, settings.metrics_protocol) == ("http/protobuf", "grpc")
    assert (settings.traces_endpoint, settings.metrics_endpoint) == (
        "http://collector:4318/v1/traces",
        "http://collector:4318",
    )
    assert (settings.timeout_s, settings.metrics_timeout_s) == (10.0, 0.5)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert settings.metrics_endpoint == "http://collector:4318/v1/metrics"


def test_per_signal_headers_win_key_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_EXPORTER_OTLP_HEADERS set, OTEL_EXPORTER_OTLP_TRACES_HEADERS and
    _METRICS_HEADERS would be ignored (the backend then refuses a signal's token)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://backend.example:443")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=shared,x-team=ai")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Authorization=traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "authorization=metrics")
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert settings.headers == {"authorization": "traces", "x-team": "ai"}
    assert settings.metrics_headers == {"authorization": "metrics", "x-team": "ai"}
    in_code = OtlpSettings.from_env(headers={"authorization": "from-code"})
    assert in_code is not None
    assert in_code.headers["authorization"] == in_code.metrics_headers["authorization"] == "from-code"


@pytest.mark.parametrize(
    ("traces", "metrics", "expected"),
    [("", "", (True, True)), ("none", "", (False, True)), ("otlp", "none", (True, False))],
)
def test_traces_and_metrics_exporter_none(
    traces: str, metrics: str, expected: tuple[bool, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_TRACES_EXPORTER=none / OTEL_METRICS_EXPORTER=none would be ignored."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", traces)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", metrics)
    settings = OtlpSettings.from_env()
    assert settings is not None
    assert (settings.export_traces, settings.export_metrics) == expected
