"""A fake OpenAI model server for the OpenAI Agents SDK: model turns answered by request shape.

``ModelTurns`` is a ``sdk_fakes.Script`` whose replies are chosen per request: the Responses or
the Chat Completions shape (whichever endpoint the SDK's model asked), streamed when the request
asks for a stream. Serve it with ``sdk_fakes.FakeServer`` on 127.0.0.1 and point the SDK's model
at ``server.url("/v1")``. Requests for a ``/traces/`` path (the SDK's own trace export) are
answered and kept apart, so a test can assert there were none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sdk_fakes as F


@dataclass
class Turn:
    """One model turn: a text answer, or a function call (call id, tool name, arguments JSON);
    ``usage=False``: a streamed Chat Completions reply with no usage chunk (the request did not
    ask for ``stream_options.include_usage``)."""

    text: str = ""
    call: tuple[str, str, str] | None = None
    usage: bool = True


def text_turn(text: str) -> Turn:
    return Turn(text=text)


def call_turn(name: str, arguments: str = "{}", call_id: str = "call_1") -> Turn:
    return Turn(call=(call_id, name, arguments))


def reply_for(turn: Turn, path: str, stream: bool) -> F.Canned:
    """``turn`` as the endpoint at ``path`` answers it, streamed or not."""
    if path.endswith("/chat/completions"):
        finish = "tool_calls" if turn.call else "stop"
        pieces = [turn.text] if turn.text else []
        if stream:
            call = (turn.call[0], turn.call[1], [turn.call[2]]) if turn.call else None
            usage = (12, 50) if turn.usage else None
            chunks = F.chat_chunks(pieces, tool_call=call, finish_reason=finish, usage=usage)
            return F.sse_reply(F.openai_sse(chunks))
        calls = [turn.call] if turn.call else []
        return F.json_reply(F.chat_completion(turn.text or None, tool_calls=calls, finish_reason=finish))
    if stream:
        pieces = [turn.text] if turn.text else []
        return F.sse_reply(F.responses_sse(F.response_events(pieces, function_call=turn.call)))
    return F.json_reply(F.response_object(turn.text, function_call=turn.call))


class _TurnReplies:
    """Stands in for ``Script.replies``: ``FakeServer`` records a request, then pops a reply;
    this pop answers the request just recorded."""

    def __init__(self, script: ModelTurns) -> None:
        self.script = script

    def pop(self, index: int = -1) -> F.Canned:
        return self.script.reply_to(self.script.requests[-1])

    def __len__(self) -> int:
        return len(self.script.turns)


class ModelTurns(F.Script):
    """Model turns in order; the last one repeats when ``repeat_last`` (an agent that loops)."""

    def __init__(self, *turns: Turn, repeat_last: bool = False) -> None:
        super().__init__()
        self.turns = list(turns)
        self.repeat_last = repeat_last
        self.repeats = 0
        self.trace_requests: list[Any] = []
        self.replies = _TurnReplies(self)  # type: ignore[assignment]

    @property
    def model_requests(self) -> list[Any]:
        return [r for r in self.requests if "/traces/" not in r.url.path]

    @property
    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def reply_to(self, request: Any) -> F.Canned:
        path = request.url.path
        if "/traces/" in path:
            self.trace_requests.append(request)
            return F.json_reply({})
        if self.repeat_last and len(self.turns) == 1:
            turn = self.turns[0]
            self.repeats += 1
            if turn.call is not None:  # the SDK runs one call id once: each repeat is a new call
                turn = Turn(turn.text, (f"{turn.call[0]}_{self.repeats}", *turn.call[1:]), turn.usage)
        else:
            turn = self.turns.pop(0)
        stream = json.loads(request.content or b"{}").get("stream") is True
        return reply_for(turn, path, stream)
