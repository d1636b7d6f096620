"""The key shapes of our providers' users, through the errors real SDKs and HTTP clients raise
(Google ``AIza...`` keys, ``?key=`` URLs, Azure ``api-key`` headers), and redaction's linear cost
on adversarial text: repeated prefixes of every built-in pattern.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import openai
import pytest
import requests
from google.genai import errors

import genai_fakes as G
import sdk_fakes as F
import steptrace
from steptrace._redaction import Redactor
from steptrace.testing import Capture

GOOGLE_KEY = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
AZURE_KEY = "3f9c0a7e5b1d4c2a8e6f0b9d7c5a3e1f"
HTTP = F.OPENAI_HTTP  # httpx2: the httpx the SDKs are built on


@pytest.fixture
def server() -> Iterator[F.FakeServer]:
    with F.FakeServer(F.Script()) as fake:
        yield fake


def _all_outputs(capture: Capture) -> str:
    """Everything steptrace emitted: the raw log, span attributes, event attributes, statuses."""
    parts = [capture.jsonl_path.read_text(encoding="utf-8") if capture.jsonl_path.exists() else ""]
    for span in capture.spans:
        parts.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            parts.extend(str(v) for v in (event.attributes or {}).values())
        parts.append(str(span.status.description))
    return "\n".join(parts)


def _failed_record(capture: Capture) -> dict[str, object]:
    [record] = [r for r in capture.records if r.get("error") and r["type"] in ("tool_call", "llm_call")]
    return record


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {GOOGLE_KEY} rejected", "key [REDACTED:google-api-key] rejected"),
        (f'{{"key": "{GOOGLE_KEY}"}}', '{"key": "[REDACTED:google-api-key]"}'),
        ("GET /v1/models?key=abc123def&alt=json", "GET /v1/models?key=[REDACTED:sensitive-key]&alt=json"),
        ("GET /v1/models?alt=json&KEY=abc123def", "GET /v1/models?alt=json&KEY=[REDACTED:sensitive-key]"),
        ("for url 'https://h/x?api_key=abc123def'", "for url 'https://h/x?api_key=[REDACTED:sensitive-key]'"),
        (f"api-key: {AZURE_KEY}", "api-key: [REDACTED:sensitive-key]"),
        (f"Ocp-Apim-Subscription-Key: {AZURE_KEY}", "Ocp-Apim-Subscription-Key: [REDACTED:sensitive-key]"),
        (f"x-goog-api-key: {AZURE_KEY}", "x-goog-api-key: [REDACTED:sensitive-key]"),
        # Not secrets: a "key" that is no query parameter, a Google-looking word inside a token.
        ("the key=value pairs", "the key=value pairs"),
        ("primary_key=42", "primary_key=42"),
        ("xAIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "xAIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ],
)
def test_provider_key_shapes_are_redacted(text: str, expected: str) -> None:
    """A Google key, a ?key= URL or an Azure api-key header in a value: the key reaches the log."""
    assert Redactor().redact_text(text) == expected


def test_httpx_status_error_with_key_in_url_is_redacted(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """httpx's raise_for_status() quotes the URL (?key=AIza...): the key reached the error message."""
    server.script.add(F.json_reply({"error": "denied"}, status=403))

    @steptrace.tool
    def fetch_models() -> None:
        with HTTP.Client() as client:
            client.post(server.url(f"/v1beta/models?key={GOOGLE_KEY}&alt=json")).raise_for_status()

    with pytest.raises(HTTP.HTTPStatusError) as raised, steptrace.agent_run(agent="a"):
        fetch_models()
    assert GOOGLE_KEY in str(raised.value)  # the user's exception is unchanged
    record = _failed_record(steptrace_capture)
    assert "?key=[REDACTED:" in str(record["error"]) and "403" in str(record["error"])
    assert GOOGLE_KEY not in _all_outputs(steptrace_capture)


