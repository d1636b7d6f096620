"""A small agent for the rerun tests: a scripted model (a decorated ``llm_request``) and tools.

It searches twice for the same thing, then asks ``convert_currency`` for euros; the unfixed tool
raises ``ValueError`` and the model asks again and again until ``max_steps``. With the tool fixed
the model answers and the run ends with ``end_turn``. Run as a script (``steptrace rerun ... --
python tests/rerun_agents.py``) it configures steptrace from the environment, like a user's agent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import urllib.request
from typing import Any

import steptrace

CALLS: dict[str, int] = {"model": 0, "search": 0, "convert_currency": 0}
FIXED = threading.Event()
CRASH_AT_STEP: list[int] = []


def reset(fixed: bool = False) -> None:
    for key in CALLS:
        CALLS[key] = 0
    if fixed:
        FIXED.set()
    else:
        FIXED.clear()


@steptrace.tool
def search(query: str) -> dict[str, Any]:
    CALLS["search"] += 1
    return {"query": query, "hits": ["Q3 revenue: 1.2M USD"]}


@steptrace.tool
def convert_currency(amount: float, to: str) -> dict[str, Any]:
    CALLS["convert_currency"] += 1
    if not FIXED.is_set():
        raise ValueError(f"no exchange rate for {to}")
    return {"amount": round(amount * 0.92, 2), "currency": to}


@steptrace.llm_request(model="scripted-1", provider="scripted")
def model(messages: list[Any]) -> dict[str, Any]:
    CALLS["model"] += 1
    url = os.environ.get("RERUN_AGENT_MODEL_URL")  # the model "over the network": a closed one in CI
    if url:
        urllib.request.urlopen(url, data=json.dumps(messages).encode(), timeout=5).close()
    last = messages[-1]
    if isinstance(last, dict) and "currency" in last:
        return {"answer": f"{last['amount']} {last['currency']}", "stop_reason": "end_turn"}
    searches = sum(1 for m in messages if isinstance(m, dict) and "hits" in m)
    if searches < 2:
        return {"tool": "search", "arguments": {"query": "Q3 revenue"}}
    return {"tool": "convert_currency", "arguments": {"amount": 1_200_000.0, "to": "EUR"}}


TOOLS = {"search": search, "convert_currency": convert_currency}


def run_agent(question: str, max_steps: int = 6) -> str | None:
    with steptrace.agent_run(agent="accountant") as run:
        messages: list[Any] = [question]
        for number in range(1, max_steps + 1):
            with steptrace.agent_step():
                if CRASH_AT_STEP and number == CRASH_AT_STEP[0]:
                    os.kill(os.getpid(), signal.SIGKILL)
                reply = model(messages)
                if "answer" in reply:
                    return str(reply["answer"])
                try:
                    messages.append(TOOLS[reply["tool"]](**reply["arguments"]))
                except ValueError as exc:
                    messages.append(f"error: {exc}")
        run.stop_reason = "max_steps"
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", action="store_true")
    parser.add_argument("--crash-at", type=int)
    parser.add_argument("--no-run", action="store_true", help="configure, start no agent_run")
    parser.add_argument("--question", default="What was our Q3 revenue, in euros?")
    options = parser.parse_args()
    steptrace.configure("rerun-agent")
    if options.no_run:
        return
    reset(options.fixed)
    if options.crash_at:
        CRASH_AT_STEP.append(options.crash_at)
    print("answer:", run_agent(options.question))
    print("calls:", CALLS)


if __name__ == "__main__":
    main()
