"""Deleting and masking one person's data in the warehouse: what erasure and tombstone enforcement share.

* **needles**: the spellings of a person's strong identifiers (email, phone in its usual forms, national ID,
  in Latin and Persian digits) used to mask free text -- never names, which other people share;
* :func:`purge_records`: delete their source records from ``raw`` and every row keyed by them (customer id,
  source record key, orders account) in the other project schemas, and take their customer id out of lists of
  ids (``customer_ids`` arrays such as the read service's access log);
* :func:`mask_everywhere`: mask what is left (another record's note quoting their email) in every text or
  JSON column of a project schema.

Used by the erasure workflow (privacy/erasure.py) and by tombstone enforcement (privacy/tombstones.py),
which identity resolution runs on every input it reads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import psycopg
from psycopg import sql

from crm_knowledge.normalize import to_ascii_digits
from crm_knowledge.privacy import erasure_files, lookup
from crm_knowledge.privacy.roles import SCHEMAS
from crm_knowledge.warehouse.db import table_exists

log = logging.getLogger(__name__)

MASK = erasure_files.MASK  # "[erased]"
#: Needles shorter than this are not used to mask free text (too likely to hit unrelated values).
MIN_NEEDLE = 6
#: Schemas whose rows are deleted by customer_id / source record key (raw is handled per table).
PURGE_SCHEMAS = ("staging", "intermediate", "marts", "pii", "identity", "scoring", "snapshots", "audit")
#: Tables never purged or masked: the erasure's own records.
OWN_TABLES = {("identity", "erasure_tombstones"), ("audit", "erasure_requests"),
              ("audit", "customer_data_reports")}
_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


# --- needles -------------------------------------------------------------------------------------------------

def mask_text(text: str | None, needles: Iterable[str]) -> str | None:
    """``text`` with every needle (case-insensitive, literal) replaced by ``[erased]``: for error and reason
    texts that go into audit rows and logs."""
    if not text:
        return text
    pattern = python_pattern(needles)
    return pattern.sub(MASK, text) if pattern else text


def python_pattern(needles: Iterable[str]) -> re.Pattern | None:
    """One case-insensitive regex matching any needle literally (longest first); None when none is long enough."""
    good = sorted({n for n in needles if n and len(n) >= MIN_NEEDLE}, key=len, reverse=True)
    if not good:
        return None
    return re.compile("|".join(re.escape(n) for n in good), re.IGNORECASE)


def sql_pattern(needles: Iterable[str]) -> str | None:
    """A PostgreSQL ARE alternation matching any needle literally (non-alphanumerics escaped)."""
    good = sorted({n for n in needles if n and len(n) >= MIN_NEEDLE}, key=len, reverse=True)
    if not good:
        return None
    return "|".join("".join(c if c.isalnum() else "\\" + c for c in n) for n in good)


def needles_of(match: lookup.Match) -> set[str]:
    """Spellings of the customer's strong identifiers to mask in free text (never names: shared by others)."""
    out = set(match.raw_spellings)
    for kind, values in match.values.items():
        for v in values:
            out.add(v)
            if kind == "phone" and v.startswith("+98") and len(v) == 13:
                national = v[3:]
                out |= {"0" + national, national, "0098" + national}
            if kind in ("phone", "national_id"):
                out.add(_persian_digits(v))
    out |= {to_ascii_digits(n) for n in list(out)}
    # a raw spelling that is only a name-like word (no digit, no @) is not a strong identifier
    return {n.strip() for n in out if n and (any(ch.isdigit() for ch in n) or "@" in n)}


def requested_needles(identifiers: dict[str, str]) -> set[str]:
    """Needles from the requested identifiers alone (when the warehouse holds nothing about them)."""
    m = lookup.Match(identifiers=identifiers)
    for kind, value in identifiers.items():
        m.values.setdefault(kind, set()).add(value)
    return needles_of(m) | set(identifiers.values())


def file_needles(needles: Iterable[str]) -> erasure_files.Needles:
    """The needles as the file redaction matches them (text and encoded bytes, in every source encoding)."""
    return erasure_files.Needles.of(needles, MIN_NEEDLE)


def _persian_digits(text: str) -> str:
    return text.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))


