"""Write-back of segments against a real Postgres (scratch database) and a real local HTTP receiver."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from datetime import date
from pathlib import Path

import psycopg
import pytest
from export_world import delivery_warehouse, webhook_destination, webhook_receivers

from crm_knowledge.export.config import parse_destination
from crm_knowledge.export.deliver import DeliveryError, deliver

pytestmark = pytest.mark.warehouse

AS_OF = date(2026, 3, 1)


@pytest.fixture()
def wh(scratch_db):
    return delivery_warehouse(scratch_db)


def add_customer(url, cid, segment, *, tier="gold", churn=0.1, clv=100.0, consent=True, opt_out=False,
                 forgotten=False, city="Tehran", dim=True, email=None):
    with psycopg.connect(url) as conn:
        conn.execute("insert into marts.customer_segments values (%s, %s, %s, %s, 1, %s, %s, 0.9)",
                     (cid, AS_OF, segment, tier, churn, clv))
        if dim:
            conn.execute("insert into marts.dim_customers values (%s, %s, %s, %s, %s, 'Tehran')",
                         (cid, consent, opt_out, forgotten, city))
        conn.execute("insert into pii.pii_customer_profiles values (%s, 'Sara', 'Ahmadi', %s, '+989121234567')",
                     (cid, email or f"{cid}@example.org"))


def set_segment(url, cid, segment, churn=None):
    with psycopg.connect(url) as conn:
        conn.execute("update marts.customer_segments set rfm_segment = %s, "
                     "churn_probability = coalesce(%s, churn_probability) where customer_id = %s",
                     (segment, churn, cid))


def set_dim(url, cid, **values):
    with psycopg.connect(url) as conn:
        for col, v in values.items():
            conn.execute(f"update marts.dim_customers set {col} = %s where customer_id = %s", (v, cid))


def file_dest(name="mkt", *, mode="mirror", consent="marketing", purpose="marketing", fmt="csv", **extra):
    doc = {
        "name": name, "kind": "file", "enabled": True, "purpose": purpose, "consent": consent, "mode": mode,
        "id_space": "customer_id",
        "audiences": [{"name": "champions", "filter": {"rfm_segment": ["champions"]}},
                      {"name": "loyal", "filter": {"rfm_segment": ["loyal"]}}],
        "fields": ["rfm_segment", "value_tier", "city"],
        "file": {"format": fmt, "dir": "marketing"},
    }
    doc.update(extra)
    return parse_destination(doc, "test")


def read_rows(result):
    path = Path(result["location"])
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def q(url, query, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


# --- consent and forgetting --------------------------------------------------------------------------------


def test_marketing_destination_sends_only_consenting_unforgotten_customers(wh, local):
    add_customer(wh, "c1", "champions")                      # may leave
    add_customer(wh, "c2", "champions", consent=False)       # withdrew marketing consent
    add_customer(wh, "c3", "champions", forgotten=True)      # forgotten (consent flag still true)
    add_customer(wh, "c4", "champions", opt_out=True)        # objected to profiling
    add_customer(wh, "c5", "champions", consent=None)        # consent never given
    add_customer(wh, "c6", "champions")                      # on the exclusion list
    add_customer(wh, "c7", "champions", dim=False)           # no dim row: consent cannot be checked
    dest = file_dest(mode="upsert", exclude={"customer_ids": ["c6"]})
    res = deliver(dest, AS_OF, wh, settings=local)
    assert [r["customer_id"] for r in read_rows(res)] == ["c1"]
    assert res["rows_added"] == 1 and res["members"] == 1

    # A service destination has no consent filter, but forgotten customers still never leave.
    service = file_dest("svc", consent="none", purpose="service")
    res = deliver(service, AS_OF, wh, settings=local)
    assert sorted(r["customer_id"] for r in read_rows(res)) == ["c1", "c2", "c4", "c5", "c6"]

    # c1 withdraws consent: even in upsert mode (no ordinary removals) the marketing destination is told.
    set_dim(wh, "c1", has_marketing_consent=False)
    res = deliver(dest, AS_OF, wh, settings=local)
    rows = read_rows(res)
    assert [(r["customer_id"], r["change_type"], r["removal_reason"]) for r in rows] == \
        [("c1", "removed", "consent_withdrawn")]
    assert q(wh, "select count(*) from scoring.delivered_state where destination = 'mkt'") == [(0,)]

    # Forgotten after delivery: removal sent, and no further communication row about the customer.
    set_dim(wh, "c2", is_forgotten=True)
    res = deliver(service, AS_OF, wh, settings=local)
    rows = read_rows(res)
    assert [(r["customer_id"], r["removal_reason"]) for r in rows] == [("c2", "forgotten")]
    assert q(wh, "select count(*) from scoring.communications where export_id = %s", res["export_id"]) == [(0,)]


# --- priority ----------------------------------------------------------------------------------------------


def test_customer_in_two_audiences_gets_the_higher_priority_one(wh, local):
    add_customer(wh, "c1", "at_risk", tier="platinum", churn=0.8)   # matches both
    add_customer(wh, "c2", "champions", tier="platinum", churn=0.1)  # vip only
    add_customer(wh, "c3", "at_risk", tier="bronze", churn=0.5)      # neither (churn below threshold)
    audiences = [{"name": "win_back", "filter": {"rfm_segment": ["at_risk"], "churn_probability": {"gte": 0.6}}},
                 {"name": "vip", "filter": {"value_tier": ["platinum"]}}]
    res = deliver(file_dest("a", audiences=audiences, fmt="jsonl"), AS_OF, wh, settings=local)
    assert {r["customer_id"]: r["audience"] for r in read_rows(res)} == {"c1": "win_back", "c2": "vip"}

    res = deliver(file_dest("b", audiences=audiences[::-1], fmt="jsonl"), AS_OF, wh, settings=local)
    assert {r["customer_id"]: r["audience"] for r in read_rows(res)} == {"c1": "vip", "c2": "vip"}


# --- deltas ------------------------------------------------------------------------------------------------


def test_deltas_changed_once_rerun_sends_nothing_mirror_sends_removals(wh, local):
    for cid, seg in [("c1", "champions"), ("c2", "loyal"), ("c3", "champions")]:
        add_customer(wh, cid, seg)
    dest = file_dest()
    first = deliver(dest, AS_OF, wh, settings=local)
    assert (first["rows_added"], first["rows_changed"], first["rows_removed"]) == (3, 0, 0)

    set_segment(wh, "c2", "champions")  # changes audience loyal -> champions
    set_segment(wh, "c3", "lost")       # leaves every audience
    second = deliver(dest, AS_OF, wh, settings=local)
    rows = read_rows(second)
    assert [(r["customer_id"], r["change_type"], r["audience"]) for r in rows] == \
        [("c2", "changed", "champions"), ("c3", "removed", "champions")]
    assert rows[1]["removal_reason"] == "left_audience"

    third = deliver(dest, AS_OF, wh, settings=local)
    assert (third["rows_added"], third["rows_changed"], third["rows_removed"]) == (0, 0, 0)
    assert third["status"] == "delivered" and third["location"] is None
    files = sorted(p.name for p in (local.exports_dir / "marketing" / "mkt").iterdir())
    assert len(files) == 4  # two data files + two manifests: the empty delta wrote nothing
    audit = q(wh, "select status, rows_added, rows_changed, rows_removed from audit.exports "
                  "where destination = 'mkt' order by started_at")
    assert audit == [("delivered", 3, 0, 0), ("delivered", 0, 1, 1), ("delivered", 0, 0, 0)]
    state = q(wh, "select destination_key, payload->>'audience' from scoring.delivered_state "
                  "where destination = 'mkt' order by 1")
    assert state == [("c1", "champions"), ("c2", "champions")]
    comms = q(wh, "select customer_id, audience, change_type, kind from scoring.communications "
                  "where destination = 'mkt' order by communicated_at, customer_id")
    assert comms == [("c1", "champions", "added", "offer_made"), ("c2", "loyal", "added", "offer_made"),
                     ("c3", "champions", "added", "offer_made"), ("c2", "champions", "changed", "offer_made"),
                     ("c3", "champions", "removed", "segment_communicated")]


def test_upsert_sends_no_ordinary_removals_and_insert_only_sends_only_additions(wh, local):
    for cid, seg in [("c1", "champions"), ("c2", "loyal")]:
        add_customer(wh, cid, seg)
    up, ins = file_dest("up", mode="upsert"), file_dest("ins", mode="insert_only")
    deliver(up, AS_OF, wh, settings=local)
    deliver(ins, AS_OF, wh, settings=local)
    set_segment(wh, "c1", "lost")
    set_segment(wh, "c2", "champions")
    add_customer(wh, "c3", "loyal")
    r_up = deliver(up, AS_OF, wh, settings=local)
    r_ins = deliver(ins, AS_OF, wh, settings=local)
    assert (r_up["rows_added"], r_up["rows_changed"], r_up["rows_removed"], r_up["not_sent_removed"]) == (1, 1, 0, 1)
    assert (r_ins["rows_added"], r_ins["rows_changed"], r_ins["rows_removed"], r_ins["not_sent_changed"]) == \
        (1, 0, 0, 1)
    assert [r["customer_id"] for r in read_rows(r_ins)] == ["c3"]


def test_file_manifest_checksum_matches_and_named_fields_are_reported(wh, local):
    add_customer(wh, "c1", "champions", email="sara@example.org")
    add_customer(wh, "c2", "loyal")
    dest = file_dest(named_fields=["email"])
    res = deliver(dest, AS_OF, wh, settings=local)
    data = Path(res["location"])
    manifest = json.loads(data.with_name(data.name.replace(".csv", ".manifest.json")).read_text())
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["sha256"] == digest == res["checksum"]
    assert manifest["rows"] == {"added": 2, "changed": 0, "removed": 0, "total": 2}
    assert manifest["as_of_date"] == "2026-03-01" and manifest["destination"] == "mkt"
    assert manifest["columns"] == ["change_type", "customer_id", "audience", "rfm_segment", "value_tier", "city",
                                   "email", "removal_reason"]
    assert manifest["named_fields"] == ["email"]
    assert data.name == f"{res['export_id']}.csv"
    assert not [p for p in data.parent.iterdir() if p.name.endswith(".tmp")]
    assert read_rows(res)[0]["email"] == "sara@example.org"
    assert q(wh, "select checksum, named_fields from audit.exports where export_id = %s", res["export_id"]) == \
        [(digest, ["email"])]
    # personal fields never land in the warehouse's delivered state (hash covers them, payload doesn't)
    assert q(wh, "select count(*) from scoring.delivered_state where payload ? 'email'") == [(0,)]
    # a changed e-mail address is a change for this destination
    with psycopg.connect(wh) as conn:
        conn.execute("update pii.pii_customer_profiles set email = 'new@example.org' where customer_id = 'c1'")
    res2 = deliver(dest, AS_OF, wh, settings=local)
    assert (res2["rows_changed"], read_rows(res2)[0]["email"]) == (1, "new@example.org")


def test_no_scores_for_as_of_fails_without_touching_state(wh, local):
    add_customer(wh, "c1", "champions")
    with pytest.raises(DeliveryError, match="no scores"):
        deliver(file_dest(), date(2020, 1, 1), wh, settings=local)
    assert q(wh, "select status from audit.exports") == [("failed",)]


# --- database destination ----------------------------------------------------------------------------------


def test_database_upsert_into_real_table_with_source_id_space(wh, local, monkeypatch):
    monkeypatch.setenv("CKP_TEST_EXPORT_TARGET_URL", wh)  # the scratch database doubles as the orders db
    for cid, seg, tier in [("c1", "champions", "platinum"), ("c2", "loyal", "bronze"), ("c3", "lost", "bronze")]:
        add_customer(wh, cid, seg, tier=tier, consent=False)  # service purpose: consent not required
    with psycopg.connect(wh) as conn:
        conn.cursor().executemany("insert into marts.customer_identity_map values (%s, %s, %s, 'det', 1.0, now())",
                         [("c1", "orders", "101"), ("c2", "orders", "102"), ("c3", "orders", "103"),
                          ("c3", "forms", "F0001")])
    dest = parse_destination({
        "name": "orders_db", "kind": "database", "enabled": True, "purpose": "service", "consent": "none",
        "mode": "mirror", "id_space": "source:orders",
        "audiences": [{"name": "vip", "filter": {"value_tier": ["platinum"]}},
                      {"name": "active", "filter": {"rfm_segment": ["champions", "loyal"]}}],
        "fields": ["rfm_segment", "value_tier", "churn_probability", "predicted_clv"],
        "database": {"table": "public.customer_segments", "url_env": "CKP_TEST_EXPORT_TARGET_URL"},
    }, "test")
    res = deliver(dest, AS_OF, wh, settings=local)
    assert res["rows_added"] == 2
    rows = q(wh, "select customer_id, audience, rfm_segment, predicted_clv, delivery_id "
                 "from public.customer_segments order by 1")
    assert [r[:4] for r in rows] == [("101", "vip", "champions", 100), ("102", "active", "loyal", 100)]
    assert rows[0][4] == res["delivery_id"]

    set_segment(wh, "c2", "champions")   # 102 changes
    set_segment(wh, "c1", "lost")        # still vip (platinum)
    with psycopg.connect(wh) as conn:
        conn.execute("update marts.customer_segments set value_tier = 'bronze' where customer_id = 'c1'")
    res = deliver(dest, AS_OF, wh, settings=local)  # 101 now in no audience -> deleted (mirror)
    assert (res["rows_added"], res["rows_changed"], res["rows_removed"]) == (0, 1, 1)
    assert q(wh, "select customer_id, audience, rfm_segment from public.customer_segments") == \
        [("102", "active", "champions")]


# --- id_space ----------------------------------------------------------------------------------------------


def test_sibling_unit_receives_its_own_keys_one_row_per_record(wh, local):
    add_customer(wh, "c1", "champions")
    add_customer(wh, "c2", "champions")
    add_customer(wh, "c3", "loyal")
    with psycopg.connect(wh) as conn:
        conn.cursor().executemany("insert into marts.customer_identity_map values (%s, %s, %s, 'det', 1.0, now())",
                         [("c1", "sibling:insurance", "INS-1"), ("c1", "sibling:insurance", "INS-2"),
                          ("c1", "orders", "101"), ("c2", "orders", "102"), ("c3", "sibling:insurance", "INS-3"),
                          ("c3", "sibling:travel", "TR-9")])
    dest = file_dest("ins", id_space="source:sibling:insurance", key_column="policy_holder_no")
    res = deliver(dest, AS_OF, wh, settings=local)
    rows = read_rows(res)
    assert [(r["policy_holder_no"], r["audience"]) for r in rows] == \
        [("INS-1", "champions"), ("INS-2", "champions"), ("INS-3", "loyal")]
    assert "customer_id" not in rows[0]  # the warehouse's own id does not leave for a sibling unit
    assert q(wh, "select destination_key, customer_id from scoring.delivered_state order by 1") == \
        [("INS-1", "c1"), ("INS-2", "c1"), ("INS-3", "c3")]
    # one communication row per customer and change, even with two records
    assert q(wh, "select customer_id, count(*) from scoring.communications group by 1 order by 1") == \
        [("c1", 1), ("c3", 1)]


# --- webhook -----------------------------------------------------------------------------------------------


@pytest.fixture()
def receiver(tmp_path):
    with webhook_receivers(tmp_path, path="/segments") as start:
        yield start


def hook_dest(url, batch_size=2, max_retries=3):
    return webhook_destination(url, fields=["rfm_segment", "churn_probability"], batch_size=batch_size,
                               max_retries=max_retries)


def test_webhook_retries_503_and_delivers_once(wh, local, receiver):
    for cid in ("c1", "c2", "c3"):
        add_customer(wh, cid, "champions")
    srv = receiver(fail_plan=[503, 503])
    waits = []
    res = deliver(hook_dest(srv.url), AS_OF, wh, settings=local, sleep=waits.append)
    assert res["status"] == "delivered" and res["rows_added"] == 3
    keys = [e["idempotency_key"] for e in srv.requests_log()]
    did = res["delivery_id"]
    assert keys == [f"{did}-1", f"{did}-1", f"{did}-1", f"{did}-2"]  # same key on every retry
    assert waits == [0.01, 0.02]  # exponential back-off
    stored = srv.stored()
    assert [b["batch_no"] for b in stored] == [1, 2]
    assert sorted(r["customer_id"] for b in stored for r in b["records"]) == ["c1", "c2", "c3"]
    # re-running sends nothing new
    again = deliver(hook_dest(srv.url), AS_OF, wh, settings=local, sleep=waits.append)
    assert (again["rows_added"], again["rows_changed"]) == (0, 0)
    assert len(srv.requests_log()) == 4


def test_webhook_400_fails_keeps_state_and_next_run_resends_same_delta(wh, local, receiver):
    for cid in ("c1", "c2", "c3"):
        add_customer(wh, cid, "champions")
    # batch 1 accepted, batch 2 refused with 400 (no retry)
    srv = receiver(fail_plan=[0, 400])
    dest = hook_dest(srv.url)
    with pytest.raises(DeliveryError, match="400"):
        deliver(dest, AS_OF, wh, settings=local, sleep=lambda s: None)
    assert [e["status"] for e in srv.requests_log()] == [200, 400]
    assert q(wh, "select count(*) from scoring.delivered_state") == [(0,)]
    assert q(wh, "select count(*) from scoring.communications") == [(0,)]
    failed = q(wh, "select export_id, delivery_id, status, rows_added from audit.exports")
    assert len(failed) == 1 and failed[0][2:] == ("failed", 3)

    res = deliver(dest, AS_OF, wh, settings=local, sleep=lambda s: None)
    assert res["status"] == "delivered" and res["rows_added"] == 3 and res["attempt"] == 2
    assert res["delivery_id"] == failed[0][1] and res["export_id"] != failed[0][0]
    log = srv.requests_log()[2:]
    did = res["delivery_id"]
    assert [(e["idempotency_key"], e["outcome"]) for e in log] == [(f"{did}-1", "duplicate"), (f"{did}-2", "stored")]
    stored = srv.stored()
    assert sorted(r["customer_id"] for b in stored for r in b["records"]) == ["c1", "c2", "c3"]  # no duplicates
    assert q(wh, "select count(*) from scoring.delivered_state") == [(3,)]
    assert q(wh, "select status, attempt from audit.exports order by started_at") == \
        [("failed", 1), ("delivered", 2)]


# --- deliver_all -------------------------------------------------------------------------------------------


def test_deliver_all_runs_enabled_destinations_and_reports_failures(wh, settings, tmp_path, receiver):
    add_customer(wh, "c1", "champions")
    srv = receiver(fail_plan=[400])
    cfg = tmp_path / "destinations.yml"
    base = ("kind: {kind}\n    enabled: {enabled}\n    purpose: marketing\n    consent: marketing\n"
            "    mode: upsert\n    id_space: customer_id\n"
            "    audiences: [{{name: champions, filter: {{rfm_segment: [champions]}}}}]\n    fields: [rfm_segment]\n")
    cfg.write_text(
        "destinations:\n"
        "  - name: files\n    " + base.format(kind="file", enabled="true") + "    file: {format: csv, dir: m}\n"
        "  - name: paused\n    " + base.format(kind="file", enabled="false") + "    file: {format: csv, dir: m}\n"
        "  - name: hook\n    " + base.format(kind="webhook", enabled="true")
        + f"    webhook: {{url: '{srv.url}', batch_size: 10, max_retries: 0, backoff_seconds: 0, "
          "timeout_seconds: 5}\n")
    s = dataclasses.replace(settings, home=tmp_path, external_warehouse_url=wh)
    from crm_knowledge.export.deliver import DeliveriesFailed, deliver_all

    with pytest.raises(DeliveriesFailed) as exc:
        deliver_all(AS_OF, s, config_path=cfg)
    got = {r["destination"]: (r["status"], r.get("rows_added")) for r in exc.value.results}
    assert got == {"files": ("delivered", 1), "paused": ("skipped", None), "hook": ("failed", 1)}

    results = deliver_all(AS_OF, s, only=["hook"], config_path=cfg)  # the receiver now accepts
    assert [(r["destination"], r["status"], r["rows_added"], r["attempt"]) for r in results] == \
        [("hook", "delivered", 1, 2)]
    assert (tmp_path / "exports" / "m" / "files").is_dir()
