"""Run every benchmark case, each in a fresh process, and write ``bench/RESULTS.md``.

    make bench                                     # creates .venv-bench, then runs this
    .venv-bench/bin/python bench/run.py --output bench/RESULTS.md
    .venv-bench/bin/python bench/run.py --quick    # a smoke run: few batches, small logs

Every number in the written file comes from this run's cases; the text around the tables only
compares them. ``--wait-load L`` waits (up to 10 minutes) for the 1-minute load average to fall
below L before each case, for a machine shared with other work.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

HERE = Path(__file__).resolve().parent

CASES: dict[str, list[str]] = {
    "tool-off": ["case_tool.py", "off"],
    "tool-on": ["case_tool.py", "on"],
    "openai": ["case_openai.py"],
    "google-genai": ["case_google_genai.py"],
    "load": ["case_load.py"],
    "jsonl": ["case_jsonl.py"],
    "report": ["case_report.py"],
    "mcp": ["case_mcp.py"],
    "logs": ["case_logs.py"],
    "rerun": ["case_rerun.py"],
    "openai-agents": ["case_openai_agents.py"],
    "cost": ["case_cost.py"],
    "clickhouse": ["case_clickhouse.py"],
    "redaction": ["case_redaction.py"],
    "record": ["case_record.py"],
    "langchain": ["case_langchain.py"],
    "bedrock": ["case_bedrock.py"],
    "pydantic-ai": ["case_pydantic_ai.py"],
}
QUICK_ENV = {
    "BENCH_NUMBER": "300",
    "BENCH_BATCHES": "3",
    "BENCH_OPENAI_NUMBER": "30",
    "BENCH_AGENTS_NUMBER": "20",
    "BENCH_OPENAI_STREAM_NUMBER": "3",
    "BENCH_OPENAI_STREAM_BATCHES": "3",
    "BENCH_GENAI_NUMBER": "30",
    "BENCH_GENAI_STREAM_NUMBER": "3",
    "BENCH_GENAI_STREAM_BATCHES": "3",
    "BENCH_LOAD_CALLS": "3000",
    "BENCH_REPORT_RUNS": "500",
    "BENCH_MCP_NUMBER": "50",
    "BENCH_CLICKHOUSE_SPANS": "20000 100000",
    "BENCH_LANGCHAIN_NUMBER": "50",
    "BENCH_BEDROCK_NUMBER": "30",
    "BENCH_BEDROCK_STREAM_NUMBER": "3",
    "BENCH_PYDANTIC_AI_NUMBER": "10",
}


def wait_for_load(limit: float | None) -> None:
    if limit is None:
        return
    deadline = time.monotonic() + 600
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)


def run_case(name: str, quick: bool, wait_load: float | None) -> dict[str, Any]:
    script, *args = CASES[name]
    if name == "jsonl" and quick:
        args += ["--records", "20000"]
    env = {**os.environ, **(QUICK_ENV if quick else {})}
    wait_for_load(wait_load)
    print(f"bench: {name} (load average {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-5000:])
        raise SystemExit(f"bench: case {name} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["wall_seconds"] = time.perf_counter() - started
    return result


# --- formatting --------------------------------------------------------------------------------


def us(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def load(result: dict[str, Any]) -> str:
    start, end = result["load_average_start"][0], result["load_average_end"][0]
    return f"load average (1 min) {start:.2f} at the start, {end:.2f} at the end"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def tool_tables(off: dict[str, Any], on: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    facts: dict[str, Any] = {}
    v_off = off["variants"]
    bare_off = v_off["bare function"]["median_us"]
    api = v_off["OTel API no-op span (no SDK)"]["median_us"] - bare_off
    lines += [
        "### 1a. Tracing disabled",
        "",
        f"{off['batches']} batches × {off['number']} calls per variant, interleaved; {load(off)}.",
        "",
        "| variant | median µs/call | min µs/call | added to the bare call, µs |",
        "|---|---:|---:|---:|",
    ]
    for name, row in v_off.items():
        lines.append(
            f"| {name} | {us(row['median_us'])} | {us(row['min_us'])} | {us(row['median_us'] - bare_off)} |"
        )
    facts["disabled_no_configure"] = v_off["steptrace @tool, no configure()"]["median_us"] - bare_off
    facts["disabled_env"] = v_off["steptrace @tool, OTEL_SDK_DISABLED=true"]["median_us"] - bare_off
    facts["noop_api"] = api

    v_on = on["variants"]
    bare = v_on["bare function"]["median_us"]
    raw = v_on["raw SDK span, 6 attributes, provider without processors"]["median_us"] - bare
    lines += [
        "",
        "### 1b. Tracing on",
        "",
        f"{on['batches']} batches × {on['number']} calls per variant, interleaved; {load(on)}.",
        "",
        "| variant | median µs/call | min µs/call | added to the bare call, µs | × raw SDK span "
        "| median µs CPU/call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in v_on.items():
        added = row["median_us"] - bare
        ratio = f"{added / raw:.2f}×" if name != "bare function" else ""
        cpu_us = row.get("cpu_median_us")
        cpu_text = us(cpu_us) if cpu_us is not None and math.isfinite(cpu_us) else ""
        lines.append(
            f"| {name} | {us(row['median_us'])} | {us(row['min_us'])} | {us(added)} | {ratio} | {cpu_text} |"
        )
    missing = on.get("peers_missing") or {}
    for peer, why in missing.items():
        lines.append(f"| {peer} | not measured: {why} | | | | |")
    lines += [
        "",
        f"Spans reaching each peer's exporter: {on.get('peer_spans_exported')}; steptrace step records "
        f"written: {on.get('steptrace_records_written')} (every call of every variant, warm-up included).",
    ]

    def cpu_added(name: str) -> float | None:
        row, bare_row = v_on.get(name, {}), v_on["bare function"]
        value, base = row.get("cpu_median_us"), bare_row.get("cpu_median_us")
        return None if value is None or base is None else value - base

    cpu_facts = {
        "raw": cpu_added("raw SDK span, 6 attributes, provider without processors"),
        "steptrace": cpu_added("steptrace @tool in agent_run/agent_step, JSONL + metrics"),
        "traceloop": cpu_added("traceloop-sdk @tool"),
        "stamp": cpu_added("raw SDK span, 6 attributes, steptrace's processor without a step log"),
        "raw_on_st": cpu_added("raw SDK span, 6 attributes, on steptrace's provider (writes the record)"),
    }
    facts["cpu"] = {
        key: value for key, value in cpu_facts.items() if value is not None and math.isfinite(value)
    }
    st = v_on["steptrace @tool in agent_run/agent_step, JSONL + metrics"]["median_us"] - bare
    peers = {
        name: row["median_us"] - bare
        for name, row in v_on.items()
        if name.startswith(("traceloop", "openinference", "logfire"))
    }
    facts.update(
        raw=raw,
        steptrace=st,
        raw_on_st=v_on["raw SDK span, 6 attributes, on steptrace's provider (writes the record)"]["median_us"]
        - bare,
        floor=v_on["raw SDK span + step record + SDK Histogram.record (the floor)"]["median_us"] - bare,
        sdk_floor=v_on["raw SDK span + SDK Histogram.record (the SDK floor)"]["median_us"] - bare,
        peers=peers,
        no_metrics=v_on["steptrace @tool, metrics off (no-op meter)"]["median_us"] - bare,
        no_jsonl=v_on["steptrace @tool, JSONL off"]["median_us"] - bare,
    )
    shares = on.get("steptrace_profile_shares") or {}
    if shares:
        lines += [
            "",
            "Where steptrace's traced tool call spends its time (cProfile shares of the decorated call; "
            "profiling inflates parts made of many small calls):",
            "",
            "| part | share |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {share:.0%} |" for name, share in shares.items()]
    return lines, facts


def openai_tables(result: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    variants = result["variants"]
    short, long = result["chunks"]
    names = list(dict.fromkeys(name.split("|")[0] for name in variants))
    lines = [
        f"Each variant is instrumented before its batch and uninstrumented after it: {result['batches']} "
        f"batches of {result['call_number']} calls, {result.get('stream_batches', result['batches'])} "
        f"batches of {result['stream_number']} streams; {load(result)}. Per chunk = the slope between "
        f"the {short}- and {long}-chunk streams less the bare slope, computed batch by batch: median "
        "and interquartile range over batches.",
        "",
        "| instrumentation | call, median µs | added per call, µs | "
        f"{long}-chunk stream, median µs | added per stream, µs | added per chunk, µs: median [IQR] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    facts: dict[str, Any] = {}

    def get(name: str, what: str, stat: str = "median_us") -> float:
        return float(variants[f"{name}|{what}"][stat])

    def samples(name: str, what: str) -> list[float]:
        return [float(value) for value in variants[f"{name}|{what}"]["samples_us"]]

    for name in names:
        call_added = get(name, "call") - get("bare", "call")
        stream_added = get(name, f"stream{long}") - get("bare", f"stream{long}")
        slopes = sorted(
            ((mine_long - mine_short) - (bare_long - bare_short)) / (long - short)
            for mine_long, mine_short, bare_long, bare_short in zip(
                samples(name, f"stream{long}"),
                samples(name, f"stream{short}"),
                samples("bare", f"stream{long}"),
                samples("bare", f"stream{short}"),
                strict=True,
            )
        )
        quartiles = statistics.quantiles(slopes, n=4) if len(slopes) > 1 else [slopes[0]] * 3
        per_chunk = {"median_us": quartiles[1], "q1_us": quartiles[0], "q3_us": quartiles[2]}
        facts[name] = {"call": call_added, "stream": stream_added, "chunk": per_chunk}
        if name == "bare":
            bare_call, bare_stream = us(get(name, "call")), us(get(name, f"stream{long}"))
            lines.append(f"| bare (not instrumented) | {bare_call} | | {bare_stream} | | |")
        else:
            lines.append(
                f"| {name} | {us(get(name, 'call'))} | {us(call_added)} | {us(get(name, f'stream{long}'))} | "
                f"{us(stream_added)} | {per_chunk['median_us']:.2f} "
                f"[{per_chunk['q1_us']:.2f} – {per_chunk['q3_us']:.2f}] |"
            )
    for peer, why in (result.get("peers_missing") or {}).items():
        lines.append(f"| {peer} | not measured: {why} | | | | |")
    lines += [
        "",
        f"Spans reaching each peer's exporter: {result.get('spans_exported')}; steptrace step records "
        f"written: {result.get('steptrace_records_written')}.",
    ]
    return lines, facts


def load_tables(result: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = [
        f"{result['calls_per_thread']:,} traced calls per thread, with {result['between_calls']} between "
        f"calls; {load(result)}.",
        "",
        "| pipeline | threads | spans ended | JSONL records | exported (received) | "
        "counted as dropped | warnings logged | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    jsonl_complete = True
    otlp_accounted = True
    shed = warned = 0

    def pipeline(label: str, entry: dict[str, Any]) -> str:
        delay = entry.get("collector_delay_s")
        return f"{label}, collector answering after {delay} s" if delay else label

    for entry in result["steptrace"]:
        counters = entry["otlp_counters"]
        lines.append(
            f"| {pipeline('steptrace: JSONL + OTLP/HTTP', entry)} | {entry['threads']} | "
            f"{entry['spans_created']:,} | "
            f"{entry['jsonl_records']:,} | {entry['otlp_received_by_collector']:,} | "
            f"{counters['dropped_spans']:,} (spilled {counters['spilled_spans']:,}) | "
            f"{len(entry['warnings'])} | {entry['seconds']:.2f} |"
        )
        jsonl_complete &= entry["jsonl_records"] == entry["spans_created"]
        lost = entry["spans_created"] - entry["otlp_received_by_collector"]
        counted = counters["dropped_spans"] + counters["failed_spans"]
        otlp_accounted &= lost == counted and (lost == 0 or len(entry["warnings"]) > 0)
        shed += lost
        warned += len(entry["warnings"])
    for key, label in (("raw_sdk_batch", "in-memory exporter"), ("raw_sdk_batch_otlp", "OTLP/HTTP exporter")):
        for entry in result[key]:
            lost = entry["spans_created"] - entry["exported"]
            share = lost / entry["spans_created"] if entry["spans_created"] else 0.0
            lines.append(
                f"| {pipeline(f'SDK BatchSpanProcessor (defaults), {label}', entry)} | {entry['threads']} | "
                f"{entry['spans_created']:,} | – | {entry['exported']:,} | not counted "
                f"({lost:,} lost, {share:.0%}) | {len(entry['warnings'])} | {entry['seconds']:.2f} |"
            )
    warnings = {w for entry in result["steptrace"] for w in entry["warnings"]}
    warnings |= {
        w for key in ("raw_sdk_batch", "raw_sdk_batch_otlp") for e in result[key] for w in e["warnings"]
    }
    if warnings:
        lines += ["", "Warnings logged:", ""] + [f"- `{w}`" for w in sorted(warnings)]
    facts = {
        "jsonl_complete": jsonl_complete,
        "otlp_accounted": otlp_accounted,
        "shed": shed,
        "warned": warned,
    }
    return lines, facts


def _cpu(row: dict[str, Any]) -> str:
    return f"{row['cpu_seconds']:.2f}" if "cpu_seconds" in row else "–"


def jsonl_tables(result: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = [
        f"Exporter: `JsonlSpanExporter.export` per span, median of {result['batches']} batches of 2,000; "
        f"{load(result)}.",
        "",
        "| spans | µs/record | records/s | bytes/record |",
        "|---|---:|---:|---:|",
    ]
    for name, row in result["exporter"].items():
        lines.append(
            f"| {name} | {row['us_per_record']:.1f} | {row['records_per_second']:,.0f} | "
            f"{row['bytes_per_record']:.0f} |"
        )
    analysis = result["analysis"]
    lines += [
        "",
        "Analysis commands, each in a fresh process (wall time includes interpreter start-up; peak RSS "
        f"of that process). msgspec fast path available: {analysis['msgspec_fast_path_available']}.",
        "",
        "| log | command | seconds | CPU seconds | peak RSS MiB | exit code |",
        "|---|---|---:|---:|---:|---:|",
    ]
    startup = analysis["python startup + import steptrace.cli"]
    lines.append(
        f"| – | python start-up + import steptrace.cli | {startup['seconds']:.2f} | {_cpu(startup)} | "
        f"{startup['peak_rss_mib']:.0f} | {startup['exit_code']} |"
    )
    facts: dict[str, Any] = {}
    for key, entry in analysis.items():
        if not key.endswith(" records") or "bytes" not in entry:  # a log size, not the profile
            continue
        size = f"{key} ({entry['bytes'] / 2**20:,.0f} MiB)"
        for command, row in entry.items():
            if command == "bytes":
                continue
            shown = command if command.startswith("floor") else f"`{command}`"
            lines.append(
                f"| {size} | {shown} | {row['seconds']:.2f} | {_cpu(row)} | {row['peak_rss_mib']:.0f} | "
                f"{row['exit_code']} |"
            )
            facts[(key, command)] = row
    facts["profile"] = analysis.get("profile of steptrace runs, 1,000,000 records")
    facts["startup"] = startup
    return lines, facts


def record_targets(result: dict[str, Any] | None) -> list[str]:
    """The step record's and the histograms' own targets (issue 24), from case_record."""
    if result is None:
        return []
    rows: list[str] = []
    variants = result["step_record"]["variants"]
    tool = variants["tool_execution: span end to bytes in the file (processor on_end)"]
    llm = variants["llm_request: span end to bytes in the file (processor on_end)"]
    floor = variants["floor: msgspec encode + one O_APPEND write"]
    rows.append(
        "| the step record: ≤ 5 µs CPU from span end to bytes in the file, measured alone | tool call "
        f"{tool['median_us']:.2f} µs [IQR {tool['q1_us']:.2f} – {tool['q3_us']:.2f}], model call "
        f"{llm['median_us']:.2f} µs (floor, msgspec encode + one write: {floor['median_us']:.2f} µs) | "
        f"{verdict(tool['median_us'] <= 5.0 and llm['median_us'] <= 5.0)} |"
    )
    calls = result.get("syscalls_per_record")
    if calls is not None:
        rows.append(
            "| the step record: at most one system call per record in the steady state (strace -c) | "
            f"{calls:.3f} per record | {verdict(calls <= 1.05)} |"
        )
    hist = result["histogram"]["variants"]
    plain = hist["steptrace: a measurement, no exemplar (tool, step, chunk)"]
    with_context = hist["steptrace: a measurement with its exemplar's context (model call)"]
    sdk = hist["SDK Histogram.record with an exemplar"]
    worst = max(plain["median_us"], with_context["median_us"])
    rows.append(
        "| histograms: a duration or token measurement costs the caller ≤ 0.5 µs CPU | "
        f"{plain['median_us']:.2f} µs / {with_context['median_us']:.2f} µs with an exemplar's context "
        f"(the SDK's Histogram.record: {sdk['median_us']:.2f} µs, now paid at collection) | "
        f"{verdict(worst <= 0.5)} |"
    )
    return rows


def record_tables(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return ["Not run."]
    lines = [
        f"{result['batches']} batches × {result['number']} calls per variant, interleaved, CPU time of "
        f"the calling thread (`time.thread_time`); {load(result)}. A `tool_execution` record is "
        f"{result['step_record']['bytes_per_record']} bytes.",
        "",
        "| step record | median µs CPU | IQR |",
        "|---|---:|---:|",
    ]
    for name, stats in result["step_record"]["variants"].items():
        lines.append(f"| {name} | {stats['median_us']:.2f} | {stats['q1_us']:.2f} – {stats['q3_us']:.2f} |")
    calls = result.get("syscalls_per_record")
    counted = "not measured (no strace)" if calls is None else f"{calls:.3f}"
    lines += [
        "",
        "System calls per record in the steady state (`strace -f -c` of a process appending "
        f"20,000 records less one appending none): {counted}.",
        "",
        "| histogram measurement | median µs CPU | IQR |",
        "|---|---:|---:|",
    ]
    for name, stats in result["histogram"]["variants"].items():
        lines.append(f"| {name} | {stats['median_us']:.2f} | {stats['q1_us']:.2f} – {stats['q3_us']:.2f} |")
    collect = result["histogram"]["collection_per_measurement"]
    lines += [
        "",
        f"A collection then records each buffered measurement through the SDK: {collect['median_us']:.2f} µs "
        f"per measurement [IQR {collect['q1_us']:.2f} – {collect['q3_us']:.2f}], on the reader's thread "
        f"(a periodic exporter's, or `shutdown()`'s final collection); measurements dropped: "
        f"{result['histogram']['dropped']}.",
    ]
    return lines


def genai_target(result: dict[str, Any] | None) -> list[str]:
    """The Gemini row: what steptrace adds to a ``generate_content`` call in a run, against the
    Google peer; in CPU time when the case measured it (its wall-time figures are within noise)."""
    peer = "opentelemetry-instrumentation-google-generativeai"
    if result is None:
        return []
    cpu = (result.get("cpu_time") or {}).get("added_us", {})
    if "steptrace" in cpu and peer in cpu:
        mine, theirs, how = cpu["steptrace"]["call"], cpu[peer]["call"], "µs CPU"
    else:
        _lines, facts = openai_tables(result)
        if "steptrace" not in facts or peer not in facts:
            return []
        mine, theirs, how = facts["steptrace"]["call"], facts[peer]["call"], "µs"
    ratio = f"{mine / theirs:.2f}×" if theirs > 0 else "peer adds nothing measurable"
    return [
        f"| Gemini (google-genai) call in an agent run: added ≤ 0.8× what {peer} adds | "
        f"{us(mine)} {how} vs {us(theirs)} {how} = {ratio} | {verdict(theirs > 0 and mine <= 0.8 * theirs)} |"
    ]


def targets(
    tool: dict[str, Any],
    oa: dict[str, Any],
    ld: dict[str, Any],
    jl: dict[str, Any],
    genai: dict[str, Any] | None = None,
) -> list[str]:
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    st, raw = tool["steptrace"], tool["raw"]
    cpu = tool.get("cpu") or {}
    cpu_note = (
        f"; CPU time {us(cpu['steptrace'])} µs vs {us(cpu['raw'])} µs = {cpu['steptrace'] / cpu['raw']:.2f}×"
        if cpu.get("raw")
        else ""
    )
    rows.append(
        f"| traced tool call in a run, step log and metrics on: ≤ 1.6× a raw SDK span with the same "
        f"attributes | {us(st)} µs vs {us(raw)} µs = {st / raw:.2f}×{cpu_note} (vs the raw span on "
        f"steptrace's own provider, which writes the record: {st / tool['raw_on_st']:.2f}×) | "
        f"{verdict(st <= 1.6 * raw)} |"
    )
    traceloop = next((cost for name, cost in tool["peers"].items() if name.startswith("traceloop")), None)
    if traceloop is not None:
        peer_cpu = cpu.get("traceloop")
        cpu_peer_note = (
            f"; CPU time {us(cpu['steptrace'])} µs vs {us(peer_cpu)} µs = {cpu['steptrace'] / peer_cpu:.2f}×"
            if peer_cpu
            else ""
        )
        rows.append(
            f"| traced tool call ≤ 0.6× traceloop-sdk's `@tool` | {us(st)} µs vs {us(traceloop)} µs "
            f"= {st / traceloop:.2f}×{cpu_peer_note} | {verdict(st <= 0.6 * traceloop)} |"
        )
    if "opentelemetry-instrumentation-openai-v2" in oa and "steptrace" in oa:
        mine, theirs = oa["steptrace"]["call"], oa["opentelemetry-instrumentation-openai-v2"]["call"]
        rows.append(
            "| OpenAI call in an agent run (span, step record, histograms): added ≤ 0.8× what "
            f"opentelemetry-instrumentation-openai-v2 adds | {us(mine)} µs vs {us(theirs)} µs = "
            f"{mine / theirs:.2f}× | {verdict(mine <= 0.8 * theirs)} |"
        )
        chunk = oa["steptrace"]["chunk"]
        peer_chunk = oa["opentelemetry-instrumentation-openai-v2"]["chunk"]
        rows.append(
            "| stream: added per chunk ≤ what opentelemetry-instrumentation-openai-v2 adds | "
            f"{chunk['median_us']:.2f} µs [IQR {chunk['q1_us']:.2f} – {chunk['q3_us']:.2f}] vs "
            f"{peer_chunk['median_us']:.2f} µs [IQR {peer_chunk['q1_us']:.2f} – {peer_chunk['q3_us']:.2f}] | "
            f"{verdict(chunk['median_us'] <= peer_chunk['median_us'])} |"
        )
    rows += genai_target(genai)
    for label, key in (
        ("no configure()", "disabled_no_configure"),
        ("OTEL_SDK_DISABLED=true", "disabled_env"),
    ):
        added = tool[key]
        rows.append(
            f"| disabled ({label}): ≤ 1 µs over the bare call, below the no-op API's cost | {added:.2f} µs "
            f"(no-op API span: {tool['noop_api']:.2f} µs) | "
            f"{verdict(added <= 1.0 and added < tool['noop_api'])} |"
        )
    rows.append(
        f"| zero JSONL records lost under load | records = spans ended in every load run: "
        f"{ld['jsonl_complete']} | {verdict(ld['jsonl_complete'])} |"
    )
    rows.append(
        f"| OTLP shedding counted and warned, never silent | {ld['shed']:,} spans not received by the "
        f"collector in steptrace's runs; every one counted in dropped_spans/failed_spans, with "
        f"{ld['warned']} warning(s): {ld['otlp_accounted']} | "
        f"{verdict(ld['otlp_accounted'] and ld['shed'] > 0)} |"
    )
    for command in ("steptrace runs", "steptrace summary RUN_ID"):
        row = jl.get(("1000000 records", command))
        if row is None:
            continue
        # CPU time decides when the child's was measured: wall time on a shared machine also
        # counts waiting for a core.
        seconds = row.get("cpu_seconds", row["seconds"])
        ok = seconds <= 2.0 and row["peak_rss_mib"] <= 512 and row["exit_code"] == 0
        rows.append(
            f"| `{command}` over 1,000,000 records ≤ 2 s and ≤ 512 MiB (CPU time decides) | "
            f"{row['seconds']:.2f} s wall, {_cpu(row)} s CPU, {row['peak_rss_mib']:.0f} MiB | {verdict(ok)} |"
        )
    for command in ("steptrace runs", "steptrace summary RUN_ID"):
        row = jl.get(("10000000 records", command))
        if row is None:
            continue
        ok = row["peak_rss_mib"] <= 1024 and row["exit_code"] == 0
        rows.append(
            f"| `{command}` over 10,000,000 records (a 6 GB log) in ≤ 1 GiB | {row['seconds']:.2f} s, "
            f"{row['peak_rss_mib']:.0f} MiB | {verdict(ok)} |"
        )
    return rows


def in_situ_record(tool: dict[str, Any]) -> list[str]:
    """Where the raw span on steptrace's provider spends what it adds, in CPU time."""
    cpu = tool.get("cpu") or {}
    if not all(key in cpu for key in ("raw", "stamp", "raw_on_st")):
        return []
    processor, record = cpu["stamp"] - cpu["raw"], cpu["raw_on_st"] - cpu["stamp"]
    return [
        f"- In CPU time the raw span on steptrace's provider adds {us(cpu['raw_on_st'] - cpu['raw'])} µs "
        f"to the raw span: {us(processor)} µs is steptrace's processor without a step log (the run "
        f"looked up where the span starts, the dispatch), {us(record)} µs the step record written at "
        "its end. Alone, in a tight loop (section 13), the same record costs about half that: between "
        "the SDK's own span work its code and data are no longer in the CPU's caches, so every "
        "instruction of the record path costs about twice as much as in isolation."
    ]


