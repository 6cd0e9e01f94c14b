"""The read service as its users meet it: `ckp serve` in its own process over a warehouse the pipeline built, called
over real HTTP with keys made by `ckp api-keys create`, for each endpoint and role, with the denials and the audit
rows; the agent page driven in a real headless Chromium; an interaction posted through the API reaching
``marts.customer_knowledge`` after the next pipeline run, exactly once.

The world (tests/serve_world.py): demo sources plus three planted persons -- ``ana`` (consents, a bank customer),
``omid`` (opted out of profiling), ``sara`` (erased here with `ckp erase`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import psycopg
import pytest
from ckp_cli import run_ckp
from serve_world import (
    AS_OF,
    BY_KEY,
    FA_DIGITS,
    KEY_CACHE_S,
    SERVE_PORT,
    call,
    drop_world,
    make_world,
    run_pipeline,
    start_service,
    stop_service,
)

pytestmark = pytest.mark.warehouse

ARABIC_LETTERS = str.maketrans({"ی": "ي", "ک": "ك"})


@pytest.fixture(scope="module")
def world(warehouse, settings, tmp_path_factory) -> Iterator[dict]:
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("serve")
    w = make_world(settings, tmp, mp)
    try:
        yield w
    finally:
        mp.undo()
        drop_world(w)


@pytest.fixture(scope="module")
def keys(world) -> dict[str, str]:
    """API keys made the way an operator makes them: `ckp api-keys create` (the key is on stdout, once)."""
    made = {}
    for label, args in {"agent": ["--role", "agent", "--name", "contact centre"],
                        "partner": ["--role", "partner", "--name", "bank system", "--unit", "sibling:bank_fa"],
                        "slow": ["--role", "agent", "--name", "rate limited desk", "--rate-limit", "3"]}.items():
        res = run_ckp("api-keys", "create", *args, env=world["env"])
        assert res.returncode == 0, res.stderr
        made[label] = res.stdout.strip()
        assert made[label].startswith("ckp_") and "shown only now" in res.stderr
    with psycopg.connect(world["url"]) as conn:
        stored = conn.execute("select string_agg(secret_sha256 || name || role, ' ') from audit.api_keys").fetchone()[0]
    for key in made.values():
        assert key.split("_", 2)[2] not in stored  # only the hash of the secret is stored
    return made


@pytest.fixture(scope="module")
def service(world, keys) -> Iterator[dict]:
    proc = start_service(world["env"])
    try:
        yield world
    finally:
        stop_service(proc)


def customer_of(url: str, email: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("select distinct customer_id from pii.pii_source_identities where email_norm = %s",
                            (email,)).fetchone()[0]


def lookup(key: str | None, **params: str) -> tuple[int, dict]:
    status, body, _ = call("GET", "/customers/lookup?" + urlencode(params), key)
    return status, body


def audit_rows(url: str) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select * from audit.api_requests order by request_id").fetchall()


# --- lookup ----------------------------------------------------------------------------------------------------

def test_agent_finds_a_customer_by_any_spelling_with_contact_data(service, keys):
    ana = BY_KEY["ana"]
    want = customer_of(service["url"], ana.email)
    for spelling in ana.phone_spellings():
        status, body = lookup(keys["agent"], phone=spelling)
        assert status == 200, (spelling, body)
        assert [c["customer_id"] for c in body["candidates"]] == [want], spelling
        assert body["candidates"][0]["match_reasons"] == ["phone"] and body["ambiguous"] is False
    status, body = lookup(keys["agent"], email=f"  {ana.email.upper()} ")
    assert status == 200 and body["candidates"][0]["customer_id"] == want
    assert body["candidates"][0]["contact"]["phone"] == ana.e164
    assert body["candidates"][0]["contact"]["email"] == ana.email
    status, body = lookup(keys["agent"], national_id=ana.nid.translate(FA_DIGITS))
    assert status == 200 and body["candidates"][0]["match_reasons"] == ["national_id"]
    # Arabic yeh / kaf for the Persian letters, a Solar Hijri birth date in Persian digits
    status, body = lookup(keys["agent"], name=ana.full_name_fa.translate(ARABIC_LETTERS), birth_date="۱۳۶۹/۰۱/۲۳")
    assert status == 200 and body["candidates"][0]["customer_id"] == want, body
    assert body["candidates"][0]["match_reasons"] == ["name_birth"]
    # several identifiers at once: one candidate, every reason, strongest first
    status, body = lookup(keys["agent"], phone="0" + ana.local, email=ana.email, national_id=ana.nid)
    assert body["candidates"][0]["match_reasons"] == ["national_id", "email", "phone"]


def test_lookup_refuses_what_identifies_nobody_without_echoing_it(service, keys):
    assert lookup(keys["agent"], phone="12")[0] == 422
    status, body = lookup(keys["agent"], national_id="1234567890")  # bad check digit
    assert status == 422 and "1234567890" not in json.dumps(body)
    assert lookup(keys["agent"], name="آناهیتا کیانپور")[0] == 422  # a name alone
    assert lookup(keys["agent"])[0] == 422
    assert lookup(keys["agent"], email="nobody@nowhere.example")[0] == 404


def test_partner_sees_pseudonymous_ids_and_segments_of_its_own_customers_only(service, keys):
    ana, omid = BY_KEY["ana"], BY_KEY["omid"]
    ana_id = customer_of(service["url"], ana.email)
    status, body = lookup(keys["partner"], phone=ana.e164)
    assert status == 200 and body["candidates"] == [{"customer_id": ana_id, "match_reasons": ["phone"], "score": 0.8}]
    status, prof, _ = call("GET", f"/customers/{ana_id}", keys["partner"])
    assert status == 200
    assert set(prof) == {"customer_id", "relationship_stage", "segments", "scores_withheld", "own_records"}
    assert prof["own_records"] == {"source_system": "sibling:bank_fa", "source_record_ids": [ana.bank_id]}
    assert set(prof["segments"]) == {"rfm_segment", "value_tier", "behaviour_profile"}
    text = json.dumps(prof, ensure_ascii=False)
    for value in (ana.email, ana.e164, ana.first_fa, ana.nid, "forms"):
        assert value not in text  # no contact data, no other unit's records
    # omid has no record at the bank: the partner neither finds nor reads him
    omid_id = customer_of(service["url"], omid.email)
    assert lookup(keys["partner"], email=omid.email)[0] == 404
    assert call("GET", f"/customers/{omid_id}", keys["partner"])[0] == 404


# --- profile ---------------------------------------------------------------------------------------------------

def test_agent_profile_has_the_360_view_and_a_next_best_action(service, keys):
    with psycopg.connect(service["url"]) as conn:
        cid, opens, stage, consent = conn.execute(
            "select customer_id, open_complaints, relationship_stage, has_marketing_consent from marts.customer_360 "
            "where open_complaints > 0 and order_count > 0 and not has_profiling_opt_out order by customer_id "
            "limit 1").fetchone()
        n_orders = conn.execute("select count(*) from marts.fct_orders where customer_id = %s", (cid,)).fetchone()[0]
    status, prof, headers = call("GET", f"/customers/{cid}", keys["agent"])
    assert status == 200
    assert prof["next_best_action"]["action"] in ("resolve_complaint", "resolve_complaint_priority")
    assert prof["next_best_action"]["is_offer"] is False and prof["next_best_action"]["title_fa"]
    assert prof["open_complaints"]["count"] == opens and prof["open_complaints"]["recent_complaints"]
    assert prof["relationship_stage"] == stage and prof["consent"]["has_marketing_consent"] == consent
    assert len(prof["recent_orders"]) == min(5, n_orders)
    assert prof["scores"] is not None and prof["scores"]["rfm_segment"]
    assert set(prof["knowledge"]) == {"about", "from", "for"}
    assert prof["contact"]["full_name"]
    assert headers["cache-control"] == "no-store"


def test_profiling_opt_out_gets_no_scores_and_no_score_based_action(service, keys):
    omid_id = customer_of(service["url"], BY_KEY["omid"].email)
    with psycopg.connect(service["url"]) as conn:
        assert conn.execute("select has_profiling_opt_out from marts.customer_360 where customer_id = %s",
                            (omid_id,)).fetchone()[0] is True
    status, prof, _ = call("GET", f"/customers/{omid_id}", keys["agent"])
    assert status == 200
    assert prof["scores"] is None and prof["scores_withheld"] == "profiling_opt_out"
    assert prof["next_best_action"]["rule"] not in ("R1_complaint_high_value_at_risk", "R3_high_value_at_risk",
                                                    "R7_committed_high_value")


def test_no_key_a_wrong_key_and_the_wrong_role_are_refused(service, keys):
    ana_id = customer_of(service["url"], BY_KEY["ana"].email)
    assert lookup(None, phone=BY_KEY["ana"].e164)[0] == 401
    assert call("GET", f"/customers/{ana_id}", None)[0] == 401
    forged = keys["agent"][:-4] + "AAAA"
    assert call("GET", f"/customers/{ana_id}", forged)[0] == 401
    status, body, _ = call("POST", f"/customers/{ana_id}/interactions", keys["partner"],
                           body={"channel": "phone", "topic": "delivery", "outcome": "resolved"})
    assert status == 403 and "partner" in body["detail"]
    assert call("GET", "/customers/C_NOT_A_CUSTOMER", keys["agent"])[0] == 404


def test_rate_limit_per_key(service, keys):
    ana = BY_KEY["ana"]
    statuses = [lookup(keys["slow"], email=ana.email)[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, _, headers = call("GET", "/customers/lookup?" + urlencode({"email": ana.email}), keys["slow"])
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert lookup(keys["agent"], email=ana.email)[0] == 200  # another key is not affected


def test_revoked_key_is_refused_within_the_key_cache_ttl(service):
    """Each worker remembers a checked key for CKP_SERVE_KEY_CACHE_SECONDS (KEY_CACHE_S here): a revocation
    reaches every worker within that time, and from then on every request of the key is refused."""
    env = service["env"]
    res = run_ckp("api-keys", "create", "--role", "agent", "--name", "temp desk", env=env)
    key = res.stdout.strip()
    for _ in range(4):  # on every worker: the key is now cached as good
        assert lookup(key, email=BY_KEY["ana"].email)[0] == 200
    key_id = key.split("_")[1]
    listed = run_ckp("api-keys", "list", env=env)
    assert listed.returncode == 0 and f"{key_id}\tagent\t\ttemp desk" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout
    revoking = time.monotonic()
    res = run_ckp("api-keys", "revoke", key_id, env=env)
    assert res.returncode == 0, res.stderr
    assert f"refuses it within {KEY_CACHE_S} s" in res.stdout
    while lookup(key, email=BY_KEY["ana"].email)[0] == 200:
        assert time.monotonic() - revoking < KEY_CACHE_S + 1.0, "a revoked key still served after the cache TTL"
        time.sleep(0.1)
    time.sleep(KEY_CACHE_S)  # every worker's cached entry has expired by now
    assert [lookup(key, email=BY_KEY["ana"].email)[0] for _ in range(6)] == [401] * 6
    assert run_ckp("api-keys", "revoke", key_id, env=env).returncode == 1
    assert "revoked" in run_ckp("api-keys", "list", env=env).stdout


def test_openapi_schema_is_served(service):
    status, schema, _ = call("GET", "/openapi.json")
    assert status == 200
    assert {"/customers/lookup", "/customers/{customer_id}", "/customers/{customer_id}/interactions"} <= set(
        schema["paths"])
    assert "X-API-Key" in json.dumps(schema["components"]["securitySchemes"])
    assert call("GET", "/docs")[0] == 404  # the Swagger UI would load from a CDN


# --- forgotten customers ------------------------------------------------------------------------------------------

def test_a_forgotten_customer_is_not_found(service, keys):
    sara = BY_KEY["sara"]
    sara_id = customer_of(service["url"], sara.email)
    assert lookup(keys["agent"], email=sara.email)[0] == 200
    assert call("GET", f"/customers/{sara_id}", keys["agent"])[0] == 200
    assert sum(sara_id in r["customer_ids"] for r in audit_rows(service["url"])) >= 2  # the access log names her
    res = run_ckp("erase", "--email", sara.email, "--reason", "ticket SRV-1", "--date", AS_OF.isoformat(),
                  env=service["env"])
    assert res.returncode == 0, res.stderr
    for params in ({"email": sara.email}, {"phone": "0" + sara.local}, {"national_id": sara.nid}):
        assert lookup(keys["agent"], **params)[0] == 404, params
    assert call("GET", f"/customers/{sara_id}", keys["agent"])[0] == 404
    status, _, _ = call("POST", f"/customers/{sara_id}/interactions", keys["agent"],
                        body={"channel": "phone", "topic": "delivery", "outcome": "resolved"})
    assert status == 404
    # the erasure took her pseudonymous id out of the access log too; the rows (someone asked) remain
    rows = audit_rows(service["url"])
    assert not [r for r in rows if sara_id in r["customer_ids"]]
    with psycopg.connect(service["url"]) as conn:
        assert conn.execute("select count(*) from audit.api_requests where array_to_string(customer_ids, ',') "
                            "like %s", (f"%{sara_id}%",)).fetchone()[0] == 0


# --- audit -------------------------------------------------------------------------------------------------------

def test_every_request_is_audited_with_customer_and_fields_never_values(service, keys):
    ana = BY_KEY["ana"]
    ana_id = customer_of(service["url"], ana.email)
    before = len(audit_rows(service["url"]))
    assert lookup(keys["agent"], phone=ana.phone_spellings()[4])[0] == 200
    assert call("GET", f"/customers/{ana_id}", keys["agent"])[0] == 200
    assert call("GET", f"/customers/{ana_id}", keys["partner"])[0] == 200
    assert call("GET", f"/customers/{ana_id}", None)[0] == 401
    rows = audit_rows(service["url"])[before:]
    assert [(r["endpoint"], r["role"], r["status"]) for r in rows] == [
        ("/customers/lookup", "agent", 200), ("/customers/{customer_id}", "agent", 200),
        ("/customers/{customer_id}", "partner", 200), ("/customers/{customer_id}", None, 401)]
    agent_key_id, partner_key_id = keys["agent"].split("_")[1], keys["partner"].split("_")[1]
    assert [r["key_id"] for r in rows] == [agent_key_id, agent_key_id, partner_key_id, None]
    assert rows[0]["customer_ids"] == [ana_id] and "contact.phone" in rows[0]["fields"]
    assert rows[1]["customer_ids"] == [ana_id]
    assert {"contact.email", "scores", "recent_orders"} <= set(rows[1]["fields"])
    assert "contact.email" not in rows[2]["fields"] and "segments" in rows[2]["fields"]
    assert rows[3]["customer_ids"] == [] and all(r["requested_at"] for r in rows)
    # no values anywhere in the access log: not the identifier looked up, not what was returned
    every_row = json.dumps([{k: str(v) for k, v in r.items()} for r in audit_rows(service["url"])],
                           ensure_ascii=False)
    for value in [*ana.phone_spellings(), ana.email, ana.nid, ana.first_fa, ana.last_fa, ana.local]:
        assert value not in every_row, value


def test_concurrent_reads_on_two_workers_leave_one_audit_row_per_answer(service):
    """Every answer that returned personal data has its audit row, also under concurrency across workers: the
    row is written by the statement that read the data, so there is no queue to lose and none to wait for."""
    from concurrent.futures import ThreadPoolExecutor

    res = run_ckp("api-keys", "create", "--role", "agent", "--name", "busy desk", env=service["env"])
    key = res.stdout.strip()
    key_id = key.split("_")[1]
    ids = {p.key: customer_of(service["url"], p.email) for p in (BY_KEY["ana"], BY_KEY["omid"])}
    asks = [("GET", "/customers/lookup?" + urlencode({"email": BY_KEY[who].email})) if n % 2 else
            ("GET", f"/customers/{ids[who]}") for n in range(40) for who in ("ana", "omid")]
    asks.append(("GET", "/customers/C_NOT_A_CUSTOMER"))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda ask: call(*ask, key)[:2], asks))
    assert [status for status, _ in answers] == [200] * 80 + [404]
    with psycopg.connect(service["url"]) as conn:
        rows = conn.execute("select endpoint, status, customer_ids from audit.api_requests where key_id = %s",
                            (key_id,)).fetchall()
    returned = sorted((ask[1].startswith("/customers/lookup"), tuple(
        [c["customer_id"] for c in body["candidates"]] if "candidates" in body else [body["customer_id"]]))
        for ask, (status, body) in zip(asks, answers, strict=True) if status == 200)
    logged = sorted((endpoint == "/customers/lookup", tuple(cids)) for endpoint, status, cids in rows if status == 200)
    assert logged == returned and len(logged) == 80
    assert [(e, s, c) for e, s, c in rows if s != 200] == [("/customers/{customer_id}", 404, [])]


# --- the agent page ------------------------------------------------------------------------------------------------

def test_agent_page_searches_shows_the_card_and_records_an_interaction(service, keys, tmp_path):
    from cdp import Browser

    ana = BY_KEY["ana"]
    with Browser(tmp_path / "chromium-profile") as b:
        b.goto(f"http://127.0.0.1:{SERVE_PORT}/agent")
        assert b.js("document.documentElement.dir") == "rtl" and b.js("document.documentElement.lang") == "fa"
        b.js(f"(() => {{ const k = document.getElementById('apikey'); k.value = {json.dumps(keys['agent'])};"
             " k.dispatchEvent(new Event('change')); })()")
        b.js(f"document.getElementById('q-phone').value = {json.dumps(ana.phone_spellings()[4])}")
        b.js("document.getElementById('search-button').click()")
        b.wait_for("!document.getElementById('card').hidden")
        assert b.js("document.getElementById('card-name').textContent") == ana.full_name_fa
        nba = b.js("document.getElementById('nba-fa').textContent")
        assert nba and nba != "—"
        # the next best action is the first thing on the card
        assert b.js("document.getElementById('card').firstElementChild.id") == "nba"
        assert "+98" in b.js("document.getElementById('card-facts').textContent")
        b.screenshot(tmp_path / "agent_card.png")
        b.js("document.getElementById('r-topic').value = 'delivery'")
        b.js("document.getElementById('r-note').value = 'Asked about delivery time; told two days'")
        b.js("document.getElementById('record-button').click()")
        b.wait_for("document.getElementById('record-status').dataset.interactionId")
        recorded = b.js("document.getElementById('record-status').dataset.interactionId")
        # a key that is not an agent's: the page shows the refusal
        b.js(f"document.getElementById('apikey').value = {json.dumps(keys['partner'])}")
        b.js("document.getElementById('record-button').click()")
        b.wait_for("document.getElementById('record-status').textContent.includes('403')")
    assert recorded.startswith("FL-")
    landing = service["settings"].landing_dir / "contacts"
    assert (landing / f"frontline-{recorded}.csv").exists()
    service["page_interaction"] = recorded


# --- the loop closes: raw -> staging -> knowledge, exactly once -----------------------------------------------------

def test_posted_interaction_reaches_customer_knowledge_exactly_once(service, keys):
    from crm_knowledge.ingest.tasks import ingest_file_source

    ana = BY_KEY["ana"]
    ana_id = customer_of(service["url"], ana.email)
    body = {"channel": "phone", "topic": "Product question", "outcome": "follow_up",
            "note": "Wants the blue kettle; call back", "occurred_at": f"{AS_OF.isoformat()}T09:30:00+03:30"}
    first = call("POST", f"/customers/{ana_id}/interactions", keys["agent"], body=body,
                 headers={"Idempotency-Key": "call-4711"})
    retry = call("POST", f"/customers/{ana_id}/interactions", keys["agent"], body=body,
                 headers={"Idempotency-Key": "call-4711"})
    assert first[0] == 202 and retry[0] == 202, (first, retry)
    ident = first[1]["interaction_id"]
    assert retry[1]["interaction_id"] == ident
    bad = call("POST", f"/customers/{ana_id}/interactions", keys["agent"],
               body={"channel": "pigeon", "topic": "x", "outcome": "resolved"})
    assert bad[0] == 422 and "channel" in bad[1]["detail"]
    landing = service["settings"].landing_dir / "contacts"
    assert (landing / f"frontline-{ident}.csv").stat().st_mode & 0o077 == 0  # holds personal data: owner only
    assert not list(landing.glob(".*.part"))

    settings = service["settings"]
    run_pipeline(settings, service["tmp"])  # the next run
    page_ident = service.get("page_interaction")
    with psycopg.connect(service["url"]) as conn:
        rows = conn.execute("select customer_id, flow, kind, content from marts.customer_knowledge "
                            "where source = 'contacts' and source_record_id = %s", (ident,)).fetchall()
        assert rows == [(ana_id, "about", "product_interest",
                         "product question: Wants the blue kettle; call back [phone, follow_up]")]
        if page_ident:
            page_items = conn.execute("select count(*), min(customer_id) from marts.customer_knowledge "
                                      "where source_record_id = %s and kind = 'need'", (page_ident,)).fetchone()
            assert page_items == (1, ana_id)
        assert conn.execute("select count(*) from raw.contact_interactions where interaction_id = %s",
                            (ident,)).fetchone()[0] == 1
    # the profile shows it now
    status, prof, _ = call("GET", f"/customers/{ana_id}", keys["agent"])
    assert ident in [c["interaction_id"] for c in prof["recent_contacts"]]

    # the client retries once more after the load: the same file again is not loaded twice
    again = call("POST", f"/customers/{ana_id}/interactions", keys["agent"], body=body,
                 headers={"Idempotency-Key": "call-4711"})
    assert again[0] == 202 and again[1]["interaction_id"] == ident
    summary = ingest_file_source("contacts")
    assert (summary["files"], summary["skipped"], summary["rows_loaded"]) == (1, 1, 0)
    with psycopg.connect(service["url"]) as conn:
        assert conn.execute("select count(*) from raw.contact_interactions where interaction_id = %s",
                            (ident,)).fetchone()[0] == 1


def test_interaction_time_in_the_future_or_without_zone_is_refused(service, keys):
    ana_id = customer_of(service["url"], BY_KEY["ana"].email)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    for when in (future, "2026-11-20T10:00:00"):
        body = {"channel": "phone", "topic": "delivery", "outcome": "resolved", "occurred_at": when}
        status, body, _ = call("POST", f"/customers/{ana_id}/interactions", keys["agent"], body=body)
        assert status == 422 and "occurred_at" in body["detail"]
