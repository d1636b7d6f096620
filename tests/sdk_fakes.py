"""Canned OpenAI and Anthropic HTTP responses, served to the real SDKs through their own client.

``Script`` is a ``MockTransport`` handler: each request pops the next canned response.
Bodies are JSON or server-sent events; a streamed body can wait before its first chunk, pause
between chunks, or be cut off mid-way the way a dropped connection is. ``FakeServer`` serves the
same script on 127.0.0.1 for the tests that need a real socket (a server that hangs up, a read
timeout). Each SDK gets the HTTP library it is built on: ``httpx2`` (openai 3.x, anthropic 1.x and
2.x) or ``httpx`` (openai 1.x and 2.x, anthropic 0.x), as ``OPENAI_HTTP``/``ANTHROPIC_HTTP``, so
the same tests run against every SDK major ``make test`` installs.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import openai

API_KEY = "sk-test-0000"


def _sdk_http(package: str) -> ModuleType:
    """The HTTP library (httpx2 or httpx) an SDK's client is built on."""
    base = importlib.import_module(f"{package}._base_client")
    module = getattr(base, "httpx2", None) or base.httpx
    assert isinstance(module, ModuleType)
    return module


OPENAI_HTTP = _sdk_http("openai")
ANTHROPIC_HTTP = _sdk_http("anthropic")
_HTTP_MODULES = tuple({id(m): m for m in (OPENAI_HTTP, ANTHROPIC_HTTP)}.values())


# --- canned bodies -----------------------------------------------------------------------------
def chat_completion(
    content: str | None = "Paris.",
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    finish_reason: str = "stop",
    model: str = "gpt-4o-2024-08-06",
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    cached_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> dict[str, Any]:
    """A chat.completions response; ``tool_calls`` are (id, name, arguments JSON)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in tool_calls
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
    }


def chat_chunks(
    pieces: Sequence[str],
    *,
    tool_call: tuple[str, str, Sequence[str]] | None = None,
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = (12, 50),
    model: str = "gpt-4o-2024-08-06",
) -> list[dict[str, Any]]:
    """chat.completion.chunk events: a role chunk, one chunk per piece, a tool call, usage."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    if tool_call is not None:
        call_id, name, argument_parts = tool_call
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        chunks += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}) for part in argument_parts
        ]
    chunks.append(chunk({}, finish_reason))
    if usage is not None:
        chunks.append(
            {
                "id": "chatcmpl-2",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": sum(usage),
                },
            }
        )
    return chunks


def response_object(
    text: str = "Paris.",
    *,
    function_call: tuple[str, str, str] | None = None,
    status: str = "completed",
    incomplete_reason: str | None = None,
    input_tokens: int = 20,
    output_tokens: int = 7,
    reasoning_tokens: int = 0,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """A responses.create response; ``function_call`` is (call id, name, arguments JSON)."""
    output: list[dict[str, Any]] = []
    if text:
        output.append(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    if function_call is not None:
        call_id, name, arguments = function_call
        output.append(
            {
                "id": "fc_1",
                "type": "function_call",
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "status": "completed",
            }
        )
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": "gpt-4.1-2025-04-14",
        "status": status,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def response_events(pieces: Sequence[str], **final: Any) -> list[dict[str, Any]]:
    """responses stream events: created, one text delta per piece, completed (with usage)."""
    done = response_object("".join(pieces), **final)
    created = {**done, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "sequence_number": 0, "response": created}]
    for number, piece in enumerate(pieces, start=1):
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": number,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
        )
    terminal = "response.completed" if done["status"] == "completed" else "response.incomplete"
    events.append({"type": terminal, "sequence_number": len(pieces) + 1, "response": done})
    return events


