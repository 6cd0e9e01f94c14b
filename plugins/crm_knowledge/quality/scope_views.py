"""Transient views the quality gate hands to Great Expectations instead of query assets.

A part of a relation (a raw load batch, a daily slice of a staging entity or mart) used to reach GX as a query
asset. GX Core 1.x (1.24) keeps a query asset's SQL as a ``TextClause`` and cannot read its columns from it:
``get_sqlalchemy_column_metadata`` falls back to ``column_reflection_fallback``, which *executes the query
itself* and keeps only the column names. The driver fetches every row of the scope first, so each validation
copied its whole scope into the Python process: 6.5-7 GB for the gates at 1M customers, and a full read of
every batch on the wire before any check ran. GX reflects the columns of a table or view from the catalog,
so the gate names the scope by a view (``create view quality_scopes.scope_… as <query>``) and validates that
as a table asset. The view holds no rows: GX's queries read through it as they read through the subquery.

The views live in their own schema (``quality_scopes``, :mod:`crm_knowledge.privacy.roles`: pipeline only),
never in ``marts``, which readers browse. They are created and dropped on an autocommit connection of their
own, so GX's connections see them and the gate's transaction is not committed early. A view a killed process
left behind is dropped by the next gate after :data:`STALE_AFTER` (its name carries its creation time);
until then it only depends on its relation.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

SCHEMA = "quality_scopes"
#: A leftover view older than this is dropped by the next gate (no gate validates one scope for a day).
STALE_AFTER = dt.timedelta(hours=24)
_NAME = re.compile(r"^scope_(\d{14})_[0-9a-f]{8}$")
_STAMP = "%Y%m%d%H%M%S"


def new_name(now: dt.datetime) -> str:
    """A view name carrying `now` (UTC), unique per call."""
    return f"scope_{now.strftime(_STAMP)}_{secrets.token_hex(4)}"


def stale_names(names: list[str], now: dt.datetime) -> list[str]:
    """The view names among `names` created more than :data:`STALE_AFTER` before `now` (UTC)."""
    out = []
    for name in names:
        m = _NAME.match(name)
        if m and now - dt.datetime.strptime(m.group(1), _STAMP).replace(tzinfo=dt.UTC) > STALE_AFTER:
            out.append(name)
    return out


def drop_stale(url: str, now: dt.datetime | None = None) -> list[str]:
    """Drop the leftover scope views older than :data:`STALE_AFTER`; return their names."""
    now = now or dt.datetime.now(dt.UTC)
    with connect(url, autocommit=True) as conn:
        names = [n for (n,) in conn.execute("select viewname from pg_views where schemaname = %s", (SCHEMA,))]
        stale = stale_names(names, now)
        for name in stale:
            conn.execute(sql.SQL("drop view if exists {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name)))
    if stale:
        log.info("dropped %d leftover quality scope view(s) older than %s", len(stale), STALE_AFTER)
    return stale


@contextmanager
def scope_view(url: str, query: str) -> Iterator[str]:
    """A view of `query` in :data:`SCHEMA` for as long as the block runs; yields its (unqualified) name."""
    name = new_name(dt.datetime.now(dt.UTC))
    view = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("create view {} as {}").format(view, sql.SQL(query)))
        try:
            yield name
        finally:
            conn.execute(sql.SQL("drop view if exists {}").format(view))
