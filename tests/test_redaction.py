"""Redaction: each built-in detector, sensitive keys, user patterns and callable, error texts,
and by property — a generated secret never appears in any output (JSONL, span attributes, events).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import string
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steptrace
from steptrace._content import ContentPolicy
from steptrace._redaction import REDACTION_FAILED, Redactor, sensitive_key_kind
from steptrace.testing import Capture

OPENAI = "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
ANTHROPIC = "sk-ant-api03-Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1Ji0Hg9Fe8Dc7Ba6-_xyzXYZ"
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
GITHUB_PAT = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----"
)
CARD = "4111 1111 1111 1111"


def redact(text: str) -> str:
    return Redactor().redact_text(text)


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        (OPENAI, "openai-key"),
        ("sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4", "openai-key"),
        (ANTHROPIC, "anthropic-key"),
        (AWS, "aws-access-key"),
        (GITHUB, "github-token"),
        (GITHUB_PAT, "github-token"),
        (SLACK, "slack-token"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "slack-token"),
        (JWT, "jwt"),
        (PRIVATE_KEY, "private-key"),
        (CARD, "card-number"),
        ("4111-1111-1111-1111", "card-number"),
        ("378282246310005", "card-number"),
        ("6011111111111117", "card-number"),
    ],
)
def test_builtin_detector_replaces_the_whole_secret(secret: str, kind: str) -> None:
    """A known secret format in free text: it (or any piece of it) reaches the log."""
    text = f"config loaded: {secret} (from env)"
    out = redact(text)
    assert out == f"config loaded: [REDACTED:{kind}] (from env)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.DEF-123_xyz~+/=", "Authorization: [REDACTED:bearer-token]"),
        (
            '{"password": "hunter2 with spaces", "user": "bob"}',
            '{"password": "[REDACTED:sensitive-key]", "user": "bob"}',
        ),
        ("{'api_key': 'abc123'}", "{'api_key': '[REDACTED:sensitive-key]'}"),
        ("db_password=s3cr3t&user=bob", "db_password=[REDACTED:sensitive-key]&user=bob"),
        ("Cookie: session=abc; theme=dark\nnext", "Cookie: [REDACTED:sensitive-key]\nnext"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: [REDACTED:sensitive-key]"),
        ("X-Api-Key: 0123456789", "X-Api-Key: [REDACTED:sensitive-key]"),
        ("client_secret: 9f8e7d", "client_secret: [REDACTED:sensitive-key]"),
        (
            "postgres://admin:pa55word@db.internal:5432/app",
            "postgres://[REDACTED:url-credentials]@db.internal:5432/app",
        ),
        ("max_tokens=sk-proj-Ab3dE5gH7jK9mN1pQ3sT5v", "max_tokens=[REDACTED:openai-key]"),
        ("card 4111 1111 1111 1111 12/27", "card [REDACTED:card-number] 12/27"),
    ],
)  # fmt: skip
def test_secret_shapes_in_text(text: str, expected: str) -> None:
    """Headers, JSON or query strings quoting a secret: the secret value stays in the text."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=1024 temperature=0.2",
        "token_count: 17, input_tokens: 5",
        "task-abcdefghijklmnopqrstuvwxyz0123 finished",
        "author: Jane Austen; keyboard: qwerty",
        "the bearer of good news",
        "order 4111111111111112 shipped",  # fails the Luhn check
        "trace 1700000000123456789 at 12:00",
        "primary_key = 42, sort_key = name",
        "see https://example.com/docs?page=2",
        "password_policy: at least 12 characters",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    """Everyday agent text (token counts, ids, URLs): it is mangled by over-eager redaction."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True), ("PASSWORD", True), ("db_password", True), ("passwd", True),
        ("client_secret", True), ("secrets", True), ("access_token", True), ("refreshToken", True),
        ("X-Auth-Token", True), ("api_key", True), ("apiKey", True), ("x-api-key", True),
        ("Authorization", True), ("proxy-authorization", True), ("cookie", True),
        ("Set-Cookie", True), ("credentials", True), ("private_key", True), ("aws_secret_access_key", True),
        ("password2", True), ("auth", True),
        ("max_tokens", False), ("tokens", False), ("token_count", False), ("token_type", False),
        ("password_policy", False), ("primary_key", False), ("key", False), ("author", False),
        ("keyboard", False), ("secretary", False), ("passenger", False), ("session_id", False),
    ],
)  # fmt: skip
def test_sensitive_key_names(key: str, secret: bool) -> None:
    """Keys named like a secret: a password is logged, or token counts are hidden."""
    assert (sensitive_key_kind(key) == "sensitive-key") is secret


def test_values_under_sensitive_keys_are_replaced_whatever_they_are() -> None:
    """A dict with a password, a nested credentials dict, an int PIN: any of them is logged."""
    policy = ContentPolicy(True)
    value = {
        "user": "bob",
        "password": "correct horse",
        "credentials": {"user": "bob", "pin": 1234},
        "pin_secret": 4321,
        "api_key": None,
        "tokens": 12,
    }
    out = json.loads(policy.to_json(value))
    assert out == {
        "user": "bob",
        "password": "[REDACTED:sensitive-key]",
        "credentials": "[REDACTED:sensitive-key]",
        "pin_secret": "[REDACTED:sensitive-key]",
        "api_key": None,
        "tokens": 12,
    }


def test_secrets_in_keys_bytes_and_integers() -> None:
    """A secret used as a dict key, inside bytes, or a card number as an int: it is logged."""
    policy = ContentPolicy(True)
    out = policy.to_json(
        {OPENAI: 1, "raw": OPENAI.encode(), "card": 4111111111111111, "ns": 1700000000123456789}
    )
    assert OPENAI[8:20] not in out and "4111111111111111" not in out
    assert json.loads(out)["ns"] == 1700000000123456789  # a timestamp is not a card


def test_secret_straddling_the_size_limit_leaves_no_prefix() -> None:
    """A key cut in half by truncation: its first half is logged, unrecognisable as a secret."""
    policy = ContentPolicy(True, max_bytes=100)
    for offset in range(70, 100):
        text = "a" * offset + " " + OPENAI + " tail" + "b" * 500
        out = json.loads(policy.to_json(text))
        assert "sk-" not in out and "Ab3dE5" not in out, offset


def test_custom_patterns_and_callable(steptrace_capture: Capture) -> None:
    """configure(redact_patterns=, redact=): a matching value or the callable's target is logged."""

    def drop_ssn(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("[ssn]" if k == "ssn" else v) for k, v in value.items()}
        return value

    steptrace_capture.configure(
        redact_patterns=[r"ACME-\d{6}", re.compile("internal-[a-z]+")], redact=drop_ssn
    )

    @steptrace.tool
    def lookup(ssn: str, note: str) -> str:
        return f"found ACME-123456 for internal-project {OPENAI}"

    with steptrace.agent_run(agent="a"):
        lookup("123-45-6789", "ticket ACME-654321")
    record = next(r for r in steptrace_capture.records if r["type"] == "tool_call")
    assert record["input"] == {"ssn": "[ssn]", "note": "ticket [REDACTED:custom]"}
    assert record["output"] == "found [REDACTED:custom] for [REDACTED:custom] [REDACTED:openai-key]"


