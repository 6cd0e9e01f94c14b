"""The read service's logic without HTTP or a warehouse: lookup keys, next best action rules, rate limits, keys."""

from __future__ import annotations

import hashlib

import pytest

from crm_knowledge.serve import keys, lookup
from crm_knowledge.serve.next_action import Facts, next_best_action
from crm_knowledge.serve.ratelimit import RateLimiter, reset


def _hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


@pytest.mark.parametrize("spelling", ["09121234567", "+98 912 123 4567", "0098-912-123-4567", "۰۹۱۲۱۲۳۴۵۶۷",
                                      "٠٩١٢١٢٣٤٥٦٧", "989121234567", "0912 123 4567"])
def test_every_phone_spelling_gives_the_key_of_its_e164_form(spelling):
    (key,) = lookup.lookup_keys(phone=spelling)
    assert key == lookup.LookupKey("phone", _hash("phone", "+989121234567"))


def test_email_national_id_and_name_with_birth_date_keys():
    assert lookup.lookup_keys(email=" Ana.K@Example.COM ")[0].key_hash == _hash("email", "ana.k@example.com")
    assert lookup.lookup_keys(national_id="۰۰۱۳۵۴۲۴۱۹")[0].key_hash == _hash("national_id", "0013542419")
    # Arabic yeh / kaf and a Solar Hijri date in Persian digits: the same key as the Persian letters, Gregorian date
    arabic = lookup.lookup_keys(name="علي كريمي", birth_date="۱۳۶۹/۰۱/۲۳")[0]
    persian = lookup.lookup_keys(name="علی  کریمی", birth_date="1990-04-12")[0]
    assert arabic == persian and arabic.kind == "name_birth"


@pytest.mark.parametrize("params, message", [
    ({}, "give phone"),
    ({"phone": "12"}, "phone"),
    ({"email": "not-an-address"}, "email"),
    ({"national_id": "1234567890"}, "national_id"),
    ({"name": "Ali Karimi"}, "go together"),
    ({"birth_date": "1990-01-01"}, "go together"),
    ({"name": "Ali Karimi", "birth_date": "1990-13-45"}, "birth_date"),
])
def test_unusable_input_is_refused_without_repeating_it(params, message):
    with pytest.raises(lookup.LookupInvalid) as err:
        lookup.lookup_keys(**params)
    assert message in str(err.value)
    for value in params.values():
        assert value not in str(err.value)


def facts(**kw) -> Facts:
    base = {"open_complaints": 0, "relationship_stage": "developing", "has_marketing_consent": True,
            "has_profiling_opt_out": False, "churn_probability": 0.1, "value_tier": "silver"}
    return Facts(**{**base, **kw})


def test_an_open_complaint_comes_before_any_offer():
    a = next_best_action(facts(open_complaints=1, churn_probability=0.9, value_tier="platinum"))
    assert (a.action, a.rule, a.is_offer) == ("resolve_complaint_priority", "R1_complaint_high_value_at_risk", False)
    a = next_best_action(facts(open_complaints=2))
    assert (a.action, a.is_offer) == ("resolve_complaint", False)


def test_no_offer_without_marketing_consent():
    with_consent = next_best_action(facts(churn_probability=0.8, value_tier="gold"))
    without = next_best_action(facts(churn_probability=0.8, value_tier="gold", has_marketing_consent=False))
    assert (with_consent.action, with_consent.is_offer) == ("retention_offer", True)
    assert (without.action, without.is_offer, without.rule) == ("retention_check_in", False, with_consent.rule)
    for stage in ("new", "developing", "committed", "eroding", "lost"):
        for tier in ("platinum", "bronze", None):
            a = next_best_action(facts(relationship_stage=stage, value_tier=tier, has_marketing_consent=False))
            assert a.is_offer is False, (stage, tier)


def test_a_profiling_opt_out_makes_the_rules_ignore_scores():
    a = next_best_action(facts(churn_probability=0.95, value_tier="platinum", has_profiling_opt_out=True,
                               relationship_stage="committed"))
    assert a.rule == "R8_default"  # neither the churn score nor the value tier was looked at
    a = next_best_action(facts(has_profiling_opt_out=True, relationship_stage="eroding"))
    assert a.rule == "R4_at_risk"  # the stage comes from their own activity, not from profiling


@pytest.mark.parametrize("stage, action", [("new", "welcome_offer"), ("lost", "reactivation_offer"),
                                           ("eroding", "win_back_offer"), ("developing", "cross_sell")])
