"""The batch ledger (`audit.load_batches`): one row per file or query window, whatever happened to it.

It is what makes loads exactly-once (a file whose checksum was loaded is never loaded again) and what
auditors read: rows read = loaded + rejected (+ duplicates re-read by a look-back window), per batch.

A batch is opened as `running` in its own transaction, and its rows commit together with its final status,
so a crash (the process or the warehouse killed mid-`COPY`) leaves no rows but a `running` ledger row. Each
load of a source runs under the source's advisory lock (:func:`source_lock`), so while a load holds it no
other process loads the same source, and a `running` batch of the source found by the lock holder is one
whose load died: :func:`abort_stale` marks it `aborted` (when, why) and the load then takes its data again
(a file is still in the landing zone, a database window's watermark did not move).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from crm_knowledge.warehouse.db import advisory_lock, advisory_unlock

log = logging.getLogger(__name__)

#: The advisory-lock namespace of ingestion: a source's lock is `<namespace>:<source name>`.
LOCK_NAMESPACE = "crm_knowledge.ingest"
#: How long a load waits for another load of the same source to finish before it gives up.
LOCK_WAIT_SECONDS = 900


@dataclass
class BatchCounts:
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_field_issues: int = 0


def durable_commits(conn: psycopg.Connection) -> None:
    """Make this session's commits durable before they return (`synchronous_commit = on`).

    The embedded warehouse runs with `synchronous_commit = off` for speed: a crash may then lose the last
    fraction of a second of commits. A loader acts on its commit (the file leaves the landing zone once its
    batch is `loaded`), so a lost commit would lose the file's data for good; and the `running` row must
    survive a crash so the next load can mark it aborted.
    """
    conn.execute("set synchronous_commit = on")


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
                  rows_field_issues = %s, error = %s, finished_at = now(),
                  load_hold_reason = case when %s = 'held' then %s end
            where batch_id = %s""",
        (status, counts.rows_read, counts.rows_loaded, counts.rows_rejected, counts.rows_duplicate,
         counts.rows_field_issues, error, status, error, batch_id),
    )


def fail_batch(conn: psycopg.Connection, source_name: str, batch_id: str, reason: str) -> None:
    """Close the batch `failed` with `reason` (which must be free of values), in its own transaction. A warehouse
    that cannot be reached any more leaves it `running`: the source's next load marks it aborted."""
    try:
        with conn.transaction():
            close_batch(conn, batch_id, "failed", BatchCounts(), error=reason)
    except psycopg.Error:
        log.error("%s: batch %s could not be marked failed (the warehouse is unreachable); the next load "
                  "marks it aborted", source_name, batch_id)


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


class SourceBusy(RuntimeError):
    """Another process kept loading the same source for longer than the lock wait."""


