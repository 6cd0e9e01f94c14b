"""The daily identity run (identity/daily.py) gives the answers of the incremental run over all records.

A synthetic population (identity.synthetic: orders records with contact data, Persian-script sibling records
with swapped names and no contact data, forms referring to an order or sharing its e-mail) is resolved in full
on a scratch warehouse. Then a day: new people, new records of existing people, changed records (re-staged),
a record bridging two existing customers (a merge), a record sharing only blocking keys with an existing one
(a probabilistic match) and a record gone from the candidates. The day is resolved twice from the same state:
(b) by ``resolve_incremental`` over every record with the full run's saved model (not written), and (a) by
``store.run(..., "incremental")``, the neighbourhood path, which writes. record_clusters (customer id, rule,
score), unresolved records and merges must be identical.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import psycopg
import pytest

from crm_knowledge.identity import daily, store
from crm_knowledge.identity.config import load_config
from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS, KEY
from crm_knowledge.identity.resolve import resolve_incremental
from crm_knowledge.identity.synthetic import CANDIDATES_DDL, make_people, record

pytestmark = pytest.mark.warehouse

PERSONS = 260
NEW_PERSONS = 20

def _insert(conn: psycopg.Connection, frame: pd.DataFrame) -> None:
    cols = ", ".join(CANDIDATE_COLUMNS)
    with conn.cursor() as cur:
        cur.executemany(f"insert into intermediate.int_identity_candidates ({cols}) values "  # noqa: S608
                        f"({', '.join(['%s'] * len(CANDIDATE_COLUMNS))})",
                        [tuple(None if pd.isna(v) else v for v in row)
                         for row in frame[CANDIDATE_COLUMNS].itertuples(index=False, name=None)])


def _person(truth: pd.DataFrame, p: int) -> list[tuple[str, str]]:
    return [tuple(k) for k in truth.loc[truth["person_id"] == f"P{p:05d}", KEY].itertuples(index=False)]


@pytest.fixture()
def day(scratch_db):
    """A warehouse resolved in full, then a day of changes staged; (url, people, truth, the day's facts)."""
    people, truth = make_people(PERSONS + NEW_PERSONS, seed=11)
    person_of = dict(zip(zip(truth["source_system"], truth["source_record_id"], strict=True), truth["person_id"],
                         strict=True))
    pnum = people.apply(lambda r: int(person_of[(r["source_system"], r["source_record_id"])][1:]), axis=1)
    with psycopg.connect(scratch_db) as conn:
        conn.execute(CANDIDATES_DDL)
        _insert(conn, people[pnum < PERSONS])
    store.run(scratch_db, "full")

    orders = people[(people["source_system"] == "orders") & (pnum < PERSONS)].set_index("source_record_id")
    has_sibling = set(people.loc[people["source_system"] == "sibling:insurance", "source_record_id"])
    # a person with no sibling record yet gets one: no contact data, names swapped and in Persian script as
    # the synthetic siblings are, only the birth date and postcode (blocking keys) shared
    lone = next(p for p in range(PERSONS) if f"S{p}" not in has_sibling)
    o = orders.loc[str(1000 + lone)]
    sib = people[(people["source_system"] == "sibling:insurance")].iloc[0]
    fuzzy = record("sibling:insurance", f"S{lone}", first_name_norm=o["first_name_norm"],
                   last_name_norm=o["last_name_norm"], birth_date=o["birth_date"], postcode=o["postcode"],
                   city_norm=o["city_norm"])
    # two different people bridged: a form carrying A's e-mail and name and referring to B's order
    a, b = 3, 4
    oa = orders.loc[str(1000 + a)]
    bridge = record("forms", "BRIDGE", full_name_norm=oa["full_name_norm"], email_norm=oa["email_norm"],
                    customer_ref=str(1000 + b))
    new = pd.concat([people[pnum >= PERSONS], pd.DataFrame([fuzzy, bridge])], ignore_index=True)
    assert sib is not None
    changed = [str(1000 + p) for p in range(10, 16)]
    gone = str(1000 + 20)
    with psycopg.connect(scratch_db) as conn:
        _insert(conn, new)
        # changed records: a new e-mail, a moved postcode, a corrected name, re-staged today
        conn.execute("update intermediate.int_identity_candidates set email_norm = 'moved.' || email_norm, "
                     "staged_at = clock_timestamp() where source_system = 'orders' and source_record_id = any(%s)",
                     (changed[:3],))
        conn.execute("update intermediate.int_identity_candidates set postcode = '9999' || substr(postcode, 5), "
                     "staged_at = clock_timestamp() where source_system = 'orders' and source_record_id = any(%s)",
                     (changed[3:5],))
        conn.execute("update intermediate.int_identity_candidates set first_name_norm = first_name_norm || 'e', "
                     "staged_at = clock_timestamp() where source_system = 'orders' and source_record_id = %s",
                     (changed[5],))
        conn.execute("delete from intermediate.int_identity_candidates where source_system = 'orders' "
                     "and source_record_id = %s", (gone,))
    return scratch_db, {"lone": lone, "a": a, "b": b, "changed": changed, "new": len(new)}


def _expected(url: str):
    """(b): the incremental run over every record, with the full run's model; nothing written."""
    config = load_config()
    with psycopg.connect(url) as conn:
        candidates = store.read_candidates(conn)
        previous = store.read_previous(conn)
        retired = store.read_retired_ids(conn)
        mark = store.record_issued_ids(conn, [*previous["customer_id"], *retired], config.id_prefix,
                                       config.id_digits)
        retired += [mark] if mark else []
        saved = store.saved_model(conn)
        conn.rollback()
    assert saved is not None
    new, existing = store.split_new(candidates, previous)
    return resolve_incremental(new.drop(columns=["staged_at"]), existing.drop(columns=["staged_at"]), previous,
                               config, retired_ids=retired, saved_model=saved)


def _state(url: str, since: dt.datetime):
    with psycopg.connect(url) as conn:
        rc = {(s, r): (c, rule, round(score, 9)) for s, r, c, rule, score in conn.execute(
            "select source_system, source_record_id, customer_id, match_rule, match_score "
            "from identity.record_clusters")}
        un = {(s, r): reason for s, r, reason in conn.execute(
            "select source_system, source_record_id, reason from identity.unresolved")}
        merges = set(conn.execute("select old_customer_id, new_customer_id from identity.customer_id_merges "
                                  "where merged_at > %s", (since,)).fetchall())
        prepared = conn.execute(f"select count(*) from {daily.PREPARED}").fetchone()[0]  # noqa: S608
        candidates = conn.execute("select count(*) from intermediate.int_identity_candidates").fetchone()[0]
    return rc, un, merges, prepared, candidates


def test_the_daily_neighbourhood_run_equals_the_incremental_run_over_all_records(day):
    url, facts = day
    expected = _expected(url)
    with psycopg.connect(url) as conn:
        before = conn.execute("select now()").fetchone()[0]
    stats = store.run(url, "incremental")
    # the neighbourhood path ran, on a part of the records
    assert "neighbourhood_records" in stats, stats
    assert facts["new"] <= stats["new_records"] < stats["neighbourhood_records"] < stats["records"] / 2, stats
    assert stats["probabilistic"]["training_steps"] == ["saved model"]
    rc, un, merges, prepared, candidates = _state(url, before)

    want = {(s, r): (c, rule, round(score, 9)) for s, r, c, rule, score in expected.record_clusters.itertuples(
        index=False, name=None)}
    diff = {k: (rc.get(k), want.get(k)) for k in set(rc) | set(want) if rc.get(k) != want.get(k)}
    assert diff == {}, f"{len(diff)} records differ (daily, over all): {sorted(diff.items())[:10]}"
    assert un == dict(zip(zip(expected.unresolved["source_system"], expected.unresolved["source_record_id"],
                              strict=True), expected.unresolved["reason"], strict=True))
    assert merges == set(expected.merges.itertuples(index=False, name=None))
    assert prepared == candidates  # the kept state follows the candidates (new in, gone out)
    assert stats["customers"] == len({c for c, _, _ in want.values()})

    # the bridge merged A and B: one merge, both people's records under one id
    a, b = rc[("orders", str(1000 + facts["a"]))][0], rc[("orders", str(1000 + facts["b"]))][0]
    assert a == b == rc[("forms", "BRIDGE")][0]
    assert len(merges) == 1
    # the new sibling record matched its person by probability alone (it shares no identifier)
    lone = rc[("sibling:insurance", f"S{facts['lone']}")]
    assert lone[0] == rc[("orders", str(1000 + facts["lone"]))][0] and lone[1] == "probabilistic"
    # new people got fresh ids; the gone record left
    assert ("orders", str(1000 + 20)) not in rc


def test_a_day_without_changes_writes_nothing(day):
    url, _ = day
    store.run(url, "incremental")
    with psycopg.connect(url) as conn:
        before = conn.execute("select source_system, source_record_id, customer_id, match_rule, resolved_at "
                              "from identity.record_clusters order by 1, 2").fetchall()
    stats = store.run(url, "incremental")
    with psycopg.connect(url) as conn:
        after = conn.execute("select source_system, source_record_id, customer_id, match_rule, resolved_at "
                             "from identity.record_clusters order by 1, 2").fetchall()
    assert after == before
    assert stats["new_records"] == 0 and stats["neighbourhood_records"] == 0 and stats["customers"] > 0


def test_a_changed_configuration_resolves_over_all_records(day, monkeypatch):
    """The kept state was prepared under one configuration: another one (here: another fingerprint) must not read
    it; the run goes over all records and keeps a new state."""
    url, _ = day
    monkeypatch.setattr(daily, "config_fingerprint", lambda config: "another configuration")
    stats = store.run(url, "incremental")
    assert "neighbourhood_records" not in stats
    with psycopg.connect(url) as conn:
        assert conn.execute(f"select config_sha256 from {daily.STATE}").fetchone()[0] == "another configuration"  # noqa: S608