def record_obstacles(result: dict[str, Any] | None) -> list[str]:
    """Where a step record over 5 µs spends it, from case_record's parts."""
    if result is None:
        return []
    variants = result["step_record"]["variants"]
    tool = variants["tool_execution: span end to bytes in the file (processor on_end)"]["median_us"]
    llm = variants["llm_request: span end to bytes in the file (processor on_end)"]["median_us"]
    floor = variants["floor: msgspec encode + one O_APPEND write"]["median_us"]
    if max(tool, llm) <= 5.0:
        return []
    parts = {
        name.removeprefix("part: "): row["median_us"]
        for name, row in variants.items()
        if name.startswith("part: ")
    }
    shown = ", ".join(f"{name} {value:.2f} µs" for name, value in parts.items())
    return [
        f"- The step record: a tool call's takes {tool:.2f} µs ({shown}); a model call's {llm:.2f} µs, "
        f"{llm - tool:.2f} µs more for its ~20 further attributes read off the span into the record "
        f"(model, provider, tokens and cache tokens, stop reason, response id, cost) and their "
        f"encoding. The floor, msgspec encoding a finished record and one `O_APPEND` write, is "
        f"{floor:.2f} µs: the rest is the Python that reads the span and fills the record."
    ]


def analysis_obstacles(jl: dict[str, Any]) -> list[str]:
    """What stands in the way of the 1M-record commands' 2 s: the decoding floor and a profile."""
    lines: list[str] = []
    floor = jl.get(("1000000 records", "floor: read + decode every record (the loader's struct)"))
    startup = jl.get("startup")
    for command in ("steptrace runs", "steptrace summary RUN_ID"):
        row = jl.get(("1000000 records", command))
        if row is None or "cpu_seconds" not in row or row["cpu_seconds"] <= 2.0 or floor is None:
            continue
        lines.append(
            f"- `{command}` over 1,000,000 records: {row['cpu_seconds']:.2f} s CPU. The floor, reading "
            f"the log and decoding every record into the loader's struct and keeping nothing, is "
            f"{floor['cpu_seconds']:.2f} s"
            + (f"; Python start-up and imports {startup['cpu_seconds']:.2f} s" if startup else "")
            + ". The rest is Python work per record: deciding what the record is and adding it to its "
            "run (tokens, calls, tools, errors, agents), then building and pricing each run."
        )
    parts = jl.get("profile")
    if parts:
        total = sum(parts.values())
        shown = ", ".join(f"{name} {own / total:.0%}" for name, own in list(parts.items())[:8])
        lines.append(
            "- Where `steptrace runs` spends its own CPU time over 1,000,000 records (cProfile, "
            f"grouped by module or C builtin, shares of the 12 largest): {shown}. One process reads "
            "the log; splitting it across cores would need the per-run partial sums merged in record "
            "order to keep answers identical, which is not done."
        )
    return lines


