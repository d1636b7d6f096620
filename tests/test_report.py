"""`steptrace report`: the figures it computes, the file it writes, and what it embeds."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from analysis_logs import MS, T0_NS, make_run, write_jsonl
from report_logs import (
    HOSTILE_AGENT,
    HOSTILE_ERROR,
    HOSTILE_MODEL,
    HOSTILE_TOOL,
    PAYLOADS,
    RUNS_PER_RELEASE,
    fleet_log,
)
from steptrace.analysis import diff, load
from steptrace.analysis._report import build_report, render_report, run_cost, write_report
from steptrace.analysis._stats import percentile
from steptrace.cli import main


def _json_script(page: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    assert match is not None, element_id
    return json.loads(match.group(1))


def test_release_figures_match_the_runs_and_the_diff(tmp_path: Path) -> None:
    """The per-release headline would misstate error rate, loops, latency or tokens, or show a
    verdict other than `steptrace diff`'s."""
    runs = load(fleet_log(tmp_path))
    report = build_report(runs)
    assert [r.release for r in report.releases] == ["1.4.0", "1.5.0"]
    for figures in report.releases:
        group = runs.runs(release=figures.release)
        assert figures.runs == len(group) == RUNS_PER_RELEASE
        assert figures.failed_rate == sum(r.status == "error" for r in group) / len(group)
        assert figures.with_errors_rate == sum(r.error_count > 0 or r.failed for r in group) / len(group)
        assert figures.loop_rate == sum(r.repeated_call_count > 0 for r in group) / len(group)
        assert figures.p95_duration_ms == percentile([r.duration_ms for r in group], 95)
        assert figures.tokens_per_run == sum(r.total_tokens for r in group) / len(group)
        assert figures.runs_without_usage == 0
    first, second = report.releases
    assert first.changes == {} and first.verdict is None
    expected = diff(runs.runs(release="1.4.0"), runs.runs(release="1.5.0"), baseline_label="1.4.0",
                    candidate_label="1.5.0")  # fmt: skip
    assert second.verdict == expected.verdict
    assert second.changes["failed_rate"].direction == "worse"
    assert second.changes["repeated_call_rate"].direction == "worse"
    page = render_report(report)
    assert 'data-metric="failed_rate" title="' + html.escape(expected.metrics[0].verdict) in page
    assert 'data-metric="with_errors_rate" title="' + html.escape(expected.metrics[1].verdict) in page


def test_lists_charts_and_tools(tmp_path: Path) -> None:
    """The slowest runs, the max_steps runs, the failing tools or the time buckets would be wrong."""
    runs = load(fleet_log(tmp_path))
    report = build_report(runs)
    assert [r.run_id for r in report.slowest] == [r.run_id for r in runs.runs(order_by="duration")[:10]]
    assert all(r.stop_reason == "max_steps" for r in report.max_steps)
    assert len(report.max_steps) == min(10, len(runs.runs(stop_reason="max_steps")))
    # 60 runs 20 minutes apart: 20 hours, so hour buckets, 3 runs each, none empty.
    assert report.bucket == "hour"
    assert sum(b.runs for b in report.buckets) == len(runs) and len(report.buckets) == 20
    tools = {t.tool: t for t in report.tools}
    assert set(tools) == {"get_weather", "book_hotel", "search"}
    failed = sum(
        1 for run in runs for r in run.records() if r["type"] == "tool_call" and r["status"] == "error"
    )
    assert sum(t.failures for t in tools.values()) == failed > 0
    assert tools["search"].failures == 0
    assert tools["get_weather"].last_error == "ValueError: no such city"
    for tool in tools.values():
        for run_id in tool.failing_run_ids:
            run = runs.get(run_id)
            assert run is not None and tool.tool in run.tools and run.error_count > 0
    page = render_report(report)
    for chart in ("chart-runs", "chart-error-rate", "chart-p95", "chart-cost", "chart-tool-calls",
                  "chart-tool-failures", "chart-tool-p95"):  # fmt: skip
        assert f'id="{chart}"' in page


