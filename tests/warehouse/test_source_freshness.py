"""`dbt source freshness` runs against the raw tables, lands in the audit tables and in the auditor's report,
and a source past its error_after fails the check (scoring and exports wait) while warn_after only warns."""

from __future__ import annotations

import psycopg
import pytest
from dbt_runs import on_database

from crm_knowledge.quality import report
from crm_knowledge.quality.freshness import StaleSourceError, freshness_outcomes
from crm_knowledge.quality.pipeline import check_source_freshness
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

#: every raw table a dbt source with a freshness reads, and the extra not-null columns it needs
RAW_TABLES = {"form_submissions": {}, "sibling_customers": {"unit": "bank_fa"}, "contact_interactions": {},
              "order_exports": {"shop": "kiosk"}, "orders__customers": {}, "orders__products": {},
              "orders__orders": {}, "orders__order_items": {}}


def load_one_row(url: str, table: str, hours_ago: float) -> None:
    extra = RAW_TABLES[table]
    cols = ["_batch_id", "_source_file", "_loaded_at", "_row_number", "_record_hash", *extra]
    with psycopg.connect(url) as conn:
        conn.execute(f"delete from raw.{table}")
        conn.execute(
            f"insert into raw.{table} ({', '.join(cols)}) values ('b1', 'f.csv', now() - make_interval(secs => %s),"
            f" 1, 'h'{', %s' * len(extra)})", (hours_ago * 3600, *extra.values()))


@pytest.fixture()
def fresh_warehouse(scratch_db, settings):
    apply_ddl(scratch_db)
    for table in RAW_TABLES:
        load_one_row(scratch_db, table, 0.1)
    return on_database(settings, scratch_db)


def freshness_rows(url: str, run_id: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            """select r.expectation_id, r.success, r.severity, r.observed_value ->> 'status'
                 from audit.dq_results r join audit.dq_runs d using (dq_run_id)
                where d.pipeline_run_id = %s and d.layer = 'freshness'""", (run_id,)).fetchall()}


def test_fresh_and_late_sources_are_recorded_and_reported(fresh_warehouse, tmp_path):
    s = fresh_warehouse
    load_one_row(s.warehouse_url, "contact_interactions", 3 * 24)  # warn after 2 days, error after 7
    summary = check_source_freshness("day-2026-11-20", settings=s)
    assert summary["tables_checked"] == 8
    assert summary["errors"] == []
    assert summary["warnings"] == ["source.crm_knowledge.contacts.interactions"]
    rows = freshness_rows(s.warehouse_url, "day-2026-11-20")
    assert len(rows) == 8
    assert rows["source.crm_knowledge.contacts.interactions"] == (False, "warning", "warn")
    assert rows["source.crm_knowledge.orders.orders"] == (True, "critical", "pass")

    page = report.build_run_report("day-2026-11-20", settings=s, build_docs=False).read_text(encoding="utf-8")
    section = page[page.index('<section id="freshness">'):]
    section = section[:section.index("</section>")]
    assert section.count("<tr>") == 1 + 8  # header + one row per table
    assert "source.crm_knowledge.contacts.interactions" in section and "3.0 days" in section
    assert "2 days" in section and "7 days" in section  # the thresholds as declared
    assert 'PASSED WITH WARNINGS' in page


def test_a_source_past_error_after_fails_and_a_recheck_replaces_the_result(fresh_warehouse):
    s = fresh_warehouse
    load_one_row(s.warehouse_url, "orders__orders", 30)  # error after 24 hours
    with pytest.raises(StaleSourceError, match=r"source\.crm_knowledge\.orders\.orders"):
        check_source_freshness("day-2026-11-21", settings=s)
    assert freshness_rows(s.warehouse_url, "day-2026-11-21")["source.crm_knowledge.orders.orders"] == (
        False, "critical", "error")
    page = report.build_run_report("day-2026-11-21", settings=s, build_docs=False).read_text(encoding="utf-8")
    assert "BLOCKED: 1 critical failure(s)" in page

    load_one_row(s.warehouse_url, "orders__orders", 0.1)  # the late delivery arrives; the check is re-run
    assert check_source_freshness("day-2026-11-21", settings=s)["errors"] == []
    rows = freshness_rows(s.warehouse_url, "day-2026-11-21")
    assert len(rows) == 8 and rows["source.crm_knowledge.orders.orders"] == (True, "critical", "pass")


def test_outcomes_from_sources_json_keep_database_values_out():
    doc = {"results": [
        {"unique_id": "source.crm_knowledge.forms.submissions", "status": "runtime error",
         "message": 'invalid input syntax for type timestamp: "ali.karimi@example.com"', "criteria": {}},
        {"unique_id": "source.crm_knowledge.forms.other", "status": "pass", "max_loaded_at_time_ago_in_s": 7200.0,
         "max_loaded_at": "2026-11-20T10:00:00+00:00",
         "criteria": {"warn_after": {"count": 6, "period": "hour"}, "error_after": {"count": 48, "period": "hour"}}},
    ]}
    outcomes = freshness_outcomes(doc)["freshness.forms"]
    broken, ok = outcomes
    assert not broken.success and broken.severity == "critical"
    assert "ali.karimi" not in str(broken.observed_value)
    assert ok.success and ok.description == "other: last load 2.0 h ago (warn after 6 hours, error after 48 hours)"
