"""The active steptrace configuration that decorated code reads at call time.

Decorators look the configuration up on every call, never at decoration time, so configure()
called later (or again, as a test suite does) takes effect for functions decorated earlier.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import ProxyTracerProvider, Tracer, TracerProvider

from steptrace import _attributes as A
from steptrace._content import ContentPolicy
from steptrace._guards import GuardPolicy
from steptrace._metrics import Instruments, create_instruments
from steptrace._settings import capture_content_from_env
from steptrace._version import __version__


class ActiveConfig:
    """What a span needs at call time: the tracer, the histograms and the content policy;
    ``record_cost``: price each model call onto its span (configure(record_cost=True));
    ``guards``: each run's limits and what a trip does (configure(guards=...)), or None."""

    __slots__ = ("content", "guards", "instruments", "record_cost", "tracer")

    def __init__(
        self,
        tracer: Tracer,
        instruments: Instruments,
        content: ContentPolicy,
        record_cost: bool = False,
        guards: GuardPolicy | None = None,
    ) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.content = content
        self.record_cost = record_cost
        self.guards = guards


def make_active_config(
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider | None,
    content: ContentPolicy,
    record_cost: bool = False,
    guards: GuardPolicy | None = None,
) -> ActiveConfig:
    tracer = tracer_provider.get_tracer(A.INSTRUMENTATION_SCOPE, __version__)
    return ActiveConfig(tracer, create_instruments(meter_provider), content, record_cost, guards)


_current: ActiveConfig | None = None
_disabled = False
# Without configure(), an SDK TracerProvider the application installed globally is used as is.
_implicit: tuple[TracerProvider, ActiveConfig] | None = None


def set_active(config: ActiveConfig | None, *, disabled: bool = False) -> None:
    global _current, _disabled, _implicit
    _current = config
    _disabled = disabled
    _implicit = None


def active() -> ActiveConfig | None:
    """The configuration to trace with, or None: call the user's function bare."""
    config = _current
    if config is not None:
        return config
    if _disabled:
        return None
    return _implicit_config()


# While no provider is set, trace.get_tracer_provider() looks OTEL_PYTHON_TRACER_PROVIDER up in
# os.environ on every call (~0.6 µs, most of what a call costs when tracing is off). The API's own
# global and a dict lookup in os.environ's mapping answer "nothing installed" in ~0.1 µs; any doubt
# (another Python, a changed API) takes the API's path.
_PROVIDER_ENV = "OTEL_PYTHON_TRACER_PROVIDER"
_NOT_READ = object()


def _environ_key(name: str) -> Any:
    try:
        return os.environ.encodekey(name)
    except Exception:
        return _NOT_READ


_PROVIDER_ENV_KEY = _environ_key(_PROVIDER_ENV)


def _nothing_installed() -> bool:
    if getattr(trace, "_TRACER_PROVIDER", _NOT_READ) is not None:
        return False
    environ = getattr(os.environ, "_data", None)
    if isinstance(environ, dict) and _PROVIDER_ENV_KEY is not _NOT_READ:
        return _PROVIDER_ENV_KEY not in environ
    return _PROVIDER_ENV not in os.environ


def _implicit_config() -> ActiveConfig | None:
    global _implicit
    if _nothing_installed():
        return None  # the no-op path, as cheap as a bare call
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider):
        return None  # nothing installed: the no-op path, as cheap as a bare call
    cached = _implicit
    if cached is not None and cached[0] is provider:
        return cached[1]
    config = make_active_config(
        provider, None, ContentPolicy(capture=capture_content_from_env(default=False))
    )
    _implicit = (provider, config)
    return config
