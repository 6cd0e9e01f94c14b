"""Holdouts at delivery against a real Postgres (scratch database): who is sent, who is held out, what is
recorded, and that arms survive re-runs, deltas and audience changes; erasure removes a customer's arms."""

from __future__ import annotations

import csv
import dataclasses
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from export_world import delivery_warehouse
from psycopg.types.json import Jsonb

from crm_knowledge.export.config import parse_destination
from crm_knowledge.export.deliver import deliver
from crm_knowledge.export.holdout import bucket, holdout_key
from crm_knowledge.privacy.purge import purge_records

pytestmark = pytest.mark.warehouse

DAY1 = date(2026, 3, 1)
DAY2 = DAY1 + timedelta(days=1)
SHARE = 0.3

RUNS = {"churn": "churn-run-1", "rfm": "rfm-run-1"}


@pytest.fixture()
def wh(scratch_db):
    return delivery_warehouse(scratch_db)


def add_customers(url, ids, segment, *, day=DAY1, consent=True):
    with psycopg.connect(url) as conn:
        for i, cid in enumerate(ids):
            conn.execute("insert into marts.customer_segments values (%s, %s, %s, 'gold', 1, %s, 100, 0.9, %s)",
                         (cid, day, segment, (i % 10) / 10, Jsonb(RUNS)))
            conn.execute("insert into marts.dim_customers values (%s, %s, false, false, 'Tehran', 'Tehran')",
                         (cid, consent))


def dest(holdout=SHARE, **extra):
    doc = {
        "name": "mkt", "kind": "file", "enabled": True, "purpose": "marketing", "consent": "marketing",
        "mode": "mirror", "id_space": "customer_id",
        "audiences": [{"name": "champions", "filter": {"rfm_segment": ["champions"]}, "holdout": holdout},
                      {"name": "loyal", "filter": {"rfm_segment": ["loyal"]}}],
        "fields": ["rfm_segment"], "file": {"format": "csv", "dir": "marketing"},
    }
    doc.update(extra)
    return parse_destination(doc, "test")


def sent_ids(result) -> set[str]:
    if not result["location"]:
        return set()
    with open(Path(result["location"]), newline="") as fh:
        return {r["customer_id"] for r in csv.DictReader(fh) if r["change_type"] != "removed"}


def arms(url) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("select customer_id, arm from scoring.campaign_assignments "
                                 "where audience = 'champions'").fetchall())


def test_held_out_customers_are_recorded_and_never_sent(wh, local):
    ids = [f"c{i:03d}" for i in range(300)]
    add_customers(wh, ids, "champions")
    add_customers(wh, ["n1", "n2"], "champions", consent=False)  # may not be contacted: in no arm
    add_customers(wh, ["l1", "l2"], "loyal")                      # audience without a holdout: not measured
    res = deliver(dest(), DAY1, wh, settings=local)

    recorded = arms(wh)
    assert set(recorded) == set(ids)  # every consenting champion randomised, nobody else
    held = {c for c, a in recorded.items() if a == "holdout"}
    # the arm is the keyed hash against the declared share
    key = holdout_key()
    assert held == {c for c in ids if bucket(key, "mkt", "champions", c) < SHARE}
    assert 0.2 < len(held) / len(ids) < 0.4
    assert sent_ids(res) == (set(ids) - held) | {"l1", "l2"}
    assert res["held_out"] == len(held) and res["assigned"] == len(ids) and res["members"] == len(ids) + 2

    with psycopg.connect(wh) as conn:
        (campaign_date, share, export_id, churn, runs), = conn.execute(
            "select distinct campaign_date, holdout_share, export_id, churn_probability is not null, "
            "model_run_ids from scoring.campaign_assignments where customer_id = 'c001'").fetchall()
        model_runs = conn.execute("select model_run_id, model, audience, campaign_date, assigned_customers, "
                                  "holdout_customers from scoring.model_run_campaigns order by 1").fetchall()
        comms = {r[0] for r in conn.execute("select customer_id from scoring.communications").fetchall()}
    assert (campaign_date, share, export_id, churn, runs) == (DAY1, SHARE, res["export_id"], True, RUNS)
    # each scoring model run records the campaign its scores selected
    assert model_runs == [("churn-run-1", "churn", "champions", DAY1, 300, len(held)),
                          ("rfm-run-1", "rfm", "champions", DAY1, 300, len(held))]
    assert not comms & held  # no offer recorded for a held-out customer either


