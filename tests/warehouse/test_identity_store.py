"""store.run on a scratch database with a hand-made intermediate.int_identity_candidates."""

from __future__ import annotations

import hashlib
import json

import psycopg
import pytest

from crm_knowledge.identity import store
from crm_knowledge.identity.synthetic import CANDIDATES_DDL
from crm_knowledge.privacy.pseudonym import pseudonymize

pytestmark = pytest.mark.warehouse

COLS = ("source_system, source_record_id, first_name_norm, last_name_norm, full_name_norm, email_norm, phone_e164, "
        "national_id_valid, birth_date, postcode, city_norm, street_norm, customer_ref, seen_at")

ROWS = [
    ("orders", "1", "ali", "karimi", "ali karimi", "ali@mail.ir", "+989121000001", None, "1980-05-17",
     "1234567890", "tehran", None, None, "2026-03-01T10:00:00+03:30"),
    ("forms", "F1", None, None, "ali karimi", None, None, None, None, None, None, None, "1",
     "2026-03-02T10:00:00+03:30"),
    ("sibling:insurance", "S1", "کریمی", "علی", None, None, None, "0012345679", "1980-05-17", "1234567890",
     "تهران", None, None, "2026-03-01T09:00:00+03:30"),
    ("orders", "2", "sara", "nouri", "sara nouri", "test@test.com", "+989121000002", None, None, None,
     "shiraz", None, None, "2026-03-01T10:00:00+03:30"),
    ("contacts", "K1", None, None, "someone", "test@test.com", None, None, None, None, None, None, None,
     "2026-03-03T10:00:00+03:30"),
]


def _insert(conn, rows):
    with conn.cursor() as cur:
        cur.executemany(f"insert into intermediate.int_identity_candidates ({COLS}) values "
                        f"({', '.join(['%s'] * 14)})", rows)


def test_run_full_then_incremental(scratch_db):
    with psycopg.connect(scratch_db) as conn:
        conn.execute(CANDIDATES_DDL)
        _insert(conn, ROWS)

    stats = store.run(scratch_db, "full")
    assert stats["records"] == 5
    assert stats["unresolved"] == 1
    assert stats["junk_values"] == 1
    assert stats["customers"] == 2

    with psycopg.connect(scratch_db) as conn:
        rc = dict(conn.execute("select source_record_id, customer_id from identity.record_clusters").fetchall())
        assert rc["1"] == rc["F1"] == rc["S1"]
        assert rc["2"] != rc["1"]
        assert set(rc.values()) == {"C000000001", "C000000002"}
        un = conn.execute("select source_system, source_record_id, reason, seen_at from identity.unresolved").fetchall()
        assert [(u[0], u[1]) for u in un] == [("contacts", "K1")]
        assert un[0][3] is not None
        junk = conn.execute("select identifier_kind, identifier_value_hash, distinct_records "
                            "from identity.junk_values").fetchall()
        assert junk == [("email", pseudonymize("test@test.com", "email"), 2)]
        assert hashlib.sha256(b"test@test.com").hexdigest() not in junk[0][1]
        pairs = conn.execute("select source_record_id_l, source_record_id_r, match_rule, explanation "
                             "from identity.match_pairs order by 1, 2").fetchall()
        rules = {frozenset((p[0], p[1])): p[2] for p in pairs}  # a pair has no direction
        assert rules[frozenset(("1", "F1"))] == "customer_ref"
        assert rules[frozenset(("1", "S1"))] == "probabilistic"
        expl = next(p[3] for p in pairs if p[2] == "probabilistic")
        assert isinstance(expl, dict) and "birth_date" in expl["agreed"]

    # same data again: same ids, no merges
    stats2 = store.run(scratch_db, "full")
    assert stats2["merges"] == 0 and stats2["new_customer_ids"] == 0

    with psycopg.connect(scratch_db) as conn:
        _insert(conn, [("forms", "F2", "ali", "karimi", None, "ali@mail.ir", "+989121000002", None, None, None,
                        None, None, None, "2030-01-01T00:00:00+00:00")])
    # F2 shares ali's email and sara's phone: the phone name guard keeps ali and sara apart
    stats3 = store.run(scratch_db, "incremental")
    assert stats3["mode"] == "incremental"
    assert stats3["new_records"] >= 1
    with psycopg.connect(scratch_db) as conn:
        rc = dict(conn.execute("select source_record_id, customer_id from identity.record_clusters").fetchall())
        assert rc["F2"] == rc["1"]
        assert rc["2"] != rc["1"]
        assert conn.execute("select count(*) from identity.customer_id_merges").fetchone()[0] == 0

    with psycopg.connect(scratch_db) as conn:
        _insert(conn, [("forms", "F3", "sara", "nouri", None, "ali@mail.ir", "+989121000002", None, None, None,
                        None, None, None, "2030-01-01T00:00:00+00:00")])
    # email guard: "sara" conflicts with "ali" on the email, so no merge either
    store.run(scratch_db, "incremental")
    with psycopg.connect(scratch_db) as conn:
        rc = dict(conn.execute("select source_record_id, customer_id from identity.record_clusters").fetchall())
        assert rc["F3"] == rc["2"] != rc["1"]
        # a national id (no name guard) bridges them
        _insert(conn, [("forms", "F4", "sara", None, None, None, "+989121000002", "0012345679", None, None,
                        None, None, None, "2030-01-01T00:00:00+00:00")])
    stats5 = store.run(scratch_db, "incremental")
    with psycopg.connect(scratch_db) as conn:
        rc = dict(conn.execute("select source_record_id, customer_id from identity.record_clusters").fetchall())
        merges = conn.execute("select old_customer_id, new_customer_id from identity.customer_id_merges").fetchall()
    assert stats5["merges"] == 1
    assert rc["2"] == rc["1"] == "C000000001"
    assert merges == [("C000000002", "C000000001")]


