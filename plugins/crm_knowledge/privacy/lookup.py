"""Find every source record and customer that an email / phone / national ID (or a declared identifier) points to.

Shared by erasure (privacy/erasure.py) and the customer data report (privacy/data_report.py), so
both answer "who is this?" the same way:

1. the identifiers are normalised with the project's normalisers (``crm_knowledge.normalize``), so
   Persian digits, ``0912 …`` / ``+98 912 …`` phone spellings and e-mail case all match;
2. identifier values known as junk (``identity.junk_values``: a call-centre number typed for every
   caller, ``test@test.com``) are ignored — they would point at thousands of unrelated people;
3. source records carrying a requested identifier are found in the raw tables (through the SQL twins
   of the normalisers, so records loaded since the last dbt run count too) and in
   ``intermediate.int_customer_records_unioned``;
   Identifier kinds declared in config/identity.yml (a passport, a loyalty card, a foreign national id)
   are found the same way in the records' ``identifiers`` (raw and unioned), normalised as the kind says
   (:meth:`crm_knowledge.identity.config.IdentifierKind.normalize_value`);
4. the identity map (``identity.record_clusters``, plus ``identity.customer_id_merges`` for retired
   ids) turns them into customer ids, and every record of those customers is added.

Reads only; the caller's connection needs the pipeline role (raw/intermediate are pipeline-only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from crm_knowledge.identity.config import IdentifierKind, load_config
from crm_knowledge.normalize import normalize_email, normalize_national_id, normalize_phone
from crm_knowledge.privacy.pseudonym import load_key, pseudonymize
from crm_knowledge.warehouse.db import table_exists

log = logging.getLogger(__name__)

#: The built-in identifier kinds: canonical columns of every customer-bearing source.
IDENTIFIER_KINDS = ("email", "phone", "national_id")

#: Customer-bearing raw tables: source_system and source_record_id as staging derives them, and the
#: identifier / name columns each carries (kind -> column; names are collected for tombstones).
RAW_RECORD_TABLES: dict[str, dict] = {
    "form_submissions": {
        "system": "'forms'", "record": "btrim(submission_id)",
        "ids": {"email": "email", "phone": "phone", "national_id": "national_id"},
        "names": ("first_name", "last_name", "full_name"), "declared": True,
    },
    "sibling_customers": {
        "system": "'sibling:' || lower(btrim(unit))", "record": "btrim(source_record_id)",
        "ids": {"email": "email", "phone": "phone", "national_id": "national_id"},
        "names": ("first_name", "last_name", "full_name"), "declared": True,
    },
    "contact_interactions": {
        "system": "'contacts'", "record": "btrim(interaction_id)",
        "ids": {"email": "email", "phone": "phone"},
        "names": ("customer_name",),
    },
    "orders__customers": {
        "system": "'orders'", "record": "customer_id::text",
        "ids": {"email": "email", "phone": "phone", "national_id": "national_id"},
        "names": ("first_name", "last_name"),
    },
}

_NORMALISERS = {"email": normalize_email, "phone": normalize_phone, "national_id": normalize_national_id}
_SQL_NORMALISERS = {"email": "util.normalize_email", "phone": "util.normalize_phone",
                    "national_id": "util.normalize_national_id"}

RecordKey = tuple[str, str]

#: Values of the `identifiers` jsonb of raw and unioned records (declared kinds, as received) are
#: pre-selected in SQL by this skeleton (ASCII digits, letters and digits only, lower case; digits only for
#: `normalize: digits` kinds) and then checked exactly with the kind's own normalisation in Python.
_SKELETON = "lower(regexp_replace(util.ascii_digits({}), '[^[:alnum:]]', '', 'g'))"
_DIGIT_SKELETON = "regexp_replace(util.ascii_digits({}), '[^0-9]', '', 'g')"


def declared_kinds() -> dict[str, IdentifierKind]:
    """The identifier kinds config/identity.yml declares beyond the built-in ones, by name."""
    return {k.name: k for k in load_config().declared_identifiers}


class IdentifierError(ValueError):
    """A request names no usable identifier (or one that does not normalise)."""


@dataclass
class Match:
    """Everything one lookup found: customers, their records, and the identifiers those records carry."""

    identifiers: dict[str, str]                      # requested, normalised (junk removed)
    ignored_junk: list[str] = field(default_factory=list)  # kinds of requested identifiers that are junk
    customer_ids: set[str] = field(default_factory=set)
    records: set[RecordKey] = field(default_factory=set)
    # normalised identifier values carried by the records (kind -> values; built-in kinds always, declared
    # kinds when found); in memory only
    values: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in IDENTIFIER_KINDS})
    # names (normalised "first last" / full name) carried by the records; in memory only
    names: set[str] = field(default_factory=set)
    # every spelling of an identifier as it arrived in raw (for masking free text); in memory only
    raw_spellings: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.customer_ids or self.records)


def normalise_identifiers(email: str | None = None, phone: str | None = None, national_id: str | None = None,
                          declared: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """{kind: normalised value} for the given identifiers; raises IdentifierError naming a bad one.

    `declared`: values of identifier kinds declared in config/identity.yml ({"passport": "X1234567"}).
    """
    given = {"email": email, "phone": phone, "national_id": national_id}
    out: dict[str, str] = {}
    for kind, value in given.items():
        if value is None or not str(value).strip():
            continue
        norm = _NORMALISERS[kind](str(value))
        if not norm:
            raise IdentifierError(f"the {kind.replace('_', ' ')} given does not normalise to a valid {kind} "
                                  "(check the value; phones need a full Iranian mobile/landline or +CC number)")
        out[kind] = norm
    others = {k: v for k, v in (declared or {}).items() if v is not None and str(v).strip()}
    if others:
        kinds = declared_kinds()
        for kind, value in others.items():
            if kind not in kinds:
                known = ", ".join(sorted(kinds)) or "none"
                raise IdentifierError(f"{kind!r} is not an identifier kind declared in config/identity.yml "
                                      f"(declared: {known}; built in: email, phone, national_id)")
            norm = kinds[kind].normalize_value(value)
            if not norm:
                raise IdentifierError(f"the {kind} given does not normalise to a valid {kind} (see its `normalize` "
                                      "and `pattern` in config/identity.yml)")
            out[kind] = norm
    if not out:
        raise IdentifierError("name at least one identifier: an email, a phone number, a national ID or an "
                              "identifier kind declared in config/identity.yml")
    return out


def junk_pseudonyms(conn: psycopg.Connection) -> set[str]:
    if not table_exists(conn, "identity.junk_values"):
        return set()
    return {r[0] for r in conn.execute("select identifier_value_hash from identity.junk_values").fetchall()}


def _raw_matches(conn: psycopg.Connection, values: dict[str, set[str]],
                 kinds: Mapping[str, IdentifierKind]) -> set[RecordKey]:
    """Record keys of raw rows whose (normalised) identifiers are among `values`."""
    keys: set[RecordKey] = set()
    for table, spec in RAW_RECORD_TABLES.items():
        if not table_exists(conn, f"raw.{table}"):
            continue
        conds, params = [], {}
        for kind, column in spec["ids"].items():
            wanted = sorted(values.get(kind) or ())
            if not wanted:
                continue
            params[kind] = wanted
            conds.append(sql.SQL("{}({}) = any({})").format(
                sql.SQL(_SQL_NORMALISERS[kind]), sql.Identifier(column), sql.Placeholder(kind)))
        if not conds:
            continue
        q = sql.SQL("select distinct {}, {} from raw.{} where {}").format(
            sql.SQL(spec["system"]), sql.SQL(spec["record"]), sql.Identifier(table), sql.SQL(" or ").join(conds))
        keys |= {(r[0], r[1]) for r in conn.execute(q, params).fetchall() if r[1] is not None}
    declared = {k: vs for k, vs in values.items() if k not in IDENTIFIER_KINDS and vs}
    if declared:
        for table, spec in RAW_RECORD_TABLES.items():
            if spec.get("declared") and table_exists(conn, f"raw.{table}"):
                keys |= _declared_matches(conn, sql.SQL("raw.{}").format(sql.Identifier(table)),
                                          sql.SQL(spec["system"]), sql.SQL(spec["record"]), declared, kinds)
    return keys


def _declared_matches(conn: psycopg.Connection, relation: sql.Composable, system: sql.Composable,
                      record: sql.Composable, values: dict[str, set[str]],
                      kinds: Mapping[str, IdentifierKind]) -> set[RecordKey]:
    """Record keys of `relation`'s rows whose `identifiers` carry one of `values` (declared kind -> values)."""
    keys: set[RecordKey] = set()
    for kind, wanted in values.items():
        spec = kinds.get(kind)
        if spec is None:
            continue
        skeleton = _DIGIT_SKELETON if spec.normalize == "digits" else _SKELETON
        q = sql.SQL("select {}, {}, identifiers ->> %(kind)s from {} where identifiers ? %(kind)s and {} in "
                    "(select {} from unnest(%(wanted)s::text[]) as w)").format(
            system, record, relation, sql.SQL(skeleton.format("identifiers ->> %(kind)s")),
            sql.SQL(skeleton.format("w")))
        for sys_, rec, value in conn.execute(q, {"kind": kind, "wanted": sorted(wanted)}).fetchall():
            if rec is not None and spec.normalize_value(value) in wanted:
                keys.add((sys_, rec))
    return keys


