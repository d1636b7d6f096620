"""Where and how to send OTLP: ``OtlpSettings`` from configure()'s arguments and the standard
``OTEL_EXPORTER_OTLP_*`` variables, validated at start-up (a bad value raises ``ConfigError``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from steptrace._errors import ConfigError
from steptrace.export.rotation import RotationSettings

logger = logging.getLogger("steptrace.otlp")

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


def _timeout_from_env(signal: str) -> float:
    name = f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT"
    raw = os.environ.get(name) or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or "10000"
    if not os.environ.get(name):
        name = "OTEL_EXPORTER_OTLP_TIMEOUT"
    try:
        timeout_s = float(raw) / 1000.0  # milliseconds, as the OpenTelemetry specification says
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not milliseconds") from None
    if not timeout_s > 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return timeout_s


def _protocol_from_env(signal: str, given: str | None) -> str:
    protocol = (
        given
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown OTLP protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    return protocol


def _exported_over_otlp(variable: str) -> bool:
    """``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: a comma-separated list, ``otlp`` by
    default; ``none`` (or a list without ``otlp``) means steptrace does not export that signal."""
    raw = os.environ.get(variable, "").strip().lower()
    if not raw:
        return True
    names = {name.strip() for name in raw.split(",") if name.strip()}
    unknown = names - {"otlp", "none"}
    if unknown:  # valid for other SDKs (console, zipkin); steptrace has only OTLP
        logger.warning(
            "steptrace: %s=%s: steptrace exports over OTLP only; %s ignored",
            variable,
            raw,
            ", ".join(sorted(unknown)),
        )
    return "otlp" in names


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
    # Metrics have their own protocol, headers and timeout (the OTEL_EXPORTER_OTLP_METRICS_*
    # variables); None means the same as for traces.
    metrics_protocol: str | None = None
    metrics_headers: dict[str, str] | None = None
    metrics_timeout_s: float | None = None
    # False for a signal set to none (OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER)
    export_traces: bool = True
    export_metrics: bool = True
    # The spill file rotates like the step log (configure()'s jsonl_max_bytes / jsonl_backups).
    spill_rotation: RotationSettings = field(default_factory=RotationSettings)

    def __post_init__(self) -> None:
        for name, default in (
            ("metrics_protocol", self.protocol),
            ("metrics_headers", self.headers),
            ("metrics_timeout_s", self.timeout_s),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)  # frozen: set once, here
        for protocol in (self.protocol, self.metrics_protocol):
            if protocol not in PROTOCOLS:
                raise ConfigError(f"unknown OTLP protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if self.endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint)
        if self.traces_endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", self.traces_endpoint)
        if self.metrics_endpoint:
            _check_endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", self.metrics_endpoint)
        for timeout_s in (self.timeout_s, self.metrics_timeout_s):
            if not (timeout_s is not None and timeout_s > 0):
                raise ConfigError(f"OTLP timeout must be positive, got {timeout_s!r} s")

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
        traces_protocol = _protocol_from_env("TRACES", protocol)
        metrics_protocol = _protocol_from_env("METRICS", protocol)
        if endpoint is not None:
            _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        base = (endpoint or "").rstrip("/")
        # Over HTTP the signal's path is appended to the shared endpoint; gRPC takes it as is.
        if not traces:
            traces = f"{base}/v1/traces" if base and traces_protocol == "http/protobuf" else base
        if not metrics:
            metrics = f"{base}/v1/metrics" if base and metrics_protocol == "http/protobuf" else base
        # Per-signal headers win over the shared ones key by key; configure()'s headers win over both.
        shared = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        traces_headers = {**shared, **_parse_headers(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", ""))}
        metrics_headers = {**shared, **_parse_headers(env.get("OTEL_EXPORTER_OTLP_METRICS_HEADERS", ""))}
        traces_headers.update(headers or {})
        metrics_headers.update(headers or {})
        return cls(
            endpoint,
            traces or "",
            metrics or "",
            traces_protocol,
            traces_headers,
            spill_path,
            _timeout_from_env("TRACES"),
            metrics_protocol=metrics_protocol,
            metrics_headers=metrics_headers,
            metrics_timeout_s=_timeout_from_env("METRICS"),
            export_traces=_exported_over_otlp("OTEL_TRACES_EXPORTER"),
            export_metrics=_exported_over_otlp("OTEL_METRICS_EXPORTER"),
        )