def test_requests_http_error_with_key_in_url_is_redacted(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """requests' HTTPError ("403 Client Error: ... for url: ...?key=..."): the key reached the log."""
    server.script.add(F.json_reply({"error": "denied"}, status=403))
    plain_key = "0123456789abcdefXYZ"  # no recognisable shape: only its place in the URL tells

    @steptrace.tool
    def fetch() -> None:
        url = server.url(f"/maps/api/geocode/json?address=Paris&key={plain_key}")
        requests.post(url, timeout=5).raise_for_status()

    with pytest.raises(requests.HTTPError), steptrace.agent_run(agent="a"):
        fetch()
    assert "key=[REDACTED:sensitive-key]" in str(_failed_record(steptrace_capture)["error"])
    outputs = _all_outputs(steptrace_capture)
    assert plain_key not in outputs and "address=Paris" in outputs


def test_google_genai_error_quoting_the_key_is_redacted(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """The real google-genai client, an API error quoting its key and URL: the key reached the log."""
    steptrace.instrument_google_genai()
    try:
        message = f"API key not valid for https://generativelanguage.googleapis.com/v1beta?key={GOOGLE_KEY}"
        server.script.add(G.error(400, message))
        client = G.client(server)
        with pytest.raises(errors.ClientError), steptrace.agent_run(agent="a"):
            client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    finally:
        steptrace.uninstrument_google_genai()
    assert "[REDACTED:" in str(_failed_record(steptrace_capture)["error"])
    assert GOOGLE_KEY not in _all_outputs(steptrace_capture)


def test_azure_openai_error_echoing_the_api_key_header_is_redacted(
    steptrace_capture: Capture, server: F.FakeServer
) -> None:
    """The real AzureOpenAI client, a gateway error echoing the api-key header: the key reached the log."""
    steptrace.instrument_openai()
    try:
        server.script.add(F.error_reply(401, f"Access denied: bad header api-key: {AZURE_KEY}"))
        client = openai.AzureOpenAI(
            api_key=AZURE_KEY,
            azure_endpoint=server.url(),
            api_version="2024-10-21",
            max_retries=0,
            http_client=HTTP.Client(),
        )
        with client, pytest.raises(openai.AuthenticationError), steptrace.agent_run(agent="a"):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    finally:
        steptrace.uninstrument_openai()
    assert "api-key: [REDACTED:sensitive-key]" in str(_failed_record(steptrace_capture)["error"])
    assert AZURE_KEY not in _all_outputs(steptrace_capture)


# --- cost: linear in the text's size ----------------------------------------------------------------
# One sample per built-in detector; the adversarial texts repeat prefixes of each.
_SAMPLES = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "sk-ant-api03-Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1",
    "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5",
    GOOGLE_KEY,
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_pat_11ABCDEFG0123456789_abcdef",
    "xoxb-123456789012-1234567890123-AbCdEf",
    "xapp-1-A0123456789-abcdef",
    "https://hooks.slack.com/services/T0/B0/XXXX",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36P",
    "https://admin:pa55@api.example.com",
    "Authorization: Bearer abc.DEF-123_xyz",
    "Authorization: Basic dXNlcjpwYXNz",
    "X-Api-Key: v4lue;",
    'password="hunter2"',
    "'client_secret': 'abc'",
    "Cookie: a=1; b=2",
    "?key=abc123&",
    "api-key: abc123",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
)


def _adversarial_units() -> list[str]:
    units = {"X-Api-Key-", "key=", "cookie=", "1 2 ", "12-", 'key:"\\'}
    for sample in _SAMPLES:
        for length in {1, 3, 5, len(sample) // 2, len(sample) - 1, len(sample)}:
            units.add(sample[:length])
    return sorted(units)


def _seconds(redact: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - started)
    return best


def _repeated(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def test_redaction_cost_is_linear_on_repeated_prefixes_of_every_pattern() -> None:
    """An 8 KB tool result like ``X-Api-Key-X-Api-Key-...``: redaction took seconds (quadratic)."""
    redactor = Redactor()
    slow: list[str] = []
    for unit in _adversarial_units():
        for _attempt in range(2):  # a neighbour's load spike gets a second measurement
            large = _seconds(redactor.redact_text, _repeated(unit, 131_072))
            if large < 0.05:  # under any bound worth comparing (quadratic took seconds at 64 KB)
                break
            small = _seconds(redactor.redact_text, _repeated(unit, 16_384))
            # 8x the text: ~8x the time when linear (up to ~30x seen as the larger text leaves the
            # CPU caches of a shared machine), 64x and more when quadratic.
            if large < 40 * small and large < 1.0:
                break
        else:
            slow.append(f"{unit!r}: {small * 1e3:.1f} ms at 16 KB, {large * 1e3:.1f} ms at 128 KB")
    assert slow == []


def test_tool_result_of_repeated_header_names_is_captured_quickly(steptrace_capture: Capture) -> None:
    """A 64 KB tool result ``X-Api-Key-X-Api-Key-...``: capturing it held the GIL for seconds."""

    @steptrace.tool
    def headers() -> str:
        return _repeated("X-Api-Key-", 65_536) + ": s3cr3t-value"

    with steptrace.agent_run(agent="a"):
        started = time.perf_counter()
        headers()
        elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # was ~8 s
    assert "s3cr3t-value" not in _all_outputs(steptrace_capture)


@pytest.mark.parametrize(
    "key", ["x" * 300 + "_password", "Y-" * 200 + "X-Api-Key", "a.b-c_" * 100 + "clientSecret"]
)
def test_a_long_key_is_judged_by_its_last_words(key: str) -> None:
    """A key longer than 200 characters ending in a secret's name: its value reached the log."""
    assert Redactor().redact_text(f"{key}=hunter2 next") == f"{key}=[REDACTED:sensitive-key] next"
