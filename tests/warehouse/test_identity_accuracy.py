"""Identity resolution accuracy, end to end: generate -> ingest -> dbt -> resolve -> evaluate, on two data sets.

* The demo: locks in the pairwise quality reached on the demo generator's messiness (typos, swapped names,
  Persian and Latin scripts, nicknames, changed e-mails / phones, fuzzy-only records) and id stability.
* The overseas units (crm_knowledge.demo.overseas_units, an independent noise model): English names and
  addresses, heavier corruption, a 7-digit social-security-style number on some records, added as two
  sibling units by configuration alone (config/examples/overseas_units) with the number declared as an
  identifier kind; and `ckp identity-eval` writing Splink's charts for that run.

Everything is private to the tests: landing zone and ground truth under tmp_path, scratch databases.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import yaml
from dbt_runs import build_stages
from demo_warehouse import build_demo_warehouse

from crm_knowledge import dbt_stages
from crm_knowledge.demo import overseas_units
from crm_knowledge.identity import store
from crm_knowledge.identity.clusters import TYPO_EDITS, edit_distance
from crm_knowledge.identity.config import load_config
from crm_knowledge.identity.evaluate import evaluate
from crm_knowledge.identity.report import evaluation_metrics
from crm_knowledge.ingest.files import ingest_source
from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.settings import PROJECT_ROOT
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

PERSONS = 800
SEED = 42


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
    return build_demo_warehouse(settings, scratch_db_factory(), scratch_db_factory(), tmp_path, persons=PERSONS,
                                seed=SEED)


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
    # the target on both data sets: precision >= 0.995, F1 >= 0.99 (README, "Identity resolution accuracy")
    assert m["precision"] >= 0.995, report
    assert m["f1"] >= 0.99, report
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


OVERSEAS_PERSONS = 1000
OVERSEAS_EXAMPLE = PROJECT_ROOT / "config" / "examples" / "overseas_units"


@pytest.fixture()
def overseas_warehouse(settings, scratch_db_factory, tmp_path):
    """A scratch warehouse holding only the two overseas units, added the way a user adds sibling units:
    their source files in config/sources and the number they carry declared in identity.yml."""
    wh_url = scratch_db_factory()
    config_dir = tmp_path / "config"
    (config_dir / "sources").mkdir(parents=True)
    for f in (OVERSEAS_EXAMPLE / "sources").glob("*.yml"):
        shutil.copy(f, config_dir / "sources" / f.name)
    identity = yaml.safe_load((PROJECT_ROOT / "config" / "identity.yml").read_text(encoding="utf-8"))
    identity["identifiers"].update(yaml.safe_load((OVERSEAS_EXAMPLE / "identifiers.yml").read_text(encoding="utf-8")))
    (config_dir / "identity.yml").write_text(yaml.safe_dump(identity, allow_unicode=True), encoding="utf-8")
    s = dataclasses.replace(settings, home=tmp_path / "home", landing_dir=tmp_path / "landing",
                            external_warehouse_url=wh_url)
    summary = overseas_units.generate(s.landing_dir, tmp_path / "truth.csv", persons=OVERSEAS_PERSONS)
    apply_ddl(wh_url)
    sources = load_registry(config_dir)
    assert sorted(c.name for c in sources) == ["overseas_bank", "overseas_club"]
    for cfg in sources:
        ingest_source(cfg, url=wh_url, settings=s)
    build_stages(s, tmp_path, dbt_stages.STAGING, with_tests=False)  # the matcher's input
    return s, load_config(config_dir / "identity.yml"), summary


def test_overseas_units_identity_accuracy_and_charts(overseas_warehouse, tmp_path):
    s, config, summary = overseas_warehouse
    url = s.warehouse_url
    truth = pd.read_csv(summary.ground_truth, dtype=str)
    with psycopg.connect(url) as conn:
        loaded = pd.DataFrame(conn.execute("select source_system, source_record_id from "
                                           "intermediate.int_identity_candidates").fetchall(),
                              columns=["source_system", "source_record_id"])
        ssn_rows = conn.execute("select count(*) from intermediate.int_identity_identifiers "
                                "where identifier_kind = 'ssn'").fetchone()[0]
    delivered = sum(summary.records.values())
    # every delivered row reaches the identity input: one with an impossible birth date is kept, that field
    # NULL (sibling units' invalid_optional_field: null) and recorded in audit.field_issues
    assert len(loaded) == delivered
    with psycopg.connect(url) as conn:  # the raw quality gate's first step records the values staging cannot read
        from crm_knowledge.ingest.field_issues import check_new_batches

        check_new_batches(conn)
        bad_dates = conn.execute("select count(*) from audit.field_issues where column_name = 'birth_date'"
                                 ).fetchone()[0]
    assert bad_dates >= summary.invalid_birth_dates
    assert 0.3 * len(loaded) < ssn_rows < 0.8 * len(loaded)  # the number is on only some records

    stats = store.run(url, config=config)
    assert stats["deterministic_edges_by_rule"].get("ssn", 0) > 100, stats
    assert stats["probabilistic"]["trained"], stats
    on_loaded = evaluate(pd.DataFrame(_clusters_rows(url), columns=["source_system", "source_record_id",
                                                                    "customer_id"]),
                         truth.merge(loaded, on=["source_system", "source_record_id"]))
    on_delivered = evaluate(pd.DataFrame(_clusters_rows(url), columns=["source_system", "source_record_id",
                                                                       "customer_id"]), truth)
    report = (f"loaded records ({on_loaded['records']}): precision {on_loaded['precision']:.4f} recall "
              f"{on_loaded['recall']:.4f} F1 {on_loaded['f1']:.4f}; all delivered ({on_delivered['records']}): "
              f"precision {on_delivered['precision']:.4f} recall {on_delivered['recall']:.4f} "
              f"F1 {on_delivered['f1']:.4f}")
    print(f"overseas identity accuracy: {report}")
    # the target over all delivered records: precision >= 0.995, F1 >= 0.99 (this configuration reaches
    # 1.000 / 0.994; see README, "Identity resolution accuracy")
    assert on_delivered["records"] == delivered
    assert on_delivered["precision"] >= 0.995, report
    assert on_delivered["f1"] >= 0.99, report
    assert on_loaded["precision"] >= 0.995 and on_loaded["f1"] >= 0.99, report
    # a customer never holds two social-security numbers further apart than a typo (the conflict guard: a
    # chain of probabilistic links through records without the number would otherwise join two people)
    with psycopg.connect(url) as conn:
        held = conn.execute(
            "select c.customer_id, array_agg(distinct i.identifier_value) from identity.record_clusters c "
            "join intermediate.int_identity_identifiers i using (source_system, source_record_id) "
            "where i.identifier_kind = 'ssn' group by c.customer_id having count(distinct i.identifier_value) > 1"
        ).fetchall()
    assert held, "the overseas units mistype some numbers: some customers hold two spellings of theirs"
    # ... each within a typo of another one of that customer's, never a number unlike all the others
    assert all(any(edit_distance(a, b) <= TYPO_EDITS for b in values if b != a)
               for _, values in held for a in values), held

    # the run's model is recorded: m / u and match weights per comparison level, the declared number included
    with psycopg.connect(url) as conn:
        weights = dict(conn.execute(
            "select comparison || ':' || comparison_vector_value, match_weight from identity.match_weights "
            "where run_id = %s", (stats["run_id"],)).fetchall())
    assert weights["prior:-1"] < 0
    exact_ssn = [w for k, w in weights.items() if k.startswith("id_ssn:")]
    assert len(exact_ssn) == 3 and max(exact_ssn) > 5 and min(exact_ssn) < 0  # same > typo > different

    # `ckp identity-eval` as a user runs it: no demo ground truth here, so it says so and writes the charts
    env = {**os.environ, "WAREHOUSE_URL": url, "CKP_HOME": str(s.home), "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    ckp = Path(sys.executable).with_name("ckp")
    res = subprocess.run([str(ckp), "identity-eval", "--pairs", "5"], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "no accuracy report" in res.stderr
    paths = dict(line.split(" chart: ") for line in res.stdout.splitlines() if " chart: " in line)
    assert set(paths) == {"match_weights", "waterfall"}, res.stdout
    for name, path in paths.items():
        p = Path(path)
        assert p.parent == s.reports_dir / "identity"
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        page = p.read_text(encoding="utf-8")
        assert "vega" in page and not re.search(r"<script[^>]+src=", page), name  # embedded: works offline
    waterfall = Path(paths["waterfall"]).read_text(encoding="utf-8")
    values = re.findall(r'"value_[lr]": *"([^"]*)"', waterfall)
    assert values and not any(values), "the waterfall chart shows record values (personal data)"
    assert "sibling:overseas_" in Path(paths["waterfall"]).read_text(encoding="utf-8")


def _clusters_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("select source_system, source_record_id, customer_id from identity.record_clusters"
                            ).fetchall()
