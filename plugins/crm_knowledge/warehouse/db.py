"""Connections to the warehouse and the orders source, derived from `crm_knowledge.settings`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from crm_knowledge.settings import get_settings


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
