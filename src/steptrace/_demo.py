"""The offline quickstart agent behind ``steptrace demo``: a scripted model, two tools, one tool
failure the agent recovers from, ending with ``end_turn``. Shipped in the package so the demo
works from an installed wheel; ``examples/quickstart.py`` runs it from a checkout.

    steptrace demo                  # or: python -m steptrace._demo, python examples/quickstart.py

Writes ./steptrace-logs/steps.jsonl and prints the run's summary. Set OTEL_EXPORTER_OTLP_ENDPOINT
to also send the traces to a collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import steptrace

RELEASE = "v1.0.0"

# The scripted model: what it answers at each turn, as an Anthropic-shaped message.
_SCRIPT: list[dict[str, Any]] = [
    {"tool": ("search_documents", {"query": "Q3 revenue"}), "tokens": (412, 38)},
    {"tool": ("convert_currency", {"amount": 4.2, "currency": "EURO"}), "tokens": (655, 41)},
    {"tool": ("convert_currency", {"amount": 4.2, "currency": "EUR"}), "tokens": (731, 40)},
    {"text": "Q3 revenue was $4.2M (about EUR 3.9M), up 12% on Q2.", "tokens": (802, 27)},
]


@steptrace.llm_request(provider="scripted")
def call_model(messages: list[dict[str, Any]], turn: int) -> dict[str, Any]:
    """Stands in for a model API call; steptrace reads usage and stop reason from the reply."""
    time.sleep(0.02)
    script = _SCRIPT[turn]
    input_tokens, output_tokens = script["tokens"]
    if "tool" in script:
        name, arguments = script["tool"]
        content = [{"type": "tool_use", "id": f"toolu_{turn:02d}", "name": name, "input": arguments}]
        stop_reason = "tool_use"
    else:
        content = [{"type": "text", "text": script["text"]}]
        stop_reason = "end_turn"
    return {
        "type": "message",
        "id": f"msg_{turn:02d}",
        "model": "scripted-model-1",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


@steptrace.tool
def search_documents(query: str) -> dict[str, Any]:
    """Looks the question up in the (canned) document store."""
    time.sleep(0.01)
    return {"hits": [{"doc": "q3-report.pdf", "text": "Q3 revenue: $4.2M, up 12% on Q2."}]}


_RATES = {"EUR": 0.92, "GBP": 0.79}


@steptrace.tool
def convert_currency(amount: float, currency: str) -> dict[str, Any]:
    """Converts USD millions; fails on an unknown currency code, as real tools do."""
    time.sleep(0.005)
    if currency not in _RATES:
        raise ValueError(f"unknown currency code {currency!r}; expected one of {sorted(_RATES)}")
    return {"amount": round(amount * _RATES[currency], 2), "currency": currency}


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "search_documents": search_documents,
    "convert_currency": convert_currency,
}


def run_agent(question: str, max_steps: int = 8) -> str:
    """The agent loop: ask the model, run the tools it asks for, stop on ``end_turn``."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    with steptrace.agent_run(agent="quickstart-researcher", release=RELEASE) as run:
        for turn in range(max_steps):
            with steptrace.agent_step() as step:
                reply = call_model(messages, turn)
                messages.append({"role": "assistant", "content": reply["content"]})
                if reply["stop_reason"] == "end_turn":
                    step.stop_reason = "end_turn"
                    return str(reply["content"][0]["text"])
                for block in reply["content"]:
                    if block["type"] != "tool_use":
                        continue
                    try:
                        result: Any = TOOLS[block["name"]](**block["input"])
                    except ValueError as exc:  # the model sees the error and corrects itself
                        result = {"error": str(exc)}
                    messages.append({"role": "user", "content": [{"type": "tool_result", "content": result}]})
        run.stop_reason = "max_steps"
        return "I could not finish within the step limit."


def main() -> None:
    telemetry = steptrace.configure(service_name="quickstart")
    answer = run_agent("What was our Q3 revenue, in euros?")
    telemetry.force_flush()
    print(f"answer: {answer}\n")
    log = telemetry.jsonl_path
    if log is None:
        print("no JSONL step log configured (STEPTRACE_JSONL_PATH or no OTLP endpoint enables it)")
        return
    from steptrace.analysis import load, summarize

    runs = load(log).runs(order_by="started")
    if runs:
        summary = summarize(runs[-1])
        for key, value in summary.to_dict().items():
            shown = f"{value:,.1f}" if isinstance(value, float) else value
            print(f"  {key:<18} {shown}")
    print(f"\nstep log: {log}")
    print("next: steptrace runs | steptrace debug <run_id> | steptrace view <run_id> -o run.html")


if __name__ == "__main__":
    main()
