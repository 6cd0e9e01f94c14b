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
own, so GX's connections see them and the gate's transaction is not committed early. That connection holds the
view's advisory lock (:func:`lock_key`) from before the view exists until it is dropped: a view whose lock nobody
holds was left by a gate that was killed (its session ended, and the lock with it), and the next gate drops it
(:func:`drop_orphaned`) at once. A leftover view depends on its relation, so until it is gone dbt could not
drop a column of that relation (``on_schema_change``); a gate still running keeps its view.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from crm_knowledge.warehouse.db import advisory_lock, advisory_unlock, connect

log = logging.getLogger(__name__)

SCHEMA = "quality_scopes"
#: the names the gate gives its views (creation time, random part); other views of the schema are left alone
_NAME = re.compile(r"^scope_(\d{14})_[0-9a-f]{8}$")
_STAMP = "%Y%m%d%H%M%S"


def new_name(now: dt.datetime) -> str:
    """A view name carrying `now` (UTC), unique per call."""
    return f"scope_{now.strftime(_STAMP)}_{secrets.token_hex(4)}"


def is_gate_view(name: str) -> bool:
    """Whether `name` is of the gate's naming (:func:`new_name`)."""
    return _NAME.match(name) is not None


def lock_key(name: str) -> str:
    """The advisory-lock key (warehouse.db.advisory_lock) the gate holds while its view `name` exists."""
    return f"{SCHEMA}.{name}"


def drop_orphaned(url: str) -> list[str]:
    """Drop the gate's views whose lock no session holds (left by a killed gate); return their names."""
    dropped = []
    with connect(url, autocommit=True) as conn:
        names = [n for (n,) in conn.execute("select viewname from pg_views where schemaname = %s", (SCHEMA,))]
        for name in filter(is_gate_view, names):
            if not advisory_lock(conn, lock_key(name), wait=False):
                continue  # a running gate's view
            try:
                conn.execute(sql.SQL("drop view if exists {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name)))
                dropped.append(name)
            except psycopg.errors.InsufficientPrivilege:
                # another role's view (a gate run by hand as the owner): its owner or the next deploy drops it
                log.warning("quality scope view %s.%s was left by a gate of another role; not dropped", SCHEMA, name)
            finally:
                advisory_unlock(conn, lock_key(name))
    if dropped:
        log.info("dropped %d quality scope view(s) left by a gate that did not finish", len(dropped))
    return dropped


@contextmanager
def scope_view(url: str, query: str) -> Iterator[str]:
    """A view of `query` in :data:`SCHEMA` for as long as the block runs; yields its (unqualified) name."""
    name = new_name(dt.datetime.now(dt.UTC))
    view = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))
    with connect(url, autocommit=True) as conn:
        advisory_lock(conn, lock_key(name))  # before the view exists: never a view without its lock
        conn.execute(sql.SQL("create view {} as {}").format(view, sql.SQL(query)))
        try:
            yield name
        finally:
            conn.execute(sql.SQL("drop view if exists {}").format(view))
            advisory_unlock(conn, lock_key(name))
