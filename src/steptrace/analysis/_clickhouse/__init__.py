"""ClickHouse as an analysis source: the ``otel_traces`` table the Collector's ``clickhouse``
exporter writes, read as a :class:`RunSet`.

The per-run aggregates are one ``GROUP BY`` in the database (a row per run, not per span);
``runs()`` filters, orders and pages there (only the page is read) and ``diff`` is a
``GROUP BY release`` on top. A run's spans are fetched only when a command reads them, and
become step records through the same ``build_record`` the JSONL exporter uses; each span counts
once however often the collector inserted it. Python keeps the run record and pricing: both must
match the JSONL path to the last bit. Values reach the server as bound parameters.

Where things are: ``connection`` (the URL, the :class:`Database` seam, errors), ``sql`` (what
every query shares: the window, the schema check), one module of SQL per command (``runs``,
``diff``, ``debug`` for one run's spans, ``report``), ``decoding`` (rows into records and runs),
``source`` (the :class:`RunSet`).
"""

from steptrace.analysis._clickhouse.connection import (
    ClickHouseError,
    ClickHouseURL,
    Database,
    is_clickhouse_url,
    translate_error,
    use_database,
)
from steptrace.analysis._clickhouse.source import (
    ClickHouseRun,
    ClickHouseRunSet,
    ClickHouseSource,
    load_clickhouse,
)

__all__ = [
    "ClickHouseError",
    "ClickHouseRun",
    "ClickHouseRunSet",
    "ClickHouseSource",
    "ClickHouseURL",
    "Database",
    "is_clickhouse_url",
    "load_clickhouse",
    "translate_error",
    "use_database",
]
