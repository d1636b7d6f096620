"""The HTML view as text: self-contained, escaped, one allowed script (no browser needed)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

from analysis_logs import make_run, write_jsonl
from steptrace.analysis import load, render_html

PAYLOAD = '</script><script>alert(1)</script>" onmouseover="alert(2)<!--'


def hostile_page(tmp_path: Path) -> tuple[str, int]:
    spans = make_run('id"<x>', "tool_error", agent=PAYLOAD)
    for span in spans:
        if span.name == "tool_execution":
            span.attributes["gen_ai.tool.call.arguments"] = json.dumps({"q": PAYLOAD})
            span.description = PAYLOAD
    run = load(write_jsonl(tmp_path / "steps.jsonl", spans)).get('id"<x>')
    assert run is not None
    return render_html(run), len(run.records())


def test_page_has_exactly_its_own_two_scripts(tmp_path: Path) -> None:
    """A `</script>` in a tool output would end the data block and start a script of its own."""
    page, _ = hostile_page(tmp_path)
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    assert "<script>alert(1)" not in page
    assert 'onmouseover="alert' not in page
    assert "<!--" not in page


def test_payloads_survive_as_data(tmp_path: Path) -> None:
    """Escaping would mangle what the user's tool actually returned."""
    page, count = hostile_page(tmp_path)
    data = re.search(r'<script id="steptrace-data" type="application/json">(.*?)</script>', page, re.S)
    assert data is not None
    spans = json.loads(data.group(1))["spans"]
    assert len(spans) == count
    (tool,) = [s for s in spans if s["attributes"]["type"] == "tool_call"]
    assert tool["input"] == {"q": PAYLOAD}
    assert tool["attributes"]["error"] == PAYLOAD


def test_page_loads_nothing_and_allows_only_its_script(tmp_path: Path) -> None:
    """The page would fetch from the network, or an injected script would be allowed to run."""
    page, _ = hostile_page(tmp_path)
    assert not re.search(r"(src|href)\s*=", page, re.I)
    assert "http://" not in page and "https://" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = html.unescape(csp.group(1))
    assert "default-src 'none'" in policy
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[-1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