def anthropic_message(
    text: str | None = "Paris.",
    *,
    tool_use: tuple[str, str, dict[str, Any]] | None = None,
    stop_reason: str = "end_turn",
    input_tokens: int = 15,
    output_tokens: int = 6,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
) -> dict[str, Any]:
    """An Anthropic message; ``tool_use`` is (id, name, input)."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    if tool_use is not None:
        content.append({"type": "tool_use", "id": tool_use[0], "name": tool_use[1], "input": tool_use[2]})
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
        },
    }


def anthropic_events(
    pieces: Sequence[str],
    *,
    tool_use: tuple[str, str, Sequence[str]] | None = None,
    stop_reason: str = "end_turn",
    input_tokens: int = 15,
    output_tokens: int = 50,
    cache_read_input_tokens: int = 0,
) -> list[dict[str, Any]]:
    """Anthropic message stream events; ``tool_use`` is (id, name, input JSON parts)."""
    start = anthropic_message(None, input_tokens=input_tokens, output_tokens=1)
    start["stop_reason"] = None
    start["usage"]["cache_read_input_tokens"] = cache_read_input_tokens
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    events.append({"type": "content_block_stop", "index": 0})
    if tool_use is not None:
        call_id, name, parts = tool_use
        events.append(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            }
        )
        events += [
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": part},
            }
            for part in parts
        ]
        events.append({"type": "content_block_stop", "index": 1})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def sse_chunks(events: Sequence[dict[str, Any]], *, named: bool, done: bool) -> list[bytes]:
    """One server-sent event per element (``event:`` lines when ``named``, Anthropic style)."""
    chunks = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        chunks.append(f"{head}data: {json.dumps(event)}\n\n".encode())
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return chunks


def openai_sse(events: Sequence[dict[str, Any]]) -> list[bytes]:
    return sse_chunks(events, named=False, done=True)


def responses_sse(events: Sequence[dict[str, Any]]) -> list[bytes]:
    return sse_chunks(events, named=True, done=False)


def anthropic_sse(events: Sequence[dict[str, Any]]) -> list[bytes]:
    return sse_chunks(events, named=True, done=False)


# --- responses recorded from the real APIs (tests/recorded/, sources in its README) ---------------
RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> dict[str, Any]:
    """One recorded call: ``request`` (its body) and ``response`` (JSON) or ``response_sse``."""
    data: dict[str, Any] = json.loads((RECORDED / name).read_text(encoding="utf-8"))
    return data


def recorded_reply(entry: dict[str, Any]) -> Canned:
    """The recorded body, as the API sent it: JSON, or the server-sent events' text."""
    if "response_sse" in entry:
        return sse_reply([entry["response_sse"].encode("utf-8")])
    return json_reply(entry["response"])


def recorded_call(entry: dict[str, Any], *drop: str) -> dict[str, Any]:
    """The recorded request body as the SDK method's keyword arguments (without ``stream``)."""
    return {key: value for key, value in entry["request"].items() if key not in {"stream", *drop}}


# --- transports --------------------------------------------------------------------------------
def cut_off(http: ModuleType = OPENAI_HTTP) -> Exception:
    """What httpx2 (or httpx) raises when the server closes the connection mid-body."""
    error: Exception = http.RemoteProtocolError(
        "peer closed connection without sending complete message body"
    )
    return error


_STREAM_BASES = tuple(base for m in _HTTP_MODULES for base in (m.SyncByteStream, m.AsyncByteStream))


class ChunkedBody(*_STREAM_BASES):  # type: ignore[misc]
    """A streamed body: waits ``first_delay`` seconds, then yields chunks ``gap`` seconds apart.

    With ``cut_after`` set, the connection "drops" after that many chunks.
    """

    def __init__(
        self,
        chunks: Sequence[bytes],
        *,
        first_delay: float = 0.0,
        gap: float = 0.0,
        cut_after: int | None = None,
        http: ModuleType = OPENAI_HTTP,
    ) -> None:
        self.http = http
        self.chunks = list(chunks)
        self.first_delay = first_delay
        self.gap = gap
        self.cut_after = cut_after
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.first_delay:
            time.sleep(self.first_delay)
        for number, chunk in enumerate(self.chunks):
            if self.cut_after is not None and number == self.cut_after:
                raise cut_off(self.http)
            if number and self.gap:
                time.sleep(self.gap)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        for number, chunk in enumerate(self.chunks):
            if self.cut_after is not None and number == self.cut_after:
                raise cut_off(self.http)
            if number and self.gap:
                await asyncio.sleep(self.gap)
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Canned:
    """One canned reply: a JSON body, an SSE body, an HTTP error, or a transport exception."""

    status: int = 200
    json_body: Any = None
    sse: Sequence[bytes] = ()
    first_delay: float = 0.0
    gap: float = 0.0
    cut_after: int | None = None
    raise_exc: type[Exception] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: ChunkedBody | None = None


