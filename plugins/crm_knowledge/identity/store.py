"""Database I/O of identity resolution: read candidates and the previous state, resolve, write back.

All identity tables are written in ONE transaction (COPY): record_clusters, match_pairs, unresolved
and junk_values are replaced, customer_id_merges is appended. Readers see the old state until commit.

`record_clusters.resolved_at` is when resolution last *decided* about a record: it was new, it changed
since (seen_at, or the staging row re-written: staged_at), or its customer_id moved. A record whose
customer stays keeps its resolved_at, so the incremental marts facts re-read only the rows of records
whose attribution may have changed (dbt_project/macros/incremental_facts.sql).

The daily run is incremental; :func:`mode_for` decides when it is a full re-resolution instead.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_knowledge.identity import daily
from crm_knowledge.identity.config import IdentityConfig, load_config
from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS, IDENTIFIER_PREFIX, KEY, per_distinct
from crm_knowledge.identity.probabilistic import PARAMETER_COLUMNS
from crm_knowledge.identity.resolve import (
    MATCH_PAIR_COLUMNS,
    RECORD_CLUSTER_COLUMNS,
    UNRESOLVED_COLUMNS,
    ResolutionResult,
    resolve,
    resolve_incremental,
)
from crm_knowledge.identity.stable_ids import format_id, parse_id
from crm_knowledge.privacy.tombstones import enforce_tombstones
from crm_knowledge.warehouse.bootstrap import SQL_DIR
from crm_knowledge.warehouse.db import (
    column_exists,
    connect,
    copy_arrow,
    copy_csv,
    copy_frame,
    hold_off_schema_changes,
    reloading,
    table_exists,
)

log = logging.getLogger(__name__)

SQL_FILE = SQL_DIR / "06_identity.sql"
#: The tables a run over all records replaces whole (write_result); a daily run replaces its neighbourhood's rows.
FULL_RUN_TABLES = ("record_clusters", "match_pairs", "unresolved", "junk_values")
CANDIDATES_TABLE = ("intermediate", "int_identity_candidates")
IDENTIFIERS_TABLE = ("intermediate", "int_identity_identifiers")
ADDRESS_DETAIL_COLUMNS = ("house_number", "address_line2_norm")
_temp_ids = itertools.count()


def ensure_schema(conn: psycopg.Connection, config: IdentityConfig | None = None) -> None:
    """Create the identity schema and tables if missing (06_identity.sql is idempotent) and the prepared state
    the daily run reads (identity/daily.py), under the schema-change lock (the caller commits right after,
    releasing it)."""
    from crm_knowledge.warehouse.db import lock_schema_changes

    lock_schema_changes(conn)
    conn.execute(SQL_FILE.read_text(encoding="utf-8"))
    daily.ensure_state_schema(conn, config or load_config())


def _copy_out(conn: psycopg.Connection, query: sql.Composable, columns: list[str], *,
              arrow: bool = False) -> pd.DataFrame:
    """COPY (query) TO STDOUT as CSV into pandas' C parser: object columns of str, None for NULL; `arrow`: Arrow's
    parser instead, Arrow-backed string columns (NaN for NULL), a tenth of the memory of Python strings.

    Rows as Python tuples cost about 1 kB per candidate record (6 GB at a million customers); the CSV
    path builds the columns directly.
    """
    if arrow:
        return copy_arrow(conn, query, columns).to_pandas()
    buf = copy_csv(conn, query, header=False)
    if not buf.getbuffer().nbytes:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    df = pd.read_csv(buf, header=None, names=columns, dtype=object, keep_default_na=False, na_values=[""])
    del buf
    return df.astype(object).where(df.notna(), None)


def candidate_source_columns(conn: psycopg.Connection) -> tuple[list[str], list[str], bool]:
    """(columns, absent, has staged_at) of the candidates table: CANDIDATE_COLUMNS (plus staged_at when the
    table has it), of which `absent` are address details a table built before they came lacks (read as
    missing). Shared by :func:`read_candidates` and the Spark backend's streaming staging."""
    schema, table = CANDIDATES_TABLE
    absent = [c for c in ADDRESS_DETAIL_COLUMNS if not column_exists(conn, f"{schema}.{table}", c)]
    has_staged_at = column_exists(conn, f"{schema}.{table}", "staged_at")
    return [*CANDIDATE_COLUMNS, *(["staged_at"] if has_staged_at else [])], absent, has_staged_at