def genai_obstacles(result: dict[str, Any] | None) -> list[str]:
    """The Gemini call's in-run cost against its out-of-run cost and the peer's, in CPU time."""
    peer = "opentelemetry-instrumentation-google-generativeai"
    cpu = ((result or {}).get("cpu_time") or {}).get("added_us", {})
    outside = cpu.get("steptrace, outside an agent run (no step record)")
    if "steptrace" not in cpu or peer not in cpu or outside is None:
        return []
    mine, theirs = cpu["steptrace"]["call"], cpu[peer]["call"]
    if theirs > 0 and mine <= 0.8 * theirs:
        return []
    return [
        f"- Gemini call: steptrace adds {us(mine)} µs CPU inside an agent run and {us(outside['call'])} "
        f"µs outside one; the peer adds {us(theirs)} µs (0.8× is {us(0.8 * theirs)} µs). Inside a run "
        "the call also writes its step record (section 13: the record alone is the figure there; "
        "between the SDK's own span work about twice that) and counts the call into its run and step; "
        "outside a run steptrace "
        + ("already adds less than the peer." if outside["call"] < theirs else "adds as much as the peer.")
    ]


def obstacles(tool: dict[str, Any], oa: dict[str, Any]) -> list[str]:
    """What stands in the way of the unmet targets, in this run's own numbers."""
    raw, st, floor, sdk_floor = tool["raw"], tool["steptrace"], tool["floor"], tool["sdk_floor"]
    lines = [
        f"- The SDK alone, the raw span plus one `Histogram.record` of `gen_ai.execute_tool.duration` "
        f"(no step record, no steptrace code), adds {us(sdk_floor)} µs = {sdk_floor / raw:.2f}× the raw "
        f"span; 1.6× is {us(1.6 * raw)} µs. "
        + (
            "steptrace no longer pays that `Histogram.record` on the caller's thread: its measurements "
            "are buffered and recorded when a reader collects (section 13)."
            if sdk_floor > 1.6 * raw
            else "The SDK floor itself fits in 1.6×; what follows does not."
        ),
        f"- Adding the step record (the raw span written by steptrace's processor) gives {us(floor)} µs "
        f"= {floor / raw:.2f}×: the same outputs as steptrace without its decorator and span handles, "
        f"which add the remaining {us(st - floor)} µs (arguments hash, context, run counters).",
        *in_situ_record(tool),
        f"- Without the histogram (no-op meter) steptrace adds {us(tool['no_metrics'])} µs; without the "
        f"JSONL record {us(tool['no_jsonl'])} µs: the record and the histogram are the two costs on top "
        "of the span.",
    ]
    traceloop = next((cost for name, cost in tool["peers"].items() if name.startswith("traceloop")), None)
    if traceloop is not None:
        budget = 0.6 * traceloop
        if budget < sdk_floor:
            where = "less than the SDK floor (span + histogram) above"
        elif budget < floor:
            where = (
                f"more than the SDK floor (span + histogram, {us(sdk_floor)} µs) but less than the same "
                f"with the step record ({us(floor)} µs): within this target's budget there is no room for "
                f"the synchronous record, which costs {us(floor - sdk_floor)} µs here"
            )
        else:
            where = "more than the floor with the step record: steptrace's own code is what exceeds it"
        lines.append(
            f"- 0.6× traceloop-sdk's `@tool` is {us(budget)} µs: {where}. The peers write no "
            "record and record no histogram here (their spans end in an exporter that only counts)."
        )
    no_run = oa.get("steptrace, outside an agent run (no step record)")
    v2 = oa.get("opentelemetry-instrumentation-openai-v2")
    if "steptrace" in oa and no_run and v2:
        lines.append(
            f"- OpenAI call: steptrace adds {us(oa['steptrace']['call'])} µs inside an agent run (span, step "
            f"record, duration and token histograms) and {us(no_run['call'])} µs outside one (no record); "
            f"opentelemetry-instrumentation-openai-v2 adds {us(v2['call'])} µs. The step record is the "
            "difference: building and encoding the record, and its write: one `O_APPEND` system call, "
            "the only one steptrace makes per call in the steady state (section 13)."
        )
    no_hist = oa.get("steptrace, without the per-chunk histogram records")
    if "steptrace" in oa and no_hist:
        with_records, without = oa["steptrace"]["chunk"]["median_us"], no_hist["chunk"]["median_us"]
        lines.append(
            f"- Stream: steptrace adds {with_records:.2f} µs per chunk; without recording "
            "`gen_ai.client.operation.time_per_output_chunk` (one measurement per chunk after the first, "
            f"as the GenAI conventions define it) the same stream adds {without:.2f} µs per chunk. Those "
            "measurements are buffered and recorded through the SDK when a metric reader collects (a "
            "periodic exporter's thread; here the reader is never read while timing): the SDK's "
            "`Histogram.record`, ~80 Python calls each, is moved off the stream's path, not removed."
        )
    return lines


