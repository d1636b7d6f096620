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
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from steptrace._content import ContentPolicy
from steptrace._redaction import DEFAULT_REDACTOR

CAPTURE_KEY = otel_context.create_key("steptrace.capture_content")

# The tokens of open ``with capture_content(...)`` blocks, per thread and per asyncio task, so a
# reused object's ``__exit__`` detaches what its own ``__enter__`` attached.
_open_blocks: ContextVar[tuple[tuple[object, object], ...]] = ContextVar(
    "steptrace_capture_blocks", default=()
)

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
    One object may be reused (``NO_CAPTURE = steptrace.capture_content(False)``) by concurrent
    threads and tasks.
    """

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = bool(enabled)

    def __enter__(self) -> None:
        token = otel_context.attach(otel_context.set_value(CAPTURE_KEY, self.enabled))
        _open_blocks.set((*_open_blocks.get(), (self, token)))

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        blocks = _open_blocks.get()
        for index in range(len(blocks) - 1, -1, -1):
            if blocks[index][0] is self:
                _open_blocks.set(blocks[:index] + blocks[index + 1 :])
                otel_context.detach(blocks[index][1])  # type: ignore[arg-type]
                return

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
    """A stack trace's last ``limit`` characters, redacted like an error message."""
    redactor = policy.redactor if policy is not None else DEFAULT_REDACTOR
    tail, cut = redactor.redact_stack(text, limit)
    return "...\n" + tail if cut else tail
