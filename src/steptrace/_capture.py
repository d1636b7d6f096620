"""Per-block content capture: ``with steptrace.capture_content(False):`` keeps a block's content out.

The choice travels in the OpenTelemetry context (``_context.CAPTURE_KEY``), so asyncio tasks and
``bind_context`` inherit it; the innermost block wins over ``configure(capture_content=...)`` and
the environment. The context is made current through ``_spans``, like every span's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from steptrace._context import CAPTURE_KEY
from steptrace._spans import Block, await_in_context, find_block, run_in_context

P = ParamSpec("P")
R = TypeVar("R")


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
    threads and tasks: each ``with`` restores what its own entry changed.
    """

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = bool(enabled)

    def _context(self) -> otel_context.Context:
        return otel_context.set_value(CAPTURE_KEY, self.enabled)

    def __enter__(self) -> None:
        Block(self._context(), self).enter()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        block = find_block(self)
        if block is not None:
            block.exit()

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or a coroutine function (not a generator)."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError("capture_content cannot decorate a generator; use it as a with block inside")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await await_in_context(self._context(), fn(*args, **kwargs))

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return run_in_context(self._context(), fn, *args, **kwargs)

        return run

    def __repr__(self) -> str:
        return f"steptrace.capture_content({self.enabled})"