def _unioned_matches(conn: psycopg.Connection, values: dict[str, set[str]],
                     kinds: Mapping[str, IdentifierKind]) -> set[RecordKey]:
    if not table_exists(conn, "intermediate.int_customer_records_unioned"):
        return set()
    rows = conn.execute(
        "select source_system, source_record_id from intermediate.int_customer_records_unioned "
        "where email = any(%s) or phone_e164 = any(%s) or national_id = any(%s)",
        (sorted(values["email"]), sorted(values["phone"]), sorted(values["national_id"]))).fetchall()
    keys = {(r[0], r[1]) for r in rows}
    declared = {k: vs for k, vs in values.items() if k not in IDENTIFIER_KINDS and vs}
    if declared:
        keys |= _declared_matches(conn, sql.SQL("intermediate.int_customer_records_unioned"),
                                  sql.SQL("source_system"), sql.SQL("source_record_id"), declared, kinds)
    return keys


def _customers_of(conn: psycopg.Connection, records: set[RecordKey]) -> set[str]:
    if not records or not table_exists(conn, "identity.record_clusters"):
        return set()
    systems, ids = zip(*sorted(records), strict=True)
    rows = conn.execute(
        "select distinct c.customer_id from identity.record_clusters c "
        "join unnest(%s::text[], %s::text[]) k(s, r) on c.source_system = k.s and c.source_record_id = k.r",
        (list(systems), list(ids))).fetchall()
    return {r[0] for r in rows}


