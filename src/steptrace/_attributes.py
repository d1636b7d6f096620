"""Every attribute key, span name and metric name steptrace writes, defined once.

OpenTelemetry GenAI semantic-convention keys (semantic-conventions v1.41) keep their ``gen_ai.*``
names; keys the conventions do not define live under the single ``steptrace.`` prefix.
"""

from __future__ import annotations

from typing import Final

# --- span names: stable and low-cardinality, so backends can group on them -----------------------
SPAN_AGENT_RUN: Final = "agent_run"
SPAN_AGENT_STEP: Final = "agent_step"
SPAN_LLM_REQUEST: Final = "llm_request"
SPAN_TOOL_EXECUTION: Final = "tool_execution"
STEPTRACE_SPAN_NAMES: Final = frozenset(
    {SPAN_AGENT_RUN, SPAN_AGENT_STEP, SPAN_LLM_REQUEST, SPAN_TOOL_EXECUTION}
)

INSTRUMENTATION_SCOPE: Final = "steptrace"
# On a framework's own span that a steptrace handle borrowed instead of opening a second span for
# the same call (Pydantic AI's ``chat``, ``execute_tool``): which of the names above it stands for.
SPAN_STANDS_FOR: Final = "steptrace.span"

# --- OpenTelemetry GenAI semantic conventions ------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"  # the output modality requested: text, json, image, speech
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_TYPE_EXTENSION: Final = "extension"  # a tool run by an agent-side extension: an MCP server
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"  # the conventions' fallback when the error's type is unknown
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# --- Model Context Protocol conventions (semantic-conventions v1.41, docs/gen-ai/mcp.md) -------------
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_METHOD_TOOLS_CALL: Final = "tools/call"
MCP_SESSION_ID: Final = "mcp.session.id"
MCP_PROTOCOL_VERSION: Final = "mcp.protocol.version"
ERROR_TYPE_TOOL_ERROR: Final = "tool_error"  # a CallToolResult with isError: true

OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"  # a prompt in, text out (no messages)
OPERATION_EXECUTE_TOOL: Final = "execute_tool"
OPERATION_EMBEDDINGS: Final = "embeddings"
OPERATION_GENERATE_CONTENT: Final = "generate_content"  # Gemini generateContent (the conventions' value)

# --- steptrace's own keys: one prefix ---------------------------------------------------------------
PREFIX: Final = "steptrace."
RUN_ID: Final = "steptrace.run_id"
PARENT_RUN_ID: Final = "steptrace.parent_run_id"
RERUN_OF: Final = "steptrace.rerun_of"  # on a rerun's run span: the run id it re-ran
RERUN_SERVED: Final = "steptrace.rerun.served"  # a call a rerun served from its recording (not paid)
STEP: Final = "steptrace.step"  # sequence number of a span within its run: 1, 2, 3 ...
AGENT_STEP_NUMBER: Final = "steptrace.agent_step.number"  # loop iteration of the agent_step
AGENT_STEP_ID: Final = "steptrace.agent_step.id"
AGENT_STEP_ENDS_RUN: Final = "steptrace.agent_step.ends_run"
AGENT_STEP_HANDOFF_TO: Final = "steptrace.agent_step.handoff_to"  # the agent this step handed off to
STOP_REASON: Final = "steptrace.stop_reason"  # one vocabulary across providers
RELEASE: Final = "steptrace.release"
RUN_STEPS: Final = "steptrace.run.steps"
RUN_LLM_CALLS: Final = "steptrace.run.llm_calls"
RUN_LLM_CALLS_WITHOUT_USAGE: Final = "steptrace.run.llm_calls_without_usage"
RUN_TOOL_CALLS: Final = "steptrace.run.tool_calls"
RUN_INPUT_TOKENS: Final = "steptrace.run.input_tokens"
RUN_OUTPUT_TOKENS: Final = "steptrace.run.output_tokens"
RUN_ERRORS: Final = "steptrace.run.errors"
# Where a failure was raised: the innermost frames of the user's own code (JSON list of
# {"file", "line", "function"}, innermost first), always; the redacted stack only with capture on.
ERROR_WHERE: Final = "steptrace.error.where"
ERROR_STACK: Final = "steptrace.error.stack"
TOOL_ARGS_HASH: Final = "steptrace.tool.args_hash"
LLM_TOOL_CALLS: Final = "steptrace.llm.tool_calls"  # JSON list of {"name", "id"} the model asked for
LLM_USAGE_MISSING: Final = "steptrace.llm.usage_missing"
LLM_COST_USD: Final = "steptrace.llm.cost_usd"  # USD of the call (genai-prices), configure(record_cost=True)
LLM_STREAM_COMPLETED: Final = "steptrace.llm.stream_completed"
LLM_EMBEDDINGS_INPUT_COUNT: Final = "steptrace.llm.embeddings.input_count"  # texts (or token lists) embedded
CANCELLED: Final = "steptrace.cancelled"
# Guards (configure(guards=...)): on a tripped call's span, the guard that fired; the run span
# carries the trips as JSON. Each trip is also a ``guard`` event on both spans.
GUARD_NAME: Final = "steptrace.guard.name"
GUARD_LIMIT: Final = "steptrace.guard.limit"
GUARD_VALUE: Final = "steptrace.guard.value"
GUARD_ACTION: Final = "steptrace.guard.action"
GUARD_MESSAGE: Final = "steptrace.guard.message"
GUARD_EARLIER_STEPS: Final = "steptrace.guard.earlier_steps"
RUN_GUARDS: Final = "steptrace.run.guards"
EVENT_GUARD: Final = "guard"

# --- metric instruments ------------------------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
# An observable instrument that never reports a value: its callback records buffered measurements.
METRIC_PENDING_FLUSH: Final = "steptrace.internal.pending_measurements"
METRIC_EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
METRIC_INVOKE_AGENT_DURATION: Final = "gen_ai.invoke_agent.duration"
METRIC_AGENT_STEP_DURATION: Final = "steptrace.agent.step.duration"
METRIC_ENDS_RUN: Final = "steptrace.agent_step.ends_run"

# --- the run-level stop reason vocabulary (agent-step-log's, extended) ------------------------------
STOP_END_TURN: Final = "end_turn"
STOP_PAUSE_TURN: Final = "pause_turn"  # the turn is not finished: the caller sends it back to continue
STOP_TOOL_USE: Final = "tool_use"
STOP_MAX_TOKENS: Final = "max_tokens"
STOP_SEQUENCE: Final = "stop_sequence"
STOP_CONTENT_FILTER: Final = "content_filter"
STOP_ERROR: Final = "error"
STOP_CANCELLED: Final = "cancelled"
STOP_MAX_STEPS: Final = "max_steps"
STOP_GUARDRAIL: Final = "guardrail"  # a guardrail tripwire stopped the run (OpenAI Agents SDK)
STOP_LOOP: Final = "loop"  # a repeat_calls guard stopped the run (configure(guards=...))
STOP_BUDGET: Final = "budget"  # a max_tokens or max_cost_usd guard stopped the run
STOP_INTERRUPTED: Final = "interrupted"  # paused for a human (LangGraph interrupt); resumed as a new run
