"""A fake Amazon Bedrock runtime on 127.0.0.1 for the real boto3 ``bedrock-runtime`` client.

``converse`` and ``invoke_model`` replies are JSON; ``converse_stream`` replies speak the AWS
event-stream framing (``application/vnd.amazon.eventstream``), so botocore's own parser reads
them: each message is a prelude (total length, headers length, prelude CRC32), headers
(``:event-type``, ``:content-type``, ``:message-type``), a JSON payload and a message CRC32.
Errors carry ``x-amzn-ErrorType`` as the service's do.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


# --- the event-stream framing --------------------------------------------------------------------
def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # type 7: a string, its length in two bytes
    return (
        struct.pack("!B", len(raw_name)) + raw_name + b"\x07" + struct.pack("!H", len(raw_value)) + raw_value
    )


def event_message(event_type: str, payload: Any, message_type: str = "event") -> bytes:
    """One event-stream message: ``:event-type`` (or ``:exception-type``) and a JSON payload."""
    type_header = ":event-type" if message_type == "event" else ":exception-type"
    headers = (
        _header(type_header, event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", message_type)
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack("!II", total, len(headers))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack("!I", binascii.crc32(message))


def exception_message(code: str, message: str) -> bytes:
    """An error that arrives inside the stream (``:message-type: exception``), after a 200."""
    return event_message(code, {"message": message}, message_type="exception")


# --- canned bodies ---------------------------------------------------------------------------------
def usage(
    input_tokens: int = 12, output_tokens: int = 5, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    out = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + cache_read + cache_write,
    }
    if cache_read:
        out["cacheReadInputTokens"] = cache_read
    if cache_write:
        out["cacheWriteInputTokens"] = cache_write
    return out


def converse_response(
    text: str | None = "Sunny in Paris.",
    *,
    tool_use: tuple[str, str, dict[str, Any]] | None = None,
    stop_reason: str = "end_turn",
    **usage_options: int,
) -> dict[str, Any]:
    """A Converse response; ``tool_use`` is (toolUseId, name, input)."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"text": text})
    if tool_use is not None:
        tool_id, name, arguments = tool_use
        content.append({"toolUse": {"toolUseId": tool_id, "name": name, "input": arguments}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage(**usage_options),
        "metrics": {"latencyMs": 120},
    }


def converse_events(
    pieces: Sequence[str],
    *,
    tool_use: tuple[str, str, Sequence[str]] | None = None,
    stop_reason: str = "end_turn",
    **usage_options: int,
) -> list[bytes]:
    """A ConverseStream body: text deltas, an optional tool use (its input in JSON pieces),
    messageStop, then the metadata event with the usage."""
    events = [event_message("messageStart", {"role": "assistant"})]
    for piece in pieces:
        events.append(event_message("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0}))
    events.append(event_message("contentBlockStop", {"contentBlockIndex": 0}))
    if tool_use is not None:
        tool_id, name, inputs = tool_use
        start = {"start": {"toolUse": {"toolUseId": tool_id, "name": name}}, "contentBlockIndex": 1}
        events.append(event_message("contentBlockStart", start))
        for piece in inputs:
            delta = {"delta": {"toolUse": {"input": piece}}, "contentBlockIndex": 1}
            events.append(event_message("contentBlockDelta", delta))
        events.append(event_message("contentBlockStop", {"contentBlockIndex": 1}))
    events.append(event_message("messageStop", {"stopReason": stop_reason}))
    events.append(event_message("metadata", {"usage": usage(**usage_options), "metrics": {"latencyMs": 90}}))
    return events


def anthropic_body(
    text: str = "Sunny.",
    *,
    tool_use: tuple[str, str, dict[str, Any]] | None = None,
    stop_reason: str = "end_turn",
    cache_read: int = 0,
) -> dict[str, Any]:
    """An Anthropic Messages response body as InvokeModel returns it."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if tool_use is not None:
        tool_id, name, arguments = tool_use
        content.append({"type": "tool_use", "id": tool_id, "name": name, "input": arguments})
    return {
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": cache_read},
    }


def anthropic_chunks(
    pieces: Sequence[str],
    *,
    tool_use: tuple[str, str, Sequence[str]] | None = None,
    stop_reason: str = "end_turn",
) -> list[bytes]:
    """An InvokeModelWithResponseStream body: Anthropic stream events, each the JSON bytes of one
    ``chunk`` event (botocore decodes the base64 ``bytes`` member)."""
    start = {
        "id": "msg_bdrk_02",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 25, "output_tokens": 1},
    }
    items: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ),
        {"type": "content_block_stop", "index": 0},
    ]
    if tool_use is not None:
        tool_id, name, inputs = tool_use
        block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
        items.append({"type": "content_block_start", "index": 1, "content_block": block})
        for piece in inputs:
            delta = {"type": "input_json_delta", "partial_json": piece}
            items.append({"type": "content_block_delta", "index": 1, "delta": delta})
        items.append({"type": "content_block_stop", "index": 1})
    items.append(
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 11}}
    )
    items.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 25}})
    return [
        event_message("chunk", {"bytes": base64.b64encode(json.dumps(item).encode()).decode()})
        for item in items
    ]


# --- the other model families' InvokeModel bodies ---------------------------------------------------
# Shaped from the request and response examples of the Amazon Bedrock User Guide, "Inference request
# parameters and response fields for foundation models" (model-parameters-nova / -meta / -titan-text /
# -mistral-text-completion / -mistral-chat-completion / -cohere-command / -cohere-command-r-plus;
# the guide is CC BY-SA 4.0): field names and nesting as documented, values our own. Every streamed
# reply ends with the ``amazon-bedrock-invocationMetrics`` Bedrock adds to a stream's last chunk.
NOVA = "amazon.nova-lite-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
TITAN = "amazon.titan-text-express-v1"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
MISTRAL_CHAT = "mistral.mistral-large-2407-v1:0"
COHERE = "cohere.command-text-v14"
COHERE_R = "cohere.command-r-v1:0"


def invocation_metrics(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
        "invocationLatency": 420,
        "firstByteLatency": 150,
    }


def chunks(*items: dict[str, Any]) -> list[bytes]:
    """An InvokeModelWithResponseStream body: one ``chunk`` event per JSON item."""
    return [
        event_message("chunk", {"bytes": base64.b64encode(json.dumps(item).encode()).decode()})
        for item in items
    ]


def nova_body(
    text: str = "Sunny in Paris.",
    *,
    tool_use: tuple[str, str, dict[str, Any]] | None = None,
    stop_reason: str = "end_turn",
) -> dict[str, Any]:
    """An Amazon Nova (messages-v1) reply: Converse's shape, cache counts spelled ...TokenCount."""
    content: list[dict[str, Any]] = [{"text": text}]
    if tool_use is not None:
        tool_id, name, arguments = tool_use
        content.append({"toolUse": {"toolUseId": tool_id, "name": name, "input": arguments}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": 31,
            "outputTokens": 9,
            "totalTokens": 40,
            "cacheReadInputTokenCount": 0,
            "cacheWriteInputTokenCount": 0,
        },
    }


def nova_chunks(pieces: Sequence[str], stop_reason: str = "end_turn") -> list[bytes]:
    return chunks(
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in pieces),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop_reason}},
        {
            "metadata": {"usage": {"inputTokens": 31, "outputTokens": 9}, "metrics": {}, "trace": {}},
            "amazon-bedrock-invocationMetrics": invocation_metrics(31, 9),
        },
    )