def has_staged_at(conn: psycopg.Connection) -> bool:
    schema, table = CANDIDATES_TABLE
    return column_exists(conn, f"{schema}.{table}", "staged_at")


def _restricted(table: sql.Composable, keys: sql.Composable | None) -> sql.Composable:
    """`table`, or its rows of the record keys in temp table `keys` (a semi-join on the key index)."""
    if keys is None:
        return sql.SQL("{} t").format(table)
    return sql.SQL("(select t.* from {} t join {} k using (source_system, source_record_id)) t").format(table, keys)


def read_candidates(conn: psycopg.Connection, keys: Iterable[tuple[str, str]] | None = None, *,
                    arrow: bool = False) -> pd.DataFrame:
    """The matcher's input; plus `staged_at` (when staging last re-wrote the record) when the table has it,
    which tells an incremental run about late-arriving changes whose source time (seen_at) is old.

    `keys` ((source_system, source_record_id) pairs): only those records (the daily run, identity/daily.py),
    read through the candidates' key index; None: every record. `arrow`: Arrow-backed string columns (missing
    values NaN, not None; :func:`crm_knowledge.identity.prepare.prepare` takes either), for a run over every
    record. Inside the caller's transaction."""
    schema, table = CANDIDATES_TABLE
    if not table_exists(conn, f"{schema}.{table}"):
        raise RuntimeError(f"{schema}.{table} does not exist: run the dbt models before identity resolution")
    all_columns, absent, _ = candidate_source_columns(conn)
    columns = [c for c in all_columns if c not in absent]
    key_table = None if keys is None else daily.temp_key_table(conn, f"ckp_read_keys_{next(_temp_ids)}", keys)
    # In key order: record positions feed Splink's training sample and every tie-break, so without it the
    # same records in another physical order (a table rebuilt by an incremental run) could resolve differently.
    q = sql.SQL("select {} from {} order by source_system collate \"C\", source_record_id collate \"C\"").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        _restricted(sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)), key_table))
    df = _copy_out(conn, q, columns, arrow=arrow)
    for c in absent:
        df[c] = None
    df["seen_at"] = pd.to_datetime(df["seen_at"], utc=True, errors="coerce", format="ISO8601")
    if "staged_at" in df.columns:
        df["staged_at"] = pd.to_datetime(df["staged_at"], utc=True, errors="coerce", format="ISO8601")
    return _with_identifiers(conn, df, key_table)


def _with_identifiers(conn: psycopg.Connection, candidates: pd.DataFrame,
                      keys: sql.Composable | None = None) -> pd.DataFrame:
    """`candidates` plus one ``id_<kind>`` column per declared identifier kind found in
    intermediate.int_identity_identifiers (the long table: record, kind, value); `keys`: a temp table of the
    record keys read."""
    schema, table = IDENTIFIERS_TABLE
    if not table_exists(conn, f"{schema}.{table}"):
        return candidates
    cols = [*KEY, "identifier_kind", "identifier_value"]
    q = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in cols),
        _restricted(sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)), keys))
    long = _copy_out(conn, q, cols)
    if long.empty:
        return candidates
    wide = long.pivot(index=KEY, columns="identifier_kind", values="identifier_value")
    wide.columns = [f"{IDENTIFIER_PREFIX}{c}" for c in wide.columns]
    out = candidates.merge(wide.reset_index(), on=KEY, how="left")
    for c in wide.columns:
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    log.info("identity: %d identifier value(s) of declared kind(s) %s", len(long),
             ", ".join(sorted(long["identifier_kind"].unique())))
    return out


def read_previous(conn: psycopg.Connection, keys: str | None = None) -> pd.DataFrame:
    """identity.record_clusters with resolved_at, in key order; `keys`: only the records whose keys are in that
    temporary table (the daily run)."""
    cols = RECORD_CLUSTER_COLUMNS + ["resolved_at"]
    q = sql.SQL("select {} from {} order by source_system collate \"C\", "
                "source_record_id collate \"C\"").format(
        sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in cols),
        _restricted(sql.SQL("identity.record_clusters"), None if keys is None else sql.Identifier(keys)))
    # through Arrow, then object columns whose equal values share one str (a customer's records, its id)
    df = _copy_out(conn, q, cols, arrow=True)
    df = pd.DataFrame({c: per_distinct(df[c], list) for c in cols})
    df["match_score"] = pd.to_numeric(df["match_score"])
    df["resolved_at"] = pd.to_datetime(df["resolved_at"], utc=True, errors="coerce", format="ISO8601")
    return df