def _with_retired_ids(conn: psycopg.Connection, customer_ids: set[str]) -> set[str]:
    """Add ids merged into (or out of) these customers: history tables may still carry them."""
    if not customer_ids or not table_exists(conn, "identity.customer_id_merges"):
        return set(customer_ids)
    out = set(customer_ids)
    while True:
        rows = conn.execute(
            "select old_customer_id, new_customer_id from identity.customer_id_merges "
            "where old_customer_id = any(%s) or new_customer_id = any(%s)", (sorted(out), sorted(out))).fetchall()
        more = {v for r in rows for v in r} - out
        if not more:
            return out
        out |= more


def _records_of(conn: psycopg.Connection, customer_ids: set[str]) -> set[RecordKey]:
    if not customer_ids or not table_exists(conn, "identity.record_clusters"):
        return set()
    rows = conn.execute("select source_system, source_record_id from identity.record_clusters "
                        "where customer_id = any(%s)", (sorted(customer_ids),)).fetchall()
    return {(r[0], r[1]) for r in rows}


def _collect_values(conn: psycopg.Connection, match: Match, kinds: Mapping[str, IdentifierKind]) -> None:
    """Fill match.values / names / raw_spellings from the records (raw rows and the unioned table)."""
    if not match.records:
        return
    systems, ids = (list(x) for x in zip(*sorted(match.records), strict=True))
    if table_exists(conn, "intermediate.int_customer_records_unioned"):
        rows = conn.execute(
            "select u.email, u.phone_e164, u.national_id, u.full_name_norm, u.first_name_norm, u.last_name_norm, "
            "u.identifiers from intermediate.int_customer_records_unioned u "
            "join unnest(%s::text[], %s::text[]) k(s, r) on u.source_system = k.s and u.source_record_id = k.r",
            (systems, ids)).fetchall()
        for email, phone, nid, full, first, last, identifiers in rows:
            for kind, v in (("email", email), ("phone", phone), ("national_id", nid)):
                if v:
                    match.values[kind].add(v)
            _add_declared(match, identifiers, kinds)
            for name in (full, " ".join(p for p in (first, last) if p)):
                if name and name.strip():
                    match.names.add(name.strip())
    for table, spec in RAW_RECORD_TABLES.items():
        if not table_exists(conn, f"raw.{table}"):
            continue
        cols = [*spec["ids"].values(), *spec["names"], *(["identifiers"] if spec.get("declared") else [])]
        q = sql.SQL("select {} from raw.{} t join unnest(%s::text[], %s::text[]) k(s, r) "
                    "on {} = k.s and {} = k.r").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in cols), sql.Identifier(table),
            sql.SQL(spec["system"].replace("unit", "t.unit")), sql.SQL(_qualify(spec["record"])))
        for row in conn.execute(q, (systems, ids)).fetchall():
            named = dict(zip(cols, row, strict=True))
            for kind, column in spec["ids"].items():
                raw = named.get(column)
                if raw and str(raw).strip():
                    match.raw_spellings.add(str(raw).strip())
                    norm = _NORMALISERS[kind](str(raw))
                    if norm:
                        match.values[kind].add(norm)
            _add_declared(match, named.get("identifiers"), kinds)
            full = named.get("full_name") or named.get("customer_name")
            if full and str(full).strip():
                match.names.add(str(full).strip())
            first_last = [str(named[c]).strip() for c in ("first_name", "last_name") if named.get(c)]
            if first_last:
                match.names.add(" ".join(first_last))


