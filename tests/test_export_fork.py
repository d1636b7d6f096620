"""Forked processes keep exporting: no lock of the OTLP path held at fork() hangs the child, and a
multiprocessing child (which leaves through os._exit) delivers or spills every span it ended.

Every case runs a real program in a subprocess (forking pytest itself is unsafe), against the
fake collector on 127.0.0.1, or a closed port for a collector that is down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from export_servers import fake_collector
from otlp_servers import free_port, run_python

pytestmark = pytest.mark.torture

FORK_WITH_A_LOCK_HELD = """
import json, os, signal, sys, threading, time
import steptrace

telemetry = steptrace.configure(service_name="fork-locks", jsonl_path=False)
processor = telemetry._delegates.processors[0]
reader = telemetry._owned_meter_provider._metric_readers[0]
locks = {
    "spill file": processor.spill._lock,
    "circuit": processor.circuit._lock,
    "queue": processor._lock,
    "metric circuit": reader._exporter.circuit._lock,
    "metric export": reader._export_lock,
}
results = {}
for name, lock in locks.items():
    held, release = threading.Event(), threading.Event()

    def hold(lock=lock, held=held, release=release):
        with lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait()
    child = os.fork()
    if child == 0:
        with steptrace.agent_run(agent="child " + name) as run:
            with steptrace.agent_step():
                pass
        telemetry.shutdown()
        os._exit(0)
    release.set()
    holder.join()
    started, status = time.monotonic(), "hung"
    while time.monotonic() - started < 20:
        done, code = os.waitpid(child, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.02)
    else:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    results[name] = {"status": status, "seconds": round(time.monotonic() - started, 2)}
print(json.dumps(results))
"""


@contextmanager
def collector_up_or_down(up: bool) -> Iterator[tuple[str, Any]]:
    if up:
        with fake_collector() as collector:
            yield collector.endpoint, collector
    else:
        yield f"http://127.0.0.1:{free_port()}", None


def otlp_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "STEPTRACE_JSONL_PATH": "",
        **extra,
    }


def spilled_runs(path: Path) -> dict[str, set[str]]:
    """Agent name -> the record types spilled for it."""
    runs: dict[str, set[str]] = {}
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    by_run = {r["run_id"]: r.get("agent") for r in records if r["type"] == "run"}
    for record in records:
        runs.setdefault(str(by_run.get(record["run_id"])), set()).add(record["type"])
    return runs


@pytest.mark.parametrize("up", [True, False], ids=["collector-up", "collector-down"])
def test_fork_while_another_thread_holds_an_export_lock_never_hangs_the_child(
    up: bool, tmp_path: Path
) -> None:
    """A worker forked while the export thread held the spill-file, circuit, queue or metric
    lock would hang forever at its first span end, flush or exit (or lose its spans)."""
    with collector_up_or_down(up) as (endpoint, collector):
        result = run_python(_script(tmp_path, FORK_WITH_A_LOCK_HELD), otlp_env(endpoint), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        children = json.loads(result.stdout.strip().splitlines()[-1])
        assert {name: child["status"] for name, child in children.items()} == dict.fromkeys(children, 0)
        assert max(child["seconds"] for child in children.values()) < 5, children
        if up:
            names = {span.attributes["gen_ai.agent.name"].string_value for span in collector.spans}
            assert {f"child {name}" for name in children} <= names
    if not up:
        runs = spilled_runs(tmp_path / "steptrace-logs" / "otlp-spill.jsonl")
        for name in children:
            assert runs.get(f"child {name}") == {"run", "agent_step"}, (name, runs)


MULTIPROCESSING_WORKERS = """
import json, multiprocessing, sys
import steptrace

def work(index):
    with steptrace.agent_run(agent=f"worker-{index}"):
        with steptrace.agent_step():
            pass

if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    telemetry = steptrace.configure(service_name="mp-agent", jsonl_path="logs/steps.jsonl")
    workers = [multiprocessing.Process(target=work, args=(index,)) for index in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    print(json.dumps([worker.exitcode for worker in workers]))
"""


@pytest.mark.parametrize("up", [True, False], ids=["collector-up", "collector-down"])
def test_multiprocessing_children_deliver_or_spill_every_span(up: bool, tmp_path: Path) -> None:
    """multiprocessing workers (fork start method) leave through os._exit: their queued spans
    would vanish silently, neither at the collector nor in the spill file."""
    with collector_up_or_down(up) as (endpoint, collector):
        result = run_python(_script(tmp_path, MULTIPROCESSING_WORKERS), otlp_env(endpoint), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, 0, 0]
        workers = {f"worker-{index}" for index in range(3)}
        both = {name: {"run", "agent_step"} for name in workers}
        logged = spilled_runs(tmp_path / "logs" / "steps.jsonl")
        assert {name: logged.get(name) for name in workers} == both
        if up:
            received: dict[str, set[str]] = {}
            for span in collector.spans:
                received.setdefault(span.attributes["gen_ai.agent.name"].string_value, set()).add(span.name)
            assert all(len(received.get(name, ())) == 2 for name in workers), received
            durations = [p.count for p in collector.metrics if p.name == "gen_ai.invoke_agent.duration"]
            assert sum(durations) == 3, durations  # each worker's last metrics, sent as it exits
    if not up:
        spilled = spilled_runs(tmp_path / "logs" / "otlp-spill.jsonl")
        assert {name: spilled.get(name) for name in workers} == both
        assert "Traceback" not in result.stderr


def _script(tmp_path: Path, source: str) -> Path:
    script = tmp_path / "agent.py"
    script.write_text(source)
    return script
