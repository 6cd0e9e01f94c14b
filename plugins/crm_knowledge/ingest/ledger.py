"""The batch ledger (`audit.load_batches`): one row per file or query window, whatever happened to it.

It is what makes loads exactly-once (a file whose checksum was loaded is never loaded again) and what
auditors read: rows read = loaded + rejected (+ duplicates re-read by a look-back window), per batch.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass
class BatchCounts:
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0


def new_batch_id(source_name: str) -> str:
    return f"{source_name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def already_loaded(conn: psycopg.Connection, source_name: str, checksum: str) -> str | None:
    row = conn.execute(
        "select batch_id from audit.load_batches where source_name = %s and checksum = %s and status = 'loaded'",
        (source_name, checksum),
    ).fetchone()
    return row[0] if row else None


def open_batch(conn: psycopg.Connection, *, batch_id: str, source_name: str, source_kind: str,
               source_file: str | None, checksum: str | None,
               window: tuple[dt.datetime | None, dt.datetime | None] = (None, None)) -> None:
    conn.execute(
        """insert into audit.load_batches
               (batch_id, source_name, source_kind, source_file, checksum, window_start, window_end, status)
           values (%s, %s, %s, %s, %s, %s, %s, 'running')""",
        (batch_id, source_name, source_kind, source_file, checksum, window[0], window[1]),
    )


def close_batch(conn: psycopg.Connection, batch_id: str, status: str, counts: BatchCounts,
                error: str | None = None) -> None:
    conn.execute(
        """update audit.load_batches
              set status = %s, rows_read = %s, rows_loaded = %s, rows_rejected = %s, rows_duplicate = %s,
                  error = %s, finished_at = now()
            where batch_id = %s""",
        (status, counts.rows_read, counts.rows_loaded, counts.rows_rejected, counts.rows_duplicate,
         error, batch_id),
    )


def analyze_after_load(conn: psycopg.Connection, table: str) -> None:
    """Refresh the planner's statistics of a raw table that just received rows.

    Autoanalyze waits until 10% of a table has changed, which a daily batch of a large table never reaches:
    the planner then expects ~1 row of the new batch or load window, and the quality gate's and incremental
    staging's joins over it are planned as nested loops (rows² time). ANALYZE samples a bounded number of
    rows, so it costs about a second even on a table of tens of millions of rows. `conn` must be in
    autocommit mode (or the caller commits).
    """
    schema, name = table.split(".")
    conn.execute(sql.SQL("analyze {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))


class BatchStateError(ValueError):
    """An operator asked for a batch transition the ledger does not allow; the message says why."""


def held_batches(conn: psycopg.Connection) -> list[tuple]:
    """(batch_id, source_name, source_file or load window, rows_loaded, started_at, reason) of every held batch."""
    return conn.execute(
        "select batch_id, source_name, coalesce(source_file, window_start || ' .. ' || window_end), rows_loaded, "
        "started_at, error from audit.load_batches where status = 'held' order by started_at").fetchall()


def retire_batch(conn: psycopg.Connection, batch_id: str, reason: str) -> None:
    """Set a held batch aside for good: the raw gate stops re-checking it and staging never reads it.

    Only a held batch can be retired (a loaded one is already in staging: a later corrected delivery
    supersedes its rows there; erasure removes people). Its rows stay in raw and the ledger keeps the row,
    the old error and the reason, so the audit trail is whole.
    """
    if not reason.strip():
        raise BatchStateError("a reason is required (it is kept in the ledger for the auditors)")
    row = conn.execute("select status from audit.load_batches where batch_id = %s", (batch_id,)).fetchone()
    if row is None:
        raise BatchStateError(f"no batch {batch_id!r} in audit.load_batches")
    if row[0] != "held":
        raise BatchStateError(f"batch {batch_id} is {row[0]}, not held: only a held batch can be retired")
    conn.execute(
        "update audit.load_batches set status = 'retired', finished_at = coalesce(finished_at, now()), "
        "error = %s || coalesce(' (was: ' || error || ')', '') where batch_id = %s and status = 'held'",
        (f"retired: {reason.strip()}", batch_id))
