"""The daily identity run: resolve the day's new and changed records in their neighbourhood only.

A full (weekly) run resolves every record and keeps what it learned in the warehouse: every record's prepared
comparison columns and blocking keys (``intermediate.identity_prepared_records``), every identifier value
(``intermediate.identity_prepared_identifiers``) and the trained Splink model (``identity.resolution_runs``).
A daily run then reads and prepares only the *seeds* (records staged or seen since the last resolution, new
records, records gone from the candidates) and finds by index what can be decided differently because of them:

1. the records sharing an identifier value (or customer_ref) with a seed, old or new version: everything that
   decides a seed value's junk status and deterministic edges;
2. the eligible records sharing a blocking-rule key with a seed, scored against the seeds with the saved model
   (no training) and term frequencies computed in SQL over every eligible record; those scoring above the
   threshold join;
3. every record of the customers those records belong to (stable ids weigh whole customers).

That subset is matched with the same functions as the full run (:func:`crm_knowledge.identity.resolve.assemble`),
existing records held together by their previous clusters, and only its rows are written back. Why the answer
is the one the incremental run over all records gives (``resolve_incremental`` with the same model): an edge
reaching a seed ends in the subset; an edge between two existing records whose value no seed carries is as it
was at the last run, inside one customer (non-seed values keep their stored junk status, and such edges across
two previous customers, which only a partial group could produce, are left out); whole customers are in the
subset, so owners, merges and fresh ids (numbered in the same record order: existing records, then new ones,
each in key order) come out the same. Records outside the subset keep their rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from crm_knowledge.identity.config import IdentityConfig, identifier_column
from crm_knowledge.identity.deterministic import deterministic_edges
from crm_knowledge.identity.junk import JUNK_COLUMNS, detect_junk, hash_values, remove_junk
from crm_knowledge.identity.prepare import KEY, prepare
from crm_knowledge.identity.probabilistic import (
    MODEL_COLUMNS,
    ProbabilisticModel,
    eligible,
    empty_pairs,
    guarded_pairs,
    model_frame,
    new_record_pairs,
    saved_optional_columns,
    scored_with,
)
from crm_knowledge.identity.resolve import (
    Matching,
    ResolutionResult,
    _previous_edges,
    assemble,
    link_clusters,
    record_flags,
    stored_columns,
)
from crm_knowledge.warehouse.bootstrap import SQL_DIR
from crm_knowledge.warehouse.db import copy_frame, reloading

log = logging.getLogger(__name__)

SQL_FILE = SQL_DIR / "06_identity_prepared.sql"
PREPARED = "intermediate.identity_prepared_records"
IDENTIFIERS = "intermediate.identity_prepared_identifiers"
STATE = "intermediate.identity_prepared_state"
RECORD_COLUMNS = [*KEY, *MODEL_COLUMNS[1:], "is_eligible"]
#: the identifier kind under which a record's customer_ref key is kept
CUSTOMER_REF = "customer_ref"
#: a day changing more than this share of the records is resolved over all of them (the neighbourhood would be
#: most of the warehouse, read piece by piece)
MAX_SEED_SHARE = 0.3
#: rows per CSV chunk when the kept state is copied in
COPY_CHUNK_ROWS = 200_000


# --- state: what a full run keeps ------------------------------------------------------------------------------


def _canonical(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


#: settings of how resolution runs, not of what it decides (the engine's resources, where Spark runs, Splink's
#: logging): changing one keeps the prepared state valid
RUNTIME_SETTINGS = {"probabilistic": ("duckdb_memory_limit", "splink_log_level"), "spark": None}


def config_fingerprint(config: IdentityConfig) -> str:
    """SHA-256 of the identity configuration (independent of set order and hash seeds): the prepared rows
    are valid for the configuration that prepared them only. The runtime settings (:data:`RUNTIME_SETTINGS`)
    are left out: a new memory limit must not send the next daily run over every record."""
    canonical = _canonical(config)
    for section, keys in RUNTIME_SETTINGS.items():
        if keys is None:
            canonical.pop(section, None)
        else:
            for key in keys:
                canonical.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def blocking_columns(config: IdentityConfig) -> list[tuple[str, ...]]:
    """The columns of each prediction blocking rule (a SQL rule: its ``l.<column>`` in order), deduplicated."""
    out: list[tuple[str, ...]] = []
    for r in config.probabilistic.blocking_rules:
        cols = tuple(dict.fromkeys(re.findall(r"\bl\.(\w+)", r.sql))) if r.sql else tuple(r.columns)
        if cols and cols not in out:
            out.append(cols)
    return out


def ensure_state_schema(conn: psycopg.Connection, config: IdentityConfig) -> None:
    """The prepared-state tables (06_identity_prepared.sql) and an index per blocking rule (eligible records
    only: only they are scored). The caller holds the schema-change lock and commits."""
    conn.execute(SQL_FILE.read_text(encoding="utf-8"))
    for cols in blocking_columns(config):
        name = "identity_prepared_block_" + hashlib.sha1(",".join(cols).encode()).hexdigest()[:12]
        conn.execute(sql.SQL("create index if not exists {} on intermediate.identity_prepared_records ({}) "
                             "where is_eligible").format(sql.Identifier(name),
                                                         sql.SQL(", ").join(map(sql.Identifier, cols))))


def state_through(conn: psycopg.Connection, config: IdentityConfig) -> dt.datetime | None:
    """When resolution last wrote, if the kept state was prepared under this configuration; else None."""
    row = conn.execute(f"select config_sha256, resolved_through from {STATE}").fetchone()  # noqa: S608
    if row is None or row[0] != config_fingerprint(config):
        return None
    return row[1]


def record_rows(stored: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """identity_prepared_records rows of prepared records (:func:`stored_columns`)."""
    out = stored[[*KEY, *MODEL_COLUMNS[1:]]].copy()
    out["is_eligible"] = eligible(stored, config).to_numpy()
    return out


def identifier_rows(stored: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """identity_prepared_identifiers rows (long: record, kind, value) of prepared records."""
    parts = []
    for kind, col in [*((k, identifier_column(k)) for k in config.kinds), (CUSTOMER_REF, "cref_key")]:
        if col not in stored.columns:
            continue
        sub = stored.loc[stored[col].notna(), [*KEY, col]]
        parts.append(pd.DataFrame({"source_system": sub["source_system"].to_numpy(),
                                   "source_record_id": sub["source_record_id"].to_numpy(),
                                   "identifier_kind": kind, "identifier_value": sub[col].to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=[*KEY, "identifier_kind", "identifier_value"])
    return pd.concat(parts, ignore_index=True)


def write_state(conn: psycopg.Connection, stored: pd.DataFrame, config: IdentityConfig, now: dt.datetime) -> None:
    """Replace the whole kept state with `stored` (a full run's prepared records), inside the caller's
    transaction (the one writing the resolution)."""
    started = time.monotonic()
    with reloading(conn, [PREPARED, IDENTIFIERS]):  # the indexes (one per blocking rule) built once after the load
        # chunk by chunk: the rows are built per chunk, not as second copies of millions of records
        for table, rows in ((PREPARED, record_rows), (IDENTIFIERS, identifier_rows)):
            for start in range(0, len(stored), COPY_CHUNK_ROWS):
                copy_frame(conn, table, rows(stored.iloc[start:start + COPY_CHUNK_ROWS], config))
    _mark(conn, config, now)
    log.info("identity: kept the prepared state of %d record(s) for daily runs (%.1f s)", len(stored),
             time.monotonic() - started)


def clear_state(conn: psycopg.Connection) -> None:
    """Forget the kept state (a run over all records that did not prepare here): the next daily run goes over all
    records."""
    conn.execute(f"truncate {PREPARED}, {IDENTIFIERS}, {STATE}")


def _mark(conn: psycopg.Connection, config: IdentityConfig, now: dt.datetime) -> None:
    conn.execute(f"insert into {STATE} (singleton, config_sha256, resolved_through, prepared_at) "  # noqa: S608
                 "values (true, %s, %s, now()) on conflict (singleton) do update set "
                 "config_sha256 = excluded.config_sha256, resolved_through = excluded.resolved_through, "
                 "prepared_at = excluded.prepared_at", (config_fingerprint(config), now))


# --- the daily run ----------------------------------------------------------------------------------------------


def temp_key_table(conn: psycopg.Connection, name: str, keys: Iterable[tuple[str, str]]) -> sql.Identifier:
    """A temporary table `name` of record keys (dropped at commit, analysed), for reads and deletes restricted
    to them; the daily run and identity.store's restricted reads share it."""
    conn.execute(sql.SQL("create temp table {} (source_system text, source_record_id text, "
                         "primary key (source_system, source_record_id)) on commit drop").format(sql.Identifier(name)))
    with conn.cursor() as cur, cur.copy(sql.SQL("copy {} from stdin").format(sql.Identifier(name))) as copy:
        for k in dict.fromkeys(keys):
            copy.write_row(k)
    conn.execute(sql.SQL("analyze {}").format(sql.Identifier(name)))
    return sql.Identifier(name)


def _keys(rows) -> list[tuple[str, str]]:
    return [(s, r) for s, r in rows]


def find_seeds(conn: psycopg.Connection, candidates_table: str, through: dt.datetime,
               has_staged_at: bool) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(seeds, gone): records to prepare again (staged or seen since they were resolved, or not prepared yet)
    and records gone from the candidates since (erased, deleted at the source)."""
    changed_since = "c.seen_at > %(t)s" + (" or c.staged_at > %(t)s" if has_staged_at else "")
    changed_vs_rc = "c.seen_at > rc.resolved_at" + (" or c.staged_at > rc.resolved_at" if has_staged_at else "")
    changed = conn.execute(
        f"select c.source_system, c.source_record_id from {candidates_table} c "  # noqa: S608
        f"left join identity.record_clusters rc on rc.source_system = c.source_system "
        f"and rc.source_record_id = c.source_record_id "
        f"where ({changed_since}) and (rc.source_system is null or {changed_vs_rc})", {"t": through}).fetchall()
    both = conn.execute(
        f"select c.source_system, c.source_record_id, p.source_system, p.source_record_id "  # noqa: S608
        f"from {candidates_table} c full join {PREPARED} p on p.source_system = c.source_system "
        f"and p.source_record_id = c.source_record_id "
        f"where p.source_system is null or c.source_system is null").fetchall()
    new = [(r[0], r[1]) for r in both if r[0] is not None]
    gone = [(r[2], r[3]) for r in both if r[0] is None]
    return list(dict.fromkeys(_keys(changed) + new)), gone


def _rule_condition(rule, left: str, right: str) -> str:
    cond = rule.describe()
    return re.sub(r"\b([lr])\.", lambda m: f"{left if m.group(1) == 'l' else right}.", cond)


def blocking_neighbours(conn: psycopg.Connection, config: IdentityConfig) -> list[tuple[str, str]]:
    """Eligible records (not seeds) sharing a prediction blocking key with an eligible seed (temp table
    ckp_day_rows): the only existing records a seed can be scored against."""
    keys: set[tuple[str, str]] = set()
    for rule in config.probabilistic.blocking_rules:
        # an equality rule is symmetric; a SQL rule (swapped names) may not be: both directions
        conds = [_rule_condition(rule, "p", "s")] + ([_rule_condition(rule, "s", "p")] if rule.sql else [])
        for cond in conds:
            rows = conn.execute(
                f"select distinct p.source_system, p.source_record_id from {PREPARED} p "  # noqa: S608
                f"join ckp_day_rows s on {cond} where p.is_eligible and not exists (select 1 from ckp_day_seeds d "
                f"where d.source_system = p.source_system and d.source_record_id = p.source_record_id)").fetchall()
            keys.update(_keys(rows))
    return sorted(keys)


def term_frequencies(conn: psycopg.Connection, columns: list[str], frames: list[pd.DataFrame]
                     ) -> dict[str, pd.DataFrame]:
    """Splink's term-frequency tables (value, share among the eligible records carrying the column) computed
    in SQL over every eligible record, for the values in `frames` (what is scored)."""
    out = {}
    for c in columns:
        values = sorted({v for f in frames for v in f[c].dropna().tolist()})
        q = sql.SQL("select {c}, count(*)::float8 / (select count({c}) from {t} where is_eligible) "
                    "from {t} where is_eligible and {c} = any(%s) group by {c}").format(
            c=sql.Identifier(c), t=sql.SQL(PREPARED))
        rows = conn.execute(q, (values,)).fetchall() if values else []
        out[c] = pd.DataFrame(rows, columns=[c, f"tf_{c}"]).astype({c: "object", f"tf_{c}": "float64"})
    return out


def _read_prepared_rows(conn: psycopg.Connection, temp: str) -> pd.DataFrame:
    cols = RECORD_COLUMNS
    q = sql.SQL("select {} from {} p join {} k using (source_system, source_record_id)").format(
        sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in cols), sql.SQL(PREPARED),
        sql.Identifier(temp))
    rows = conn.execute(q).fetchall()
    return pd.DataFrame(rows, columns=cols, dtype=object)


def _read_identifiers(conn: psycopg.Connection, temp: str) -> pd.DataFrame:
    q = sql.SQL("select i.source_system, i.source_record_id, i.identifier_kind, i.identifier_value from {} i "
                "join {} k using (source_system, source_record_id)").format(sql.SQL(IDENTIFIERS),
                                                                            sql.Identifier(temp))
    return pd.DataFrame(conn.execute(q).fetchall(), columns=[*KEY, "identifier_kind", "identifier_value"])


def stored_junk(conn: psycopg.Connection, values: pd.DataFrame) -> pd.DataFrame:
    """Which of `values` (identifier_kind, identifier_value) the last resolution found junk
    (identity.junk_values holds keyed pseudonyms): junk's frame (detect_junk's columns)."""
    if values.empty:
        return pd.DataFrame(columns=["identifier_kind", "identifier_value", *JUNK_COLUMNS[1:]])
    v = values.drop_duplicates().copy()
    v["identifier_value_hash"] = hash_values(v["identifier_kind"], v["identifier_value"])
    rows = conn.execute("select identifier_kind, identifier_value_hash, distinct_records from identity.junk_values "
                        "where identifier_value_hash = any(%s)", (list(v["identifier_value_hash"]),)).fetchall()
    known = pd.DataFrame(rows, columns=["identifier_kind", "identifier_value_hash", "distinct_records"])
    out = v.merge(known, on=["identifier_kind", "identifier_value_hash"], how="inner")
    out["reason"] = "stored"
    return out[["identifier_kind", "identifier_value", "identifier_value_hash", "distinct_records", "reason"]]


def _null_junk(frame: pd.DataFrame, junk: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """`frame` with junk values of identifier columns (column -> kind) nulled."""
    out = frame.copy()
    for col, kind in columns.items():
        if col in out.columns:
            bad = set(junk.loc[junk["identifier_kind"] == kind, "identifier_value"])
            if bad:
                out.loc[out[col].isin(bad), col] = None
    return out


@dataclasses.dataclass
class DayResult:
    result: ResolutionResult
    previous: pd.DataFrame        # record_clusters rows (with resolved_at) of the subset before the run
    refreshed: pd.DataFrame       # KEY of the records resolved as new or changed
    subset_keys: list[tuple[str, str]]   # every record whose rows the run rewrites (subset and gone records)
    seed_values: pd.DataFrame     # identifier_kind, identifier_value of the seeds (old and new)
    stored: pd.DataFrame          # prepared rows of the seeds (stored_columns)
    records: int                  # all records after the run
    subset_records: int


def resolve_day(conn: psycopg.Connection, config: IdentityConfig, saved: dict | None, retired_ids: list[str],
                through: dt.datetime, read_candidates, read_previous, enforce_tombstones) -> DayResult | None:
    """Resolve the day's seeds in their neighbourhood (module docstring), in the caller's open transaction: the
    seeds' prepared rows are replaced at once (what the neighbourhood and the term frequencies are read from);
    the caller writes the result (:func:`write_day`) and commits, or rolls everything back. None when the day is
    too big for it (MAX_SEED_SHARE): nothing was written then.

    `read_candidates(conn, keys)`, `read_previous(conn, temp_table)`, `enforce_tombstones(conn, frame)`: the
    store's readers (crm_knowledge.identity.store), restricted to record keys."""
    from crm_knowledge.identity.store import CANDIDATES_TABLE, has_staged_at

    t0 = time.monotonic()
    phases: dict[str, float] = {}
    lap = [t0]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - lap[0], 2)
        lap[0] = now

    seeds, gone = find_seeds(conn, ".".join(CANDIDATES_TABLE), through, has_staged_at(conn))
    total = conn.execute(f"select count(*) from {PREPARED}").fetchone()[0]  # noqa: S608
    if len(seeds) + len(gone) > MAX_SEED_SHARE * max(total, 1) and total > 100:
        log.info("identity: %d of %d records new, changed or gone: resolving over all records",
                 len(seeds) + len(gone), total)
        return None
    seed_cand = read_candidates(conn, seeds)
    seed_cand = enforce_tombstones(conn, seed_cand)
    present = set(zip(seed_cand["source_system"], seed_cand["source_record_id"], strict=True))
    gone = gone + [k for k in seeds if k not in present]
    seeds = [k for k in seeds if k in present]
    seed_set = set(seeds)  # built once: a test per record against set(seeds) rebuilt it per record (minutes at 1M)
    phase("find_and_read_seeds")
    prepared_seeds = prepare(seed_cand, config)
    stored = prepared_seeds[stored_columns(config)]
    phase("prepare_seeds")

    # the seed values: their identifiers as kept (before today) and as prepared today; then today's rows
    # replace theirs, so what follows reads the state as it is after the day
    temp_key_table(conn, "ckp_day_seeds", [*seeds, *gone])
    old_ids = _read_identifiers(conn, "ckp_day_seeds")
    new_ids = identifier_rows(stored, config)
    seed_values = (pd.concat([old_ids, new_ids], ignore_index=True)[["identifier_kind", "identifier_value"]]
                   .drop_duplicates().reset_index(drop=True))
    for t in (PREPARED, IDENTIFIERS):
        conn.execute(f"delete from {t} t using ckp_day_seeds k where t.source_system = k.source_system "  # noqa: S608
                     "and t.source_record_id = k.source_record_id")
    seed_rows = record_rows(stored, config)
    copy_frame(conn, PREPARED, seed_rows)
    copy_frame(conn, IDENTIFIERS, new_ids)
    total_after = conn.execute(f"select count(*) from {PREPARED}").fetchone()[0]  # noqa: S608
    conn.execute("create temp table ckp_day_values (identifier_kind text, identifier_value text) on commit drop")
    with conn.cursor() as cur, cur.copy("copy ckp_day_values from stdin") as copy:
        for row in seed_values.itertuples(index=False, name=None):
            copy.write_row(row)
    conn.execute("analyze ckp_day_values")
    phase("write_seed_state")

    # 1. every record carrying a seed value (the seed values' whole groups)
    by_value = _keys(conn.execute(
        f"select distinct i.source_system, i.source_record_id from {IDENTIFIERS} i "  # noqa: S608
        "join ckp_day_values v using (identifier_kind, identifier_value)").fetchall())
    group_keys = sorted(set(by_value) - seed_set)
    group_cand = read_candidates(conn, group_keys)
    first = pd.concat([seed_cand, group_cand], ignore_index=True) if len(group_cand) else seed_cand
    resolved = _in_record_clusters(conn, group_keys)
    first = _run_order(first, seed_set, resolved)
    first_prepared = prepare(first, config)
    seed_junk = _seed_junk(first_prepared, config, seed_values)
    phase("identifier_neighbours")

    # 2. eligible records sharing a blocking key with an eligible seed, scored with the saved model
    junk_cols = {identifier_column(k): k for k in config.kinds}
    n_new = int(seed_rows["is_eligible"].astype(bool).sum())
    prob_info: dict = {"eligible_new_records": n_new, "trained": False,
                       "training_steps": ["saved model"] if saved else []}
    key_pairs: list[tuple[tuple[str, str], tuple[str, str], int]] = []
    pairs = empty_pairs()
    partners: list[tuple[str, str]] = []
    if config.probabilistic.enabled and saved is not None and n_new:
        conn.execute(f"create temp table ckp_day_rows on commit drop as select * from {PREPARED} "  # noqa: S608
                     "limit 0")
        copy_frame(conn, "ckp_day_rows", seed_rows[seed_rows["is_eligible"].astype(bool)])
        conn.execute("analyze ckp_day_rows")
        temp_key_table(conn, "ckp_day_block", blocking_neighbours(conn, config))
        phase("blocking_neighbours_found")
        nb = _read_prepared_rows(conn, "ckp_day_block")
        nb_ids = _read_identifiers(conn, "ckp_day_block")
        optional = saved_optional_columns(saved)
        nb = _with_identifier_columns(nb, nb_ids, ["national_id", *optional], junk_cols)
        nb_values = nb_ids[["identifier_kind", "identifier_value"]].drop_duplicates()
        nb_values = nb_values.merge(seed_values, how="left", indicator=True)
        nb_values = nb_values.loc[nb_values["_merge"] == "left_only", ["identifier_kind", "identifier_value"]]
        nb = _null_junk(nb, pd.concat([seed_junk, stored_junk(conn, nb_values)], ignore_index=True), junk_cols)
        seeds_clean = remove_junk(prepared_seeds, seed_junk)
        seeds_elig = seeds_clean[eligible(seeds_clean, config).to_numpy()]
        both = pd.concat([seeds_elig.drop(columns="rid"), nb[nb["is_eligible"].astype(bool)]], ignore_index=True)
        both["rid"] = np.arange(len(both), dtype=np.int64)
        new_frame = model_frame(both.iloc[:n_new], optional)
        model = ProbabilisticModel(new_frame, config, optional, saved=saved)
        phase("blocking_neighbours_read")

        def predict() -> pd.DataFrame:
            model.register_tf(term_frequencies(conn, model._tf_columns(), [both]))
            phase("term_frequencies")
            return new_record_pairs(model, new_frame, model_frame(both.iloc[n_new:], optional))

        found = scored_with(model, prob_info, predict)
        if len(found):
            pairs = guarded_pairs(found, both, config, prob_info["labels"])
        keys = list(zip(both["source_system"], both["source_record_id"], strict=True))
        key_pairs = [(keys[a], keys[b], i) for i, (a, b) in enumerate(zip(pairs["rid_l"], pairs["rid_r"],
                                                                           strict=True))]
        partners = sorted({k for a, b, _ in key_pairs for k in (a, b)} - seed_set)
        prob_info["eligible_records"] = len(both)
        phase("blocking_neighbours_scored")

    # 3. whole customers of everything reached
    reached = sorted(seed_set | set(gone) | set(by_value) | set(partners))
    temp_key_table(conn, "ckp_day_reached", reached)
    members = _keys(conn.execute(
        "select rc.source_system, rc.source_record_id from identity.record_clusters rc where rc.customer_id in "
        "(select r.customer_id from identity.record_clusters r join ckp_day_reached k "
        "using (source_system, source_record_id))").fetchall())
    written = sorted(set(reached) | set(members))
    temp_key_table(conn, "ckp_day_subset", written)
    previous = read_previous(conn, "ckp_day_subset")
    known = set(zip(previous["source_system"], previous["source_record_id"], strict=True))
    rest = sorted(set(written) - set(gone) - seed_set - set(group_keys))
    rest_cand = read_candidates(conn, rest)
    phase("customers_read")
    subset = pd.concat([first, rest_cand], ignore_index=True) if len(rest_cand) else first
    subset = _run_order(subset, seed_set, known)
    keys_of = list(zip(subset["source_system"], subset["source_record_id"], strict=True))
    is_new = np.array([k in seed_set or k not in known for k in keys_of], dtype=bool)
    result = _match_subset(conn, subset, is_new, previous, config, seed_values, key_pairs, pairs, prob_info,
                           retired_ids, t0)
    phase("matched")
    result.stats["daily_phases"] = phases
    refreshed = subset.loc[is_new, KEY].reset_index(drop=True)
    log.info("identity: daily run, %d new or changed record(s), %d gone; matched a neighbourhood of %d record(s) "
             "(%d carrying a seed's identifier, %d scored partners) of %d", len(seeds), len(gone), len(subset),
             len(by_value), len(partners), total_after)
    log.info("identity: daily run phases (s): %s", phases)
    return DayResult(result, previous, refreshed, written, seed_values, stored, total_after, len(subset))


