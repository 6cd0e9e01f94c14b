"""One customer's profile as the caller's role may see it, read by primary key from tables the pipeline keeps
indexed (``marts.customer_360`` for the 360 view, segments, scores, consent and relationship stage; the
recent rows of ``marts.fct_orders``, ``marts.fct_interactions`` and ``marts.customer_knowledge``; contact data
from ``pii.pii_customer_profiles``).

* A forgotten customer (``is_forgotten``, or no row at all since the erasure purged it) is not found.
* A customer who opted out of profiling gets no scores and no segments (``scores: null`` and the reason);
  the next best action then uses no score either (serve/next_action.py).
* An agent sees the whole profile; a partner sees the pseudonymous id, the segments and its own unit's
  record ids only (serve/keys.py).

Each read is one statement that also writes the request's audit row (serve/audit.py): the customer and the
names of the personal-data fields returned (never the values), computed by the statement from what it read.
"""

from __future__ import annotations

import psycopg

from crm_knowledge.serve import audit
from crm_knowledge.serve.keys import ApiKey
from crm_knowledge.serve.next_action import Facts, next_best_action

RECENT = 5
SEGMENT_FIELDS = ("rfm_segment", "value_tier", "behaviour_profile")
SCORE_FIELDS = ("scores_as_of_date", "rfm_segment", "r_score", "f_score", "m_score", "behaviour_cluster",
                "behaviour_profile", "churn_probability", "p_alive", "expected_purchases", "predicted_clv",
                "value_tier")
VIEW_FIELDS = ("gender", "age_band", "city", "city_name_en", "province", "province_name_en", "business_type",
               "source_systems", "sibling_units", "first_seen_at", "last_seen_at", "order_count", "total_revenue",
               "avg_order_value", "last_order_at", "preferred_channel", "top_product_categories",
               "interaction_count", "last_interaction_at", "as_of_date", "tenure_days", "recency_days",
               "days_since_last_activity", "complaint_count", "open_complaints", "knowledge_item_count")
CONTACT_FIELDS = ("first_name", "last_name", "full_name", "email", "phone", "city")
OPT_OUT_REASON = "profiling_opt_out"


def live_customer(conn: psycopg.Connection, customer_id: str) -> dict | None:
    """The customer's customer_360 row (as JSON values), or None when unknown or forgotten.

    Read as one jsonb value, never ``select *``: the service's statements are prepared per connection, and a
    prepared ``select *`` fails ("cached plan must not change result type") once a dbt run adds a column."""
    row = conn.execute("select to_jsonb(c) from marts.customer_360 as c where c.customer_id = %s",
                       (customer_id,)).fetchone()
    if row is None or row[0].get("is_forgotten"):
        return None
    return row[0]


def _facts(c360: dict) -> Facts:
    churn = c360.get("churn_probability")
    return Facts(open_complaints=int(c360.get("open_complaints") or 0),
                 relationship_stage=c360.get("relationship_stage"),
                 has_marketing_consent=bool(c360.get("has_marketing_consent")),
                 has_profiling_opt_out=bool(c360.get("has_profiling_opt_out")),
                 churn_probability=float(churn) if churn is not None else None,
                 value_tier=c360.get("value_tier"))


def _scores(c360: dict, fields: tuple[str, ...]) -> dict | None:
    if c360.get("has_profiling_opt_out"):
        return None
    return {f: c360.get(f) for f in fields}


#: The whole agent profile in one round trip: the customer_360 row and, as JSON, the contact card, recent
#: orders, contacts, knowledge items (latest per flow) and complaints; every part an index probe by customer_id.
#: The same statement writes the request's audit row (audit.logged_cte): the customer and the fields returned.
AGENT_QUERY = """
with found as (
select
    to_jsonb(c) as c360,
    (select to_jsonb(p) from (select first_name, last_name, full_name, email, phone, city
                                from pii.pii_customer_profiles where customer_id = c.customer_id) as p) as contact,
    (select coalesce(jsonb_agg(to_jsonb(o) order by o.ordered_at desc), '[]')
       from (select order_id, ordered_at, status, channel, total_amount, currency, item_quantity
               from marts.fct_orders where customer_id = c.customer_id
              order by ordered_at desc limit %(recent)s) as o) as orders,
    (select coalesce(jsonb_agg(to_jsonb(i) order by i.occurred_at desc), '[]')
       from (select interaction_id, channel, topic, outcome, occurred_at, is_complaint, is_resolved
               from marts.fct_interactions where customer_id = c.customer_id
              order by occurred_at desc limit %(recent)s) as i) as contacts,
    (select coalesce(jsonb_agg(to_jsonb(k) order by k.flow, k.observed_at desc nulls last), '[]')
       from (select flow, kind, content, source, observed_at, confidence from (
                 select kn.*, row_number() over (partition by flow order by observed_at desc nulls last) as rn
                   from marts.customer_knowledge as kn where kn.customer_id = c.customer_id) as ranked
              where rn <= %(recent)s) as k) as knowledge,
    (select coalesce(jsonb_agg(to_jsonb(q) order by q.observed_at desc), '[]')
       from (select kind, content, source, observed_at from marts.customer_knowledge
              where customer_id = c.customer_id and kind = 'complaint'
              order by observed_at desc nulls last limit %(recent)s) as q) as complaints
from marts.customer_360 as c
where c.customer_id = %(customer_id)s and not c.is_forgotten
),
{logged}
select c360, contact, orders, contacts, knowledge, complaints from found
""".replace("{logged}", audit.logged_cte(
    source="(select 1) as one",
    status="case when exists (select from found) then 200 else 404 end",
    customer_ids="coalesce((select array[%(customer_id)s::text] from found), '{}')",
    fields="coalesce((select array(select 'contact.' || f.name "
           "from unnest(%(contact_fields)s::text[]) with ordinality as f (name, n) "
           "where found.contact ->> f.name is not null order by f.n) || %(agent_fields)s::text[] "
           "|| case when (found.c360 ->> 'has_profiling_opt_out')::boolean then '{}'::text[] "
           "else array['scores'] end from found), '{}')"))

