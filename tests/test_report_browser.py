"""`steptrace report` in a real headless browser: every section drawn, the table sorts and
filters, a run opens its waterfall, payloads from the logs stay text, nothing leaves the page.

Uses Debian's ``chromium`` through Playwright (never a downloaded browser), as the view tests do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from analysis_png import close, decode_png, hex_rgb
from report_logs import (
    HOSTILE_AGENT,
    HOSTILE_ERROR,
    HOSTILE_MODEL,
    HOSTILE_RUN_ID,
    HOSTILE_TOOL,
    PAYLOADS,
    fleet_log,
)
from steptrace.analysis import RunSet, load
from steptrace.analysis._report import PAGE_ROWS, write_report
from test_view_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
        reason="Debian's chromium package is not installed (apt-get install chromium; .ci/run installs it)",
    ),
]


class Watched:
    """A page with every network request, dialog and script error recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        page.route("**/*", self._route)
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            self.requests.append(url)
            route.abort()

    def open(self, path: Path) -> None:
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready]")

    def clean(self) -> bool:
        return self.requests == [] and self.dialogs == [] and self.problems == []


@pytest.fixture
def browser() -> Any:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def watched(browser: Any) -> Watched:
    return Watched(browser.new_page(viewport={"width": 1300, "height": 900}))


def _report(tmp_path: Path, hostile: bool = False) -> tuple[RunSet, Path]:
    runs = load(fleet_log(tmp_path, hostile=hostile))
    return runs, write_report(runs, tmp_path / "report.html").path


def _visible_run_ids(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.run)"))


def test_every_section_renders_on_load(tmp_path: Path, watched: Watched) -> None:
    """Opening the report would show no release figures, verdicts, charts, lists or runs."""
    runs, path = _report(tmp_path)
    watched.open(path)
    page = watched.page
    assert page.locator("#headline tr[data-release]").count() == 2
    second = page.locator('#headline tr[data-release="1.5.0"]')
    assert second.locator(".verdict").count() >= 5
    assert second.locator('[data-metric="failed_rate"]').inner_text().endswith("worse")
    assert "1.5.0 vs 1.4.0" in page.locator(".verdicts").inner_text()
    for chart in ("chart-runs", "chart-error-rate", "chart-p95", "chart-tool-calls",
                  "chart-tool-failures", "chart-tool-p95"):  # fmt: skip
        assert page.locator(f"#{chart} svg .mark").count() > 0, chart
        assert page.locator(f"#{chart}").is_visible()
    assert page.locator("#slowest a.run-link").count() == 10
    slowest = runs.runs(order_by="duration", limit=1)[0].run_id
    assert page.locator("#slowest a.run-link").first.get_attribute("data-run") == slowest
    max_steps = {r.run_id for r in runs.runs(stop_reason="max_steps")}
    shown = page.eval_on_selector_all("#max-steps a.run-link", "links => links.map(a => a.dataset.run)")
    assert shown and set(shown) <= max_steps
    failing = page.locator("#failing-tools").inner_text()
    assert "get_weather" in failing and "ValueError: no such city" in failing and "search" not in failing
    assert page.locator("#failing-tools a.run-link").count() > 0
    assert len(_visible_run_ids(page)) == min(len(runs), PAGE_ROWS)
    assert f"of {len(runs)} matching runs" in page.locator("#runs-count").inner_text()
    assert watched.clean()


def test_sorting_and_each_filter_change_the_visible_rows(tmp_path: Path, watched: Watched) -> None:
    """Sorting by a column or picking a release, stop reason, agent or tool would leave the
    table as it was, or show runs that do not match."""
    runs, path = _report(tmp_path)
    watched.open(path)
    page = watched.page
    newest_first = _visible_run_ids(page)
    assert newest_first == [r.run_id for r in reversed(list(runs))]
    page.locator('#runs-table th[data-col="duration"]').click()
    assert _visible_run_ids(page) == [r.run_id for r in runs.runs(order_by="duration")]
    page.locator('#runs-table th[data-col="duration"]').click()
    ascending = [runs.get(i).duration_ms for i in _visible_run_ids(page)]  # type: ignore[union-attr]
    assert ascending == sorted(r.duration_ms for r in runs)
    page.locator('#runs-table th[data-col="tokens"]').click()
    tokens = [runs.get(i).total_tokens for i in _visible_run_ids(page)]  # type: ignore[union-attr]
    assert tokens == sorted(tokens, reverse=True) and tokens[0] > tokens[-1]

    def only(select: str, label: str, expected: set[str]) -> None:
        page.select_option(select, label=label)
        visible = set(_visible_run_ids(page))
        assert visible == expected, (select, label)
        page.select_option(select, value="")
        assert len(_visible_run_ids(page)) == len(runs)

    only("#f-release", "1.5.0", {r.run_id for r in runs.runs(release="1.5.0")})
    only("#f-stop", "max_steps", {r.run_id for r in runs.runs(stop_reason="max_steps")})
    only("#f-agent", "travel-agent", {r.run_id for r in runs if r.agent == "travel-agent"})
    only("#f-tool", "book_hotel", {r.run_id for r in runs.runs(tool="book_hotel")})
    # Filters combine.
    page.select_option("#f-release", label="1.4.0")
    page.select_option("#f-stop", label="error")
    expected = {r.run_id for r in runs.runs(release="1.4.0", stop_reason="error")}
    assert set(_visible_run_ids(page)) == expected and expected
    assert watched.clean()


