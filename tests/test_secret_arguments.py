"""A secret-named argument's value stays secret everywhere in its tool's span.

``api_key="hunter2-PLAINSECRET-99"`` is redacted in the captured input by its name; the tool's
code can repeat the value in an exception message, a traceback or its result, where no detector
recognises it. Values of 6 or more characters are scrubbed there too.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest

import steptrace
from steptrace._content import ContentPolicy, secret_argument_values
from steptrace._redaction import Redactor
from steptrace.testing import Capture

SECRET = "hunter2-PLAINSECRET-99"


def _everything(capture: Capture) -> str:
    """The tool span's record, attributes, event attributes and status (the run's: below)."""
    parts = [json.dumps(r) for r in capture.records if r["type"] == "tool_call"]
    for span in capture.spans_named("tool_execution"):
        parts.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            parts.extend(str(v) for v in (event.attributes or {}).values())
        parts.append(str(span.status.description))
    return "\n".join(parts)


# --- the building blocks -------------------------------------------------------------------------


def test_redactor_scrubs_given_secret_values_from_messages_and_stacks() -> None:
    """A known secret value in an error message or stack trace: it is printed in clear."""
    redactor = Redactor()
    secrets = secret_argument_values({"api_key": SECRET})
    message = redactor.redact_message(f"login failed for key {SECRET}!", 2_000, secrets)
    assert message == "login failed for key [REDACTED:sensitive-key]!"
    stack = "Traceback ...\n" + "x" * 9_000 + f"\nValueError: bad key '{SECRET}'"
    tail, cut = redactor.redact_stack(stack, 8_000, secrets)
    assert cut and SECRET not in tail and tail.endswith("bad key '[REDACTED:sensitive-key]'")
    assert redactor.redact_message(f"no secrets given {SECRET}", 2_000) == f"no secrets given {SECRET}"


def test_secret_value_straddling_the_cut_leaves_no_prefix() -> None:
    """A secret value cut by the message's size bound: its first characters are logged."""
    redactor = Redactor()
    for offset in range(1_990, 2_001):
        out = redactor.redact_message("e" * offset + SECRET, 2_000, (SECRET,))
        assert "hunter" not in out


def test_quoted_forms_of_a_secret_are_scrubbed() -> None:
    """A secret with a quote or backslash, shown by repr() or in JSON: the escaped form is logged."""
    secret = 'pa"ss\\word-1'
    secrets = secret_argument_values({"password": secret})
    redactor = Redactor()
    for text in (f"got {secret!r}", json.dumps({"echo": secret}), f"raw {secret}"):
        assert "ss\\" not in redactor.redact_message(text, 2_000, secrets).replace("\\\\", "\\"), text


def test_result_json_scrubs_secret_values() -> None:
    """A tool result echoing its api_key under an ordinary name: the key is captured in clear."""
    policy = ContentPolicy(True)
    secrets = secret_argument_values({"api_key": SECRET})
    result = {"status": "ok", "echo": f"called with {SECRET}", "items": [SECRET]}
    data = json.loads(policy.to_json(result, secrets))
    assert data == {
        "status": "ok",
        "echo": "called with [REDACTED:sensitive-key]",
        "items": ["[REDACTED:sensitive-key]"],
    }
    assert json.loads(policy.to_json({SECRET: 1}, secrets)) == {"[REDACTED:sensitive-key]": 1}
    assert json.loads(policy.to_json(result)) == result  # nothing given: nothing known


# --- the shape a user hits -----------------------------------------------------------------------


class Account(NamedTuple):
    user: str
    token: str


