"""Identity candidates streamed from the warehouse into Parquet files, in bounded memory (the Spark backend's input).

The in-process backend reads every candidate into one pandas frame (:func:`crm_knowledge.identity.store.
read_candidates`); at tens of millions of records no single process should. With ``backend: spark`` the driver
instead streams the same rows - in the same key order, with the same declared-identifier columns and the same
erasure tombstones applied - from ``COPY (...) TO STDOUT`` through pyarrow's incremental CSV reader into Parquet
files of at most `chunk_rows` rows each, which Spark reads. The driver holds one chunk at a time.

The record number (`rid`, the row position the in-process backend gives) is assigned here, across chunks, so both
backends number records alike. What the driver keeps per record is one boolean (`is_new`, which record is new or
changed since the previous resolution); everything else stays in the files.

The other direction too: :func:`stage_previous` streams the previous resolution (identity.record_clusters) to
Parquet the same way, and the per-record result tables Spark writes as Parquet (:class:`StagedResult`) are
loaded with ``COPY ... FROM STDIN`` one record batch at a time (:func:`copy_parquet`): no JDBC driver, nothing
downloaded, and on a cluster the driver still only streams (the files are on the shared scratch directory).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from crm_knowledge.identity.config import IdentityConfig
from crm_knowledge.identity.prepare import KEY
from crm_knowledge.warehouse.db import table_exists

log = logging.getLogger(__name__)

#: rows per staged Parquet file (one chunk in the driver's memory at a time: ~100 MB of Arrow at this size)
DEFAULT_CHUNK_ROWS = 200_000
IDENTIFIERS_TABLE = ("intermediate", "int_identity_identifiers")


@dataclass(frozen=True)
class StagedCandidates:
    """Candidates staged as Parquet files (private: 0600 in a 0700 directory)."""

    files: tuple[Path, ...]
    rows: int
    #: the candidate columns in the files (CANDIDATE_COLUMNS and declared ``id_<kind>`` columns); the files also
    #: hold ``rid`` (0..rows-1, the record number) and ``is_new``
    columns: tuple[str, ...]
    #: per rid: new or changed since the previous resolution (split_new's rule); None without a previous one
    is_new: np.ndarray | None
    #: candidates dropped because they carry an erased customer's identifiers (purged from the warehouse)
    blocked: int = 0

    def new_keys(self) -> pd.DataFrame:
        """KEY columns of the new or changed records (read back from the files, not kept on the driver)."""
        import pyarrow.dataset as ds

        if self.is_new is None:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in KEY})
        table = ds.dataset([str(f) for f in self.files], format="parquet").to_table(
            columns=list(KEY), filter=ds.field("is_new"))
        return pd.DataFrame({c: pd.Series(table.column(c).to_pylist(), dtype=object) for c in KEY})


class _CopyStream(io.RawIOBase):
    """A read-only file over the chunks of a psycopg COPY ... TO STDOUT (pyarrow reads it block by block)."""

    def __init__(self, chunks: Iterator) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not len(self._buf):
            try:
                self._buf = memoryview(bytes(next(self._chunks)))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _declared_present(conn: psycopg.Connection, config: IdentityConfig) -> list[str]:
    """Declared identifier kinds with at least one value (read_candidates makes a column for those only)."""
    schema, table = IDENTIFIERS_TABLE
    names = [k.name for k in config.declared_identifiers]
    if not names or not table_exists(conn, f"{schema}.{table}"):
        return []
    rows = conn.execute(sql.SQL("select distinct identifier_kind from {}.{} where identifier_kind = any(%s)").format(
        sql.Identifier(schema), sql.Identifier(table)), (names,)).fetchall()
    present = {r[0] for r in rows}
    return [n for n in names if n in present]


def _query(conn: psycopg.Connection, config: IdentityConfig, *, with_previous: bool,
           new_last: bool) -> tuple[sql.Composable, list[str], list[str]]:
    """(query, candidate columns, declared kinds): read_candidates' rows, with the pivot of declared identifiers
    and split_new's rule done by the server. seen_at comes as microseconds since the epoch (UTC)."""
    from crm_knowledge.identity.store import CANDIDATES_TABLE, candidate_source_columns

    schema, table = CANDIDATES_TABLE
    columns, absent, has_staged_at = candidate_source_columns(conn)
    kinds = _declared_present(conn, config)
    select = []
    for c in columns:
        if c == "staged_at":  # only for split_new's rule, below
            continue
        if c == "seen_at":
            select.append(sql.SQL("(extract(epoch from c.seen_at) * 1000000)::bigint as seen_at"))
        elif c in absent:
            select.append(sql.SQL("null::text as {}").format(sql.Identifier(c)))
        else:
            select.append(sql.SQL("c.{}::text").format(sql.Identifier(c)))
    joins = []
    if kinds:
        ischema, itable = IDENTIFIERS_TABLE
        pivot = sql.SQL(", ").join(
            sql.SQL("max(identifier_value::text) filter (where identifier_kind = {}) as {}").format(
                sql.Literal(k), sql.Identifier(f"id_{k}")) for k in kinds)
        joins.append(sql.SQL(
            "left join (select source_system, source_record_id, {} from {}.{} group by 1, 2) i "
            "on i.source_system = c.source_system and i.source_record_id = c.source_record_id").format(
            pivot, sql.Identifier(ischema), sql.Identifier(itable)))
        select += [sql.SQL("i.{}").format(sql.Identifier(f"id_{k}")) for k in kinds]
    if with_previous:
        # store.split_new: existing = resolved before and neither seen nor re-staged since
        staged = "or coalesce(c.staged_at > rc.resolved_at, false)" if has_staged_at else ""
        select.append(sql.SQL(
            "(rc.resolved_at is null or coalesce(c.seen_at > rc.resolved_at, false) " + staged + ") as is_new"))
        joins.append(sql.SQL("left join identity.record_clusters rc "
                             "on rc.source_system = c.source_system and rc.source_record_id = c.source_record_id"))
    order = sql.SQL('{}c.source_system collate "C", c.source_record_id collate "C"').format(
        sql.SQL("is_new, ") if with_previous and new_last else sql.SQL(""))
    q = sql.SQL("select {} from {}.{} c {} order by {}").format(
        sql.SQL(", ").join(select), sql.Identifier(schema), sql.Identifier(table), sql.SQL(" ").join(joins), order)
    return q, [c for c in columns if c != "staged_at"], kinds


