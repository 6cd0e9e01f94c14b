"""Given-name agreement (the guard on shared e-mails / phones) and the probabilistic corroboration rule."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_knowledge.identity.config import load_config
from crm_knowledge.identity.names import build_profile, compatible, rules_from_config
from crm_knowledge.identity.prepare import name_key
from crm_knowledge.identity.resolve import resolve
from crm_knowledge.identity.synthetic import frame, make_people, record


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def rules(config):
    return rules_from_config(config)


def _p(first=None, last=None, full=None):
    return build_profile(first, last, full, name_key)


@pytest.mark.parametrize("a, b", [
    (_p("ali", "karimi"), _p("علی", "کریمی")),                     # scripts
    (_p("sara", "karimi"), _p(full="karimi sara")),                  # full name, family name first
    (_p("sara", "karimi"), _p("karimi", "sara")),                    # structured, swapped
    (_p("fatemeh", "hosseini"), _p(full="fati hosseini")),           # short form, same family
    (_p("mohammad", "rezaei"), _p(full="mamad rezaei")),             # configured nickname
    (_p("mohammadreza", "jafari"), _p(full="reza jafari")),          # second part of a compound name
    (_p("mohammad reza", "norouzi"), _p(full="mohammadreza norouzi")),
    (_p("maryam", "mousavi"), _p(full="marayam mousavi")),           # typo (same script)
    (_p("مصطفی", "قاسمی"), _p(full="قاسمی مصی")),                    # nickname, Persian, swapped
    (_p("m", "karimi"), _p("mohammad", "karimi")),                   # initial
    (_p(full="leila"), _p("leyla", "azizi")),                        # a lone given name
    (_p(full="ziaei"), _p("nazanin", "ziaei")),                      # a lone family name
    (_p(), _p("ali", "karimi")),                                     # no name: nothing conflicts
])
def test_same_person(a, b, rules):
    assert compatible(a, b, rules)
    assert compatible(b, a, rules)


@pytest.mark.parametrize("a, b", [
    (_p("ali", "karimi"), _p("sara", "karimi")),                     # a family sharing a phone
    (_p("ali", "karimi"), _p(full="karimi sara")),
    (_p(full="ali karimi"), _p(full="karimi sara")),                 # word order unknown on both sides
    (_p("ali", "karimi"), _p("karimi", "maryam")),                   # swapped sibling
    (_p("ebrahim", "hosseini"), _p(full="ebi ahmadi")),              # short form needs the family name
    (_p("mohammadreza", "jafari"), _p(full="reza karimi")),
    (_p("saeed", "karimi"), _p("سارا", "کریمی")),
    (_p(full="leila"), _p("sara", "azizi")),
])
def test_different_persons(a, b, rules):
    assert not compatible(a, b, rules)
    assert not compatible(b, a, rules)


def _cid(result, system, rid):
    rc = result.record_clusters
    return rc.loc[(rc["source_system"] == system) & (rc["source_record_id"] == rid), "customer_id"].iloc[0]


def test_shared_phone_family_with_messy_names(config):
    """One phone, two persons, each written several ways: two customers, every record with its person."""
    phone = "+989121110000"
    rows = [
        record("orders", "1", first_name_norm="ali", last_name_norm="karimi", phone_e164=phone),
        record("forms", "F1", full_name_norm="علی کریمی", phone_e164=phone),
        record("contacts", "K1", full_name_norm="karimi ali", phone_e164=phone),   # "KARIMI, Ali"
        record("contacts", "K2", full_name_norm="ali karimy", phone_e164=phone),   # family-name typo
        record("orders", "2", first_name_norm="sara", last_name_norm="karimi", phone_e164=phone),
        record("forms", "F2", full_name_norm="کریمی سارا", phone_e164=phone),
        record("contacts", "K3", full_name_norm="sarah karimi", phone_e164=phone),
        record("contacts", "K4", full_name_norm="sara", phone_e164=phone),          # first name only
    ]
    result = resolve(frame(rows), None, config)
    ali = {_cid(result, s, r) for s, r in [("orders", "1"), ("forms", "F1"), ("contacts", "K1"), ("contacts", "K2")]}
    sara = {_cid(result, s, r) for s, r in [("orders", "2"), ("forms", "F2"), ("contacts", "K3"), ("contacts", "K4")]}
    assert len(ali) == 1 and len(sara) == 1 and ali != sara


def test_lone_family_name_on_a_family_phone_links_nobody(config):
    phone = "+989121110001"
    rows = [
        record("orders", "1", first_name_norm="ali", last_name_norm="karimi", phone_e164=phone),
        record("orders", "2", first_name_norm="sara", last_name_norm="karimi", phone_e164=phone),
        record("contacts", "K1", full_name_norm="karimi", phone_e164=phone),  # which Karimi?
    ]
    result = resolve(frame(rows), None, config)
    k1 = _cid(result, "contacts", "K1")
    assert k1 not in {_cid(result, "orders", "1"), _cid(result, "orders", "2")}


def test_short_given_name_typo_links_when_email_and_phone_are_both_shared(config):
    """"میم" (Maryam typed without r) is too far from "maryam" on its own; the same e-mail *and* phone
    plus the same family name make it the same person. Sharing only the phone, it could as well be a
    relative."""
    email, phone = "m.faraji@mail.ir", "+989121110002"
    base = [
        record("orders", "1", first_name_norm="maryam", last_name_norm="faraji", email_norm=email, phone_e164=phone),
        record("orders", "2", first_name_norm="مریم", last_name_norm="فرجی", email_norm=email, phone_e164=phone),
    ]
    both = resolve(frame([*base, record("forms", "F1", first_name_norm="میم", last_name_norm="فرجی",
                                        email_norm=email, phone_e164=phone)]), None, config)
    assert _cid(both, "orders", "1") == _cid(both, "orders", "2") == _cid(both, "forms", "F1")
    phone_only = resolve(frame([*base, record("forms", "F1", first_name_norm="میم", last_name_norm="فرجی",
                                              phone_e164=phone)]), None, config)
    assert _cid(phone_only, "orders", "1") == _cid(phone_only, "orders", "2") != _cid(phone_only, "forms", "F1")


def test_a_typo_in_one_script_joins_the_one_person_it_fits(config):
    """"zarha mashhadi" (letters swapped) agrees with the Latin records of Zahra only, not with the Persian
    ones, so the average linkage leaves it alone; it fits one person on the phone and nobody else: it is hers.
    Her brother on the same phone stays apart, and a record that fits both stays with neither."""
    phone = "+989121110003"
    rows = [
        record("orders", "1", first_name_norm="زهرا", last_name_norm="مشهدی", phone_e164=phone),
        record("forms", "F1", full_name_norm="زهرا مشهدی", phone_e164=phone),
        record("contacts", "K1", full_name_norm="zahra mashhadi", phone_e164=phone),
        record("contacts", "K2", full_name_norm="zarha mashhadi", phone_e164=phone),   # typo, Latin only
        record("orders", "2", first_name_norm="reza", last_name_norm="mashhadi", phone_e164=phone),
        record("forms", "F2", full_name_norm="رضا مشهدی", phone_e164=phone),
    ]
    result = resolve(frame(rows), None, config)
    zahra = {_cid(result, s, r) for s, r in [("orders", "1"), ("forms", "F1"), ("contacts", "K1"), ("contacts", "K2")]}
    reza = {_cid(result, s, r) for s, r in [("orders", "2"), ("forms", "F2")]}
    assert len(zahra) == 1 and len(reza) == 1 and zahra != reza
    both = resolve(frame([*rows, record("contacts", "K3", full_name_norm="mashhadi", phone_e164=phone)]), None,
                   config)
    assert _cid(both, "contacts", "K3") not in {_cid(both, "orders", "1"), _cid(both, "orders", "2")}


@pytest.fixture(scope="module")
def namesakes_run(config):
    """Synthetic population (trained model) plus namesakes the model must not link."""
    cands, _ = make_people(80, seed=5)
    extra = [
        # same name and city, nothing else in common: namesakes, not one person
        record("orders", "9101", first_name_norm="ali", last_name_norm="karimi", city_norm="tehran",
               birth_date="1984-02-02", email_norm="ak9101@mail.ir"),
        record("sibling:travel", "T9101", full_name_norm="ali karimi", city_norm="tehran", postcode="1111199999",
               email_norm="alik@mail.ir"),
        # brother and sister: same family name, birth date and city; "Rezaei Amir" is swapped
        record("sibling:insurance", "S9102", first_name_norm="roya", last_name_norm="rezaei", city_norm="tehran",
               birth_date="1991-06-03", email_norm="roya.r@mail.ir"),
        record("sibling:travel", "T9102", full_name_norm="rezaei amir", city_norm="tehran",
               birth_date="1991-06-03", email_norm="amir.r@mail.ir"),
        # the same person, fuzzy only: name typo in the short given name, same birth date and postcode
        record("orders", "9103", first_name_norm="sahar", last_name_norm="taghavi", birth_date="1979-09-09",
               postcode="2222233333", city_norm="shiraz", email_norm="st9103@mail.ir"),
        record("sibling:insurance", "S9103", first_name_norm="سحر", last_name_norm="تقوی", birth_date="1979-09-09",
               postcode="2222233333", city_norm="شیراز"),
    ]
    return resolve(pd.concat([cands, frame(extra)], ignore_index=True), None, config)


def test_name_and_city_alone_do_not_link(namesakes_run):
    assert namesakes_run.stats["probabilistic"]["trained"]
    assert _cid(namesakes_run, "orders", "9101") != _cid(namesakes_run, "sibling:travel", "T9101")


def test_one_shared_name_part_across_fields_is_not_a_swap(namesakes_run):
    assert _cid(namesakes_run, "sibling:insurance", "S9102") != _cid(namesakes_run, "sibling:travel", "T9102")


def test_fuzzy_only_record_still_links(namesakes_run):
    assert _cid(namesakes_run, "orders", "9103") == _cid(namesakes_run, "sibling:insurance", "S9103")
