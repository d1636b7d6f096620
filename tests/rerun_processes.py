"""Agents recorded in one process and re-run in another (``test_rerun_processes.py``).

    python tests/rerun_processes.py SCENARIO record LOG_DIR
    python tests/rerun_processes.py SCENARIO rerun LOG_DIR RUN_ID

``record`` serves the model from a fake server on 127.0.0.1 and prints ``{"answer", "run_id"}``;
``rerun`` starts no server (the SDKs point at a closed port) and prints ``{"answer", "report"}``
or ``{"error"}``: the rerun must come from the recording alone. Every scenario hands steptrace
objects whose default ``repr`` holds a memory address, different in every process.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import sdk_fakes as F
import steptrace

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a call would fail at once


class Client:
    """A user's own client object: its repr is ``<rerun_processes.Client object at 0x...>``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def lookup(self, query: str) -> dict[str, Any]:
        return {"query": query, "hits": [f"{self.prefix}: 1.2M USD"]}


@steptrace.tool
def search(
    client: Client, query: str, on_done: Callable[[], None] | None = None, tags: Any = None
) -> dict[str, Any]:
    return client.lookup(query)


@steptrace.llm_request(model="scripted-1", provider="scripted")
def model(client: Client, messages: list[Any]) -> dict[str, Any]:
    if len(messages) < 2:
        return {"tool": "search", "query": "Q3 revenue"}
    return {"answer": f"{messages[-1]['hits'][0]}", "stop_reason": "end_turn"}


def decorators(url: str | None) -> Any:
    client = Client("Q3 revenue")
    with steptrace.agent_run(agent="decorated"):
        messages: list[Any] = ["What was our Q3 revenue?"]
        while True:
            reply = model(client, messages)
            if "answer" in reply:
                return reply["answer"]
            # A set's order differs between processes (PYTHONHASHSEED); its hash must not.
            tags = {"finance", "q3", "revenue", "eu"}
            messages.append(search(client, reply["query"], on_done=lambda: None, tags=tags))


def openai_chat(url: str | None) -> Any:
    import openai

    steptrace.instrument_openai()
    script = F.Script(F.json_reply(F.chat_completion("Paris.")))
    with _serving(script, url) as base:
        client = openai.OpenAI(api_key=F.API_KEY, base_url=f"{base}/v1", max_retries=0)
        with steptrace.agent_run(agent="oa"):
            reply = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}]
            )
            found = search(Client(str(reply.choices[0].message.content)), "France")
        return [reply.choices[0].message.content, found]


def anthropic_messages(url: str | None) -> Any:
    import anthropic

    steptrace.instrument_anthropic()
    script = F.Script(F.json_reply(F.anthropic_message("Paris.")))
    with _serving(script, url) as base:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=base, max_retries=0)
        with steptrace.agent_run(agent="an"):
            reply = client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "Capital of France?"}],
            )
        return reply.content[0].text  # type: ignore[union-attr]


class Joke(BaseModel):
    """A structured answer (messages.parse): a rerun rebuilds ParsedMessage[Joke] in a new process."""

    joke: str
    rating: int


def anthropic_beta_and_parse(url: str | None) -> Any:
    """beta.messages.create, beta.messages.stream (sync and async) and messages.parse /
    beta.messages.parse, over responses recorded from the real API: served back with the types
    the SDK returns (the answer holds their class names)."""
    import anthropic

    steptrace.instrument_anthropic()
    tool_use = F.recorded("anthropic_beta_tool_use.json")
    stream = F.recorded("anthropic_beta_stream.json")
    structured = F.recorded("anthropic_structured_output.json")
    replies = (tool_use, stream, stream, structured, structured)
    script = F.Script(*(F.recorded_reply(entry) for entry in replies))
    answer: list[Any] = []
    with _serving(script, url) as base:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=base, max_retries=0)
        with steptrace.agent_run(agent="an-beta"):
            message = client.beta.messages.create(**F.recorded_call(tool_use))
            answer += [type(message).__name__, message.content[0].name]  # type: ignore[union-attr]
            with client.beta.messages.stream(**F.recorded_call(stream)) as events:
                text = "".join(events.text_stream)
                final = events.get_final_message()
            answer += [type(events).__name__, text, type(final).__name__, final.usage.output_tokens]

            async def streamed() -> list[Any]:
                options = {"api_key": F.API_KEY, "base_url": base, "max_retries": 0}
                async with anthropic.AsyncAnthropic(**options) as aclient:  # type: ignore[arg-type]
                    async with aclient.beta.messages.stream(**F.recorded_call(stream)) as events:
                        return [type(events).__name__, "".join([piece async for piece in events.text_stream])]

            answer += asyncio.run(streamed())
            call = F.recorded_call(structured, "output_format")
            for parse in (client.messages.parse, client.beta.messages.parse):
                parsed = parse(**call, output_format=Joke)
                output = parsed.parsed_output
                answer += [type(parsed).__name__, type(output).__name__]
                answer.append(output.model_dump() if output is not None else None)
    return answer