def llama_body(text: str = "Sunny in Paris.", stop_reason: str = "stop") -> dict[str, Any]:
    return {
        "generation": text,
        "prompt_token_count": 17,
        "generation_token_count": 6,
        "stop_reason": stop_reason,
    }


def llama_chunks(pieces: Sequence[str], stop_reason: str = "stop") -> list[bytes]:
    """Llama's chunks: the prompt count on the first, a running generation count on each."""
    items = [
        {
            "generation": p,
            "prompt_token_count": 17 if i == 0 else None,
            "generation_token_count": i + 1,
            "stop_reason": None,
        }
        for i, p in enumerate(pieces)
    ]
    items[-1]["stop_reason"] = stop_reason
    items[-1]["amazon-bedrock-invocationMetrics"] = invocation_metrics(17, len(pieces))
    return chunks(*items)


def titan_body(text: str = "Sunny in Paris.", completion_reason: str = "FINISH") -> dict[str, Any]:
    return {
        "inputTextTokenCount": 8,
        "results": [{"tokenCount": 5, "outputText": text, "completionReason": completion_reason}],
    }


def titan_chunks(pieces: Sequence[str], completion_reason: str = "FINISH") -> list[bytes]:
    items: list[dict[str, Any]] = [
        {
            "outputText": p,
            "index": 0,
            "totalOutputTextTokenCount": i + 1,
            "completionReason": None,
            "inputTextTokenCount": 8 if i == 0 else None,
        }
        for i, p in enumerate(pieces)
    ]
    items[-1]["completionReason"] = completion_reason
    items[-1]["amazon-bedrock-invocationMetrics"] = invocation_metrics(8, len(pieces))
    return chunks(*items)