@pytest.mark.parametrize(
    ("arguments", "secret"),
    [
        ({"api_key": SECRET}, SECRET),
        ({"headers": {"Authorization": f"Bearer {SECRET}"}}, SECRET),
        ({"account": Account("bob", SECRET)}, SECRET),
    ],
    ids=["api_key", "nested-header", "namedtuple-field"],
)
def test_secret_argument_never_in_the_tools_error(
    steptrace_capture: Capture, arguments: dict[str, Any], secret: str
) -> None:
    """A tool failing with its api_key in the message: the key is in the error, event and stack trace."""

    @steptrace.tool
    def call_service(query: str, **options: Any) -> None:
        raise PermissionError(f"upstream rejected {secret} for {query}")  # the value, not its name

    with pytest.raises(PermissionError), steptrace.agent_run(agent="a"):
        call_service("revenue", **arguments)
    (record,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert record["error"] == "PermissionError: upstream rejected [REDACTED:sensitive-key] for revenue"
    assert secret not in _everything(steptrace_capture)


def test_secret_argument_never_in_the_tools_result(steptrace_capture: Capture) -> None:
    """A tool echoing its api_key in its result: the key is captured in the record's output."""

    @steptrace.tool
    def connect(host: str, api_key: str) -> dict[str, str]:
        return {"host": host, "session": f"{host}/{api_key}"}

    with steptrace.agent_run(agent="a"):
        connect("db.internal", SECRET)
    (record,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert record["input"] == {"host": "db.internal", "api_key": "[REDACTED:sensitive-key]"}
    assert record["output"] == {"host": "db.internal", "session": "db.internal/[REDACTED:sensitive-key]"}
    assert SECRET not in _everything(steptrace_capture)


def test_manual_tool_block_failure_scrubs_its_secret_argument(steptrace_capture: Capture) -> None:
    """with tool(arguments={"password": ...}) failing with the password: it is in the stack trace."""
    with pytest.raises(RuntimeError), steptrace.agent_run(agent="a"):
        with steptrace.tool("vault", arguments={"user": "bob", "password": SECRET}):
            raise RuntimeError(f"vault refused {SECRET}")
    assert SECRET not in _everything(steptrace_capture)


def test_short_secret_values_are_not_scrubbed_elsewhere(steptrace_capture: Capture) -> None:
    """A 3-character password: every "abc" in the error message becomes a marker."""

    @steptrace.tool
    def login(user: str, password: str) -> None:
        raise ValueError(f"user {user} not found in abc-directory")

    with pytest.raises(ValueError), steptrace.agent_run(agent="a"):
        login("bob", "abc")
    (record,) = [r for r in steptrace_capture.records if r["type"] == "tool_call"]
    assert record["error"] == "ValueError: user bob not found in abc-directory"


def _every_span_and_record(capture: Capture) -> str:
    """Every record and every span's attributes, events and status: the run and step spans too."""
    parts = [json.dumps(r) for r in capture.records]
    for span in capture.spans:
        parts.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            parts.extend(str(v) for v in (event.attributes or {}).values())
        parts.append(str(span.status.description))
    return "\n".join(parts)


def test_secret_carried_out_of_the_tool_is_scrubbed_on_the_step_and_run(steptrace_capture: Capture) -> None:
    """The tool's error propagates: the step and run spans recorded the same message and stack
    trace with the raw key (and the run record quoted it)."""

    @steptrace.tool
    def call_service(query: str, api_key: str) -> None:
        raise PermissionError(f"upstream rejected {api_key} for {query}")

    with pytest.raises(PermissionError), steptrace.agent_run(agent="a"), steptrace.agent_step():
        call_service("revenue", api_key=SECRET)
    assert steptrace_capture.spans_named("agent_run")[0].status.description
    assert SECRET not in _every_span_and_record(steptrace_capture)


@pytest.mark.parametrize("kind", ["sync", "async", "generator", "async-generator"])
def test_secret_quoted_later_by_the_agent_is_scrubbed_on_its_run(
    steptrace_capture: Capture, kind: str
) -> None:
    """The agent catches the tool's error and raises its own, quoting the key: each decorated
    shape of run carried the raw key in its span's error."""
    import asyncio

    @steptrace.tool
    def call_service(api_key: str) -> None:
        raise PermissionError(f"bad key {api_key}")

    def work() -> None:
        try:
            call_service(api_key=SECRET)
        except PermissionError as exc:
            raise RuntimeError(f"giving up after: {exc}") from None

    if kind == "sync":
        call: Any = lambda: steptrace.agent_run(agent="a")(work)()  # noqa: E731
    elif kind == "async":

        async def awork() -> None:
            work()

        call = lambda: asyncio.run(steptrace.agent_run(agent="a")(awork)())  # noqa: E731
    elif kind == "generator":

        def gwork() -> Any:
            yield 1
            work()

        call = lambda: list(steptrace.agent_run(agent="a")(gwork)())  # noqa: E731
    else:

        async def agwork() -> Any:
            yield 1
            work()

        async def drain() -> None:
            async for _ in steptrace.agent_run(agent="a")(agwork)():
                pass

        call = lambda: asyncio.run(drain())  # noqa: E731
    with pytest.raises(RuntimeError, match="giving up"):
        call()
    (run,) = steptrace_capture.spans_named("agent_run")
    assert "giving up after: bad key [REDACTED:sensitive-key]" in str(run.status.description)
    assert SECRET not in _every_span_and_record(steptrace_capture)