#: The partner's view: its own unit's record ids and the customer_360 row (read only when it has such a
#: record), and the audit row, in one statement.
PARTNER_QUERY = """
with own as (
    select array_agg(m.source_record_id order by m.source_record_id) as ids
      from marts.customer_identity_map as m
     where m.customer_id = %(customer_id)s and m.source_system = %(unit)s
),
found as (
    select to_jsonb(c) as c360, own.ids
      from marts.customer_360 as c
     cross join own
     where c.customer_id = %(customer_id)s and not c.is_forgotten and own.ids is not null
),
{logged}
select c360, ids from found
""".replace("{logged}", audit.logged_cte(
    source="(select 1) as one",
    status="case when exists (select from found) then 200 else 404 end",
    customer_ids="coalesce((select array[%(customer_id)s::text] from found), '{}')",
    fields="coalesce((select %(partner_fields)s::text[] "
           "|| case when (found.c360 ->> 'has_profiling_opt_out')::boolean then '{}'::text[] "
           "else array['segments'] end from found), '{}')"))
#: Personal-data parts of each role's profile, named in the audit row (contact fields only when present,
#: scores / segments only without a profiling opt-out).
AGENT_FIELDS = ("view", "consent", "recent_orders", "recent_contacts", "knowledge", "open_complaints")
PARTNER_FIELDS = ("relationship_stage", "own_records")


def agent_profile(conn: psycopg.Connection, customer_id: str, caller: audit.Caller) -> dict | None:
    """The whole 360 profile (agent role), or None when not found (unknown or forgotten)."""
    row = conn.execute(AGENT_QUERY, {"customer_id": customer_id, "recent": RECENT,
                                     "contact_fields": list(CONTACT_FIELDS), "agent_fields": list(AGENT_FIELDS),
                                     **caller.params()}).fetchone()
    if row is None:
        return None
    c360, contact, orders, contacts, knowledge, complaints = row
    contact = contact or {}
    scores = _scores(c360, SCORE_FIELDS)
    action = next_best_action(_facts(c360))
    profile = {
        "customer_id": customer_id,
        "next_best_action": action.as_dict(),
        "relationship_stage": c360.get("relationship_stage"),
        "contact": {f: contact.get(f) for f in CONTACT_FIELDS},
        "consent": {"has_marketing_consent": bool(c360.get("has_marketing_consent")),
                    "has_profiling_opt_out": bool(c360.get("has_profiling_opt_out")),
                    "consent_updated_at": c360.get("consent_updated_at")},
        "view": {f: c360.get(f) for f in VIEW_FIELDS},
        "scores": scores,
        "scores_withheld": OPT_OUT_REASON if scores is None else None,
        "open_complaints": {"count": int(c360.get("open_complaints") or 0), "recent_complaints": complaints},
        "recent_orders": orders,
        "recent_contacts": contacts,
        "knowledge": {flow: [k for k in knowledge if k["flow"] == flow] for flow in ("about", "from", "for")},
    }
    return profile


def partner_profile(conn: psycopg.Connection, customer_id: str, key: ApiKey, caller: audit.Caller) -> dict | None:
    """Pseudonymous id, segments (none after a profiling opt-out) and the partner's own record ids; None when
    not found or when the partner's unit holds no record of the customer (it sees its own customers only)."""
    row = conn.execute(PARTNER_QUERY, {"customer_id": customer_id, "unit": key.unit,
                                       "partner_fields": list(PARTNER_FIELDS), **caller.params()}).fetchone()
    if row is None:
        return None
    c360, own = row
    segments = _scores(c360, SEGMENT_FIELDS)
    profile = {"customer_id": customer_id, "relationship_stage": c360.get("relationship_stage"),
               "segments": segments, "scores_withheld": OPT_OUT_REASON if segments is None else None,
               "own_records": {"source_system": key.unit, "source_record_ids": own}}
    return profile


def profile_for(conn: psycopg.Connection, customer_id: str, key: ApiKey, caller: audit.Caller) -> dict | None:
    """The profile the key's role may see (None: not found for this caller); the read writes its audit row."""
    if key.may("profile:full"):
        return agent_profile(conn, customer_id, caller)
    if key.may("profile:segments"):
        return partner_profile(conn, customer_id, key, caller)
    return None
