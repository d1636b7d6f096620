"""An agent calling its tools through an MCP server in another process, traced end to end; offline.

    python examples/mcp_agent.py

The script starts itself a second time as the MCP server (``--serve``, stdio transport). Both
processes run steptrace and append to ./steptrace-logs/steps.jsonl: the agent's ``tool_execution``
spans, and the server's own spans, which carry the agent's run id (W3C baggage in the request's
``_meta``) and trace id. The first tool call fails (an unknown currency code, answered with
``isError``); ``steptrace debug <run id>`` names it.
"""

from __future__ import annotations

import asyncio
import os
import sys

import steptrace

RATES = {"EUR": 0.92, "GBP": 0.79}


def serve() -> None:
    """The MCP server: one tool, traced by steptrace like any other process."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    telemetry = steptrace.configure(service_name="currency-tools")
    server = MCPServer("currency-tools")

    @server.tool()
    def convert_currency(amount: float, currency: str) -> dict[str, float | str]:
        """Convert US dollars to ``currency``."""
        rate = RATES.get(currency)
        if rate is None:
            raise ToolError(f"unknown currency code {currency!r}; expected one of {sorted(RATES)}")
        return {"amount": round(amount * rate, 2), "currency": currency}

    try:
        server.run("stdio")
    finally:
        telemetry.shutdown()


async def run_agent() -> str:
    """A scripted agent loop: the 'model' first asks for a wrong currency code, then fixes it."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    server = StdioServerParameters(
        command=sys.executable,
        args=[os.path.abspath(__file__), "--serve"],
        env={"STEPTRACE_JSONL_PATH": os.path.abspath("steptrace-logs/steps.jsonl")},
    )
    planned = [{"amount": 4.2, "currency": "EURO"}, {"amount": 4.2, "currency": "EUR"}]
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        with steptrace.agent_run(agent="mcp-currency-agent", release="v1.0.0") as run:
            for arguments in planned:
                with steptrace.agent_step() as step:
                    result = await session.call_tool("convert_currency", arguments)  # traced
                    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                    print(f"step {step.number}: convert_currency{arguments} -> {text}")
                    if not result.is_error:
                        step.stop_reason = "end_turn"
                        break
        return run.run_id


def main() -> None:
    telemetry = steptrace.configure(
        service_name="mcp-currency-agent", jsonl_path="steptrace-logs/steps.jsonl"
    )
    steptrace.instrument_mcp()  # the one added line: every ClientSession.call_tool is traced
    run_id = asyncio.run(run_agent())
    telemetry.force_flush()
    print(f"run {run_id}: both processes' spans are in steptrace-logs/steps.jsonl")
    print(f"next: steptrace debug {run_id[:8]}")


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
    else:
        main()
