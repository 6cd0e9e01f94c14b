"""Warehouse access roles (crm_knowledge.privacy.roles) on a real PostgreSQL.

Each group role gets a LOGIN member that connects over TCP with a password (scram) and tries to read
tables in marts, pii, raw and audit. The login roles are unique per run and dropped afterwards; the
group roles are cluster-wide and shared, so they are never dropped.
"""

from __future__ import annotations

import functools
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import role_access
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from crm_knowledge.privacy import roles
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

TABLES = ("marts.t", "pii.p", "raw.r", "audit.a")

#: group role -> tables it must be able to read (all others in TABLES: InsufficientPrivilege)
CAN_READ = {**role_access.CAN_READ, roles.PIPELINE: set(TABLES)}


def url_as(url: str, user: str, password: str) -> str:
    params = conninfo_to_dict(url)
    params.update(user=user, password=password)
    return make_conninfo(**params)


@pytest.fixture()
def roles_db(scratch_db) -> str:
    apply_ddl(scratch_db)
    assert roles.ensure_roles(scratch_db) == list(roles.GROUP_ROLES)
    assert roles.ensure_roles(scratch_db) == list(roles.GROUP_ROLES)
    # created after ensure_roles: only default privileges can make marts.t readable
    role_access.create_tables(scratch_db, TABLES)
    return scratch_db


@pytest.fixture()
def logins(roles_db) -> Iterator[dict[str, tuple[str, str]]]:
    """group role -> (login name, password), one fresh LOGIN role per group; dropped at teardown."""
    run = uuid.uuid4().hex[:10]
    made: dict[str, tuple[str, str]] = {}
    try:
        for group in roles.GROUP_ROLES:
            name, password = f"t_{group}_{run}", secrets.token_urlsafe(18)
            roles.create_login(roles_db, name, password, group)
            made[group] = (name, password)
        yield made
    finally:
        for name, _ in made.values():
            roles.drop_login(roles_db, name)
        with psycopg.connect(roles_db) as conn:
            left = conn.execute("select rolname from pg_roles where rolname like %s", (f"%{run}",)).fetchall()
            groups = conn.execute("select count(*) from pg_roles where rolname = any(%s)", (list(roles.GROUP_ROLES),))
            assert left == []
            assert groups.fetchone()[0] == len(roles.GROUP_ROLES)


def test_group_roles_exist_nologin(roles_db):
    with psycopg.connect(roles_db) as conn:
        rows = dict(
            conn.execute(
                "select rolname, rolcanlogin from pg_roles where rolname = any(%s)", (list(roles.GROUP_ROLES),)
            ).fetchall()
        )
    assert rows == {role: False for role in roles.GROUP_ROLES}


@pytest.mark.parametrize("group", list(CAN_READ))
def test_each_group_reads_exactly_its_schemas(roles_db, logins, group):
    name, password = logins[group]
    with psycopg.connect(url_as(roles_db, name, password), autocommit=True) as conn:
        role_access.assert_reads_exactly(conn, name, CAN_READ[group], TABLES)


