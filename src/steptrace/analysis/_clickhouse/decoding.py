"""Rows back into steptrace's terms: a span row into the step record the JSONL exporter wrote
(attribute text turned back into numbers, booleans, arrays), a run row into a :class:`Run`.

Tuples come as sequences, or as mappings when the server names them
(``enable_named_columns_in_function_tuple``): :func:`fields` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from steptrace import _attributes as A
from steptrace._pricing import Pricer
from steptrace._records import STATUS_ERROR, STATUS_OK, STATUS_UNSET, build_record, iso_utc
from steptrace.analysis._loading import LoadIssue, StepFields, _DictFields
from steptrace.analysis._runs import Record, Run, _accumulate, _Accumulator, _finish

# The exporter writes every attribute as text (pcommon ``AsString``). These are the keys whose
# values steptrace writes as numbers, booleans or arrays; turned back, the step record is the
# one the JSONL exporter wrote. Any other attribute stays text.
INT_KEYS = frozenset(
    {
        A.STEP, A.AGENT_STEP_NUMBER, A.GEN_AI_USAGE_INPUT_TOKENS, A.GEN_AI_USAGE_OUTPUT_TOKENS,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, A.RUN_STEPS, A.RUN_LLM_CALLS,
        A.RUN_LLM_CALLS_WITHOUT_USAGE, A.RUN_TOOL_CALLS, A.RUN_INPUT_TOKENS, A.RUN_OUTPUT_TOKENS,
        A.RUN_ERRORS, A.GEN_AI_REQUEST_MAX_TOKENS, A.GEN_AI_REQUEST_TOP_K, A.SERVER_PORT,
        A.GEN_AI_REQUEST_SEED, A.GEN_AI_REQUEST_CHOICE_COUNT, A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
        A.LLM_EMBEDDINGS_INPUT_COUNT,
    }
)  # fmt: skip
FLOAT_KEYS = frozenset(
    {
        A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, A.GEN_AI_REQUEST_TEMPERATURE, A.GEN_AI_REQUEST_TOP_P,
        A.GEN_AI_REQUEST_FREQUENCY_PENALTY, A.GEN_AI_REQUEST_PRESENCE_PENALTY, A.LLM_COST_USD,
    }
)  # fmt: skip
BOOL_KEYS = frozenset(
    {
        A.GEN_AI_REQUEST_STREAM,
        A.AGENT_STEP_ENDS_RUN,
        A.LLM_USAGE_MISSING,
        A.LLM_STREAM_COMPLETED,
        A.CANCELLED,
        A.RERUN_SERVED,
    }
)
ARRAY_KEYS = frozenset(
    {A.GEN_AI_RESPONSE_FINISH_REASONS, A.GEN_AI_REQUEST_STOP_SEQUENCES, A.GEN_AI_REQUEST_ENCODING_FORMATS}
)
# Older exporter versions copied the scope into the span attributes; it is not the span's.
_EXPORTER_ADDED_KEYS = frozenset({"otel.scope.name", "otel.scope.version"})
_STATUS = {
    "Ok": STATUS_OK,
    "Error": STATUS_ERROR,
    "Unset": STATUS_UNSET,
    "STATUS_CODE_OK": STATUS_OK,
    "STATUS_CODE_ERROR": STATUS_ERROR,
    "STATUS_CODE_UNSET": STATUS_UNSET,
}


def fields(value: Any) -> Sequence[Any]:
    """A tuple's elements in order, whether the client gave a sequence or (a named tuple) a mapping."""
    if isinstance(value, Mapping):
        return tuple(value.values())
    return cast("Sequence[Any]", value)


def typed_attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    """Span attributes as the application set them, from the exporter's text values."""
    out: dict[str, Any] = {}
    for key, text in attributes.items():
        if key in _EXPORTER_ADDED_KEYS:
            continue
        value: Any = text
        try:
            if key in INT_KEYS:
                value = int(text)
            elif key in FLOAT_KEYS:
                value = float(Decimal(text))
            elif key in BOOL_KEYS and text in ("true", "false"):
                value = text == "true"
            elif key in ARRAY_KEYS:
                parsed = json.loads(text)
                value = parsed if isinstance(parsed, list) else text
        except (ValueError, ArithmeticError):
            value = text  # not what steptrace writes there: keep the text
        out[key] = value
    return out