def test_clicking_a_run_shows_its_waterfall(tmp_path: Path, watched: Watched) -> None:
    """A click on a run (in the table or a list) would not open its timeline, or a broken one."""
    runs, path = _report(tmp_path)
    watched.open(path)
    page = watched.page
    run = runs.runs(stop_reason="error")[0]
    page.locator(f'#runs-table tbody tr[data-run="{run.run_id}"]').click()
    assert page.locator("#run-detail h2").inner_text() == f"Run {run.run_id}"
    frame = page.frame_locator("#run-detail iframe")
    assert frame.locator(".row").count() == len(run.records())
    assert frame.locator(".row[data-error]").count() == sum(r["status"] == "error" for r in run.records())
    frame.locator(".row", has_text="tool_call").first.click()  # the waterfall's own script runs
    assert "get_weather" in frame.locator("#detail h2").inner_text()
    box = frame.locator(".bar.t-run").bounding_box()
    assert box is not None and box["width"] > 100
    # From a list: the slowest run.
    link = page.locator("#slowest a.run-link").first
    slowest = link.get_attribute("data-run")
    link.scroll_into_view_if_needed()
    link.click()
    assert page.locator("#run-detail").get_attribute("data-run") == slowest
    assert frame.locator(".row").count() == len(runs.get(slowest).records())  # type: ignore[union-attr, arg-type]
    assert watched.clean()


def test_hostile_strings_show_as_text_and_never_run(tmp_path: Path, watched: Watched) -> None:
    """An agent, tool, model or error text from the logs would run as script or vanish."""
    _, path = _report(tmp_path, hostile=True)
    watched.open(path)
    page = watched.page
    page.select_option("#f-agent", label=HOSTILE_AGENT)
    assert set(_visible_run_ids(page)) == {"hostile-fail", "hostile-loop"}
    assert HOSTILE_AGENT in page.locator("#runs-table tbody").inner_text()
    page.select_option("#f-agent", value="")
    options = page.eval_on_selector_all("#f-tool option", "o => o.map(x => x.textContent)")
    assert HOSTILE_TOOL in options
    failing = page.locator("#failing-tools").inner_text()
    assert HOSTILE_TOOL in failing and HOSTILE_ERROR in failing
    for target in page.locator("a.run-link, #runs-table tbody tr, .chart .mark").all()[:150]:
        target.hover(force=True)  # a 1 px bar (a 0% rate) is still hovered
    page.locator('#runs-table tbody tr[data-run="hostile-fail"]').click()
    frame = page.frame_locator("#run-detail iframe")
    rows = frame.locator(".row")
    for index in range(rows.count()):
        rows.nth(index).hover()
        rows.nth(index).click()
    frame.locator(".row", has_text="llm_call").first.click()
    assert json.dumps(HOSTILE_MODEL)[1:-1] in frame.locator("#detail").inner_text()
    assert HOSTILE_AGENT in page.locator("#run-detail p").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert frame.locator("body").evaluate("() => window.__pwned") is None
    assert page.locator("img").count() == 0 and frame.locator("img").count() == 0
    # The run whose id is a payload (and "__proto__"): listed among the slowest, it opens.
    link = page.locator(f'#slowest a.run-link[data-run="{HOSTILE_RUN_ID}"]')
    assert link.inner_text() == HOSTILE_RUN_ID[:16]
    link.scroll_into_view_if_needed()
    link.click()
    assert page.locator("#run-detail h2").inner_text() == f"Run {HOSTILE_RUN_ID}"
    assert page.frame_locator("#run-detail iframe").locator(".row").count() > 0
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 3
    assert watched.clean()
    assert PAYLOADS["script"] not in page.content().split("report-data")[0]


def test_screenshot_shows_the_charts_drawn(tmp_path: Path, watched: Watched) -> None:
    """The charts would be blank boxes: their bars and lines must be on the screen in colour."""
    _, path = _report(tmp_path)
    watched.open(path)
    page = watched.page
    (tmp_path / "report.png").write_bytes(page.screenshot(full_page=True))
    for chart, color in (("chart-runs", "#0a84ff"), ("chart-error-rate", "#d70015"),
                         ("chart-p95", "#5e5ce6"), ("chart-tool-calls", "#0a84ff"),
                         ("chart-tool-failures", "#d70015")):  # fmt: skip
        locator = page.locator(f"#{chart} svg")
        locator.scroll_into_view_if_needed()
        _, _, pixels = decode_png(locator.screenshot())
        drawn = [p for row in pixels for p in row]
        share = sum(1 for p in drawn if close(p, hex_rgb(color))) / len(drawn)
        assert share > 0.005, (chart, share)
    assert watched.clean()


def test_readme_screenshot_is_generated_small_and_drawn(tmp_path: Path) -> None:
    """The README's screenshot would be stale-sized, blank or too big to commit."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    from report_screenshot import MAX_BYTES, screenshot

    size = screenshot(tmp_path / "report.png")
    assert 20_000 < size <= MAX_BYTES
    width, height, pixels = decode_png((tmp_path / "report.png").read_bytes())
    assert (width, height) == (1180, 900)
    drawn = [p for row in pixels for p in row]
    for color in ("#0a84ff", "#d70015", "#5e5ce6", "#30b158"):  # runs, error rate, p95, cost
        assert sum(1 for p in drawn if close(p, hex_rgb(color))) > 500, color
    committed = Path(__file__).resolve().parents[1] / "docs" / "report.png"
    assert committed.stat().st_size <= MAX_BYTES
    assert decode_png(committed.read_bytes())[:2] == (1180, 900)
