"""A Gemini chat agent with automatic function calling, traced by steptrace; runs offline.

    python examples/google_genai_agent.py

A fake Gemini API on 127.0.0.1 (started below) asks for ``get_weather`` first, then answers; the
SDK calls the Python function itself between the two requests. A second, streamed question
follows. Each request to the model is its own llm_request span (three here), the function its
tool_execution span between them.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google import genai
from google.genai import types

import steptrace

USAGE = {"promptTokenCount": 40, "candidatesTokenCount": 12, "totalTokenCount": 52}


def reply_for(contents: list[dict[str, Any]]) -> dict[str, Any]:
    """What the fake model says: a function call for a new question, an answer after its result."""
    last_parts = contents[-1]["parts"]
    if any("functionResponse" in part for part in last_parts):
        result = last_parts[0]["functionResponse"]["response"]["result"]
        parts: list[dict[str, Any]] = [{"text": f"It is {result['celsius']}°C in {result['city']}."}]
    elif "tomorrow" in last_parts[0].get("text", ""):
        parts = [{"text": "Tomorrow looks much the same."}]
    else:
        parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-example-001",
    }


def fake_gemini_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            reply = reply_for(body["contents"])
            if "streamGenerateContent" in self.path:  # server-sent events, one chunk per word
                words = reply["candidates"][0]["content"]["parts"][0]["text"].split(" ")
                chunks = [
                    {"candidates": [{"content": {"role": "model", "parts": [{"text": w + " "}]}, "index": 0}]}
                    for w in words[:-1]
                ]
                last = dict(reply)
                last["candidates"] = [dict(reply["candidates"][0])]
                last["candidates"][0]["content"] = {"role": "model", "parts": [{"text": words[-1]}]}
                data = b"".join(f"data: {json.dumps(c)}\r\n\r\n".encode() for c in [*chunks, last])
                kind = "text/event-stream"
            else:
                data, kind = json.dumps(reply).encode(), "application/json"
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@steptrace.tool
def get_weather(city: str) -> dict[str, Any]:
    """The current weather in a city."""
    return {"city": city, "celsius": 18}


def main() -> None:
    server = fake_gemini_server()
    telemetry = steptrace.configure(service_name="gemini-agent")  # 1. configure
    steptrace.instrument_google_genai()  # 2. instrument the SDK
    client = genai.Client(
        api_key="offline-key", http_options={"base_url": f"http://127.0.0.1:{server.server_port}"}
    )
    chat = client.chats.create(
        model="gemini-2.5-flash",
        config=types.GenerateContentConfig(tools=[get_weather], temperature=0.2),
    )
    with steptrace.agent_run(agent="weather-bot") as run:  # 3. mark the run (and steps)
        with steptrace.agent_step():
            print(chat.send_message("Weather in Paris?").text)
        with steptrace.agent_step():
            print("".join(chunk.text or "" for chunk in chat.send_message_stream("And tomorrow?")))
        print(f"run {run.run_id}: step log in ./steptrace-logs/steps.jsonl")
    client.close()
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
