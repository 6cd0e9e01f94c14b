"""The demo never touches a database it did not create: with CKP_ORDERS_URL or WAREHOUSE_URL set, `ckp demo`,
`python -m crm_knowledge.demo` and `ckp run` refuse (non-zero exit, the database named, its tables untouched)
unless `--overwrite-external-db` is given. Each command runs as a user runs it: a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from crm_knowledge.demo.guard import OVERWRITE_FLAG
from crm_knowledge.settings import PROJECT_ROOT

pytestmark = pytest.mark.warehouse

CKP = [sys.executable, "-m", "crm_knowledge.cli"]
DEMO_MODULE = [sys.executable, "-m", "crm_knowledge.demo"]


@pytest.fixture()
def real_orders_db(scratch_db) -> str:
    """Someone's order system: tables named like the demo's, holding rows that are not ours."""
    with psycopg.connect(scratch_db) as conn:
        conn.execute("create table customers (customer_id integer primary key, note text)")
        conn.execute("insert into customers values (1, 'a real customer'), (2, 'another one')")
        conn.execute("create table orders (order_id integer primary key, customer_id integer)")
        conn.execute("insert into orders values (10, 1)")
    return scratch_db


def _tables(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"select * from {t} order by 1").fetchall() for t in ("customers", "orders")}


def _run(cmd: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "CKP_ORDERS_URL", "CKP_LANDING_DIR")}
    full.update({"PYTHONPATH": str(PROJECT_ROOT / "plugins"), "CKP_HOME": str(tmp_path / "home"), **env})
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=600, check=False,
                          cwd=tmp_path)


def _named(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}/{parts.path.lstrip('/')}"


@pytest.mark.parametrize("cmd", [CKP + ["demo", "--size", "30"], DEMO_MODULE + ["--size", "30"]],
                         ids=["ckp demo", "python -m crm_knowledge.demo"])
def test_demo_refuses_an_orders_database_named_by_ckp_orders_url(cmd, real_orders_db, tmp_path):
    before = _tables(real_orders_db)
    res = _run(cmd, tmp_path, CKP_ORDERS_URL=real_orders_db)
    assert res.returncode != 0, res.stdout
    assert _named(real_orders_db) in res.stderr, res.stderr
    assert "CKP_ORDERS_URL" in res.stderr and OVERWRITE_FLAG in res.stderr
    password = urlsplit(real_orders_db).password
    assert password and password not in res.stderr + res.stdout
    assert _tables(real_orders_db) == before
    # refused before anything was written: no landing files, no embedded cluster in the fresh home
    assert not (tmp_path / "home" / "landing").exists()
    assert not (tmp_path / "home" / "warehouse").exists()


def test_run_refuses_an_external_warehouse(scratch_db_factory, tmp_path):
    warehouse_url = scratch_db_factory()
    orders_url = urlsplit(warehouse_url)._replace(path="/orders").geturl()
    res = _run(CKP + ["run", "--size", "30"], tmp_path, WAREHOUSE_URL=warehouse_url)
    assert res.returncode != 0, res.stdout
    assert f"warehouse {_named(warehouse_url)}" in res.stderr, res.stderr
    assert f"orders database {_named(orders_url)}" in res.stderr, res.stderr  # the warehouse server's `orders`
    assert urlsplit(warehouse_url).password not in res.stderr + res.stdout
    with psycopg.connect(warehouse_url) as conn:  # nothing was bootstrapped
        schemas = conn.execute("select count(*) from pg_namespace where nspname in ('raw', 'marts', 'audit')")
        assert schemas.fetchone()[0] == 0
    assert not (tmp_path / "home" / "airflow").exists()


def test_demo_writes_an_external_orders_database_with_the_flag(real_orders_db, tmp_path):
    res = _run(CKP + ["demo", "--size", "30", OVERWRITE_FLAG], tmp_path, CKP_ORDERS_URL=real_orders_db)
    assert res.returncode == 0, res.stderr[-3000:]
    with psycopg.connect(real_orders_db) as conn:
        columns = [r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_name = 'customers' "
            "order by ordinal_position")]
        n = conn.execute("select count(*) from customers").fetchone()[0]
        orders = conn.execute("select count(*) from orders").fetchone()[0]
    assert "email" in columns and "note" not in columns  # the demo's table replaced the one that was there
    assert 10 < n < 30 and orders > n
    assert (tmp_path / "home" / "landing" / "forms").is_dir()
    # what the command wrote holds personal data: 0600 files in 0700 folders
    written = [p for p in (tmp_path / "home").rglob("*")]
    assert len(written) > 8
    assert {oct(p.stat().st_mode & 0o777) for p in written if p.is_file()} == {"0o600"}
    assert {oct(p.stat().st_mode & 0o777) for p in written if p.is_dir()} == {"0o700"}
