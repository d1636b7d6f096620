"""Turn one finished span into one step record (agent-step-log's step-record schema, extended).

The mapping works from plain values (ids, times, an attribute mapping) so the JSONL exporter and
the OTLP-JSON reader in ``steptrace.analysis`` produce identical records from the same span.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
from msgspec import UNSET

from steptrace import _attributes as A
from steptrace import _state
from steptrace._content import ContentPolicy
from steptrace._context import capturing

RECORD_TYPE_BY_SPAN_NAME: dict[str, str] = {
    A.SPAN_AGENT_RUN: "run",
    A.SPAN_AGENT_STEP: "agent_step",
    A.SPAN_LLM_REQUEST: "llm_call",
    A.SPAN_TOOL_EXECUTION: "tool_call",
}

# Attributes of foreign spans ("type": "span") are copied, but only this many, each bounded.
_MAX_FOREIGN_ATTRIBUTES = 64
_MAX_FOREIGN_VALUE_CHARS = 1024

STATUS_UNSET, STATUS_OK, STATUS_ERROR = "unset", "ok", "error"


class StructRecord(msgspec.Struct):
    """A step record of a kind written at every tool or model call, as a msgspec Struct: built
    from positional values and encoded with its keys precomputed, ~0.4 µs (tool) to ~0.6 µs
    (model) less a record than a dict display. Fields in the schema's order; a field left
    ``UNSET`` is absent from the record. It reads like the dict the other kinds are (``in``,
    ``[]``, ``get``, ``items``); ``build_record`` hands out plain dicts."""

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, UNSET)
        return default if value is UNSET else value

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, UNSET)
        if value is UNSET:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and getattr(self, key, UNSET) is not UNSET

    def items(self) -> list[tuple[str, Any]]:
        return [(key, value) for key in self.__struct_fields__ if (value := getattr(self, key)) is not UNSET]


class _CallRecordHead(StructRecord):
    """The fields every tool and model call record starts with, in the schema's order (a
    subclass's own fields follow them)."""

    run_id: Any
    step: Any
    type: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    started_at: str
    ts: float
    duration_ms: float
    status: str
    error: str | None
    error_type: Any
    agent_step: Any


class ToolCallRecord(_CallRecordHead):
    tool: Any
    tool_call_id: Any
    args_hash: Any
    input: Any
    output: Any
    served: Any = UNSET
    error_where: Any = UNSET
    error_stack: Any = UNSET
    guard: Any = UNSET


class LlmCallRecord(_CallRecordHead):
    model: Any
    request_model: Any
    provider: Any
    input_tokens: Any
    output_tokens: Any
    cache_read_input_tokens: Any
    cache_creation_input_tokens: Any
    reasoning_tokens: Any
    stop_reason: Any
    finish_reasons: Any
    response_id: Any
    stream: Any
    ttft_ms: Any
    usage_missing: Any
    stream_completed: Any
    tool_calls: Any
    input: Any
    output: Any
    system_instructions: Any = UNSET
    system_instructions_id: Any = UNSET
    cost_usd: Any = UNSET
    served: Any = UNSET
    error_where: Any = UNSET
    error_stack: Any = UNSET
    guard: Any = UNSET


# What the builder returns: a plain dict, or one of the Structs above (encoded the same way).
Record = dict[str, Any] | StructRecord


# Formatting the date part once per second saves ~2 µs a record. One tuple, read and replaced
# whole, so concurrent threads never pair one second with another's text.
_last_second: tuple[int, str] = (-1, "")