def base_tables(conn: psycopg.Connection, schemas: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
    """{(schema, table): {column: data_type}} of the base tables in `schemas`."""
    rows = conn.execute(
        "select c.table_schema, c.table_name, c.column_name, c.data_type from information_schema.columns c "
        "join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name "
        "where t.table_type = 'BASE TABLE' and c.table_schema = any(%s) order by 1, 2, c.ordinal_position",
        (list(schemas),)).fetchall()
    out: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, dtype in rows:
        out.setdefault((schema, table), {})[column] = dtype
    return out


# --- purge ---------------------------------------------------------------------------------------------------

def purge_records(conn: psycopg.Connection, records: set[lookup.RecordKey], customer_ids: set[str]) -> int:
    """Delete the source records (raw rows, their orders) and every row keyed by them or the customer ids.

    Runs inside the caller's transaction; returns the number of rows deleted.
    """
    deleted = 0
    by_system = lookup.record_keys_by_system(records)
    orders_ids = by_system.get("orders", [])
    # raw: the customer-bearing tables by their record key
    systems = [s for s, _ in sorted(records)]
    ids = [r for _, r in sorted(records)]
    for table, spec in lookup.RAW_RECORD_TABLES.items():
        if not ids or not table_exists(conn, f"raw.{table}"):
            continue
        q = sql.SQL("delete from raw.{} t using unnest(%s::text[], %s::text[]) k(s, r) "
                    "where {} = k.s and {} = k.r").format(
            sql.Identifier(table), sql.SQL(spec["system"].replace("unit", "t.unit")),
            sql.SQL(lookup._qualify(spec["record"])))
        deleted += conn.execute(q, (systems, ids)).rowcount
    order_ids: list[int] = []
    if orders_ids:
        order_ids = [r[0] for r in conn.execute(
            "select distinct order_id from raw.orders__orders where customer_id::text = any(%s)", (orders_ids,))]
        deleted += conn.execute("delete from raw.orders__order_items where order_id = any(%s)",
                                (order_ids,)).rowcount
        deleted += conn.execute("delete from raw.orders__orders where customer_id::text = any(%s)",
                                (orders_ids,)).rowcount
        deleted += conn.execute(
            "delete from raw.order_exports where nullif(regexp_replace(util.ascii_digits(customer_source_id), "
            "'\\s', '', 'g'), '') = any(%s)", (orders_ids,)).rowcount
    # every other layer: by customer id, by source record key, by the orders-system customer number
    cids = sorted(customer_ids)
    for (schema, table), columns in base_tables(conn, PURGE_SCHEMAS).items():
        if (schema, table) in OWN_TABLES:
            continue
        _forget_in_id_lists(conn, schema, table, columns, cids)  # rows kept, so not counted as deleted
        conds: list[sql.Composable] = []
        for col in ("customer_id", "old_customer_id", "new_customer_id"):
            if col in columns and cids:
                conds.append(sql.SQL("{}::text = any(%(cids)s)").format(sql.Identifier(col)))
        for suffix in ("", "_l", "_r"):
            s_col, r_col = f"source_system{suffix}", f"source_record_id{suffix}"
            if s_col in columns and r_col in columns and ids:
                conds.append(sql.SQL("({}, {}) in (select * from unnest(%(systems)s::text[], %(ids)s::text[]))")
                             .format(sql.Identifier(s_col), sql.Identifier(r_col)))
        if schema in ("staging", "intermediate") and orders_ids:
            for col in ("orders_customer_id", "customer_source_id"):
                if col in columns:
                    conds.append(sql.SQL("{}::text = any(%(orders)s)").format(sql.Identifier(col)))
            # the orders system's own order lines (incremental staging keeps them until told)
            if table.startswith("stg_orders__") and "order_id" in columns and order_ids:
                conds.append(sql.SQL("order_id::text = any(%(order_ids)s)"))
        if not conds:
            continue
        q = sql.SQL("delete from {}.{} where {}").format(sql.Identifier(schema), sql.Identifier(table),
                                                         sql.SQL(" or ").join(conds))
        n = conn.execute(q, {"cids": cids, "systems": systems, "ids": ids, "orders": orders_ids,
                             "order_ids": [str(o) for o in order_ids]}).rowcount
        if n:
            log.info("erasure: %s.%s: %d row(s) deleted", schema, table, n)
        deleted += n
    return deleted


def _forget_in_id_lists(conn: psycopg.Connection, schema: str, table: str, columns: dict[str, str],
                        cids: list[str]) -> int:
    """Remove the customer ids from list columns (``*customer_ids`` arrays, e.g. ``audit.api_requests``, the
    read service's access log): the row stays (someone made that request) but no longer names the erased
    customer. Returns the number of rows changed."""
    changed = 0
    for col, dtype in columns.items():
        if not (col.endswith("customer_ids") and dtype == "ARRAY" and cids):
            continue
        q = sql.SQL("update {}.{} set {col} = array(select x from unnest({col}) as x where x::text <> all(%s)) "
                    "where {col}::text[] && %s::text[]").format(sql.Identifier(schema), sql.Identifier(table),
                                                                col=sql.Identifier(col))
        n = conn.execute(q, (cids, cids)).rowcount
        if n:
            log.info("erasure: %s.%s.%s: the customer id removed from %d row(s)", schema, table, col, n)
        changed += n
    return changed


def mask_everywhere(conn: psycopg.Connection, needles: Iterable[str]) -> int:
    """Mask remaining occurrences of the needles in every text/JSON column of the project schemas."""
    pattern = sql_pattern(needles)
    if not pattern:
        return 0
    masked = 0
    for (schema, table), columns in base_tables(conn, SCHEMAS).items():
        if (schema, table) in OWN_TABLES:
            continue
        texty = {c: t for c, t in columns.items() if t in _TEXT_TYPES}
        if not texty:
            continue
        if schema == "raw" and table == "load_rejects":
            # a rejected row is the raw row as received: delete it rather than keep a masked husk
            masked += conn.execute("delete from raw.load_rejects where record::text ~* %s", (pattern,)).rowcount
            continue
        sets, wheres = [], []
        for col, dtype in texty.items():
            ident = sql.Identifier(col)
            as_text = sql.SQL("{}::text").format(ident)
            replaced = sql.SQL("regexp_replace({}, %(p)s, %(mask)s, 'gi')").format(as_text)
            if dtype in ("json", "jsonb"):
                replaced = sql.SQL("({})::{}").format(replaced, sql.SQL(dtype))
            sets.append(sql.SQL("{} = case when {} ~* %(p)s then {} else {} end").format(
                ident, as_text, replaced, ident))
            wheres.append(sql.SQL("{} ~* %(p)s").format(as_text))
        q = sql.SQL("update {}.{} set {} where {}").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(sets), sql.SQL(" or ").join(wheres))
        n = conn.execute(q, {"p": pattern, "mask": MASK}).rowcount
        if n:
            log.info("erasure: %s.%s: %d row(s) had an identifier masked", schema, table, n)
        masked += n
    return masked
