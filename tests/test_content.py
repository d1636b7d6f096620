"""Content capture: on/off in code, by environment and per block; size limits; JSON conversion."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

import steptrace
from steptrace import _attributes as A
from steptrace._content import ContentPolicy, arguments_digest, arguments_hash, secret_argument_values
from steptrace.testing import Capture

CONTENT_KEYS = (
    A.GEN_AI_TOOL_CALL_ARGUMENTS,
    A.GEN_AI_TOOL_CALL_RESULT,
    A.GEN_AI_INPUT_MESSAGES,
    A.GEN_AI_OUTPUT_MESSAGES,
)


@steptrace.tool
def search(query: str) -> str:
    return f"results for {query}"


def _agent() -> None:
    search("quarterly revenue")
    with steptrace.llm_request(model="m") as request:
        request.record_input([{"role": "user", "content": "hello"}])
        request.record_output([{"role": "assistant", "content": "hi"}])


def _captured(capture: Capture) -> dict[str, set[str]]:
    """Span name -> the content attribute keys it carries."""
    out: dict[str, set[str]] = {}
    for span in capture.spans:
        keys = {key for key in CONTENT_KEYS if key in (span.attributes or {})}
        out.setdefault(span.name, set()).update(keys)
    return out


ALL_CONTENT = {
    "tool_execution": {A.GEN_AI_TOOL_CALL_ARGUMENTS, A.GEN_AI_TOOL_CALL_RESULT},
    "llm_request": {A.GEN_AI_INPUT_MESSAGES, A.GEN_AI_OUTPUT_MESSAGES},
    "agent_run": set(),
}
NO_CONTENT = {"tool_execution": set(), "llm_request": set(), "agent_run": set()}


def test_capture_off_in_code_keeps_content_out_of_spans_and_log(steptrace_capture: Capture) -> None:
    """configure(capture_content=False): prompts or tool data still reach spans or the log."""
    steptrace_capture.configure(capture_content=False)
    with steptrace.agent_run(agent="a"):
        _agent()
    assert _captured(steptrace_capture) == NO_CONTENT
    tool = next(r for r in steptrace_capture.records if r["type"] == "tool_call")
    assert tool["input"] is None and tool["output"] is None and tool["args_hash"]
    assert "quarterly" not in steptrace_capture.jsonl_path.read_text()


@pytest.mark.parametrize(("value", "expected"), [("false", NO_CONTENT), ("true", ALL_CONTENT)])
def test_capture_from_environment(
    steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch, value: str, expected: dict[str, set[str]]
) -> None:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: the variable is ignored."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    steptrace_capture.configure(capture_content=None)
    with steptrace.agent_run(agent="a"):
        _agent()
    assert _captured(steptrace_capture) == expected


def test_capture_content_block_turns_capture_off_and_on(steptrace_capture: Capture) -> None:
    """with capture_content(False/True): a block's content is captured anyway, or the setting leaks out."""
    with steptrace.agent_run(agent="a"):
        with steptrace.capture_content(False):
            search("hidden")
            with steptrace.capture_content(True):
                search("shown inside")
            search("hidden again")
        search("shown after")
    outputs = [r["output"] for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert outputs == [None, "results for shown inside", None, "results for shown after"]


def test_capture_content_true_block_when_configured_off(steptrace_capture: Capture) -> None:
    """capture_content(True) with capture off in configure(): the block's content is not captured."""
    steptrace_capture.configure(capture_content=False)
    with steptrace.agent_run(agent="a"):
        with steptrace.capture_content(True), steptrace.llm_request(model="m") as request:
            assert request.capture_content is True
            request.record_input("hello")
        search("not captured")
    records = steptrace_capture.records
    assert next(r for r in records if r["type"] == "llm_call")["input"] == "hello"
    assert next(r for r in records if r["type"] == "tool_call")["output"] is None


def test_capture_content_block_covers_a_manual_tool_result(steptrace_capture: Capture) -> None:
    """A result recorded inside a capture_content(False) block of a tool block: it is captured."""
    with steptrace.agent_run(agent="a"), steptrace.tool("vault", arguments={"path": "/x"}) as call:
        with steptrace.capture_content(False):
            call.record_result("the secret document")
    tool = next(r for r in steptrace_capture.records if r["type"] == "tool_call")
    assert tool["input"] == {"path": "/x"} and tool["output"] is None


def test_capture_content_as_decorator(steptrace_capture: Capture) -> None:
    """@capture_content(False) outermost on a tool (sync and async): its arguments or result leak."""

    @steptrace.capture_content(False)
    @steptrace.tool
    def read_vault(path: str) -> str:
        return "vault contents"

    @steptrace.capture_content(False)
    @steptrace.tool
    async def read_vault_async(path: str) -> str:
        return "async vault contents"

    with steptrace.agent_run(agent="a"):
        assert read_vault("/secret") == "vault contents"
        assert asyncio.run(read_vault_async("/secret")) == "async vault contents"
        search("visible")
    tools = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert [(t["input"], t["output"]) for t in tools] == [
        (None, None),
        (None, None),
        ({"query": "visible"}, "results for visible"),
    ]
    assert read_vault.__name__ == "read_vault"


def test_capture_content_refuses_generators() -> None:
    """@capture_content on a generator: it silently covers only the creation of the generator."""
    with pytest.raises(TypeError, match="generator"):

        @steptrace.capture_content(False)
        def stream() -> Iterator[int]:
            yield 1


def test_capture_content_follows_asyncio_tasks(steptrace_capture: Capture) -> None:
    """Concurrent tasks, one inside capture_content(False): the setting leaks into the other task."""

    @steptrace.tool
    async def fetch(label: str) -> str:
        await asyncio.sleep(0)
        return label

    async def hidden() -> None:
        async with steptrace.capture_content(False):
            for _ in range(3):
                await fetch("hidden")

    async def shown() -> None:
        for _ in range(3):
            await fetch("shown")

    async def main() -> None:
        with steptrace.agent_run(agent="a"):
            await asyncio.gather(hidden(), shown())

    asyncio.run(main())
    outputs = sorted(str(r["output"]) for r in steptrace_capture.records if r["type"] == "tool_call")
    assert outputs == ["None"] * 3 + ["shown"] * 3


NO_CAPTURE = steptrace.capture_content(False)


def test_one_capture_content_object_reused_by_concurrent_tasks(steptrace_capture: Capture) -> None:
    """A module-level capture_content(False) entered by interleaved tasks: a block ends another's."""

    @steptrace.tool
    async def fetch(label: str) -> str:
        await asyncio.sleep(0)
        return label

    async def hidden(delay: int) -> None:
        async with NO_CAPTURE:
            for _ in range(delay):
                await asyncio.sleep(0)
            await fetch("hidden")
        await fetch("after")

    async def main() -> None:
        with steptrace.agent_run(agent="a"):
            await asyncio.gather(hidden(3), hidden(0), hidden(1))

    asyncio.run(main())
    outputs = sorted(str(r["output"]) for r in steptrace_capture.records if r["type"] == "tool_call")
    assert outputs == ["None"] * 3 + ["after"] * 3


def test_capture_content_crosses_threads_with_bind_context(steptrace_capture: Capture) -> None:
    """bind_context inside a capture_content(False) block: the worker thread captures anyway."""
    with steptrace.agent_run(agent="a"), steptrace.capture_content(False):
        bound = steptrace.bind_context(search)
        worker = threading.Thread(target=bound, args=("from thread",))
        worker.start()
        worker.join()
    tool = next(r for r in steptrace_capture.records if r["type"] == "tool_call")
    assert tool["output"] is None and tool["run_id"]


# --- size limits -------------------------------------------------------------------------------


def test_default_limit_is_8_kib_with_the_original_length(steptrace_capture: Capture) -> None:
    """A 20,000-character tool result: it is logged whole, or cut without saying how long it was."""

    @steptrace.tool
    def dump() -> str:
        return "r" * 20_000

    with steptrace.agent_run(agent="a"):
        dump()
    output = next(r for r in steptrace_capture.records if r["type"] == "tool_call")["output"]
    assert output == "r" * 8192 + "...[truncated: 20000 chars]"


def test_configured_limit_bounds_the_whole_value_in_bytes() -> None:
    """A large dict of non-ASCII text: the captured JSON exceeds max_content_bytes in UTF-8."""
    policy = ContentPolicy(True, max_bytes=1_000)
    value = {f"field{i}": "日本語のテキスト" * 40 for i in range(50)}
    text = policy.to_json(value)
    assert len(text.encode("utf-8")) <= 1_000 + 64
    data = json.loads(text)
    assert isinstance(data, dict) and "[truncated]" in data


@pytest.mark.parametrize("max_bytes", [64, 500, 8192])
def test_limit_holds_for_many_small_strings(max_bytes: int) -> None:
    """Thousands of short strings: each under the limit, together far over it in the log."""
    policy = ContentPolicy(True, max_bytes=max_bytes)
    text = policy.to_json([["item", "x" * 30] for _ in range(5_000)])
    assert len(text.encode("utf-8")) <= max_bytes + 64
    json.loads(text)


def test_too_small_limit_is_refused(steptrace_capture: Capture) -> None:
    """max_content_bytes=10: configure() accepts a limit no marker fits in."""
    with pytest.raises(steptrace.ConfigError):
        steptrace_capture.configure(max_content_bytes=10)


# --- conversion to JSON ------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Place(NamedTuple):
    city: str
    floor: int


class LoginTuple(NamedTuple):
    user: str
    password: str


@dataclasses.dataclass
class LoginRecord:
    user: str
    password: str


class Model:
    """Shaped like a pydantic model."""

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"name": "m", "mode": mode}


