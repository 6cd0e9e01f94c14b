"""Identity resolution on hand-made frames: junk, deterministic rules, Splink, unresolved."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from crm_knowledge.identity.config import load_config
from crm_knowledge.identity.evaluate import evaluate
from crm_knowledge.identity.prepare import prepare
from crm_knowledge.identity.resolve import REASON_JUNK_ONLY, REASON_NO_IDENTIFIER, resolve
from crm_knowledge.identity.synthetic import frame, make_people, record
from crm_knowledge.privacy.pseudonym import pseudonymize


@pytest.fixture(scope="module")
def config():
    return load_config()


def _cid(result, system, rid):
    rc = result.record_clusters
    hit = rc[(rc["source_system"] == system) & (rc["source_record_id"] == str(rid))]
    assert len(hit) == 1, f"{system}/{rid} not resolved"
    return hit["customer_id"].iloc[0]


@pytest.fixture(scope="module")
def synthetic_run(config):
    cands, truth = make_people(80, seed=11)
    extra = [
        # Latin, first/last in order, no contact data shared with the Persian record below
        record("orders", "9001", first_name_norm="ali", last_name_norm="karimi", birth_date="1980-05-17",
               postcode="1234567890", city_norm="tehran", email_norm="ali.k.9001@mail.ir"),
        # Persian script, first and last swapped, only name + birth date + postcode
        record("sibling:insurance", "X9001", first_name_norm="کریمی", last_name_norm="علی",
               birth_date="1980-05-17", postcode="1234567890", city_norm="تهران"),
        # same name, different person (different birth date and postcode)
        record("sibling:insurance", "X9002", first_name_norm="علی", last_name_norm="کریمی",
               birth_date="1991-11-02", postcode="5556667778", city_norm="شیراز"),
    ]
    cands = pd.concat([cands, frame(extra)], ignore_index=True)
    truth = pd.concat([truth, pd.DataFrame([("orders", "9001", "PX1"), ("sibling:insurance", "X9001", "PX1"),
                                            ("sibling:insurance", "X9002", "PX2")],
                                           columns=truth.columns)], ignore_index=True)
    return resolve(cands, None, config), truth


def test_swapped_names_across_scripts_match(synthetic_run):
    result, _ = synthetic_run
    assert _cid(result, "orders", "9001") == _cid(result, "sibling:insurance", "X9001")
    assert _cid(result, "orders", "9001") != _cid(result, "sibling:insurance", "X9002")
    mp = result.explained_match_pairs()
    pair = mp[(mp["source_record_id_l"] == "9001") & (mp["source_record_id_r"] == "X9001")]
    assert pair["match_rule"].tolist() == ["probabilistic"]
    import json

    expl = json.loads(pair["explanation"].iloc[0])
    assert {"birth_date", "postcode"} <= set(expl["agreed"])
    assert "swapped" in expl["fields"]["first_name"]["level"]


def test_synthetic_quality(synthetic_run):
    result, truth = synthetic_run
    m = evaluate(result.record_clusters, truth)
    assert m["precision"] == 1.0
    assert m["recall"] >= 0.95
    assert result.stats["probabilistic"]["trained"]


def test_junk_phone_shared_by_ten_people_links_nobody(config):
    phone = "+989351112233"
    firsts = ["ali", "sara", "reza", "mina", "omid", "nima", "leila", "zahra", "hamid", "parisa"]
    lasts = ["karimi", "ahmadi", "jafari", "kazemi", "salehi", "abbasi", "ghasemi", "taghavi", "mousavi", "nouri"]
    rows = [record("orders", str(i), first_name_norm=f, last_name_norm=la, phone_e164=phone)
            for i, (f, la) in enumerate(zip(firsts, lasts, strict=True))]
    # a form with only that phone: nothing usable once the phone is junk
    rows.append(record("forms", "F1", full_name_norm="someone else", phone_e164=phone))
    result = resolve(frame(rows), None, config)
    assert result.record_clusters["customer_id"].nunique() == 10
    assert result.merges.empty
    junk = result.junk_values
    assert len(junk) == 1
    row = junk.iloc[0]
    assert row["identifier_kind"] == "phone"
    # a keyed pseudonym (HMAC), not a plain SHA-256 anyone could recompute from a guessed number
    assert row["identifier_value_hash"] == pseudonymize(phone, "phone")
    assert row["identifier_value_hash"].startswith("phone:")
    assert hashlib.sha256(phone.encode()).hexdigest() not in row["identifier_value_hash"]
    assert row["distinct_records"] == 11
    assert phone not in result.junk_values.to_string()
    un = result.unresolved
    assert un[["source_system", "source_record_id", "reason"]].values.tolist() == [["forms", "F1", REASON_JUNK_ONLY]]


def test_family_phone_is_not_junk_but_guarded(config):
    phone = "+989121110000"
    rows = [
        record("orders", "1", first_name_norm="ali", last_name_norm="karimi", phone_e164=phone),
        record("orders", "2", first_name_norm="sara", last_name_norm="karimi", phone_e164=phone),
        record("forms", "F1", first_name_norm="علی", last_name_norm="کریمی", phone_e164=phone),
        record("forms", "F2", full_name_norm="karimi sara", phone_e164=phone),  # swapped
    ]
    result = resolve(frame(rows), None, config)
    assert result.junk_values.empty
    assert _cid(result, "orders", "1") == _cid(result, "forms", "F1")
    assert _cid(result, "orders", "2") == _cid(result, "forms", "F2")
    assert _cid(result, "orders", "1") != _cid(result, "orders", "2")


def test_deny_list_values_are_junk(config):
    rows = [record("orders", "1", first_name_norm="ali", email_norm="test@test.com", national_id_valid="1111111111"),
            record("orders", "2", first_name_norm="sara", email_norm="test@test.com",
                   national_id_valid="1111111111")]
    result = resolve(frame(rows), None, config)
    assert set(result.junk_values["identifier_kind"]) == {"email", "national_id"}
    assert set(result.junk_values["reason"]) == {"deny_list"}
    assert result.record_clusters["customer_id"].nunique() == 2


def test_transitive_links_make_one_customer(config):
    rows = [
        record("orders", "1", first_name_norm="ali", last_name_norm="karimi", email_norm="ali@mail.ir"),
        record("forms", "F1", full_name_norm="ali karimi", email_norm="ali@mail.ir", national_id_valid="0012345679"),
        record("sibling:bank", "B1", first_name_norm="علی", last_name_norm="کریمی", national_id_valid="0012345679"),
        record("contacts", "K1", full_name_norm="ali karimi", customer_ref="1"),
        record("orders", "2", first_name_norm="sara", last_name_norm="nouri", email_norm="sara@mail.ir"),
    ]
    result = resolve(frame(rows), None, config)
    ids = {(s, r): _cid(result, s, r) for s, r in [("orders", "1"), ("forms", "F1"), ("sibling:bank", "B1"),
                                                  ("contacts", "K1"), ("orders", "2")]}
    assert len({ids[k] for k in list(ids)[:4]}) == 1
    assert ids[("orders", "2")] != ids[("orders", "1")]
    assert result.stats["customers"] == 2
    assert set(result.match_pairs["match_rule"]) == {"email", "national_id", "customer_ref"}
    # each record reports its strongest rule
    assert set(result.record_clusters["match_rule"]) == {"national_id", "customer_ref", "singleton"}
    assert all(len(c) == 10 and c.startswith("C") for c in result.record_clusters["customer_id"])


def test_records_without_identifier_are_unresolved(config):
    rows = [
        record("forms", "F1", full_name_norm="ali karimi"),                       # name only
        record("contacts", "K1", full_name_norm="sara", city_norm="tehran"),     # name + city: not enough
        record("forms", "F2", full_name_norm="reza", email_norm="reza@mail.ir"),
        record("orders", "7"),                                                   # an orders account: resolved
    ]
    result = resolve(frame(rows), None, config)
    un = result.unresolved.set_index("source_record_id")["reason"].to_dict()
    assert un == {"F1": REASON_NO_IDENTIFIER, "K1": REASON_NO_IDENTIFIER}
    assert set(result.record_clusters["source_record_id"]) == {"F2", "7"}
    assert result.unresolved["seen_at"].notna().all()


def test_oversized_cluster_is_split_to_deterministic_components(config):
    import dataclasses

    small = dataclasses.replace(config, max_cluster_size=3)
    # two deterministic pairs (email) chained by probabilistic links: everyone same name/birth date/postcode
    rows = []
    for i in range(3):
        rows.append(record("orders", f"{i}a", first_name_norm="ali", last_name_norm="karimi",
                           birth_date="1980-01-01", postcode="1111122222", email_norm=f"u{i}@mail.ir"))
        rows.append(record("forms", f"{i}b", first_name_norm="ali", last_name_norm="karimi",
                           birth_date="1980-01-01", postcode="1111122222", email_norm=f"u{i}@mail.ir"))
    result = resolve(frame(rows), None, small)
    assert result.stats["oversized_clusters"] == 1
    assert result.record_clusters["customer_id"].nunique() == 3
    assert result.stats["oversized_detail"][0]["split_into"] == 3


def test_same_script_name_typo_level_explains_a_mistyped_given_name(config):
    """"roberf" / "robert": one letter in the spelling, a different consonant key (rbrf / rbrt): the pair links
    on the same-script typo level, not on a Jaro-Winkler band of the keys."""
    import json

    cands, _ = make_people(80, seed=5)
    rows = [
        record("orders", "9201", first_name_norm="robert", last_name_norm="wilson", birth_date="1953-05-14",
               postcode="2191000000", city_norm="belconnen", email_norm="rw9201@mail.ir"),
        record("sibling:travel", "T9201", first_name_norm="roberf", last_name_norm="wilson", birth_date="1953-05-14",
               postcode="2191000000", city_norm="belconnen"),
    ]
    result = resolve(pd.concat([cands, frame(rows)], ignore_index=True), None, config)
    assert _cid(result, "orders", "9201") == _cid(result, "sibling:travel", "T9201")
    mp = result.explained_match_pairs()
    pair = mp[(mp["source_record_id_l"] == "9201") & (mp["source_record_id_r"] == "T9201")]
    assert pair["match_rule"].tolist() == ["probabilistic"]
    level = json.loads(pair["explanation"].iloc[0])["fields"]["first_name"]["level"]
    assert level == "first_text within 1 edit(s) (typo)"


def test_prepare_gives_the_same_records_from_arrow_backed_strings():
    """The full run reads candidates as Arrow-backed strings (NaN for missing), the daily run as objects (None):
    preparation makes the same records of both."""
    candidates, _ = make_people(60)
    as_arrow = candidates.astype({c: "str" for c in candidates.columns if c not in ("seen_at", "birth_date")})
    as_arrow["birth_date"] = candidates["birth_date"].astype("str")
    config = load_config()
    pd.testing.assert_frame_equal(prepare(as_arrow, config), prepare(candidates, config))
