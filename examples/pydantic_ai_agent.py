"""A Pydantic AI agent with a tool, traced by steptrace; runs offline.

    python examples/pydantic_ai_agent.py

An ``Agent`` on Pydantic AI's ``OpenAIChatModel``, pointed at a fake OpenAI server on 127.0.0.1
(started below), with a ``get_weather`` tool. The agent code is unchanged: steptrace adds two
lines. The step log lands in ./steptrace-logs/steps.jsonl: ``steptrace summary`` and
``steptrace debug`` read it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import steptrace


def completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    """A chat completion with usage."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 60, "completion_tokens": 15, "total_tokens": 75}}  # fmt: skip


def reply_to(body: dict[str, Any]) -> dict[str, Any]:
    """The model calls get_weather, then answers with its result."""
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if not results:
        call = {"id": "call_weather", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
        return completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
    return completion({"role": "assistant", "content": f"In Paris: {results[-1]}."}, "stop")


def fake_openai_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            data = json.dumps(reply_to(body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    server = fake_openai_server()
    telemetry = steptrace.configure(service_name="pydantic-ai-agent")  # 1. configure
    steptrace.instrument_pydantic_ai()  # 2. instrument Pydantic AI

    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="sk-offline")
    agent = Agent(OpenAIChatModel("gpt-4o", provider=provider), name="weather")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"18°C and sunny in {city}"

    result = agent.run_sync("What's the weather in Paris?")
    print(result.output)
    for record in steptrace.read_steps("steptrace-logs/steps.jsonl"):
        if record["type"] == "llm_call":
            print(f"step {record['agent_step']}: model {record['model']} -> {record['stop_reason']}")
        elif record["type"] == "tool_call":
            print(f"step {record['agent_step']}: tool {record['tool']} ({record['tool_call_id']})")
        elif record["type"] == "run":
            print(f"run {record['run_id']}: {record['stop_reason']}, {record['steps']} steps, "
                  f"{record['input_tokens']}+{record['output_tokens']} tokens")  # fmt: skip
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
