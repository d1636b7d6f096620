"""Write the README's screenshot of ``steptrace report`` (docs/report.png), from the test fleet.

    .venv/bin/python tests/report_screenshot.py docs/report.png

The log is the report tests' fleet (two releases, failures, loops); the page is opened in
Debian's chromium and its top (headline, charts, lists) is captured at 1x, kept small.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_logs import fleet_log
from steptrace.analysis import load
from steptrace.analysis._report import write_report

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1180, 900
MAX_BYTES = 150_000


def screenshot(out: Path) -> int:
    """Write the PNG to ``out``; returns its size in bytes."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="steptrace-report-png-") as tmp:
        directory = Path(tmp)
        runs = load(fleet_log(directory))
        title = "steptrace report: weather fleet"
        page_path = write_report(runs, directory / "report.html", title=title).path
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
                page.goto(page_path.as_uri())
                page.wait_for_selector("body[data-ready]")
                data = page.screenshot(clip={"x": 0, "y": 0, "width": WIDTH, "height": HEIGHT})
            finally:
                browser.close()
    out.write_bytes(data)
    return len(data)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png")
    size = screenshot(target)
    print(f"wrote {target} ({size:,} bytes)")
    if size > MAX_BYTES:
        raise SystemExit(f"{target} is {size:,} bytes, over the {MAX_BYTES:,} the README allows")
