"""Canned Gemini API bodies for the real ``google-genai`` SDK, served by ``sdk_fakes.FakeServer``.

The SDK is pointed at the fake with ``http_options={"base_url": server.url()}``; it speaks the
REST API's JSON (camelCase) and, for streams, server-sent events of whole response chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from google import genai

import sdk_fakes as F

T = TypeVar("T")
API_KEY = "gemini-test-key"
MODEL_VERSION = "gemini-2.5-flash-001"


def usage(
    prompt: int = 12,
    candidates: int = 5,
    *,
    cached: int | None = None,
    thoughts: int | None = None,
    tool_use_prompt: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates}
    total = prompt + candidates
    if cached is not None:
        body["cachedContentTokenCount"] = cached  # part of promptTokenCount, as the API reports it
    if thoughts is not None:
        body["thoughtsTokenCount"] = thoughts
        total += thoughts
    if tool_use_prompt is not None:
        body["toolUsePromptTokenCount"] = tool_use_prompt
        total += tool_use_prompt
    body["totalTokenCount"] = total
    return body


def function_call_part(call_id: str | None, name: str, args: dict[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": args}
    if call_id is not None:
        call["id"] = call_id
    return {"functionCall": call}


def response(
    text: str | None = "Paris.",
    *,
    function_calls: Sequence[tuple[str | None, str, dict[str, Any]]] = (),
    thought: str | None = None,
    finish_reason: str | None = "STOP",
    usage_metadata: dict[str, Any] | None = None,
    response_id: str = "resp-1",
    candidates: int = 1,
) -> dict[str, Any]:
    """A generateContent response; ``function_calls`` are (id, name, args)."""
    parts: list[dict[str, Any]] = []
    if thought is not None:
        parts.append({"text": thought, "thought": True})
    if text is not None:
        parts.append({"text": text})
    parts += [function_call_part(*call) for call in function_calls]
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    return {
        "candidates": [dict(candidate, index=i) for i in range(candidates)],
        "usageMetadata": usage_metadata if usage_metadata is not None else usage(),
        "modelVersion": MODEL_VERSION,
        "responseId": response_id,
    }


def safety_blocked_candidate() -> dict[str, Any]:
    """The answer was stopped by the safety filters: a candidate with no content."""
    return {
        "candidates": [
            {
                "finishReason": "SAFETY",
                "index": 0,
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                ],
            }
        ],
        "usageMetadata": usage(12, 0),
        "modelVersion": MODEL_VERSION,
        "responseId": "resp-blocked",
    }


def prompt_blocked(reason: str = "PROHIBITED_CONTENT") -> dict[str, Any]:
    """The prompt itself was blocked: no candidates, the reason in promptFeedback."""
    return {
        "promptFeedback": {"blockReason": reason},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        "modelVersion": MODEL_VERSION,
        "responseId": "resp-prompt-blocked",
    }


def chunks(
    pieces: Sequence[str],
    *,
    function_call: tuple[str | None, str, dict[str, Any]] | None = None,
    finish_reason: str = "STOP",
    usage_metadata: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """streamGenerateContent chunks: one per text piece, then a function call, then the finish
    reason and usage on the last chunk (as the API sends them)."""
    body: list[dict[str, Any]] = []
    for piece in pieces:
        body.append(
            {
                "candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
                "modelVersion": MODEL_VERSION,
                "responseId": "resp-stream",
            }
        )
    last_parts = [function_call_part(*function_call)] if function_call is not None else []
    body.append(
        {
            "candidates": [
                {"content": {"role": "model", "parts": last_parts}, "finishReason": finish_reason, "index": 0}
            ],
            "usageMetadata": usage_metadata if usage_metadata is not None else usage(12, 50),
            "modelVersion": MODEL_VERSION,
            "responseId": "resp-stream",
        }
    )
    return body


def sse(events: Sequence[dict[str, Any]]) -> list[bytes]:
    return F.sse_chunks(events, named=False, done=False)


def error(status: int, message: str = "boom") -> F.Canned:
    """A Google API error body (``google.genai.errors.ClientError``/``ServerError``)."""
    name = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}.get(status, "INVALID_ARGUMENT")
    return F.json_reply({"error": {"code": status, "message": message, "status": name}}, status=status)


def client(server: F.FakeServer, *, vertexai: bool = False) -> genai.Client:
    """A real client talking to ``server`` (Vertex AI in express mode: an API key, no project).

    The server keeps it alive: a ``genai.Client`` closes its HTTP client when it is collected,
    even while its ``models`` are still in use (``client(server).models.generate_content(...)``).
    """
    made = genai.Client(vertexai=vertexai, api_key=API_KEY, http_options={"base_url": server.url()})
    vars(server).setdefault("clients", []).append(made)
    return made


def run_async(server: F.FakeServer, coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)``, closing the async side of ``server``'s clients in that loop
    (their connections belong to it: left open, they warn when collected during a later test)."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            for made in vars(server).get("clients", ()):
                await made.aio.aclose()

    return asyncio.run(main())
