"""Identity resolution accuracy on demo data, end to end: generate -> ingest -> dbt -> resolve -> evaluate.

Locks in the pairwise quality reached on the demo generator's messiness (typos, swapped names, Persian
and Latin scripts, nicknames, changed e-mails / phones, fuzzy-only records) and id stability across runs.
Everything is private to the test: landing zone and ground truth under tmp_path, a scratch warehouse
database and a scratch orders database.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from crm_knowledge.demo import generate
from crm_knowledge.identity import store
from crm_knowledge.identity.report import evaluation_metrics
from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.orders_db import extract_orders_db
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

PERSONS = 800
SEED = 42
FILE_KINDS = ("forms", "sibling_unit", "contacts", "order_export")


def _dbt_build(settings, tmp_path: Path) -> None:
    """Seeds, staging and the identity candidates (tag identity_input), built into the scratch warehouse."""
    env = {**os.environ, **settings.dbt_env()}
    dbt = Path(sys.executable).with_name("dbt")
    cmd = [str(dbt), "build", "--project-dir", str(settings.dbt_project_dir),
           "--select", "path:seeds", "path:models/staging", "tag:identity_input",
           "--exclude-resource-type", "test", "unit_test",
           "--target-path", str(tmp_path / "dbt_target"), "--log-path", str(tmp_path / "dbt_logs")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"dbt build failed:\n{res.stdout[-6000:]}\n{res.stderr[-2000:]}"


def _clusters(url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select source_system, source_record_id, customer_id from identity.record_clusters"
                            ).fetchall()
    return {(s, r): c for s, r, c in rows}


@pytest.fixture()
def demo_warehouse(settings, scratch_db_factory, tmp_path, monkeypatch):
    """Settings pointing at a scratch warehouse and a scratch orders database, with the demo generated,
    ingested and the identity candidates built."""
    monkeypatch.delenv("CKP_ORDERS_URL", raising=False)  # the orders source would read it instead
    wh_url, orders_url = scratch_db_factory(), scratch_db_factory()
    s = dataclasses.replace(settings, home=tmp_path / "home", landing_dir=tmp_path / "landing",
                            external_warehouse_url=wh_url, external_orders_url=orders_url)
    generate(PERSONS, seed=SEED, settings=s)
    apply_ddl(wh_url)
    for cfg in load_registry():
        if cfg.kind in FILE_KINDS:
            ingest_source(cfg, url=wh_url, settings=s)
        elif cfg.kind == "orders_db":
            extract_orders_db(cfg, settings=s)
    _dbt_build(s, tmp_path)
    return s


def test_demo_identity_accuracy_and_stable_ids(demo_warehouse):
    s = demo_warehouse
    url = s.warehouse_url
    with psycopg.connect(url) as conn:
        n_candidates = conn.execute("select count(*) from intermediate.int_identity_candidates").fetchone()[0]
    assert n_candidates > 4 * PERSONS  # every source made it through ingestion and staging

    t0 = time.monotonic()
    stats = store.run(url)
    elapsed = time.monotonic() - t0
    m = evaluation_metrics(s, url=url)
    report = (f"precision {m['precision']:.4f} recall {m['recall']:.4f} F1 {m['f1']:.4f}, "
              f"{m['persons_split']} persons split, {m['customers_merging_persons']} customers merging persons, "
              f"{m['unresolved_records']} unresolved, resolved in {elapsed:.1f}s")
    print(f"demo identity accuracy: {report}")
    assert m["records"] >= n_candidates, report
    assert m["precision"] >= 0.99, report
    assert m["f1"] >= 0.98, report
    # the demo plants ~0.5% records with a name only, plus a few with only a junk phone; nothing else
    # should be left unresolved
    assert m["unresolved_records"] <= 0.015 * m["records"], report
    assert stats["probabilistic"]["trained"], stats
    assert stats["oversized_clusters"] == 0, stats

    # a second full run on the same data keeps every customer_id and merges nothing
    first = _clusters(url)
    again = store.run(url)
    assert _clusters(url) == first
    assert again["merges"] == 0 and again["new_customer_ids"] == 0 and again["split_records"] == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from identity.customer_id_merges").fetchone()[0] == 0