def read_retired_ids(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("select old_customer_id from identity.customer_id_merges "
                        "union select new_customer_id from identity.customer_id_merges").fetchall()
    return [r[0] for r in rows]


def record_issued_ids(conn: psycopg.Connection, customer_ids: Iterable[str], prefix: str,
                      digits: int) -> str | None:
    """Raise the high-water mark of issued ids to the highest of `customer_ids`; return the mark as an id
    (None when nothing was ever issued). Passed on as a retired id, it keeps every id ever issued from being
    issued again, though its records are gone (identity.issued_ids)."""
    numbers = [n for n in (parse_id(x, prefix) for x in customer_ids) if n is not None]
    row = conn.execute(
        "insert into identity.issued_ids (id_prefix, highest_number) values (%s, %s) "
        "on conflict (id_prefix) do update set highest_number = greatest(identity.issued_ids.highest_number, "
        "excluded.highest_number), updated_at = now() returning highest_number",
        (prefix, max(numbers, default=0))).fetchone()
    return format_id(row[0], prefix, digits) if row[0] else None


def _copy_in(conn: psycopg.Connection, table: str, columns: list[str], frame: pd.DataFrame) -> None:
    """COPY `columns` of `frame` into identity.`table` as CSV in chunks (daily's one frame COPY): a Python tuple per
    row and a missing-value test per cell took minutes for a full run's pairs. NULL is the unquoted empty field; the
    identity tables hold no empty strings (keys, ids, rules, reasons, hashes and explanations never are)."""
    copy_frame(conn, sql.SQL("identity.{}").format(sql.Identifier(table)), frame[columns])


def resolved_at_column(record_clusters: pd.DataFrame, previous: pd.DataFrame | None,
                       refreshed: pd.DataFrame | None, now: dt.datetime) -> pd.Series:
    """resolved_at per record of a new resolution: the previous value when the record kept its customer_id
    and was not re-resolved because it is new or changed (`refreshed`: KEY columns), else `now`.

    A customer that lost a record (moved to another customer without a merge, or gone: deleted at the source,
    unresolved now) has `now` on every record it keeps: its records, and so its golden record, are not what they
    were, and the customer-level models list a customer by its records' resolved_at (int_customers_affected).
    Without it a record split off into a new customer listed only the new one, and the old one's rows kept the
    moved record. `previous` holds every record of each customer it names (a daily run's subset is whole
    customers), so a count per customer tells who lost one."""
    if previous is None or previous.empty:
        return pd.Series([now] * len(record_clusters), index=record_clusters.index, dtype="object")
    m = record_clusters[KEY + ["customer_id"]].merge(
        previous[KEY + ["customer_id", "resolved_at"]].rename(columns={"customer_id": "previous_customer_id"}),
        on=KEY, how="left")
    stayed = m["previous_customer_id"] == m["customer_id"]
    had = previous["customer_id"].value_counts()
    kept = m.loc[stayed, "customer_id"].value_counts().reindex(had.index, fill_value=0)
    lost_a_record = had.index[(kept < had).to_numpy()]
    if len(lost_a_record):
        log.info("identity: %d customer(s) lost a record to another customer or to its removal: their records "
                 "are resolved again", len(lost_a_record))
    keep = stayed & m["resolved_at"].notna() & ~m["customer_id"].isin(lost_a_record)
    if refreshed is not None and len(refreshed):
        keys = pd.MultiIndex.from_frame(refreshed[KEY])
        keep &= ~pd.MultiIndex.from_frame(m[KEY]).isin(keys)
    out = m["resolved_at"].astype("object").where(keep.to_numpy(), now)
    out.index = record_clusters.index
    return out


def write_result(conn: psycopg.Connection, result: ResolutionResult, previous: pd.DataFrame | None = None,
                 refreshed: pd.DataFrame | None = None, *, config: IdentityConfig | None = None,
                 day: daily.DayResult | None = None, read_at: dt.datetime | None = None) -> None:
    """Write a resolution in one transaction (the caller's connection must not be in autocommit).

    `previous` (record_clusters before this run, with resolved_at) and `refreshed` (KEY columns of the
    records resolved as new or changed) keep resolved_at of records whose attribution did not move; without
    them every record gets the run's time.

    A run over all records replaces every table, and with `config` keeps its prepared records for the daily
    runs (identity/daily.py). A daily run (`day`) replaces only its neighbourhood's rows and the junk status of
    the values it decided; the rest stays as it is. `read_at`: when the run read the candidates (the next daily
    run takes what was staged after it; default: now)."""
    with conn.transaction():
        if day is None:
            # first, before any table lock (the full runs commit what they read before writing): the index DDL
            # and ANALYZE of reloading change the tables' catalog rows, as a schema change does. Not on a daily
            # run: its transaction already holds the locks of what it read, and it changes no catalog row
            hold_off_schema_changes(conn)
        now = conn.execute("select now()").fetchone()[0]
        if day is None:
            # the tables' old contents go, their indexes are built once after the load (warehouse.db.reloading)
            with reloading(conn, [f"identity.{t}" for t in FULL_RUN_TABLES]):
                _write_rows(conn, result, previous, refreshed, now)
        else:
            daily.write_day(conn, day, config or load_config(), now)
            _write_rows(conn, result, previous, refreshed, now)
        if len(result.merges):
            _copy_in(conn, "customer_id_merges", ["old_customer_id", "new_customer_id", "merged_at"],
                     result.merges.assign(merged_at=now))
        if day is None and config is not None:
            if result.prepared is not None:
                daily.write_state(conn, result.prepared, config, read_at or now)
            else:  # the Spark backend prepares on its executors: no kept state, daily runs go over all records
                daily.clear_state(conn)


def _write_rows(conn: psycopg.Connection, result: ResolutionResult, previous: pd.DataFrame | None,
                refreshed: pd.DataFrame | None, now: dt.datetime) -> None:
    """COPY a resolution's rows of the per-record tables and its junk values in (write_result)."""
    if result.staged is not None:  # Spark wrote the per-record tables as Parquet (resolved_at decided there)
        result.staged.copy_into(conn, now)
    else:
        rc = result.record_clusters.assign(
            resolved_at=resolved_at_column(result.record_clusters, previous, refreshed, now))
        _copy_in(conn, "record_clusters", RECORD_CLUSTER_COLUMNS + ["resolved_at"], rc)
        # chunk by chunk: each chunk's explanations are built as it is written, never all at once
        for start in range(0, len(result.match_pairs), daily.COPY_CHUNK_ROWS):
            _copy_in(conn, "match_pairs", MATCH_PAIR_COLUMNS,
                     result.explained_match_pairs(start, start + daily.COPY_CHUNK_ROWS))
        _copy_in(conn, "unresolved", UNRESOLVED_COLUMNS, result.unresolved)
    _copy_in(conn, "junk_values", ["identifier_kind", "identifier_value_hash", "distinct_records", "detected_at"],
             result.junk_values.assign(detected_at=now))


def saved_model(conn: psycopg.Connection) -> dict | None:
    """The Splink model of the latest full run (trained on every record), which daily runs score with."""
    row = conn.execute("select splink_model from identity.resolution_runs where mode = 'full' and splink_model "
                       "is not null order by run_id desc limit 1").fetchone()
    return row[0] if row else None


def split_new(candidates: pd.DataFrame, previous: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(new, existing): existing = already in record_clusters and neither seen (source time) nor re-staged
    (staged_at, when the candidates carry it: a late-arriving change has an old seen_at) since it was
    resolved."""
    m = candidates.merge(previous[KEY + ["resolved_at"]], on=KEY, how="left")
    changed = m["seen_at"].notna() & m["resolved_at"].notna() & (m["seen_at"] > m["resolved_at"])
    if "staged_at" in m.columns:
        changed |= m["staged_at"].notna() & m["resolved_at"].notna() & (m["staged_at"] > m["resolved_at"])
    existing = m["resolved_at"].notna().to_numpy() & ~changed.to_numpy()
    return candidates[~existing].reset_index(drop=True), candidates[existing].reset_index(drop=True)


def mode_for(day: dt.date | dt.datetime, config: IdentityConfig | None = None, *, force_full: bool = False,
             last_full_day: dt.date | None = None) -> str:
    """The identity mode of a daily run for `day` (the run's logical date, never the wall clock): ``full``
    when forced, or on the configured weekday (config/identity.yml `full_resolution_weekday`) unless a full
    resolution already ran for that day (`last_full_day`: the warehouse DAG runs whenever data lands, so
    several times a day; one full resolution a week is the point), ``incremental`` otherwise."""
    config = config or load_config()
    if force_full:
        return "full"
    date = day.date() if isinstance(day, dt.datetime) else day
    if date.weekday() in config.full_resolution_weekdays and last_full_day != date:
        return "full"
    return "incremental"


def last_full_day(conn: psycopg.Connection) -> dt.date | None:
    """The latest pipeline day a full resolution ran for (None before the first)."""
    if not table_exists(conn, "identity.resolution_runs"):
        return None
    return conn.execute("select max(run_day) from identity.resolution_runs where mode = 'full'").fetchone()[0]


def decide_mode(conn_url: str, day: dt.date | dt.datetime, config: IdentityConfig | None = None, *,
                force_full: bool = False) -> str:
    """:func:`mode_for` with the last full day read from ``identity.resolution_runs``."""
    with connect(conn_url) as conn:
        return mode_for(day, config, force_full=force_full, last_full_day=last_full_day(conn))


def run(conn_url: str, mode: str = "full", config: IdentityConfig | None = None,
        day: dt.date | dt.datetime | None = None) -> dict:
    """Resolve identities in the warehouse at `conn_url`; returns the stats of the run. The run is recorded
    in ``identity.resolution_runs`` under `day` (the pipeline day; default: today, UTC).

    ``incremental`` resolves the records new or changed since the last run in their neighbourhood only
    (identity/daily.py) when the last full run kept its prepared records under the same configuration and the
    matching runs here (not on Spark); otherwise over all records (:func:`resolve_incremental`). Either way the
    Splink model of the last full run scores; only a full run trains one."""
    if mode not in ("full", "incremental"):
        raise ValueError(f"mode must be 'full' or 'incremental', got {mode!r}")
    config = config or load_config()
    with connect(conn_url) as conn:
        ensure_schema(conn, config)
        conn.commit()
        schema, table = CANDIDATES_TABLE
        if not table_exists(conn, f"{schema}.{table}"):
            raise RuntimeError(f"{schema}.{table} does not exist: run the dbt models before identity resolution")
        saved = saved_model(conn) if mode == "incremental" else None
        through = daily.state_through(conn, config) if mode == "incremental" and config.backend != "spark" else None
        result = None
        if through is not None and (saved is not None or not config.probabilistic.enabled):
            retired = read_retired_ids(conn)
            mark = record_issued_ids(conn, retired, config.id_prefix, config.id_digits)
            retired += [mark] if mark else []
            day_result = daily.resolve_day(conn, config, saved, retired, through, read_candidates,
                                           read_previous, enforce_tombstones)
            if day_result is not None:
                result = day_result.result
                write_result(conn, result, day_result.previous, day_result.refreshed, config=config, day=day_result)
                # the run's figures are the warehouse's, not the neighbourhood's
                customers = conn.execute("select count(distinct customer_id) from identity.record_clusters"
                                         ).fetchone()[0]
                result.stats.update(records=day_result.records, new_records=len(day_result.stored),
                                    neighbourhood_records=day_result.subset_records, customers=customers,
                                    neighbourhood_customers=result.stats["customers"])
            else:
                conn.rollback()
        if result is None and config.backend == "spark":
            result = _resolve_on_spark(conn, mode, config)
        elif result is None:
            result = _resolve_all(conn, mode, config, saved)
        issued = [result.staged.highest_id or ""] if result.staged else result.record_clusters["customer_id"]
        record_issued_ids(conn, issued, config.id_prefix, config.id_digits)
        run_day = day.date() if isinstance(day, dt.datetime) else (day or dt.datetime.now(dt.UTC).date())
        st = result.stats
        run_id = conn.execute(
            "insert into identity.resolution_runs (run_day, mode, records, new_records, customers, seconds, "
            "splink_model) values (%s, %s, %s, %s, %s, %s, %s) returning run_id",
            (run_day, st["mode"], st["records"], st["new_records"], st["customers"], st["seconds"],
             Jsonb(result.model["splink_model"]) if result.model else None)).fetchone()[0]
        if result.model:
            _copy_in(conn, "match_weights", ["run_id", *PARAMETER_COLUMNS],
                     result.model["parameters"].assign(run_id=run_id))
        conn.commit()
    stats = {k: v for k, v in result.stats.items() if k != "oversized_detail"}
    stats["clusters"] = stats["customers"]
    stats["run_id"] = run_id
    log.info("identity: wrote %d record clusters (%d customers), %d match pairs, %d merges, %d unresolved, "
             "%d junk values", stats["resolved_records"], stats["customers"], stats["match_pairs"],
             len(result.merges), stats["unresolved"], len(result.junk_values))
    return stats


def _previous_and_retired(conn: psycopg.Connection, config: IdentityConfig) -> tuple[pd.DataFrame, list[str]]:
    """The previous resolution and every id ever issued and retired (new ids never reuse one)."""
    previous = read_previous(conn)
    return previous, _retired(conn, config, previous["customer_id"])


def _retired(conn: psycopg.Connection, config: IdentityConfig, previous_ids: Iterable[str]) -> list[str]:
    retired = read_retired_ids(conn)
    mark = record_issued_ids(conn, [*previous_ids, *retired], config.id_prefix, config.id_digits)
    return retired + ([mark] if mark else [])


def _highest_id(conn: psycopg.Connection, prefix: str) -> list[str]:
    """The highest customer id in identity.record_clusters (as parse_id reads them), found by the server."""
    row = conn.execute("select customer_id from identity.record_clusters where left(customer_id, %s) = %s "
                       "and substr(customer_id, %s) ~ '^[0-9]+$' order by substr(customer_id, %s)::numeric desc "
                       "limit 1", (len(prefix), prefix, len(prefix) + 1, len(prefix) + 1)).fetchone()
    return [row[0]] if row else []


def _resolve_on_spark(conn: psycopg.Connection, mode: str, config: IdentityConfig) -> ResolutionResult:
    """`backend: spark`: the candidates and the previous resolution are streamed to Parquet in the session's
    scratch directory (:mod:`crm_knowledge.identity.staging`, never whole on the driver), matched and assembled
    as Spark jobs, and the per-record tables Spark writes are streamed into the warehouse with COPY
    (write_result). The session (its JVM) and the scratch directory end with the run, also when it fails."""
    from crm_knowledge.identity.resolve import resolve_staged
    from crm_knowledge.identity.spark_session import ending_session, scratch_dir, spark_session
    from crm_knowledge.identity.staging import stage_candidates, stage_previous

    has_previous = conn.execute("select exists (select 1 from identity.record_clusters)").fetchone()[0]
    retired = _retired(conn, config, _highest_id(conn, config.id_prefix))
    conn.commit()
    incremental = mode == "incremental" and has_previous
    if mode == "incremental" and not incremental:
        log.info("identity: no previous resolution, running in full mode")
    with ending_session():
        spark_session(config.spark)
        staged = stage_candidates(conn, scratch_dir() / "candidates", config, with_previous=has_previous,
                                  new_last=incremental)
        conn.commit()  # the tombstone purge, if any
        if staged.blocked:  # as in process: the previous state as it is after the purge
            retired = _retired(conn, config, _highest_id(conn, config.id_prefix))
            conn.commit()
        previous = stage_previous(conn, scratch_dir() / "previous") if has_previous else None
        conn.commit()
        if incremental:
            log.info("identity: incremental run, %d new or changed records, %d existing",
                     int(staged.is_new.sum()), int((~staged.is_new).sum()))
        result = resolve_staged(staged, previous, config, incremental=incremental, retired_ids=retired)
        write_result(conn, result, config=config)
    return result


def _resolve_all(conn: psycopg.Connection, mode: str, config: IdentityConfig, saved: dict | None
                 ) -> ResolutionResult:
    """In process, a resolution over every record (a full run, or an incremental one without a usable kept
    state), written; it keeps its prepared records for the daily runs."""
    read_at = conn.execute("select now()").fetchone()[0]
    candidates = read_candidates(conn, arrow=True)
    candidates = enforce_tombstones(conn, candidates)  # erased customers never come back
    previous, retired = _previous_and_retired(conn, config)
    conn.commit()
    new = None
    if len(previous):
        new, existing = split_new(candidates, previous)
    if mode == "incremental" and new is not None:
        log.info("identity: incremental run over all records, %d new or changed records, %d existing", len(new),
                 len(existing))
        result = resolve_incremental(new.drop(columns=["staged_at"], errors="ignore"),
                                     existing.drop(columns=["staged_at"], errors="ignore"), previous, config,
                                     retired_ids=retired, saved_model=saved)
    else:
        if mode == "incremental":
            log.info("identity: no previous resolution, running in full mode")
        result = resolve(candidates.drop(columns=["staged_at"], errors="ignore"),
                         previous if len(previous) else None, config, retired_ids=retired)
    write_result(conn, result, previous, None if new is None else new[KEY], config=config, read_at=read_at)
    return result