def logs_tables(result: dict[str, Any] | None) -> list[str]:
    """What log correlation adds to one stdlib log call (and capture_logs, and structlog)."""
    if result is None:
        return ["(not run)"]
    variants = result["variants"]
    bare = variants["logging, steptrace not configured"]["median_us"]
    lines = [
        f"{result['batches']} batches × {result['number']} calls per variant, interleaved; {load(result)}. "
        "One `logger.info(...)` with two arguments, formatted by a handler to /dev/null.",
        "",
        "| variant | per log call (median) | added |",
        "|---|---|---|",
    ]
    for name, figures in variants.items():
        median = figures["median_us"]
        added = "" if name.startswith(("logging,", "structlog")) else f"{median - bare:+,.2f} µs"
        lines.append(f"| {name} | {median:,.2f} µs | {added} |")
    return lines


def cost_tables(result: dict[str, Any] | None) -> list[str]:
    """What ``configure(record_cost=True)`` adds to a model call, and pricing one call alone."""
    if result is None:
        return ["(not run)"]
    variants = result["variants"]
    off = variants["llm_request, record_cost off"]["median_us"]
    lines = [
        f"{result['batches']} batches × {result['number']} calls per variant, interleaved; {load(result)}. "
        "A decorated `llm_request` in a run that reports usage; with `record_cost` on, its span and "
        "step record get the call's price (genai-prices' bundled data, loaded at configure()).",
        "",
        "| variant | median µs | added, µs |",
        "|---|---:|---:|",
    ]
    for name, row in variants.items():
        added = us(row["median_us"] - off) if name.endswith("record_cost on") else ""
        lines.append(f"| {name} | {us(row['median_us'])} | {added} |")
    return lines