def test_raising_callable_gives_a_marker_never_the_raw_value(steptrace_capture: Capture) -> None:
    """A redact= callable that raises: the raw value is logged (or the app sees the exception)."""

    def broken(value: Any) -> Any:
        raise RuntimeError("bug in user redactor")

    steptrace_capture.configure(redact=broken)

    @steptrace.tool
    def lookup(patient: str) -> str:
        raise ValueError(f"no record for {patient}")

    with pytest.raises(ValueError), steptrace.agent_run(agent="a"):
        lookup("Jane Roe")
    record = next(r for r in steptrace_capture.records if r["type"] == "tool_call")
    assert record["input"] == REDACTION_FAILED
    assert record["error"] == f"ValueError: {REDACTION_FAILED}"
    raw = steptrace_capture.jsonl_path.read_text()
    spans = repr(
        [(s.attributes, [e.attributes for e in s.events], s.status) for s in steptrace_capture.spans]
    )
    assert "Jane Roe" not in raw and "Jane Roe" not in spans


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"redact_patterns": ["("]}, "not a valid regular expression"),
        ({"redact_patterns": [re.compile(b"x")]}, "bytes pattern"),
        ({"redact_patterns": [42]}, "must be str or re.Pattern"),
        ({"redact": "not callable"}, "must be a callable"),
    ],
)
def test_bad_redaction_settings_fail_at_configure(
    steptrace_capture: Capture, options: dict[str, Any], message: str
) -> None:
    """A bad pattern or redact=: configure() accepts it and redaction fails later, on the hot path."""
    with pytest.raises(steptrace.ConfigError, match=message):
        steptrace_capture.configure(**options)


