"""Lookup against real tables (small fixture rows): ambiguous identifiers give every candidate, best first, with
their match reasons; a forgotten customer is never a candidate; a partner sees its own unit's customers only."""

from __future__ import annotations

import psycopg
import pytest

from crm_knowledge.serve import lookup

pytestmark = pytest.mark.warehouse

SHARED_PHONE = "+989121234567"


@pytest.fixture()
def tables(scratch_db) -> str:
    keys = [("phone", SHARED_PHONE, "C1"), ("phone", SHARED_PHONE, "C2"), ("phone", SHARED_PHONE, "C3"),
            ("email", "c2@example.com", "C2"), ("name_birth", "ali karimi|1990-04-12", "C1")]
    with psycopg.connect(scratch_db) as conn:
        conn.execute("create schema pii; create schema marts")
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


def test_a_shared_phone_gives_every_live_candidate_with_reasons(tables):
    with psycopg.connect(tables) as conn:
        found = lookup.find_candidates(conn, lookup.lookup_keys(phone="0912 123 4567"))
        assert [(c.customer_id, c.match_reasons) for c in found] == [("C1", ["phone"]), ("C2", ["phone"])]
        # a second identifier settles it: C2 first, with both reasons
        found = lookup.find_candidates(conn, lookup.lookup_keys(phone="09121234567", email="C2@example.com"))
        assert [(c.customer_id, c.match_reasons, c.score) for c in found] == [
            ("C2", ["email", "phone"], 1.7), ("C1", ["phone"], 0.8)]
        found = lookup.find_candidates(conn, lookup.lookup_keys(name="علي كريمي", birth_date="1990-04-12"))
        assert found == []  # Persian letters differ from the Latin name: no transliterated guesses
        found = lookup.find_candidates(conn, lookup.lookup_keys(name="ALI  Karimi", birth_date="1990-04-12"))
        assert [c.customer_id for c in found] == ["C1"]
        # C3 (forgotten) is never a candidate; the bank's partner sees only its own customer
        found = lookup.find_candidates(conn, lookup.lookup_keys(phone=SHARED_PHONE), unit="sibling:bank_fa")
        assert [c.customer_id for c in found] == ["C2"]
        cards = lookup.contact_cards(conn, ["C1", "C2"])
        assert cards["C2"]["email"] == "c2@example.com" and cards["C1"]["full_name"] == "Ali Karimi"
