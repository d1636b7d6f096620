"""A model call read as a conversation: its system instructions, input and output messages as
turns (system / user / assistant / tool), tool calls with their arguments and ids, and each tool
result matched to the call it answers by call id. ``replay --full`` and ``view`` show it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class Item:
    """One part of a turn: ``text``, ``reasoning``, ``tool_call`` (``name``, ``call_id``,
    ``text`` = the arguments), ``tool_result`` (``call_id``, the ``name`` of the call it answers,
    ``text`` = the result) or ``other`` (a part of another kind, as JSON)."""

    kind: str
    text: str
    name: str | None = None
    call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "name": self.name, "call_id": self.call_id}


@dataclass(frozen=True)
class Turn:
    role: str
    items: list[Item] = field(default_factory=list)
    output: bool = False
    """A turn of the model's answer (the call's output), not of what it was sent."""

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "output": self.output, "items": [i.to_dict() for i in self.items]}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _items(parts: Any, names: dict[str, str]) -> list[Item]:
    if isinstance(parts, str):
        return [Item("text", parts)]
    if not isinstance(parts, list):
        return [Item("other", _text(parts))] if parts is not None else []
    out: list[Item] = []
    for part in parts:
        if not isinstance(part, dict):
            out.append(Item("text" if isinstance(part, str) else "other", _text(part)))
            continue
        kind = part.get("type")
        call_id = part.get("id") if isinstance(part.get("id"), str) else None
        if kind == "text":
            out.append(Item("text", _text(part.get("content"))))
        elif kind == "reasoning":
            out.append(Item("reasoning", _text(part.get("content"))))
        elif kind == "tool_call":
            name = _text(part.get("name"))
            if call_id is not None:
                names[call_id] = name
            out.append(Item("tool_call", _text(part.get("arguments", "")), name, call_id))
        elif kind == "tool_call_response":
            answered = names.get(call_id) if call_id is not None else None
            if answered is None and isinstance(part.get("name"), str):  # a legacy function result
                answered = part["name"]
            out.append(Item("tool_result", _text(part.get("response")), answered, call_id))
        else:
            out.append(Item("other", _text(part)))
    return out


def transcript(record: Record) -> list[Turn] | None:
    """The call's turns, or None when the record holds no captured messages (capture off, or a
    span that is not a model call)."""
    if record.get("type") != "llm_call":
        return None
    system, given, answer = record.get("system_instructions"), record.get("input"), record.get("output")
    if system is None and given is None and answer is None:
        return None
    names: dict[str, str] = {}
    turns: list[Turn] = []
    if system is not None:
        turns.append(Turn("system", _items(system, names)))
    for messages, output in ((given, False), (answer, True)):
        if messages is None:
            continue
        if not isinstance(messages, list):
            turns.append(Turn("assistant" if output else "user", _items(messages, names), output))
            continue
        for message in messages:
            if isinstance(message, dict) and ("parts" in message or "role" in message):
                role = _text(message.get("role") or ("assistant" if output else "user"))
                turns.append(Turn(role, _items(message.get("parts", message.get("content")), names), output))
            else:
                turns.append(Turn("assistant" if output else "user", _items(message, names), output))
    return turns


def item_line(item: Item) -> str:
    """One item as a line of text: ``→ lookup_invoice({"invoice": "INV-7"}) [call_7]``."""
    if item.kind == "tool_call":
        return f"→ {item.name}({item.text}) [{item.call_id or 'no id'}]"
    if item.kind == "tool_result":
        return f"← {item.name or 'tool'} [{item.call_id or 'no id'}]: {item.text}"
    if item.kind == "reasoning":
        return f"(thinking) {item.text}"
    return item.text
