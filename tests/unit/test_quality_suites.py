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
    # every suite can stop the run
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
    assert set(accepted_values("customer_segments", "rfm_segment")) == segments
    assert set(accepted_values("customer_segments", "value_tier")) == tiers
    spec = spec_for_relation("marts.customer_segments")
    bounded = {e["kwargs"]["column"]: (e["kwargs"].get("min_value"), e["kwargs"].get("max_value"))
               for e in spec.expectations if e["type"] == "expect_column_values_to_be_between"}
    assert bounded["churn_probability"] == (0, 1) and bounded["p_alive"] == (0, 1)


def test_form_types_match_the_contract():
    contract = (PROJECT_ROOT / "docs" / "data_contracts.md").read_text()
    line = next(x for x in contract.splitlines() if x.startswith("form_type"))
    types = set(re.findall(r"[a-z_]+", line.split(None, 1)[1]))
    assert set(accepted_values("stg_forms__submissions", "form_type")) == types


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
    assert has("raw.order_exports", "critical", lambda e: "util.parse_decimal(amount) <= 0" in q(e))
    assert has("marts.fct_orders", "critical", lambda e: "totals_mismatch_share" in q(e))
    assert has("marts.fct_orders", "warning", lambda e: "sum(line_amount)" in q(e))
    assert has("marts.customer_identity_map", "critical", lambda e: "int_identity_candidates" in q(e))
    assert spec_for_relation("marts.dim_customers").volume
    assert spec_for_relation("raw.form_submissions").null_rates["columns"]
    assert ("relationships", "customer_id", "error") in dbt_tests("fct_orders")


# --- one home per quality rule (docs/data_contracts.md, "Where a quality rule belongs") --------------------

#: Expectation types stating a schema rule (not null, unique, accepted values): on a dbt model they are dbt tests.
SCHEMA_RULE_TYPES = {
    "expect_column_values_to_not_be_null", "expect_column_values_to_be_null", "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique", "expect_select_column_values_to_be_unique_within_record",
    "expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set",
}
#: An anti-join "rows whose key has no match in another table": a relationships test.
RELATIONSHIP_QUERY = re.compile(r"\bleft\s+join\b.+\bwhere\b.*\b\w+\.\w+\s+is\s+null\s*$", re.I | re.S)
DBT_MODEL_SPECS = [s for s in all_specs() if s.layer != "raw"]


def dbt_tests(model: str) -> list[tuple[str, str | None, str]]:
    """(test name, column or None for a model-level test, severity) of every data test in a model's yml."""
    path, = (PROJECT_ROOT / "dbt_project" / "models").glob(f"*/{model}.yml")
    node, = (m for m in yaml.safe_load(path.read_text())["models"] if m["name"] == model)
    found = []
    for column, tests in [(c["name"], c.get("data_tests") or []) for c in node.get("columns") or []] + [
            (None, node.get("data_tests") or [])]:
        for test in tests:
            name, spec = (test, {}) if isinstance(test, str) else next(iter(test.items()))
            found.append((name, column, ((spec or {}).get("config") or {}).get("severity", "error")))
    return found


def accepted_values(model: str, column: str) -> list:
    path, = (PROJECT_ROOT / "dbt_project" / "models").glob(f"*/{model}.yml")
    node, = (m for m in yaml.safe_load(path.read_text())["models"] if m["name"] == model)
    col, = (c for c in node["columns"] if c["name"] == column)
    return next(t["accepted_values"]["arguments"]["values"] for t in col["data_tests"]
                if isinstance(t, dict) and "accepted_values" in t)


def test_schema_rule_detection_catches_what_it_should():
    """The guard below recognises a schema rule written either way GX can state it."""
    relationship = ("select b.order_id from {batch} as b left join marts.dim_customers d "
                    "on d.customer_id = b.customer_id where b.customer_id is not null and d.customer_id is null")
    assert RELATIONSHIP_QUERY.search(relationship)
    assert not RELATIONSHIP_QUERY.search("select order_id from {batch} where ordered_at < date '2000-01-01'")
    assert "expect_column_values_to_be_unique" in SCHEMA_RULE_TYPES


@pytest.mark.parametrize("spec", DBT_MODEL_SPECS, ids=lambda s: s.name)
def test_suites_of_dbt_models_carry_no_schema_rule(spec):
    """Not null, unique, accepted values and relationships on staging and marts are dbt tests (one home per rule);
    a suite of a dbt model keeps formats, ranges, plausibility, volume and null-rate drift."""
    schema_rules = [
        f"{e['type']}({e['kwargs'].get('column') or e['kwargs'].get('column_list') or ''})"
        for e in spec.expectations
        if e["type"] in SCHEMA_RULE_TYPES
        or RELATIONSHIP_QUERY.search(e["kwargs"].get("unexpected_rows_query") or "")]
    assert not schema_rules, (f"{spec.path.name}: {schema_rules} belong in dbt_project/models/*/"
                              f"{spec.relation.split('.')[1]}.yml as dbt tests (docs/data_contracts.md)")


@pytest.mark.parametrize("spec", DBT_MODEL_SPECS, ids=lambda s: s.name)
def test_key_of_every_validated_model_is_unique_and_not_null_in_dbt(spec):
    """The key the gate names offending rows by is guaranteed by dbt, with a failing (error) severity."""
    tests = dbt_tests(spec.relation.split(".")[1])
    if len(spec.row_id) == 1:
        key, = spec.row_id
        assert {("unique", key, "error"), ("not_null", key, "error")} <= set(tests)
    else:
        assert ("unique_combination_of_columns", None, "error") in tests
        assert all(("not_null", column, "error") in tests for column in spec.row_id)


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
