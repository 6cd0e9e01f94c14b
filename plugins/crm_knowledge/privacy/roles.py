"""Warehouse access roles, created and granted idempotently on every deploy.

Four NOLOGIN group roles; people and services get LOGIN roles that are members of one of them
(:func:`create_login`). What each group may do per schema is :data:`ACCESS` — the single source of
truth that :func:`ensure_roles` applies and docs/privacy.md documents (tests check all three agree):

* ``ckp_pipeline``        reads and writes every warehouse schema (the role Airflow/dbt run under)
* ``ckp_bi_reader``       reads ``marts`` only (pseudonymous customer_id, no direct identifiers)
* ``ckp_auditor``         reads ``audit`` and ``marts``
* ``ckp_privacy_officer`` reads ``pii`` and ``marts``

``ensure_roles`` also makes ``ckp_pipeline`` the owner of the project schemas and everything in them
(:func:`hand_ownership`), revokes PUBLIC's access to the schemas holding personal or internal data, and
sets DEFAULT PRIVILEGES so tables that the *user running ensure_roles* creates later in a schema get
the same grants (so run it as the user dbt and the loaders connect as). Group roles are cluster-wide
and shared by every database on the server; grants are per database.

Safe to run repeatedly and concurrently: one transaction under an advisory lock, role creation
guarded by ``if not exists`` and tolerant of a concurrent creator in another database.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql

from crm_knowledge.warehouse.db import SCHEMA_CHANGE_LOCK, advisory_lock, connect

log = logging.getLogger(__name__)

#: Every warehouse schema, created if missing.
SCHEMAS: tuple[str, ...] = (
    "raw",
    "audit",
    "staging",
    "intermediate",
    "marts",
    "pii",
    "seeds",
    "snapshots",
    "identity",
    "scoring",
    "util",
    "quality_scopes",
)

#: Schemas PUBLIC must not reach (source personal data, the pii vault, internal state).
PRIVATE_SCHEMAS: tuple[str, ...] = ("raw", "staging", "intermediate", "pii", "identity", "scoring", "audit",
                                     "quality_scopes")

READ = "read"  # USAGE on the schema + SELECT on its tables (now and, via default privileges, later)
WRITE = "write"  # USAGE + CREATE on the schema + all privileges on its tables, sequences and functions

PIPELINE = "ckp_pipeline"
BI_READER = "ckp_bi_reader"
AUDITOR = "ckp_auditor"
PRIVACY_OFFICER = "ckp_privacy_officer"

#: group role -> {schema: READ | WRITE}; a schema not listed means no access at all.
ACCESS: dict[str, dict[str, str]] = {
    PIPELINE: {schema: WRITE for schema in SCHEMAS},
    BI_READER: {"marts": READ},
    AUDITOR: {"audit": READ, "marts": READ},
    PRIVACY_OFFICER: {"pii": READ, "marts": READ},
}

GROUP_ROLES: tuple[str, ...] = tuple(ACCESS)

#: Roles and grants are schema changes: the same lock as the DDL (warehouse/db.py), so they never race it.
_LOCK = SCHEMA_CHANGE_LOCK
_ROLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _create_group_sql(role: str) -> sql.Composable:
    # DO blocks take no parameters: the name is a validated constant, quoted as literal and identifier.
    body = sql.SQL(
        "begin\n"
        "  if not exists (select from pg_roles where rolname = {lit}) then\n"
        "    begin\n"
        "      create role {ident} nologin;\n"
        "    exception when duplicate_object or unique_violation then\n"
        "      null;  -- created concurrently (e.g. by a deploy of another database on this server)\n"
        "    end;\n"
        "  end if;\n"
        "end"
    ).format(lit=sql.Literal(role), ident=sql.Identifier(role))
    return sql.SQL("do $ckp$ {} $ckp$").format(body)


def grant_statements() -> list[sql.Composable]:
    """The statements ensure_roles runs after creating the group roles (in order)."""
    stmts: list[sql.Composable] = []
    for schema in SCHEMAS:
        stmts.append(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    for schema in PRIVATE_SCHEMAS:
        s = sql.Identifier(schema)
        stmts.append(sql.SQL("revoke all on schema {} from public").format(s))
        stmts.append(sql.SQL("revoke all on all tables in schema {} from public").format(s))
    for role, schemas in ACCESS.items():
        r = sql.Identifier(role)
        for schema in SCHEMAS:
            s = sql.Identifier(schema)
            level = schemas.get(schema)
            if level is None:
                # converge: take back anything an earlier version or a hand-made grant gave
                stmts.append(sql.SQL("revoke all on schema {} from {}").format(s, r))
                stmts.append(sql.SQL("revoke all on all tables in schema {} from {}").format(s, r))
                stmts.append(sql.SQL("alter default privileges in schema {} revoke all on tables from {}").format(s, r))
            elif level == READ:
                stmts.append(sql.SQL("revoke create on schema {} from {}").format(s, r))
                stmts.append(sql.SQL("grant usage on schema {} to {}").format(s, r))
                stmts.append(sql.SQL("grant select on all tables in schema {} to {}").format(s, r))
                stmts.append(sql.SQL("alter default privileges in schema {} grant select on tables to {}").format(s, r))
            elif level == WRITE:
                stmts.append(sql.SQL("grant usage, create on schema {} to {}").format(s, r))
                stmts.append(sql.SQL("grant all on all tables in schema {} to {}").format(s, r))
                stmts.append(sql.SQL("grant all on all sequences in schema {} to {}").format(s, r))
                stmts.append(sql.SQL("grant execute on all functions in schema {} to {}").format(s, r))
                for kind, privs in (("tables", "all"), ("sequences", "all"), ("functions", "execute")):
                    stmts.append(
                        sql.SQL("alter default privileges in schema {} grant {} on {} to {}").format(
                            s, sql.SQL(privs), sql.SQL(kind), r
                        )
                    )
            else:  # pragma: no cover - ACCESS is a constant
                raise ValueError(f"unknown access level {level!r} for {role} on {schema}")
    return stmts


#: Relation kinds whose ownership goes to the pipeline role: tables, partitioned tables, views,
#: materialized views, foreign tables, sequences (indexes and a table's own sequences follow their table).
_OWNED_KINDS = ("r", "p", "v", "m", "f", "S")
#: ALTER ... OWNER takes an exclusive lock: never queue behind a long dbt or load transaction for it. Below
#: PostgreSQL's deadlock_timeout (1 s): when a load that waits for this transaction holds the object, the ALTER
#: gives up (the object left to the next deploy) before the server breaks the cycle by failing one of the two.
OWNERSHIP_LOCK_TIMEOUT = "500ms"


def _objects_not_owned(conn: psycopg.Connection) -> list[tuple[str, sql.Composable]]:
    """(kind, qualified name) of every project-schema object not yet owned by the pipeline role."""
    rows = conn.execute(
        """
        select c.relkind::text, n.nspname, c.relname, null::text
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = any(%(schemas)s) and c.relkind::text = any(%(kinds)s)
           and c.relowner <> %(role)s::regrole
           and not (c.relkind = 'S' and exists (select from pg_depend d where d.classid = 'pg_class'::regclass
                                                 and d.objid = c.oid and d.deptype in ('a', 'i')))
        union all
        select 'function', n.nspname, p.proname, p.oid::regprocedure::text
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = any(%(schemas)s) and p.proowner <> %(role)s::regrole
        order by 1, 2, 3
        """, {"schemas": list(SCHEMAS), "kinds": list(_OWNED_KINDS), "role": PIPELINE}).fetchall()
    keyword = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "foreign table",
               "S": "sequence", "function": "function"}
    out: list[tuple[str, sql.Composable]] = []
    for kind, schema, name, signature in rows:
        target = (sql.SQL(signature) if signature is not None  # regprocedure text: already quoted
                  else sql.Identifier(schema, name))
        out.append((keyword[kind], target))
    return out


def hand_ownership(conn: psycopg.Connection) -> int:
    """Make ``ckp_pipeline`` own the project schemas and their tables, views, sequences and functions.

    The pipeline role *owns* and writes everything, so ownership (and with it ALTER, DROP,
    TRUNCATE, GRANT) does not hang on whichever admin user happened to create an object. The connecting
    user is made a member of ckp_pipeline first (it must be, to give objects away, and it keeps dropping
    and recreating them through dbt). Objects dbt recreates later are owned by the user dbt connects as
    until the next deploy runs this again; DEFAULT PRIVILEGES give ckp_pipeline full rights on them in
    between. Idempotent (only objects not yet owned are altered); an object locked by a running
    transaction is skipped after OWNERSHIP_LOCK_TIMEOUT and picked up by the next deploy. Returns the
    number of objects handed over.
    """
    me = conn.execute("select current_user").fetchone()[0]
    if me != PIPELINE and not conn.execute("select pg_has_role(current_user, %s, 'MEMBER')",
                                           (PIPELINE,)).fetchone()[0]:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(PIPELINE), sql.Identifier(me)))
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            pass  # granted concurrently by a deploy of another database on this server
    for schema in SCHEMAS:
        conn.execute(sql.SQL("alter schema {} owner to {}").format(sql.Identifier(schema), sql.Identifier(PIPELINE)))
    handed = 0
    for keyword, target in _objects_not_owned(conn):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(OWNERSHIP_LOCK_TIMEOUT)))
                conn.execute(sql.SQL("alter {} {} owner to {}").format(sql.SQL(keyword), target,
                                                                       sql.Identifier(PIPELINE)))
            handed += 1
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            # a deadlock: a task writing the object waits for this transaction (make test's run failed an ingest
            # DAG's prepare_warehouse on it); only this ALTER is undone, the rest of the hand-over stands
            log.warning("ownership: %s %s is busy; left to the next deploy", keyword, target.as_string(conn))
    if handed:
        log.info("ownership: %d object(s) handed to %s", handed, PIPELINE)
    return handed


def ensure_roles(url: str) -> list[str]:
    """Create the group roles (if missing), apply :data:`ACCESS` and hand ownership to ckp_pipeline in `url`.

    Idempotent and safe to run concurrently; returns the group role names.
    """
    with connect(url) as conn:
        advisory_lock(conn, _LOCK, transaction=True)
        for role in GROUP_ROLES:
            conn.execute(_create_group_sql(role))
        for stmt in grant_statements():
            conn.execute(stmt)
        hand_ownership(conn)
    log.info("warehouse roles ensured: %s", ", ".join(GROUP_ROLES))
    return list(GROUP_ROLES)


def _check_name(name: str) -> None:
    if not _ROLE_NAME_RE.match(name):
        raise ValueError(f"role name must match {_ROLE_NAME_RE.pattern!r}, got {name!r}")


#: The group roles a person or a tool may get a login for (the pipeline's own role is not handed out).
LOGIN_GROUPS: tuple[str, ...] = (BI_READER, AUDITOR, PRIVACY_OFFICER)


class LoginError(ValueError):
    """A login cannot be created as asked; the message says why (never containing a password)."""


def generate_password() -> str:
    """A random password safe in URLs and shells (32 characters, ~190 bits)."""
    import secrets

    return secrets.token_urlsafe(24)


def login_url(url: str, name: str, password: str | None = None) -> str:
    """`url` (the warehouse) with its user and password replaced by the login's (no password: none)."""
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = quote(name, safe="") + (f":{quote(password, safe='')}" if password else "")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("user", "password")])
    return parts._replace(netloc=f"{userinfo}@{host}", query=query).geturl()


