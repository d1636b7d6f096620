"""Turn one finished span into one step record (agent-step-log's step-record schema, extended).

The mapping works from plain values (ids, times, an attribute mapping) so the JSONL exporter and
the OTLP-JSON reader in ``steptrace.analysis`` produce identical records from the same span.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from steptrace import _attributes as A

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
    return f"{stamp}.{nanos // 1000:06d}Z"


def _content(value: Any) -> Any:
    """Captured content is stored on spans as JSON text; the record holds the JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _foreign_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if len(out) >= _MAX_FOREIGN_ATTRIBUTES:
            break
        if key in (A.RUN_ID, A.STEP):
            continue
        if isinstance(value, str) and len(value) > _MAX_FOREIGN_VALUE_CHARS:
            out[key] = value[:_MAX_FOREIGN_VALUE_CHARS] + f"...[truncated: {len(value)} chars]"
        elif isinstance(value, Sequence) and not isinstance(value, str):
            out[key] = list(value)
        else:
            out[key] = value
    return out


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
    run_id = attributes.get(A.RUN_ID)
    if run_id is None:
        return None
    record_type = RECORD_TYPE_BY_SPAN_NAME.get(name, "span")
    get = attributes.get
    error_type = get(A.ERROR_TYPE)
    error: str | None = None
    if status == STATUS_ERROR:
        error = status_description or (str(error_type) if error_type else "error")

    record: dict[str, Any] = {
        "run_id": run_id,
        "step": get(A.STEP, 0 if record_type == "run" else None),
        "type": record_type,
        "name": name,
        "trace_id": trace_id if isinstance(trace_id, str) else f"{trace_id:032x}",
        "span_id": span_id if isinstance(span_id, str) else f"{span_id:016x}",
        "parent_span_id": (
            None
            if not parent_span_id
            else parent_span_id
            if isinstance(parent_span_id, str)
            else f"{parent_span_id:016x}"
        ),
        "started_at": iso_utc(start_ns),
        "ts": end_ns / 1e9,
        "duration_ms": (end_ns - start_ns) / 1e6,
        "status": status,
        "error": error,
        "error_type": error_type,
    }
    if record_type == "llm_call":
        ttft = get(A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        finish_reasons = get(A.GEN_AI_RESPONSE_FINISH_REASONS)
        tool_calls = get(A.LLM_TOOL_CALLS)
        record.update(
            agent_step=get(A.AGENT_STEP_NUMBER),
            model=get(A.GEN_AI_RESPONSE_MODEL) or get(A.GEN_AI_REQUEST_MODEL),
            request_model=get(A.GEN_AI_REQUEST_MODEL),
            provider=get(A.GEN_AI_PROVIDER_NAME),
            input_tokens=get(A.GEN_AI_USAGE_INPUT_TOKENS),
            output_tokens=get(A.GEN_AI_USAGE_OUTPUT_TOKENS),
            cache_read_input_tokens=get(A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
            cache_creation_input_tokens=get(A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
            reasoning_tokens=get(A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
            stop_reason=get(A.STOP_REASON),
            finish_reasons=list(finish_reasons) if finish_reasons is not None else None,
            response_id=get(A.GEN_AI_RESPONSE_ID),
            stream=get(A.GEN_AI_REQUEST_STREAM, False),
            ttft_ms=ttft * 1000.0 if ttft is not None else None,
            usage_missing=get(A.LLM_USAGE_MISSING, False),
            stream_completed=get(A.LLM_STREAM_COMPLETED),
            tool_calls=_content(tool_calls) if tool_calls is not None else None,
            input=_content(get(A.GEN_AI_INPUT_MESSAGES)),
            output=_content(get(A.GEN_AI_OUTPUT_MESSAGES)),
        )
    elif record_type == "tool_call":
        record.update(
            agent_step=get(A.AGENT_STEP_NUMBER),
            tool=get(A.GEN_AI_TOOL_NAME),
            tool_call_id=get(A.GEN_AI_TOOL_CALL_ID),
            args_hash=get(A.TOOL_ARGS_HASH),
            input=_content(get(A.GEN_AI_TOOL_CALL_ARGUMENTS)),
            output=_content(get(A.GEN_AI_TOOL_CALL_RESULT)),
        )
    elif record_type == "agent_step":
        record.update(
            agent_step=get(A.AGENT_STEP_NUMBER),
            step_id=get(A.AGENT_STEP_ID),
            agent=get(A.GEN_AI_AGENT_NAME),
            release=get(A.GEN_AI_AGENT_VERSION),
            ends_run=get(A.AGENT_STEP_ENDS_RUN, False),
            stop_reason=get(A.STOP_REASON),
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
    else:
        record.update(agent_step=get(A.AGENT_STEP_NUMBER), attributes=_foreign_attributes(attributes))
    return record
