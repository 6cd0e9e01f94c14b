"""Erasure tombstones: an erased customer's records never come back.

An erasure (privacy/erasure.py) writes the keyed pseudonyms of every identifier and name their records
carried to ``identity.erasure_tombstones`` (no personal data). Identity resolution (identity/store.py) calls
:func:`enforce_tombstones` on every input it reads: records carrying a tombstoned identifier (re-delivered
or old source files) are dropped from resolution, purged from the warehouse (privacy/purge.py) and removed
from the archived files they arrived in.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable

import pandas as pd
import psycopg

from crm_knowledge.identity.config import IdentifierKind, load_config
from crm_knowledge.privacy import erasure_files, lookup, purge
from crm_knowledge.privacy.pseudonym import load_key, pseudonymize
from crm_knowledge.settings import get_settings
from crm_knowledge.warehouse.db import table_exists

log = logging.getLogger(__name__)


def tombstone_rows(match: lookup.Match, key: bytes | None = None) -> list[tuple[str, str]]:
    """(kind, pseudonym) for every identifier and name the customer's records carried."""
    rows = set()
    for kind, values in match.values.items():
        rows |= {(kind, pseudonymize(v, kind, key)) for v in values}
    for kind, value in match.identifiers.items():
        rows.add((kind, pseudonymize(value, kind, key)))
    rows |= {("name", pseudonymize(n, "name", key)) for n in match.names if n.strip()}
    return sorted(rows)


def write_tombstones(conn: psycopg.Connection, rows: list[tuple[str, str]], req_id: str, day: dt.date) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into identity.erasure_tombstones (identifier_kind, pseudonym, request_id, erased_on) "
            "values (%s, %s, %s, %s) on conflict do nothing", [(k, p, req_id, day) for k, p in rows])
    return len(rows)


def load_tombstones(conn: psycopg.Connection) -> dict[str, set[str]]:
    if not table_exists(conn, "identity.erasure_tombstones"):
        return {}
    out: dict[str, set[str]] = {}
    for kind, pseudonym in conn.execute("select identifier_kind, pseudonym from identity.erasure_tombstones"):
        out.setdefault(kind, set()).add(pseudonym)
    return out


def blocked_mask(frame: pd.DataFrame, tombstones: dict[str, set[str]], key: bytes | None = None,
                 declared: Iterable[IdentifierKind] = ()) -> pd.Series:
    """Which rows of an identity-candidates frame carry an erased customer's identifiers.

    Blocked: a tombstoned email or national ID, or a tombstoned value of a `declared` identifier kind
    (column ``id_<kind>``, as received: normalised as the kind says); or a tombstoned phone when the
    record's name is tombstoned too or it has none (families share phones: a relative's record must
    survive). Each distinct value is pseudonymised once.
    """
    key = key or load_key()
    false = pd.Series(False, index=frame.index)

    def hits(values: pd.Series | None, kind: str, normalise: Callable[[str], str | None] | None = None) -> pd.Series:
        wanted = tombstones.get(kind) or set()
        if not wanted or values is None:
            return false
        text = values.where(values.notna(), "").astype(str).str.strip()
        as_compared = {v: normalise(v) if normalise else v for v in text.unique() if v}
        blocked = {v for v, n in as_compared.items() if n and pseudonymize(n, kind, key) in wanted}
        return text.isin(blocked) if blocked else false

    names = candidate_names(frame)
    phone = hits(frame.get("phone_e164"), "phone")
    by_name = hits(names, "name") | (names == "")
    out = hits(frame.get("email_norm"), "email") | hits(frame.get("national_id_valid"), "national_id") | (
        phone & by_name)
    for kind in declared:
        out |= hits(frame.get(kind.column), kind.name, kind.normalize_value)
    return out


def candidate_names(frame: pd.DataFrame) -> pd.Series:
    """The record's name as tombstones hold it: the full name, else "first last" (normalised forms)."""

    def col(name: str) -> pd.Series:
        if name not in frame:
            return pd.Series("", index=frame.index, dtype=object)
        values = frame[name]
        return values.where(values.notna(), "").astype(str).str.strip()

    full = col("full_name_norm")
    first_last = (col("first_name_norm") + " " + col("last_name_norm")).str.strip()
    return full.where(full != "", first_last)


def enforce_tombstones(conn: psycopg.Connection, candidates: pd.DataFrame) -> pd.DataFrame:
    """Identity resolution's guard: drop (and purge from raw and staging) records of erased customers.

    Called by identity/store.py on the candidates it read. Cheap when nobody was erased (one count).
    """
    tombstones = load_tombstones(conn)
    if not tombstones or candidates.empty:
        return candidates
    declared = load_config().declared_identifiers
    blocked = blocked_mask(candidates, tombstones, declared=declared)
    if not blocked.any():
        return candidates
    purge_blocked(conn, candidates.loc[blocked], declared)
    return candidates.loc[~blocked].reset_index(drop=True)


def purge_blocked(conn: psycopg.Connection, blocked: pd.DataFrame, declared: Iterable[IdentifierKind] = ()) -> int:
    """Purge the candidate rows `blocked` (found by :func:`blocked_mask`) from raw, staging and archived files.

    The second half of :func:`enforce_tombstones`, apart so that a caller streaming the candidates in chunks
    (identity's Spark staging) can find blocked rows chunk by chunk and purge them once, after reading."""
    keys = {(s, r) for s, r in blocked[["source_system", "source_record_id"]].itertuples(index=False, name=None)}
    if not keys:
        return 0
    _redact_redelivered(conn, blocked, keys, declared)
    with conn.transaction():
        deleted = purge.purge_records(conn, keys, set())
    log.warning("erasure tombstones: %d source record(s) of erased customers arrived again; dropped from "
                "identity resolution and purged (%d rows deleted)", len(keys), deleted)
    return len(keys)


def _redact_redelivered(conn: psycopg.Connection, blocked: pd.DataFrame, keys: set[lookup.RecordKey],
                        declared: Iterable[IdentifierKind] = ()) -> None:
    """Remove re-delivered records of erased customers from the archived files too (before raw is purged).

    Their rows are found by record key; only their emails, national IDs and declared identifiers are masked
    elsewhere in those files (a phone may be a relative's too, and this runs without the erasure's full
    picture).
    """
    m = lookup.Match(identifiers={})
    for kind, column in (("email", "email_norm"), ("national_id", "national_id_valid")):
        if column in blocked:
            m.values[kind] = {str(v).strip() for v in blocked[column].dropna() if str(v).strip()}
    for kind in declared:
        if kind.column in blocked:
            m.values[kind.name] = {n for v in blocked[kind.column].dropna() if (n := kind.normalize_value(v))}
    needles = purge.needles_of(m)
    try:
        with conn.transaction():  # a savepoint: a failure here leaves the caller's transaction usable
            loc = erasure_files.locate(conn, keys, purge.sql_pattern(needles))
        files = erasure_files.redact_archive(get_settings(), loc, purge.file_needles(needles), "erasure tombstones")
    except Exception as exc:  # identity resolution must go on; the rows are purged from raw regardless
        log.error("erasure tombstones: archived files of re-delivered records not redacted: %s",
                  purge.mask_text(f"{type(exc).__name__}: {exc}", needles))
        return
    for line in files.not_redacted:
        log.error("erasure tombstones: %s", line)
    if files.archive_files_redacted:
        log.warning("erasure tombstones: %d archived file(s) redacted (%d row(s) removed)",
                    files.archive_files_redacted, files.archive_rows_removed)