@contextmanager
def source_lock(conn: psycopg.Connection, source_name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold the source's session advisory lock for the block; yields whether it was obtained.

    With `wait`, a second process loading the same source waits for the first (up to LOCK_WAIT_SECONDS)
    and then finds the files archived or the watermark moved: nothing is loaded twice. Without, it
    yields False at once when the lock is taken. The lock dies with the session, so a crashed load never
    leaves it behind. `conn` must be in autocommit mode.
    """
    key = f"{LOCK_NAMESPACE}:{source_name}"
    if wait:
        conn.execute(f"set lock_timeout = '{int(LOCK_WAIT_SECONDS)}s'")
        try:
            advisory_lock(conn, key)
        except psycopg.errors.LockNotAvailable:
            raise SourceBusy(f"source {source_name}: another load has held its lock for more than "
                             f"{LOCK_WAIT_SECONDS} s; not loading it now") from None
        finally:
            if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                conn.execute("reset lock_timeout")
        got = True
    else:
        got = advisory_lock(conn, key, wait=False)
    try:
        yield got
    finally:
        if got and not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            advisory_unlock(conn, key)


def abort_stale(conn: psycopg.Connection, source_name: str) -> list[tuple[str, str | None]]:
    """Mark every `running` batch of `source_name` (and of its tables, `<source>.<table>`) `aborted`.

    Call it only while holding :func:`source_lock` for the source: then no live load owns those batches.
    Returns (batch_id, source_file or window) of each batch aborted.
    """
    rows = conn.execute(
        """update audit.load_batches
              set status = 'aborted', finished_at = now(),
                  error = 'aborted: the load that started at ' || to_char(started_at at time zone 'UTC',
                          'YYYY-MM-DD HH24:MI:SS') || ' UTC did not finish (its process or the warehouse stopped '
                          || 'mid-load); none of its rows were kept; marked at ' || to_char(now() at time zone 'UTC',
                          'YYYY-MM-DD HH24:MI:SS') || ' UTC by the next load of the source, which loads the data again'
            where status = 'running' and (source_name = %s or source_name like %s)
        returning batch_id, source_file""",
        (source_name, source_name.replace("_", "\\_").replace("%", "\\%") + ".%")).fetchall()
    for batch_id, where in rows:
        log.warning("%s: batch %s (%s) was left running by a load that did not finish; marked aborted",
                    source_name, batch_id, where)
    return [(r[0], r[1]) for r in rows]


def aborted_batches(conn: psycopg.Connection) -> list[tuple]:
    """(batch_id, source_name, source_file or window, started_at, finished_at, reloaded_by) of every aborted
    batch; `reloaded_by` is the batch that later loaded the same file content or the same source's window."""
    return conn.execute(
        """select a.batch_id, a.source_name, coalesce(a.source_file, a.window_start || ' .. ' || a.window_end),
                  a.started_at, a.finished_at,
                  (select l.batch_id from audit.load_batches l
                    where l.source_name = a.source_name and l.status in ('loaded', 'held', 'retired')
                      and l.started_at > a.started_at
                      and (l.checksum = a.checksum or (a.checksum is null and l.window_start <= a.window_start))
                    order by l.started_at limit 1)
             from audit.load_batches a where a.status = 'aborted' order by a.started_at""").fetchall()


def recover(conn: psycopg.Connection) -> list[tuple[str, str | None]]:
    """Mark the `running` batches no live load owns `aborted`, now, for every source (`ckp batches recover`).

    A source whose lock another process holds is loading right now: its running batch is left alone.
    """
    sources = [r[0] for r in conn.execute(
        "select distinct split_part(source_name, '.', 1) from audit.load_batches where status = 'running'")]
    done: list[tuple[str, str | None]] = []
    for source in sources:
        with source_lock(conn, source, wait=False) as got:
            if got:
                done += abort_stale(conn, source)
            else:
                log.info("%s: a load is running now; its batch is not touched", source)
    return done


def accept_batch(conn: psycopg.Connection, batch_id: str, reason: str) -> None:
    """Release a batch the loader held for too many field issues: its rows (those fields NULL) go to staging.

    For when the field issues are understood and acceptable (the source cannot do better, the fields are not
    needed). The reason is kept in the ledger with the hold it lifts. A batch held by the quality gate is not
    accepted here: fixing the data or the check releases it on the gate's next run.
    """
    if not reason.strip():
        raise BatchStateError("a reason is required (it is kept in the ledger for the auditors)")
    row = conn.execute("select status, load_hold_reason from audit.load_batches where batch_id = %s",
                       (batch_id,)).fetchone()
    if row is None:
        raise BatchStateError(f"no batch {batch_id!r} in audit.load_batches")
    if row[0] != "held" or row[1] is None:
        raise BatchStateError(f"batch {batch_id} is {row[0]}" + (", held by the quality gate" if row[0] == "held"
                              else "") + ": only a batch held at load (field issues) can be accepted")
    try:
        with conn.transaction():
            conn.execute(
                "update audit.load_batches set status = 'loaded', load_hold_reason = null, "
                "error = %s || ' (was: ' || load_hold_reason || ')' where batch_id = %s",
                (f"accepted with field issues: {reason.strip()}", batch_id))
    except psycopg.errors.UniqueViolation:
        raise BatchStateError(f"batch {batch_id}: the same file content is already loaded by another batch; "
                              "retire this one instead") from None
