"""Per-block content capture: ``with steptrace.capture_content(False):`` keeps a block's content out.

The choice travels in the OpenTelemetry context, so asyncio tasks and ``bind_context`` inherit
it; the innermost block wins over ``configure(capture_content=...)`` and the environment.
Also the redaction of error messages and stack traces, which are recorded whether or not
content is captured.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from steptrace._content import ContentPolicy
from steptrace._redaction import DEFAULT_REDACTOR

CAPTURE_KEY = otel_context.create_key("steptrace.capture_content")

P = ParamSpec("P")
R = TypeVar("R")


def capturing(policy: ContentPolicy, context: otel_context.Context | None = None) -> bool:
    """Whether content may be recorded here: the innermost ``capture_content`` block, else ``policy``."""
    override = otel_context.get_value(CAPTURE_KEY, context)
    return policy.capture if override is None else override is True


class capture_content:  # lower case: used like a function, ``with capture_content(False):``
    """Turn content capture off (or on) for a block or a function, whatever configure() said.

    ::

        with steptrace.capture_content(False):
            patient = lookup_patient(record_id)   # tool arguments and result not recorded

        @steptrace.capture_content(False)
        @steptrace.tool
        def read_vault(path: str) -> str: ...

    Put the decorator outermost, so the tool's arguments are covered too. Spans are still
    recorded (names, timings, errors, token counts); only captured content is left out.
    A ``capture_content`` object may be entered by one block at a time; make one per block.
    """

    __slots__ = ("_tokens", "enabled")

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = bool(enabled)
        self._tokens: list[object] = []

    def __enter__(self) -> None:
        self._tokens.append(otel_context.attach(otel_context.set_value(CAPTURE_KEY, self.enabled)))

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._tokens:
            otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or a coroutine function (not a generator)."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError("capture_content cannot decorate a generator; use it as a with block inside")
        enabled = self.enabled
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                token = otel_context.attach(otel_context.set_value(CAPTURE_KEY, enabled))
                try:
                    return await fn(*args, **kwargs)
                finally:
                    otel_context.detach(token)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            token = otel_context.attach(otel_context.set_value(CAPTURE_KEY, enabled))
            try:
                return fn(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return run

    def __repr__(self) -> str:
        return f"steptrace.capture_content({self.enabled})"


def redact_error_text(text: str, limit: int, policy: ContentPolicy | None = None) -> str:
    """An error message, redacted (detectors, ``redact_patterns``, ``redact``) and cut at ``limit``."""
    redactor = policy.redactor if policy is not None else DEFAULT_REDACTOR
    return redactor.redact_message(text, limit)


def redact_stack_text(text: str, limit: int, policy: ContentPolicy | None = None) -> str:
    """A stack trace's last ``limit`` characters, redacted with the detectors and patterns."""
    redactor = policy.redactor if policy is not None else DEFAULT_REDACTOR
    tail, cut = redactor.redact_suffix(text, limit)
    return "...\n" + tail if cut else tail