def test_error_messages_and_stack_traces_are_redacted(steptrace_capture: Capture) -> None:
    """An exception quoting a secret: the secret reaches span events, status or the record's error."""

    @steptrace.tool
    def call_api(url: str) -> None:
        raise PermissionError(f"401 for {url} with key {OPENAI} and password=hunter2")

    with pytest.raises(PermissionError), steptrace.agent_run(agent="a") as run:
        with steptrace.tool("manual") as call:
            call.fail(f"upstream said: token={GITHUB}")
        call_api("https://admin:pa55@api.example.com")
        assert run  # unreachable
    outputs = _all_outputs(steptrace_capture)
    for secret in (OPENAI, "hunter2", GITHUB, "pa55"):
        assert secret not in outputs
    record = next(r for r in steptrace_capture.records if r["tool"] == "call_api")
    assert "[REDACTED:openai-key]" in record["error"] and "[REDACTED:sensitive-key]" in record["error"]


def test_long_error_message_cut_after_redaction() -> None:
    """An error message longer than the limit with a key at the cut: half the key is logged."""
    redactor = Redactor()
    for offset in range(1_980, 2_000):
        text = "e" * offset + " " + OPENAI
        out = redactor.redact_message(text, 2_000)
        assert "sk-" not in out and out.endswith(f"...[truncated: {len(text)} chars]")


# --- by property: a generated secret never appears in any output ---------------------------------

_ALNUM = string.ascii_letters + string.digits
_B64URL = _ALNUM + "-_"


def _body(alphabet: str, low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=low, max_size=high)


def _luhn_complete(digits: str) -> str:
    for check in "0123456789":
        candidate = digits + check
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


@st.composite
def _card(draw: st.DrawFn) -> tuple[str, str]:
    # A card network's first digit, and not one digit repeated (no card is 0000 0000 0000 0000).
    first = draw(st.sampled_from("3456"))
    rest = draw(st.text(alphabet=string.digits, min_size=11, max_size=17).filter(lambda d: len(set(d)) > 1))
    digits = _luhn_complete(first + rest)
    separator = draw(st.sampled_from(["", " ", "-"]))
    if separator and len(digits) == 16:
        digits_text = separator.join(digits[i : i + 4] for i in range(0, 16, 4))
    else:
        digits_text = digits
    return digits_text, digits


@st.composite
def _sensitive_assignment(draw: st.DrawFn) -> tuple[str, str]:
    key = draw(
        st.sampled_from(
            ["password", "api_key", "client_secret", "access_token", "X-Api-Key", "db_passwd", "api-key"]
        )
    )
    value = draw(_body(_ALNUM + "!#$%*+./:=?@^_~", 6, 30))
    shape = draw(
        st.sampled_from(["{key}={value}", '"{key}": "{value}"', "{key}: {value}", "'{key}': '{value}'"])
    )
    return shape.format(key=key, value=value), value


