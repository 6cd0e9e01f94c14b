"""Connections to the warehouse and the orders source, derived from `crm_knowledge.settings`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from crm_knowledge.settings import get_settings

#: The one advisory lock every schema change takes (DDL files, identity tables, roles, grants, ownership):
#: DAGs starting together (the four ingests each run prepare_warehouse) otherwise race on the catalog
#: (`tuple concurrently updated`). Held for the changing transaction only.
SCHEMA_CHANGE_LOCK = "crm_knowledge.schema_changes"


def lock_schema_changes(conn: psycopg.Connection) -> None:
    """Wait for, then hold until this transaction ends, :data:`SCHEMA_CHANGE_LOCK`."""
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (SCHEMA_CHANGE_LOCK,))


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A psycopg connection to the warehouse (or `url`), closed on exit, committed unless it raised."""
    conn = psycopg.connect(url or get_settings().warehouse_url, autocommit=autocommit,
                           application_name="crm_knowledge")
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def table_count(conn: psycopg.Connection, qualified_name: str) -> int:
    schema, _, table = qualified_name.partition(".")
    query = psycopg.sql.SQL("select count(*) from {}.{}").format(
        psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)
    )
    return conn.execute(query).fetchone()[0]


def copy_csv(conn: psycopg.Connection, query: str | psycopg.sql.Composable, *, header: bool) -> io.BytesIO:
    """The rows of `query` as CSV bytes, streamed with COPY … TO STDOUT (rewound, ready for pandas)."""
    from psycopg import sql

    q = sql.SQL(query) if isinstance(query, str) else query
    statement = sql.SQL("copy ({}) to stdout with (format csv, header {})").format(q, sql.SQL(str(header).lower()))
    buf = io.BytesIO()
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for chunk in copy:
                buf.write(chunk)
    buf.seek(0)
    return buf


def read_frame(conn: psycopg.Connection, query: str, params: dict | None = None,
               dtype: dict | None = None, parse_dates: list[str] | None = None):
    """The rows of `query` as a pandas DataFrame, streamed with COPY … TO STDOUT (CSV) into pandas' C parser.

    Fetching millions of rows as Python tuples costs ~10x the memory and time of this path; scoring and
    identity resolution read whole marts at a million customers.
    """
    import pandas as pd

    text = psycopg.ClientCursor(conn).mogrify(query, params) if params else query
    return pd.read_csv(copy_csv(conn, text, header=True), dtype=dtype, keep_default_na=False, na_values=[""],
                       parse_dates=parse_dates)