def _copy_batches(conn: psycopg.Connection, query: sql.Composable, names: list[str], types: dict) -> Iterator:
    """The rows of `query` as pyarrow record batches, streamed from ``COPY (query) TO STDOUT`` through pyarrow's
    incremental CSV reader (one block in memory at a time). Empty text is NULL, quoted or not (what
    read_candidates' pandas parser makes of it); booleans come as t / f."""
    import pyarrow.csv as pacsv

    statement = sql.SQL("copy ({}) to stdout with (format csv)").format(query)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        stream = io.BufferedReader(_CopyStream(iter(copy)), buffer_size=1 << 20)
        if not stream.peek(1):
            return
        yield from pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=names, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=True, true_values=["t"], false_values=["f"]))


def _private_writer(path: Path, schema):
    """A Parquet writer of a new file readable by its owner only (personal data)."""
    import pyarrow.parquet as pq

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return pq.ParquetWriter(os.fdopen(fd, "wb"), schema)


def stage_candidates(conn: psycopg.Connection, directory: Path, config: IdentityConfig, *,
                     with_previous: bool = False, new_last: bool = False,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> StagedCandidates:
    """Stream the identity candidates into Parquet files under `directory` (made 0700), at most `chunk_rows`
    rows per file, without holding more than one chunk.

    `with_previous`: flag records new or changed since identity.record_clusters (store.split_new's rule);
    `new_last`: order existing records before new ones (each in key order), as resolve_incremental numbers them.
    Records of erased customers are dropped and purged (privacy.tombstones), as store.run does in process."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from crm_knowledge.identity.store import CANDIDATES_TABLE
    from crm_knowledge.privacy.tombstones import blocked_mask, load_tombstones, purge_blocked

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    schema, table = CANDIDATES_TABLE
    if not table_exists(conn, f"{schema}.{table}"):
        raise RuntimeError(f"{schema}.{table} does not exist: run the dbt models before identity resolution")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    query, columns, kinds = _query(conn, config, with_previous=with_previous, new_last=new_last)
    text_cols = [c for c in columns if c != "seen_at"] + [f"id_{k}" for k in kinds]
    names = [*columns, *(f"id_{k}" for k in kinds), *(["is_new"] if with_previous else [])]
    types = {c: pa.string() for c in text_cols} | {"seen_at": pa.int64(), "is_new": pa.bool_()}
    out_schema = pa.schema([*((c, pa.string()) for c in text_cols), ("seen_at", pa.timestamp("us", tz="UTC")),
                            ("rid", pa.int64()), ("is_new", pa.bool_())])
    tombstones = load_tombstones(conn)
    declared = config.declared_identifiers

    files: list[Path] = []
    writer = None
    in_file = 0
    rid = 0
    flags: list[np.ndarray] = []
    blocked: list[pd.DataFrame] = []

    def write(batch: pa.RecordBatch) -> None:
        nonlocal writer, in_file
        start = 0
        while start < batch.num_rows:
            if writer is None or in_file >= chunk_rows:
                if writer is not None:
                    writer.close()
                path = directory / f"part-{len(files):05d}.parquet"
                writer = _private_writer(path, out_schema)
                files.append(path)
                in_file = 0
            take = min(chunk_rows - in_file, batch.num_rows - start)
            writer.write_batch(batch.slice(start, take))
            in_file += take
            start += take

    try:
        for batch in _copy_batches(conn, query, names, types):
            if tombstones and batch.num_rows:
                frame = batch.to_pandas()
                mask = blocked_mask(frame, tombstones, declared=declared).to_numpy(dtype=bool)
                if mask.any():
                    blocked.append(frame.loc[mask])
                    batch = batch.filter(pa.array(~mask))
            n = batch.num_rows
            if not n:
                continue
            is_new = (batch.column("is_new").fill_null(True) if with_previous
                      else pa.nulls(n, pa.bool_()))
            if with_previous:
                flags.append(is_new.to_numpy(zero_copy_only=False).astype(bool))
            seen = pc.cast(batch.column("seen_at"), pa.timestamp("us", tz="UTC"))
            write(pa.RecordBatch.from_arrays(
                [*(batch.column(c) for c in text_cols), seen, pa.array(np.arange(rid, rid + n)), is_new],
                schema=out_schema))
            rid += n
        if writer is None:  # no candidates: one empty file, so readers see the schema
            files.append(directory / "part-00000.parquet")
            _private_writer(files[0], out_schema).close()
    finally:
        if writer is not None:
            writer.close()
    n_blocked = 0
    if blocked:
        n_blocked = purge_blocked(conn, pd.concat(blocked, ignore_index=True), declared)
    log.info("identity: staged %d candidate(s) in %d Parquet file(s) of at most %d rows%s", rid, len(files),
             chunk_rows, f", {n_blocked} of erased customers dropped" if n_blocked else "")
    is_new_all = (np.concatenate(flags) if flags else np.zeros(0, bool)) if with_previous else None
    return StagedCandidates(tuple(files), rid, tuple([*columns, *(f"id_{k}" for k in kinds)]), is_new_all,
                            n_blocked)


#: identity.record_clusters as the Spark backend reads the previous resolution (resolved_at: epoch microseconds)
PREVIOUS_COLUMNS = ("source_system", "source_record_id", "customer_id", "match_rule", "match_score", "resolved_at")


def stage_previous(conn: psycopg.Connection, directory: Path) -> Path:
    """identity.record_clusters (the previous resolution) streamed into one Parquet file under `directory`, batch by
    batch (the Spark backend's stable ids, previous-cluster edges and resolved_at read it there)."""
    import pyarrow as pa

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = list(PREVIOUS_COLUMNS)
    types = {c: pa.string() for c in names[:4]} | {"match_score": pa.float64(), "resolved_at": pa.int64()}
    schema = pa.schema([(c, types[c]) for c in names])
    query = sql.SQL("select source_system, source_record_id, customer_id, match_rule, match_score, "
                    "(extract(epoch from resolved_at) * 1000000)::bigint from identity.record_clusters")
    path = directory / "previous.parquet"
    writer = _private_writer(path, schema)
    rows = 0
    try:
        for batch in _copy_batches(conn, query, names, types):
            writer.write_batch(batch)
            rows += batch.num_rows
    finally:
        writer.close()
    log.info("identity: staged the previous resolution (%d records) for Spark", rows)
    return path


@dataclass(frozen=True)
class StagedResult:
    """The per-record output tables of a Spark run as Parquet (written by Spark in the session's scratch
    directory), loaded into the warehouse by :meth:`copy_into` without passing through pandas. Timestamps are
    epoch microseconds (UTC); a null resolved_at means "now" (the writing transaction's time)."""

    record_clusters: str
    match_pairs: str
    unresolved: str
    #: the highest customer id of the run (identity.issued_ids' high-water mark), None without records
    highest_id: str | None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The three tables as pandas frames (a caller of resolve() holding its candidates in memory gets
        frames from the Spark backend, as from the in-process one)."""
        import pyarrow.dataset as ds

        out = {}
        for table in ("record_clusters", "match_pairs", "unresolved"):
            df = ds.dataset(getattr(self, table), format="parquet").to_table().to_pandas()
            for c in df.columns:
                if c == "seen_at":
                    df[c] = pd.to_datetime(df[c], unit="us", utc=True)
                elif df[c].dtype != float:
                    df[c] = df[c].astype(object).where(df[c].notna(), None)
            out[table] = df.drop(columns="resolved_at", errors="ignore")
        return out

    def copy_into(self, conn: psycopg.Connection, now) -> dict[str, int]:
        """COPY the three tables into identity.* (inside the caller's transaction), one Parquet record batch at
        a time as CSV; resolved_at's nulls become `now`. Returns the rows written per table."""
        return {table: copy_parquet(conn, sql.SQL("identity.{}").format(sql.Identifier(table)),
                                    getattr(self, table), now=now)
                for table in ("record_clusters", "match_pairs", "unresolved")}


#: columns of staged results that hold epoch microseconds (UTC), written as timestamps
_EPOCH_COLUMNS = ("resolved_at", "seen_at")


def copy_parquet(conn: psycopg.Connection, table: sql.Composable, path: str, *, now=None,
                 batch_rows: int = 20_000) -> int:
    """Load the Parquet file or directory `path` into `table` with ``COPY ... FROM STDIN (format csv)``, streamed
    one record batch at a time (bounded memory, no per-row Python); the files' column names are the table's.
    Columns in _EPOCH_COLUMNS are epoch microseconds; a null resolved_at becomes `now`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")
    names = dataset.schema.names
    stmt = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in names))
    ts = pa.timestamp("us", tz="UTC")
    rows = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        # one batch at a time, on this thread: pyarrow's defaults (16 batches of each of 4 files read ahead, decoded
        # on a thread pool) made the Spark driver's 1M peak, 2.7 GB, here. Measured directly on 2M match pairs in
        # files of 250k rows, above the process's start: explanations of 0.3 KB 1.08 GB with the defaults, 0.44 GB
        # one batch at a time; of 0.7 KB 0.80 GB one batch at a time, 0.72 GB in batches of 20k rows, 0.46 GB when
        # the files also hold at most 50k rows (Spark's writer, spark_backend.RESULT_WRITE_OPTIONS: a batch is cut
        # from a row group, which is decoded whole); no slower (the COPY, not the reading, sets the pace)
        batches = dataset.to_batches(batch_size=batch_rows, batch_readahead=1, fragment_readahead=1,
                                     use_threads=False)
        for batch in batches:
            if not batch.num_rows:
                continue
            cols = []
            for name, col in zip(names, batch.columns, strict=True):
                if name in _EPOCH_COLUMNS:
                    col = pc.cast(col, pa.int64()).cast(ts)
                    if name == "resolved_at" and now is not None:
                        col = col.fill_null(pa.scalar(now, ts))
                cols.append(col)
            buf = io.BytesIO()
            pacsv.write_csv(pa.RecordBatch.from_arrays(cols, names=names), buf,
                            pacsv.WriteOptions(include_header=False))
            copy.write(buf.getbuffer())
            rows += batch.num_rows
    return rows
