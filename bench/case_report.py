"""Case 5: ``steptrace report`` over a fleet: 10,000 runs / 1,000,000 step records.

    .venv-bench/bin/python bench/case_report.py [--runs 10000 --records-per-run 100]

Template runs are recorded by real steptrace agents (two releases, three agents, four tools, ok
runs, failing tools, model errors, loops that end at ``max_steps``), then stamped out into a log
of ``runs`` runs spread over a week (new run and trace ids, times shifted and stretched). Measured:
the report command in a fresh process (wall seconds, peak RSS, file size), then the page in
Debian's chromium through Playwright: time until the page says it is ready, the page's own
``performance`` timings, and the longest script task it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_average, versions

CHROMIUM = "/usr/bin/chromium"
_PEAK = (
    "import atexit, os\n"
    "def _peak():\n"
    "    with open('/proc/self/status') as status, open(os.environ['BENCH_PEAK_FILE'], 'w') as out:\n"
    "        out.write(next(line for line in status if line.startswith('VmHWM:')))\n"
    "atexit.register(_peak)\n"
)
CLI = _PEAK + "import sys; from steptrace.cli import main; sys.exit(main(sys.argv[1:]))"
T0 = datetime(2026, 11, 16, tzinfo=timezone.utc).timestamp()
WEEK_S = 7 * 86_400
# Template durations are real (a few ms of sleep); stretched so a run lasts seconds.
STRETCH = 40.0


def _templates(directory: Path, steps: int) -> list[list[dict[str, Any]]]:
    """Real runs recorded by steptrace, one list of records per run."""
    import steptrace

    log = directory / "templates.jsonl"
    telemetry = steptrace.configure("bench-fleet", jsonl_path=log, capture_content=True)

    @steptrace.tool
    def search(query: str) -> list[str]:
        time.sleep(0.002)
        return [f"{query}-{i}" for i in range(3)]

    @steptrace.tool
    def fetch_page(url: str) -> str:
        time.sleep(0.004)
        return "<html>page</html>"

    @steptrace.tool
    def get_weather(city: str) -> dict[str, Any]:
        time.sleep(0.001)
        if city == "Atlantis":
            raise ValueError("no such city: Atlantis")
        return {"city": city, "temp_c": 21}

    @steptrace.tool
    def sql_query(sql: str) -> list[int]:
        time.sleep(0.003)
        if "DROP" in sql:
            raise PermissionError("read-only connection")
        return [1, 2, 3]

    tools = [search, fetch_page, get_weather, sql_query]
    rng = random.Random(7)
    kinds = ["ok"] * 5 + ["tool_error", "loop", "model_error"]
    for release in ("1.4.0", "1.5.0"):
        for agent in ("researcher", "support-bot", "sql-analyst"):
            for kind in kinds:
                with steptrace.agent_run(agent=agent, release=release) as run:
                    for number in range(steps):
                        with steptrace.agent_step():
                            with steptrace.llm_request(model="gpt-4o-mini", provider="openai") as llm:
                                time.sleep(0.004 + rng.random() * 0.004 * (2 if release == "1.5.0" else 1))
                                if kind == "model_error" and number == steps // 2:
                                    llm.fail("RateLimitError: rate limit exceeded")
                                    run.stop_reason = "error"
                                    break
                                llm.record_usage(input_tokens=900 + 40 * number, output_tokens=60)
                            tool = tools[(number + len(agent)) % len(tools)]
                            if kind == "loop":
                                search("the same query")
                            elif kind == "tool_error" and number == steps - 1:
                                try:
                                    get_weather("Atlantis") if agent != "sql-analyst" else sql_query("DROP x")
                                except (ValueError, PermissionError):
                                    run.stop_reason = "error"
                            else:
                                tool(f"arg-{number}")
                    if run.stop_reason is None:
                        run.stop_reason = "max_steps" if kind == "loop" else "end_turn"
    telemetry.shutdown()
    by_run: dict[str, list[dict[str, Any]]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        by_run.setdefault(record["run_id"], []).append(record)
    return list(by_run.values())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_fleet_log(directory: Path, runs: int, records_per_run: int) -> tuple[Path, int]:
    """A log of ``runs`` runs of about ``records_per_run`` records each; returns (path, records)."""
    import msgspec

    steps = max(1, (records_per_run - 1) // 3)
    templates = _templates(directory, steps)
    prepared = []
    for records in templates:
        origin = min(
            datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")).timestamp() for r in records
        )
        offsets = [
            (
                datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")).timestamp() - origin,
                float(r["ts"]) - origin,
            )
            for r in records
        ]
        prepared.append((records, offsets))
    encode = msgspec.json.Encoder().encode
    path = directory / "fleet.jsonl"
    written = 0
    rng = random.Random(11)
    with path.open("wb") as out:
        for number in range(runs):
            records, offsets = prepared[rng.randrange(len(prepared))]
            base = T0 + WEEK_S * number / runs
            run_id = f"{number * 0x9E3779B97F4A7C15 % (1 << 64):016x}"
            trace_id = f"{number + 1:032x}"
            lines = []
            for record, (start, end) in zip(records, offsets, strict=True):
                copy = dict(record)
                copy["run_id"], copy["trace_id"] = run_id, trace_id
                copy["started_at"] = _iso(base + start * STRETCH)
                copy["ts"] = base + end * STRETCH
                copy["duration_ms"] = float(record["duration_ms"]) * STRETCH
                lines.append(encode(copy))
            out.write(b"\n".join(lines) + b"\n")
            written += len(lines)
    return path, written


def run_cli(argv: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        env = {**os.environ, "BENCH_PEAK_FILE": peak.name}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CLI, *argv], capture_output=True, text=True, env=env, check=False
        )
        seconds = time.perf_counter() - start
        kib = int(peak.read().split()[1])
    if done.returncode != 0:
        raise SystemExit(f"report failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"seconds": seconds, "peak_rss_mib": kib / 1024, "stdout": done.stdout.strip()}


def browser_skipped() -> str | None:
    """Why the page cannot be opened here, or None when it can."""
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in this venv (it is in the test extra)"
    return None


def browser_load(report: Path, repeats: int = 3) -> dict[str, Any]:
    """Open the report in chromium; the page marks ``body[data-ready]`` once its script has run."""
    from playwright.sync_api import sync_playwright

    samples: list[dict[str, float]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                start = time.perf_counter()
                page.goto(report.as_uri())
                page.wait_for_selector("body[data-ready]", timeout=60_000)
                wall = time.perf_counter() - start
                timing = page.evaluate(
                    "(() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return {dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd,"
                    " ready_ms: Number(document.body.dataset.ready)}; })()"
                )
                rows = page.locator("#runs-table tbody tr").count()
                samples.append({"wall_seconds": wall, **timing, "table_rows_drawn": rows})
                page.close()
        finally:
            browser.close()
    best = min(samples, key=lambda s: s["wall_seconds"])
    return {"samples": samples, "best": best}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_REPORT_RUNS", "10000")))
    parser.add_argument("--records-per-run", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="keep the log and the report in this directory")
    options = parser.parse_args()
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="steptrace-bench-") as tmp:
        directory = options.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        log, records = make_fleet_log(directory, options.runs, options.records_per_run)
        generate_s = time.perf_counter() - started
        report = directory / "report.html"
        command = run_cli(["report", "--log", str(log), "-o", str(report), "--json"])
        details = json.loads(command.pop("stdout"))
        result: dict[str, Any] = {
            "case": "report",
            "runs": options.runs,
            "records": records,
            "log_bytes": log.stat().st_size,
            "log_generation_seconds": generate_s,
            "steptrace report": command,
            "report_bytes": report.stat().st_size,
            "report": details,
            "load_average_start": load_start,
        }
        skipped = browser_skipped()
        if skipped is None:
            result["browser"] = browser_load(report)
        else:
            result["browser_skipped"] = skipped
        emit({**result, "versions": versions("steptrace", "playwright")})


if __name__ == "__main__":
    main()
