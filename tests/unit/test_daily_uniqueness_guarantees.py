"""A daily run's `unique` test may read only the rows the run wrote only where something else holds every row.

dbt tests configured with `__ckp_tests_since__` or `__ckp_recomputed_customers__` (macros/tests_on_new_rows.sql)
read, on a daily run, the rows the run wrote or the customers it recomputed. For a row check that is the whole
truth; for uniqueness it is not: a new row can collide with an old one the test no longer reads. So every such
uniqueness test must name a key that is unique over the whole table by construction, and this module fails
when one does not:

* the model has a unique index on exactly the key (dbt `indexes`: PostgreSQL refuses a duplicate when it is
  written);
* or the key includes `customer_id` and the test reads the recomputed customers (the rows of a customer that
  was not recomputed cannot collide with those of one that was);
* or the model selects the key as the very expression of a uniquely indexed column (`btrim(submission_id)` as
  both `submission_id` and `source_record_id`);
* or the model is a view over a warehouse table whose primary key or a unique index is the key (the identity
  output);
* or the key is derived from keys that are, for the reason given in ``DERIVED`` (checked to still be in use).

Offline: `dbt parse` into this module's own target folder (no database).
"""

from __future__ import annotations

import json
import re

import pytest
from dbt_runs import offline_env

from crm_knowledge.runner import run_dbt
from crm_knowledge.settings import PROJECT_ROOT, get_settings

PLACEHOLDERS = ("__ckp_tests_since__", "__ckp_recomputed_customers__")
UNIQUENESS = ("unique", "unique_combination_of_columns")
WAREHOUSE_SQL = PROJECT_ROOT / "plugins" / "crm_knowledge" / "warehouse" / "sql"