def test_stage_rules(stage, action):
    assert next_best_action(facts(relationship_stage=stage)).action == action


def test_rate_limiter_allows_the_limit_then_refills():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.acquire("k", 60) for _ in range(60)] == [0.0] * 60
    wait = limiter.acquire("k", 60)
    assert 0.9 <= wait <= 1.0
    assert limiter.acquire("other", 60) == 0.0  # per key
    now[0] += 1.0
    assert limiter.acquire("k", 60) == 0.0
    assert limiter.acquire("k", 60) > 0


def test_rate_limit_is_shared_by_the_processes_that_map_one_file(tmp_path, monkeypatch):
    """Two uvicorn workers are two processes: a key gets its limit across both, not in each."""
    import multiprocessing

    import __main__

    # under xdist, tests/conftest.py names execnet's main module with a file that does not exist; a spawned
    # child would try to run it (multiprocessing's main-module fix-up), so this test's children go without
    monkeypatch.delattr(__main__, "__file__", raising=False)
    path = tmp_path / "serve.buckets"
    reset(path)
    ctx = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_grants, args=(str(path), 30, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    granted = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(granted) == 20 and all(g > 0 for g in granted)  # 20 a minute: 20 at once, then refused
    limiter = RateLimiter(path)
    assert limiter.acquire("k", 20) > 0 and limiter.acquire("other", 20) == 0.0
    reset(path)  # a restarted service starts with full buckets
    assert RateLimiter(path).acquire("k", 20) == 0.0


def test_rate_limit_buckets_live_in_a_private_directory():
    import os
    import stat

    from crm_knowledge.serve.ratelimit import private_dir

    path = private_dir()
    st = path.lstat()
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    assert private_dir() == path  # the same for every worker of the user


def _grants(path: str, attempts: int, barrier, results) -> None:
    import time as time_module
    from pathlib import Path

    limiter = RateLimiter(Path(path))
    barrier.wait(timeout=60)  # both processes up before either asks
    granted = 0
    for _ in range(attempts):
        granted += limiter.acquire("k", 20) == 0.0
        time_module.sleep(0.005)
    limiter.close()
    results.put(granted)


def test_key_cache_remembers_a_check_for_its_ttl_only():
    now = [0.0]
    reads = []

    class Conn:  # the one query verify_key makes, answered as audit.api_keys would, counting the reads
        revoked = False

        def execute(self, query, params):
            reads.append(params)
            row = None if self.revoked else (keys._digest("A" * 43), "desk", keys.AGENT, None, None)
            return type("Cursor", (), {"fetchone": lambda self: row})()

    conn = Conn()
    cache = keys.KeyCache(5, clock=lambda: now[0])
    good, bad = "ckp_0123456789ab_" + "A" * 43, "ckp_0123456789ab_" + "B" * 43
    assert cache.verify(conn, good).role == keys.AGENT and len(reads) == 1
    assert cache.verify(conn, good) is not None and len(reads) == 1  # remembered
    assert cache.verify(conn, bad) is None and len(reads) == 2  # another secret is another entry: refused
    conn.revoked = True
    now[0] = 4.9
    assert cache.verify(conn, good) is not None  # revoked, still within the TTL
    now[0] = 5.1
    assert cache.verify(conn, good) is None and len(reads) == 3  # read again after the TTL: refused
    assert keys.KeyCache(0).verify(conn, good) is None and len(reads) == 4  # TTL 0: every request reads


def test_keys_parse_and_roles():
    key_id, secret = "0123456789ab", "A" * 43
    assert keys.parse_key(f"ckp_{key_id}_{secret}") == (key_id, secret)
    for bad in (None, "", "ckp_short_x", f"ckp_{key_id}_{secret}x", f"xyz_{key_id}_{secret}"):
        assert keys.parse_key(bad) is None
    agent = keys.ApiKey("a", "desk", keys.AGENT, None, None)
    partner = keys.ApiKey("p", "bank", keys.PARTNER, "sibling:bank_fa", None)
    assert agent.may("contact") and agent.may("interactions:write")
    assert not partner.may("contact") and not partner.may("interactions:write") and not partner.may("profile:full")
    with pytest.raises(keys.ApiKeyInvalid, match="unit"):
        keys.create_key(None, "bank system", keys.PARTNER)  # refused before touching the database
    with pytest.raises(keys.ApiKeyInvalid, match="role"):
        keys.create_key(None, "x", "admin")
