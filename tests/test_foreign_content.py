"""Other libraries' spans in the step log: their content follows steptrace's capture policy.

The anthropic SDK's own instrumentation, opentelemetry-instrumentation-openai-v2, traceloop /
openllmetry and openinference put prompts and completions on spans steptrace does not own; the
step log copies those spans' attributes, so their content must be dropped when capture is off and
redacted and bounded like steptrace's own when it is on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import trace

import sdk_fakes as F
import steptrace
from steptrace.testing import Capture

ANTHROPIC_KEY = "sk-ant-api03-Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1Ji0Hg9Fe8Dc7Ba6-_xyzXYZ"
MESSAGES = json.dumps(
    [{"role": "user", "parts": [{"type": "text", "content": f"my key is {ANTHROPIC_KEY}, summarise"}]}]
)

# One content-bearing attribute in each library's own shape.
FOREIGN_CONTENT: dict[str, str] = {
    "gen_ai.input.messages": MESSAGES,
    "gen_ai.output.messages": json.dumps([{"role": "model", "parts": [{"type": "text", "content": "ok"}]}]),
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "be terse"}]),
    "gen_ai.tool.call.arguments": json.dumps({"path": "/etc/passwd"}),
    "gen_ai.tool.call.result": "root:x:0:0",
    "gen_ai.tool.definitions": json.dumps([{"name": "read_file"}]),
    "gen_ai.prompt": "legacy prompt",  # traceloop / openllmetry, older conventions
    "gen_ai.completion": "legacy completion",
    "gen_ai.prompt.0.content": f"indexed prompt {ANTHROPIC_KEY}",
    "gen_ai.completion.0.content": "indexed completion",
    "llm.input_messages.0.message.content": "openinference prompt",  # openinference
    "llm.output_messages.0.message.content": "openinference completion",
    "input.value": "openinference input",
    "output.value": "openinference output",
}
NOT_CONTENT: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-x",
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.prompt.name": "summary-v2",  # the prompt's name, not its text
}


def _sdk_span(attributes: dict[str, Any]) -> None:
    """A span from another library: its own instrumentation scope, through the plain OTel API."""
    tracer = trace.get_tracer_provider().get_tracer("opentelemetry.instrumentation.anthropic", "9.9")
    with tracer.start_as_current_span("chat claude-x", attributes=attributes):
        pass


def _foreign_record(capture: Capture) -> dict[str, Any]:
    (record,) = [r for r in capture.records if r["type"] == "span"]
    attributes: dict[str, Any] = record["attributes"]
    return attributes


@pytest.fixture(autouse=True)
def _global_provider(steptrace_capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK instrumentations use the global provider: make it the fixture's."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", steptrace_capture.tracer_provider)


def test_capture_off_drops_foreign_content_from_the_step_log(steptrace_capture: Capture) -> None:
    """capture_content=False: an SDK span's prompt, with a raw API key, lands in steps.jsonl."""
    steptrace_capture.configure(capture_content=False)
    with steptrace.agent_run(agent="a"):
        _sdk_span({**FOREIGN_CONTENT, **NOT_CONTENT})
    attributes = _foreign_record(steptrace_capture)
    assert attributes == NOT_CONTENT
    log = steptrace_capture.jsonl_path.read_text(encoding="utf-8")
    assert ANTHROPIC_KEY not in log and "sk-ant-" not in log and "openinference" not in log


def test_capture_on_keeps_foreign_content_redacted(steptrace_capture: Capture) -> None:
    """capture on: an SDK span's prompt is copied with its API key in clear."""
    with steptrace.agent_run(agent="a"):
        _sdk_span({**FOREIGN_CONTENT, **NOT_CONTENT})
    attributes = _foreign_record(steptrace_capture)
    assert set(attributes) == set(FOREIGN_CONTENT) | set(NOT_CONTENT)
    messages = json.loads(attributes["gen_ai.input.messages"])
    assert messages[0]["parts"][0]["content"] == "my key is [REDACTED:anthropic-key], summarise"
    assert attributes["gen_ai.prompt.0.content"] == "indexed prompt [REDACTED:anthropic-key]"
    assert attributes["input.value"] == "openinference input"
    assert ANTHROPIC_KEY not in steptrace_capture.jsonl_path.read_text(encoding="utf-8")


def test_capture_content_block_drops_foreign_content(steptrace_capture: Capture) -> None:
    """with capture_content(False): an SDK call inside the block still logs its prompt."""
    with steptrace.agent_run(agent="a"), steptrace.capture_content(False):
        _sdk_span(dict(FOREIGN_CONTENT))
    assert _foreign_record(steptrace_capture) == {}


def test_foreign_content_is_bounded_like_captured_content(steptrace_capture: Capture) -> None:
    """A 200 KB prompt on an SDK span: the step log copies it whole (or cut at 1 KB, unlike ours)."""
    steptrace_capture.configure(capture_content=True, max_content_bytes=2_048)
    prompt = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "x" * 200_000}]}])
    with steptrace.agent_run(agent="a"):
        _sdk_span({"gen_ai.input.messages": prompt})
    copied = _foreign_record(steptrace_capture)["gen_ai.input.messages"]
    assert 1_500 < len(copied.encode("utf-8")) <= 2_048 + 64
    text = json.loads(copied)[0]["parts"][0]["content"]  # still the messages, as JSON
    assert text.startswith("xxx") and text.endswith("...[truncated: 200000 chars]")


def test_foreign_attributes_that_are_not_content_are_redacted(steptrace_capture: Capture) -> None:
    """An SDK span's URL or header quoting a key: the key is copied into the step log."""
    steptrace_capture.configure(capture_content=False)
    with steptrace.agent_run(agent="a"):
        _sdk_span({"url.full": f"https://api.example.com/v1?key={ANTHROPIC_KEY}", "retries": [ANTHROPIC_KEY]})
    attributes = _foreign_record(steptrace_capture)
    assert attributes["url.full"] == "https://api.example.com/v1?key=[REDACTED:anthropic-key]"
    assert attributes["retries"] == ["[REDACTED:anthropic-key]"]


@pytest.mark.parametrize("capture", [False, True])
def test_anthropic_sdk_own_span_follows_the_capture_policy(steptrace_capture: Capture, capture: bool) -> None:
    """The anthropic SDK's own span in content mode: a key in the prompt reaches steps.jsonl raw."""
    steptrace_capture.configure(capture_content=capture)
    script = F.Script(F.json_reply(F.anthropic_message()))
    client = F.anthropic_client(
        script,
        open_telemetry={
            "tracer_provider": steptrace_capture.tracer_provider,
            "traces": {"content_mode": "content"},
        },
    )
    with steptrace.agent_run(agent="a"):
        client.messages.create(
            model="claude-x",
            max_tokens=10,
            system="be terse",
            messages=[{"role": "user", "content": f"my key is {ANTHROPIC_KEY}"}],
        )
    (sdk_span,) = [s for s in steptrace_capture.spans if "gen_ai.input.messages" in (s.attributes or {})]
    assert ANTHROPIC_KEY in str((sdk_span.attributes or {})["gen_ai.input.messages"])  # the SDK's business
    attributes = _foreign_record(steptrace_capture)
    assert ANTHROPIC_KEY not in steptrace_capture.jsonl_path.read_text(encoding="utf-8")
    if capture:
        assert "[REDACTED:anthropic-key]" in attributes["gen_ai.input.messages"]
        assert "gen_ai.system_instructions" in attributes and "gen_ai.output.messages" in attributes
    else:
        assert not {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"} & set(
            attributes
        )
        assert attributes["gen_ai.request.model"] == "claude-x"
