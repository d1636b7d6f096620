"""A fleet of real two-agent runs: the OpenAI Agents SDK, a ``triage`` agent handing off to a
``billing`` specialist, against a fake OpenAI server on 127.0.0.1, traced by steptrace.

``run_fleet(capture)`` runs one of each shape a user meets and returns their run ids by shape:
``ok`` (handoff, answer), ``recovered`` (the specialist's tool fails, the model answers anyway:
a run with errors that did not fail), ``failed`` (the tool's error propagates: a failed run),
``no_usage`` (a streamed Chat Completions answer without usage: tokens unknown).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import openai
from agents import Agent, Runner, function_tool
from agents.exceptions import UserError
from agents.models.interface import Model
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel

import sdk_fakes as F
from agents_fakes import ModelTurns, Turn, call_turn, text_turn
from steptrace.testing import Capture

HTTP = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])
TRIAGE_INSTRUCTIONS = "Route the customer to the right specialist."
BILLING_INSTRUCTIONS = (
    "You handle refunds. Look the invoice up before answering. "
    "Refunds API key: sk-proj-T3stKeyT3stKeyT3stKeyT3stKeyT3stKey0123"  # a secret the log must not hold
)


@function_tool
def lookup_invoice(invoice: str) -> str:
    """The invoice's amount; an unknown invoice is an error the model sees."""
    if invoice == "INV-0":
        raise ValueError("no such invoice INV-0")
    return f"{invoice}: 42.00 EUR, paid"


@function_tool(failure_error_function=None)
def refund(invoice: str) -> str:
    """Refund an invoice; its errors propagate and stop the run."""
    raise PermissionError(f"refunds of {invoice} need a supervisor")


REFUND_LINE = next(
    number
    for number, line in enumerate(Path(__file__).read_text().splitlines(), 1)
    if line.strip().startswith("raise PermissionError")
)
"""The line of ``refund``'s raise: where debug and view must say the failure was raised."""


def _model(api: str, server: F.FakeServer) -> tuple[Model, openai.AsyncOpenAI]:
    http_client = openai.DefaultAsyncHttpxClient(limits=HTTP.Limits(max_keepalive_connections=0))
    client = openai.AsyncOpenAI(
        base_url=server.url("/v1"), api_key=F.API_KEY, max_retries=0, http_client=http_client
    )
    model: Model = (
        OpenAIResponsesModel("gpt-4.1", client)
        if api == "responses"
        else OpenAIChatCompletionsModel("gpt-4o", client)
    )
    return model, client


SHAPES: dict[str, tuple[str, list[Turn]]] = {
    "ok": (
        "responses",
        [call_turn("transfer_to_billing"), call_turn("lookup_invoice", '{"invoice": "INV-7"}', "call_7"),
         text_turn("Refund of 42.00 EUR issued.")],
    ),
    "recovered": (
        "responses",
        [call_turn("transfer_to_billing"), call_turn("lookup_invoice", '{"invoice": "INV-0"}', "call_0"),
         text_turn("I could not find that invoice.")],
    ),
    "failed": (
        "responses",
        [call_turn("transfer_to_billing"), call_turn("refund", '{"invoice": "INV-7"}', "call_r")],
    ),
    "no_usage": (
        "chat",
        [Turn(call=("call_1", "transfer_to_billing", "{}"), usage=False),
         Turn(text="Refund issued.", usage=False)],
    ),
}  # fmt: skip


async def _one(shape: str) -> Any:
    api, turns = SHAPES[shape]
    script = ModelTurns(*[Turn(t.text, t.call, t.usage) for t in turns])
    with F.FakeServer(script) as server:
        model, client = _model(api, server)
        try:
            billing = Agent(
                name="billing", instructions=BILLING_INSTRUCTIONS, tools=[lookup_invoice, refund], model=model
            )
            triage = Agent(name="triage", instructions=TRIAGE_INSTRUCTIONS, handoffs=[billing], model=model)
            if shape == "no_usage":
                streamed = Runner.run_streamed(triage, "I want a refund for INV-7")
                async for _event in streamed.stream_events():
                    pass
                return streamed.final_output
            try:
                return (await Runner.run(triage, "I want a refund for INV-7")).final_output
            except UserError:  # the SDK wraps the tool's PermissionError
                return None
        finally:
            await client.close()


def run_fleet(
    capture: Capture, shapes: tuple[str, ...] = tuple(SHAPES), *, capture_content: bool = True
) -> dict[str, str]:
    """Run each shape once (content capture on unless told); their run ids by shape, in order."""
    capture.configure(capture_content=capture_content)
    ids: dict[str, str] = {}
    for shape in shapes:
        before = {r["run_id"] for r in capture.records if r["type"] == "run"}
        asyncio.run(_one(shape))
        (new,) = {r["run_id"] for r in capture.records if r["type"] == "run"} - before
        ids[shape] = new
    return ids
