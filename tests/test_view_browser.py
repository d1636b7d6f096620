"""`steptrace view` in a real headless browser: drawn waterfall, working details, inert payloads.

Uses Debian's ``chromium`` through Playwright (never a downloaded browser); ``.ci/run`` installs
it with apt-get.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from analysis_logs import T0_NS, make_run, write_jsonl
from analysis_png import close, decode_png, hex_rgb
from steptrace.analysis import load, write_html

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Every payload tries to set window.__pwned; the page must show them as text.
PAYLOADS = {
    "script": "<script>window.__pwned = 'script'</script>",
    "close": "</script><script>window.__pwned = 'close'</script>",
    "attribute": '" onmouseover="window.__pwned = \'attribute\'" x="',
    "image": "<img src=x onerror=\"window.__pwned = 'image'\">",
    "comment": "<!-- <script>window.__pwned = 'comment'</script>",
}
COLORS = {"llm_call": "#0a84ff", "tool_call": "#30b158", "agent_step": "#5e5ce6"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
        reason="Debian's chromium package is not installed (apt-get install chromium; .ci/run installs it)",
    ),
]


def hostile_log(tmp_path: Path) -> Path:
    """A failing run whose tool output, tool input, agent name and error carry the payloads."""
    spans = make_run(
        "hostile-run",
        "tool_error",
        agent=PAYLOADS["attribute"],
        tool_result=None,
        start_ns=T0_NS,
    )
    for span in spans:
        if span.name == "tool_execution":
            span.attributes["gen_ai.tool.call.arguments"] = json.dumps({"city": PAYLOADS["image"]})
            span.attributes["gen_ai.tool.call.result"] = json.dumps(PAYLOADS)
            span.description = "ValueError: " + PAYLOADS["close"]
            span.attributes["gen_ai.tool.name"] = "get_weather" + PAYLOADS["comment"]
    spans += make_run("ok-run", start_ns=T0_NS + 60_000_000_000)
    return write_jsonl(tmp_path / "steps.jsonl", spans)


@pytest.fixture
def page(tmp_path: Path) -> Any:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 700})
        finally:
            browser.close()


def test_view_draws_the_waterfall_and_payloads_stay_text(tmp_path: Path, page: Any) -> None:
    """The HTML view would show no bars, break on click, reach the network, or run a tool
    output's script."""
    runs = load(hostile_log(tmp_path))
    run = runs.get("hostile-run")
    assert run is not None
    html_path = write_html(run, tmp_path / "run.html")

    requests: list[str] = []
    dialogs: list[str] = []
    problems: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            requests.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(html_path.as_uri())

    rows = page.locator(".row")
    records = run.records()
    assert rows.count() == len(records)
    assert page.locator(".row[data-error]").count() == sum(1 for r in records if r["status"] == "error")

    # Hover everything (an injected onmouseover would fire) and open every span.
    for index in range(rows.count()):
        rows.nth(index).hover()
        rows.nth(index).click()
    tool_row = page.locator(".row", has_text="tool_call")
    tool_row.click()
    detail = page.locator("#detail").inner_text()
    for payload in PAYLOADS.values():
        # Shown literally, as text inside the pretty-printed JSON (where " reads \").
        assert json.dumps(payload)[1:-1] in detail
    assert page.locator("#detail pre").count() == 3  # attributes, input, output
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 2  # the page's data and its own script, no more
    assert dialogs == [] and requests == [] and problems == []
    assert PAYLOADS["attribute"] in page.locator(".meta").inner_text()

    # Bars sit on a time axis: widths are proportional to durations.
    run_box = page.locator(".row .bar.t-run").bounding_box()
    run_record = records[0]
    assert run_record["type"] == "run"
    for index, record in enumerate(records):
        box = rows.nth(index).locator(".bar").bounding_box()
        assert box is not None
        expected = run_box["width"] * record["duration_ms"] / run_record["duration_ms"]
        assert abs(box["width"] - max(expected, 2)) <= 2.5, (record["type"], box, expected)

    screenshot = page.screenshot(full_page=True)
    (tmp_path / "view.png").write_bytes(screenshot)
    # The pixels: the middle of each bar has its type's colour (errors are striped, so sample
    # the healthy llm bar, and the bars' left edge for the others).
    for kind, color in COLORS.items():
        bar = page.locator(f".bar.t-{kind}").first
        box = bar.bounding_box()
        assert box is not None and box["width"] >= 2
        clip = {"x": box["x"], "y": box["y"] + 4, "width": max(2.0, min(box["width"], 6.0)), "height": 4}
        _, _, pixels = decode_png(page.screenshot(clip=clip))
        drawn = [p for row in pixels for p in row]
        assert any(close(p, hex_rgb(color)) for p in drawn), (kind, drawn[:4])


def test_view_of_a_healthy_run_has_no_error_marks(tmp_path: Path, page: Any) -> None:
    """A healthy run's page would show error marks or be missing spans."""
    runs = load(hostile_log(tmp_path))
    run = runs.get("ok-run")
    assert run is not None
    page.goto(write_html(run, tmp_path / "ok.html").as_uri())
    assert page.locator(".row").count() == len(run.records()) == 6
    assert page.locator(".row[data-error]").count() == 0
    assert page.locator(".bar.error").count() == 0
    page.locator(".row").nth(2).press("Enter")  # keyboard works too
    assert page.locator("#detail h2").inner_text().startswith("#2 llm_call")
