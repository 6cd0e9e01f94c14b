"""The warehouse access layer: every module reaches PostgreSQL through these few functions.

* :func:`connect` — a connection to the warehouse (or any database URL), closed on exit, committed unless
  the block raised, named in ``pg_stat_activity`` by ``application_name``;
* :func:`table_exists` — whether a relation exists (optional tables: a stage that has not run yet);
* :func:`advisory_lock` / :func:`advisory_unlock` — named PostgreSQL advisory locks (``hashtext(key)``), so two
  tasks doing the same thing (bootstrap, a delivery to one destination, an erasure) never overlap;
* :func:`copy_rows` (COPY in, row by row), :func:`copy_frame` (COPY in, a data frame as CSV),
  :func:`copy_file_in` (COPY in, a file's bytes as they are) and :func:`copy_csv` / :func:`read_frame` (COPY out,
  streamed);
* :func:`connection_pool` — a pool of open connections for a long-running server (the read service).

URLs come from :mod:`crm_knowledge.settings`; nothing here reads the environment.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from crm_knowledge.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: The one advisory lock every schema change takes (DDL files, identity tables, roles, grants, ownership):
#: DAGs starting together (the four ingests each run prepare_warehouse) otherwise race on the catalog
#: (`tuple concurrently updated`). Held for the changing transaction only.
SCHEMA_CHANGE_LOCK = "crm_knowledge.schema_changes"


def lock_schema_changes(conn: psycopg.Connection) -> None:
    """Wait for, then hold until this transaction ends, :data:`SCHEMA_CHANGE_LOCK`."""
    advisory_lock(conn, SCHEMA_CHANGE_LOCK, transaction=True)


def hold_off_schema_changes(conn: psycopg.Connection, *, wait: bool = True) -> bool:
    """Hold :data:`SCHEMA_CHANGE_LOCK` *shared* until this transaction ends; True when held.

    For work that changes a catalog row a schema change also writes: ``alter sequence ... restart`` and
    ``analyze`` (a table's pg_class row) against prepare_warehouse's grants and ownership changes in another
    DAG, which otherwise fail one of the two with `tuple concurrently updated`. Such work runs alongside other
    such work, never alongside a schema change. Take it first in the transaction, before any table lock, so
    that a schema change waiting for a table this transaction holds cannot deadlock with it; `wait=False`
    for a step that may be skipped (statistics) when a schema change is under way.
    """
    return advisory_lock(conn, SCHEMA_CHANGE_LOCK, wait=wait, transaction=True, shared=True)


def refresh_statistics(conn: psycopg.Connection, table: str, columns: list[str] | None = None, *,
                       lock_timeout: str | None = None) -> bool:
    """ANALYZE `table` (``schema.name``) that just received rows; True when the statistics were refreshed.

    Autoanalyze waits until 10% of a table has changed, which a daily batch of a large table never reaches:
    the planner then expects ~1 row of the new batch or load window, and the quality gate's and incremental
    staging's joins over it are planned as nested loops (rows² time). ANALYZE samples a bounded number of
    rows, so it costs about a second even on a table of tens of millions of rows. `columns`: only those
    columns' statistics (and the table's row count) are refreshed, most of the cost saved on a wide table.

    Best effort: skipped (False) while a schema change is under way (:func:`hold_off_schema_changes`) or,
    with `lock_timeout` (e.g. ``"10s"``), when the table cannot be locked within it. Runs in its own
    transaction, or a savepoint of the caller's.
    """
    cols = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns))) if columns else sql.SQL("")
    try:
        with conn.transaction():
            if not hold_off_schema_changes(conn, wait=False):
                log.info("%s: a schema change is under way; statistics not refreshed this time", table)
                return False
            if lock_timeout:
                conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(lock_timeout)))
            conn.execute(sql.SQL("analyze {}{}").format(_qualified(table), cols))
    except psycopg.errors.LockNotAvailable:
        log.warning("%s: ANALYZE could not lock the table within %s; statistics not refreshed", table,
                    lock_timeout)
        return False
    return True


@contextmanager
def connect(url: str | None = None, *, autocommit: bool = False, application_name: str = "crm_knowledge",
            **kwargs: Any) -> Iterator[psycopg.Connection]:
    """A psycopg connection to the warehouse (or `url`), closed on exit, committed unless it raised.

    `application_name` names the session in pg_stat_activity unless the URL names it already (a deployment's
    or a test's own name wins). Extra keyword arguments (``connect_timeout``, ``row_factory``, ...) go to
    :func:`psycopg.connect`.
    """
    url = url or get_settings().warehouse_url
    if "application_name" not in conninfo_to_dict(url):
        kwargs["application_name"] = application_name
    conn = psycopg.connect(url, autocommit=autocommit, **kwargs)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def connection_pool(url: str, *, min_size: int = 1, max_size: int = 10, application_name: str = "crm_knowledge",
                    autocommit: bool = True, session_sql: str | None = None):
    """A started :class:`psycopg_pool.ConnectionPool` on `url` (close it when done): a server answering many
    short requests keeps its connections open instead of paying for a new one (and its authentication) each
    time. Connections are in autocommit mode unless asked otherwise; `session_sql` runs once on each new
    connection (session settings)."""
    from psycopg_pool import ConnectionPool

    kwargs: dict[str, Any] = {"autocommit": autocommit}
    if "application_name" not in conninfo_to_dict(url):
        kwargs["application_name"] = application_name
    def configure(conn: psycopg.Connection) -> None:
        if session_sql:
            conn.execute(session_sql)
            if not conn.autocommit:
                conn.commit()

    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, kwargs=kwargs, open=False,
                          name=application_name, configure=configure)
    pool.open(wait=True, timeout=30)
    return pool


def table_exists(conn: psycopg.Connection, qualified_name: str) -> bool:
    """Whether ``schema.table`` (a table, view or any relation) exists and is visible to this connection."""
    return conn.execute("select to_regclass(%s) is not null", (qualified_name,)).fetchone()[0]


def column_exists(conn: psycopg.Connection, qualified_name: str, column: str) -> bool:
    """Whether ``schema.table`` has `column` (False when the table does not exist): for code that reads a
    column a newer version of a model or migration adds."""
    schema, _, table = qualified_name.partition(".")
    return conn.execute("select exists (select 1 from information_schema.columns where table_schema = %s "
                        "and table_name = %s and column_name = %s)", (schema, table, column)).fetchone()[0]


def advisory_lock(conn: psycopg.Connection, key: str, *, wait: bool = True, transaction: bool = False,
                  shared: bool = False) -> bool:
    """Take the advisory lock named `key`; True when held.

    `wait`: block until it is free (else return False at once when another session holds it).
    `transaction`: released at the end of the current transaction (else held by the session until
    :func:`advisory_unlock` or disconnect). `shared`: held alongside other shared holders, never alongside
    an exclusive one.
    """
    function = ("pg_" + ("" if wait else "try_") + "advisory_" + ("xact_" if transaction else "") + "lock"
                + ("_shared" if shared else ""))
    row = conn.execute(sql.SQL("select {}(hashtext(%s))::text").format(sql.Identifier(function)), (key,)).fetchone()
    return row[0] != "false"  # the blocking forms return void (""), the try forms a boolean


def advisory_unlock(conn: psycopg.Connection, key: str) -> None:
    """Release the session advisory lock named `key` (taken with :func:`advisory_lock`)."""
    conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))


def copy_rows(conn: psycopg.Connection, statement: str | sql.Composable, rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` in with `statement` (``copy <table> (<columns>) from stdin``); returns the rows written.

    Values go as Python objects (psycopg adapts them; None is NULL): no CSV quoting to get wrong.
    """
    n = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


#: Bytes per write when a file is streamed to COPY.
COPY_CHUNK = 1 << 20


def copy_file_in(conn: psycopg.Connection, statement: str | sql.Composable, path: Path) -> int:
    """Stream the bytes of the file `path` to `statement` (``copy <table> ... from stdin <options>``), in
    COPY_CHUNK pieces; the server parses them. Returns the rows COPY reports."""
    with conn.cursor() as cur:
        with cur.copy(statement) as copy, open(path, "rb") as fh:
            while chunk := fh.read(COPY_CHUNK):
                copy.write(chunk)
        return cur.rowcount


#: Rows per CSV piece when a frame is COPYed in (:func:`copy_frame`): one CSV text of millions of rows would be GBs.
COPY_FRAME_ROWS = 200_000


def copy_frame(conn: psycopg.Connection, table: str | sql.Composable, frame: pd.DataFrame) -> None:
    """COPY a frame's columns into `table` (a qualified name, or a composed one) as CSV, written by Arrow's CSV
    writer (C++: a million rows of text in a fraction of a second, where pandas' writer took 15 times as long,
    and row tuples minutes), COPY_FRAME_ROWS rows at a time. NULL (None, NaN) is the unquoted empty field; text
    is quoted, so an empty string stays one. Timestamps are written in ISO form with their zone."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if frame.empty:
        return
    stmt = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        sql.SQL(table) if isinstance(table, str) else table, sql.SQL(", ").join(map(sql.Identifier, frame.columns)))
    options = pa_csv.WriteOptions(include_header=False)
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for start in range(0, len(frame), COPY_FRAME_ROWS):
            buf = io.BytesIO()
            pa_csv.write_csv(pa.Table.from_pandas(frame.iloc[start:start + COPY_FRAME_ROWS], preserve_index=False),
                             buf, options)
            copy.write(buf.getbuffer())


@contextmanager
def reloading(conn: psycopg.Connection, tables: Sequence[str]) -> Iterator[None]:
    """Empty `tables` (``schema.name``) for the block to load them again whole, with their secondary indexes
    dropped during the load and built again after it, then their statistics refreshed.

    One sort per index instead of millions of b-tree insertions in the order the rows happen to come: at 2.1M
    identity records the prepared state took 110 s to load with its indexes in place, 33 s this way. Indexes
    that back a constraint (primary keys, unique constraints) stay. Inside the caller's transaction, which
    must hold :func:`hold_off_schema_changes` (taken before any table lock: the index DDL and ANALYZE change
    the tables' catalog rows). TRUNCATE takes the tables' ACCESS EXCLUSIVE lock, so a reader waits until
    commit and then sees the new contents, never an empty or half-loaded table; nor do dead rows of the old
    contents stay behind for vacuum, as after a DELETE.
    """
    conn.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(_qualified(t) for t in tables)))
    indexes = conn.execute(
        "select quote_ident(i.schemaname) || '.' || quote_ident(i.indexname), i.indexdef from pg_indexes i "
        "where i.schemaname || '.' || i.tablename = any(%s) and not exists "
        "(select from pg_constraint c where c.conname = i.indexname and c.connamespace = i.schemaname::regnamespace) "
        "order by 1", (list(tables),)).fetchall()
    for name, _ in indexes:
        conn.execute(f"drop index {name}")
    yield
    started = time.monotonic()
    for _, definition in indexes:
        conn.execute(definition)
    conn.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(_qualified(t) for t in tables)))
    log.info("reloaded %s: %d index(es) built again and statistics refreshed in %.1f s", ", ".join(tables),
             len(indexes), time.monotonic() - started)


def _qualified(table: str) -> sql.Composable:
    """``schema.name`` as two quoted identifiers (refresh_statistics, reloading, table_count)."""
    schema, name = table.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def table_count(conn: psycopg.Connection, qualified_name: str) -> int:
    return conn.execute(sql.SQL("select count(*) from {}").format(_qualified(qualified_name))).fetchone()[0]


def copy_csv(conn: psycopg.Connection, query: str | sql.Composable, *, header: bool) -> io.BytesIO:
    """The rows of `query` as CSV bytes, streamed with COPY … TO STDOUT (rewound, ready for pandas)."""
    q = sql.SQL(query) if isinstance(query, str) else query
    statement = sql.SQL("copy ({}) to stdout with (format csv, header {})").format(q, sql.SQL(str(header).lower()))
    buf = io.BytesIO()
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for chunk in copy:
                buf.write(chunk)
    buf.seek(0)
    return buf


class _CopyStream(io.RawIOBase):
    """A readable stream over the chunks of a COPY … TO STDOUT: a parser reads it as it arrives, so the CSV text
    of millions of rows is never held whole."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = bytes(chunk)
        n = min(len(b), len(self._rest))
        b[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def copy_arrow(conn: psycopg.Connection, query: str | sql.Composable, columns: Sequence[str]):
    """The rows of `query` (text columns) as a pyarrow Table of strings, streamed with COPY … TO STDOUT (CSV) into
    Arrow's CSV reader batch by batch; empty text, quoted or not, is null (as :func:`read_frame` reads it).

    A Python str costs about 60 bytes before its text, an Arrow string 4 to 8: at millions of rows this is the
    difference between gigabytes and hundreds of megabytes."""
    import pyarrow as pa
    from pyarrow import csv

    q = sql.SQL(query) if isinstance(query, str) else query
    statement = sql.SQL("copy ({}) to stdout with (format csv)").format(q)
    schema = pa.schema([(c, pa.string()) for c in columns])
    with conn.cursor() as cur, cur.copy(statement) as copy:
        stream = io.BufferedReader(_CopyStream(iter(copy)), buffer_size=1 << 20)
        try:
            reader = csv.open_csv(
                stream, read_options=csv.ReadOptions(column_names=list(columns), block_size=8 << 20),
                parse_options=csv.ParseOptions(newlines_in_values=True),
                convert_options=csv.ConvertOptions(column_types=schema, null_values=[""], strings_can_be_null=True,
                                                   quoted_strings_can_be_null=True))
        except pa.ArrowInvalid as e:  # no rows at all
            if "Empty CSV file" not in str(e):
                raise
            return schema.empty_table()
        return pa.Table.from_batches(list(reader), schema=schema)


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
