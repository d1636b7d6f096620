"""Where and how to send OTLP: ``OtlpSettings`` from configure()'s arguments and the standard
``OTEL_EXPORTER_OTLP_*`` variables, validated at start-up (a bad value raises ``ConfigError``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from steptrace._errors import ConfigError

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_TIMEOUT_S = 10.0


def _parse_headers(raw: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` with URL-encoded values, as ``OTEL_EXPORTER_OTLP_HEADERS``."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"OTLP header {item.strip()!r} is not key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _check_endpoint(name: str, endpoint: str) -> str:
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name}={endpoint!r} is not an http(s) URL like http://localhost:4317")
    try:
        parsed.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{name}={endpoint!r} has a malformed port") from exc
    return endpoint


def _timeout_from_env() -> float:
    raw = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
        or "10000"
    )
    try:
        timeout_s = float(raw) / 1000.0  # milliseconds, as the OpenTelemetry specification says
    except ValueError:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT={raw!r} is not milliseconds") from None
    if not timeout_s > 0:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT={raw!r} must be positive")
    return timeout_s


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to send OTLP; per-signal endpoints are complete URLs."""

    endpoint: str | None
    traces_endpoint: str
    metrics_endpoint: str
    protocol: str = "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    spill_path: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown OTLP protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if self.endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint)
        if self.traces_endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", self.traces_endpoint)
        if self.metrics_endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", self.metrics_endpoint)
        if not self.timeout_s > 0:
            raise ConfigError(f"OTLP timeout must be positive, got {self.timeout_s!r} s")

    @classmethod
    def from_env(
        cls,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: dict[str, str] | None = None,
        spill_path: Path | None = None,
    ) -> OtlpSettings | None:
        """Settings from arguments, else the standard variables; None when no endpoint is set."""
        env = os.environ
        endpoint = endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        metrics = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or None
        if endpoint is None and traces is None and metrics is None:
            return None
        protocol = (
            protocol
            or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        ).strip()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown OTLP protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if endpoint is not None:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        base = (endpoint or "").rstrip("/")
        if protocol == "http/protobuf":
            traces = traces or (f"{base}/v1/traces" if base else None)
            metrics = metrics or (f"{base}/v1/metrics" if base else None)
        else:
            traces = traces or base
            metrics = metrics or base
        merged = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        merged.update(headers or {})
        return cls(endpoint, traces or "", metrics or "", protocol, merged, spill_path, _timeout_from_env())
