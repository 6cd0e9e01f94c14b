"""What the access-role tests share (test_roles, test_access_logins): one small table per schema and what each
group role may read of them."""

from __future__ import annotations

import psycopg
import pytest

from crm_knowledge.privacy import roles

#: One table per schema; each holds one row whose note is the table's own name.
TABLES = ("marts.t", "pii.p", "audit.a", "raw.r", "staging.s")

#: group role -> the tables it must be able to read (every other one: InsufficientPrivilege)
CAN_READ = {
    roles.BI_READER: {"marts.t"},
    roles.AUDITOR: {"audit.a", "marts.t"},
    roles.PRIVACY_OFFICER: {"pii.p", "marts.t"},
}


def create_tables(url: str, tables: tuple[str, ...] = TABLES) -> None:
    """The tables, as the warehouse's administrator (so only default privileges make them readable)."""
    with psycopg.connect(url) as conn:
        for table in tables:
            conn.execute(f"create table {table} (id int primary key, note text)")
            conn.execute(f"insert into {table} values (1, %s)", (table,))


def assert_reads_exactly(conn: psycopg.Connection, login: str, readable: set[str],
                         tables: tuple[str, ...] = TABLES) -> None:
    """`conn` is `login`'s own TCP connection and reads `readable` of `tables`, and is refused the others."""
    assert conn.info.host and not conn.info.host.startswith("/"), "must be a TCP connection"
    assert conn.execute("select current_user").fetchone()[0] == login
    for table in tables:
        if table in readable:
            assert conn.execute(f"select note from {table}").fetchall() == [(table,)]
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select note from {table}")