def record_from_row(row: Sequence[Any]) -> dict[str, Any] | None:
    """The step record of one ``otel_traces`` row (sql.RECORD_COLUMNS)."""
    name, trace_id, span_id, parent, start_ns, duration, status, message, attributes, service = row
    start = int(start_ns)
    # As the JSONL exporter does: a span that did not fail is "ok", and only a failure has a
    # description (an unset status is "ok" there too).
    failed = _STATUS.get(str(status)) == STATUS_ERROR
    return build_record(
        name=str(name),
        trace_id=str(trace_id).lower(),
        span_id=str(span_id).lower(),
        parent_span_id=str(parent).lower() or None,
        start_ns=start,
        end_ns=start + int(duration),
        status=STATUS_ERROR if failed else STATUS_OK,
        status_description=(str(message) or None) if failed else None,
        attributes=typed_attributes(attributes),
        service=str(service) or None,
    )


class RunDecoder:
    """Per-run rows (runs.RUN_COLUMNS) into runs; prices each model call as the JSONL pass does."""

    def __init__(self, pricer: Pricer, read_run: Callable[[str], list[Record]]) -> None:
        self.pricer = pricer
        self.read_run = read_run
        self._stamps: dict[int, str] = {}
        self._issue = LoadIssue(Path("clickhouse"))

    def run(self, row: Sequence[Any]) -> Run:
        (
            run_id, record_count, first_start_ns, last_end_ns, run_spans, run_span, agent_steps,
            llm_calls, tool_calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            errors, repeated_calls, tools, llm_calls_by_end, step_agent, has_step_agent,
            step_release, has_step_release, step_agents,
        ) = row  # fmt: skip
        run_id = str(run_id)
        acc = _Accumulator()
        if int(run_spans):
            # The run record goes through the JSONL pass's own code: whatever it reads of a run
            # record (stop reason, agent, errors counted by the core, ...) is read the same way.
            start_ns, duration, status, attributes, service = fields(run_span)
            attributes = {**attributes, A.RUN_ID: run_id}
            span_row = ("agent_run", "", "", "", start_ns, duration, status, "", attributes, service)
            record = record_from_row(span_row)
            if record is not None:
                _accumulate([cast(StepFields, _DictFields(record))], {run_id: acc}, self._issue)
        # The rest are the query's aggregates, in the accumulator's own terms.
        acc.record_count = int(record_count)
        acc.first_started = iso_utc(int(first_start_ns))
        acc.last_end = int(last_end_ns) / 1e9
        acc.steps, acc.llm_calls, acc.tool_calls = int(agent_steps), int(llm_calls), int(tool_calls)
        acc.input_tokens, acc.output_tokens = int(input_tokens), int(output_tokens)
        for name, value in (("cache_read", cache_read_tokens), ("cache_write", cache_write_tokens)):
            if hasattr(acc, name):
                setattr(acc, name, int(value))
        pairs = (fields(error) for error in errors)
        acc.errors = [(str(span_id), str(parent) or None) for span_id, parent in pairs]
        acc.repeated = int(repeated_calls)
        acc.agent = str(step_agent) if has_step_agent else None
        acc.agents = tuple(dict.fromkeys(str(name) for name in step_agents))
        acc.release = str(step_release) if has_step_release else None
        acc.tools = {str(tool): int(count) for tool, count in map(fields, tools)}
        acc.tool_durations = {}  # read on first use: ClickHouseRun.tool_durations_ms
        acc.cost, acc.priced, acc.unpriced = self.cost(llm_calls_by_end)
        acc.no_usage = calls_without_usage(llm_calls_by_end)
        return _finish(run_id, acc, self.read_run, self.pricer)

    def cost(self, llm_calls: Sequence[Any]) -> tuple[float, int, int]:
        """(USD, priced calls, unpriced calls) of a run's model calls, given in end order."""
        price, stamps = self.pricer.price, self._stamps
        cost, priced, unpriced = 0.0, 0, 0
        for call_fields in llm_calls:
            minute, provider, model, inputs, outputs, read, written, reasoning, served, _ = fields(
                call_fields
            )
            if served:  # a rerun served it from its recording: nothing was paid
                priced += 1
                continue
            # The same call, in the same order, as the JSONL pass prices it. Prices change by
            # date, read to the minute: one ISO stamp per minute, not one per call.
            stamp = stamps.get(minute)
            if stamp is None:
                stamp = stamps[minute] = iso_utc(minute * 60_000_000_000)
            call = price(provider, model, inputs, outputs, read, written, reasoning, stamp)
            if call is None:
                unpriced += 1
            else:
                cost += call
                priced += 1
        return cost, priced, unpriced


def calls_without_usage(llm_calls: Sequence[Any]) -> int:
    """Model calls that answered without reporting usage (tokens unknown, never 0), as the
    JSONL pass counts them: no input and no output count, and not failed."""
    count = 0
    for call_fields in llm_calls:
        call = fields(call_fields)
        if call[3] is None and call[4] is None and not call[9]:
            count += 1
    return count
