"""The SQL of the commands that read one run (``summary``, ``debug``, ``replay``, ``view``): the
run's own spans, each once, in start order, within the run's time range."""

from __future__ import annotations

import string
from datetime import datetime

from steptrace.analysis._clickhouse.sql import ONE_COPY_PER_SPAN, RECORD_COLUMNS, Query, Window, merged

_RUN_SPANS_SQL = """SELECT
$columns
FROM $table
WHERE $where
ORDER BY Timestamp, SpanId
$one_copy"""


def run_spans_query(
    table: str, window: Window, run_id: str, lower: datetime | None, upper: datetime | None
) -> Query:
    """The spans of ``run_id`` from ``lower`` to ``upper`` (the window's span range when None)."""
    where = window.spans_where(lower, upper)
    sql = string.Template(_RUN_SPANS_SQL).substitute(
        columns=RECORD_COLUMNS,
        table=table,
        where=where.sql + "\n      AND SpanAttributes['steptrace.run_id'] = {run_id:String}",
        one_copy=ONE_COPY_PER_SPAN,
    )
    return Query(sql, merged(where.parameters, {"run_id": run_id}))
