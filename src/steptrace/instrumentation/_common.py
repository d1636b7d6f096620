"""What the OpenAI and Anthropic patches share: the call wrapper, stream proxies, patch records.

One SDK call is one ``llm_request`` handle, opened when the request is sent and run by the handle's
runner, which ends it when the call returns or fails — or, for a stream, when the stream is
exhausted, closed, fails or is dropped. No code here makes a context current or ends a span.
Inside a manual ``steptrace.llm_request`` block the call enriches that span instead (no double
counting). The stream proxies do as little as possible per chunk: the provider's ``observe``
keeps what it needs and arrival times; attributes and histograms are written once, at the end.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, ClassVar

import wrapt

from steptrace import _attributes as A
from steptrace import _spans
from steptrace._content import ContentPolicy
from steptrace._internal import internal_errors, report_internal_error
from steptrace._response import field_of
from steptrace._settings import capture_content_from_env
from steptrace._spans import Hooks, LlmRequest, current_llm_request, run_coroutine, run_sync
from steptrace._state import ActiveConfig, active, make_active_config

logger = logging.getLogger("steptrace")

_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
_DEFAULT_PORTS = {"https": 443, "http": 80}


# --- what one endpoint reads from a call --------------------------------------------------------
class Request:
    """The request side of one call, read from the SDK method's keyword arguments.

    ``params`` holds ``gen_ai.request.*`` attributes by their full keys, only those given.
    """

    __slots__ = ("model", "params", "stream")

    def __init__(self, model: Any, stream: bool, params: dict[str, Any]) -> None:
        self.model = model if isinstance(model, str) else None
        self.stream = stream
        self.params = params


class Observer:
    """Reads a stream's chunks as they pass; writes what it learnt to the span at the end.

    ``observe`` runs once per chunk and must stay cheap: keep references, compare, append.
    A chunk carrying content or a tool-call delta calls ``content_arrived``.
    """

    __slots__ = ("capture", "handle", "times")

    def __init__(self, handle: LlmRequest) -> None:
        self.handle = handle
        self.capture = handle.capture_content
        # perf_counter readings of content chunks after the first (the first marks TTFT live).
        self.times: list[float] | None = None

    def content_arrived(self) -> None:
        times = self.times
        if times is None:
            self.times = []
            self.handle.first_chunk()
        else:
            times.append(time.perf_counter())

    def observe(self, chunk: Any) -> None:
        raise NotImplementedError

    def finalize(self) -> None:
        """Record usage, finish reasons, tool calls and output on the span."""
        raise NotImplementedError


class Endpoint:
    """One instrumented SDK method: how to read its request, response and stream."""

    __slots__ = (
        "describe",
        "input_messages",
        "new_observer",
        "operation",
        "output_messages",
        "provider",
        "system_instructions",
    )

    def __init__(
        self,
        provider: str,
        describe: Callable[[Mapping[str, Any]], Request],
        input_messages: Callable[[Mapping[str, Any]], Any],
        new_observer: Callable[[LlmRequest], Observer],
        output_messages: Callable[[Any], Any],
        operation: str = A.OPERATION_CHAT,
        system_instructions: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.describe = describe
        self.input_messages = input_messages
        self.new_observer = new_observer
        self.output_messages = output_messages
        # Instructions the API takes apart from the messages (gen_ai.system_instructions).
        self.system_instructions = system_instructions


# --- request parameters and captured messages, in the conventions' shapes ---------------------
def number_param(params: dict[str, Any], key: str, value: Any) -> None:
    """Set ``params[key]`` when ``value`` is a real number (not the SDK's ``omit`` sentinel)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        params[key] = value


def stop_param(params: dict[str, Any], value: Any) -> None:
    if isinstance(value, str):
        params[A.GEN_AI_REQUEST_STOP_SEQUENCES] = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        params[A.GEN_AI_REQUEST_STOP_SEQUENCES] = list(value)


def message_part(block: Any) -> dict[str, Any]:
    """One content block of any of the three APIs as a conventions message part."""
    if isinstance(block, str):
        return {"type": "text", "content": block}
    kind = field_of(block, "type")
    if kind in ("text", "input_text", "output_text"):
        return {"type": "text", "content": field_of(block, "text")}
    if kind == "refusal":
        return {"type": "text", "content": field_of(block, "refusal")}
    if kind in ("tool_use", "server_tool_use"):
        return tool_call_part(field_of(block, "id"), field_of(block, "name"), field_of(block, "input"))
    if kind == "function_call":
        return tool_call_part(
            field_of(block, "call_id"), field_of(block, "name"), field_of(block, "arguments")
        )
    if kind == "tool_result":
        return tool_response_part(field_of(block, "tool_use_id"), field_of(block, "content"))
    if kind == "function_call_output":
        return tool_response_part(field_of(block, "call_id"), field_of(block, "output"))
    if kind in ("thinking", "reasoning"):
        return {"type": "reasoning", "content": field_of(block, "thinking")}
    # Images, files, audio: name the kind, never copy the payload.
    return {"type": str(kind) if kind else "unknown"}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response_part(call_id: Any, response: Any) -> dict[str, Any]:
    if not isinstance(response, str) and response is not None:
        response = [message_part(block) for block in response]
    return {"type": "tool_call_response", "id": call_id, "response": response}


def content_parts(content: Any) -> list[dict[str, Any]]:
    """A message's ``content`` (a string or a list of blocks) as message parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    return [message_part(block) for block in content]


# --- one call: open (or enrich) the span; the handle's runner ends it ---------------------------
class Call(Hooks[LlmRequest]):
    """The span of one SDK call; ``owned`` is False when it enriches a manual ``llm_request``.

    As the runner's hooks, ``on_return`` records the response, or hands back a stream proxy that
    keeps the span open until the stream ends (``LlmRequest.stream_started``).
    """

    __slots__ = ("capture", "endpoint", "handle", "is_async", "owned")
    # ``.with_raw_response``/``.with_streaming_response`` calls: untraced unless the call type
    # knows how to read the SDK's response wrapper.
    reads_raw_responses: ClassVar[bool] = False

    def __init__(self, endpoint: Endpoint, handle: LlmRequest, owned: bool) -> None:
        self.endpoint = endpoint
        self.handle = handle
        self.owned = owned
        self.is_async = False
        # Content is captured: decided once per call, and only for a span that records.
        self.capture = False

    def on_return(self, handle: LlmRequest, result: Any) -> Any:
        stream_type = AsyncStreamProxy if self.is_async else StreamProxy
        try:
            # hasattr() on a complete response (a pydantic model) raises and catches inside
            # pydantic (~2 µs): ask only when the request asked for a stream.
            if handle.stream and _is_sdk_stream(result, self.is_async):
                return self.observe_stream(stream_type, result)
        except Exception as exc:
            report_internal_error("instrumentation.stream_wrap", exc)
            return result
        self.returned(result)
        return result

    def observe_stream(self, proxy_type: type[StreamProxy | AsyncStreamProxy], stream: Any) -> Any:
        """``stream``, observed: the span stays open until the proxy sees the stream end. If
        steptrace cannot observe it (reported), ``stream`` itself: the caller reads it untraced."""
        try:
            observer = self.endpoint.new_observer(self.handle)
            if _spans.rerun_hook is not None:  # records the chunks as they pass (record_for_rerun)
                observer = _spans.rerun_hook.observe_stream(self, observer)
            proxy = proxy_type(stream, self, observer)
            self.handle.stream_started()
        except Exception as exc:
            report_internal_error("instrumentation.stream_wrap", exc)
            return stream
        return proxy

    def returned(self, result: Any) -> None:
        """A complete response came back: record it (the runner ends the span)."""
        with internal_errors("instrumentation.response"):
            handle = self.handle
            handle.record_response(result)
            if self.capture:
                handle.record_output(self.endpoint.output_messages(result))

    def stream_ended(self, observer: Observer, completed: bool, exc: BaseException | None) -> None:
        handle = self.handle
        if not handle.finished:  # a manual block that failed first ended the span already
            with internal_errors("instrumentation.stream_end"):
                observer.finalize()
                if observer.times:
                    handle.record_chunk_times(observer.times)
                handle.set_attribute(A.LLM_STREAM_COMPLETED, completed)
        if _spans.rerun_hook is not None:
            _spans.rerun_hook.stream_ended(self, observer, completed, exc)
        handle.stream_finished(exc)


_last_server: tuple[Any, dict[str, Any]] = (None, {})


def server_attributes(resource: Any) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of the client behind an SDK resource (a new dict).

    The client's ``base_url`` is an immutable URL object, usually the same one call after call:
    the last one's attributes are kept (reading ``host`` decodes the name each time).
    """
    global _last_server
    url = resource._client.base_url
    last_url, attributes = _last_server
    if url is not last_url:
        host = url.host
        if not host:
            attributes = {}
        else:
            port = url.port or _DEFAULT_PORTS.get(url.scheme)
            attributes = {A.SERVER_ADDRESS: host, A.SERVER_PORT: port} if port else {A.SERVER_ADDRESS: host}
        _last_server = (url, attributes)
    return dict(attributes)


def begin_call(
    config: ActiveConfig,
    endpoint: Endpoint,
    resource: Any,
    kwargs: Mapping[str, Any],
    call_type: type[Call] = Call,
) -> Call:
    request = endpoint.describe(kwargs)
    attributes = server_attributes(resource)
    manual = current_llm_request()
    if manual is not None and not manual.sdk_enriched:
        # The user's own llm_request block: enrich it so the request is counted once.
        manual.sdk_enriched = True
        handle = manual
        handle.set_request(model=request.model, provider=endpoint.provider)
        if request.stream:
            handle.stream = True
            attributes[A.GEN_AI_REQUEST_STREAM] = True
        attributes.update(request.params)
        for key, value in attributes.items():
            handle.set_attribute(key, value)
        call = call_type(endpoint, handle, False)
    else:
        attributes.update(request.params)
        handle = LlmRequest(
            config, request.model, endpoint.provider, endpoint.operation, request.stream, attributes
        )
        handle.restart_clock()  # durations and TTFT count from the moment of sending
        call = call_type(endpoint, handle, True)
    if handle.capture_content and handle.span.is_recording():
        call.capture = True
        handle.record_input(endpoint.input_messages(kwargs))
        if endpoint.system_instructions is not None:
            handle.record_system_instructions(endpoint.system_instructions(kwargs))
    return call


def is_raw_response(kwargs: Mapping[str, Any]) -> bool:
    """``.with_raw_response``/``.with_streaming_response`` calls return the SDK's HTTP response
    wrapper instead of the parsed response."""
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and _RAW_RESPONSE_HEADER in headers


class ConfigSource:
    """Where a patch finds its configuration: fixed by ``instrument(tracer_provider=...)``, or
    steptrace's active configuration at call time."""

    __slots__ = ("fixed",)

    def __init__(self) -> None:
        self.fixed: ActiveConfig | None = None

    def get(self) -> ActiveConfig | None:
        fixed = self.fixed
        return fixed if fixed is not None else active()


def open_call(
    source: ConfigSource,
    endpoint: Endpoint,
    resource: Any,
    kwargs: Mapping[str, Any],
    call_type: type[Call] = Call,
) -> Call | None:
    """The call's span (or the manual block it enriches), or None: make the call untraced."""
    config = source.get()
    if config is None or (not call_type.reads_raw_responses and is_raw_response(kwargs)):
        return None
    try:
        return begin_call(config, endpoint, resource, kwargs, call_type)
    except Exception as exc:  # setup failed: make the call untraced
        report_internal_error("instrumentation.begin", exc)
        return None


def invoke(call: Call, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Run a sync SDK call: through the handle's runner, or inside the user's block it enriches."""
    if call.owned:
        return run_sync(call.handle, call, fn, args, kwargs)
    if _spans.rerun_hook is not None:  # the user's block has no runner: record or serve here
        fn = _spans.rerun_hook.substitute(call.handle, call, fn, "sync")
    return call.on_return(call.handle, fn(*args, **kwargs))


async def invoke_async(call: Call, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """The async twin of ``invoke``."""
    call.is_async = True
    if call.owned:
        return await run_coroutine(call.handle, call, fn, args, kwargs)
    if _spans.rerun_hook is not None:
        fn = _spans.rerun_hook.substitute(call.handle, call, fn, "coroutine")
    return call.on_return(call.handle, await fn(*args, **kwargs))


def sync_wrapper(source: ConfigSource, endpoint: Endpoint) -> Callable[..., Any]:
    """A wrapt wrapper for a sync SDK method that returns a response or a ``Stream``."""

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        call = open_call(source, endpoint, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return invoke(call, wrapped, args, kwargs)

    return traced


def when_configured(source: ConfigSource, traced: Callable[..., Any], *bound: Any) -> Callable[..., Any]:
    """A wrapt wrapper for an async library method: the original call while steptrace is not
    configured, else ``traced(source, *bound, wrapped, instance, args, kwargs)``, a coroutine, so
    the span opens when the call starts running, not when the coroutine is created."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if source.get() is None:
            return wrapped(*args, **kwargs)
        return traced(source, *bound, wrapped, instance, args, kwargs)

    return wrapper


def async_wrapper(source: ConfigSource, endpoint: Endpoint) -> Callable[..., Any]:
    """A wrapt wrapper for an async SDK method that returns a response or an ``AsyncStream``."""
    return when_configured(source, _traced_coroutine, endpoint)


async def _traced_coroutine(
    source: ConfigSource,
    endpoint: Endpoint,
    wrapped: Callable[..., Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Any:
    # The span opens when the request starts, not when the coroutine is created: a task
    # cancelled before it runs, or a coroutine never awaited, leaves no span and no count.
    call = open_call(source, endpoint, instance, kwargs)
    if call is None:
        return await wrapped(*args, **kwargs)
    return await invoke_async(call, wrapped, args, kwargs)


def _is_sdk_stream(result: Any, is_async: bool) -> bool:
    # Both SDKs' Stream/AsyncStream classes: iterate events, close the response.
    if is_async:
        return hasattr(result, "__anext__") and hasattr(result, "response")
    return hasattr(result, "__next__") and hasattr(result, "response")


# --- stream proxies ----------------------------------------------------------------------------
class StreamProxy(wrapt.ObjectProxy[Any]):
    """The SDK's ``Stream``, observed: same type for ``isinstance``, same attributes and helpers.

    The span ends when the stream is exhausted (``stream_completed`` true), fails, is closed or
    exits its ``with`` block, or is garbage-collected unconsumed (``stream_completed`` false).
    """

    def __init__(self, stream: Any, call: Call, observer: Observer) -> None:
        super().__init__(stream)
        self._self_call: Call | None = call
        self._self_observer = observer
        self._self_observe = observer.observe
        self._self_next = stream.__next__

    def __iter__(self) -> StreamProxy:
        return self

    @property
    def response(self) -> Any:
        """The HTTP response: the SDKs' ``.stream()`` helpers close it on leaving their ``with``
        block (not the stream), so closing it ends the span too."""
        return _ClosingResponse(self.__wrapped__.response, self)

    def __next__(self) -> Any:
        try:
            chunk = self._self_next()
        except StopIteration:
            self._self_end(True, None)
            raise
        except BaseException as exc:
            self._self_end(False, exc)
            raise
        try:
            self._self_observe(chunk)
        except Exception as exc:
            self._self_observe = _ignore
            report_internal_error("instrumentation.observe", exc)
        return chunk

    def _self_end(self, completed: bool, exc: BaseException | None) -> None:
        call, self._self_call = self._self_call, None
        if call is not None:
            call.stream_ended(self._self_observer, completed, exc)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end(False, None)

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.__wrapped__.__exit__(exc_type, exc, traceback)
        finally:
            self._self_end(False, None)

    def __del__(self) -> None:
        try:
            self._self_end(False, None)
        except Exception as exc:  # a finalizer must not raise; report like any internal error
            report_internal_error("instrumentation.stream_dropped", exc)


class AsyncStreamProxy(wrapt.ObjectProxy[Any]):
    """The SDK's ``AsyncStream``, observed; the span ends as for ``StreamProxy``."""

    def __init__(self, stream: Any, call: Call, observer: Observer) -> None:
        super().__init__(stream)
        self._self_call: Call | None = call
        self._self_observer = observer
        self._self_observe = observer.observe
        self._self_anext = stream.__anext__

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    @property
    def response(self) -> Any:
        """The HTTP response; closing it ends the span (see ``StreamProxy.response``)."""
        return _ClosingResponse(self.__wrapped__.response, self)

    async def __anext__(self) -> Any:
        try:
            chunk = await self._self_anext()
        except StopAsyncIteration:
            self._self_end(True, None)
            raise
        except BaseException as exc:
            self._self_end(False, exc)
            raise
        try:
            self._self_observe(chunk)
        except Exception as exc:
            self._self_observe = _ignore
            report_internal_error("instrumentation.observe", exc)
        return chunk

    def _self_end(self, completed: bool, exc: BaseException | None) -> None:
        call, self._self_call = self._self_call, None
        if call is not None:
            call.stream_ended(self._self_observer, completed, exc)

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end(False, None)

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.__wrapped__.__aexit__(exc_type, exc, traceback)
        finally:
            self._self_end(False, None)

    def __del__(self) -> None:
        try:
            self._self_end(False, None)
        except Exception as exc:  # a finalizer must not raise; report like any internal error
            report_internal_error("instrumentation.stream_dropped", exc)


class _ClosingResponse(wrapt.ObjectProxy[Any]):
    """A stream's HTTP response whose ``close``/``aclose`` also ends the stream's span."""

    def __init__(self, response: Any, stream: StreamProxy | AsyncStreamProxy) -> None:
        super().__init__(response)
        self._self_stream = stream

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_stream._self_end(False, None)

    async def aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_stream._self_end(False, None)


def _ignore(chunk: Any) -> None:
    """Stands in for an observer that failed: the stream goes on untraced."""


# --- patches and the instrumentor interface ----------------------------------------------------
class Patches:
    """Wrapped methods and their originals, to restore on uninstrument."""

    __slots__ = ("_applied",)

    def __init__(self) -> None:
        self._applied: list[tuple[Any, str, Any, bool]] = []

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """Replace ``owner.name`` (a class attribute, or a bound method of one instance)."""
        if isinstance(owner, type):
            original = owner.__dict__[name]
            own = True
            target = original
        else:
            own = name in vars(owner)
            original = vars(owner).get(name)
            target = getattr(owner, name)
        setattr(owner, name, wrapt.FunctionWrapper(target, wrapper))
        self._applied.append((owner, name, original, own))

    def restore(self) -> None:
        while self._applied:
            owner, name, original, own = self._applied.pop()
            if own:
                setattr(owner, name, original)
            else:
                vars(owner).pop(name, None)

    def __bool__(self) -> bool:
        return bool(self._applied)


def config_from_kwargs(kwargs: Mapping[str, Any]) -> ActiveConfig | None:
    """A fixed configuration for ``instrument(tracer_provider=..., meter_provider=...)``."""
    tracer_provider = kwargs.get("tracer_provider")
    meter_provider = kwargs.get("meter_provider")
    if tracer_provider is None and meter_provider is None:
        return None
    if tracer_provider is None:
        from opentelemetry import trace

        tracer_provider = trace.get_tracer_provider()
    capture = kwargs.get("capture_content")
    if not isinstance(capture, bool):
        capture = capture_content_from_env(default=False)
    return make_active_config(tracer_provider, meter_provider, ContentPolicy(capture))


class SdkInstrumentor:
    """OpenTelemetry's instrumentor interface (``instrument``/``uninstrument``), one per SDK.

    Like ``BaseInstrumentor`` it is a singleton, so ``opentelemetry-instrument``, a direct
    ``OpenAIInstrumentor().instrument()`` and ``steptrace.instrument_openai()`` share one state.
    """

    _instance: ClassVar[SdkInstrumentor | None] = None
    package: ClassVar[str] = ""
    supported: ClassVar[str] = ""  # the tested version range, as a requirement string
    tested_majors: ClassVar[tuple[str, ...]] = ()
    minimum: ClassVar[str] = ""  # the oldest tested release, when older ones of a tested major exist
    tested: ClassVar[str] = ""  # what the tests ran, for the warning ("openai 1.109.1, 2.54.0 ...")

    def __new__(cls) -> SdkInstrumentor:
        if cls._instance is None or type(cls._instance) is not cls:
            cls._instance = super().__new__(cls)
            cls._instance._patches = Patches()
            cls._instance._source = ConfigSource()
            cls._instance._clients = weakref.WeakKeyDictionary()
        return cls._instance

    _patches: Patches
    _source: ConfigSource
    _clients: weakref.WeakKeyDictionary[Any, Patches]

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.supported,)

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._patches)

    def instrument(self, **kwargs: Any) -> None:
        """Patch the SDK for every client. ``tracer_provider``/``meter_provider`` pin the
        providers; without them steptrace's configuration at call time is used."""
        if self._patches:
            logger.warning("steptrace: %s is already instrumented; ignoring", self.package)
            return
        with internal_errors(f"instrument {self.package}"):
            self._source.fixed = config_from_kwargs(kwargs)
            self._warn_untested_version()
            try:
                self._patch_classes(self._patches, self._source)
            except BaseException:
                self._patches.restore()
                raise

    def uninstrument(self, **kwargs: Any) -> None:
        """Restore the SDK's original methods."""
        with internal_errors(f"uninstrument {self.package}"):
            self._patches.restore()
            self._source.fixed = None

    def instrument_client(self, client: Any) -> None:
        """Patch the resources of one client instance only."""
        if self._patches or client in self._clients:
            logger.warning("steptrace: this %s client is already instrumented; ignoring", self.package)
            return
        with internal_errors(f"instrument {self.package} client"):
            patches = Patches()
            try:
                self._patch_client(client, patches, self._source)
            except BaseException:
                patches.restore()
                raise
            self._clients[client] = patches

    def uninstrument_client(self, client: Any) -> None:
        with internal_errors(f"uninstrument {self.package} client"):
            patches = self._clients.pop(client, None)
            if patches is not None:
                patches.restore()

    def _patch_classes(self, patches: Patches, source: ConfigSource) -> None:
        raise NotImplementedError

    def _patch_client(self, client: Any, patches: Patches, source: ConfigSource) -> None:
        raise NotImplementedError

    def _warn_untested_version(self) -> None:
        try:
            version = importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return
        too_old = bool(self.minimum) and _release(version) < _release(self.minimum)
        if too_old or version.split(".", 1)[0] not in self.tested_majors:
            logger.warning(
                "steptrace: %s %s is not a version steptrace was tested with (%s)",
                self.package,
                version,
                self.tested or self.supported,
            )


def _release(version: str) -> tuple[int, ...]:
    """``"1.109.1"`` -> (1, 109, 1); a pre-release or local suffix ends the numbers."""
    numbers = []
    for part in version.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers)
