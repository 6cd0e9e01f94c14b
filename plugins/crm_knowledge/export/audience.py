"""Who a destination receives: one row per destination key with its (single, highest-priority) audience.

Everything that decides whether a customer may leave the warehouse is in the SQL, not in Python:

* forgotten customers (``dim_customers.is_forgotten``) never leave, whatever the destination;
* ``consent: marketing`` keeps only customers with ``has_marketing_consent is true`` and who did not opt out of
  profiling (segments are profiling results; targeting on them is profiling-based direct marketing);
* customers with no ``dim_customers`` row are never delivered (their consent cannot be checked);
* excluded customer ids never leave.

A customer matching several audiences gets the first one in config order (``case when ... end``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from crm_knowledge.export.config import (
    DIM_FIELDS,
    LIST_FILTERS,
    SEGMENT_FIELDS,
    THRESHOLD_OPS,
    AudienceFilter,
    DestinationConfig,
)

#: Floats are rounded before hashing so that float noise is not mistaken for a change.
FLOAT_DIGITS = 6


@dataclass(frozen=True)
class Member:
    """One row a destination should currently hold."""

    key: str
    customer_id: str
    audience: str
    payload: dict[str, Any]  # key column, audience, fields, named fields -- JSON-ready values


def normalise(value: Any) -> Any:
    """JSON-ready, deterministic value for payloads and hashes."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, Decimal):
        return round(float(value), FLOAT_DIGITS)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def filter_condition(f: AudienceFilter, params: dict[str, Any], prefix: str) -> sql.Composable:
    """SQL boolean for one audience filter over alias ``s`` (customer_segments); binds values into params."""
    parts: list[sql.Composable] = []
    for i, (column, values) in enumerate(f.in_lists.items()):
        pname = f"{prefix}_in{i}"
        params[pname] = list(values)
        cast = sql.SQL("int[]") if LIST_FILTERS[column] == "int" else sql.SQL("text[]")
        parts.append(sql.SQL("s.{} = any({}::{})").format(sql.Identifier(column), sql.Placeholder(pname), cast))
    for i, t in enumerate(f.thresholds):
        pname = f"{prefix}_th{i}"
        params[pname] = t.value
        parts.append(sql.SQL("s.{} {} {}::double precision").format(
            sql.Identifier(t.column), sql.SQL(THRESHOLD_OPS[t.op]), sql.Placeholder(pname)))
    if not parts:
        return sql.SQL("true")
    # A null score never matches: `coalesce(..., false)`.
    return sql.SQL("coalesce(({}), false)").format(sql.SQL(" and ").join(parts))


def dim_columns(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "select column_name from information_schema.columns "
        "where table_schema = 'marts' and table_name = 'dim_customers'"
    ).fetchall()
    return {r[0] for r in rows}


def consent_condition(dest: DestinationConfig) -> sql.Composable:
    """Who may leave for this destination, over alias ``d`` (dim_customers). Forgotten: never."""
    cond = sql.SQL("d.is_forgotten is not true")
    if dest.consent == "marketing":
        cond = sql.SQL("{} and d.has_marketing_consent is true and d.has_profiling_opt_out is not true").format(
            cond)
    return cond


