"""Instrumentation of the ``openai`` SDK: ``chat.completions.create`` and ``responses.create``.

    steptrace.instrument_openai()          # every client
    steptrace.instrument_openai(client)    # one client instance

Sync and async, streamed or not; the ``.stream()`` helpers are covered through ``create``.
``openai`` is imported only when instrumenting, never by ``import steptrace``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from steptrace import _attributes as A
from steptrace._response import field_of
from steptrace._spans import LlmRequest
from steptrace.instrumentation._common import (
    ConfigSource,
    Endpoint,
    Observer,
    Patches,
    Request,
    SdkInstrumentor,
    async_wrapper,
    content_parts,
    message_part,
    number_param,
    stop_param,
    sync_wrapper,
    tool_call_part,
    tool_response_part,
)

__all__ = ["OpenAIInstrumentor", "instrument_openai", "uninstrument_openai"]

PROVIDER = "openai"
_now = time.perf_counter


# --- chat.completions -----------------------------------------------------------------------------
def _describe_chat(kwargs: Mapping[str, Any]) -> Request:
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, kwargs.get("temperature"))
    number_param(params, A.GEN_AI_REQUEST_TOP_P, kwargs.get("top_p"))
    max_tokens = kwargs.get("max_completion_tokens")
    if not isinstance(max_tokens, int):
        max_tokens = kwargs.get("max_tokens")
    number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, max_tokens)
    stop_param(params, kwargs.get("stop"))
    return Request(kwargs.get("model"), kwargs.get("stream") is True, params)


def _chat_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = []
    for message in kwargs.get("messages") or ():
        role = field_of(message, "role")
        content = field_of(message, "content")
        if role == "tool":
            parts = [tool_response_part(field_of(message, "tool_call_id"), content)]
        else:
            parts = content_parts(content)
            parts.extend(_tool_call_parts(message))
        messages.append({"role": role, "parts": parts})
    return messages


def _tool_call_parts(message: Any) -> list[dict[str, Any]]:
    """The tool calls of a chat message (request history or response) as message parts."""
    parts = []
    for call in field_of(message, "tool_calls") or ():
        function = field_of(call, "function")
        parts.append(
            tool_call_part(field_of(call, "id"), field_of(function, "name"), field_of(function, "arguments"))
        )
    return parts


def _chat_output(completion: Any) -> list[dict[str, Any]]:
    messages = []
    for choice in field_of(completion, "choices") or ():
        message = field_of(choice, "message")
        parts = content_parts(field_of(message, "content"))
        parts.extend(_tool_call_parts(message))
        messages.append(
            {"role": "assistant", "parts": parts, "finish_reason": field_of(choice, "finish_reason")}
        )
    return messages


class _ChatObserver(Observer):
    """Accumulates ``chat.completion.chunk`` events into what a whole completion would say."""

    __slots__ = ("finish_reasons", "last", "texts", "tool_calls", "usage")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.last: Any = None
        self.usage: Any = None
        self.finish_reasons: dict[int, str] = {}
        self.tool_calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.texts: dict[int, list[str]] = {}

    def observe(self, chunk: Any) -> None:
        self.last = chunk
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None:
                content = delta.content
                calls = delta.tool_calls
                if content or calls:
                    times = self.times
                    if times is None:
                        self.content_arrived()
                    else:
                        times.append(_now())
                    if calls:
                        self._tool_deltas(choice.index, calls)
                    if content and self.capture:
                        self.texts.setdefault(choice.index, []).append(content)
            reason = choice.finish_reason
            if reason:
                self.finish_reasons[choice.index] = reason
        usage = chunk.usage
        if usage is not None:
            self.usage = usage

    def _tool_deltas(self, choice_index: int, calls: Any) -> None:
        for call in calls:
            key = (choice_index, call.index)
            known = self.tool_calls.get(key)
            function = call.function
            if known is None:
                known = self.tool_calls[key] = {"id": call.id, "name": None, "arguments": []}
            if call.id:
                known["id"] = call.id
            if function is not None:
                if function.name:
                    known["name"] = function.name
                if function.arguments and self.capture:
                    known["arguments"].append(function.arguments)

    def finalize(self) -> None:
        handle = self.handle
        last = self.last
        indices = sorted(set(self.finish_reasons) | set(self.texts) | {k[0] for k in self.tool_calls})
        choices = []
        for index in indices:
            calls = [
                {"id": call["id"], "function": {"name": call["name"]}}
                for key, call in sorted(self.tool_calls.items())
                if key[0] == index
            ]
            choices.append(
                {"finish_reason": self.finish_reasons.get(index), "message": {"tool_calls": calls}}
            )
        if last is not None:
            handle.record_response(
                {
                    "object": "chat.completion",
                    "id": last.id,
                    "model": last.model,
                    "choices": choices,
                    "usage": self.usage,
                }
            )
        if self.usage is None:
            # No stream_options={"include_usage": True}, or the stream ended early: unknown,
            # which is not zero.
            handle.set_attribute(A.LLM_USAGE_MISSING, True)
        if self.capture:
            handle.record_output(self._output(indices))

    def _output(self, indices: list[int]) -> list[dict[str, Any]]:
        messages = []
        for index in indices:
            parts = content_parts("".join(self.texts.get(index, ())) or None)
            for key, call in sorted(self.tool_calls.items()):
                if key[0] == index:
                    parts.append(tool_call_part(call["id"], call["name"], "".join(call["arguments"])))
            messages.append(
                {
                    "role": "assistant",
                    "parts": parts,
                    "finish_reason": self.finish_reasons.get(index),
                }
            )
        return messages


CHAT = Endpoint(PROVIDER, _describe_chat, _chat_input, _ChatObserver, _chat_output)


# --- responses ------------------------------------------------------------------------------------
def _describe_responses(kwargs: Mapping[str, Any]) -> Request:
    params: dict[str, Any] = {}
    number_param(params, A.GEN_AI_REQUEST_TEMPERATURE, kwargs.get("temperature"))
    number_param(params, A.GEN_AI_REQUEST_TOP_P, kwargs.get("top_p"))
    number_param(params, A.GEN_AI_REQUEST_MAX_TOKENS, kwargs.get("max_output_tokens"))
    return Request(kwargs.get("model"), kwargs.get("stream") is True, params)


def _responses_instructions(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``instructions=`` are not part of the input items: gen_ai.system_instructions."""
    instructions = kwargs.get("instructions")
    return content_parts(instructions) if isinstance(instructions, str) else []