def _add_declared(match: Match, identifiers: dict | None, kinds: Mapping[str, IdentifierKind]) -> None:
    """Add a record's declared identifiers (its `identifiers` jsonb, values as received) to the match."""
    for kind, raw in (identifiers or {}).items():
        if kind not in kinds or raw is None or not str(raw).strip():
            continue
        match.raw_spellings.add(str(raw).strip())
        norm = kinds[kind].normalize_value(raw)
        if norm:
            match.values.setdefault(kind, set()).add(norm)


def _qualify(expr: str) -> str:
    """Prefix the raw column of a record-key expression with the table alias ``t``."""
    for column in ("submission_id", "source_record_id", "interaction_id", "customer_id"):
        if column in expr:
            return expr.replace(column, f"t.{column}")
    return expr


def find(conn: psycopg.Connection, identifiers: dict[str, str], *, expand: bool = True) -> Match:
    """Every customer and source record the (normalised) identifiers point to (see module doc)."""
    kinds = declared_kinds()  # config/identity.yml, read once per lookup
    junk = junk_pseudonyms(conn)
    key = load_key()  # once: loading it reads the settings, and a customer's records carry many values
    usable: dict[str, str] = {}
    ignored: list[str] = []
    for kind, value in identifiers.items():
        if pseudonymize(value, kind, key) in junk:
            ignored.append(kind)
            log.warning("lookup: the requested %s is a known junk value (shared placeholder); not used to match",
                        kind)
        else:
            usable[kind] = value
    match = Match(identifiers=usable, ignored_junk=ignored)
    wanted = {k: ({usable[k]} if k in usable else set()) for k in {*IDENTIFIER_KINDS, *usable}}
    direct = _raw_matches(conn, wanted, kinds) | _unioned_matches(conn, wanted, kinds)
    match.customer_ids = _with_retired_ids(conn, _customers_of(conn, direct))
    match.records = direct | _records_of(conn, match.customer_ids)
    _collect_values(conn, match, kinds)
    if expand and match.records:
        # records loaded since the last identity run that carry the customer's strong identifiers
        strong = {"email": match.values["email"], "national_id": match.values["national_id"],
                  "phone": wanted["phone"],
                  **{k: vs for k, vs in match.values.items() if k not in IDENTIFIER_KINDS}}
        strong = {k: {v for v in vs if pseudonymize(v, k, key) not in junk} for k, vs in strong.items()}
        extra = _raw_matches(conn, strong, kinds) - match.records
        if extra:
            match.records |= extra
            _collect_values(conn, match, kinds)
    for kind in match.values:  # junk values are nobody's identifier
        match.values[kind] = {v for v in match.values[kind] if pseudonymize(v, kind, key) not in junk}
    log.info("lookup: %d customer id(s), %d source record(s)", len(match.customer_ids), len(match.records))
    return match


def record_keys_by_system(records: Iterable[RecordKey]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for system, record in sorted(records):
        out.setdefault(system, []).append(record)
    return out
