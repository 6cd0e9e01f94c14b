"""`ckp access create-login`: BI tools, auditors and privacy officers get a login of their own.

Run as the operator runs it (the `ckp` command in a subprocess, against a scratch warehouse named by
WAREHOUSE_URL); the login it prints then connects over TCP with the generated password and reads what its
group may, and is refused what it may not (the BI reader never reaches the pii vault or the audit schema).
"""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest
from ckp_cli import ckp_env, run_ckp
from role_access import CAN_READ, assert_reads_exactly, create_tables

from crm_knowledge.privacy import roles
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse


def on(url: str) -> dict[str, str]:
    """The environment of a `ckp` run against the warehouse at `url`."""
    return ckp_env(WAREHOUSE_URL=url)


@pytest.fixture()
def wh(scratch_db):
    apply_ddl(scratch_db)
    create_tables(scratch_db)
    return scratch_db


@pytest.fixture()
def names(wh):
    made: list[str] = []

    def name(prefix: str) -> str:
        made.append(f"t_{prefix}_{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield name
    for n in made:
        roles.drop_login(wh, n)


def connect_url(stdout: str) -> str:
    m = re.search(r"^connect as: (\S+)$", stdout, re.M)
    assert m, stdout
    return m.group(1)


@pytest.mark.parametrize("group", list(CAN_READ))
def test_the_login_connects_and_reads_only_what_its_role_may(wh, names, group):
    name = names(group.removeprefix("ckp_"))
    res = run_ckp("access", "create-login", group, name, env=on(wh), timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"login {name} created: member of {group}" in res.stdout
    url = connect_url(res.stdout)
    password = psycopg.conninfo.conninfo_to_dict(url)["password"]
    assert len(password) >= 24 and "shown only now" in res.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        assert_reads_exactly(conn, name, CAN_READ[group])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into marts.t values (2, 'x')")
    # The admin's password is not in what was printed.
    admin_pw = psycopg.conninfo.conninfo_to_dict(wh).get("password")
    assert admin_pw and admin_pw not in res.stdout + res.stderr


def test_running_again_sets_a_new_password_and_drop_removes_the_login(wh, names):
    name = names("bi")
    first = connect_url(run_ckp("access", "create-login", roles.BI_READER, name, env=on(wh), timeout=120).stdout)
    again = run_ckp("access", "create-login", roles.BI_READER, name, env=on(wh), timeout=120)
    assert again.returncode == 0 and f"login {name} updated" in again.stdout
    with psycopg.connect(connect_url(again.stdout)) as conn:
        assert conn.execute("select count(*) from marts.t").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(first).close()
    dropped = run_ckp("access", "drop-login", name, env=on(wh), timeout=120)
    assert dropped.returncode == 0, dropped.stderr
    with psycopg.connect(wh) as conn:
        assert conn.execute("select count(*) from pg_roles where rolname = %s", (name,)).fetchone() == (0,)


def test_no_password_login_for_certificate_or_trust_setups(wh, names):
    name = names("cert")
    res = run_ckp("access", "create-login", roles.AUDITOR, name, "--no-password", env=on(wh), timeout=120)
    assert res.returncode == 0, res.stderr
    url = connect_url(res.stdout)
    assert psycopg.conninfo.conninfo_to_dict(url).get("password") is None and f"//{name}@" in url
    assert "client certificate" in res.stderr
    with psycopg.connect(wh) as conn:
        row = conn.execute("select a.rolcanlogin, a.rolpassword is null, pg_has_role(a.oid, %s, 'member') "
                           "from pg_authid a where a.rolname = %s", (roles.AUDITOR, name)).fetchone()
    assert row == (True, True, True)
    # This server wants a password over TCP (scram): a login without one cannot get in that way.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, password="guess", connect_timeout=5).close()


def test_refuses_what_is_not_a_login_for_these_roles(wh, names):
    admin = psycopg.conninfo.conninfo_to_dict(wh)["user"]
    res = run_ckp("access", "create-login", roles.BI_READER, admin, env=on(wh), timeout=120)
    assert res.returncode == 1 and "privileged" in res.stderr
    res = run_ckp("access", "create-login", roles.PIPELINE, names("pipe"), env=on(wh), timeout=120)
    assert res.returncode == 2 and "invalid choice" in res.stderr
    name = names("aud")
    assert run_ckp("access", "create-login", roles.AUDITOR, name, env=on(wh), timeout=120).returncode == 0
    res = run_ckp("access", "create-login", roles.PRIVACY_OFFICER, name, env=on(wh), timeout=120)
    assert res.returncode == 1 and f"member of {roles.AUDITOR}" in res.stderr
    res = run_ckp("access", "create-login", roles.BI_READER, "Bad-Name", env=on(wh), timeout=120)
    assert res.returncode == 1 and "role name must match" in res.stderr


def test_drop_login_never_drops_an_administrator(wh):
    admin = psycopg.conninfo.conninfo_to_dict(wh)["user"]
    res = run_ckp("access", "drop-login", admin, env=on(wh), timeout=120)
    assert res.returncode == 1 and "not a login of" in res.stderr
    with psycopg.connect(wh) as conn:
        assert conn.execute("select count(*) from pg_roles where rolname = %s", (admin,)).fetchone() == (1,)
