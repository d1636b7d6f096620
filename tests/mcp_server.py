"""A small MCP server over stdio, traced by steptrace, for tests/test_instrument_mcp.py.

Its step log goes to ``STEPTRACE_JSONL_PATH`` (set by the caller). Tools: ``add`` (works),
``convert_currency`` (calls the ``@steptrace.tool`` ``lookup_rate``; answers ``isError`` for an
unknown code), ``lookup_account`` (quotes a
secret in its error), ``slow`` (sleeps, for timeouts) and ``crash`` (kills the server: a transport
failure). ``python tests/mcp_server.py`` runs it on stdin/stdout.
"""

from __future__ import annotations

import os
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import steptrace

RATES = {"EUR": 0.92, "GBP": 0.79}

telemetry = steptrace.configure(service_name="mcp-tools")
server = MCPServer("steptrace-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@steptrace.tool
def lookup_rate(currency: str) -> float | None:
    """A step of the server's own, traced by steptrace: it joins the caller's run."""
    return RATES.get(currency)


@server.tool()
def convert_currency(amount: float, currency: str) -> dict[str, float | str]:
    """Convert US dollars to ``currency``."""
    rate = lookup_rate(currency)
    if rate is None:
        raise ToolError(f"unknown currency code {currency!r}; expected one of {sorted(RATES)}")
    return {"amount": round(amount * rate, 2), "currency": currency}


@server.tool()
def lookup_account(account: str) -> str:
    """Fails, quoting an API key, as careless tools do."""
    raise ToolError(f"account {account} not found (upstream key sk-proj-abcdefghijklmnopqrstuvwx1234)")


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "done"


@server.tool()
def crash() -> str:
    """End the server process mid-call: the client's transport fails."""
    telemetry.force_flush()
    os._exit(3)


if __name__ == "__main__":
    try:
        server.run("stdio")
    finally:
        telemetry.shutdown()
