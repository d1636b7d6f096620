"""The way to a ClickHouse server: the URL (parsed and validated), the :class:`Database` seam the
queries go through (clickhouse-connect over HTTP; the tests put chdb there) and its errors as one
line for a person."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from steptrace._errors import LogError

PASSWORD_ENV = "STEPTRACE_CLICKHOUSE_PASSWORD"
DEFAULT_TABLE = "otel_traces"
DEFAULT_MAX_EXECUTION_SECONDS = 60
MAX_EXECUTION_SECONDS_LIMIT = 1_000_000
"""The most ``?max_execution_time=`` accepts (about 11 days): the client's socket timeout follows it."""
SCHEMES = {"clickhouse": False, "clickhouses": True}  # scheme -> TLS
URL_PARAMETERS = ("table", "max_execution_time")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT = re.compile(r"[0-9]{1,5}")
_SECONDS = re.compile(r"[0-9]{1,7}")


class ClickHouseError(LogError):
    """The database cannot answer (unreachable, credentials, table, schema, limits): one line, exit 2."""


class Database(Protocol):
    """What the queries need from a ClickHouse connection: rows of a SELECT, as sequences.

    ``parameters`` are the values of the statement's ``{name:Type}`` placeholders, bound by the
    server (never spliced into the SQL text)."""

    def query(self, sql: str, parameters: Mapping[str, Any]) -> Sequence[Sequence[Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ClickHouseURL:
    """``clickhouse[s]://USER@HOST:PORT/DATABASE?table=otel_traces[&max_execution_time=60]``."""

    host: str
    port: int
    user: str
    database: str
    table: str
    secure: bool
    max_execution_time: int = DEFAULT_MAX_EXECUTION_SECONDS
    """Seconds, sent with every query; 0 sends none (the user's profile decides)."""

    @classmethod
    def parse(cls, url: str) -> ClickHouseURL:
        shape = "write clickhouse://USER@HOST:PORT/DATABASE?table=otel_traces (clickhouses:// for TLS)"
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            # Not the URL itself: it may hold a password.
            raise ClickHouseError(f"not a ClickHouse URL ({exc}); {shape}") from None
        if parts.scheme not in SCHEMES:
            raise ClickHouseError(f"{url!r}: not a ClickHouse URL; {shape}")
        secure = SCHEMES[parts.scheme]
        if parts.password is not None:
            raise ClickHouseError(
                f"put the ClickHouse password in {PASSWORD_ENV}, not in the URL (it would end up in "
                "shell history and process lists)"
            )
        port = _port(url, parts.netloc, secure)
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(URL_PARAMETERS))
        if unknown:
            raise ClickHouseError(
                f"{url!r}: unknown URL parameter {unknown[0]!r}; the parameters are "
                + " and ".join(URL_PARAMETERS)
            )
        database = unquote(parts.path.lstrip("/")) or "default"
        table = query.get("table", [DEFAULT_TABLE])[-1]
        for what, name in (("database", database), ("table", table)):
            if not _IDENTIFIER.fullmatch(name):
                raise ClickHouseError(f"{url!r}: {what} name {name!r} is not a plain identifier")
        limit_text = query.get("max_execution_time", [str(DEFAULT_MAX_EXECUTION_SECONDS)])[-1]
        if not _SECONDS.fullmatch(limit_text) or int(limit_text) > MAX_EXECUTION_SECONDS_LIMIT:
            raise ClickHouseError(
                f"{url!r}: max_execution_time must be a whole number of seconds from 0 to "
                f"{MAX_EXECUTION_SECONDS_LIMIT} (0: the server's own limit)"
            )
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username) if parts.username else "default",
            database=database,
            table=table,
            secure=secure,
            max_execution_time=int(limit_text),
        )

    @property
    def qualified_table(self) -> str:
        return f"{self.database}.{self.table}"

    def display(self) -> str:
        """The URL without secrets, for messages."""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}?table={self.table}"


def _port(url: str, netloc: str, secure: bool) -> int:
    """The port the URL names (ASCII digits, 1..65535), or the HTTP interface's default."""
    host = netloc.rpartition("@")[2]
    _, bracket, after = host.rpartition("]")  # an IPv6 address: [::1]:8123
    text = (after if bracket else host).partition(":")[2]
    if not text:
        return 8443 if secure else 8123
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise ClickHouseError(f"{url!r}: the port is not a number from 1 to 65535")
    return int(text)


