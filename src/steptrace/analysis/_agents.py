"""Who acted in a run: the agent of each step and the handoffs between agents, as every view
(replay, view, summary, debug, the report's waterfalls) names them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Record = dict[str, Any]


def handoff_of(record: Record) -> tuple[str, str] | None:
    """(from agent, to agent) when this ``agent_step`` record handed the conversation over."""
    to = record.get("handoff_to")
    if record.get("type") != "agent_step" or type(to) is not str or not to:
        return None
    agent = record.get("agent")
    return (agent if type(agent) is str else "?"), to


def handoff_text(record: Record) -> str | None:
    """``triage → billing`` for an ``agent_step`` record that handed off, else None."""
    handoff = handoff_of(record)
    return None if handoff is None else f"{handoff[0]} → {handoff[1]}"


def agents_line(agents: Sequence[str], records: Sequence[Record] = ()) -> str:
    """``triage → billing (handoff at step 1)``: the agents that acted, in order, and where the
    conversation was handed over; ``-`` when no agent is known."""
    if not agents:
        return "-"
    steps = [
        str(record["agent_step"])
        for record in records
        if handoff_of(record) and type(record.get("agent_step")) is int
    ]
    text = " → ".join(agents)
    if steps:
        text += f" (handoff{'s' if len(steps) > 1 else ''} at step {', '.join(steps)})"
    return text


def with_agent(label: str, record: Record) -> str:
    """A span's label with its agent for an ``agent_step``: ``agent_step 2 (billing)``."""
    agent = record.get("agent")
    return f"{label} ({agent})" if record.get("type") == "agent_step" and type(agent) is str else label


def parts_text(value: Any) -> str | None:
    """Message parts as the text a person reads: the parts' ``content`` joined (system
    instructions, a message), else None when they are not text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(part, dict) for part in value):
        texts = [part.get("content") for part in value]
        if all(isinstance(text, str) for text in texts):
            return "\n".join(str(text) for text in texts)
    return None
