"""Another library's logging hooks next to ours: a LogRecord factory wrapper (the documented stdlib
way; OpenTelemetry's LoggingInstrumentor does it) or a ``Logger.makeRecord`` wrapper, installed
above or below steptrace's, through any order of configure(), re-configure() and shutdown().
Every log call works, correlates once, and runs the other library's hook once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import steptrace
from steptrace.testing import Capture

log = logging.getLogger("agent.foreign")


class FactoryLibrary:
    """A library that wraps the LogRecord factory the way LoggingInstrumentor does: it keeps the
    factory it found, calls it, stamps its own attribute, and puts the old one back on uninstall."""

    attribute = "foreign_factory_calls"

    def __init__(self) -> None:
        self.previous: Callable[..., logging.LogRecord] | None = None

    def instrument(self) -> None:
        previous = self.previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.__dict__[self.attribute] = record.__dict__.get(self.attribute, 0) + 1
            return record

        logging.setLogRecordFactory(factory)

    def uninstrument(self) -> None:
        assert self.previous is not None
        logging.setLogRecordFactory(self.previous)


class MakeRecordLibrary:
    """A library that wraps ``Logger.makeRecord`` (as some log enrichers and test helpers do)."""

    attribute = "foreign_make_record_calls"

    def __init__(self) -> None:
        self.previous: Any = None

    def instrument(self) -> None:
        previous = self.previous = logging.Logger.makeRecord

        def make_record(logger: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
            record: logging.LogRecord = previous(logger, *args, **kwargs)
            record.__dict__[self.attribute] = record.__dict__.get(self.attribute, 0) + 1
            return record

        logging.Logger.makeRecord = make_record  # type: ignore[method-assign]

    def uninstrument(self) -> None:
        logging.Logger.makeRecord = self.previous  # type: ignore[method-assign]


Library = FactoryLibrary | MakeRecordLibrary


@pytest.fixture
def pristine_logging() -> Iterator[None]:
    """Logging's hooks as they were before the test, whatever the test left (set up first, so it
    is torn down after steptrace_capture)."""
    factory, make_record = logging.getLogRecordFactory(), logging.Logger.makeRecord
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)
        logging.Logger.makeRecord = make_record  # type: ignore[method-assign]


@pytest.fixture(params=["factory", "makeRecord"])
def library(request: pytest.FixtureRequest, pristine_logging: None) -> Library:
    return FactoryLibrary() if request.param == "factory" else MakeRecordLibrary()


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Kept]:
    handler = Kept()
    previous = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)


def _log_in_a_run(capture: Capture, kept: Kept, message: str) -> tuple[steptrace.RunState, logging.LogRecord]:
    before = len(capture.logs)
    with steptrace.agent_run(agent="a") as run, steptrace.agent_step():
        log.warning(message)
    record = kept.records[-1]
    assert record.getMessage() == message
    # Delivered once: the fixture saw this line once, with this run's ids.
    (entry,) = capture.logs[before:]
    (span,) = [s for s in capture.spans_named("agent_step") if s.context is not None][-1:]
    assert span.context is not None
    assert (entry["message"], entry["run_id"], entry["step"]) == (message, run.run_id, 1)
    assert entry["trace_id"] == f"{span.context.trace_id:032x}"
    return run, record


def _assert_correlated_once(
    capture: Capture, kept: Kept, library: Library, message: str
) -> logging.LogRecord:
    run, record = _log_in_a_run(capture, kept, message)
    assert (record.run_id, record.step) == (run.run_id, 1)  # type: ignore[attr-defined]
    assert record.__dict__[library.attribute] == 1
    return record


def test_configure_other_library_configure_again(
    library: Library, steptrace_capture: Capture, kept: Kept
) -> None:
    """configure(), another library wraps the hook, configure() again: every log call raised
    RecursionError (steptrace took the wrapper, which calls steptrace, for the hook below it)."""
    library.instrument()
    _assert_correlated_once(steptrace_capture, kept, library, "after the other library")
    steptrace_capture.configure()
    steptrace_capture.configure(capture_logs=True)
    _assert_correlated_once(steptrace_capture, kept, library, "after configure() twice more")
    logged = [r for r in steptrace_capture.records if r["type"] == "log"]
    assert [r["message"] for r in logged] == ["after configure() twice more"]
    library.uninstrument()
    run, record = _log_in_a_run(steptrace_capture, kept, "the other library is gone")
    assert record.run_id == run.run_id  # type: ignore[attr-defined]
    assert library.attribute not in record.__dict__


def test_configure_other_library_shutdown_configure(
    library: Library, steptrace_capture: Capture, kept: Kept
) -> None:
    """configure(), another library's hook, shutdown(), configure(): no recursion, one of each."""
    library.instrument()
    steptrace_capture.telemetry.shutdown()
    with steptrace.agent_run(agent="a"):
        log.warning("between shutdown and configure")
    record = kept.records[-1]
    assert record.__dict__[library.attribute] == 1
    assert not record.__dict__.get("run_id")  # steptrace's hook stays in the chain, inert
    steptrace_capture.configure()
    _assert_correlated_once(steptrace_capture, kept, library, "configured again")
    steptrace_capture.telemetry.shutdown()
    steptrace_capture.configure()
    steptrace_capture.configure()
    _assert_correlated_once(steptrace_capture, kept, library, "and again")


