"""Replays other projects' VCR cassettes (responses recorded from the real APIs) through steptrace
and counts the calls it traced exactly: a measurement, not a test (it needs the cassettes).

    .venv/bin/python tests/replay_cassettes.py CASSETTE_DIR... [--show-misses]

Every 200 answer of ``api.openai.com`` (``/v1/chat/completions``, ``/v1/embeddings``,
``/v1/responses``) and ``api.anthropic.com`` (``/v1/messages``, ``?beta=true`` through
``client.beta.messages``) in the ``*.yaml`` cassettes under the folders is served by a local
server on 127.0.0.1 to the real SDK client, called with the recorded request body (a stream read to
its end). What the span says (response id and model, input and output tokens, finish reasons, the
tool calls asked for with their ids, an embedding's dimension count) is compared with what the
recorded body says, read here from the JSON or the events independently of steptrace's parsers.
A request today's SDK refuses (a parameter it no longer takes) is counted apart, as not replayed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import inspect
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import anthropic
import openai
import yaml

import sdk_fakes as F
import steptrace
from steptrace import _attributes as A
from steptrace.testing import Capture

ENDPOINTS = {
    ("api.openai.com", "/v1/chat/completions"): "chat",
    ("api.openai.com", "/v1/embeddings"): "embeddings",
    ("api.openai.com", "/v1/responses"): "responses",
    ("api.anthropic.com", "/v1/messages"): "anthropic",
}


def _body_text(body: Any) -> str | None:
    """A cassette body (vcrpy's ``string``, maybe gzip bytes, or pydantic-ai's ``parsed_body``)."""
    if isinstance(body, dict):
        body = body.get("string")
    if isinstance(body, bytes):
        with contextlib.suppress(OSError):  # not compressed
            body = gzip.decompress(body)
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else None


def interactions(path: Path) -> list[tuple[str, bool, dict[str, Any], Any]]:
    """(endpoint, beta, request body, response: a JSON value or the events' text) of each call."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:
        return []
    found = []
    for item in (data or {}).get("interactions") or ():
        request, response = item.get("request") or {}, item.get("response") or {}
        uri = str(request.get("uri", ""))
        host_path, _, query = uri.partition("://")[2].partition("?")
        host, _, rest = host_path.partition("/")
        endpoint = ENDPOINTS.get((host, "/" + rest))
        status = response.get("status") or {}
        if endpoint is None or (status.get("code") if isinstance(status, dict) else status) != 200:
            continue
        body = request.get("parsed_body")
        if body is None:
            text = _body_text(request.get("body"))
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
        if not isinstance(body, dict):
            continue
        answer: Any = response.get("parsed_body")
        if answer is None:
            answer = _body_text(response.get("body"))
            if body.get("stream") is not True and isinstance(answer, str):
                try:
                    answer = json.loads(answer)
                except ValueError:
                    continue
        found.append((endpoint, "beta=true" in query, body, answer))
    return found


# --- what the recorded body says, read independently of steptrace ---------------------------------
def _events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("data:") and line.strip() != "data: [DONE]":
            with contextlib.suppress(ValueError):
                events.append(json.loads(line[5:].strip()))
    return events


def expected_chat(answer: Any, stream: bool) -> dict[str, Any]:
    calls: list[tuple[Any, Any]] = []
    reasons: list[str] = []
    usage: Any = None
    if stream:
        first = {}
        for chunk in _events(answer):
            first = first or chunk
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or ():
                    if call.get("id"):
                        calls.append((call["function"].get("name"), call["id"]))
                if (delta.get("function_call") or {}).get("name"):
                    calls.append((delta["function_call"]["name"], None))
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
        response_id, model = first.get("id"), first.get("model")
    else:
        response_id, model, usage = answer.get("id"), answer.get("model"), answer.get("usage")
        for choice in answer.get("choices") or ():
            message = choice.get("message") or {}
            calls += [(c["function"]["name"], c.get("id")) for c in message.get("tool_calls") or ()]
            if message.get("function_call"):
                calls.append((message["function_call"]["name"], None))
            if choice.get("finish_reason"):
                reasons.append(choice["finish_reason"])
    return {
        "id": response_id,
        "model": model,
        "input_tokens": (usage or {}).get("prompt_tokens"),
        "output_tokens": (usage or {}).get("completion_tokens"),
        "finish_reasons": reasons or None,
        "tool_calls": calls or None,
    }


def expected_embeddings(answer: Any) -> dict[str, Any]:
    vector = answer["data"][0]["embedding"]
    count = len(vector) if isinstance(vector, list) else len(base64.b64decode(vector)) // 4
    return {
        "model": answer.get("model"),
        "input_tokens": (answer.get("usage") or {}).get("prompt_tokens"),
        "dimensions": count,
    }


def expected_responses(answer: Any, stream: bool) -> dict[str, Any]:
    if stream:
        final = None
        for event in _events(answer):
            if event.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                final = event["response"]
        if final is None:
            return {"skip": "no terminal event"}
        answer = final
    usage = answer.get("usage") or {}
    output = answer.get("output") or ()
    calls = [(o.get("name"), o.get("call_id")) for o in output if o.get("type") == "function_call"]
    return {
        "id": answer.get("id"),
        "model": answer.get("model"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "tool_calls": calls or None,
    }


def _anthropic_input(usage: dict[str, Any]) -> Any:
    if usage.get("input_tokens") is None:
        return None
    return (
        usage["input_tokens"]
        + (usage.get("cache_read_input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
    )


def expected_anthropic(answer: Any, stream: bool) -> dict[str, Any]:
    if stream:
        message: dict[str, Any] = {"content": []}
        usage: dict[str, Any] = {}
        for event in _events(answer):
            kind = event.get("type")
            if kind == "message_start":
                message = dict(event["message"], content=[])
                started = event["message"].get("usage") or {}
                usage.update({k: v for k, v in started.items() if v is not None})
            elif kind == "content_block_start":
                message["content"].append(event["content_block"])
            elif kind == "message_delta":
                message["stop_reason"] = event["delta"].get("stop_reason")
                usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        message["usage"] = usage
        answer = message
    usage = answer.get("usage") or {}
    calls = [
        (b.get("name"), b.get("id"))
        for b in answer.get("content") or ()
        if b.get("type") in ("tool_use", "server_tool_use")
    ]
    return {
        "id": answer.get("id"),
        "model": answer.get("model"),
        "input_tokens": _anthropic_input(usage),
        "output_tokens": usage.get("output_tokens"),
        "finish_reasons": [answer["stop_reason"]] if answer.get("stop_reason") else None,
        "tool_calls": calls or None,
    }


# --- what steptrace recorded ---------------------------------------------------------------------
def traced(attributes: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    calls = attributes.get(A.LLM_TOOL_CALLS)
    finish = attributes.get(A.GEN_AI_RESPONSE_FINISH_REASONS)
    found = {
        "id": attributes.get(A.GEN_AI_RESPONSE_ID),
        "model": attributes.get(A.GEN_AI_RESPONSE_MODEL),
        "input_tokens": attributes.get(A.GEN_AI_USAGE_INPUT_TOKENS),
        "output_tokens": attributes.get(A.GEN_AI_USAGE_OUTPUT_TOKENS),
        "finish_reasons": list(finish) if finish else None,
        "tool_calls": [(c["name"], c["id"]) for c in json.loads(calls)] if calls else None,
        "dimensions": attributes.get(A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT),
    }
    return {key: found[key] for key in keys}


def _split_kwargs(method: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The body as the method's keyword arguments; what it does not name goes in ``extra_body``."""
    names = set(inspect.signature(method).parameters)
    kwargs = {key: value for key, value in body.items() if key in names}
    extra = {key: value for key, value in body.items() if key not in names}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def replay(endpoint: str, beta: bool, body: dict[str, Any], answer: Any, base: str) -> None:
    stream = body.get("stream") is True
    if endpoint == "anthropic":
        client: Any = anthropic.Anthropic(api_key=F.API_KEY, base_url=base, max_retries=0)
        method = client.beta.messages.create if beta else client.messages.create
    else:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=base + "/v1", max_retries=0)
        resource = {"chat": client.chat.completions, "embeddings": client.embeddings}.get(endpoint)
        method = (resource or client.responses).create
    try:
        result = method(**_split_kwargs(method, body))
        if stream:
            for _item in result:
                pass
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--show-misses", action="store_true")
    options = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # deprecated models and parameters, in recorded requests
    capture = Capture(Path(tempfile.mkdtemp(prefix="steptrace-replay-")))
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    counts = {"exact": 0, "differs": 0, "not replayed": 0}
    by_endpoint: dict[str, list[int]] = {}
    cassettes = sorted({p for folder in options.folders for p in folder.rglob("*.yaml")})
    for path in cassettes:
        for endpoint, beta, body, answer in interactions(path):
            stream = body.get("stream") is True
            if endpoint == "chat":
                expected = expected_chat(answer, stream)
            elif endpoint == "embeddings":
                if not answer.get("data"):
                    continue
                expected = expected_embeddings(answer)
            elif endpoint == "responses":
                expected = expected_responses(answer, stream)
            else:
                expected = expected_anthropic(answer, stream)
            if "skip" in expected:
                continue
            capture.clear()
            reply = F.recorded_reply({"response_sse": answer} if stream else {"response": answer})
            label = f"{path.name} {endpoint}{' beta' if beta else ''}{' stream' if stream else ''}"
            try:
                with F.FakeServer(F.Script(reply)) as server:
                    replay(endpoint, beta, body, answer, server.url())
            except Exception as exc:
                counts["not replayed"] += 1
                if options.show_misses:
                    print(f"not replayed: {label}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            spans = capture.spans_named(A.SPAN_LLM_REQUEST)
            got = traced(dict(spans[0].attributes or {}), list(expected)) if len(spans) == 1 else None
            row = by_endpoint.setdefault(f"{endpoint}{' beta' if beta else ''}", [0, 0])
            row[1] += 1
            if got == expected:
                counts["exact"] += 1
                row[0] += 1
            else:
                counts["differs"] += 1
                if options.show_misses:
                    print(f"differs: {label}: expected {expected} got {got}")
    replayed = counts["exact"] + counts["differs"]
    print(f"cassettes: {len(cassettes)}; calls replayed: {replayed}; traced exactly: {counts['exact']}")
    print(f"not replayed (today's SDK refused the recorded request): {counts['not replayed']}")
    for name, (exact, total) in sorted(by_endpoint.items()):
        print(f"  {name}: {exact}/{total}")
    capture.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