def test_candidates_are_read_in_key_order_whatever_the_physical_order(scratch_db):
    """Record positions feed Splink's training sample and the tie-breaks: reading in key order makes the same
    records resolve the same way after a table was rewritten in another order (an incremental dbt run)."""
    with psycopg.connect(scratch_db) as conn:
        conn.execute(CANDIDATES_DDL)
        _insert(conn, list(reversed(ROWS)))
        first = store.read_candidates(conn)
        conn.execute("delete from intermediate.int_identity_candidates")
        _insert(conn, ROWS[2:] + ROWS[:2])
        second = store.read_candidates(conn)
    keys = list(zip(first["source_system"], first["source_record_id"], strict=True))
    assert keys == sorted(keys)
    # staged_at is when the rewrite staged a row, the one column that may differ
    assert first.drop(columns="staged_at").equals(second.drop(columns="staged_at"))


def test_ensure_schema_is_idempotent(scratch_db):
    with psycopg.connect(scratch_db) as conn:
        store.ensure_schema(conn)
        store.ensure_schema(conn)
        n = conn.execute("select count(*) from information_schema.tables where table_schema = 'identity'").fetchone()[0]
    assert n == 8  # 06_identity.sql: record_clusters ... match_weights


def test_missing_candidates_table(scratch_db):
    with pytest.raises(RuntimeError, match="int_identity_candidates"):
        store.run(scratch_db)
    _ = json  # explanation is parsed by psycopg (jsonb -> dict)


def _resolved_at(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("select source_record_id, resolved_at from identity.record_clusters").fetchall())


def _resolved_rows(url: str) -> dict:
    """ROWS resolved by a full run: resolved_at per record."""
    with psycopg.connect(url) as conn:
        conn.execute(CANDIDATES_DDL)
        _insert(conn, ROWS)
    store.run(url, "full")
    return _resolved_at(url)


def test_resolved_at_moves_only_for_records_resolution_decided_again(scratch_db):
    """resolved_at drives the incremental facts' re-reads: it must stay put for records whose customer stays."""
    before = _resolved_rows(scratch_db)
    # same data, full and incremental: nobody was decided again
    store.run(scratch_db, "full")
    store.run(scratch_db, "incremental")
    assert _resolved_at(scratch_db) == before
    # a new record joining ali: it gets the run's time, ali's records keep theirs
    with psycopg.connect(scratch_db) as conn:
        _insert(conn, [("forms", "F9", "ali", "karimi", None, "ali@mail.ir", None, None, None, None, None, None, None,
                        "2026-03-04T10:00:00+03:30")])
    store.run(scratch_db, "incremental")
    after = _resolved_at(scratch_db)
    assert after["F9"] > before["1"]
    assert {k: after[k] for k in before} == before


