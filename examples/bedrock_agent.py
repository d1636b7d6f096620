"""An Amazon Bedrock Converse tool-calling agent using ``converse_stream``, traced by steptrace;
runs offline.

    python examples/bedrock_agent.py

A fake Bedrock runtime on 127.0.0.1 (started below) answers in the AWS event-stream framing that
boto3 reads from the real service: a ``get_weather`` tool use first, then the answer. Each call is
an llm_request span (provider aws.bedrock) with tokens, stop reason and time to first chunk.
"""

from __future__ import annotations

import binascii
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

import steptrace

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


# --- the fake service: AWS event-stream messages -------------------------------------------------
def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack("!H", len(raw_value)) + raw_value


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message: prelude (lengths + CRC32), headers, JSON payload, message CRC32."""
    headers = (
        _header(":event-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", "event")
    )
    body = json.dumps(payload).encode()
    prelude = struct.pack("!II", 16 + len(headers) + len(body), len(headers))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + headers + body
    return message + struct.pack("!I", binascii.crc32(message))


def events_for(answered: bool) -> list[bytes]:
    if answered:
        blocks = [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}})
            for t in ("It is ", "18°C ", "in Paris.")
        ]
        stop = "end_turn"
    else:
        start = {"toolUse": {"toolUseId": "tooluse_weather", "name": "get_weather"}}
        blocks = [
            event("contentBlockStart", {"contentBlockIndex": 0, "start": start}),
            *(
                event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": p}}})
                for p in ('{"city"', ': "Paris"}')
            ),
        ]
        stop = "tool_use"
    usage = {"inputTokens": 50, "outputTokens": 15, "totalTokens": 65}
    return [
        event("messageStart", {"role": "assistant"}),
        *blocks,
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": stop}),
        event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}}),
    ]


def fake_bedrock_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            answered = any("toolResult" in block for m in body["messages"] for block in m["content"])
            data = b"".join(events_for(answered))
            self.send_response(200)
            self.send_header("content-type", "application/vnd.amazon.eventstream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the agent ------------------------------------------------------------------------------------
@steptrace.tool
def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "celsius": 18}


TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
            }
        }
    ]
}


def read_turn(stream: Any) -> tuple[list[dict[str, Any]], str]:
    """The assistant's content blocks and stop reason, from converse_stream's events."""
    text, tool, tool_input, stop = "", None, "", "end_turn"
    for item in stream:
        if "contentBlockStart" in item:
            tool = item["contentBlockStart"]["start"]["toolUse"]
        elif "contentBlockDelta" in item:
            delta = item["contentBlockDelta"]["delta"]
            text += delta.get("text", "")
            tool_input += delta.get("toolUse", {}).get("input", "")
        elif "messageStop" in item:
            stop = item["messageStop"]["stopReason"]
    content: list[dict[str, Any]] = [{"text": text}] if text else []
    if tool is not None:
        content.append({"toolUse": {**tool, "input": json.loads(tool_input)}})
    return content, stop


def main() -> None:
    server = fake_bedrock_server()
    telemetry = steptrace.configure(service_name="bedrock-agent")  # 1. configure
    steptrace.instrument_bedrock()  # 2. instrument boto3's bedrock-runtime clients
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.server_port}",
        aws_access_key_id="offline",
        aws_secret_access_key="offline",
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
    with steptrace.agent_run(agent="weather-bot") as run:  # 3. mark the run (and steps)
        for _ in range(5):
            with steptrace.agent_step():
                response = client.converse_stream(modelId=MODEL, messages=messages, toolConfig=TOOLS)
                content, stop = read_turn(response["stream"])
                messages.append({"role": "assistant", "content": content})
                if stop != "tool_use":
                    print("".join(block.get("text", "") for block in content))
                    break
                results = [
                    {
                        "toolResult": {
                            "toolUseId": block["toolUse"]["toolUseId"],
                            "content": [{"json": get_weather(**block["toolUse"]["input"])}],
                        }
                    }
                    for block in content
                    if "toolUse" in block
                ]
                messages.append({"role": "user", "content": results})
        print(f"run {run.run_id}: step log in ./steptrace-logs/steps.jsonl")
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