def test_arms_are_stable_across_re_runs_deltas_and_share_changes(wh, local):
    ids = [f"c{i:03d}" for i in range(200)]
    add_customers(wh, ids, "champions")
    first = deliver(dest(), DAY1, wh, settings=local)
    day1 = arms(wh)
    held = {c for c, a in day1.items() if a == "holdout"}

    again = deliver(dest(), DAY1, wh, settings=local)  # a re-run of the same day
    assert arms(wh) == day1 and again["rows_added"] == 0 and again["assigned"] == 0

    # the next day: new customers enter, a held-out and a treated customer leave and come back, the share
    # changes -- recorded arms never move, newcomers are randomised under the new share
    newcomers = [f"d{i:03d}" for i in range(100)]
    add_customers(wh, newcomers, "champions", day=DAY2)
    with psycopg.connect(wh) as conn:
        conn.execute("insert into marts.customer_segments select customer_id, %s, rfm_segment, value_tier, "
                     "behaviour_cluster, churn_probability, predicted_clv, p_alive, model_run_ids "
                     "from marts.customer_segments where as_of_date = %s", (DAY2, DAY1))
    second = deliver(dest(holdout=0.5), DAY2, wh, settings=local)
    after = arms(wh)
    assert {c: after[c] for c in ids} == day1
    key = holdout_key()
    assert {c for c in newcomers if after[c] == "holdout"} == {
        c for c in newcomers if bucket(key, "mkt", "champions", c) < 0.5}
    assert sent_ids(second) == {c for c in newcomers if after[c] == "treated"}
    assert not (sent_ids(first) | sent_ids(second)) & {c for c, a in after.items() if a == "holdout"}
    with psycopg.connect(wh) as conn:
        dates = dict(conn.execute("select campaign_date, count(*) from scoring.campaign_assignments "
                                  "group by 1").fetchall())
    assert dates == {DAY1: 200, DAY2: 100}

    # a held-out customer who leaves the audience and re-enters stays held out (never sent)
    some_held = sorted(held)[0]
    with psycopg.connect(wh) as conn:
        conn.execute("update marts.customer_segments set rfm_segment = 'lost' where customer_id = %s "
                     "and as_of_date = %s", (some_held, DAY2))
    deliver(dest(holdout=0.5), DAY2, wh, settings=local)
    with psycopg.connect(wh) as conn:
        conn.execute("update marts.customer_segments set rfm_segment = 'champions' where customer_id = %s",
                     (some_held,))
    back = deliver(dest(holdout=0.5), DAY2, wh, settings=local)
    assert arms(wh)[some_held] == "holdout" and some_held not in sent_ids(back)


def test_customers_delivered_before_the_holdout_was_declared_keep_receiving(wh, local):
    ids = [f"c{i:03d}" for i in range(50)]
    add_customers(wh, ids, "champions")
    without = dest()
    without = dataclasses.replace(without, audiences=tuple(dataclasses.replace(a, holdout=None)
                                                           for a in without.audiences))
    deliver(without, DAY1, wh, settings=local)
    res = deliver(dest(), DAY1, wh, settings=local)
    # nobody removed from the destination, nobody randomised: they were not part of a campaign
    assert res["rows_removed"] == 0 and res["assigned"] == 0 and arms(wh) == {}


def test_erasure_removes_a_customer_from_campaign_records(wh, local):
    ids = [f"c{i:03d}" for i in range(40)]
    add_customers(wh, ids, "champions")
    deliver(dest(), DAY1, wh, settings=local)
    with psycopg.connect(wh) as conn:
        purge_records(conn, set(), {"c007"})  # the purge step of every erasure (privacy/erasure.py)
        left = conn.execute("select count(*) filter (where customer_id = 'c007'), count(*) "
                            "from scoring.campaign_assignments").fetchone()
    assert left == (0, 39)