def iso_utc(epoch_ns: int) -> str:
    """``2026-11-21T23:40:01.123456Z`` for an epoch time in nanoseconds."""
    global _last_second
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    cached_second, stamp = _last_second
    if cached_second != seconds:
        stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, stamp)
    return "%s.%06dZ" % (stamp, nanos // 1000)  # noqa: UP031 - faster than the f-string


# The spans of a run share a trace id and their parents: the last one's hex is kept (one tuple,
# read and replaced whole, as above).
_last_trace: tuple[int, str] = (-1, "")
_last_parent: tuple[int, str] = (-1, "")


def _trace_hex(trace_id: int) -> str:
    global _last_trace
    cached = _last_trace
    if cached[0] == trace_id:
        return cached[1]
    text = "%032x" % trace_id  # noqa: UP031
    _last_trace = (trace_id, text)
    return text


def _parent_hex(span_id: int) -> str:
    global _last_parent
    cached = _last_parent
    if cached[0] == span_id:
        return cached[1]
    text = "%016x" % span_id  # noqa: UP031
    _last_parent = (span_id, text)
    return text


# Content parsed into a record keeps a NaN or Infinity literal as text ("NaN"), as the step log
# always wrote it: msgspec, which encodes records without walking their values first, writes a
# non-finite float as null.
_parse_json = json.JSONDecoder(parse_constant=str).decode


def _attribute_value(value: Any) -> Any:
    """A span attribute's value as a record holds it: a non-finite float and bytes as text (the
    encoder would write null and base64), a sequence item by item (attributes nest no deeper)."""
    kind = type(value)
    if kind is float:
        return (
            value
            if math.isfinite(value)
            else "NaN"
            if math.isnan(value)
            else str(value).replace("inf", "Infinity")
        )
    if kind is bytes or kind is bytearray:
        return bytes(value[:4096]).decode("utf-8", "replace")
    if kind is tuple or kind is list:
        return [_attribute_value(item) for item in value]
    return value


def _content(value: Any) -> Any:
    """Captured content is stored on spans as JSON text; the record holds the JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return _parse_json(value)
        except ValueError:
            return value
    return _attribute_value(value)


# Attributes other libraries use for prompts, completions, tool data and documents: the GenAI
# conventions' opt-in content attributes, their older forms (traceloop / openllmetry's indexed
# ``gen_ai.prompt.0.content``), openinference's, the anthropic SDK's own tool-result attribute,
# and a few frameworks' input/output attributes (mlflow, langfuse, logfire).
CONTENT_ATTRIBUTES = frozenset(
    {
        "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.tool.definitions",
        "gen_ai.retrieval.documents", "gen_ai.retrieval.query.text", "gen_ai.evaluation.explanation",
        "gen_ai.prompt", "gen_ai.completion", "gen_ai.event.content",
        "traceloop.entity.input", "traceloop.entity.output",
        "input.value", "output.value", "llm.prompts", "llm.prompt_template.template",
        "llm.prompt_template.variables", "tool.parameters", "tool_call.function.arguments",
        "message.content", "reranker.query", "embedding.text",
        "mlflow.spanInputs", "mlflow.spanOutputs", "langfuse.observation.input",
        "langfuse.observation.output", "langfuse.trace.input", "langfuse.trace.output",
        "request_data", "response_data", "all_messages_events", "anthropic.tool_result.content",
    }
)  # fmt: skip
_INDEXED_CONTENT = re.compile(
    r"(?:gen_ai\.(?:prompt|completion)|llm\.(?:input|output)_messages|llm\.prompts|llm\.tools"
    r"|llm\.request\.functions|retrieval\.documents|embedding\.embeddings"
    r"|reranker\.(?:input|output)_documents)\.[0-9]+(?:\.|$)"
)
# Content is parsed (and so redacted by key, too) when it is JSON text up to this size.
_MAX_PARSED_CONTENT_CHARS = 1024 * 1024
# Spans read back from files (the analysis): no configuration decides; redact, bound, keep.
_READ_BACK_POLICY = ContentPolicy(capture=True)


def is_content_attribute(key: str) -> bool:
    """Whether another library's span attribute ``key`` holds captured content (prompts, results)."""
    return key in CONTENT_ATTRIBUTES or _INDEXED_CONTENT.match(key) is not None


def _foreign_policy() -> tuple[ContentPolicy, bool]:
    """(the content policy for a foreign span's attributes, whether its content is kept).

    The step log is written synchronously at span end (SteptraceSpanProcessor.on_end), so the
    current context is the one the span ended in: a ``capture_content(...)`` block around the
    library's call is honoured. A finished span does not carry the context it started in, so a
    span ended outside that block (a stream closed later, elsewhere) gets the policy where it
    ended: the configured one, or an enclosing block's.
    """
    config = _state.active()
    if config is None:
        return _READ_BACK_POLICY, True
    return config.content, capturing(config.content)


def _as_content(value: Any, policy: ContentPolicy) -> Any:
    """A foreign content value redacted and bounded like ours; JSON text stays JSON text."""
    if isinstance(value, str):
        if len(value) <= _MAX_PARSED_CONTENT_CHARS and value.lstrip()[:1] in ("[", "{"):
            try:
                return policy.to_json(_parse_json(value))
            except (ValueError, RecursionError):
                pass
        return _parse_json(policy.to_json(value))
    if isinstance(value, Sequence):
        return _parse_json(policy.to_json(list(value)))
    return _attribute_value(value)


def _redacted_text(value: str, policy: ContentPolicy) -> str:
    text, cut = policy.redactor.redact_prefix(value, _MAX_FOREIGN_VALUE_CHARS)
    return text + f"...[truncated: {len(value)} chars]" if cut else text


def _foreign_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A foreign span's attributes: content only when capture is on, everything redacted, bounded.

    Only the step log's copy is changed; the span itself, as exported over OTLP, is the
    application's and is left as its library wrote it.
    """
    policy, capture = _foreign_policy()
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if len(out) >= _MAX_FOREIGN_ATTRIBUTES:
            break
        if key in (A.RUN_ID, A.STEP):
            continue
        if is_content_attribute(key):
            if capture:
                out[key] = _as_content(value, policy)
        elif isinstance(value, str):
            out[key] = _redacted_text(value, policy)
        elif isinstance(value, (bytes, bytearray)):
            out[key] = _redacted_text(_attribute_value(value), policy)
        elif isinstance(value, Sequence):
            out[key] = [
                _redacted_text(v, policy) if isinstance(v, str) else _attribute_value(v) for v in value
            ]
        else:
            out[key] = _attribute_value(value)
    return out


# The system instructions an agent sends with every model call are written to the step log once
# per run (per process): later calls carry only their id. Bounded to the most recent runs.
_INSTRUCTIONS_WRITTEN: OrderedDict[Any, set[str]] = OrderedDict()
_INSTRUCTIONS_RUNS = 4096
_INSTRUCTIONS_LOCK = threading.Lock()


def instructions_once(record: Record | None) -> Record | None:
    """The record to write: without its ``system_instructions`` text when an earlier record of
    the same run written by this process carried the same text (same ``system_instructions_id``);
    the analysis puts it back (``Run.records()``)."""
    if record is None or "system_instructions_id" not in record:
        return record
    key, run_id = record["system_instructions_id"], record.get("run_id")
    with _INSTRUCTIONS_LOCK:
        seen = _INSTRUCTIONS_WRITTEN.get(run_id)
        if seen is None:
            seen = _INSTRUCTIONS_WRITTEN[run_id] = set()
            if len(_INSTRUCTIONS_WRITTEN) > _INSTRUCTIONS_RUNS:
                _INSTRUCTIONS_WRITTEN.popitem(last=False)
        else:
            _INSTRUCTIONS_WRITTEN.move_to_end(run_id)
        first = key not in seen
        seen.add(key)
    if first:
        return record
    return {k: v for k, v in record.items() if k != "system_instructions"}


def build_record(
    *,
    name: str,
    trace_id: int | str,
    span_id: int | str,
    parent_span_id: int | str | None,
    start_ns: int,
    end_ns: int,
    status: str,
    status_description: str | None,
    attributes: Mapping[str, Any],
    service: str | None = None,
) -> dict[str, Any] | None:
    """The step record for one span, or None for a span outside any agent run.

    ``trace_id``/``span_id`` are ints (as the SDK holds them) or hex strings (as OTLP JSON has
    them); records always carry lower-case hex. ``status`` is ``"ok"``, ``"error"`` or ``"unset"``.
    """
    record = build_record_positional(
        name, trace_id, span_id, parent_span_id, start_ns, end_ns, status, status_description, attributes,
        service,
    )  # fmt: skip
    return record if record is None or type(record) is dict else dict(record.items())


def build_record_positional(
    name: str,
    trace_id: int | str,
    span_id: int | str,
    parent_span_id: int | str | None,
    start_ns: int,
    end_ns: int,
    status: str,
    status_description: str | None,
    attributes: Mapping[str, Any],
    service: str | None,
) -> Record | None:
    """``build_record`` without keywords, for the step log's path at every span end (~0.3 µs)."""
    run_id = attributes.get(A.RUN_ID)
    if run_id is None:
        return None
    get = attributes.get
    record_type = RECORD_TYPE_BY_SPAN_NAME.get(name)
    borrowed = False
    if record_type is None:  # a framework's own span may stand for one of ours (A.SPAN_STANDS_FOR)
        stands_for = get(A.SPAN_STANDS_FOR)
        record_type = RECORD_TYPE_BY_SPAN_NAME.get(stands_for, "span") if type(stands_for) is str else "span"
        borrowed = record_type != "span"
    error_type = get(A.ERROR_TYPE)
    error: str | None = None
    if status == STATUS_ERROR:
        error = status_description or (str(error_type) if error_type else "error")
    # Each record is one dict display (not a dict then update()): ~1 µs less a record. The keys'
    # order is the schema's (docs/step-records.md); the head is the same for every type.
    step = get(A.STEP, 0 if record_type == "run" else None)
    # The run's trace id and the last parent's hex, cached (_trace_hex, _parent_hex), read inline.
    cached_trace = _last_trace
    trace_hex = (
        cached_trace[1]
        if cached_trace[0] == trace_id
        else trace_id
        if isinstance(trace_id, str)
        else _trace_hex(trace_id)
    )
    span_hex = span_id if isinstance(span_id, str) else "%016x" % span_id  # noqa: UP031
    cached_parent = _last_parent
    parent_hex = (
        None
        if not parent_span_id
        else cached_parent[1]
        if cached_parent[0] == parent_span_id
        else parent_span_id
        if isinstance(parent_span_id, str)
        else _parent_hex(parent_span_id)
    )
    seconds, nanos = divmod(start_ns, 1_000_000_000)  # iso_utc, inlined
    cached_second, stamp = _last_second
    started_at = (
        "%s.%06dZ" % (stamp, nanos // 1000)  # noqa: UP031
        if cached_second == seconds
        else iso_utc(start_ns)
    )
    ts = end_ns / 1e9
    duration_ms = (end_ns - start_ns) / 1e6
    if record_type == "tool_call":
        arguments = get(A.GEN_AI_TOOL_CALL_ARGUMENTS)
        result = get(A.GEN_AI_TOOL_CALL_RESULT)
        record: Record = ToolCallRecord(
            run_id, step, record_type, name, trace_hex, span_hex, parent_hex, started_at, ts,
            duration_ms, status, error, error_type,
            get(A.AGENT_STEP_NUMBER),
            get(A.GEN_AI_TOOL_NAME),
            get(A.GEN_AI_TOOL_CALL_ID),
            get(A.TOOL_ARGS_HASH),
            None if arguments is None else _content(arguments),
            None if result is None else _content(result),
        )  # fmt: skip
        if get(A.RERUN_SERVED):  # served by a rerun from its recording: the tool did not run
            record["served"] = True
        if status == STATUS_ERROR:
            _add_error_site(record, get)
        return _finish_record(record, get, borrowed)
    if record_type == "llm_call":
        ttft = get(A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        finish_reasons = get(A.GEN_AI_RESPONSE_FINISH_REASONS)
        tool_calls = get(A.LLM_TOOL_CALLS)
        request_model = get(A.GEN_AI_REQUEST_MODEL)
        messages_in = get(A.GEN_AI_INPUT_MESSAGES)
        messages_out = get(A.GEN_AI_OUTPUT_MESSAGES)
        record = LlmCallRecord(
            run_id, step, record_type, name, trace_hex, span_hex, parent_hex, started_at, ts,
            duration_ms, status, error, error_type,
            get(A.AGENT_STEP_NUMBER),
            get(A.GEN_AI_RESPONSE_MODEL) or request_model,  # model
            request_model,
            get(A.GEN_AI_PROVIDER_NAME),
            get(A.GEN_AI_USAGE_INPUT_TOKENS),
            get(A.GEN_AI_USAGE_OUTPUT_TOKENS),
            get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
            get(A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
            get(A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
            get(A.STOP_REASON),
            list(finish_reasons) if finish_reasons is not None else None,
            get(A.GEN_AI_RESPONSE_ID),
            get(A.GEN_AI_REQUEST_STREAM, False),
            ttft * 1000.0 if ttft is not None else None,  # ttft_ms
            get(A.LLM_USAGE_MISSING, False),
            get(A.LLM_STREAM_COMPLETED),
            _content(tool_calls) if tool_calls is not None else None,
            None if messages_in is None else _content(messages_in),
            None if messages_out is None else _content(messages_out),
        )  # fmt: skip
        instructions = get(A.GEN_AI_SYSTEM_INSTRUCTIONS)
        if instructions is not None:  # captured (redacted, bounded) only with capture on
            text = instructions if isinstance(instructions, str) else json.dumps(instructions, default=str)
            record["system_instructions"] = _content(instructions)
            record["system_instructions_id"] = hashlib.sha256(
                text.encode("utf-8", "surrogatepass")
            ).hexdigest()[:16]
        cost = get(A.LLM_COST_USD)
        if cost is not None:  # configure(record_cost=True); absent otherwise, as in older logs
            record["cost_usd"] = cost
        if get(A.RERUN_SERVED):  # served by a rerun from its recording: nothing was paid
            record["served"] = True
            record["cost_usd"] = 0.0
        if status == STATUS_ERROR:
            _add_error_site(record, get)
        return _finish_record(record, get, borrowed)
    record = {
        "run_id": run_id, "step": step, "type": record_type, "name": name,
        "trace_id": trace_hex, "span_id": span_hex, "parent_span_id": parent_hex,
        "started_at": started_at, "ts": ts, "duration_ms": duration_ms, "status": status,
        "error": error, "error_type": error_type,
    }  # fmt: skip
    if status == STATUS_ERROR:
        _add_error_site(record, get)
    if record_type == "agent_step":
        record.update(
            agent_step=get(A.AGENT_STEP_NUMBER),
            step_id=get(A.AGENT_STEP_ID),
            agent=get(A.GEN_AI_AGENT_NAME),
            release=get(A.GEN_AI_AGENT_VERSION),
            ends_run=get(A.AGENT_STEP_ENDS_RUN, False),
            stop_reason=get(A.STOP_REASON),
            handoff_to=get(A.AGENT_STEP_HANDOFF_TO),
        )
    elif record_type == "run":
        record.update(
            agent=get(A.GEN_AI_AGENT_NAME),
            release=get(A.GEN_AI_AGENT_VERSION),
            service=service,
            conversation_id=get(A.GEN_AI_CONVERSATION_ID),
            parent_run_id=get(A.PARENT_RUN_ID),
            stop_reason=get(A.STOP_REASON),
            steps=get(A.RUN_STEPS, 0),
            llm_calls=get(A.RUN_LLM_CALLS, 0),
            tool_calls=get(A.RUN_TOOL_CALLS, 0),
            input_tokens=get(A.RUN_INPUT_TOKENS, 0),
            output_tokens=get(A.RUN_OUTPUT_TOKENS, 0),
            errors=get(A.RUN_ERRORS, 0),
            llm_calls_without_usage=get(A.RUN_LLM_CALLS_WITHOUT_USAGE, 0),
        )
        rerun_of = get(A.RERUN_OF)
        if rerun_of is not None:  # a rerun (steptrace.rerun): the run it re-ran
            record["rerun_of"] = rerun_of
        guards = get(A.RUN_GUARDS)
        if guards is not None:  # configure(guards=...): the trips of the run, oldest first
            record["guards"] = _content(guards)
    else:
        record.update(agent_step=get(A.AGENT_STEP_NUMBER), attributes=_foreign_attributes(attributes))
        return record
    return _finish_record(record, get, borrowed)


def _finish_record(record: Record, get: Callable[..., Any], borrowed: bool) -> Record:
    """What every record of one of our span kinds ends with: a borrowed span's content kept
    only as foreign content is, and the guard that stopped the call."""
    if borrowed and (record.get("input") is not None or record.get("output") is not None):
        # The framework wrote that content, under its own settings: kept only as foreign content is.
        policy, capture = _foreign_policy()
        for key in ("input", "output"):
            value = record.get(key)
            record[key] = _as_content(value, policy) if capture and value is not None else None
    guard = get(A.GUARD_NAME)
    if guard is not None:  # a guard tripped at this call (raised: the call did not run)
        record["guard"] = guard
    return record


def _add_error_site(record: Record, get: Callable[..., Any]) -> None:
    """Where a failure was raised (always) and its stack (capture on), when the span has them."""
    where = get(A.ERROR_WHERE)
    if where is not None:
        record["error_where"] = _content(where)
    stack = get(A.ERROR_STACK)
    if stack is not None:
        record["error_stack"] = stack


_RECORD_START = re.compile(r'\{\s*"run_id"\s*:')
# Where a record may start, tried at most this often per line: a hostile line cannot make a
# reader quadratic.
_MAX_RECORD_STARTS = 64


def record_after_torn_prefix(line: bytes | str) -> dict[str, Any] | None:
    """The whole record ending ``line`` after a torn one, or None.

    A writer killed inside ``write()`` leaves half a record without its newline; the next process
    appends a whole record right after it, on the same line. That record is the first JSON object
    after the line's start that begins like a record (``{"run_id":``) and runs to the line's end.
    Every reader (``read_steps`` and the analysis) applies this one rule to a line it cannot decode.
    """
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    decoder = json.JSONDecoder()
    for tried, match in enumerate(_RECORD_START.finditer(text, 1)):
        if tried == _MAX_RECORD_STARTS:
            break
        try:
            value, end = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and not text[end:].strip():
            return value
    return None
