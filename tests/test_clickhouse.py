"""The ClickHouse source against the Collector's ``otel_traces`` table, run by the ClickHouse
engine in-process (chdb): the same fleet read from JSONL and from the table must give the same
answers, command by command, field by field."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

chdb_session = pytest.importorskip("chdb.session", reason="chdb (the test extra) runs the SQL")

import analysis_logs as logs  # noqa: E402
import clickhouse_table as table  # noqa: E402
from steptrace import cli  # noqa: E402
from steptrace._pricing import Pricer  # noqa: E402
from steptrace.analysis import _clickhouse as ch  # noqa: E402
from steptrace.analysis import debug_run, diff, load, load_clickhouse, summarize  # noqa: E402
from steptrace.analysis._diff import side_stats  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
URL = "clickhouse://reader@clickhouse.internal:8123/otel?table=otel_traces"
SINCE = "2026-11-17T00:00Z"
FLEET_RUNS = 10_000  # the size: about 68,000 spans
KINDS = ["ok"] * 6 + ["tool_error", "loop", "model_error", "slow"]


def fleet_spans(count: int) -> list[logs.Span]:
    """Two releases (1.5.0 loops twice as often), failures in tools and the model, slow runs,
    and every 97th run crashed (no run span); a run every 30 s, so the fleet spans 4 days."""
    spans: list[logs.Span] = []
    for i in range(count):
        release = "1.5.0" if (i // 10) % 2 else "1.4.0"
        kind = KINDS[i % 10]
        if release == "1.5.0" and i % 10 in (1, 2):
            kind = "loop"
        spans += logs.make_run(
            f"run-{i:05d}",
            kind,
            release=release,
            seed=i,
            start_ns=logs.T0_NS + i * 30_000 * logs.MS,
            complete=i % 97 != 5,
        )
    return spans


@pytest.fixture(scope="module")
def engine() -> Iterator[table.ChdbDatabase]:
    session = chdb_session.Session()
    yield table.ChdbDatabase(session)
    session.close()


@pytest.fixture(scope="module")
def fleet(engine: table.ChdbDatabase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet as a JSONL step log and as otel_traces rows (database ``otel``)."""
    spans = fleet_spans(FLEET_RUNS)
    log = logs.write_jsonl(tmp_path_factory.mktemp("fleet") / "steps.jsonl", spans)
    table.create_table(engine, "otel.otel_traces")
    table.insert_rows(engine, table.rows_from_spans(spans), "otel.otel_traces")
    return log


@pytest.fixture
def database(engine: table.ChdbDatabase) -> Iterator[table.ChdbDatabase]:
    """Every ClickHouse URL goes to the engine for the test's duration."""
    ch.use_database(lambda url: engine)
    engine.queries.clear()
    engine.parameters.clear()
    yield engine
    ch.use_database(None)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    try:
        out: Any = json.loads(captured.out)
    except ValueError:
        out = captured.out
    return code, out, captured.err


def both(capsys: pytest.CaptureFixture[str], log: Path, *argv: str) -> tuple[Any, Any]:
    """(JSONL answer, ClickHouse answer) of one command; both must succeed."""
    code_a, from_log, err_a = run_cli(capsys, *argv, "--log", str(log))
    code_b, from_table, err_b = run_cli(capsys, *argv, "--source", URL, "--since", SINCE)
    assert (code_a, code_b) == (0, 0), (err_a, err_b)
    return from_log, from_table


def sent(database: table.ChdbDatabase) -> list[tuple[str, dict[str, str]]]:
    """(SQL, parameters as sent) of each query that read the spans table."""
    pairs = zip(database.queries, database.parameters, strict=True)
    return [(sql, parameters) for sql, parameters in pairs if "FROM otel.otel_traces" in sql]


def sample_run_ids() -> list[str]:
    """Runs of every kind, both releases, crashed ones, the first and the last."""
    picked = {0, 1, 2, 3, 5, 6, 7, 8, 9, 12, 102, 199, 5000, 5005, FLEET_RUNS - 1}
    return [f"run-{i:05d}" for i in sorted(picked)]