@pytest.mark.parametrize("mode", ["full", "incremental"])
@pytest.mark.parametrize("change", ["split_off", "gone"])
def test_a_customer_that_loses_a_record_has_its_records_resolved_again(scratch_db, mode, change):
    """The customer-level models list a customer by its records' resolved_at (int_customers_affected). A record
    split off into a new customer, or gone from the candidates, changes the customer it left though none of the
    records it keeps moved: they get the run's time, so that customer is recomputed too. Others keep theirs."""
    before = _resolved_rows(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        ali = conn.execute("select customer_id from identity.record_clusters where source_record_id = '1'"
                           ).fetchone()[0]
        assert conn.execute("select customer_id from identity.record_clusters where source_record_id = 'F1'"
                            ).fetchone()[0] == ali
        if change == "split_off":  # the form now names somebody else, found by an email of their own (seen
            # after it was resolved: a change)
            conn.execute("update intermediate.int_identity_candidates set full_name_norm = 'reza amini', "
                         "customer_ref = null, email_norm = 'reza@mail.ir', seen_at = now() "
                         "where source_record_id = 'F1'")
        else:  # deleted at the source
            conn.execute("delete from intermediate.int_identity_candidates where source_record_id = 'F1'")
    store.run(scratch_db, mode)
    after = _resolved_at(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        owner = dict(conn.execute("select source_record_id, customer_id from identity.record_clusters").fetchall())
        merges = conn.execute("select count(*) from identity.customer_id_merges").fetchone()[0]
    assert owner["1"] == owner["S1"] == ali and merges == 0  # ali stays ali: no merge lists anyone
    if change == "split_off":
        assert owner["F1"] != ali and after["F1"] > before["F1"]
    else:
        assert "F1" not in after
    assert after["1"] > before["1"] and after["S1"] > before["S1"]  # ali's kept records: resolved again
    assert after["2"] == before["2"]  # sara lost nothing


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_a_customer_id_is_never_issued_again_once_its_records_are_gone(scratch_db, mode):
    """Erasure (or a deletion at the source) removes every record of the customer holding the highest id, and
    with them that id from record_clusters and customer_id_merges. The next new person must not get it."""
    with psycopg.connect(scratch_db) as conn:
        conn.execute(CANDIDATES_DDL)
        _insert(conn, ROWS)
    store.run(scratch_db, "full")
    with psycopg.connect(scratch_db) as conn:
        gone, = conn.execute("select max(customer_id) from identity.record_clusters").fetchone()
        records = [r for r, in conn.execute("select source_record_id from identity.record_clusters "
                                            "where customer_id = %s", (gone,))]
        # what erasure does: the records leave the sources and every identity table
        conn.execute("delete from intermediate.int_identity_candidates where source_record_id = any(%s)", (records,))
        conn.execute("delete from identity.record_clusters where customer_id = %s", (gone,))
        conn.execute("delete from identity.customer_id_merges where %s in (old_customer_id, new_customer_id)", (gone,))
        assert conn.execute("select highest_number from identity.issued_ids").fetchone()[0] == int(gone[1:])
    store.run(scratch_db, "full")  # a run without the record: the id is nowhere in the identity tables now
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("select count(*) from identity.record_clusters where customer_id = %s",
                            (gone,)).fetchone()[0] == 0
        _insert(conn, [("orders", "9", "nima", "rad", "nima rad", "nima@mail.ir", "+989121000009", None, None, None,
                        "tabriz", None, None, "2026-03-05T10:00:00+03:30")])
    store.run(scratch_db, mode)
    with psycopg.connect(scratch_db) as conn:
        fresh, = conn.execute("select customer_id from identity.record_clusters where source_record_id = '9'"
                              ).fetchone()
        high, = conn.execute("select highest_number from identity.issued_ids where id_prefix = 'C'").fetchone()
    assert fresh != gone and fresh > gone
    assert high == int(fresh[1:])


def test_mode_for_uses_the_configured_weekday():
    import datetime as dt

    from crm_knowledge.identity.config import config_from_dict

    sunday = config_from_dict({"full_resolution_weekday": "sunday"})
    assert store.mode_for(dt.date(2026, 11, 22), sunday) == "full"          # a Sunday
    assert store.mode_for(dt.date(2026, 11, 23), sunday) == "incremental"   # a Monday
    assert store.mode_for(dt.datetime(2026, 11, 23, 23, 59), sunday, force_full=True) == "full"
    never = config_from_dict({"full_resolution_weekday": "never"})
    assert store.mode_for(dt.date(2026, 11, 22), never) == "incremental"
    # once a day: a later run of the same Sunday (the DAG runs whenever data lands) is incremental
    assert store.mode_for(dt.date(2026, 11, 22), sunday, last_full_day=dt.date(2026, 11, 22)) == "incremental"
    assert store.mode_for(dt.date(2026, 11, 22), sunday, last_full_day=dt.date(2026, 11, 15)) == "full"
    assert store.mode_for(dt.date(2026, 11, 22), sunday, force_full=True,
                          last_full_day=dt.date(2026, 11, 22)) == "full"


def test_runs_are_recorded_and_the_weekly_full_run_happens_once_that_day(scratch_db):
    import datetime as dt

    from crm_knowledge.identity.config import config_from_dict

    sunday = config_from_dict({"full_resolution_weekday": "sunday"})
    with psycopg.connect(scratch_db) as conn:
        conn.execute(CANDIDATES_DDL)
        _insert(conn, ROWS)
    day = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
    assert store.decide_mode(scratch_db, day, sunday) == "full"   # no run recorded yet
    first = store.run(scratch_db, store.decide_mode(scratch_db, day, sunday), sunday, day=day)
    later = day + dt.timedelta(hours=5)
    assert store.decide_mode(scratch_db, later, sunday) == "incremental"
    second = store.run(scratch_db, store.decide_mode(scratch_db, later, sunday), sunday, day=later)
    with psycopg.connect(scratch_db) as conn:
        runs = conn.execute("select run_day, mode, records, customers from identity.resolution_runs "
                            "order by resolved_at").fetchall()
    assert runs == [(dt.date(2026, 11, 22), "full", 5, first["customers"]),
                    (dt.date(2026, 11, 22), "incremental", 5, second["customers"])]
    assert first["customers"] == second["customers"] > 0
    assert store.decide_mode(scratch_db, day + dt.timedelta(days=7), sunday) == "full"  # next Sunday
