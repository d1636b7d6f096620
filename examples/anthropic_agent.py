"""An Anthropic tool-calling agent using ``messages.stream``, traced by steptrace; runs offline.

    python examples/anthropic_agent.py

A fake Anthropic server on 127.0.0.1 (started below) streams a ``get_weather`` tool call first,
then the answer. Each streamed call gets an llm_request span with time to first chunk.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic

import steptrace


def events_for(answered: bool) -> list[dict[str, Any]]:
    usage = {"input_tokens": 50, "output_tokens": 1}
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-example",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    if answered:
        block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": t} for t in ("It is ", "18°C ", "in Paris.")]
        stop = "end_turn"
    else:
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ('{"city"', ': "Paris"}')]
        stop = "tool_use"
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": block},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
        {"type": "message_stop"},
    ]


def fake_anthropic_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            answered = any(
                isinstance(m["content"], list) and m["content"][0].get("type") == "tool_result"
                for m in body["messages"]
            )
            data = b"".join(
                f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events_for(answered)
            )
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@steptrace.tool
def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "celsius": 18}


CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [{"name": "get_weather", "input_schema": CITY_SCHEMA}]


def main() -> None:
    server = fake_anthropic_server()
    telemetry = steptrace.configure(service_name="anthropic-agent")  # 1. configure
    steptrace.instrument_anthropic()  # 2. instrument the SDK
    client = anthropic.Anthropic(api_key="sk-offline", base_url=f"http://127.0.0.1:{server.server_port}")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    with steptrace.agent_run(agent="weather-bot") as run:  # 3. mark the run (and steps)
        for _ in range(5):
            with steptrace.agent_step():
                with client.messages.stream(
                    model="claude-example", max_tokens=512, messages=messages, tools=TOOLS
                ) as stream:
                    message = stream.get_final_message()
                messages.append({"role": "assistant", "content": [b.model_dump() for b in message.content]})
                calls = [b for b in message.content if b.type == "tool_use"]
                if not calls:
                    print("".join(b.text for b in message.content if b.type == "text"))
                    break
                results = [
                    {
                        "type": "tool_result",
                        "tool_use_id": c.id,
                        "content": json.dumps(get_weather(**c.input)),
                    }
                    for c in calls
                ]
                messages.append({"role": "user", "content": results})
        print(f"run {run.run_id}: step log in ./steptrace-logs/steps.jsonl")
    client.close()
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
