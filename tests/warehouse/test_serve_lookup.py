"""Lookup against real tables (small fixture rows): ambiguous identifiers give every candidate, best first, with
their match reasons; a forgotten customer is never a candidate; a partner sees its own unit's customers only;
the one statement of a lookup also writes its audit row (customers returned, fields, no values)."""

from __future__ import annotations

import psycopg
import pytest

from crm_knowledge.serve import audit, lookup

pytestmark = pytest.mark.warehouse

SHARED_PHONE = "+989121234567"


@pytest.fixture()
def tables(scratch_db) -> str:
    keys = [("phone", SHARED_PHONE, "C1"), ("phone", SHARED_PHONE, "C2"), ("phone", SHARED_PHONE, "C3"),
            ("email", "c2@example.com", "C2"), ("name_birth", "ali karimi|1990-04-12", "C1")]
    with psycopg.connect(scratch_db) as conn:
        conn.execute("create schema pii; create schema marts; create schema audit")
        conn.execute("create table audit.api_requests (request_id bigint generated always as identity, "
                     "key_id text, role text, method text, endpoint text, status integer, customer_ids text[], "
                     "fields text[], duration_ms numeric(10, 2))")
        conn.execute("create table pii.pii_customer_lookup_keys (key_hash text, identifier_kind text, "
                     "customer_id text)")
        conn.execute("create table marts.customer_360 (customer_id text primary key, is_forgotten boolean)")
        conn.execute("create table marts.customer_identity_map (customer_id text, source_system text, "
                     "source_record_id text)")
        conn.execute("create table pii.pii_customer_profiles (customer_id text, full_name text, email text, "
                     "phone text, city text)")
        for kind, value, cid in keys:
            conn.execute("insert into pii.pii_customer_lookup_keys values (%s, %s, %s)",
                         (lookup.key_hash(kind, value), kind, cid))
        conn.execute("insert into marts.customer_360 values ('C1', false), ('C2', false), ('C3', true)")
        conn.execute("insert into marts.customer_identity_map values ('C2', 'sibling:bank_fa', 'B-9'), "
                     "('C1', 'forms', 'F-1')")
        conn.execute("insert into pii.pii_customer_profiles values ('C1', 'Ali Karimi', null, %s, 'Tehran'), "
                     "('C2', 'Sara Karimi', 'c2@example.com', %s, 'Tehran')", (SHARED_PHONE, SHARED_PHONE))
    return scratch_db


CALLER = audit.Caller("k1", "agent", "GET", "/customers/lookup", 0.5)


def find(conn, unit=None, contact=False, **identifiers):
    return lookup.find(conn, lookup.lookup_keys(**identifiers), CALLER, unit=unit, contact=contact)


def test_a_shared_phone_gives_every_live_candidate_with_reasons(tables):
    with psycopg.connect(tables) as conn:
        found = find(conn, phone="0912 123 4567")
        assert [(c.customer_id, c.match_reasons, c.contact) for c in found] == [("C1", ["phone"], None),
                                                                             ("C2", ["phone"], None)]
        # a second identifier settles it: C2 first, with both reasons
        found = find(conn, phone="09121234567", email="C2@example.com")
        assert [(c.customer_id, c.match_reasons, c.score) for c in found] == [
            ("C2", ["email", "phone"], 1.7), ("C1", ["phone"], 0.8)]
        found = find(conn, name="علي كريمي", birth_date="1990-04-12")
        assert found == []  # Persian letters differ from the Latin name: no transliterated guesses
        found = find(conn, name="ALI  Karimi", birth_date="1990-04-12")
        assert [c.customer_id for c in found] == ["C1"]
        # C3 (forgotten) is never a candidate; the bank's partner sees only its own customer
        found = find(conn, unit="sibling:bank_fa", phone=SHARED_PHONE)
        assert [c.customer_id for c in found] == ["C2"]
        found = find(conn, contact=True, phone=SHARED_PHONE)
        cards = {c.customer_id: c.contact for c in found}
        assert cards["C2"]["email"] == "c2@example.com" and cards["C1"]["full_name"] == "Ali Karimi"
        rows = conn.execute("select key_id, status, customer_ids, fields from audit.api_requests "
                            "order by request_id").fetchall()
    # one audit row per lookup, written by the lookup's own statement: the customers returned, in order
    assert [(r[1], r[2]) for r in rows] == [(200, ["C1", "C2"]), (200, ["C2", "C1"]), (404, []), (200, ["C1"]),
                                            (200, ["C2"]), (200, ["C1", "C2"])]
    assert {r[0] for r in rows} == {"k1"}
    assert rows[0][3] == ["match_reasons"] and rows[2][3] == []
    assert rows[5][3] == ["contact.full_name", "contact.email", "contact.phone", "contact.city", "match_reasons"]