def json_reply(body: Any, status: int = 200, **headers: str) -> Canned:
    return Canned(status=status, json_body=body, headers=dict(headers))


def sse_reply(chunks: Sequence[bytes], **options: Any) -> Canned:
    return Canned(sse=chunks, **options)


def error_reply(status: int, message: str = "boom", **headers: str) -> Canned:
    kind = {429: "rate_limit_error", 500: "api_error"}.get(status, "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Canned(status=status, json_body=body, headers=dict(headers))


class Script:
    """A MockTransport handler replying with canned responses in order."""

    def __init__(self, *replies: Canned) -> None:
        self.http = OPENAI_HTTP  # set by transport(): the library of the client it serves
        self.replies = list(replies)
        self.requests: list[Any] = []  # httpx2.Request or httpx.Request

    def add(self, *replies: Canned) -> None:
        self.replies.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if reply.raise_exc is not None:
            raise reply.raise_exc("canned failure", request=request)  # type: ignore[call-arg]
        if reply.sse:
            reply.body = ChunkedBody(
                reply.sse,
                first_delay=reply.first_delay,
                gap=reply.gap,
                cut_after=reply.cut_after,
                http=self.http,
            )
            headers = {"content-type": "text/event-stream", **reply.headers}
            return self.http.Response(reply.status, headers=headers, stream=reply.body)
        return self.http.Response(reply.status, json=reply.json_body, headers=reply.headers)

    def transport(self, http: ModuleType = OPENAI_HTTP) -> Any:
        self.http = http
        return http.MockTransport(self)


BASE_URL_OPENAI = "https://api.fake-openai.test:8443/v1"
BASE_URL_ANTHROPIC = "https://api.fake-anthropic.test"


def openai_client(script: Script, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("base_url", BASE_URL_OPENAI)
    http_client = OPENAI_HTTP.Client(transport=script.transport(OPENAI_HTTP))
    return openai.OpenAI(api_key=API_KEY, http_client=http_client, **options)


def async_openai_client(script: Script, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("base_url", BASE_URL_OPENAI)
    return openai.AsyncOpenAI(
        api_key=API_KEY,
        http_client=OPENAI_HTTP.AsyncClient(transport=script.transport(OPENAI_HTTP)),
        **options,
    )


def anthropic_client(script: Script, **options: Any) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    options.setdefault("base_url", BASE_URL_ANTHROPIC)
    return anthropic.Anthropic(
        api_key=API_KEY,
        http_client=ANTHROPIC_HTTP.Client(transport=script.transport(ANTHROPIC_HTTP)),
        **options,
    )


def async_anthropic_client(script: Script, **options: Any) -> anthropic.AsyncAnthropic:
    options.setdefault("max_retries", 0)
    options.setdefault("base_url", BASE_URL_ANTHROPIC)
    return anthropic.AsyncAnthropic(
        api_key=API_KEY,
        http_client=ANTHROPIC_HTTP.AsyncClient(transport=script.transport(ANTHROPIC_HTTP)),
        **options,
    )


# --- a real socket on 127.0.0.1 ----------------------------------------------------------------
class FakeServer:
    """Serves ``Script`` replies over HTTP/1.1 on 127.0.0.1; a cut-off reply really hangs up.

    A reply with ``first_delay`` longer than the client's timeout gives a real read timeout.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                content = self.rfile.read(length)
                request = OPENAI_HTTP.Request("POST", self.path, content=content)
                outer.script.requests.append(request)
                reply = outer.script.replies.pop(0)
                outer.reply(self, reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reply(self, handler: BaseHTTPRequestHandler, reply: Canned) -> None:
        if reply.first_delay:
            time.sleep(reply.first_delay)
        if not reply.sse:
            data = json.dumps(reply.json_body).encode()
            handler.send_response(reply.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        chunks = list(reply.sse)
        handler.send_response(reply.status)
        handler.send_header("content-type", "text/event-stream")
        # A declared length the server never reaches: the client sees the body cut off.
        handler.send_header("content-length", str(sum(len(c) for c in chunks)))
        handler.end_headers()
        for number, chunk in enumerate(chunks):
            if reply.cut_after is not None and number == reply.cut_after:
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
            if number and reply.gap:
                time.sleep(reply.gap)
            handler.wfile.write(chunk)
            handler.wfile.flush()

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
