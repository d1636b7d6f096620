"""An OpenAI tool-calling agent, traced by steptrace with three added lines; runs offline.

    python examples/openai_agent.py

A fake OpenAI server on 127.0.0.1 (started below) first asks for the ``get_weather`` tool, then
answers. The step log lands in ./steptrace-logs/steps.jsonl: ``steptrace summary`` reads it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai

import steptrace


def fake_openai_server() -> ThreadingHTTPServer:
    """Replies to /v1/chat/completions: a tool call first, a final answer once a tool replied."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            answered = any(m["role"] == "tool" for m in body["messages"])
            message: dict[str, Any] = {"role": "assistant", "content": "It is 18°C in Paris."}
            finish = "stop"
            if not answered:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                }
                finish = "tool_calls"
            data = json.dumps(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "gpt-4o",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@steptrace.tool
def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "celsius": 18}


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def main() -> None:
    server = fake_openai_server()
    telemetry = steptrace.configure(service_name="openai-agent")  # 1. configure
    steptrace.instrument_openai()  # 2. instrument the SDK
    client = openai.OpenAI(api_key="sk-offline", base_url=f"http://127.0.0.1:{server.server_port}/v1")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    with steptrace.agent_run(agent="weather-bot") as run:  # 3. mark the run (and steps)
        for _ in range(5):
            with steptrace.agent_step():
                reply = client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
                message = reply.choices[0].message
                messages.append(message.model_dump(exclude_none=True))
                if not message.tool_calls:
                    print(message.content)
                    break
                for call in message.tool_calls:
                    result = get_weather(**json.loads(call.function.arguments))
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        print(f"run {run.run_id}: step log in ./steptrace-logs/steps.jsonl")
    client.close()
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