def test_page_is_self_contained_and_embeds_the_listed_runs(tmp_path: Path) -> None:
    """The page would load something from the network, lose runs from its table, or miss the
    waterfall of a run it lists."""
    runs = load(fleet_log(tmp_path))
    written = write_report(runs, tmp_path / "report.html")
    page = written.path.read_text(encoding="utf-8")
    assert written.bytes == len(page.encode())
    assert not re.search(r"(src|href)=\"(?!#)", page)  # only in-page links
    assert "http://" not in page and "https://" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and "default-src 'none'" in html.unescape(csp.group(1))
    assert page.count("<script") == 3  # the table data, the timelines, the page's script
    data = _json_script(page, "report-data")
    assert [row[0] for row in data["rows"]] == [r.run_id for r in runs]
    timelines = _json_script(page, "report-timelines")
    assert set(timelines) == {r.run_id for r in runs}  # a small report embeds every run
    listed = build_report(runs)
    for run in [*listed.slowest, *listed.max_steps]:
        assert f'data-run="{run.run_id}"' in page
        assert timelines[run.run_id].startswith("<!doctype html>")


def test_costs_are_the_runs_and_unpriced_is_a_dash(tmp_path: Path) -> None:
    """A run with no priced call would show $0 instead of "—"."""
    runs = load(fleet_log(tmp_path))
    page = render_report(build_report(runs))
    rows = {row[0]: row for row in _json_script(page, "report-data")["rows"]}
    for run in runs:
        assert rows[run.run_id][7] == run_cost(run)
    # A log whose only model call failed (no usage): nothing to price anywhere.
    path = write_jsonl(tmp_path / "unpriced.jsonl", make_run("only", "model_error"))
    unpriced = load(path)
    assert run_cost(next(iter(unpriced))) is None
    page = render_report(build_report(unpriced))
    assert "cost — (not priced)" in page
    assert _json_script(page, "report-data")["rows"][0][7] is None
    assert re.search(r"<td class=\"num\">— ", page)  # the headline's cost per run


def test_hostile_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    """A tool, agent, model or error text from the logs would land in the page as live markup."""
    runs = load(fleet_log(tmp_path, hostile=True))
    page = write_report(runs, tmp_path / "report.html").path.read_text(encoding="utf-8")
    for payload in PAYLOADS.values():
        assert payload not in page
    assert "window.__pwned" in page  # present, as text, not dropped
    assert page.count("<script") == 3
    assert page.count("</script>") == 3
    assert "<img" not in page and "<!--" not in page
    data = _json_script(page, "report-data")
    assert HOSTILE_AGENT in data["agents"] and HOSTILE_TOOL in data["tools"]  # set as textContent
    # In the HTML: the tool and the error in the failing-tools list, the model in the waterfall.
    assert html.escape(HOSTILE_TOOL) in page and html.escape(HOSTILE_ERROR) in page
    timelines = _json_script(page, "report-timelines")
    assert any(html.escape(HOSTILE_MODEL) in timeline for timeline in timelines.values())


def test_size_stays_aggregate_at_scale(tmp_path: Path) -> None:
    """A big fleet would make a page that grows with records (every run's detail), not runs."""
    spans = []
    for i in range(1500):
        kind = ("ok", "ok", "tool_error", "loop", "ok", "model_error")[i % 6]
        spans += make_run(f"run-{i:05d}", kind, release=f"1.{i // 500}.0", seed=i,
                          start_ns=T0_NS + i * 5 * 60_000 * MS)  # fmt: skip
    runs = load(write_jsonl(tmp_path / "big.jsonl", spans))
    budget = 1_000_000
    written = write_report(runs, tmp_path / "report.html", timeline_bytes=budget)
    page = written.path.read_text(encoding="utf-8")
    timelines = _json_script(page, "report-timelines")
    assert 0 < len(timelines) < len(runs)
    assert sum(len(t) for t in timelines.values()) <= budget
    report = build_report(runs, timeline_bytes=budget)
    assert {r.run_id for r in report.slowest} <= set(timelines)
    assert {r.run_id for r in report.max_steps} <= set(timelines)
    # Without the timelines the page is per-run aggregates: ~100 bytes a run in the table data,
    # so 10,000 runs stay far below 20 MB.
    aggregate = written.bytes - len(page.split('id="report-timelines"')[1].split("</script>")[0])
    assert aggregate / len(runs) < 400, aggregate / len(runs)
    assert len(_json_script(page, "report-data")["rows"]) == len(runs) == 1500
    assert report.bucket == "day"  # 1,500 runs 5 minutes apart: over 5 days