# (text to embed, the part that must never appear)
_SECRETS = st.one_of(
    _body(_B64URL, 20, 60).map(lambda b: ("sk-proj-" + b, b)),
    _body(_B64URL, 20, 60).map(lambda b: ("sk-ant-api03-" + b, b)),
    _body(_B64URL, 35, 35).map(lambda b: ("AIza" + b, b)),
    _body(_ALNUM + "-_.~", 12, 40).map(lambda b: (f"https://maps.example.com/api?address=x&key={b}", b)),
    st.tuples(st.sampled_from(["AKIA", "ASIA"]), _body(string.ascii_uppercase + string.digits, 16, 16)).map(
        lambda t: (t[0] + t[1], t[1])
    ),
    _body(_ALNUM, 36, 36).map(lambda b: ("ghp_" + b, b)),
    _body(_ALNUM + "-", 20, 50).map(lambda b: ("xoxb-" + b, b)),
    st.tuples(_body(_B64URL, 10, 40), _body(_B64URL, 10, 40), _body(_B64URL, 10, 40)).map(
        lambda t: ("eyJ" + ".".join(t), ".".join(t))
    ),
    _body(_B64URL + ".~+/", 12, 60).map(lambda b: ("Authorization: Bearer " + b, b)),
    _body(_ALNUM + "+/", 40, 200).map(
        lambda b: (f"-----BEGIN PRIVATE KEY-----\n{b}\n-----END PRIVATE KEY-----", b)
    ),
    _card(),
    _sensitive_assignment(),
)
_FILLER = st.text(alphabet=string.ascii_letters + " .,;:!?()\n", max_size=60)


def _leaks(secret: str, output: str, background: str) -> list[str]:
    """The whole secret, or any distinctive 10-character piece of it, found in ``output``.

    Pieces also present in ``background`` (the filler text, field names, tool names) and pieces
    of fewer than 4 distinct characters (``0000000000``, which timestamps contain) don't count.
    """
    found = [secret] if secret in output and secret not in background else []
    for index in range(max(0, len(secret) - 9)):
        piece = secret[index : index + 10]
        if len(set(piece)) >= 4 and piece in output and piece not in background:
            found.append(piece)
    return found


@settings(max_examples=300, deadline=None)
@given(secret=_SECRETS, before=_FILLER, after=_FILLER, where=st.integers(0, 5))
def test_generated_secret_never_in_captured_json(
    secret: tuple[str, str], before: str, after: str, where: int
) -> None:
    """Any generated secret, anywhere in a value: some part of it appears in the captured JSON."""
    embedded, body = secret
    text = f"{before} {embedded} {after}"
    value: Any = [
        text,
        {"message": text},
        [{"deep": [text]}],
        text.encode(),
        {"note": text, "n": 1},
        ("tuple", text),
    ][where]
    output = ContentPolicy(True, max_bytes=1024).to_json(value)
    assert _leaks(body, output, before + after) == []
    json.loads(output)


def _all_outputs(capture: Capture) -> str:
    """Everything steptrace emitted: the raw log, span attributes, event attributes, statuses."""
    parts = [capture.jsonl_path.read_text(encoding="utf-8") if capture.jsonl_path.exists() else ""]
    for span in capture.spans:
        parts.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            parts.extend(str(v) for v in (event.attributes or {}).values())
        parts.append(str(span.status.description))
    return "\n".join(parts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=_SECRETS, before=_FILLER, after=_FILLER)
def test_generated_secret_never_in_spans_or_log(
    steptrace_capture: Capture, secret: tuple[str, str], before: str, after: str
) -> None:
    """A secret in a tool's arguments, result and error: some part of it reaches spans or JSONL."""
    embedded, body = secret

    @steptrace.tool
    def leaky(query: str) -> dict[str, str]:
        return {"echo": query}

    @steptrace.tool
    def failing(query: str) -> None:
        raise RuntimeError(f"failed on {query}")

    def agent(text: str) -> str:
        steptrace_capture.clear()
        with steptrace.agent_run(agent="leak-test"):
            leaky(text)
            with pytest.raises(RuntimeError):
                failing(text)
            with steptrace.llm_request(model="m") as request:
                request.record_input([{"role": "user", "content": text}])
                request.record_output([{"role": "assistant", "content": text}])
        return _all_outputs(steptrace_capture)

    # What the same run emits without the secret: names, keys, ids, the filler.
    background = agent(f"{before} {after}")
    outputs = agent(f"{before} {embedded} {after}")
    assert "leaky" in outputs  # the pipeline did write
    assert _leaks(body, outputs, background) == []


