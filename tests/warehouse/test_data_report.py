"""Customer data report (privacy/data_report.py) on the dbt project built for real.

Reuses the hand-written raw rows of test_dbt_models.py (four people across every source), adds a score and
a delivery for Ali, builds the project with dbt, then asks for Ali's report by a phone spelled in Persian
digits: every section holds Ali's data with its dates, nobody else's, and the audit log records the report.
"""

from __future__ import annotations

import hashlib
import json
import stat

import psycopg
import pytest
from pipeline_world import scratch_database
from test_dbt_models import ALI, SARA, dbt_build, seed_raw

from crm_knowledge.privacy.data_report import build_report, write_report
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse


def add_scores_and_delivery(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("insert into scoring.customer_scores (customer_id, as_of_date, recency_days, frequency, "
                     "monetary, rfm_segment, value_tier, churn_probability) values "
                     "(%s, '2026-03-31', 30, 2, 400, 'champions', 'gold', 0.1)", (ALI,))
        conn.execute("insert into audit.exports (export_id, destination, kind, as_of_date, rows_added, status, "
                     "purpose) values ('mkt-1', 'marketing_campaigns', 'file', '2026-03-31', 1, 'delivered', "
                     "'marketing')")
        conn.execute("insert into scoring.communications (export_id, destination, customer_id, audience, "
                     "change_type, communicated_at, purpose, kind) values ('mkt-1', 'marketing_campaigns', %s, "
                     "'champions', 'added', '2026-03-31 12:00+00', 'marketing', 'offer_made')", (ALI,))
        conn.execute("insert into scoring.delivered_state values ('marketing_campaigns', %s, %s, 'h', %s, "
                     "'2026-03-31 12:00+00')", (ALI, ALI, json.dumps({"audience": "champions"})))


@pytest.fixture(scope="module")
def built(tmp_path_factory, warehouse, settings):
    with scratch_database(settings, "t_report") as url:
        apply_ddl(url)
        seed_raw(url)
        add_scores_and_delivery(url)
        dbt_build(settings, url, tmp_path_factory.mktemp("dbt"), "--exclude-resource-type", "test",
                  "--exclude-resource-type", "unit_test")
        yield url


def test_report_holds_everything_about_ali_and_nothing_else(built, tmp_path):
    out = tmp_path / "report.json"
    summary = write_report(out, phone="۰۹۱۲۱۲۳۴۰۰۱", verified_by="privacy officer (ticket 7)", url=built)
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["customer_ids"] == [ALI]

    profile = report["golden_record"]["pii_customer_profiles"]
    assert [(p["email"], p["phone"], p["national_id"]) for p in profile] == [
        ("ali.karimi@example.com", "+989121234001", "0499370899")]
    assert report["golden_record"]["dim_customers"][0]["has_marketing_consent"] is True
    assert len(report["golden_record"]["customer_360"]) == 1

    records = {(r["source_system"], r["source_record_id"]) for r in report["source_records"]["customer_identity_map"]}
    assert records == {("orders", "1"), ("forms", "F1"), ("forms", "F2"), ("sibling:bank_fa", "B100"),
                       ("contacts", "I1")}
    assert len(report["source_records"]["pii_source_identities"]) == 5

    knowledge = report["knowledge_items"]["customer_knowledge"]
    assert {k["kind"] for k in knowledge} >= {"complaint", "purchase_pattern"}
    assert all(k["observed_at"] for k in knowledge)
    assert [(s["as_of_date"], s["rfm_segment"]) for s in report["scores"]["customer_scores"]] == [
        ("2026-03-31", "champions")]
    assert [s["as_of_date"] for s in report["segments"]["customer_segments"]] == ["2026-03-31"]
    consent = report["consent_history"]["fct_consent_events"]
    assert consent and all(c["customer_id"] == ALI for c in consent)
    assert [(c["destination"], c["audience"], c["change_type"]) for c in report["deliveries"]["communications"]] == [
        ("marketing_campaigns", "champions", "added")]
    assert [d["destination"] for d in report["deliveries"]["held_by_destinations"]] == ["marketing_campaigns"]
    assert {o["order_id"] for o in report["activity"]["fct_orders"]} == {"orders:10", "orders:11", "orders:13"}

    text = out.read_text(encoding="utf-8")
    assert SARA not in text and "sara@example.org" not in text and "Rezaei" not in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    assert summary["customers"] == 1 and summary["sections"]["knowledge_items"] == len(knowledge)
    with psycopg.connect(built) as conn:
        audit = conn.execute("select verified_by, customers, sha256 from audit.customer_data_reports").fetchall()
    assert audit == [("privacy officer (ticket 7)", 1, hashlib.sha256(out.read_bytes()).hexdigest())]


def test_same_customer_by_id_or_email_and_unknown_is_empty(built):
    with psycopg.connect(built) as conn:
        by_id = build_report(conn, customer_id=ALI)
        by_email = build_report(conn, email="ALI.KARIMI@example.com")
        unknown = build_report(conn, email="nobody@example.com")
    for section in ("golden_record", "source_records", "knowledge_items", "scores", "consent_history"):
        assert by_id[section] == by_email[section], section
    assert unknown["customer_ids"] == []
    assert all(not rows for rows in unknown["knowledge_items"].values())


def test_report_needs_a_verifier(built, tmp_path):
    with pytest.raises(ValueError, match="verified-by"):
        write_report(tmp_path / "r.json", email="ali.karimi@example.com", verified_by=" ", url=built)
