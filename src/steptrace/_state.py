"""The active steptrace configuration that decorated code reads at call time.

Decorators look the configuration up on every call, never at decoration time, so configure()
called later (or again, as a test suite does) takes effect for functions decorated earlier.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import ProxyTracerProvider, Tracer, TracerProvider

from steptrace import _attributes as A
from steptrace._content import ContentPolicy
from steptrace._metrics import Instruments, create_instruments
from steptrace._settings import capture_content_from_env
from steptrace._version import __version__


class ActiveConfig:
    """What a span needs at call time: the tracer, the histograms and the content policy."""

    __slots__ = ("content", "instruments", "tracer")

    def __init__(self, tracer: Tracer, instruments: Instruments, content: ContentPolicy) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.content = content


def make_active_config(
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider | None,
    content: ContentPolicy,
) -> ActiveConfig:
    tracer = tracer_provider.get_tracer(A.INSTRUMENTATION_SCOPE, __version__)
    return ActiveConfig(tracer, create_instruments(meter_provider), content)


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


def _implicit_config() -> ActiveConfig | None:
    global _implicit
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