def test_cli_report_filters_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steptrace report` would ignore its filters, write nothing, or fail without a clear line."""
    log = str(fleet_log(tmp_path))
    out = tmp_path / "r.html"
    assert main(["report", "--log", log, "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs"] == 2 * RUNS_PER_RELEASE and result["path"] == str(out) and out.exists()
    assert main(["report", "--log", log, "-o", str(out), "--release", "1.5.0", "--min-duration", "2s"]) == 0
    assert "runs" in capsys.readouterr().out
    assert "selected by <code>--release 1.5.0 --min-duration 2.00s</code>" in out.read_text(encoding="utf-8")
    assert main(["report", "--log", log, "-o", str(out), "--release", "1.5.0"]) == 0
    assert "30 runs" in capsys.readouterr().out
    rows = _json_script(out.read_text(encoding="utf-8"), "report-data")["rows"]
    assert len(rows) == RUNS_PER_RELEASE
    assert main(["report", "--log", log, "-o", str(out), "--stop-reason", "max_steps"]) == 0
    capsys.readouterr()
    # The run filters of `steptrace runs` (filter_runs) select the report's runs too.
    runs = load(log)
    for options, expected in (
        (["--agent", "travel-agent"], runs.runs(agent="travel-agent")),
        (["--status", "error", "--release", "1.5.0"], runs.runs(status="error", release="1.5.0")),
        (["--min-duration", "2s"], runs.runs(min_duration="2s")),
    ):
        assert main(["report", "--log", log, "-o", str(out), *options]) == 0, options
        rows = _json_script(out.read_text(encoding="utf-8"), "report-data")["rows"]
        assert [row[0] for row in rows] == [r.run_id for r in expected] and expected, options
    capsys.readouterr()
    # --prices reaches the report's costs: 120 + 30 tokens per model call at $1000 / $2000 per Mtok.
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"gpt-4o-mini-2024-07-18": {"input_mtok": 1000.0, "output_mtok": 2000.0}}))
    assert main(["report", "--log", log, "--prices", str(prices), "-o", str(out)]) == 0
    rows = _json_script(out.read_text(encoding="utf-8"), "report-data")["rows"]
    priced = load(log, prices=str(prices))
    for row in rows:
        run = priced.get(row[0])
        assert run is not None and row[7] == run.cost_usd
        if run.cost_usd is not None:
            assert run.cost_usd == pytest.approx(0.18 * (run.llm_call_count - run.unpriced_llm_calls))
    assert any(row[7] is not None for row in rows)
    capsys.readouterr()
    assert main(["report", "--log", log, "-o", str(out), "--min-duration", "soon"]) == 2
    assert "--min-duration" in capsys.readouterr().err
    assert main(["report", "--log", log, "-o", str(out), "--release", "9.9"]) == 1
    assert "releases present: 1.4.0, 1.5.0" in capsys.readouterr().err
    assert main(["report", "--log", log, "-o", str(out), "--since", "yesterday"]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
    assert main(["report", "--log", log, "-o", str(tmp_path / "missing" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steptrace: ") and "cannot write" in err and err.count("\n") == 1
    assert main(["report", "--log", str(tmp_path / "nope"), "-o", str(out)]) == 2
