"""What a rerun hands back for a recorded SDK stream: the recorded chunks, rebuilt, in order.

``RecordedStream``/``AsyncRecordedStream`` iterate like the SDK's ``Stream``/``AsyncStream``
(``for``/``async for``, ``with``, ``close()``); ``response`` has no headers (no HTTP was done). A
stream that failed in the original run raises the recorded exception after the recorded chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class _NoRequest:
    headers = _NO_HEADERS


class NoResponse:
    """The HTTP response a served stream never had, as far as the SDKs' stream helpers read one:
    no headers of its own (``request_id`` is None) nor of its request (no ``anthropic-beta``:
    ``BetaMessageStream`` reads them for every event); closing it does nothing."""

    headers = _NO_HEADERS
    request = _NoRequest()

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


NO_RESPONSE = NoResponse()


class RecordedStream:
    """The recorded chunks of one streamed model call, as the SDK's types."""

    response: Any = NO_RESPONSE

    def __init__(self, chunks: Sequence[Any], error: BaseException | None = None) -> None:
        self._chunks = list(chunks)
        self._error = error
        self._index = 0
        self._closed = False

    def __iter__(self) -> RecordedStream:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        if self._index < len(self._chunks):
            chunk = self._chunks[self._index]
            self._index += 1
            return chunk
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopIteration

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> RecordedStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRecordedStream:
    """The async twin of ``RecordedStream``."""

    response: Any = NO_RESPONSE

    def __init__(self, chunks: Sequence[Any], error: BaseException | None = None) -> None:
        self._inner = RecordedStream(chunks, error)

    def __aiter__(self) -> AsyncRecordedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._inner)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self._inner.close()

    async def __aenter__(self) -> AsyncRecordedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._inner.close()
