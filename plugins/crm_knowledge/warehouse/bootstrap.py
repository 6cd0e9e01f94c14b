"""Create the warehouse's schemas, tables and SQL functions (idempotent; run on setup and every deploy).

The DDL lives in `sql/*.sql` beside this module, applied in file-name order. Every statement is
`create ... if not exists` / `create or replace`, so re-applying is safe and cheap.

Changing a table that has been released: `create table if not exists` leaves an existing table as it is,
so a new column goes both into the `create table` (new deployments) and into an
`alter table ... add column if not exists` after it (existing ones); see `audit.erasure_requests` in
07_privacy.sql. Renames and type changes need a one-off script and a note in the release.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

from crm_knowledge.warehouse.db import connect, lock_schema_changes

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")


def ddl_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_ddl(url: str) -> list[str]:
    """Apply every DDL file to the database at `url` in one transaction; return the files applied."""
    applied = []
    with connect(url) as conn:
        # The one schema-change lock (also taken by ensure_roles below and identity.store): tasks
        # bootstrapping at once never race on `create ... if not exists`, functions or grants.
        lock_schema_changes(conn)
        for path in ddl_files():
            try:
                conn.execute(path.read_text(encoding="utf-8"))
            except psycopg.Error as exc:
                raise RuntimeError(f"applying {path.name} failed: {exc}") from exc
            applied.append(path.name)
    log.info("warehouse DDL applied: %s", ", ".join(applied))
    # Roles and grants after the schemas exist: bi_reader, auditor, privacy_officer, pipeline.
    from crm_knowledge.privacy.roles import ensure_roles

    ensure_roles(url)
    return applied