def test_every_run_has_the_same_aggregates(fleet: Path, database: table.ChdbDatabase) -> None:
    """A per-run number computed differently in SQL (steps, tokens, errors, loops, cost, stop
    reason, duration) would list the runs differently from the JSONL log."""
    from_log = load(fleet)
    from_table = load_clickhouse(URL, since=SINCE)
    assert len(from_log) == len(from_table) == FLEET_RUNS
    for a, b in zip(from_log, from_table, strict=True):
        assert a.to_dict() == b.to_dict()
        assert a.tool_durations_ms == b.tool_durations_ms
        assert a.record_count == b.record_count
    assert from_log.releases() == from_table.releases() == ["1.4.0", "1.5.0"]
    crashed = [r for r in from_table if not r.complete]
    assert len(crashed) == len([i for i in range(FLEET_RUNS) if i % 97 == 5])
    assert {r.stop_reason for r in from_table} == {"end_turn", "error", "max_steps", "incomplete"}
    assert any(r.repeated_call_count for r in from_table) and any(r.error_count for r in from_table)
    # One GROUP BY over the window, no per-span rows fetched; each tool call's duration only
    # when read (tool_durations_ms above), from the tool spans alone.
    selects = [q for q in database.queries if "FROM otel.otel_traces" in q]
    assert len(selects) == 2 and all("GROUP BY run_id" in q for q in selects)
    aggregate, durations = selects
    assert "AND SpanName = 'tool_execution'" in durations and "AND SpanName =" not in aggregate


def test_filters_percentiles_and_diff_agree(fleet: Path, database: table.ChdbDatabase) -> None:
    """runs() filters, the slow-run percentile and the release diff must not depend on the source."""
    from_log = load(fleet)
    from_table = load_clickhouse(URL, since=SINCE)
    for filters in (
        {"stop_reason": "max_steps"},
        {"release": "1.5.0", "min_steps": 3},
        {"tool": "search", "order_by": "duration", "limit": 25},
        {"since": "2026-11-19T00:00Z", "until": "2026-11-20T00:00Z"},
        {"slower_than_percentile": 95},
        {"status": "error", "ascending": False, "limit": 10},
    ):
        ids_log = [r.run_id for r in from_log.runs(**filters)]  # type: ignore[arg-type]
        ids_table = [r.run_id for r in from_table.runs(**filters)]  # type: ignore[arg-type]
        assert ids_log == ids_table and ids_log, filters
    report_log = diff(from_log.runs(release="1.4.0"), from_log.runs(release="1.5.0"))
    report_table = diff(from_table.runs(release="1.4.0"), from_table.runs(release="1.5.0"))
    assert report_log.to_dict() == report_table.to_dict()
    assert "repeated_call_rate" in report_table.verdict