def test_other_library_first_then_configure_and_shutdown(library: Library, kept: Kept) -> None:
    """Another library's hook installed before steptrace keeps working once steptrace shuts down,
    and steptrace's is gone from the chain: logging is exactly as the library left it."""
    library.instrument()
    factory, make_record = logging.getLogRecordFactory(), logging.Logger.makeRecord
    provider = TracerProvider()
    for _ in range(2):  # and a second time: install and uninstall do not accumulate
        telemetry = steptrace.configure(jsonl_path=False, service_name="t", tracer_provider=provider)
        try:
            steptrace.configure(jsonl_path=False, service_name="t", tracer_provider=provider)
            with steptrace.agent_run(agent="a") as run:
                log.warning("configured")
            record = kept.records[-1]
            assert record.run_id == run.run_id  # type: ignore[attr-defined]
            assert record.__dict__[library.attribute] == 1
        finally:
            steptrace.configure(jsonl_path=False, service_name="t", tracer_provider=provider).shutdown()
            telemetry.shutdown()
        assert logging.getLogRecordFactory() is factory
        assert logging.Logger.makeRecord is make_record
        with steptrace.agent_run(agent="a"):
            log.warning("shut down")
        record = kept.records[-1]
        assert record.__dict__[library.attribute] == 1
        assert "run_id" not in record.__dict__


def test_both_kinds_of_hook_and_two_libraries_interleaved(
    pristine_logging: None, steptrace_capture: Capture, kept: Kept
) -> None:
    """Two libraries, one of each kind, wrapping and unwrapping between configure() and
    shutdown() calls in every order: each hook runs once per record, steptrace correlates once."""
    factory_library, make_record_library = FactoryLibrary(), MakeRecordLibrary()
    factory_library.instrument()
    steptrace_capture.configure()
    make_record_library.instrument()
    steptrace_capture.telemetry.shutdown()
    steptrace_capture.configure()
    record = _assert_correlated_once(steptrace_capture, kept, factory_library, "one")
    assert record.__dict__[make_record_library.attribute] == 1
    factory_library.uninstrument()  # the factory the library found: steptrace's, from the fixture
    steptrace_capture.configure()
    _, record = _log_in_a_run(steptrace_capture, kept, "two")
    assert record.__dict__[make_record_library.attribute] == 1
    assert factory_library.attribute not in record.__dict__
    make_record_library.uninstrument()
    steptrace_capture.configure()
    _, record = _log_in_a_run(steptrace_capture, kept, "three")
    assert make_record_library.attribute not in record.__dict__


def test_threads_keep_logging_while_steptrace_and_a_library_reconfigure(
    library: Library, steptrace_capture: Capture, kept: Kept
) -> None:
    """Threads log inside their runs while the main thread re-configures steptrace, shuts it
    down and configures it again, and the other library wraps and unwraps: no call fails, no
    record runs a hook twice, and once it settles every line is correlated once."""
    stop = threading.Event()
    failures: list[BaseException] = []
    calls = [0] * 4

    def worker(index: int) -> None:
        try:
            while not stop.is_set():
                with steptrace.agent_run(agent=f"w{index}"), steptrace.agent_step():
                    log.warning("worker %d", index)
                calls[index] += 1
        except BaseException as exc:  # the test reports it
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(40):
            library.instrument()
            steptrace_capture.configure()
            if round_ % 3 == 0:
                steptrace_capture.telemetry.shutdown()
                steptrace_capture.configure()
            library.uninstrument()
            steptrace_capture.configure()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert min(calls) > 0
    assert all(record.__dict__.get(library.attribute, 1) == 1 for record in list(kept.records))
    library.instrument()
    steptrace_capture.configure()
    _assert_correlated_once(steptrace_capture, kept, library, "settled")


class ReinstallingLibrary:
    """A library that keeps the hook below it in an attribute read at call time and, installed
    again, takes whatever is on top as that hook, its own wrapper's callers included."""

    attribute = "reinstalling_calls"

    def __init__(self) -> None:
        self.below_factory: Callable[..., logging.LogRecord] = logging.LogRecord
        self.below_make_record: Any = logging.Logger.makeRecord

    def factory(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.below_factory(*args, **kwargs)
        record.__dict__[self.attribute] = record.__dict__.get(self.attribute, 0) + 1
        return record

    def instrument(self) -> None:
        self.below_factory = logging.getLogRecordFactory()
        self.below_make_record = logging.Logger.makeRecord
        library = self

        def make_record(logger: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
            record: logging.LogRecord = library.below_make_record(logger, *args, **kwargs)
            record.__dict__["reinstalling_make_record_calls"] = (
                record.__dict__.get("reinstalling_make_record_calls", 0) + 1
            )
            return record

        logging.setLogRecordFactory(self.factory)
        logging.Logger.makeRecord = make_record  # type: ignore[method-assign]


def test_a_library_that_closes_a_cycle_itself_cannot_make_logging_recurse(
    pristine_logging: None, kept: Kept
) -> None:
    """A library installed before steptrace and again after it, taking steptrace's hook as the
    one below its own, closes a cycle (library -> steptrace -> library): its hook then runs twice
    per record, but no log call recurses, and the record is correlated."""
    library = ReinstallingLibrary()
    library.instrument()
    telemetry = steptrace.configure(jsonl_path=False, service_name="t", tracer_provider=TracerProvider())
    try:
        library.instrument()
        with steptrace.agent_run(agent="a") as run:
            log.warning("through a cycle")
        record = kept.records[-1]
        assert record.run_id == run.run_id  # type: ignore[attr-defined]
        assert record.__dict__[library.attribute] == 2
        assert record.__dict__["reinstalling_make_record_calls"] == 2
    finally:
        telemetry.shutdown()
    log.warning("after shutdown")  # the cycle is the library's now; logging still returns
    assert kept.records[-1].getMessage() == "after shutdown"