def test_common_python_values_become_readable_json() -> None:
    """Dates, UUIDs, dataclasses, models, NaN, cycles, huge ints: unreadable or invalid JSON."""
    cycle: list[Any] = [1]
    cycle.append(cycle)
    value = {
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "id": uuid.UUID(int=1),
        "point": Point(1, 2.5),
        "model": Model(),
        "floats": [math.nan, math.inf, -math.inf],
        "cycle": cycle,
        "big": 2**70,
        "huge": 2**5000,
        "bytes": b"ok \xff",
    }
    data = json.loads(ContentPolicy(True).to_json(value))
    assert data == {
        "when": "2026-01-02T03:04:05+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "point": {"x": 1, "y": 2.5},
        "model": {"name": "m", "mode": "python"},
        "floats": ["NaN", "Infinity", "-Infinity"],
        "cycle": [1, "[cycle]"],
        "big": str(2**70),
        "huge": "[int: 5001 bits]",
        "bytes": "ok \ufffd",
    }


def test_arguments_hash_ignores_secret_arguments() -> None:
    """Calls differing only in a password: their args_hash differs, so guesses can be tested."""
    first = arguments_hash({"user": "bob", "password": "hunter2"})
    assert first == arguments_hash({"user": "bob", "password": "letmein"})
    assert first != arguments_hash({"user": "alice", "password": "hunter2"})
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    assert arguments_hash(cycle) == arguments_hash(cycle)


