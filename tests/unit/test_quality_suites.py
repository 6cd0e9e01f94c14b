"""The expectation suites in expectations/suites: complete, loadable by GX, and saying what the data means."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from crm_knowledge.quality.suites import all_specs, severity_of, spec_for_relation, specs_for_layer
from crm_knowledge.settings import PROJECT_ROOT, get_settings

SUITES_DIR = PROJECT_ROOT / "expectations" / "suites"
SUITE_FILES = sorted(SUITES_DIR.rglob("*.json"))


def raw_tables() -> set[str]:
    ddl = (PROJECT_ROOT / "plugins/crm_knowledge/warehouse/sql/01_raw.sql").read_text()
    return set(re.findall(r"create table if not exists (raw\.\w+)", ddl)) - {"raw.load_rejects"}


def test_one_suite_per_raw_table_staging_entity_and_mart():
    specs = all_specs()
    assert {s.relation for s in specs if s.layer == "raw"} == raw_tables()
    staging = {s.relation for s in specs_for_layer("staging")}
    assert {"staging.stg_forms__submissions", "staging.stg_siblings__customers",
            "staging.stg_contacts__interactions", "staging.stg_order_exports__orders",
            "staging.stg_orders__customers", "staging.stg_orders__products", "staging.stg_orders__orders",
            "staging.stg_orders__order_items"} <= staging
    marts = {s.relation for s in specs_for_layer("marts")}
    assert {"marts.dim_customers", "marts.fct_orders", "marts.fct_order_items", "marts.customer_identity_map",
            "marts.customer_segments"} <= marts


@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: str(p.relative_to(SUITES_DIR)))
def test_suite_file_is_a_valid_gx_suite_with_severities(path: Path):
    import great_expectations as gx

    doc = json.loads(path.read_text())
    schema, table = doc["name"].split(".")
    assert path == SUITES_DIR / schema / f"{table}.json"  # where GX's filesystem store looks for it
    assert doc["meta"]["ckp"]["relation"] == doc["name"]
    suite = gx.ExpectationSuite(**{k: v for k, v in doc.items() if k != "id"})
    assert len(suite.expectations) == len(doc["expectations"]) > 0
    ids = [e["id"] for e in doc["expectations"]]
    assert len(set(ids)) == len(ids)
    for e in doc["expectations"]:
        assert e["meta"]["severity"] in ("critical", "warning"), e
        assert severity_of(e) == e["meta"]["severity"] == e.get("severity", e["meta"]["severity"])
        assert e.get("notes"), f"{doc['name']}: {e['type']} says nothing about why it holds"
        if e["type"] == "unexpected_rows_expectation":
            query = e["kwargs"]["unexpected_rows_query"]
            assert "{batch}" in query
            if re.search(r"\bjoin\b", query, re.I):
                # GX substitutes a bare "(subquery)" when the query joins: the batch needs its own alias
                assert "{batch} as b" in query
            assert e.get("description")
    # every suite has at least one critical rule on its key
    assert any(e["meta"]["severity"] == "critical" for e in doc["expectations"])


def test_raw_suites_identify_rows_by_row_number_and_select_by_batch():
    for spec in specs_for_layer("raw"):
        assert spec.row_id == ("_row_number",)
        assert spec.batch_column == "_batch_id"
        for e in spec.expectations:
            if e["type"] == "unexpected_rows_expectation":
                assert re.match(r"select (b\.)?_row_number from", e["kwargs"]["unexpected_rows_query"])


def test_rfm_segments_and_value_tiers_match_scoring_config():
    config = yaml.safe_load((PROJECT_ROOT / "config" / "scoring.yml").read_text())
    segments = {s for row in config["rfm"]["grid"].values() for s in row}
    tiers = {t["name"] for t in config["tiers"]}
    spec = spec_for_relation("marts.customer_segments")
    sets = {e["kwargs"]["column"]: set(e["kwargs"]["value_set"]) for e in spec.expectations
            if e["type"] == "expect_column_values_to_be_in_set"}
    assert sets["rfm_segment"] == segments
    assert sets["value_tier"] == tiers
    bounded = {e["kwargs"]["column"]: (e["kwargs"].get("min_value"), e["kwargs"].get("max_value"))
               for e in spec.expectations if e["type"] == "expect_column_values_to_be_between"}
    assert bounded["churn_probability"] == (0, 1) and bounded["p_alive"] == (0, 1)


def test_form_types_match_the_contract():
    contract = (PROJECT_ROOT / "docs" / "data_contracts.md").read_text()
    line = next(x for x in contract.splitlines() if x.startswith("form_type"))
    types = set(re.findall(r"[a-z_]+", line.split(None, 1)[1]))
    spec = spec_for_relation("staging.stg_forms__submissions")
    in_set = next(e for e in spec.expectations if e["kwargs"].get("column") == "form_type"
                  and e["type"] == "expect_column_values_to_be_in_set")
    assert set(in_set["kwargs"]["value_set"]) == types


def test_meaning_checks_are_present():
    """The rules the auditors rely on exist with the right severity."""
    def has(relation, severity, predicate):
        return any(severity_of(e) == severity and predicate(e) for e in spec_for_relation(relation).expectations)

    q = lambda e: e["kwargs"].get("unexpected_rows_query", "")  # noqa: E731
    assert has("raw.form_submissions", "warning", lambda e: "util.national_id_is_valid" in q(e))
    assert has("raw.form_submissions", "warning", lambda e: "util.normalize_phone" in q(e))
    assert has("staging.stg_forms__submissions", "critical",
               lambda e: e["kwargs"].get("regex") == r"^\+[1-9][0-9]{7,14}$")
    assert has("raw.orders__orders", "critical", lambda e: "ordered_at >" in q(e))
    assert has("raw.order_exports", "critical",
               lambda e: e["kwargs"].get("column") == "amount" and e["kwargs"].get("strict_min"))
    assert has("marts.fct_orders", "critical", lambda e: "marts.dim_customers" in q(e))
    assert has("marts.fct_orders", "warning", lambda e: "sum(line_amount)" in q(e))
    assert has("marts.customer_identity_map", "critical", lambda e: "int_identity_candidates" in q(e))
    assert spec_for_relation("marts.dim_customers").volume
    assert spec_for_relation("raw.form_submissions").null_rates["columns"]


def test_gx_context_reads_the_suite_files_without_writing(tmp_path):
    import dataclasses

    from crm_knowledge.quality.context import build_context

    before = {p: p.read_bytes() for p in SUITE_FILES}
    settings = dataclasses.replace(get_settings(), home=tmp_path)
    context = build_context(settings, datasource=False)
    for spec in all_specs(settings):
        suite = context.suites.get(spec.name)
        assert len(suite.expectations) == len(spec.expectations)
    assert {p: p.read_bytes() for p in SUITE_FILES} == before