def _responses_input(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    items = kwargs.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "parts": content_parts(items)})
        return messages
    if not isinstance(items, (list, tuple)):
        return messages
    for item in items:
        role = field_of(item, "role")
        if role is not None:
            messages.append({"role": role, "parts": content_parts(field_of(item, "content"))})
        else:
            kind = field_of(item, "type")
            role = "tool" if kind == "function_call_output" else "assistant"
            messages.append({"role": role, "parts": [message_part(item)]})
    return messages


def _responses_output(response: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in field_of(response, "output") or ():
        if field_of(item, "type") == "message":
            parts.extend(content_parts(field_of(item, "content")))
        else:
            parts.append(message_part(item))
    reason = field_of(field_of(response, "incomplete_details"), "reason")
    finish = reason or field_of(response, "status")
    return [{"role": "assistant", "parts": parts, "finish_reason": finish}]


_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _ResponsesObserver(Observer):
    """Reads responses stream events; the terminal event carries the whole response."""

    __slots__ = ("final", "started")

    def __init__(self, handle: LlmRequest) -> None:
        super().__init__(handle)
        self.started: Any = None
        self.final: Any = None

    def observe(self, event: Any) -> None:
        kind = event.type
        if kind.endswith(".delta"):
            times = self.times
            if times is None:
                self.content_arrived()
            else:
                times.append(_now())
        elif kind in _TERMINAL_EVENTS:
            self.final = event.response
        elif kind == "response.created":
            self.started = event.response

    def finalize(self) -> None:
        handle = self.handle
        final = self.final
        if final is not None:
            handle.record_response(final)
            if self.capture:
                handle.record_output(_responses_output(final))
        elif self.started is not None:
            handle.record_usage(
                response_id=field_of(self.started, "id"),
                response_model=field_of(self.started, "model"),
            )
        if final is None or field_of(final, "usage") is None:
            handle.set_attribute(A.LLM_USAGE_MISSING, True)


RESPONSES = Endpoint(
    PROVIDER,
    _describe_responses,
    _responses_input,
    _ResponsesObserver,
    _responses_output,
    system_instructions=_responses_instructions,
)


# --- the instrumentor -----------------------------------------------------------------------------
class OpenAIInstrumentor(SdkInstrumentor):
    """Patches ``openai`` for every client::

    OpenAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "openai"
    supported: ClassVar[str] = "openai >= 1.40, < 4"
    tested_majors: ClassVar[tuple[str, ...]] = ("3",)

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from openai.resources.chat.completions import AsyncCompletions, Completions
        from openai.resources.responses import AsyncResponses, Responses

        patches.wrap(Completions, "create", sync_wrapper(source, CHAT))
        patches.wrap(AsyncCompletions, "create", async_wrapper(source, CHAT))
        patches.wrap(Responses, "create", sync_wrapper(source, RESPONSES))
        patches.wrap(AsyncResponses, "create", async_wrapper(source, RESPONSES))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        import openai

        wrapper = async_wrapper if isinstance(client, openai.AsyncOpenAI) else sync_wrapper
        patches.wrap(client.chat.completions, "create", wrapper(source, CHAT))
        patches.wrap(client.responses, "create", wrapper(source, RESPONSES))


def instrument_openai(client: Any = None) -> None:
    """Trace the ``openai`` SDK: every client, or only ``client`` (``OpenAI``/``AsyncOpenAI``).

    Each ``chat.completions.create`` and ``responses.create`` call becomes an ``llm_request``
    span with the duration, token and time-to-first-chunk histograms. Instrumenting twice is a
    logged no-op; ``uninstrument_openai`` restores the originals.
    """
    if client is None:
        OpenAIInstrumentor().instrument()
    else:
        OpenAIInstrumentor().instrument_client(client)


def uninstrument_openai(client: Any = None) -> None:
    """Undo ``instrument_openai()`` (or ``instrument_openai(client)`` for that client)."""
    if client is None:
        OpenAIInstrumentor().uninstrument()
    else:
        OpenAIInstrumentor().uninstrument_client(client)