# --- record-like values keep their field names, so sensitive fields are redacted ----------------


class LoginTuple(NamedTuple):
    user: str
    password: str


LoginCollectionsTuple = collections.namedtuple("LoginCollectionsTuple", ["user", "password"])


@dataclasses.dataclass
class LoginDataclass:
    user: str
    password: str


class LoginModel(pydantic.BaseModel):
    user: str
    password: str


class LoginStruct(msgspec.Struct):
    user: str
    password: str


class LoginMapping(Mapping[str, str]):
    """A read-only Mapping that is not a dict."""

    def __init__(self, **values: str) -> None:
        self._values = values

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class LoginRow(Sequence[str]):
    """Shaped like a database row (sqlalchemy's ``Row``): a sequence with ``_asdict()``."""

    def __init__(self, user: str, password: str) -> None:
        self._values = (user, password)

    def __getitem__(self, index: Any) -> Any:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)

    def _asdict(self) -> dict[str, str]:
        return {"user": self._values[0], "password": self._values[1]}


def _attrs_login() -> Any:
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class LoginAttrs:
        user: str
        password: str

    return LoginAttrs("bob", "hunter2-RECORD")


RECORD_LOGINS: dict[str, Callable[[], Any]] = {
    "NamedTuple": lambda: LoginTuple("bob", "hunter2-RECORD"),
    "collections.namedtuple": lambda: LoginCollectionsTuple("bob", "hunter2-RECORD"),
    "dataclass": lambda: LoginDataclass("bob", "hunter2-RECORD"),
    "pydantic": lambda: LoginModel(user="bob", password="hunter2-RECORD"),
    "msgspec.Struct": lambda: LoginStruct("bob", "hunter2-RECORD"),
    "Mapping": lambda: LoginMapping(user="bob", password="hunter2-RECORD"),
    "SimpleNamespace": lambda: types.SimpleNamespace(user="bob", password="hunter2-RECORD"),
    "_asdict": lambda: LoginRow("bob", "hunter2-RECORD"),
    "attrs": _attrs_login,
}


@pytest.mark.parametrize("make", RECORD_LOGINS.values(), ids=RECORD_LOGINS.keys())
def test_record_like_arguments_are_redacted_by_field_name(
    steptrace_capture: Capture, make: Callable[[], Any]
) -> None:
    """A password field of a NamedTuple (or any record) passed to a tool: the password is logged."""
    login = make()

    @steptrace.tool
    def sign_in(account: Any, history: list[Any]) -> Any:
        return {"echo": account}

    with steptrace.agent_run(agent="a"):
        sign_in(login, [login])
    expected = {"user": "bob", "password": "[REDACTED:sensitive-key]"}
    (record,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert record["input"] == {"account": expected, "history": [expected]}
    assert record["output"] == {"echo": expected}
    assert "hunter2-RECORD" not in _all_outputs(steptrace_capture)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X-Api-Key: abc123def;", "X-Api-Key: [REDACTED:sensitive-key];"),
        ("X-Api-Key: abc123def; Accept: json", "X-Api-Key: [REDACTED:sensitive-key]; Accept: json"),
        ("token: abc123, user: bob", "token: [REDACTED:sensitive-key], user: bob"),
        ("Cookie: a=1; b=2;", "Cookie: [REDACTED:sensitive-key];"),
        ("api_key=abc;123 next", "api_key=[REDACTED:sensitive-key] next"),  # inside: part of it
    ],
)
def test_header_value_terminator_is_kept(text: str, expected: str) -> None:
    """Redacting ``X-Api-Key: ...;``: the ``;`` that ends the header value disappears with it."""
    assert redact(text) == expected
