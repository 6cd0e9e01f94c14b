"""The demo as identity resolution's input, in a scratch warehouse: generated, ingested and staged by dbt.

One way to build it for the identity tests (tests/warehouse/test_identity_accuracy.py, test_identity_spark.py);
importable from every test module (pytest puts `tests/`, the folder of the root conftest, on sys.path).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dbt_runs import build_stages

from crm_knowledge import dbt_stages
from crm_knowledge.demo import generate
from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.orders_db import extract_orders_db
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.settings import Settings
from crm_knowledge.warehouse.bootstrap import apply_ddl

FILE_KINDS = ("forms", "sibling_unit", "contacts", "order_export")


def build_demo_warehouse(settings: Settings, wh_url: str, orders_url: str, tmp_path: Path, *, persons: int,
                         seed: int = 42) -> Settings:
    """Settings pointing at `wh_url` (a scratch warehouse) and `orders_url` (a scratch orders database), with
    the demo of `persons` generated into them (landing zone and ground truth under `tmp_path`), every source
    ingested and the identity candidates built. The caller unsets CKP_ORDERS_URL (the orders source would
    read it instead)."""
    s = dataclasses.replace(settings, home=tmp_path / "home", landing_dir=tmp_path / "landing",
                            external_warehouse_url=wh_url, external_orders_url=orders_url)
    generate(persons, seed=seed, settings=s, overwrite_external_db=True)  # scratch databases
    apply_ddl(wh_url)
    for cfg in load_registry():
        if cfg.kind in FILE_KINDS:
            ingest_source(cfg, url=wh_url, settings=s)
        elif cfg.kind == "orders_db":
            extract_orders_db(cfg, settings=s)
    build_stages(s, tmp_path, dbt_stages.STAGING, with_tests=False)  # the matcher's input
    return s
