"""Case: the cost steptrace adds to one MCP tool call, against the bare call, in one process.

    .venv-bench/bin/python bench/case_mcp.py

Three groups, each timed interleaved on its own: ``instant``, a real ``ClientSession`` whose
requests are answered at once (no transport, no server: steptrace's share at its largest), the
mcp package's in-memory transport (client and server in this process) and stdio to a server
subprocess (this script with ``--serve``, untraced), as a real deployment has it. Variants:
``bare`` (``ClientSession.call_tool`` not instrumented), ``steptrace`` (``instrument_mcp()``: the
``tool_execution`` span, its JSONL record and histogram, content capture off) and ``steptrace,
capture on`` (arguments and result captured and redacted). All run inside an
``agent_run``/``agent_step`` with steptrace configured, so the mcp package's own spans (client
and server over stdio, server only in memory, none for ``instant``) and their step records are
paid by every variant alike: the difference is what ``instrument_mcp()`` adds. Reported per
call: wall time and this process's CPU time (the client's share, and in memory the server's too).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_MCP_NUMBER", "200"))
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
ARGUMENTS = {"a": 1, "b": 2}


def make_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench-tools")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


def serve() -> None:
    make_server().run("stdio")


async def ainterleave(
    variants: list[Variant],
    cpu: dict[str, list[float]],
    *,
    number: int,
    batches: int,
    warmup_batches: int = 2,
) -> None:
    """``_common.interleave`` for coroutine calls: the sessions' anyio scopes live in one task, so
    the timing loop runs in that task too (a sync harness would cross tasks or threads).

    Also keeps this process's CPU time per call in ``cpu``: on a loaded machine the wall time
    mostly measures waiting for a core, the CPU time what the call itself costs here.
    """
    count = len(variants)
    for round_number in range(warmup_batches + batches):
        gc.collect()
        for offset in range(count):
            variant = variants[(round_number + offset) % count]
            call = variant.call
            if variant.enter is not None:
                variant.enter()
            try:
                for _ in range(min(number, 50)):
                    await call()  # type: ignore[misc]
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in range(number):
                    await call()  # type: ignore[misc]
                elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
            finally:
                if variant.leave is not None:
                    variant.leave()
            if round_number >= warmup_batches:
                variant.samples.append(elapsed / number)
                cpu.setdefault(variant.name, []).append(cpu_elapsed / number)


async def open_sessions(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
    """The in-memory and the stdio session, tools listed (call_tool validates against the list)."""
    from mcp import Client, ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    client = await stack.enter_async_context(Client(make_server()))
    params = StdioServerParameters(command=sys.executable, args=[str(Path(__file__).resolve()), "--serve"])
    read, write = await stack.enter_async_context(stdio_client(params))
    stdio = await stack.enter_async_context(ClientSession(read, write))
    await stdio.initialize()
    sessions = {"memory": client.session, "stdio": stdio}
    for session in sessions.values():
        await session.list_tools()
    sessions["instant"] = instant_session()
    return sessions


def instant_session() -> Any:
    """A real ``ClientSession`` whose requests are answered at once, with no transport or server:
    what remains is the session's own request building and what steptrace adds to it."""
    import anyio
    from mcp import ClientSession
    from mcp_types import CallToolResult, TextContent

    answer = CallToolResult(content=[TextContent(type="text", text="3")], structured_content={"result": 3})

    class InstantSession(ClientSession):
        async def send_request(self, *args: Any, **kwargs: Any) -> Any:
            return answer

        async def validate_tool_result(self, name: str, result: Any) -> None:
            return None

    send, receive = anyio.create_memory_object_stream[Any](1)
    return InstantSession(receive, send)


def tool_call(session: Any) -> Callable[[], Awaitable[object]]:
    async def call_tool() -> object:
        result = await session.call_tool("add", ARGUMENTS)
        assert result.structured_content == {"result": 3}, result
        return result

    return call_tool


async def measure(log: Path, cpu: dict[str, list[float]]) -> list[Variant]:
    import steptrace

    open_blocks: list[Any] = []

    def setup(instrument: bool, capture: bool) -> Callable[[], None]:
        def enter() -> None:
            steptrace.configure("bench", jsonl_path=log, capture_content=capture)
            if instrument:
                steptrace.instrument_mcp()
            for spec in (steptrace.agent_run(agent="bench"), steptrace.agent_step()):
                spec.__enter__()
                open_blocks.append(spec)

        return enter

    def leave() -> None:
        while open_blocks:
            open_blocks.pop().__exit__(None, None, None)
        steptrace.uninstrument_mcp()

    setups = {
        "bare": setup(False, False),
        "steptrace": setup(True, False),
        "steptrace, capture on": setup(True, True),
    }
    variants: list[Variant] = []
    async with contextlib.AsyncExitStack() as stack:
        sessions = await open_sessions(stack)
        for transport, session in sessions.items():
            group = [
                Variant(f"{name}|{transport}", tool_call(session), enter, leave)
                for name, enter in setups.items()
            ]
            await ainterleave(group, cpu, number=NUMBER, batches=BATCHES)
            variants += group
    return variants


def main() -> None:
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        log = Path(tmp) / "steps.jsonl"
        cpu: dict[str, list[float]] = {}
        variants = asyncio.run(measure(log, cpu))
        records = log.read_bytes().count(b"\n")
    emit(
        {
            "case": "mcp",
            "batches": BATCHES,
            "number": NUMBER,
            "load_average_start": load_start,
            "variants": summarize(variants),
            "cpu_median_us": {name: statistics.median(samples) * 1e6 for name, samples in cpu.items()},
            "steptrace_records_written": records,
            "versions": versions("steptrace", "mcp", "opentelemetry-sdk"),
        }
    )


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
    else:
        main()