def is_clickhouse_url(text: str) -> bool:
    return text.split("://", 1)[0] in SCHEMES and "://" in text


class _ConnectDatabase:
    """:class:`Database` over clickhouse-connect (the HTTP interface: 8123, or 8443 with TLS).
    The placeholders are bound by the server (clickhouse-connect sends each value as a
    ``param_NAME`` of the request)."""

    def __init__(self, url: ClickHouseURL) -> None:
        try:
            import clickhouse_connect
        except ImportError:
            raise ClickHouseError(
                "the ClickHouse source needs clickhouse-connect: pip install 'steptrace[clickhouse]'"
            ) from None
        self._url = url
        try:
            self._client = clickhouse_connect.get_client(
                host=url.host,
                port=url.port,
                username=url.user,
                password=os.environ.get(PASSWORD_ENV, ""),
                database=url.database,
                secure=url.secure,
                connect_timeout=10,
                send_receive_timeout=(url.max_execution_time or 300) + 10,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise translate_error(exc, url) from None

    def query(self, sql: str, parameters: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        try:
            return self._client.query(sql, parameters=dict(parameters) or None).result_rows
        except Exception as exc:
            raise translate_error(exc, self._url) from None

    def close(self) -> None:
        self._client.close()


ConnectFunction = Callable[[ClickHouseURL], Database]
_connect: ConnectFunction = _ConnectDatabase


def use_database(connect: ConnectFunction | None) -> None:
    """Route every ClickHouse URL to ``connect(url)`` (the tests pass chdb); None restores the client."""
    global _connect
    _connect = connect if connect is not None else _ConnectDatabase


def connect(url: ClickHouseURL) -> Database:
    return _connect(url)


_CODE = re.compile(r"Code: (\d+)")


def translate_error(exc: BaseException, url: ClickHouseURL) -> ClickHouseError:
    """A database or network failure as one line for a person."""
    text = " ".join(str(exc).split())
    match = _CODE.search(text)
    code = int(match.group(1)) if match else None
    where = url.display()
    if code in (516, 192, 193, 194, 195):  # AUTHENTICATION_FAILED, UNKNOWN_USER, *_PASSWORD
        return ClickHouseError(
            f"{where}: ClickHouse refused the credentials of user {url.user!r} (set {PASSWORD_ENV})"
        )
    if code in (60, 81):  # UNKNOWN_TABLE, UNKNOWN_DATABASE
        return missing_table(url)
    if code == 159:  # TIMEOUT_EXCEEDED
        return ClickHouseError(
            f"{where}: the query ran longer than max_execution_time={url.max_execution_time}s; "
            "narrow it with --since/--until or --service, or raise ?max_execution_time="
        )
    if code == 164:  # READONLY: a readonly=1 user may not set max_execution_time
        return ClickHouseError(
            f"{where}: user {url.user!r} may not change settings (readonly=1), so the query's "
            "max_execution_time is refused; give the user readonly=2, or add ?max_execution_time=0 "
            "to rely on its profile's own limit"
        )
    if code == 47:  # UNKNOWN_IDENTIFIER: a column the exporter's schema has
        return ClickHouseError(
            f"{where}: {url.qualified_table} lacks a column the queries read ({text[:160]})"
        )
    if code is None and _is_network_error(exc, text):
        return ClickHouseError(
            f"{where}: cannot reach ClickHouse ({text[:120]}); steptrace uses the HTTP interface "
            "(port 8123, or 8443 with clickhouses://), not the native protocol (9000)"
        )
    return ClickHouseError(f"{where}: ClickHouse error: {text[:200]}")


def _is_network_error(exc: BaseException, text: str) -> bool:
    if isinstance(exc, OSError):
        return True
    name = type(exc).__name__
    words = ("Connection refused", "Max retries", "timed out", "Name or service not known", "connect")
    return name == "OperationalError" or any(word in text for word in words)


def missing_table(url: ClickHouseURL) -> ClickHouseError:
    return ClickHouseError(
        f"{url.display()}: no table {url.qualified_table}; the Collector's clickhouse exporter "
        "creates it (create_schema: true) once it has written traces, or pass ?table=NAME"
    )