#: (model, key) -> why the key is unique over the whole table although no index of the model holds it.
DERIVED = {
    ("customer_knowledge", ("knowledge_item_id",)):
        "md5 of source, source record, customer id and kind joined by '|': the customer id is the part between "
        "the last two separators (no customer id or kind holds a '|'), so two customers' items never share one",
    ("stg_orders__customers", ("source_record_id",)):
        "cast(customer_id as text), the text of the orders database's integer customer id, which is "
        "orders_customer_id (unique index): one text per integer",
    ("int_customer_facts_unioned", ("fact || '|' || fact_id",)):
        "ephemeral: the union of the facts, each keyed by its own uniquely indexed id, tagged with the fact's name",
    ("int_form_submissions_resolved", ("submission_id",)):
        "ephemeral: stg_forms__submissions (unique index on submission_id) joined to one cluster per record "
        "(identity.record_clusters' primary key)",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    """The project's manifest, parsed offline into a target folder of this module's own (dbt_project/target is
    the DAGs', which an end-to-end run on the other xdist worker may be writing)."""
    target = tmp_path_factory.mktemp("uniqueness_target")
    settings = get_settings()
    run_dbt(["parse"], offline_env(settings), settings, target_path=target, log_path=target / "logs")
    return json.loads((target / "manifest.json").read_text(encoding="utf-8"))


def _limited_uniqueness_tests(manifest: dict) -> list[tuple[str, tuple[str, ...], str, dict]]:
    """(model name, key columns, where, model node) of every uniqueness test a daily run limits."""
    found = []
    for node in manifest["nodes"].values():
        metadata = node.get("test_metadata") or {}
        where = node["config"].get("where") or ""
        if node["resource_type"] != "test" or metadata.get("name") not in UNIQUENESS:
            continue
        if not any(p in where for p in PLACEHOLDERS):
            continue
        kwargs = metadata["kwargs"]
        key = tuple(kwargs.get("combination_of_columns") or [kwargs["column_name"]])
        model = manifest["nodes"][node["attached_node"]]
        found.append((model["name"], key, where, model))
    return found


def _unique_indexes(model: dict) -> set[tuple[str, ...]]:
    return {tuple(i["columns"]) for i in model["config"].get("indexes") or [] if i.get("unique")}


def _selected_as(raw_sql: str, column: str) -> set[str]:
    """The expressions the model's SQL selects as ``column`` (`<expression> as <column>,`)."""
    return {m.group(1).strip() for m in re.finditer(rf"^\s*(.+?)\s+as\s+{re.escape(column)},?\s*$", raw_sql, re.M)}


def _same_expression_as_an_indexed_column(model: dict, key: tuple[str, ...]) -> bool:
    if len(key) != 1:
        return False
    mine = _selected_as(model["raw_code"], key[0])
    return bool(mine) and any(len(cols) == 1 and mine & _selected_as(model["raw_code"], cols[0])
                              for cols in _unique_indexes(model))


def _unique_key_of_the_table_viewed(manifest: dict, model: dict, key: tuple[str, ...]) -> bool:
    """The model is a view over one warehouse table whose primary key, or a unique index, is exactly `key`."""
    if model["config"].get("materialized") != "view":
        return False
    sources = [manifest["sources"][uid] for uid in model["depends_on"]["nodes"] if uid.startswith("source.")]
    if len(sources) != 1:
        return False
    table = f"{sources[0]['schema']}.{sources[0]['identifier']}"
    ddl = "\n".join(p.read_text(encoding="utf-8") for p in sorted(WAREHOUSE_SQL.glob("*.sql")))
    columns = ", ".join(key)
    create = re.search(rf"create table if not exists {re.escape(table)} \((.*?)\n\);", ddl, re.S)
    unique_index = re.search(
        rf"create unique index if not exists \w+\s+on {re.escape(table)} \({re.escape(columns)}\);", ddl)
    return bool(create) and (f"primary key ({columns})" in create.group(1) or bool(unique_index))


def test_every_uniqueness_test_a_daily_run_limits_has_a_whole_table_guarantee(manifest):
    limited = _limited_uniqueness_tests(manifest)
    assert len(limited) >= 20  # the staging, fact, customer-level and vault keys (a parse that found them)
    unguaranteed = []
    for name, key, where, model in limited:
        guaranteed = (
            key in _unique_indexes(model)
            or ("__ckp_recomputed_customers__" in where and "customer_id" in key)
            or _same_expression_as_an_indexed_column(model, key)
            or _unique_key_of_the_table_viewed(manifest, model, key)
            or (name, key) in DERIVED
        )
        if not guaranteed:
            unguaranteed.append(f"{name} {key} ({where})")
    assert not unguaranteed, ("uniqueness tested on a daily run's rows only, with nothing holding the rest of the "
                              f"table: {unguaranteed}")
    # every reason given is still about a test that exists
    assert set(DERIVED) <= {(name, key) for name, key, _, _ in limited}


def test_the_guarantees_are_read_as_they_are_written(manifest):
    """The readers above see what they must: they would not pass a key for the wrong reason."""
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    interactions = models["stg_contacts__interactions"]
    assert _same_expression_as_an_indexed_column(interactions, ("source_record_id",))
    assert not _same_expression_as_an_indexed_column(interactions, ("customer_ref",))
    clusters = models["stg_identity__record_clusters"]
    assert _unique_key_of_the_table_viewed(manifest, clusters, ("source_system", "source_record_id"))
    assert not _unique_key_of_the_table_viewed(manifest, clusters, ("customer_id",))
    pairs = models["stg_identity__match_pairs"]
    assert _unique_key_of_the_table_viewed(
        manifest, pairs, ("source_system_l", "source_record_id_l", "source_system_r", "source_record_id_r"))
    assert not _unique_key_of_the_table_viewed(manifest, pairs, ("source_system_r", "source_record_id_r"))
    assert ("order_item_id",) in _unique_indexes(models["fct_order_items"])
    assert not _unique_indexes(models["customer_knowledge"])  # held by DERIVED's reason, not an index
