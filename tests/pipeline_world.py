"""Scratch databases for module-scoped fixtures, and a test's own pipeline world (the erasure tests): scratch
warehouse and orders databases on the session's test server, configured as an external warehouse the way a
deployment sets one (WAREHOUSE_URL, CKP_ORDERS_URL), with its own CKP_HOME; files planted in its landing zone;
the ingest DAGs' bodies run on it.

A test that needs one empty database uses the `scratch_db` fixture."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from crm_knowledge.settings import Settings


@contextmanager
def scratch_database(settings: Settings, prefix: str) -> Iterator[str]:
    """A fresh, empty database `<prefix>_<random>` on the session's test server for a module-scoped fixture (the
    `scratch_db` fixture serves one test); its URL. Dropped on leaving."""
    admin = settings.server_url("postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield settings.server_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@contextmanager
def external_scratch_warehouse(settings: Settings, prefix: str, home: Path) -> Iterator[pytest.MonkeyPatch]:
    """Scratch warehouse and orders databases, with the environment pointed at them (CKP_HOME and AIRFLOW_HOME
    under `home`, the landing zone in it); yields the MonkeyPatch, for more settings. On leaving, the
    environment is restored and the databases are dropped."""
    with scratch_database(settings, prefix) as warehouse_url, \
            scratch_database(settings, f"{prefix}_orders") as orders_url:
        mp = pytest.MonkeyPatch()
        try:
            mp.setenv("WAREHOUSE_URL", warehouse_url)
            mp.setenv("CKP_ORDERS_URL", orders_url)
            mp.setenv("CKP_HOME", str(home))
            mp.setenv("AIRFLOW_HOME", str(home / "airflow"))
            mp.delenv("CKP_LANDING_DIR", raising=False)
            yield mp
        finally:
            mp.undo()

def write_csv(path: Path, header: list[str], rows: list[list], **kw) -> None:
    """A CSV file as a source delivers it: `encoding` (default UTF-8) and csv.writer's options in `kw`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = kw.pop("encoding", "utf-8")
    with open(path, "w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh, **kw)
        w.writerow(header)
        w.writerows(rows)


def ingest_sources(file_sources: tuple[str, ...]) -> None:
    """The ingest DAGs' bodies: each file source named, then the orders database."""
    from crm_knowledge.ingest.tasks import ingest_file_source, ingest_orders_database

    for name in file_sources:
        ingest_file_source(name)
    ingest_orders_database("orders")