def mistral_body(text: str = "Sunny in Paris.", stop_reason: str = "stop") -> dict[str, Any]:
    """Mistral text completion: no token counts in the body (Bedrock's headers carry them)."""
    return {"outputs": [{"text": text, "stop_reason": stop_reason}]}


def mistral_chat_body(tool: tuple[str, str] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "" if tool else "Sunny in Paris."}
    if tool is not None:
        call_id, name = tool
        message["tool_calls"] = [
            {"id": call_id, "function": {"name": name, "arguments": '{"city": "Paris"}'}}
        ]
    return {"choices": [{"index": 0, "message": message, "stop_reason": "tool_calls" if tool else "stop"}]}


def mistral_chunks(pieces: Sequence[str], stop_reason: str = "stop") -> list[bytes]:
    items: list[dict[str, Any]] = [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces]
    items[-1]["outputs"][0]["stop_reason"] = stop_reason
    items[-1]["amazon-bedrock-invocationMetrics"] = invocation_metrics(14, len(pieces))
    return chunks(*items)


def cohere_body(text: str = "Sunny in Paris.", finish_reason: str = "COMPLETE") -> dict[str, Any]:
    return {
        "generations": [{"finish_reason": finish_reason, "id": "gen-1", "text": text}],
        "id": "cohere-req-1",
        "prompt": "Weather in Paris?",
    }


def cohere_r_body(text: str = "Sunny in Paris.", finish_reason: str = "COMPLETE") -> dict[str, Any]:
    return {
        "response_id": "cohere-resp-1",
        "text": text,
        "generation_id": "gen-2",
        "finish_reason": finish_reason,
        "chat_history": [],
    }


def cohere_chunks(pieces: Sequence[str], finish_reason: str = "COMPLETE") -> list[bytes]:
    items: list[dict[str, Any]] = [{"generations": [{"text": p}], "is_finished": False} for p in pieces]
    items.append(
        {
            "generations": [{"text": "", "finish_reason": finish_reason}],
            "is_finished": True,
            "amazon-bedrock-invocationMetrics": invocation_metrics(11, len(pieces)),
        }
    )
    return chunks(*items)


# --- replies and the server ------------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    events: Sequence[bytes] = ()
    headers: dict[str, str] = field(default_factory=dict)
    gap: float = 0.0


def json_reply(body: Any, tokens: tuple[int, int] | None = None) -> Reply:
    """``tokens``: the counts InvokeModel replies carry in ``X-Amzn-Bedrock-*-Token-Count``."""
    headers = {"content-type": "application/json"}
    if tokens is not None:
        headers["X-Amzn-Bedrock-Input-Token-Count"] = str(tokens[0])
        headers["X-Amzn-Bedrock-Output-Token-Count"] = str(tokens[1])
    return Reply(body=json.dumps(body).encode(), headers=headers)


def stream_reply(events: Sequence[bytes], gap: float = 0.0) -> Reply:
    return Reply(events=events, headers={"content-type": "application/vnd.amazon.eventstream"}, gap=gap)


def error_reply(code: str, message: str, status: int = 400) -> Reply:
    """An AWS JSON error: the code in ``x-amzn-ErrorType``, the message in the body."""
    headers = {"content-type": "application/json", "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"}
    return Reply(status=status, body=json.dumps({"message": message}).encode(), headers=headers)


class BedrockServer:
    """Serves replies in order on 127.0.0.1; ``requests`` holds (path, JSON body) of each request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                content = self.rfile.read(length)
                try:
                    body = json.loads(content) if content else None
                except ValueError:
                    body = content
                outer.requests.append((self.path, body))
                outer.reply(self, outer.replies.pop(0))

            do_GET = do_POST  # the control plane's list calls

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        data = reply.body if not reply.events else b"".join(reply.events)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("x-amzn-RequestId", "req-0001")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        if not reply.events:
            handler.wfile.write(data)
            return
        for number, event in enumerate(reply.events):
            if number and reply.gap:
                time.sleep(reply.gap)
            handler.wfile.write(event)
            handler.wfile.flush()

    def client(self, **config: Any) -> Any:
        """A real boto3 ``bedrock-runtime`` client for this server, dummy credentials, no retries."""
        return boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="dummy-secret",
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    def __enter__(self) -> BedrockServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
