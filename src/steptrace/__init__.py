"""steptrace: make LLM agents debuggable with OpenTelemetry and a local JSONL step log.

import steptrace

steptrace.configure(service_name="my-agent")

@steptrace.tool
def search_documents(query: str) -> dict: ...

with steptrace.agent_run(agent="researcher", release="v1.4.2") as run:
    with steptrace.agent_step() as step:
        ...
"""

from __future__ import annotations

from steptrace._capture import capture_content
from steptrace._config import Telemetry, configure
from steptrace._context import RunState, StepState
from steptrace._context import current_run_state as current_run
from steptrace._context import current_step_state as current_step
from steptrace._decorators import agent_run, agent_step, llm_request, tool, tool_executor
from steptrace._errors import ConfigError
from steptrace._guards import (
    BudgetExceeded,
    GuardEvent,
    Guards,
    GuardTripped,
    LoopDetected,
    StepLimit,
    TokenLimit,
)
from steptrace._jsonl import JsonlSpanExporter, read_steps
from steptrace._logs import structlog_processor
from steptrace._spans import AgentRun, AgentStep, LlmRequest, ToolCall, bind_context
from steptrace._version import __version__
from steptrace.instrumentation.anthropic import instrument_anthropic, uninstrument_anthropic
from steptrace.instrumentation.bedrock import instrument_bedrock, uninstrument_bedrock
from steptrace.instrumentation.google_genai import instrument_google_genai, uninstrument_google_genai
from steptrace.instrumentation.langchain import instrument_langchain, uninstrument_langchain
from steptrace.instrumentation.mcp import instrument_mcp, uninstrument_mcp
from steptrace.instrumentation.openai import instrument_openai, uninstrument_openai
from steptrace.instrumentation.openai_agents import instrument_openai_agents, uninstrument_openai_agents
from steptrace.instrumentation.pydantic_ai import instrument_pydantic_ai, uninstrument_pydantic_ai
from steptrace.rerun import RerunDivergence, RerunReport, rerun

__all__ = [
    "AgentRun",
    "AgentStep",
    "BudgetExceeded",
    "ConfigError",
    "GuardEvent",
    "GuardTripped",
    "Guards",
    "JsonlSpanExporter",
    "LlmRequest",
    "LoopDetected",
    "RerunDivergence",
    "RerunReport",
    "RunState",
    "StepLimit",
    "StepState",
    "Telemetry",
    "TokenLimit",
    "ToolCall",
    "__version__",
    "agent_run",
    "agent_step",
    "bind_context",
    "capture_content",
    "configure",
    "current_run",
    "current_step",
    "instrument_anthropic",
    "instrument_bedrock",
    "instrument_google_genai",
    "instrument_langchain",
    "instrument_mcp",
    "instrument_openai",
    "instrument_openai_agents",
    "instrument_pydantic_ai",
    "llm_request",
    "read_steps",
    "rerun",
    "structlog_processor",
    "tool",
    "tool_executor",
    "uninstrument_anthropic",
    "uninstrument_bedrock",
    "uninstrument_google_genai",
    "uninstrument_langchain",
    "uninstrument_mcp",
    "uninstrument_openai",
    "uninstrument_openai_agents",
    "uninstrument_pydantic_ai",
]