def create_login(url: str, name: str, password: str | None, group: str) -> str:
    """Create (or update) LOGIN role `name`, member of group role `group`; returns "created" or "updated".

    `password` None makes a login without a password, for servers that authenticate it otherwise (a client
    certificate, `trust` or `peer` in pg_hba.conf); an existing login then loses its password. Refuses a
    name that is a group role, a privileged role (superuser, createrole, replication, bypassrls) or a
    login of another group, so it cannot be turned against an administrator's account. The caller needs
    CREATEROLE (or superuser) on the server; the group roles are created first if missing.
    """
    _check_name(name)
    if group not in GROUP_ROLES:
        raise LoginError(f"group must be one of {', '.join(GROUP_ROLES)}, got {group!r}")
    if name in GROUP_ROLES:
        raise LoginError("a login role cannot be one of the group roles")
    ident = sql.Identifier(name)
    with connect(url) as conn:
        advisory_lock(conn, _LOCK, transaction=True)
        for role in GROUP_ROLES:
            conn.execute(_create_group_sql(role))
        existing = conn.execute(
            """select r.rolsuper or r.rolcreaterole or r.rolreplication or r.rolbypassrls,
                      array(select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid
                             where m.member = r.oid order by 1)
                 from pg_roles r where r.rolname = %s""", (name,)).fetchone()
        if existing:
            privileged, groups = existing
            if privileged or name == conn.execute("select current_user").fetchone()[0]:
                raise LoginError(f"role {name!r} exists and is privileged: choose another name")
            others = [g for g in groups if g != group]
            if others:
                raise LoginError(f"role {name!r} exists and is a member of {', '.join(others)}: "
                                 "drop it first or choose another name")
        verb = "alter" if existing else "create"
        conn.execute(sql.SQL(verb + " role {} with login inherit password {}").format(
            ident, sql.Literal(password) if password is not None else sql.NULL))
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(group), ident))
    outcome = "updated" if existing else "created"
    log.info("login role %s %s, member of %s, %s", name, outcome, group,
             "with a password" if password is not None else "without a password")
    return outcome


def drop_login(url: str, name: str) -> None:
    """Drop LOGIN role `name` (after `drop owned` in the database at `url`).

    Only a login made for one of the group roles: never a group role, a privileged role or a role that is a
    member of none of the groups (an administrator's account, say), so a typo cannot drop the wrong role.
    """
    _check_name(name)
    if name in GROUP_ROLES:
        raise LoginError("refusing to drop a group role")
    ident = sql.Identifier(name)
    with connect(url) as conn:
        row = conn.execute(
            """select r.rolsuper or r.rolcreaterole or r.rolreplication or r.rolbypassrls,
                      exists (select from pg_auth_members m join pg_roles g on g.oid = m.roleid
                               where m.member = r.oid and g.rolname = any(%s))
                 from pg_roles r where r.rolname = %s""", (list(GROUP_ROLES), name)).fetchone()
        if row is None:
            return
        privileged, in_group = row
        if privileged or not in_group:
            raise LoginError(f"role {name!r} is not a login of {', '.join(GROUP_ROLES)}: not dropped")
        conn.execute(sql.SQL("drop owned by {}").format(ident))
        conn.execute(sql.SQL("drop role {}").format(ident))
