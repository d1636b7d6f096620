"""Trace MCP tool calls: each ``ClientSession.call_tool`` is a ``tool_execution`` span.

The call maps to a ``ToolCall`` handle run by its runner (rerun recording and serving included),
so an MCP tool looks like a decorated one, plus the MCP conventions' attributes. The mcp package's
own client span (``MCP send tools/call <tool>``) opens inside it, as its child; the trace context
and the run's baggage that span injects into the request's ``_meta`` let the server's spans join
the trace, and the run when the server runs steptrace. A ``CallToolResult`` with ``isError``
fails the span; the result is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from steptrace import _attributes as A
from steptrace._content import ContentPolicy
from steptrace._context import capturing
from steptrace._internal import internal_errors, report_internal_error
from steptrace._spans import Hooks, ToolCall, redact_error_text, run_coroutine
from steptrace.instrumentation._common import ConfigSource, Patches, SdkInstrumentor, when_configured

_MAX_ERROR_TEXT_CHARS = 2_000


class _ToolHooks(Hooks[ToolCall]):
    """What one MCP call does with its result: capture it, and fail the span on ``isError``."""

    __slots__ = ("content",)

    def __init__(self, content: ContentPolicy) -> None:
        self.content = content

    def on_return(self, handle: ToolCall, result: Any) -> Any:
        if capturing(self.content):
            handle.record_result(_wire_form(result))
        if getattr(result, "is_error", False) is True:
            handle.fail(_error_text(result), A.ERROR_TYPE_TOOL_ERROR)
        return result


def _wire_form(result: Any) -> Any:
    """The result as it crossed the wire (``content``, ``structuredContent``, ``isError``)."""
    dump = getattr(result, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", by_alias=True, exclude_none=True)
        except Exception:  # an odd result: the content layer's generic form
            return result
    return result


def _error_text(result: Any) -> str:
    """The tool's error message: the text parts of the result's content."""
    texts = [
        part.text
        for part in getattr(result, "content", None) or ()
        if isinstance(getattr(part, "text", None), str)
    ]
    return "\n".join(texts)[: _MAX_ERROR_TEXT_CHARS * 2] or A.ERROR_TYPE_TOOL_ERROR


def _call_parts(args: Any, kwargs: Any) -> tuple[Any, Any]:
    """``(name, arguments)`` of a ``call_tool(name, arguments=None, ...)`` call."""
    name = args[0] if args else kwargs.get("name")
    arguments = args[1] if len(args) > 1 else kwargs.get("arguments")
    return name, arguments


def _mcp_attributes(session: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        A.MCP_METHOD_NAME: A.MCP_METHOD_TOOLS_CALL,
        A.GEN_AI_TOOL_TYPE: A.TOOL_TYPE_EXTENSION,
    }
    version = getattr(session, "protocol_version", None)  # None until initialize()
    if isinstance(version, str):
        attributes[A.MCP_PROTOCOL_VERSION] = version
    session_id = getattr(session, "session_id", None)  # not exposed by mcp 2.3's ClientSession
    if isinstance(session_id, str):
        attributes[A.MCP_SESSION_ID] = session_id
    return attributes


def _enclosing_tool_span(name: str) -> Any:
    """The current span if it is steptrace's ``tool_execution`` of this same tool, not yet
    enriched: a framework (the OpenAI Agents SDK's MCP tools) already traces this call, so the
    MCP call enriches that span instead of opening a duplicate (the conventions' advice)."""
    span = trace.get_current_span()
    if getattr(span, "name", None) != A.SPAN_TOOL_EXECUTION:
        return None
    scope = getattr(span, "instrumentation_scope", None)
    attributes = getattr(span, "attributes", None)
    if (
        scope is None
        or scope.name != A.INSTRUMENTATION_SCOPE
        or attributes is None
        or attributes.get(A.GEN_AI_TOOL_NAME) != name
        or A.MCP_METHOD_NAME in attributes
        or not span.is_recording()
    ):
        return None
    return span


def _enrich(span: Any, result: Any, content: ContentPolicy) -> None:
    """Fail the enclosing framework tool span when the result is ``isError`` (as ``fail`` would)."""
    with internal_errors("instrumentation.mcp.enrich"):
        if getattr(result, "is_error", False) is True:
            text = redact_error_text(_error_text(result), _MAX_ERROR_TEXT_CHARS, content)
            span.set_attribute(A.ERROR_TYPE, A.ERROR_TYPE_TOOL_ERROR)
            span.set_status(Status(StatusCode.ERROR, text))


def _call_tool_wrapper(source: ConfigSource) -> Callable[..., Any]:
    """A wrapt wrapper for the async ``ClientSession.call_tool``."""
    return when_configured(source, _traced_call_tool)


async def _traced_call_tool(
    source: ConfigSource, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
) -> Any:
    # The span opens when the call starts, not when the coroutine is created: a task cancelled
    # before it runs leaves no span and no count.
    config = source.get()
    name, arguments = _call_parts(args, kwargs)
    if config is None or not isinstance(name, str):
        return await wrapped(*args, **kwargs)
    handle: ToolCall | None = None
    try:
        enclosing = _enclosing_tool_span(name)
        if enclosing is not None:
            for key, value in _mcp_attributes(instance).items():
                enclosing.set_attribute(key, value)
        else:
            handle = ToolCall(
                config, name, arguments if arguments is not None else {}, attributes=_mcp_attributes(instance)
            )
    except Exception as exc:  # setup failed: make the call untraced
        report_internal_error("instrumentation.mcp.begin", exc)
        return await wrapped(*args, **kwargs)
    if handle is not None:
        return await run_coroutine(handle, _ToolHooks(config.content), wrapped, args, kwargs)
    result = await wrapped(*args, **kwargs)
    _enrich(enclosing, result, config.content)
    return result


class McpInstrumentor(SdkInstrumentor):
    """Patches the ``mcp`` package's ``ClientSession.call_tool`` for every session::

    McpInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    """

    package: ClassVar[str] = "mcp"
    supported: ClassVar[str] = "mcp >= 2.3, < 3"
    tested_majors: ClassVar[tuple[str, ...]] = ("2",)

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        from mcp.client.session import ClientSession

        patches.wrap(ClientSession, "call_tool", _call_tool_wrapper(source))

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        patches.wrap(client, "call_tool", _call_tool_wrapper(source))


def instrument_mcp(session: Any = None) -> None:
    """Trace MCP tool calls: every ``mcp.ClientSession``, or only ``session``.

    Each ``call_tool(name, arguments)`` becomes a ``tool_execution`` span (``gen_ai.tool.type``
    ``extension``, ``mcp.method.name`` ``tools/call``), the parent of the mcp package's own
    client span. Instrumenting twice is a logged no-op; ``uninstrument_mcp`` restores the original.
    """
    if session is None:
        McpInstrumentor().instrument()
    else:
        McpInstrumentor().instrument_client(session)


def uninstrument_mcp(session: Any = None) -> None:
    """Undo ``instrument_mcp()`` (or ``instrument_mcp(session)`` for that session)."""
    if session is None:
        McpInstrumentor().uninstrument()
    else:
        McpInstrumentor().uninstrument_client(session)