def selection_query(dest: DestinationConfig, as_of: date,
                    available_dim_columns: set[str] | None = None) -> tuple[sql.Composable, dict[str, Any]]:
    """The query returning (destination_key, customer_id, audience, <fields...>, <named fields...>)."""
    params: dict[str, Any] = {"as_of": as_of, "excluded": sorted(dest.exclude_ids)}
    field_exprs: list[sql.Composable] = []
    for f in dest.fields:
        if f in SEGMENT_FIELDS:
            field_exprs.append(sql.SQL("s.{} as {}").format(sql.Identifier(f), sql.Identifier("f_" + f)))
        else:
            if available_dim_columns is not None and f not in available_dim_columns and f not in DIM_FIELDS:
                raise ValueError(f"{dest.source}: destination {dest.name!r} field {f!r} is neither a column of "
                                 "marts.customer_segments nor of marts.dim_customers")
            field_exprs.append(sql.SQL("d.{} as {}").format(sql.Identifier(f), sql.Identifier("f_" + f)))
    for f in dest.named_fields:
        field_exprs.append(sql.SQL("p.{} as {}").format(sql.Identifier(f), sql.Identifier("f_" + f)))

    cases = [
        sql.SQL("when {} then {}").format(filter_condition(a.filter, params, f"a{i}"), sql.Literal(a.name))
        for i, a in enumerate(dest.audiences)
    ]
    audience_expr = sql.SQL("case {} end").format(sql.SQL(" ").join(cases))

    if dest.source_system is None:
        key_expr = sql.SQL("s.customer_id")
        id_join = sql.SQL("")
    else:
        params["source_system"] = dest.source_system
        key_expr = sql.SQL("m.source_record_id")
        id_join = sql.SQL(
            "join (select distinct customer_id, source_record_id from marts.customer_identity_map "
            "where source_system = %(source_system)s) m on m.customer_id = s.customer_id"
        )
    pii_join = (sql.SQL("left join pii.pii_customer_profiles p on p.customer_id = s.customer_id")
                if dest.named_fields else sql.SQL(""))

    query = sql.SQL(
        """
        with s as (
            select distinct on (customer_id) *
            from marts.customer_segments
            where as_of_date <= %(as_of)s
            order by customer_id, as_of_date desc
        ),
        q as (
            select {key_expr}::text as destination_key, s.customer_id::text as customer_id,
                   {audience_expr} as audience{comma}{fields}
            from s
            join marts.dim_customers d on d.customer_id = s.customer_id
            {id_join}
            {pii_join}
            where {consent}
              and not (s.customer_id::text = any(%(excluded)s::text[]))
        )
        select * from q where audience is not null order by destination_key
        """
    ).format(
        key_expr=key_expr,
        audience_expr=audience_expr,
        comma=sql.SQL(", ") if field_exprs else sql.SQL(""),
        fields=sql.SQL(", ").join(field_exprs),
        id_join=id_join,
        pii_join=pii_join,
        consent=consent_condition(dest),
    )
    return query, params


def select_members(conn: psycopg.Connection, dest: DestinationConfig, as_of: date) -> dict[str, Member]:
    """Current members of the destination by destination key (raises on a key claimed by two customers)."""
    have = conn.execute(
        "select count(*) from marts.customer_segments where as_of_date <= %s", (as_of,)).fetchone()[0]
    if have == 0:
        raise LookupError(f"marts.customer_segments holds no scores on or before {as_of}; refusing to deliver "
                          f"{dest.name!r} (it would look as if every customer had left)")
    query, params = selection_query(dest, as_of, dim_columns(conn))
    members: dict[str, Member] = {}
    with conn.cursor() as cur:
        cur.execute(query, params)
        for row in cur:
            key, customer_id, audience, *values = row
            payload: dict[str, Any] = {dest.key_column: key, "audience": audience}
            for name, value in zip([*dest.fields, *dest.named_fields], values, strict=True):
                payload[name] = normalise(value)
            if key in members:
                if members[key].customer_id == customer_id:
                    continue
                raise ValueError(f"destination {dest.name!r}: key {key!r} of {dest.id_space} belongs to two "
                                 f"customers ({members[key].customer_id}, {customer_id}); fix identity first")
            members[key] = Member(key=key, customer_id=customer_id, audience=audience, payload=payload)
    return members


def customer_status(conn: psycopg.Connection, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Privacy flags of customers (absent from the result: no longer in dim_customers)."""
    if not customer_ids:
        return {}
    rows = conn.execute(
        "select customer_id::text, is_forgotten is true, has_marketing_consent is true, "
        "has_profiling_opt_out is true from marts.dim_customers where customer_id::text = any(%s::text[])",
        (customer_ids,),
    ).fetchall()
    return {r[0]: {"is_forgotten": r[1], "has_marketing_consent": r[2], "has_profiling_opt_out": r[3]}
            for r in rows}
