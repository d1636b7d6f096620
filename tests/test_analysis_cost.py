"""Cost per model call and per run: genai-prices' own calc_price is the reference."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from analysis_logs import MS, T0_NS, Span, standard_log, write_jsonl, write_otlp
from steptrace import _attributes as A
from steptrace.analysis import Pricer, PricesError, debug_run, diff, load, summarize
from steptrace.cli import main

REPO = Path(__file__).resolve().parents[1]
T0 = datetime.fromtimestamp(T0_NS / 1e9, tz=timezone.utc)


def library_price(model: str, provider: str, when: datetime, **usage: int) -> float:
    """What genai-prices says, with its own lookup and its own Usage."""
    return float(
        calc_price(Usage(**usage), model, provider_id=provider, genai_request_timestamp=when).total_price
    )


def run_spans(
    run_id: str,
    calls: list[dict[str, Any]],
    *,
    start_ns: int = T0_NS,
    release: str = "1.0.0",
    agent: str = "pricing-agent",
) -> list[Span]:
    """A run with one llm_request per ``calls`` entry: model, provider, usage attributes."""
    rng = random.Random(run_id)
    trace, root = rng.getrandbits(128), rng.getrandbits(64) | 1
    spans = []
    clock = start_ns
    for number, call in enumerate(calls, 1):
        attributes: dict[str, Any] = {A.RUN_ID: run_id, A.STEP: number, A.GEN_AI_REQUEST_MODEL: call["model"]}
        if call.get("provider"):
            attributes[A.GEN_AI_PROVIDER_NAME] = call["provider"]
        for key, attribute in (
            ("input", A.GEN_AI_USAGE_INPUT_TOKENS),
            ("output", A.GEN_AI_USAGE_OUTPUT_TOKENS),
            ("cache_read", A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
            ("cache_creation", A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
            ("reasoning", A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
        ):
            if key in call:
                attributes[attribute] = call[key]
        spans.append(
            Span(
                A.SPAN_LLM_REQUEST,
                trace,
                rng.getrandbits(64) | 1,
                root,
                clock,
                clock + 200 * MS,
                "ok",
                None,
                attributes,
            )
        )
        clock += 250 * MS
    spans.append(
        Span(
            A.SPAN_AGENT_RUN,
            trace,
            root,
            None,
            start_ns,
            clock,
            "ok",
            None,
            {
                A.RUN_ID: run_id,
                A.GEN_AI_AGENT_NAME: agent,
                A.GEN_AI_AGENT_VERSION: release,
                A.STOP_REASON: "end_turn",
            },
        )
    )
    return spans


# openai: cached prompt tokens and reasoning tokens; anthropic: cache reads and writes, and one
# prompt past the 200k tier where the per-token price goes up. Token counts as steptrace records
# them: input includes cache reads and writes (the GenAI conventions, and genai-prices' too).
def call(model: str, provider: str, inputs: int, outputs: int, **more: int) -> dict[str, Any]:
    return {"model": model, "provider": provider, "input": inputs, "output": outputs, **more}


CALLS = [
    call("gpt-4o", "openai", 12_000, 800, cache_read=9_000),
    call("o3-mini", "openai", 3_000, 2_500, cache_read=1_024, reasoning=2_000),
    call("claude-sonnet-4-5-20250929", "anthropic", 5_135, 600, cache_read=5_000, cache_creation=100),
    call("claude-sonnet-4-5", "anthropic", 250_000, 1_000, cache_read=200_000, cache_creation=10_000),
    call("claude-3-5-haiku-latest", "anthropic", 900, 90),
]


def expected_cost(call: dict[str, Any], when: datetime) -> float:
    return library_price(
        call["model"],
        call["provider"],
        when,
        input_tokens=call["input"],
        output_tokens=call["output"],
        cache_read_tokens=call.get("cache_read", 0),
        cache_write_tokens=call.get("cache_creation", 0),
        output_reasoning_tokens=call.get("reasoning", 0),
    )


@pytest.fixture
def priced_log(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "steps.jsonl", run_spans("run-priced", CALLS))


def test_each_call_and_the_run_cost_what_calc_price_says(priced_log: Path) -> None:
    """A wrong cache or reasoning mapping (or counting cached tokens twice) would misprice calls."""
    (run,) = load(priced_log)
    calls = [r for r in run.records() if r["type"] == "llm_call"]
    expected = [expected_cost(call, T0) for call in CALLS]
    assert [r["cost_usd"] for r in calls] == pytest.approx(expected, rel=1e-12)
    assert run.cost_usd == pytest.approx(sum(expected), rel=1e-12)
    assert run.unpriced_llm_calls == 0
    # Anthropic's 5,000 cached reads cost a tenth of fresh input: far below a naive 5,135 x $3.
    assert calls[2]["cost_usd"] < 5_135 * 3e-6
    summary = summarize(run)
    assert (summary.cost_usd, summary.unpriced_llm_calls) == (run.cost_usd, 0)
    assert run.to_dict()["cost_usd"] == run.cost_usd


def test_the_fast_path_agrees_with_calc_price_on_random_usage() -> None:
    """Pricing from cached per-token prices would drift from the library somewhere (tiers, caches)."""
    pricer = Pricer()
    rng = random.Random(7)
    when = "2026-11-18T10:00:00.000000Z"
    at = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)
    models = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "o3-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1"),
        ("anthropic", "claude-3-5-haiku-latest"),
    ]
    for provider, model in models:
        for _ in range(150):
            inputs = rng.choice([rng.randint(0, 5_000), rng.randint(190_000, 400_000)])
            cache_read = rng.randint(0, inputs // 2)
            cache_write = rng.randint(0, (inputs - cache_read) // 2)
            outputs = rng.randint(0, 4_000)
            reasoning = rng.randint(0, outputs)
            got = pricer.price(provider, model, inputs, outputs, cache_read, cache_write, reasoning, when)
            want = library_price(
                model,
                provider,
                at,
                input_tokens=inputs,
                output_tokens=outputs,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                output_reasoning_tokens=reasoning,
            )
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (provider, model, inputs, outputs)


def test_unknown_models_are_null_and_counted_never_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A private model would show as $0, or hide that the run cost more than the sum shown."""
    known = {"model": "gpt-4o", "provider": "openai", "input": 1_000, "output": 100}
    private = {"model": "acme-private-llm-7b", "provider": "openai", "input": 1_000, "output": 100}
    no_usage = {"model": "gpt-4o", "provider": "openai"}  # the response reported no usage
    log = write_jsonl(
        tmp_path / "steps.jsonl",
        run_spans("run-partial", [known, private, no_usage])
        + run_spans("run-unpriced", [private], start_ns=T0_NS + 60_000 * MS),
    )
    runs = load(log)
    partial, unpriced = runs.get("run-partial"), runs.get("run-unpriced")
    assert partial is not None and unpriced is not None
    assert partial.cost_usd == pytest.approx(expected_cost(known, T0))
    assert partial.unpriced_llm_calls == 2
    assert [r.get("cost_usd") for r in partial.records() if r["type"] == "llm_call"][1:] == [None, None]
    assert (unpriced.cost_usd, unpriced.unpriced_llm_calls) == (None, 1)

    assert main(["runs", "--log", str(log), "--json"]) == 0
    rows = {row["run_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["run-unpriced"]["cost_usd"] is None and rows["run-unpriced"]["unpriced_llm_calls"] == 1
    assert rows["run-partial"]["unpriced_llm_calls"] == 2
    assert main(["runs", "--log", str(log)]) == 0
    table = capsys.readouterr().out.splitlines()
    cost_at = table[0].index("COST")
    cells = {line.split()[0]: line for line in table[1:]}
    assert "≥$0.0035" in cells["run-partial"]  # at least: two calls are not in it
    assert cells["run-unpriced"][: cost_at + 4].split()[-1] == "-"
    assert main(["summary", "run-unpriced", "--log", str(log)]) == 0
    assert "cost         - (1 unpriced)" in capsys.readouterr().out


def test_a_prices_file_adds_and_overrides_prices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Private or discounted models could not be priced, or --prices would be ignored."""
    calls = [
        call("acme-private-llm-7b", "openai", 2_000_000, 500_000, cache_read=1_000_000),
        call("gpt-4o", "openai", 1_000_000, 1_000_000),
    ]
    log = write_jsonl(tmp_path / "steps.jsonl", run_spans("run-private", calls))
    prices = {
        "acme-private-llm-7b": {"input_mtok": 1.0, "output_mtok": 2.0, "cache_read_mtok": 0.1},
        "openai": {"gpt-4o": {"input_mtok": 2.0, "output_mtok": 8.0}},  # a negotiated discount
    }
    # 1M uncached x $1 + 1M cached x $0.1 + 0.5M out x $2; then 1M x $2 + 1M x $8.
    want = [1.0 + 0.1 + 1.0, 2.0 + 8.0]
    (run,) = load(log, prices=prices)
    assert [r["cost_usd"] for r in run.records() if r["type"] == "llm_call"] == pytest.approx(want)
    assert run.cost_usd == pytest.approx(sum(want)) and run.unpriced_llm_calls == 0

    path = tmp_path / "prices.json"
    path.write_text(json.dumps(prices))
    (from_file,) = load(log, prices=path)
    assert from_file.cost_usd == pytest.approx(sum(want))
    # Accepted after the sub-command, like --log.
    assert main(["summary", "run-private", "--log", str(log), "--prices", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cost_usd"] == pytest.approx(sum(want))
    assert main(["summary", "run-private", "--log", str(log), "--json"]) == 0
    without = json.loads(capsys.readouterr().out)
    assert without["unpriced_llm_calls"] == 1 and without["cost_usd"] == pytest.approx(2.5 + 10.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["gpt-4o"]', "must be a JSON object"),
        ('{"acme": {"input_mtk": 1.0}}', "input_mtk"),
        ('{"acme": {"input_mtok": -1}}', "non-negative number"),
        ('{"acme": {"input_mtok": "cheap"}}', "non-negative number"),
        ('{"acme": 3}', "must map to an object"),
        ('{"acme": {}}', "no prices given"),
    ],
)
def test_a_bad_prices_file_is_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    """A typo in the prices file would crash with a traceback or be silently ignored."""
    log = standard_log(tmp_path)
    path = tmp_path / "prices.json"
    path.write_text(content)
    assert main(["runs", "--log", str(log), "--prices", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err
    with pytest.raises(PricesError, match=message.split(maxsplit=1)[0]):
        load(log, prices=path)


def test_a_missing_prices_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --prices path would be ignored and every run priced at list price."""
    log = standard_log(tmp_path)
    assert (
        main(
            [
                "diff",
                "--baseline",
                "1.0.0",
                "--candidate",
                "1.1.0",
                "--log",
                str(log),
                "--prices",
                "nope.json",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.json: cannot read prices file" in err


def test_old_logs_without_cost_fields_get_costs(tmp_path: Path) -> None:
    """Logs written before cost existed (JSONL or the Collector's OTLP JSON) would have no cost."""
    jsonl = standard_log(tmp_path)
    assert "cost" not in jsonl.read_text()
    from analysis_logs import standard_spans

    otlp = write_otlp(tmp_path / "otlp.json", standard_spans())
    for path in (jsonl, otlp):
        run = load(path).get("run-ok-1")
        assert run is not None
        calls = [r for r in run.records() if r["type"] == "llm_call"]
        # gpt-4o-mini-2024-07-18: 120 in x $0.15/Mtok + 30 out x $0.60/Mtok per call
        one = library_price("gpt-4o-mini-2024-07-18", "openai", T0, input_tokens=120, output_tokens=30)
        assert [r["cost_usd"] for r in calls] == pytest.approx([one] * len(calls))
        assert run.cost_usd == pytest.approx(one * len(calls))


def test_pricing_makes_no_network_request(priced_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pricing would fetch price updates at analysis time (offline machines, air-gapped CI)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    (run,) = load(priced_log)
    assert run.cost_usd is not None and run.unpriced_llm_calls == 0


def test_debug_names_the_run_cost_and_its_most_expensive_call(
    priced_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`steptrace debug` would not say what the run cost or which call cost most."""
    (run,) = load(priced_log)
    report = debug_run(run)
    costs = [expected_cost(call, T0) for call in CALLS]
    assert report.cost_usd == pytest.approx(sum(costs))
    assert report.most_expensive_call is not None
    assert report.most_expensive_call.step == costs.index(max(costs)) + 1  # the 250k-token prompt
    assert report.most_expensive_call_cost_usd == pytest.approx(max(costs))
    assert main(["debug", "run-priced", "--log", str(priced_log)]) == 0
    out = capsys.readouterr().out
    assert (
        "cost:          $" in out
        and "most expensive call: llm_call claude-sonnet-4-5 (#4, agent pricing-agent)" in out
    )
    assert main(["debug", "run-priced", "--log", str(priced_log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["most_expensive_call"]["step"] == 4 and data["cost_usd"] == pytest.approx(sum(costs))


def test_diff_compares_cost_per_run_with_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A release that doubled spend per run would pass the diff unremarked."""
    cheap = {"model": "gpt-4o", "provider": "openai", "input": 10_000, "output": 1_000}
    spans: list[Span] = []
    for i in range(4):
        spans += run_spans(f"base-{i}", [cheap], release="1.0.0", start_ns=T0_NS + i * 60_000 * MS)
        spans += run_spans(
            f"cand-{i}", [cheap, cheap], release="2.0.0", start_ns=T0_NS + (10 + i) * 60_000 * MS
        )
    log = write_jsonl(tmp_path / "steps.jsonl", spans)
    runs = load(log)
    report = diff(runs.runs(release="1.0.0"), runs.runs(release="2.0.0"))
    (cost,) = [m for m in report.metrics if m.name == "cost_per_run"]
    one = expected_cost(cheap, T0)
    assert cost.unit == "usd"
    assert [cost.baseline, cost.candidate] == pytest.approx([one, 2 * one])
    assert cost.direction == "worse" and cost.verdict.startswith("worse: up $0.035, 100%")
    assert "cost_per_run" in report.verdict
    assert main(["diff", "--baseline", "1.0.0", "--candidate", "2.0.0", "--log", str(log)]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cost_per_run")]
    assert line.split()[1:5] == ["$0.035", "$0.07", "+$0.035", "worse:"]


AGENT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import steptrace
    import sdk_fakes as F

    telemetry = steptrace.configure(service_name="priced", jsonl_path={log!r}, record_cost={record_cost})
    steptrace.instrument_openai()
    steptrace.instrument_anthropic()
    openai_client = F.openai_client(F.Script(F.json_reply(F.chat_completion(
        model="o3-mini-2025-01-31", prompt_tokens=4000, completion_tokens=900,
        cached_tokens=3072, reasoning_tokens=640))))
    anthropic_client = F.anthropic_client(F.Script(F.json_reply(F.anthropic_message(
        input_tokens=15, output_tokens=6, cache_read_input_tokens=100,
        cache_creation_input_tokens=20))))
    with steptrace.agent_run(agent="priced", release="1.0.0"):
        with steptrace.agent_step():
            openai_client.chat.completions.create(
                model="o3-mini", messages=[{{"role": "user", "content": "hi"}}])
        with steptrace.agent_step():
            anthropic_client.messages.create(
                model="claude-sonnet-4-5", max_tokens=64,
                messages=[{{"role": "user", "content": "hi"}}])
    telemetry.shutdown()
    print("genai_prices" in sys.modules)  # only record_cost loads the price data while tracing
    """
)


def test_real_sdk_calls_are_priced_from_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real openai and anthropic SDKs' usage (cached, reasoning, cache writes) would be priced wrong."""
    log = tmp_path / "steps.jsonl"
    script = tmp_path / "agent.py"
    script.write_text(AGENT.format(tests=str(REPO / "tests"), log=str(log), record_cost=False))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    done = subprocess.run(
        [sys.executable, str(script)], env=env, check=True, timeout=120, capture_output=True, text=True
    )
    assert done.stdout.strip() == "False"
    assert "cost_usd" not in log.read_text()  # off by default: the hot path does not price

    (run,) = load(log)
    calls = [r for r in run.records() if r["type"] == "llm_call"]
    when = datetime.fromisoformat(calls[0]["started_at"].replace("Z", "+00:00"))
    openai_cost = library_price(
        "o3-mini-2025-01-31",
        "openai",
        when,
        input_tokens=4000,  # OpenAI's prompt_tokens include the cached ones
        cache_read_tokens=3072,
        output_tokens=900,  # and completion_tokens the reasoning ones
        output_reasoning_tokens=640,
    )
    anthropic_cost = library_price(
        "claude-sonnet-4-5-20250929",
        "anthropic",
        when,
        input_tokens=15 + 100 + 20,  # Anthropic's input_tokens exclude the cache
        cache_read_tokens=100,
        cache_write_tokens=20,
        output_tokens=6,
    )
    assert [r["cost_usd"] for r in calls] == pytest.approx([openai_cost, anthropic_cost], rel=1e-12)
    assert run.cost_usd == pytest.approx(openai_cost + anthropic_cost, rel=1e-12)
    assert main(["runs", "--log", str(log), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["cost_usd"] == pytest.approx(openai_cost + anthropic_cost, rel=1e-12)


def test_analysis_imports_genai_prices_only_to_price(tmp_path: Path) -> None:
    """Importing steptrace or its CLI would pay for loading the price data."""
    code = "import sys, steptrace, steptrace.analysis, steptrace.cli; print('genai_prices' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_record_cost_puts_the_same_figure_on_the_span_and_its_record(tmp_path: Path) -> None:
    """configure(record_cost=True) would leave production backends without cost, or disagree
    with what the analysis says."""
    log = tmp_path / "steps.jsonl"
    script = tmp_path / "agent.py"
    script.write_text(AGENT.format(tests=str(REPO / "tests"), log=str(log), record_cost=True))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120, capture_output=True)
    raw = [json.loads(line) for line in log.read_text().splitlines()]
    recorded = [r["cost_usd"] for r in raw if r["type"] == "llm_call"]
    (run,) = load(log)
    analysed = [r["cost_usd"] for r in run.records() if r["type"] == "llm_call"]
    assert len(recorded) == 2 and all(isinstance(c, float) and c > 0 for c in recorded)
    assert recorded == pytest.approx(analysed, rel=1e-12)


def test_without_genai_prices_costs_are_unknown_and_the_cli_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the cost extra every run would show $0, or a COST of - with no explanation."""
    from steptrace import _pricing as _cost

    monkeypatch.setattr(_cost, "_genai_prices", lambda: None)
    log = standard_log(tmp_path)
    run = load(log).get("run-ok-1")
    assert run is not None and run.cost_usd is None and run.unpriced_llm_calls == run.llm_call_count > 0
    assert main(["runs", "--log", str(log)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'steptrace[cost]'" in err
