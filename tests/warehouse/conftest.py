"""Fixtures the warehouse tests share (the session's warehouse and scratch databases are in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import psycopg
import pytest

from crm_knowledge.settings import Settings
from crm_knowledge.warehouse.bootstrap import apply_ddl
from crm_knowledge.warehouse.db import connect


@pytest.fixture()
def wh(scratch_db) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a scratch database holding the warehouse's schemas (what the loaders are
    given). A module whose tests want the warehouse in another form defines its own `wh`."""
    apply_ddl(scratch_db)
    with connect(scratch_db, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def local(settings, tmp_path) -> Settings:
    """Settings whose home (quarantine, archive, reports) and landing folder live in this test's tmp_path."""
    return dataclasses.replace(settings, home=tmp_path / "home", landing_dir=tmp_path / "landing")