def test_runs_filters_order_and_page_run_in_sql(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """runs() filters, order and limit are predicates, ORDER BY and LIMIT: only the matching
    page is read, and it is the page the JSONL path selects."""
    from_log = load(fleet)
    from_table = load_clickhouse(URL, since=SINCE)
    for filters in (
        {"min_duration": "2s", "max_duration": "20s", "order_by": "duration", "ascending": True},
        {"agent": ["weather-agent", "nobody"], "status": "ok", "ascending": False, "limit": 7},
        {"stop_reason": "incomplete"},
        {"stop_reason": "max_steps", "release": "1.5.0", "min_steps": 2},
        {"max_steps": 2, "order_by": "duration", "limit": 30},
        {"conversation": "no-such-conversation"},
    ):
        expected = [r.to_dict() for r in from_log.runs(**filters)]  # type: ignore[arg-type]
        assert [r.to_dict() for r in from_table.runs(**filters)] == expected, filters  # type: ignore[arg-type]
        assert expected or "conversation" in filters
    selects = [q for q in database.queries if "FROM otel.otel_traces" in q]
    assert len(selects) == 6 and all("count() OVER ()" in q for q in selects)
    sql, parameters = sent(database)[1]
    assert "\nLIMIT 7\n" in sql
    assert "ORDER BY started_us DESC, run_id DESC" in sql
    # The CLI's default page, the 20 most recent matching runs: 20 rows cross the wire.
    database.queries.clear()
    database.parameters.clear()
    from_log_out, from_table_out = both(capsys, fleet, "runs", "--json", "--status", "error")
    assert from_log_out == from_table_out and len(from_table_out) == 20
    ((sql, parameters),) = sent(database)
    assert "status = {filter_status:String}" in sql and parameters["filter_status"] == "error"
    assert "\nLIMIT 20\n" in sql


def test_diff_is_one_group_by_release(fleet: Path, database: table.ChdbDatabase) -> None:
    """diff's numbers per release come from the database (no row per run crosses the wire),
    equal to the numbers of the same runs read from JSONL, float for float."""
    from_log = load(fleet)
    from_table = load_clickhouse(URL, since=SINCE)
    for release in ("1.4.0", "1.5.0"):
        assert from_table.side_stats(release=release) == side_stats(from_log.runs(release=release))
    assert from_table.side_stats(release="0.9").runs == 0
    selects = [q for q in database.queries if "FROM otel.otel_traces" in q]
    assert len(selects) == 1 and "GROUP BY release" in selects[0]
    report = diff(from_table.side_stats(release="1.4.0"), from_table.side_stats(release="1.5.0"))
    assert report.to_dict() == diff(from_log.runs(release="1.4.0"), from_log.runs(release="1.5.0")).to_dict()
    assert len([q for q in database.queries if "FROM otel.otel_traces" in q]) == 1  # asked once
    # The runs filters narrow both sides in the same query; the percentile filter has no SQL
    # twin (runs and Python): the same numbers either way.
    for narrow in ({"min_steps": 3, "status": "ok"}, {"agent": ["weather-agent"], "max_duration": "9s"}):
        narrowed = from_table.side_stats(release="1.5.0", **narrow)
        assert narrowed == side_stats(from_log.runs(release="1.5.0", **narrow)), narrow  # type: ignore[arg-type]
        assert 0 < narrowed.runs < from_table.side_stats(release="1.5.0").runs
    assert any(
        "total_steps >= {filter_min_steps:Int64}" in sql and parameters["filter_min_steps"] == "3"
        for sql, parameters in sent(database)
    )
    slow = from_table.side_stats(release="1.4.0", slower_than_percentile=90)
    assert slow == side_stats(from_log.runs(release="1.4.0", slower_than_percentile=90))


def test_each_analysis_command_answers_the_same(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """runs, summary, debug, replay, diff, view and report from --source must print what they
    print from --log (JSON output compared field by field; HTML byte for byte)."""
    from_log, from_table = both(capsys, fleet, "runs", "--json", "--limit", "0")
    assert len(from_log) == FLEET_RUNS and from_log == from_table
    from_log, from_table = both(
        capsys, fleet, "runs", "--json", "--stop-reason", "error", "--order-by", "duration"
    )
    assert from_log == from_table and from_log
    from_log, from_table = both(
        capsys, fleet, "diff", "--json", "--baseline", "1.4.0", "--candidate", "1.5.0"
    )
    assert from_log == from_table
    for run_id in sample_run_ids():
        for command in ("summary", "debug", "replay"):
            from_log, from_table = both(capsys, fleet, command, run_id, "--json")
            assert from_log == from_table, (command, run_id)
        html_log, html_table = tmp_path / f"{run_id}-log.html", tmp_path / f"{run_id}-table.html"
        both(capsys, fleet, "view", run_id, "-o", str(html_log))
        run_cli(capsys, "view", run_id, "--source", URL, "--since", SINCE, "-o", str(html_table))
        assert html_log.read_bytes() == html_table.read_bytes()
    if "report" in cli.build_parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        report_log, report_table = tmp_path / "report-log.html", tmp_path / "report-table.html"
        # --since on both sides: the report prints its filters.
        code_a, _, err_a = run_cli(
            capsys, "report", "--log", str(fleet), "--since", SINCE, "-o", str(report_log)
        )
        code_b, _, err_b = run_cli(
            capsys, "report", "--source", URL, "--since", SINCE, "-o", str(report_table)
        )
        assert (code_a, code_b) == (0, 0), (err_a, err_b)
        assert report_log.read_bytes() == report_table.read_bytes()


def test_one_run_fetches_only_its_spans(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """debug RUN_ID must not aggregate the whole window nor read other runs' spans."""
    code, report, err = run_cli(capsys, "debug", "run-00007", "--json", "--source", URL, "--since", SINCE)
    assert code == 0, err
    assert [h["kind"] for h in report["hypotheses"]] == ["loop"]
    (aggregate, aggregate_values), (spans, span_values) = sent(database)
    for sql, parameters in ((aggregate, aggregate_values), (spans, span_values)):
        assert "SpanAttributes['steptrace.run_id'] = {run_id:String}" in sql
        assert parameters["run_id"] == "run-00007"
    assert "GROUP BY" not in spans
    # The spans query is bounded by the run's own time range (one partition, not the window).
    assert "Timestamp >= {lower:DateTime64(9, 'UTC')}" in spans
    assert span_values["lower"].startswith("2026-11-18 11:10:10")


def test_explain_prints_the_sql(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """--explain shows the statements sent, with their time and service predicates and limit."""
    code, _, err = run_cli(
        capsys, "runs", "--source", URL, "--since", "2026-11-19", "--until", "2026-11-20",
        "--service", "weather-svc", "--explain",
    )  # fmt: skip
    assert code == 0
    assert "-- steptrace: SQL sent to clickhouse://reader@clickhouse.internal:8123/otel" in err
    assert "FROM system.columns" in err
    assert "Timestamp >= {lower:DateTime64(9, 'UTC')}" in err
    assert '-- {lower} = "2026-11-18 23:00:00.000000"' in err  # 1 h margin
    assert "ServiceName = {service:String}" in err and '-- {service} = "weather-svc"' in err
    assert "GROUP BY run_id" in err and "SETTINGS max_execution_time = 60" in err
    code, _, err = run_cli(capsys, "runs", "--log", str(fleet), "--explain")
    assert code == 2 and "--explain" in err


def test_default_window_is_24_hours_with_a_note(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --since a query reads only the last day, and says so (the fleet is older)."""
    code, _, err = run_cli(capsys, "runs", "--source", URL)
    assert code == 1
    assert "note: reading runs started in the last 24 h" in err and "--since" in err
    code, _, err = run_cli(capsys, "debug", "run-00007", "--source", URL)
    assert code == 1 and "no run 'run-00007' in clickhouse://" in err


def test_service_keeps_one_service(fleet: Path, database: table.ChdbDatabase) -> None:
    """--service filters on the sort key's first column; another service gives no runs."""
    assert len(load_clickhouse(URL, since=SINCE, service="weather-svc")) == FLEET_RUNS
    assert len(load_clickhouse(URL, since=SINCE, service="billing")) == 0


def test_records_of_a_real_steptrace_run(
    engine: table.ChdbDatabase, database: table.ChdbDatabase, tmp_path: Path
) -> None:
    """Spans of a real run (SDK spans, converted as the exporter converts them) give the step
    records the JSONL exporter wrote for the same run."""
    log, rows_path = tmp_path / "steps.jsonl", tmp_path / "rows.json"
    script = tmp_path / "agent.py"
    script.write_text(REAL_AGENT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
        "STEPTRACE_JSONL_PATH": str(log),
        "ROWS": str(rows_path),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120)
    table.create_table(engine, "real.otel_traces")
    table.insert_rows(engine, json.loads(rows_path.read_text()), "real.otel_traces")

    (from_log,) = load(log)
    (from_table,) = load_clickhouse(
        "clickhouse://reader@localhost/real?table=otel_traces", since="2020-01-01"
    )
    assert from_log.to_dict() == from_table.to_dict()
    assert from_log.records() == from_table.records()
    assert summarize(from_table).tools_used == {"lookup": 3}
    assert debug_run(from_table).to_dict() == debug_run(from_log).to_dict()
    assert [r["type"] for r in from_table.records()].count("llm_call") == 3


REAL_AGENT = textwrap.dedent(
    """
    import json, os
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import steptrace
    import clickhouse_table

    @steptrace.llm_request(provider="openai", model="gpt-4o-mini")
    def call_model(turn):
        return {
            "type": "message", "id": f"msg_{turn}", "model": "gpt-4o-mini", "role": "assistant",
            "content": [{"type": "tool_use", "id": f"t{turn}", "name": "lookup",
                         "input": {"key": "same"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 100, "output_tokens": 10},
        }

    @steptrace.tool
    def lookup(key):
        if key == "boom":
            raise KeyError(key)
        return {"found": None}

    telemetry = steptrace.configure(service_name="real-agent")
    memory = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    with steptrace.agent_run(agent="looper", release="2.0.0") as run:
        for turn in range(3):
            with steptrace.agent_step():
                call_model(turn)
                try:
                    lookup(key="boom" if turn == 2 else "same")
                except KeyError:
                    pass
        run.stop_reason = "max_steps"
    telemetry.shutdown()
    rows = clickhouse_table.rows_from_readable_spans(memory.get_finished_spans())
    open(os.environ["ROWS"], "w").write(json.dumps(rows))
    """
)


# --- errors: one line, exit 2 ------------------------------------------------------------------


def test_missing_table_and_missing_database(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong table or database name is one line naming it, and create_schema."""
    for url in (URL.replace("table=otel_traces", "table=nope"), URL.replace("/otel?", "/nowhere?")):
        code, _, err = run_cli(capsys, "runs", "--source", url, "--since", SINCE)
        assert code == 2
        assert err.count("\n") == 1 and "no table" in err and "create_schema" in err


def test_schema_without_the_exporter_columns(
    engine: table.ChdbDatabase, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table of another shape names the columns it lacks instead of failing mid-query."""
    engine.execute("CREATE DATABASE IF NOT EXISTS other")
    engine.execute(
        "CREATE TABLE IF NOT EXISTS other.otel_traces (Timestamp DateTime64(9), TraceId String,"
        " SpanName String, Attributes Map(String, String)) ENGINE = MergeTree ORDER BY Timestamp"
    )
    url = "clickhouse://reader@localhost/other?table=otel_traces"
    code, _, err = run_cli(capsys, "summary", "run-1", "--source", url, "--since", SINCE)
    assert code == 2 and err.count("\n") == 1
    assert "lacks SpanId String, ParentSpanId String, ServiceName" in err
    assert "SpanAttributes Map(LowCardinality(String), String)" in err


def test_bad_urls(capsys: pytest.CaptureFixture[str]) -> None:
    """A password in the URL, a bad scheme or port: exit 2 before anything is sent."""
    for url, words in (
        ("clickhouse://reader:hunter2@localhost/otel", "STEPTRACE_CLICKHOUSE_PASSWORD"),
        ("clickhouse://reader@localhost:http/otel", "port is not a number"),
        ("clickhouse://reader@localhost/otel?table=a;drop", "not a plain identifier"),
        ("postgres://reader@localhost/otel", "expected clickhouse://"),
    ):
        code, _, err = run_cli(capsys, "runs", "--source", url)
        assert code == 2 and words in err and err.count("\n") == 1, err
        assert "hunter2" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    """The real client against a closed port: one line saying it cannot reach the server."""
    pytest.importorskip("clickhouse_connect", reason="the clickhouse extra")
    url = f"clickhouse://reader@127.0.0.1:{_free_port()}/otel?table=otel_traces"
    code, _, err = run_cli(capsys, "runs", "--source", url, "--since", SINCE)
    assert code == 2 and err.count("\n") == 1
    assert "cannot reach ClickHouse" in err and "8123" in err


class _RefusingServer(http.server.BaseHTTPRequestHandler):
    """Answers like a ClickHouse server whose user has another password."""

    def _refuse(self) -> None:
        body = (
            b"Code: 516. DB::Exception: reader: Authentication failed: password is incorrect, or"
            b" there is no user with such name. (AUTHENTICATION_FAILED) (version 24.8.4.13)\n"
        )
        self.send_response(516)
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args: Any) -> None:
        pass


def test_bad_credentials(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real client, refused by the server: one line naming the user and the variable."""
    pytest.importorskip("clickhouse_connect", reason="the clickhouse extra")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("STEPTRACE_CLICKHOUSE_PASSWORD", "wrong")
        url = f"clickhouse://reader@127.0.0.1:{server.server_port}/otel?table=otel_traces"
        code, _, err = run_cli(capsys, "runs", "--source", url, "--since", SINCE)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 2 and err.count("\n") == 1
    assert "refused the credentials of user 'reader'" in err and "STEPTRACE_CLICKHOUSE_PASSWORD" in err
    assert "wrong" not in err


def test_query_over_its_time_limit(engine: table.ChdbDatabase) -> None:
    """A query past max_execution_time is one line that says how to narrow it."""
    source = ch.ClickHouseSource(
        ch.ClickHouseURL.parse(URL + "&max_execution_time=1"),
        since=logs_time(),
        until=None,
        service=None,
        database=engine,
        pricer=Pricer(),
    )
    with pytest.raises(ch.ClickHouseError, match="max_execution_time=1s; narrow it with --since"):
        source.run_sql("SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3")


def logs_time() -> Any:
    from steptrace.analysis._runs import parse_time

    return parse_time(SINCE)


def test_collector_pipeline_writes_the_table_steptrace_reads() -> None:
    """collector-config/otelcol-clickhouse.yaml: a clickhouse exporter on a traces pipeline,
    the default table and schema, credentials from the environment, every variable documented."""
    yaml = pytest.importorskip("yaml")
    raw = (REPO / "collector-config" / "otelcol-clickhouse.yaml").read_text()
    config = yaml.safe_load(raw)
    exporter = config["exporters"]["clickhouse"]
    assert exporter["traces_table_name"] == "otel_traces" and "json" not in exporter
    for key in ("endpoint", "database", "username", "password", "create_schema"):
        assert str(exporter[key]).startswith("${env:"), key
    pipelines = config["service"]["pipelines"]
    assert any("clickhouse" in p["exporters"] and p["receivers"] == ["otlp"] for p in pipelines.values())
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], (kind, name)
    readme = (REPO / "collector-config" / "README.md").read_text()
    for variable in sorted(set(re.findall(r"\$\{env:([A-Z0-9_]+)", raw))):
        assert f"`{variable}`" in readme, variable


def test_readonly_users_and_the_server_limit(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """A readonly=1 user cannot set max_execution_time: the error says so and how to go on;
    ?max_execution_time=0 then sends no setting and the server's limit applies."""
    refused = RuntimeError(
        "Code: 164. DB::Exception: Cannot modify 'max_execution_time' setting in readonly mode. (READONLY)"
    )
    message = str(ch.translate_error(refused, ch.ClickHouseURL.parse(URL)))
    assert "readonly=1" in message and "?max_execution_time=0" in message
    code, _, err = run_cli(
        capsys, "runs", "--source", URL + "&max_execution_time=0", "--since", SINCE, "--explain"
    )
    assert code == 0, err
    assert "GROUP BY run_id" in err and "max_execution_time" not in err.split("\n", 1)[1]


# --- the table as a collector fills it, values as users pass them ------------------------------


def small_table(
    engine: table.ChdbDatabase,
    database_name: str,
    spans: list[logs.Span],
    tmp_path: Path,
    *,
    service: str = "weather-svc",
    retried: list[dict[str, Any]] | None = None,
) -> tuple[Path, str]:
    """(the JSONL log, the table's URL) of ``spans``; ``retried`` rows are inserted once more,
    in a batch of their own (a collector retrying a batch the server had already written)."""
    log = tmp_path / f"{database_name}.jsonl"
    log.write_text("".join(json.dumps(record) + "\n" for record in logs.records(spans, service)))
    name = f"{database_name}.otel_traces"
    engine.execute(f"DROP TABLE IF EXISTS {name}")
    table.create_table(engine, name)
    table.insert_rows(engine, table.rows_from_spans(spans, service), name)
    if retried:
        table.insert_rows(engine, retried, name)
    return log, f"clickhouse://reader@localhost/{database_name}?table=otel_traces"


def same_answers(
    capsys: pytest.CaptureFixture[str],
    log: Path,
    url: str,
    run_ids: list[str],
    tmp_path: Path,
    *,
    source_args: tuple[str, ...] = (),
    releases: tuple[str, str] = ("1.4.0", "1.5.0"),
) -> None:
    """runs (all, a page, filtered), diff, summary/debug/replay/view of ``run_ids`` and the
    report print the same from the log and from the table."""

    def answer(where: tuple[str, ...], *argv: str) -> Any:
        code, out, err = run_cli(capsys, *argv, *where)
        assert code == 0, (argv, where, err)
        return out

    jsonl, clickhouse = ("--log", str(log)), ("--source", url, "--since", SINCE, *source_args)
    for argv in (
        ("runs", "--json", "--limit", "0"),
        ("runs", "--json", "--limit", "5"),
        ("runs", "--json", "--status", "error", "--limit", "3"),
        ("runs", "--json", "--stop-reason", "incomplete"),
        ("diff", "--json", "--baseline", releases[0], "--candidate", releases[1]),
        *((command, run_id, "--json") for run_id in run_ids for command in ("summary", "debug", "replay")),
    ):
        assert answer(jsonl, *argv) == answer(clickhouse, *argv), argv
    for run_id in run_ids[:2]:
        pages = [tmp_path / "view-log.html", tmp_path / "view-table.html"]
        for where, page in zip((jsonl, clickhouse), pages, strict=True):
            answer(where, "view", run_id, "-o", str(page))
        assert pages[0].read_bytes() == pages[1].read_bytes(), run_id
    pages = [tmp_path / "report-log.html", tmp_path / "report-table.html"]
    answer((*jsonl, "--since", SINCE), "report", "-o", str(pages[0]))
    answer(clickhouse, "report", "-o", str(pages[1]))
    assert pages[0].read_bytes() == pages[1].read_bytes()


def test_a_span_inserted_twice_counts_once(
    engine: table.ChdbDatabase,
    database: table.ChdbDatabase,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A collector retry writes a batch twice: steps, tokens, errors, loops, cost and tool
    durations must not double (each trace id and span id counts once, as from JSONL)."""
    spans = fleet_spans(300)
    rows = table.rows_from_spans(spans)
    retried = [row for start in range(0, len(rows), 500) for row in rows[start : start + 500][:120]]
    log, url = small_table(engine, "retried", spans, tmp_path, retried=retried)
    twice = {row["SpanAttributes"]["steptrace.run_id"] for row in retried}
    assert len(twice) > 20
    from_log, from_table = load(log), load_clickhouse(url, since=SINCE)
    assert [r.to_dict() for r in from_log] == [r.to_dict() for r in from_table]
    assert [r.tool_durations_ms for r in from_log] == [r.tool_durations_ms for r in from_table]
    for release in ("1.4.0", "1.5.0"):
        assert load_clickhouse(url, since=SINCE).side_stats(release=release) == side_stats(
            from_log.runs(release=release)
        )
    run_ids = [*sorted(twice)[:3], "run-00005"]  # run-00005 crashed: no run span
    for run_id in run_ids:
        assert from_table.get(run_id).records() == from_log.get(run_id).records()  # type: ignore[union-attr]
    same_answers(capsys, log, url, run_ids, tmp_path)


def test_recorded_cost_is_a_number(
    engine: table.ChdbDatabase,
    database: table.ChdbDatabase,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """configure(record_cost=True) puts steptrace.llm.cost_usd on model calls: it comes back a
    float (report waterfalls, debug's costliest call), not the exporter's text."""
    spans = fleet_spans(30)
    for number, span in enumerate(spans):
        if span.name == "llm_request":
            span.attributes["steptrace.llm.cost_usd"] = [0.000123, 1e-7, 0.5, 2.0][number % 4]
    log, url = small_table(engine, "costs", spans, tmp_path)
    run = load_clickhouse(url, since=SINCE).get("run-00003")
    assert run is not None
    (record,) = [r for r in run.records() if r["type"] == "llm_call"][:1]
    assert type(record["cost_usd"]) is float
    same_answers(capsys, log, url, ["run-00003", "run-00005"], tmp_path)


def test_server_returning_named_tuples(
    fleet: Path,
    engine: table.ChdbDatabase,
    database: table.ChdbDatabase,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """enable_named_columns_in_function_tuple=1 (a profile setting; the default in some 24.x
    releases) makes tuples named, and the client returns them as dicts: runs, diff and debug
    must still answer as from JSONL (errors of crashed runs, tool calls, model calls)."""
    engine.execute("SET enable_named_columns_in_function_tuple = 1")
    try:
        for argv in (
            ("runs", "--json", "--limit", "0"),
            ("runs", "--json", "--status", "error"),
            ("diff", "--json", "--baseline", "1.4.0", "--candidate", "1.5.0"),
            ("debug", "run-00005", "--json"),
            ("summary", "run-00007", "--json"),
        ):
            from_log, from_table = both(capsys, fleet, *argv)
            assert from_log == from_table, argv
    finally:
        engine.execute("SET enable_named_columns_in_function_tuple = 0")
    assert any("Tuple(" in q or "tuple(" in q for q in database.queries)


HOSTILE_VALUES = [
    "ORDER BY Timestamp, SpanId",
    "x' OR 1=1 --",
    "line\nbreak",
    "back\\slash\\'",
    "tab\there\r\n",
    "{run_id:String} $since $$",
    "\\N",
    "élan 🙂 \u2028",
]


def test_hostile_run_ids_and_services(
    engine: table.ChdbDatabase,
    database: table.ChdbDatabase,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Run ids and --service values holding SQL keywords, quotes, newlines, backslashes and
    placeholders reach ClickHouse as bound parameters: every command finds exactly their rows."""
    spans = hostile_spans()
    for service in ("weather-svc", "svc\nwith 'newline' \\ ORDER BY Timestamp, SpanId"):
        log, url = small_table(engine, "hostile", spans, tmp_path, service=service)
        same_answers(capsys, log, url, HOSTILE_VALUES, tmp_path, source_args=("--service", service))
        for other in HOSTILE_VALUES:
            assert len(load_clickhouse(url, since=SINCE, service=other)) == 0
    statements = "\n".join(database.queries)
    for value in HOSTILE_VALUES[1:]:  # the first is also text of steptrace's own SQL
        assert value not in statements  # parameters, never text of the statement


def hostile_spans() -> list[logs.Span]:
    """Runs whose ids are HOSTILE_VALUES (and those with a suffix), of every kind; one crashed."""
    spans: list[logs.Span] = []
    for i, run_id in enumerate(HOSTILE_VALUES * 2):
        spans += logs.make_run(
            run_id if i < len(HOSTILE_VALUES) else f"{run_id}-{i}",
            KINDS[i % len(KINDS)],
            release=("1.4.0", "1.5.0")[i % 2],
            seed=i,
            start_ns=logs.T0_NS + i * 30_000 * logs.MS,
            complete=i != 3,
        )
    return spans


def test_the_client_over_http(
    engine: table.ChdbDatabase, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The real clickhouse-connect client over HTTP (the engine behind ClickHouse's HTTP
    interface): hostile run ids and service as param_ values, a batch inserted twice, tuples
    named by the server (dicts from the client): every command answers as from JSONL."""
    pytest.importorskip("clickhouse_connect", reason="the clickhouse extra")
    service = "svc 'quoted'\nORDER BY Timestamp, SpanId \\"
    spans = hostile_spans()
    retried = table.rows_from_spans(spans[:40], service)
    log, url = small_table(engine, "overhttp", spans, tmp_path, service=service, retried=retried)
    engine.execute("SET enable_named_columns_in_function_tuple = 1")
    try:
        with table.ChdbHttpServer(engine.session) as server:
            url = url.replace("@localhost/", f"@127.0.0.1:{server.port}/")
            same_answers(capsys, log, url, HOSTILE_VALUES[:4], tmp_path, source_args=("--service", service))
    finally:
        engine.execute("SET enable_named_columns_in_function_tuple = 0")
    statements = [sql for sql, _ in server.requests if "FROM overhttp.otel_traces" in sql]
    assert statements and all(service not in sql for sql in statements)
    assert any(parameters.get("run_id") == "line\\\nbreak" for _, parameters in server.requests)


def test_extreme_windows(
    fleet: Path, database: table.ChdbDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since/--until outside what ClickHouse's DateTime64 holds (1900..2262) read the whole
    table, as from JSONL, instead of failing."""
    for window in (
        ("--since", "0001-01-01"),
        ("--since", "0001-01-01", "--until", "9999-12-31T23:59Z"),
        ("--since", "1899-12-31T23:30Z", "--until", "2262-04-12"),
    ):
        code, from_table, err = run_cli(capsys, "runs", "--json", "--limit", "0", "--source", URL, *window)
        assert code == 0, (window, err)
        code, from_log, err = run_cli(capsys, "runs", "--json", "--limit", "0", "--log", str(fleet), *window)
        assert code == 0, err
        assert from_table == from_log and len(from_table) == FLEET_RUNS, window
    code, _, err = run_cli(capsys, "debug", "run-00007", "--json", "--source", URL, "--since", "0001-01-01")
    assert code == 0, err
    for window in (("--since", "2300-01-01"), ("--since", "0001-01-01", "--until", "1800-01-01")):
        answers = [
            run_cli(capsys, "runs", "--json", *where, *window)[:2]
            for where in (("--source", URL), ("--log", str(fleet)))
        ]
        assert answers[0] == answers[1] and answers[0][0] != 3, (window, answers)


def test_bad_url_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    """A URL parameter that is not a number, out of range, unknown or empty: exit 2, one line."""
    base = "clickhouse://reader@localhost/otel"
    for url, words in (
        (base + "?max_execution_time=\u00b2", "max_execution_time"),
        (base + "?max_execution_time=\uff11\uff10", "max_execution_time"),
        (base + "?max_execution_time=-1", "max_execution_time"),
        (base + "?max_execution_time=1e3", "max_execution_time"),
        (base + "?max_execution_time=99999999999999999999999", "max_execution_time"),
        (base + "?table=", "table"),
        (base + "?tabel=otel_traces", "tabel"),
        (base + "?table=otel_traces&table=x%0Ay", "table"),
        ("clickhouse://reader@[::1/otel", "not a ClickHouse URL"),
        ("clickhouse://reader@localhost:99999/otel", "port"),
        ("clickhouse://reader@localhost:\u00b2/otel", "port"),
        ("clickhouse://reader@/otel", "host"),
        ("clickhouse://reader@localhost/ot%0Ael", "database"),
    ):
        code, _, err = run_cli(capsys, "runs", "--source", url, "--since", SINCE)
        assert code == 2 and words in err and err.count("\n") == 1, (url, err)


def test_reruns_are_left_out_and_served_calls_cost_nothing(
    engine: table.ChdbDatabase,
    database: table.ChdbDatabase,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A rerun's run span carries steptrace.rerun_of and its served model calls
    steptrace.rerun.served: the table leaves it out of runs/diff unless --reruns and prices its
    served calls at $0, exactly as the log does."""
    spans = fleet_spans(40)
    reruns = {f"run-{i:05d}" for i in (3, 11, 22)}
    for span in spans:
        if span.attributes.get("steptrace.run_id") in reruns:
            if span.name == "agent_run":
                span.attributes["steptrace.rerun_of"] = "run-00000"
            elif span.name == "llm_request":
                span.attributes["steptrace.rerun.served"] = True
    log, url = small_table(engine, "reruns", spans, tmp_path)
    answers = {}
    for argv in (
        ("runs", "--json", "--limit", "0"),
        ("runs", "--json", "--limit", "0", "--reruns"),
        ("diff", "--json", "--baseline", "1.4.0", "--candidate", "1.5.0"),
        ("diff", "--json", "--baseline", "1.4.0", "--candidate", "1.5.0", "--reruns"),
    ):
        code_a, from_log, err_a = run_cli(capsys, *argv, "--log", str(log))
        code_b, from_table, err_b = run_cli(capsys, *argv, "--source", url, "--since", SINCE)
        assert (code_a, code_b) == (0, 0), (err_a, err_b)
        assert from_table == from_log, argv
        answers[argv[:1] + argv[-1:]] = from_table
    assert not reruns & {run["run_id"] for run in answers["runs", "0"]}
    shown = {run["run_id"]: run for run in answers["runs", "--reruns"]}
    assert reruns <= set(shown)
    assert all(shown[run_id]["cost_usd"] in (0.0, None) for run_id in reruns)
    assert answers["diff", "1.5.0"] != answers["diff", "--reruns"]
