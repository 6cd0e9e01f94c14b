"""Database I/O of identity resolution: read candidates and the previous state, resolve, write back.

All identity tables are written in ONE transaction (COPY): record_clusters, match_pairs, unresolved
and junk_values are replaced, customer_id_merges is appended. Readers see the old state until commit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql

from crm_knowledge.identity.config import IdentityConfig, load_config
from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS, KEY
from crm_knowledge.identity.resolve import (
    MATCH_PAIR_COLUMNS,
    RECORD_CLUSTER_COLUMNS,
    UNRESOLVED_COLUMNS,
    ResolutionResult,
    resolve,
    resolve_incremental,
)

log = logging.getLogger(__name__)

SQL_FILE = Path(__file__).resolve().parents[1] / "warehouse" / "sql" / "06_identity.sql"
CANDIDATES_TABLE = ("intermediate", "int_identity_candidates")


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the identity schema and tables if missing (06_identity.sql is idempotent)."""
    conn.execute(SQL_FILE.read_text(encoding="utf-8"))


def _copy_out(conn: psycopg.Connection, query: sql.Composable, columns: list[str]) -> pd.DataFrame:
    """COPY (query) TO STDOUT, rows as text (None for NULL), into a DataFrame of object columns."""
    rows = []
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("copy ({}) to stdout").format(query)) as copy:
            for row in copy.rows():
                rows.append(row)
    return pd.DataFrame(rows, columns=columns, dtype="object")


def _table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",)).fetchone()[0]


def read_candidates(conn: psycopg.Connection) -> pd.DataFrame:
    schema, table = CANDIDATES_TABLE
    if not _table_exists(conn, schema, table):
        raise RuntimeError(f"{schema}.{table} does not exist: run the dbt models before identity resolution")
    q = sql.SQL("select {} from {}.{}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in CANDIDATE_COLUMNS),
        sql.Identifier(schema), sql.Identifier(table))
    df = _copy_out(conn, q, CANDIDATE_COLUMNS)
    df["seen_at"] = pd.to_datetime(df["seen_at"], utc=True, errors="coerce", format="ISO8601")
    return df


def read_previous(conn: psycopg.Connection) -> pd.DataFrame:
    cols = RECORD_CLUSTER_COLUMNS + ["resolved_at"]
    q = sql.SQL("select {} from identity.record_clusters").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols))
    df = _copy_out(conn, q, cols)
    df["match_score"] = pd.to_numeric(df["match_score"])
    df["resolved_at"] = pd.to_datetime(df["resolved_at"], utc=True, errors="coerce", format="ISO8601")
    return df


def read_retired_ids(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("select old_customer_id from identity.customer_id_merges "
                        "union select new_customer_id from identity.customer_id_merges").fetchall()
    return [r[0] for r in rows]


def _copy_in(conn: psycopg.Connection, table: str, columns: list[str], frame: pd.DataFrame) -> None:
    stmt = sql.SQL("copy identity.{} ({}) from stdin").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in frame[columns].itertuples(index=False, name=None):
            copy.write_row(tuple(None if _missing(v) else v for v in row))


def _missing(v) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def write_result(conn: psycopg.Connection, result: ResolutionResult) -> None:
    """Write a resolution in one transaction (the caller's connection must not be in autocommit)."""
    with conn.transaction():
        now = conn.execute("select now()").fetchone()[0]
        # DELETE (not TRUNCATE): readers keep seeing the previous state until commit, without locks
        for t in ("record_clusters", "match_pairs", "unresolved", "junk_values"):
            conn.execute(sql.SQL("delete from identity.{}").format(sql.Identifier(t)))
        rc = result.record_clusters.assign(resolved_at=now)
        _copy_in(conn, "record_clusters", RECORD_CLUSTER_COLUMNS + ["resolved_at"], rc)
        _copy_in(conn, "match_pairs", MATCH_PAIR_COLUMNS, result.match_pairs)
        _copy_in(conn, "unresolved", UNRESOLVED_COLUMNS, result.unresolved)
        jv = result.junk_values.assign(detected_at=now)
        _copy_in(conn, "junk_values", ["identifier_kind", "identifier_value_hash", "distinct_records", "detected_at"],
                 jv)
        if len(result.merges):
            _copy_in(conn, "customer_id_merges", ["old_customer_id", "new_customer_id", "merged_at"],
                     result.merges.assign(merged_at=now))


def split_new(candidates: pd.DataFrame, previous: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(new, existing): existing = already in record_clusters and not seen since it was resolved."""
    m = candidates.merge(previous[KEY + ["resolved_at"]], on=KEY, how="left")
    changed = m["seen_at"].notna() & m["resolved_at"].notna() & (m["seen_at"] > m["resolved_at"])
    existing = m["resolved_at"].notna().to_numpy() & ~changed.to_numpy()
    return candidates[~existing].reset_index(drop=True), candidates[existing].reset_index(drop=True)


def run(conn_url: str, mode: str = "full", config: IdentityConfig | None = None) -> dict:
    """Resolve identities in the warehouse at `conn_url`; returns the stats of the run."""
    if mode not in ("full", "incremental"):
        raise ValueError(f"mode must be 'full' or 'incremental', got {mode!r}")
    config = config or load_config()
    with psycopg.connect(conn_url) as conn:
        ensure_schema(conn)
        conn.commit()
        candidates = read_candidates(conn)
        previous = read_previous(conn)
        retired = read_retired_ids(conn)
        conn.commit()
        if mode == "incremental" and len(previous):
            new, existing = split_new(candidates, previous)
            log.info("identity: incremental run, %d new or changed records, %d existing", len(new), len(existing))
            result = resolve_incremental(new, existing, previous, config, retired_ids=retired)
        else:
            if mode == "incremental":
                log.info("identity: no previous resolution, running in full mode")
            result = resolve(candidates, previous if len(previous) else None, config, retired_ids=retired)
        write_result(conn, result)
    stats = {k: v for k, v in result.stats.items() if k != "oversized_detail"}
    stats["clusters"] = stats["customers"]
    log.info("identity: wrote %d record clusters (%d customers), %d match pairs, %d merges, %d unresolved, "
             "%d junk values", len(result.record_clusters), stats["customers"], len(result.match_pairs),
             len(result.merges), len(result.unresolved), len(result.junk_values))
    return stats