def redaction_tables(result: dict[str, Any] | None) -> list[str]:
    """What redacting captured text costs per KB, ordinary and adversarial, at two sizes."""
    if result is None:
        return ["(not run)"]
    sizes = list(next(iter(result["us_per_kb"].values())))
    lines = [
        f"{result['batches']} batches per variant, interleaved; {load(result)}. `Redactor().redact_text` "
        "(the built-in detectors) on text of each shape; linear cost shows as the same µs per KB at "
        "both sizes (the adversarial shapes were quadratic before issue 21).",
        "",
        "| text | " + " | ".join(f"µs per KB at {size} KB" for size in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, row in result["us_per_kb"].items():
        lines.append(f"| {name} | " + " | ".join(us(row[size]) for size in sizes) + " |")
    return lines


def rerun_tables(result: dict[str, Any] | None) -> list[str]:
    """What ``record_for_rerun=True`` adds to a tool call and a model call inside a run."""
    if result is None:
        return ["(not run)"]
    variants = result["variants"]
    lines = [
        f"{result['batches']} batches × {result['number']} calls per variant, interleaved; {load(result)}. "
        "A decorated tool and a decorated model call (an OpenAI-shaped dict), inside an open run and "
        f"step, with the step log on; recording wrote {result['recorded_bytes']:,} bytes to "
        f"{result['recordings_written']} recording files.",
        "",
        "| call | recording off, µs | recording on, µs | added by recording, µs |",
        "|---|---:|---:|---:|",
    ]
    for call in ("tool call", "model call"):
        off = variants[f"{call}, recording off"]["median_us"]
        on = variants[f"{call}, recording on"]["median_us"]
        lines.append(f"| {call} | {us(off)} | {us(on)} | {us(on - off)} |")
    lines += [
        "",
        "With recording off, the runners check one module-level `None` per call (case 1 measures "
        "the decorated tool call with it).",
    ]
    return lines


def agents_tables(result: dict[str, Any] | None) -> list[str]:
    """What ``instrument_openai_agents()`` adds to an OpenAI Agents SDK run, per turn."""
    if result is None:
        return ["(not run)"]
    variants, per_turn = result["variants"], result["per_turn_overhead_us"]
    lines = [
        f"{result['batches']} batches × {result['number']} runs per variant, interleaved; {load(result)}. "
        "The SDK's Responses model on an in-process mock transport, the SDK's own tracing off. The "
        "instrumentation path replaces the SDK's loop, model and tool by trivial coroutines: "
        "steptrace's own cost, without the SDK's milliseconds around it.",
        "",
        "| run | bare | steptrace | + `instrument_openai()` |",
        "|---|---|---|---|",
    ]
    for what in ("1 turn", "2 turns (tool)"):
        cells = [
            variants.get(f"{name}|{what}") for name in ("bare", "steptrace", "steptrace + instrument_openai")
        ]
        if all(cells):
            lines.append(f"| {what} | " + " | ".join(f"{us(c['median_us'])} µs" for c in cells if c) + " |")
    bare_path = variants.get("bare|2 turns, instrumentation path only")
    traced_path = variants.get("steptrace|2 turns, instrumentation path only")
    if bare_path and traced_path:
        lines.append(
            f"| 2 turns, instrumentation path only | {us(bare_path['median_us'])} µs "
            f"| {us(traced_path['median_us'])} µs | |"
        )
    lines += ["", "| added per turn | µs |", "|---|---|"]
    lines += [f"| {name} | {us(value)} |" for name, value in per_turn.items()]
    return lines


def mcp_tables(result: dict[str, Any] | None) -> list[str]:
    """What ``instrument_mcp()`` adds to one ``ClientSession.call_tool``, per transport."""
    if result is None:
        return ["(not run)"]
    variants = result["variants"]
    lines = [
        f"{result['batches']} batches × {result['number']} calls per variant, interleaved; {load(result)}. "
        "Every variant runs in an agent run with steptrace configured (the mcp package's own spans are "
        "paid by all alike). `instant`: a real `ClientSession` whose requests are answered at once (no "
        "transport, no server), so the added cost is steptrace's alone; in-memory: the server in this "
        "process; stdio: the server in a subprocess without steptrace.",
        "",
        "| transport, per call | bare call | `instrument_mcp()` | added | with capture on | added |",
        "|---|---|---|---|---|---|",
    ]
    cpu = result.get("cpu_median_us", {})
    for transport, label in (("instant", "instant"), ("memory", "in-memory"), ("stdio", "stdio subprocess")):
        for what, get in (
            ("wall time", lambda name: variants.get(name, {}).get("median_us")),
            ("CPU time of this process", cpu.get),
        ):
            bare, traced, captured = (
                get(f"{variant}|{transport}") for variant in ("bare", "steptrace", "steptrace, capture on")
            )
            if bare is None or traced is None or captured is None:
                continue
            lines.append(
                f"| {label}, {what} | {us(bare)} µs | {us(traced)} µs | {traced - bare:+,.1f} µs "
                f"| {us(captured)} µs | {captured - bare:+,.1f} µs |"
            )
    return lines


def report_tables(result: dict[str, Any] | None) -> list[str]:
    """``steptrace report`` over a generated fleet: generation, page size, load in chromium."""
    if result is None:
        return ["(not run)"]
    command, details = result["steptrace report"], result["report"]
    lines = [
        f"{result['runs']:,} runs, {result['records']:,} step records ({result['log_bytes'] / 1e6:,.0f} MB "
        "of JSONL with content capture on); the report command in a fresh process, the page opened "
        f"in Debian's chromium (headless, Playwright); {load(result)}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| `steptrace report` wall time | {command['seconds']:.2f} s |",
        f"| its peak RSS | {command['peak_rss_mib']:.0f} MiB |",
        f"| report size | {result['report_bytes'] / 1e6:.1f} MB |",
        f"| runs in the table / with their waterfall embedded | {details['runs']:,} / "
        f"{details['timelines_embedded']:,} |",
    ]
    browser = result.get("browser")
    if browser:
        best = browser["best"]
        lines += [
            f"| page open until ready (wall, best of {len(browser['samples'])}) "
            f"| {best['wall_seconds']:.2f} s |",
            f"| its script done (`performance.now()`) | {best['ready_ms'] / 1000:.2f} s |",
            f"| `load` event | {best['load_ms'] / 1000:.2f} s |",
        ]
    else:
        lines.append(f"| page open | not measured: {result.get('browser_skipped', 'no browser')} |")
    return lines


def genai_tables(result: dict[str, Any] | None) -> list[str]:
    """Case 2's Google Gen AI half: the same table as OpenAI's, against the bare SDK call."""
    if result is None:
        return ["(not run)"]
    lines, _facts = openai_tables(result)
    cpu = result.get("cpu_time")
    if cpu:
        lines += [
            "",
            f"The same in this thread's CPU time (`time.thread_time`, medians over {cpu['rounds']} rounds; "
            "on a shared machine the steadier figure):",
            "",
            "| instrumentation | added per call, µs CPU | added per chunk, µs CPU |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {added['call']:,.1f} | {added['chunk']:.2f} |"
            for name, added in cpu["added_us"].items()
            if name != "bare"
        ]
    return lines


def clickhouse_tables(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return ["Not measured in this run."]
    lines = [
        "The same fleet as a JSONL step log (`--log`) and in the Collector's `otel_traces` table "
        "(`--source`, the exporter's DDL, the ClickHouse engine in-process: no network); each command "
        f"in a fresh process, wall seconds; {load(result)}.",
        "",
        "| spans | runs | JSONL MB | command | JSONL s | ClickHouse s | of which after the database opened |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for spans, entry in sorted(result["sizes"].items(), key=lambda kv: int(kv[0])):
        for name, pair in entry["commands"].items():
            lines.append(
                f"| {int(spans):,} | {entry['runs']:,} | {entry['jsonl_bytes'] / 1e6:,.0f} | {name} | "
                f"{pair['jsonl']['seconds']:.2f} | {pair['clickhouse']['seconds']:.2f} | "
                f"{pair['clickhouse'].get('after_open_seconds', float('nan')):.2f} |"
            )
    lines.append("")
    for name, found in result["crossover_spans"].items():
        if found.get("at_smallest"):
            text = f"ClickHouse is faster from the smallest size measured ({found['at_smallest']:,} spans) on"
        elif found.get("faster_from_spans"):
            text = f"ClickHouse is faster from about {found['faster_from_spans']:,} spans"
        else:
            text = "JSONL is faster at every size measured"
        lines.append(f"- `{name}`: {text}.")
    return lines


# --- the framework integrations against their peers (issue 25) -------------------------------
# case -> (title, peer, {what: label}, what the peer section says about the set-up)
FRAMEWORKS: dict[str, tuple[str, str, dict[str, str], str]] = {
    "langchain": (
        "LangChain chat model and tool (`bench/case_langchain.py`)",
        "opentelemetry-instrumentation-langchain",
        {"model": "per model call", "tool": "per tool call"},
        "LangChain's `GenericFakeChatModel` (no network) answering with usage and a finish reason, and a "
        "`@tool` function, called with `invoke`. steptrace: `instrument_langchain()`, the calls inside an "
        "`agent_run`/`agent_step`; by hand: the bare call in `steptrace.llm_request(...)`/"
        "`steptrace.tool(...)` blocks in the same run; OpenLLMetry's opentelemetry-instrumentation-langchain "
        "(its callback handler on every callback manager).",
    ),
    "bedrock": (
        "Amazon Bedrock `converse` and `converse_stream` (`bench/case_bedrock.py`)",
        "opentelemetry-instrumentation-bedrock",
        {"call": "per converse call", "delta": "per stream delta", "stream of 20 deltas": "per stream"},
        "The real boto3 `bedrock-runtime` client, botocore's whole pipeline (signing, parsing, the "
        "event-stream decoder) with canned replies handed back by a `before-send` handler. steptrace: "
        "`instrument_bedrock()` inside an `agent_run`/`agent_step`, and outside a run; OpenLLMetry's "
        "opentelemetry-instrumentation-bedrock (on a client made while it is instrumented: it patches "
        "clients as they are created). Per delta: the slope between streams of 20 and 200 deltas.",
    ),
    "pydantic-ai": (
        "Pydantic AI agent runs (`bench/case_pydantic_ai.py`)",
        "Pydantic AI instrument=True",
        {
            "model request": "per model request",
            "tool call": "per tool call",
            "run with one model request": "per run of one request",
        },
        "`Agent.run` with Pydantic AI's `FunctionModel` (no network) in four shapes: one request (run0); "
        "a request asking for one tool call, the tool, the final request (run1); the same with nine tool "
        "calls (par9); nine requests asking for one tool call each, then the final one (seq9). Per tool "
        "call = (par9 − run1) / 8, per model request = (seq9 − par9) / 8. "
        "steptrace: `instrument_pydantic_ai()` (each run an `agent_run`, each request a step); Pydantic "
        "AI's own `instrument=True` (`InstrumentationSettings`); and both, steptrace borrowing Pydantic "
        "AI's spans on its own provider.",
    ),
}


def _iqr(stats: dict[str, float]) -> str:
    return f"{stats['median_us']:,.1f} [{stats['q1_us']:,.1f} – {stats['q3_us']:,.1f}]"


def framework_tables(name: str, result: dict[str, Any] | None) -> list[str]:
    """One framework: what each instrumentation adds per model call, per tool call (or delta),
    wall and CPU time, median and IQR over batches; where steptrace's own time goes."""
    if result is None:
        return ["(not run)"]
    _title, _peer, whats, setup = FRAMEWORKS[name]
    bare = {key.split("|", 1)[1]: row for key, row in result["variants"].items() if key.startswith("bare|")}
    number = result.get("number") or result.get("call_number")
    lines = [
        f"{setup} All in one process, each variant instrumented before its batch and uninstrumented after "
        f"it, interleaved: {result['batches']} batches of {number} calls; {load(result)}. Peers end their "
        "spans in a SimpleSpanProcessor whose exporter only counts; steptrace writes its step record to a "
        "file and records its histograms. Content capture off for all. Added = the variant less the bare "
        "call in the same batch: median [IQR] over batches, µs; wall time, and CPU time of the calling "
        "thread (`time.thread_time`, the steadier figure on a loaded machine).",
        "",
        "The bare calls themselves, median µs (wall / CPU): "
        + "; ".join(
            f"{what} {row['median_us']:,.1f} / {row['cpu_median_us']:,.1f}" for what, row in bare.items()
        )
        + ".",
        "",
        "| instrumentation | "
        + " | ".join(f"{label}, wall | {label}, CPU" for label in whats.values())
        + " |",
        "|---|" + "---:|" * (2 * len(whats)),
    ]
    for variant, per_what in result["added"].items():
        cells = [f"{_iqr(per_what[what]['wall'])} | {_iqr(per_what[what]['cpu'])}" for what in whats]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    for peer, why in (result.get("peers_missing") or {}).items():
        lines.append(f"| {peer} | not measured: {why} |" + " |" * (2 * len(whats) - 1))
    lines += [
        "",
        f"Spans reaching each peer's exporter: {result.get('spans_exported')}; steptrace step records "
        f"written: {result.get('steptrace_records_written')}.",
    ]
    for what, entry in (result.get("steptrace_profile_us") or {}).items():
        lines += [
            "",
            f"Where steptrace's own time goes ({what}; cProfile in this thread's CPU time, µs per call "
            "under the profiler, which inflates parts made of many small calls): "
            f"{entry['own_us']:,.0f} µs of its own; parts (nested parts overlap):",
            "",
            "| part | µs, profiled | share of steptrace's own |",
            "|---|---:|---:|",
        ]
        own = entry["own_us"]
        lines += [
            f"| {part} | {value:,.1f} | {value / own:.0%} |" if own > 0 else f"| {part} | {value:,.1f} | |"
            for part, value in entry["parts_us"].items()
        ]
    return lines


def _framework_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, bool, str]]:
    """(framework, label, measured, met, case) for each per-call target of issue 25."""
    rows = []
    for name, (title, peer, whats, _setup) in FRAMEWORKS.items():
        result = results.get(name)
        if result is None or peer not in result["added"] or "steptrace" not in result["added"]:
            continue
        mine, theirs = result["added"]["steptrace"], result["added"][peer]
        for what, label in whats.items():
            if what.startswith(("stream of", "run with")):
                continue  # shown in the section; the targets are per call
            a, b = mine[what]["cpu"], theirs[what]["cpu"]
            met = a["median_us"] < b["median_us"]
            overlap = a["q1_us"] <= b["q3_us"] and b["q1_us"] <= a["q3_us"]
            measured = (
                f"CPU {_iqr(a)} µs vs {_iqr(b)} µs; wall "
                f"{_iqr(mine[what]['wall'])} µs vs {_iqr(theirs[what]['wall'])} µs"
                + ("; the CPU IQRs overlap: within this run's noise" if overlap else "")
            )
            rows.append((title.split(" (")[0], label, measured, met, name))
    return rows


def framework_targets(results: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"| {framework}: steptrace (in an agent run) adds less than {FRAMEWORKS[case][1]} {label} (CPU "
        f"time decides) | {measured} | {verdict(met)} |"
        for framework, label, measured, met, case in _framework_rows(results)
    ]


# The profile (a case's ``steptrace_profile_us`` key) that shows where each target's time goes.
PROFILED = {
    ("langchain", "per model call"): "model",
    ("langchain", "per tool call"): "tool",
    ("bedrock", "per converse call"): "call",
    ("bedrock", "per stream delta"): "stream of 200 deltas",
    ("pydantic-ai", "per model request"): "run of nine requests, one tool each",
    ("pydantic-ai", "per tool call"): "run of nine tool calls",
}


def framework_obstacles(results: dict[str, dict[str, Any]]) -> list[str]:
    """For each framework target not met: what steptrace spends its own time on (the profile)."""
    lines = []
    for framework, label, measured, met, case in _framework_rows(results):
        if met:
            continue
        profiled = {
            what: entry
            for what, entry in (results[case].get("steptrace_profile_us") or {}).items()
            if what == PROFILED.get((case, label))
        }
        parts = "; ".join(
            f"{what} ({entry['own_us']:,.0f} µs of its own under cProfile): "
            + ", ".join(f"{part} {value / entry['own_us']:.0%}" for part, value in entry["parts_us"].items())
            for what, entry in profiled.items()
            if entry["own_us"] > 0
        )
        lines.append(
            f"- {framework} {label}: steptrace adds more than {FRAMEWORKS[case][1]} ({measured}). Where "
            f"steptrace's own time goes, as shares of it (nested parts overlap): {parts}."
        )
    return lines


def framework_sections(results: dict[str, dict[str, Any]], number: int) -> list[str]:
    lines = [
        f"## {number}. The framework integrations against the frameworks' own OpenTelemetry instrumentation",
        "",
        "What `instrument_langchain()`, `instrument_bedrock()` and `instrument_pydantic_ai()` add per model "
        "call and per tool call inside an agent run, next to OpenLLMetry's langchain and bedrock "
        "instrumentations and Pydantic AI's `instrument=True` (issue 25: steptrace must add less).",
    ]
    for name, (title, *_rest) in FRAMEWORKS.items():
        lines += ["", f"### {title}", "", *framework_tables(name, results.get(name))]
    return lines


def render(results: dict[str, dict[str, Any]], command: str) -> str:
    off, on, oa, ld, jl = (results[k] for k in ("tool-off", "tool-on", "openai", "load", "jsonl"))
    tool_lines, tool = tool_tables(off, on)
    oa_lines, oa_facts = openai_tables(oa)
    ld_lines, ld_facts = load_tables(ld)
    jl_lines, jl_facts = jsonl_tables(jl)
    info = machine()
    all_versions: dict[str, str] = {}
    for result in results.values():
        all_versions.update(result.get("versions", {}))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# steptrace benchmarks: results",
        "",
        f"Written by `bench/run.py` on {now}; every number below comes from that run. "
        "Do not edit by hand: re-run it.",
        "",
        "Reproduce: `make bench` (creates `.venv-bench` with steptrace and the peers, then runs "
        f"`{command}`). Each case runs in a fresh process and times its variants side by side, "
        "interleaved batch by batch; figures are medians over batches after two warm-up batches.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['python']}, {info['platform']}. "
        "The machine may be shared: each table gives the load average around it.",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in sorted(all_versions.items())) + ".",
        "",
        "## Targets",
        "",
        *targets(tool, oa_facts, ld_facts, jl_facts, results.get("google-genai")),
        *record_targets(results.get("record")),
        *framework_targets(results),
        "",
        "### What stands in the way",
        "",
        *obstacles(tool, oa_facts),
        *genai_obstacles(results.get("google-genai")),
        *record_obstacles(results.get("record")),
        *analysis_obstacles(jl_facts),
        *framework_obstacles(results),
        "",
        "## 1. A decorated trivial tool call",
        "",
        "The raw SDK span carries the six attributes steptrace's `tool_execution` span carries and is the "
        "current span while the function runs (`start_as_current_span`), under a parent span; "
        '"provider without processors" is the span machinery alone, "on steptrace\'s provider" adds '
        "steptrace's processor writing the step record. Peers: a SimpleSpanProcessor and an exporter that "
        "only counts. steptrace: the JSONL record goes to a file, histograms to an SDK MeterProvider.",
        "",
        *tool_lines,
        "",
        "## 2. OpenAI chat call and stream (in-process mock transport)",
        "",
        *oa_lines,
        "",
        "### Google Gen AI `generate_content` and `generate_content_stream` (`bench/case_google_genai.py`)",
        "",
        *genai_tables(results.get("google-genai")),
        "",
        "## 3. Completeness under load",
        "",
        *ld_lines,
        "",
        "## 4. JSONL exporter throughput and the analysis commands",
        "",
        *jl_lines,
        "",
        "## 5. `steptrace report` over a fleet",
        "",
        *report_tables(results.get("report")),
        "",
        "## 6. An MCP tool call (`bench/case_mcp.py`)",
        "",
        *mcp_tables(results.get("mcp")),
        "",
        "## 7. A log call with log correlation (`bench/case_logs.py`)",
        "",
        *logs_tables(results.get("logs")),
        "",
        "## 8. Recording for rerun (`bench/case_rerun.py`)",
        "",
        *rerun_tables(results.get("rerun")),
        "",
        "## 9. `runs`, `diff`, `debug RUN_ID` from ClickHouse (chdb) against JSONL "
        "(`bench/case_clickhouse.py`)",
        "",
        *clickhouse_tables(results.get("clickhouse")),
        "",
        "## 10. An OpenAI Agents SDK run (`bench/case_openai_agents.py`)",
        "",
        *agents_tables(results.get("openai-agents")),
        "",
        "## 11. Model-call cost on the span (`bench/case_cost.py`)",
        "",
        *cost_tables(results.get("cost")),
        "",
        "## 12. Redaction per KB of captured text (`bench/case_redaction.py`)",
        "",
        *redaction_tables(results.get("redaction")),
        "",
        "## 13. The step record and a histogram measurement, each alone (`bench/case_record.py`)",
        "",
        *record_tables(results.get("record")),
        "",
        *framework_sections(results, 14),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--quick", action="store_true", help="a smoke run, not for publishing")
    parser.add_argument("--wait-load", type=float, metavar="L", help="wait for load average < L per case")
    parser.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="render a run saved with --json instead of running"
    )
    options = parser.parse_args()
    if options.from_json:
        results = json.loads(options.from_json.read_text())
    else:
        results = {name: run_case(name, options.quick, options.wait_load) for name in options.cases}
    if options.json:
        options.json.write_text(json.dumps(results, indent=1, default=str))
    if set(results) != set(CASES):  # a partial run never writes --output: RESULTS.md is whole
        if set(results) & set(FRAMEWORKS):
            targets_ = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
            targets_ += framework_targets(results)
            targets_ += ["", "### What stands in the way", "", *framework_obstacles(results)]
            print("\n".join([*targets_, "", *framework_sections(results, 14)]))
        else:
            print(json.dumps(results, indent=1, default=str))
        return
    command = "python bench/run.py --output bench/RESULTS.md" + (" --quick" if options.quick else "")
    report = render(results, command)
    if options.output:
        options.output.write_text(report)
        print(f"bench: wrote {options.output}", file=sys.stderr)
    else:
        print(report)


if __name__ == "__main__":
    main()
