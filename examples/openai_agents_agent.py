"""An OpenAI Agents SDK agent with a handoff and a tool, traced by steptrace; runs offline.

    python examples/openai_agents_agent.py

A ``triage`` agent hands off to a ``weather`` agent, which calls its ``get_weather`` tool and
answers. The model is the SDK's own Responses model, pointed at a fake OpenAI server on
127.0.0.1 (started below). The agent code is unchanged: steptrace adds two lines. The step log
lands in ./steptrace-logs/steps.jsonl: ``steptrace summary`` and ``steptrace debug`` read it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesModel

import steptrace


def response(output: list[dict[str, Any]]) -> dict[str, Any]:
    """A Responses API ``response`` object with ``output`` items and usage."""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": "gpt-4.1",
        "status": "completed",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 60,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 15,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 75,
        },
    }


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": f"fc_{call_id}", "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}  # fmt: skip


def reply_to(body: dict[str, Any]) -> dict[str, Any]:
    """Triage hands off; the weather agent calls get_weather, then answers with its result."""
    tools = {tool.get("name") for tool in body.get("tools", [])}
    items = body["input"] if isinstance(body["input"], list) else []
    if "transfer_to_weather" in tools:
        return response([function_call("call_handoff", "transfer_to_weather", "{}")])
    results = [item["output"] for item in items if item.get("type") == "function_call_output"]
    if len(results) < 2:  # the handoff's output only: the weather tool has not run yet
        return response([function_call("call_weather", "get_weather", '{"city": "Paris"}')])
    text = f"In Paris: {results[-1]}."
    return response([{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]}])  # fmt: skip


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


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18°C and sunny in {city}"


def main() -> None:
    server = fake_openai_server()
    telemetry = steptrace.configure(service_name="agents-sdk-agent")  # 1. configure
    steptrace.instrument_openai_agents()  # 2. instrument the Agents SDK
    set_tracing_disabled(True)  # offline: no OpenAI key for the SDK's own traces (steptrace works either way)

    client = openai.AsyncOpenAI(api_key="sk-offline", base_url=f"http://127.0.0.1:{server.server_port}/v1")
    model = OpenAIResponsesModel("gpt-4.1", client)
    weather = Agent(name="weather", instructions="Answer with the weather.", tools=[get_weather], model=model)
    triage = Agent(name="triage", instructions="Route the question.", handoffs=[weather], model=model)

    result = Runner.run_sync(triage, "What's the weather in Paris?")
    print(result.final_output)
    for record in steptrace.read_steps("steptrace-logs/steps.jsonl"):
        if record["type"] == "agent_step":
            handoff = f" -> handoff to {record['handoff_to']}" if record["handoff_to"] else ""
            print(f"step {record['agent_step']}: agent {record['agent']}{handoff}")
        elif record["type"] == "run":
            print(f"run {record['run_id']}: {record['stop_reason']}, {record['steps']} steps, "
                  f"{record['input_tokens']}+{record['output_tokens']} tokens")  # fmt: skip
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