def _in_record_clusters(conn: psycopg.Connection, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    temp_key_table(conn, "ckp_day_group", keys)
    rows = conn.execute("select rc.source_system, rc.source_record_id from identity.record_clusters rc "
                        "join ckp_day_group k using (source_system, source_record_id)").fetchall()
    return set(_keys(rows))


def _run_order(frame: pd.DataFrame, seeds: set[tuple[str, str]], resolved: set[tuple[str, str]]) -> pd.DataFrame:
    """`frame` in the record order of the incremental run over all records: existing records (resolved before
    and not seeds), then new ones, each in key order (byte order, as read_candidates reads)."""
    keys = list(zip(frame["source_system"], frame["source_record_id"], strict=True))
    order = sorted(range(len(keys)), key=lambda i: (keys[i] in seeds or keys[i] not in resolved,
                                                    keys[i][0].encode(), keys[i][1].encode()))
    return frame.iloc[order].reset_index(drop=True)


def _with_identifier_columns(frame: pd.DataFrame, ids: pd.DataFrame, columns: list[str],
                             kinds: dict[str, str]) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        kind = kinds.get(col, col)
        sub = ids.loc[ids["identifier_kind"] == kind, [*KEY, "identifier_value"]].rename(
            columns={"identifier_value": col})
        out = out.merge(sub, on=KEY, how="left")
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _seed_junk(prepared: pd.DataFrame, config: IdentityConfig, seed_values: pd.DataFrame) -> pd.DataFrame:
    """Junk among the seed values, detected over everyone carrying them (`prepared` holds their whole groups)."""
    junk = detect_junk(prepared, config)
    if junk.empty:
        return junk
    return junk.merge(seed_values, on=["identifier_kind", "identifier_value"], how="inner")


def _match_subset(conn, subset: pd.DataFrame, is_new: np.ndarray, previous: pd.DataFrame, config: IdentityConfig,
                  seed_values: pd.DataFrame, key_pairs, pairs: pd.DataFrame, prob_info: dict,
                  retired_ids: list[str], t0: float) -> ResolutionResult:
    prepared = prepare(subset, config)
    rid_of = {k: i for i, k in enumerate(zip(prepared["source_system"], prepared["source_record_id"], strict=True))}
    # junk: the seed values' status decided today over their whole groups, every other value's as stored
    seed_junk = _seed_junk(prepared, config, seed_values)
    long = identifier_rows(prepared, config)[["identifier_kind", "identifier_value"]].drop_duplicates()
    other = long.merge(seed_values, how="left", indicator=True)
    other = other.loc[other["_merge"] == "left_only", ["identifier_kind", "identifier_value"]]
    junk = pd.concat([seed_junk, stored_junk(conn, other)], ignore_index=True)
    clean = remove_junk(prepared, junk)
    det = deterministic_edges(clean, config)
    det = _drop_stale_edges(det, clean, is_new, previous, seed_values, config)
    if len(key_pairs):
        idx = [i for _, _, i in key_pairs]
        prob = pairs.iloc[idx].reset_index(drop=True)
        lo = np.array([rid_of[a] for a, _, _ in key_pairs], dtype=np.int64)
        hi = np.array([rid_of[b] for _, b, _ in key_pairs], dtype=np.int64)
        prob["rid_l"], prob["rid_r"] = np.minimum(lo, hi), np.maximum(lo, hi)
        prob = prob.sort_values(["rid_l", "rid_r"]).reset_index(drop=True)
    else:
        prob = empty_pairs()
    extra = _previous_edges(clean, is_new, previous)
    prob, cl = link_clusters(clean, det, prob, extra, config)
    model, labels = prob_info.pop("model", None), prob_info.pop("labels", None)
    m = Matching(record_flags(clean, config), junk, det, prob, prob_info, model, extra, cl, pair_labels=labels)
    result = assemble(m, is_new, previous, config, retired_ids, t0)
    # only the seed values' junk status was decided today; the rest stays as stored
    result.junk_values = seed_junk[JUNK_COLUMNS].reset_index(drop=True)
    return result


def _drop_stale_edges(det: pd.DataFrame, clean: pd.DataFrame, is_new: np.ndarray, previous: pd.DataFrame,
                      seed_values: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """Deterministic edges between two existing records of different previous customers on a value no seed
    carries: the subset holds only part of that value's group, and over the whole group the last run (whose
    decision on it stands, nothing about it changed) kept those records apart."""
    if det.empty:
        return det
    prev = previous.set_index(KEY)["customer_id"]
    cust = prev.reindex(pd.MultiIndex.from_frame(clean[KEY])).to_numpy()
    lo, hi = det["rid_l"].to_numpy(), det["rid_r"].to_numpy()
    suspect = ~is_new[lo] & ~is_new[hi] & (cust[lo] != cust[hi])
    if not suspect.any():
        return det
    seeded = set(zip(seed_values["identifier_kind"], seed_values["identifier_value"], strict=True))
    cols = {k: identifier_column(k) for k in config.kinds}
    cols["customer_ref"] = "cref_key"
    keep = np.ones(len(det), dtype=bool)
    for i in np.flatnonzero(suspect):
        kind = det["match_rule"].iat[i]
        value = clean[cols[kind]].iat[int(lo[i])]
        keep[i] = (kind, value) in seeded
    return det[keep].reset_index(drop=True)


def write_day(conn: psycopg.Connection, day: DayResult, config: IdentityConfig, now: dt.datetime) -> None:
    """Clear what a daily run rewrites: the subset's (and gone records') record_clusters, unresolved and match
    pairs rows, the seed values' junk rows; and mark the kept state as resolved through `now`. Inside the
    caller's transaction, which then copies the result in (identity.store.write_result)."""
    conn.execute(sql.SQL("create temp table ckp_day_written (source_system text, source_record_id text) "
                         "on commit drop"))
    with conn.cursor() as cur, cur.copy("copy ckp_day_written from stdin") as copy:
        for k in day.subset_keys:
            copy.write_row(k)
    conn.execute("analyze ckp_day_written")
    for t in ("record_clusters", "unresolved"):
        conn.execute(sql.SQL("delete from identity.{} t using ckp_day_written k where t.source_system = "
                             "k.source_system and t.source_record_id = k.source_record_id").format(
            sql.Identifier(t)))
    for side in ("l", "r"):
        conn.execute(sql.SQL("delete from identity.match_pairs t using ckp_day_written k where {} = "
                             "k.source_system and {} = k.source_record_id").format(
            sql.Identifier(f"source_system_{side}"), sql.Identifier(f"source_record_id_{side}")))
    kept = day.seed_values[day.seed_values["identifier_kind"] != CUSTOMER_REF]
    hashes = hash_values(kept["identifier_kind"], kept["identifier_value"])
    conn.execute("delete from identity.junk_values where identifier_value_hash = any(%s)", (hashes,))
    _mark(conn, config, now)