STREAM_QUESTION = "Capital of France?"


def anthropic_stream_helpers(url: str | None, changed: int | None = None) -> Any:
    """messages.stream and beta.messages.stream, sync and async: four model calls; ``changed``
    asks call ``changed`` (1-4) another question, as an edited prompt would."""
    import anthropic

    steptrace.instrument_anthropic()
    script = F.Script(*(F.sse_reply(F.anthropic_sse(F.anthropic_events([f"Paris {n}."]))) for n in range(4)))

    def ask(number: int) -> dict[str, Any]:
        question = "Capital of Spain?" if number == changed else STREAM_QUESTION
        content = [{"role": "user", "content": question}]
        return {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": content}

    answer: list[Any] = []
    with _serving(script, url) as base:
        client = anthropic.Anthropic(api_key=F.API_KEY, base_url=base, max_retries=0)
        with steptrace.agent_run(agent="an-stream-helpers"):
            with client.messages.stream(**ask(1)) as events:
                answer.append("".join(events.text_stream))
            with client.beta.messages.stream(**ask(2)) as beta_events:
                answer.append("".join(beta_events.text_stream))

            async def streamed() -> list[str]:
                options = {"api_key": F.API_KEY, "base_url": base, "max_retries": 0}
                async with anthropic.AsyncAnthropic(**options) as aclient:  # type: ignore[arg-type]
                    async with aclient.messages.stream(**ask(3)) as events:
                        plain = "".join([piece async for piece in events.text_stream])
                    async with aclient.beta.messages.stream(**ask(4)) as beta_events:
                        beta = "".join([piece async for piece in beta_events.text_stream])
                return [plain, beta]

            answer += asyncio.run(streamed())
    return answer


def google_genai(url: str | None) -> Any:
    from google import genai
    from google.genai import types

    import genai_fakes as G

    steptrace.instrument_google_genai()
    script = F.Script(F.json_reply(G.response("Paris.")))
    with _serving(script, url) as base:
        client = genai.Client(api_key=G.API_KEY, http_options={"base_url": base})
        with steptrace.agent_run(agent="gg"):
            reply = client.models.generate_content(
                model="gemini-2.5-flash",
                contents="Capital of France?",
                config=types.GenerateContentConfig(temperature=0.0, system_instruction="Be short."),
            )
        return reply.text


def agents_sdk(url: str | None, streamed: bool = False) -> Any:
    import openai
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    import agents_fakes as AF

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"18°C and sunny in {city}"

    steptrace.instrument_openai_agents()
    set_tracing_disabled(True)
    script = AF.ModelTurns(
        AF.call_turn("transfer_to_weather", "{}", "call_handoff"),
        AF.call_turn("get_weather", '{"city": "Paris"}', "call_weather"),
        AF.text_turn("In Paris: 18°C and sunny."),
    )
    with _serving(script, url) as base:
        client = openai.AsyncOpenAI(api_key="sk-offline", base_url=f"{base}/v1", max_retries=0)
        model = OpenAIResponsesModel("gpt-4.1", client)
        weather = Agent(name="weather", instructions="Answer.", tools=[get_weather], model=model)
        triage = Agent(name="triage", instructions="Route.", handoffs=[weather], model=model)
        if not streamed:
            result = asyncio.run(Runner.run(triage, "What's the weather in Paris?"))
            return result.final_output

        async def stream() -> Any:
            result = Runner.run_streamed(triage, "What's the weather in Paris?")
            async for _event in result.stream_events():
                pass
            return result.final_output

        return asyncio.run(stream())


@steptrace.tool
def exact_values() -> Any:
    return {
        1: "one",
        (2, "b"): (3, 4.5, [None, True]),
        "big": 2**80,
        "floats": [math.nan, -math.inf, -0.0, 1e308],
        "bytes": b"\x00\xff",
        "set": frozenset({1, 2}),
        "surrogate": "\ud800x",
    }


@steptrace.tool
def card_lookup() -> dict[str, Any]:
    return {"id": 4111111111111111}


@steptrace.tool
def session_lookup() -> dict[str, Any]:
    return {"token": "abc123"}


@steptrace.tool
def pages() -> Iterator[int]:
    yield 1
    yield 2
    raise RuntimeError("page 3 failed")


def values(url: str | None) -> Any:
    """Returns what the agent saw, as reprs (exact types: 1 vs '1', (3,) vs [3], nan vs 'NaN')."""
    seen: list[str] = []
    with steptrace.agent_run(agent="values"):
        for call in (exact_values, card_lookup, session_lookup):
            try:
                seen.append(repr(call()))
            except Exception as exc:
                seen.append(f"{type(exc).__name__}: {exc}")
        items: list[int] = []
        try:
            items.extend(pages())
        except Exception as exc:
            seen.append(f"{items} then {type(exc).__name__}: {exc}")
    return seen


@steptrace.tool
def read_vault(path: str) -> str:
    return f"the vault entry at {path}: patient-4471"


@steptrace.capture_content(False)
@steptrace.tool
def lookup_patient(record_id: str) -> dict[str, Any]:
    return {"record": record_id, "diagnosis": "flu-4471"}


def fenced(url: str | None) -> Any:
    """Calls inside capture_content(False) blocks and functions: their content stays out."""
    seen: list[Any] = []

    def attempt(call: Callable[[], Any]) -> None:
        try:
            seen.append(call())
        except Exception as exc:
            seen.append(f"{type(exc).__name__}: {exc}")

    with steptrace.agent_run(agent="fenced"):
        attempt(lambda: search(Client("open"), "public"))
        with steptrace.capture_content(False):
            attempt(lambda: read_vault("/vault/patient-4471"))
            attempt(lambda: model(Client("private"), ["a private question about 4471"]))
            with steptrace.capture_content(True):
                attempt(lambda: search(Client("opted in"), "inner"))
        attempt(lambda: lookup_patient("rec-4471"))
    return seen


HOSTILE_RUN_IDS = [
    "../../../escaped",
    "/tmp/steptrace-hostile-absolute",
    "nul\x00byte",
    "é" * 300,
    "..",
    "a/b\\c",
    "*",
    "-rf",
    "ok-id",
]


def hostile(url: str | None) -> Any:
    for run_id in HOSTILE_RUN_IDS:
        with steptrace.agent_run(agent="hostile", run_id=run_id):
            search(Client("x"), run_id)
    return HOSTILE_RUN_IDS


SCENARIOS: dict[str, Callable[[str | None], Any]] = {
    "fenced": fenced,
    "hostile": hostile,
    "values": values,
    "decorators": decorators,
    "openai": openai_chat,
    "anthropic": anthropic_messages,
    "anthropic_beta_and_parse": anthropic_beta_and_parse,
    "anthropic_stream_helpers": anthropic_stream_helpers,
    **{
        f"anthropic_stream_helpers_changed_{n}": (lambda url, n=n: anthropic_stream_helpers(url, n))
        for n in range(1, 5)
    },
    "google_genai": google_genai,
    "agents_sdk": agents_sdk,
    "agents_sdk_streamed": lambda url: agents_sdk(url, streamed=True),
}


class _serving:
    """A fake server for the script while recording; the closed port while re-running."""

    def __init__(self, script: F.Script, url: str | None) -> None:
        self.server = F.FakeServer(script) if url is None else None
        self.url = url

    def __enter__(self) -> str:
        if self.server is None:
            return str(self.url)
        self.server.__enter__()
        return self.server.url()

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.__exit__(*exc_info)


def main() -> None:
    scenario, mode, log = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    agent = SCENARIOS[scenario]
    steptrace.configure("rerun-processes", jsonl_path=log / "steps.jsonl", record_for_rerun=mode == "record")
    if mode == "record":
        answer = agent(None)
        recordings = sorted((log / "rerun").glob("*.jsonl"))
        print(json.dumps({"answer": answer, "run_id": recordings[0].stem}))
        return
    try:
        with steptrace.rerun(sys.argv[4], log=log) as rerun:
            answer = agent(CLOSED)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    assert rerun.report is not None
    print(json.dumps({"answer": answer, "report": rerun.report.to_dict()}))


if __name__ == "__main__":
    main()