def test_readers_cannot_write_or_create(roles_db, logins):
    for group in (roles.BI_READER, roles.AUDITOR, roles.PRIVACY_OFFICER):
        name, password = logins[group]
        with psycopg.connect(url_as(roles_db, name, password), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("insert into marts.t values (2, 'x')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("create table marts.mine (id int)")


def test_pipeline_writes_everywhere(roles_db, logins):
    name, password = logins[roles.PIPELINE]
    with psycopg.connect(url_as(roles_db, name, password), autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"insert into {table} values (2, 'pipeline')")
        for schema in roles.SCHEMAS:
            conn.execute(f"create table {schema}.made_by_pipeline (id int)")
            conn.execute(f"drop table {schema}.made_by_pipeline")


def test_public_has_no_access_to_private_schemas(roles_db):
    with psycopg.connect(roles_db) as conn:
        for schema in roles.PRIVATE_SCHEMAS:
            assert conn.execute("select has_schema_privilege('public', %s, 'USAGE')", (schema,)).fetchone() == (False,)


def test_missing_schemas_are_created(scratch_db):
    # no apply_ddl: ensure_roles must not fail on an empty database
    roles.ensure_roles(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        present = {r[0] for r in conn.execute("select nspname from pg_namespace").fetchall()}
    assert set(roles.SCHEMAS) <= present


def at_once(calls: list[Callable[[], object]]) -> list[BaseException]:
    """Run the calls in threads started together (each waits at a barrier first); the errors they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_ensure_roles(scratch_db_factory):
    urls = [scratch_db_factory(), scratch_db_factory()]
    assert at_once([functools.partial(roles.ensure_roles, urls[i % 2]) for i in range(6)]) == []


def test_four_ingests_preparing_the_warehouse_at_once_never_race(scratch_db):
    """The four ingest DAGs start together and each applies the DDL, roles and grants (prepare_warehouse):
    one schema-change lock for all of it, so none fails with `tuple concurrently updated`. A fresh database
    (everything created) and then an existing one (functions replaced, ownership and grants re-applied)."""
    for _round in range(2):
        errors = at_once([functools.partial(apply_ddl, scratch_db) for _ in range(4)])
        assert errors == [], errors


def test_concurrent_group_creation_tolerated(scratch_db_factory):
    """The guarded CREATE ROLE survives racing creators in different databases (advisory locks are per database)."""
    urls = [scratch_db_factory(), scratch_db_factory()]
    role = f"t_group_{uuid.uuid4().hex[:10]}"
    connected = threading.Barrier(4)

    def create(url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            connected.wait()  # all four connected: the CREATE ROLEs race
            conn.execute(roles._create_group_sql(role))

    try:
        assert at_once([functools.partial(create, urls[i % 2]) for i in range(4)]) == []
        with psycopg.connect(urls[0]) as conn:
            assert conn.execute("select rolcanlogin from pg_roles where rolname = %s", (role,)).fetchall() == [(False,)]
    finally:
        with psycopg.connect(urls[0], autocommit=True) as conn:
            conn.execute(f'drop role if exists "{role}"')


def test_create_login_is_idempotent_and_validates(roles_db):
    name = f"t_login_{uuid.uuid4().hex[:10]}"
    try:
        roles.create_login(roles_db, name, "first-password", roles.BI_READER)
        roles.create_login(roles_db, name, "second-password", roles.BI_READER)
        with psycopg.connect(url_as(roles_db, name, "second-password")) as conn:
            assert conn.execute("select count(*) from marts.t").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url_as(roles_db, name, "first-password")).close()
    finally:
        roles.drop_login(roles_db, name)
    with pytest.raises(ValueError):
        roles.create_login(roles_db, "x", "pw", "postgres")
    with pytest.raises(ValueError):
        roles.create_login(roles_db, "bad name; drop", "pw", roles.BI_READER)
    with pytest.raises(ValueError):
        roles.drop_login(roles_db, roles.PIPELINE)


def _not_owned_by_pipeline(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """select 'schema ' || nspname from pg_namespace where nspname = any(%(s)s)
                  and nspowner <> %(r)s::regrole
               union all
               select c.relkind::text || ' ' || n.nspname || '.' || c.relname from pg_class c
                 join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = any(%(s)s) and c.relkind in ('r', 'v', 'm', 'S', 'p')
                  and c.relowner <> %(r)s::regrole
               union all
               select 'function ' || p.oid::regprocedure::text from pg_proc p
                 join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = any(%(s)s) and p.proowner <> %(r)s::regrole
               order by 1""", {"s": list(roles.SCHEMAS), "r": roles.PIPELINE}).fetchall()
    return [r[0] for r in rows]


def test_pipeline_owns_schemas_tables_views_sequences_and_functions(roles_db):
    # roles_db: apply_ddl + ensure_roles, then four tables created afterwards by the admin user
    with psycopg.connect(roles_db) as conn:
        conn.execute("create view marts.v as select id from marts.t")
        conn.execute("create sequence scoring.s")
        conn.execute("create table audit.with_serial (id serial primary key)")
        owner = conn.execute("select tableowner from pg_tables where schemaname = 'marts' and tablename = 't'")
        assert owner.fetchone()[0] != roles.PIPELINE  # made by the admin after the deploy ...
        assert conn.execute("select has_table_privilege(%s, 'marts.t', 'INSERT, DELETE, TRUNCATE')",
                            (roles.PIPELINE,)).fetchone()[0]  # ... yet fully usable by the pipeline meanwhile
    assert len(_not_owned_by_pipeline(roles_db)) >= 7
    roles.ensure_roles(roles_db)  # the next deploy hands everything over
    assert _not_owned_by_pipeline(roles_db) == []
    with psycopg.connect(roles_db) as conn:
        util_owned = conn.execute("select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                                  "where n.nspname = 'util' and p.proowner = %s::regrole", (roles.PIPELINE,))
        assert util_owned.fetchone()[0] > 5
        # idempotent: nothing left to hand over
        assert roles.hand_ownership(conn) == 0
        # the admin (dbt's user) still rebuilds pipeline-owned tables: it is a member of ckp_pipeline
        assert conn.execute("select pg_has_role(current_user, %s, 'MEMBER')", (roles.PIPELINE,)).fetchone()[0]
        conn.execute("drop view marts.v")
        conn.execute("alter table marts.t rename to t_old")
        conn.execute("create table marts.t as select * from marts.t_old")
        conn.execute("drop table marts.t_old")


def test_pipeline_login_can_alter_what_it_owns(roles_db, logins):
    roles.ensure_roles(roles_db)
    name, password = logins[roles.PIPELINE]
    with psycopg.connect(url_as(roles_db, name, password), autocommit=True) as conn:
        conn.execute("alter table raw.r add column extra text")  # only an owner (member) may
        conn.execute("truncate audit.a")
    name, password = logins[roles.AUDITOR]
    with psycopg.connect(url_as(roles_db, name, password), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("alter table audit.a add column extra text")


def test_a_writer_waiting_for_the_hand_over_never_deadlocks_it(roles_db):
    """make test's run failed an ingest DAG's prepare_warehouse on a deadlock: the hand-over's transaction held one
    table (ALTER ... OWNER) while it waited for another that a second session held, and that session then waited
    for the first table. The hand-over's wait gives up before PostgreSQL's deadlock check (deadlock_timeout, 1 s):
    the busy table is left to the next deploy, the rest is handed over, and the other session goes on."""
    with psycopg.connect(roles_db) as conn:
        conn.execute("create table marts.a_first (id int)")
        conn.execute("create table marts.b_second (id int)")
    other = psycopg.connect(roles_db)
    other.execute("lock table marts.b_second in access share mode")  # a load's open transaction on b_second
    read: list[object] = []

    def reads_a_first_soon() -> None:  # then it needs a_first, which the hand-over holds by then
        threading.Event().wait(0.2)
        try:
            read.append(other.execute("select count(*) from marts.a_first").fetchone()[0])
        except psycopg.Error as exc:
            read.append(exc)
        other.commit()

    waiter = threading.Thread(target=reads_a_first_soon)
    waiter.start()
    try:
        with psycopg.connect(roles_db) as conn:
            handed = roles.hand_ownership(conn)  # a_first first (by name), then waits for b_second
    finally:
        waiter.join(timeout=30)
        other.close()
    assert read == [0], read  # the other session was not the deadlock's victim either
    left = _not_owned_by_pipeline(roles_db)
    assert "r marts.b_second" in left and "r marts.a_first" not in left, left
    assert handed >= 1
