"""Any reachable warehouse: a WAREHOUSE_URL without a password (trust, or a password file) and with libpq
parameters works for psycopg, dbt (profiles.yml), dbt through cosmos (the Airflow connection) and Great
Expectations, against a second, separately started PostgreSQL of another major version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from crm_knowledge import settings as settings_module

pytestmark = pytest.mark.warehouse

DBT = str(Path(sys.executable).with_name("dbt"))


@pytest.fixture()
def trust_url(passwordless_postgres) -> str:
    pg = passwordless_postgres
    return (f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/warehouse"
            "?sslmode=disable&application_name=ckp-any-warehouse&connect_timeout=7")


@pytest.fixture()
def pgpass_url(passwordless_postgres, tmp_path) -> str:
    """A user who needs a password, found in a password file named by the URL (no password in the URL)."""
    pg = passwordless_postgres
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{pg['host']}:{pg['port']}:*:{pg['pgpass_user']}:{pg['pgpass_password']}\n")
    passfile.chmod(0o600)
    return f"postgresql://{pg['pgpass_user']}@{pg['host']}:{pg['port']}/warehouse?passfile={passfile}"


def _settings(monkeypatch, url: str, tmp_path: Path):
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("CKP_HOME", str(tmp_path / "home"))
    for var in ("PGPASSWORD", "PGPASSFILE", "PGSSLMODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass of this machine's user can help
    return settings_module.get_settings()


def _dbt_debug(env: dict[str, str], profiles_dir: Path, tmp_path: Path, project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([DBT, "debug", "--project-dir", str(project), "--profiles-dir", str(profiles_dir),
                           "--log-path", str(tmp_path / "dbt-logs")], env=env, capture_output=True, text=True,
                          timeout=300, check=False, cwd=tmp_path)


def test_the_second_server_is_another_major_version(passwordless_postgres, settings, warehouse):
    with psycopg.connect(warehouse) as conn:
        embedded = int(conn.execute("show server_version_num").fetchone()[0]) // 10000
    assert passwordless_postgres["version"] // 10000 != embedded
    assert passwordless_postgres["version"] >= 150000


@pytest.mark.parametrize("which", ["trust", "pgpass"])
def test_psycopg_and_dbt_reach_it_without_a_password(which, trust_url, pgpass_url, monkeypatch, tmp_path):
    url = trust_url if which == "trust" else pgpass_url
    s = _settings(monkeypatch, url, tmp_path)
    assert s.warehouse_url == url and "password" not in s.redacted_url()
    from crm_knowledge.warehouse import db

    with db.connect() as conn:
        assert conn.execute("select current_database()").fetchone() == ("warehouse",)
    env = s.dbt_env()
    assert env["CKP_DBT_PASSWORD"] == ""
    if which == "trust":
        assert (env["CKP_DBT_SSLMODE"], env["CKP_DBT_APPLICATION_NAME"], env["CKP_DBT_CONNECT_TIMEOUT"]) == (
            "disable", "ckp-any-warehouse", "7")
    else:
        assert env["PGPASSFILE"].endswith("pgpass")  # a libpq parameter dbt has no field for
    res = _dbt_debug({**os.environ, **env}, s.dbt_project_dir, tmp_path, s.dbt_project_dir)
    assert res.returncode == 0 and "All checks passed" in res.stdout, res.stdout[-3000:]


def test_a_wrong_password_file_is_refused(pgpass_url, monkeypatch, tmp_path):
    """The control of the test above: the password file is what lets pgpass_user in."""
    Path(pgpass_url.rpartition("passfile=")[2]).write_text("nothing:1:*:else:here\n")
    s = _settings(monkeypatch, pgpass_url, tmp_path)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(s.warehouse_url, connect_timeout=5)
    res = _dbt_debug({**os.environ, **s.dbt_env()}, s.dbt_project_dir, tmp_path, s.dbt_project_dir)
    assert res.returncode != 0


def test_cosmos_profile_without_a_password(trust_url, monkeypatch, tmp_path):
    """The profile cosmos writes for the dbt tasks, from the Airflow connection `warehouse`, with dbt itself."""
    from crm_knowledge.warehouse.cosmos_profile import WarehouseProfileMapping

    s = _settings(monkeypatch, trust_url, tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", trust_url)
    mapping = WarehouseProfileMapping(conn_id="warehouse", profile_args={"schema": "public"})
    profile = mapping.profile
    assert profile["password"] == "" and mapping.env_vars == {}
    assert (profile["host"], profile["user"], profile["dbname"], profile["sslmode"]) == (
        "127.0.0.1", "pipeline", "warehouse", "disable")
    assert (profile["application_name"], profile["connect_timeout"], profile["schema"]) == (
        "ckp-any-warehouse", 7, "public")
    profiles_dir = tmp_path / "cosmos-profile"
    profiles_dir.mkdir()
    (profiles_dir / "profiles.yml").write_text(
        mapping.get_profile_file_contents("crm_knowledge", "warehouse"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKP_DBT_")}
    res = _dbt_debug({**env, **mapping.env_vars}, profiles_dir, tmp_path, s.dbt_project_dir)
    assert res.returncode == 0 and "All checks passed" in res.stdout, res.stdout[-3000:]


def test_cosmos_profile_keeps_a_password_out_of_the_file(monkeypatch):
    from crm_knowledge.warehouse.cosmos_profile import WarehouseProfileMapping

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE",
                       "postgresql://u:s3cret@db.example:6432/wh?sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write")
    mapping = WarehouseProfileMapping(conn_id="warehouse")
    text = mapping.get_profile_file_contents("crm_knowledge", "warehouse")
    assert "s3cret" not in text
    assert yaml.safe_load(text)["crm_knowledge"]["outputs"]["warehouse"]["password"] == (
        "{{ env_var('COSMOS_CONN_POSTGRES_PASSWORD') }}")
    assert mapping.env_vars == {"COSMOS_CONN_POSTGRES_PASSWORD": "s3cret", "PGTARGETSESSIONATTRS": "read-write"}
    assert mapping.profile["sslrootcert"] == "/etc/ca.pem" and mapping.profile["port"] == 6432


def test_unknown_libpq_parameter_is_named(monkeypatch, tmp_path):
    s = _settings(monkeypatch, "postgresql://u@h/db?tcp_user_timeout=5", tmp_path)
    with pytest.raises(ValueError, match="tcp_user_timeout"):
        s.dbt_env()


def test_great_expectations_checks_it_without_a_password(trust_url, monkeypatch, tmp_path):
    s = _settings(monkeypatch, trust_url, tmp_path)
    with psycopg.connect(s.warehouse_url, autocommit=True) as conn:
        conn.execute("create table if not exists public.gx_probe (id int)")
        conn.execute("truncate public.gx_probe")
        conn.execute("insert into public.gx_probe values (1), (2), (3)")
    import great_expectations as gx

    from crm_knowledge.quality.context import DATASOURCE_NAME, build_context

    context = build_context(s)
    asset = context.data_sources.get(DATASOURCE_NAME).add_table_asset("gx_probe", table_name="gx_probe",
                                                                      schema_name="public")
    batch = asset.add_batch_definition_whole_table("all").get_batch()
    result = batch.validate(gx.expectations.ExpectTableRowCountToEqual(value=3))
    assert result.success, result


def test_cosmos_profile_with_a_password_reaches_the_embedded_warehouse(warehouse, settings, monkeypatch, tmp_path):
    """The other side: a connection with a password (the embedded server's) works through the same mapping,
    the password only in dbt's environment."""
    from urllib.parse import urlsplit

    from crm_knowledge.warehouse.cosmos_profile import WarehouseProfileMapping

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", warehouse)
    mapping = WarehouseProfileMapping(conn_id="warehouse", profile_args={"schema": "public"})
    text = mapping.get_profile_file_contents("crm_knowledge", "warehouse")
    password = urlsplit(warehouse).password
    assert password and password not in text
    profiles_dir = tmp_path / "cosmos-profile"
    profiles_dir.mkdir()
    (profiles_dir / "profiles.yml").write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CKP_DBT_", "PG"))}
    res = _dbt_debug({**env, **mapping.env_vars}, profiles_dir, tmp_path, settings.dbt_project_dir)
    assert res.returncode == 0 and "All checks passed" in res.stdout, res.stdout[-3000:]