@pytest.mark.parametrize(
    "make",
    [
        lambda user, secret: {"url": f"https://{user}", "headers": {"Authorization": f"Bearer {secret}"}},
        lambda user, secret: {"request": {"login": {"user": user, "password": secret}, "retries": 3}},
        lambda user, secret: {"batch": [{"name": user, "api_key": secret}, ("b", {"token": secret})]},
        lambda user, secret: {"login": LoginTuple(user, secret)},
        lambda user, secret: {"login": LoginRecord(user, secret)},
        lambda user, secret: LoginTuple(user, secret),
        lambda user, secret: [user, {"client_secret": secret}],
    ],
    ids=["headers", "nested-dict", "list-of-dicts", "namedtuple", "dataclass", "top-namedtuple", "list"],
)
def test_arguments_hash_ignores_secrets_at_every_depth(make: Callable[[str, str], Any]) -> None:
    """A secret one level down (headers={"Authorization": ...}) changes args_hash: guesses can be tested."""
    first = arguments_hash(make("bob", "abc123"))
    assert first == arguments_hash(make("bob", "letmein-2"))
    assert first != arguments_hash(make("alice", "abc123"))


def test_arguments_hash_of_plain_arguments_is_unchanged() -> None:
    """Hashes of arguments without secrets changed: recordings made earlier no longer match."""
    assert arguments_hash({"query": "quarterly revenue", "limit": 5}) == "00eccf06e9396b88"
    nested = {"url": "https://x", "headers": {"Accept": "json", "X-Trace": "1"}, "params": [1, 2]}
    assert arguments_hash(nested) == "f82e4b7150f383b2"
    assert arguments_hash({"at": Place("Oslo", 3)}) == arguments_hash({"at": ["Oslo", 3]})


def test_tool_args_hash_hides_a_nested_header(steptrace_capture: Capture) -> None:
    """Two calls differing only in an Authorization header: their args_hash in the log differs."""

    @steptrace.tool
    def fetch(url: str, headers: dict[str, str]) -> str:
        return "ok"

    with steptrace.agent_run(agent="a"):
        fetch("https://x", {"Authorization": "Bearer aaaa"})
        fetch("https://x", {"Authorization": "Bearer bbbb"})
        fetch("https://y", {"Authorization": "Bearer aaaa"})
    hashes = [r["args_hash"] for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert hashes[0] == hashes[1] != hashes[2]


def test_secret_argument_values_found_at_every_depth() -> None:
    """The values a tool's error text must not repeat: a nested or record secret is missed."""
    arguments = {
        "api_key": "hunter2-PLAINSECRET-99",
        "headers": {"Authorization": "Bearer tok-123456789"},
        "login": LoginTuple("bob", "record-pass-1"),
        "short": {"token": "abc"},  # too short to scrub from text without false matches
        "query": "not a secret at all",
    }
    assert set(secret_argument_values(arguments)) == {
        "hunter2-PLAINSECRET-99",
        "Bearer tok-123456789",
        "tok-123456789",
        "record-pass-1",
    }
    assert secret_argument_values({"query": "q", "limit": 3}) == ()
    assert arguments_digest(arguments) == (arguments_hash(arguments), secret_argument_values(arguments))
