"""Holdouts at delivery: who of a measured audience is sent, who is held back to measure the campaign.

An audience that declares ``holdout: <share>`` in ``config/destinations.yml`` is a measured campaign. Each
customer ENTERING it (selected now, not already held at the destination under that audience) is randomised
once into an arm:

* ``holdout`` when :func:`bucket` < share, else ``treated``;
* :func:`bucket` is a keyed hash (HMAC-SHA-256 with the pipeline's secret pseudonym key) of destination,
  audience and customer id, mapped to [0, 1). The same customer gets the same arm on every re-run and in
  every later delta, nobody can predict or steer an arm without the key, and arms are independent across
  audiences and destinations (a customer held out of one campaign is not systematically held out of another);
* the arm is recorded in ``scoring.campaign_assignments`` with the delivery (same transaction as
  ``scoring.delivered_state``, deliver.py); a recorded arm is never recomputed or changed, so rotating the key
  or changing the share only affects customers who enter later.

Held-out customers are removed from the members before the delta is computed: they are never sent. Consent,
forgetting and exclusions were already applied by the audience selection (audience.py), so a customer who may
not be contacted is neither treated nor held out. Customers already at the destination in that audience when
the holdout was declared keep receiving it and are not part of any campaign (they were not randomised).

The campaign a customer belongs to is (destination, audience, campaign_date): the as-of date of the delivery
that assigned them. Measurement lives in dbt (models/marts/campaign_results.sql, campaign_lift.sql).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from crm_knowledge.export.audience import Member
from crm_knowledge.export.config import DestinationConfig

ARMS = ("treated", "holdout")
_SEP = "\x1f"
_DOMAIN = b"crm_knowledge.campaign_holdout"


def bucket(key: bytes, destination: str, audience: str, customer_id: str) -> float:
    """The customer's keyed-hash position in [0, 1) for one destination's audience (stable, uniform)."""
    message = _SEP.join((destination, audience, customer_id)).encode("utf-8")
    digest = hmac.new(hmac.new(key, _DOMAIN, hashlib.sha256).digest(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm_for(position: float, share: float) -> str:
    return "holdout" if position < share else "treated"


def holdout_key() -> bytes:
    """The secret the arms are keyed with: the pipeline's pseudonym key (privacy/pseudonym.py)."""
    from crm_knowledge.privacy.pseudonym import load_key

    return load_key()


@dataclass(frozen=True)
class Assignment:
    """A customer's arm in a measured audience, recorded with the delivery that first selected them."""

    destination: str
    audience: str
    customer_id: str
    campaign_date: date
    arm: str
    holdout_share: float
    assignment_bucket: float
    churn_probability: float | None = None
    model_run_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass
class HoldoutPlan:
    """The members to send (held-out ones removed) and the assignments this delivery records."""

    sent: dict[str, Member]
    new: list[Assignment]
    held_out: int  # members (customers) held out in this delivery, recorded earlier or now


def recorded_arms(conn: psycopg.Connection, dest: DestinationConfig) -> dict[tuple[str, str], str]:
    """Arms recorded for the destination's audiences: {(audience, customer_id): arm}."""
    rows = conn.execute("select audience, customer_id, arm from scoring.campaign_assignments "
                        "where destination = %s", (dest.name,)).fetchall()
    return {(a, c): arm for a, c, arm in rows}


def _score_context(conn: psycopg.Connection, customer_ids: list[str], as_of: date) -> dict[str, tuple[Any, dict]]:
    """Predicted churn and the scoring model runs behind each customer's latest scores on or before as_of."""
    if not customer_ids:
        return {}
    rows = conn.execute(
        "select distinct on (customer_id) customer_id::text, churn_probability, model_run_ids "
        "from marts.customer_segments where as_of_date <= %s and customer_id::text = any(%s::text[]) "
        "order by customer_id, as_of_date desc", (as_of, customer_ids)).fetchall()
    return {r[0]: (r[1], r[2] if isinstance(r[2], dict) else json.loads(r[2] or "{}")) for r in rows}


def plan(conn: psycopg.Connection, dest: DestinationConfig, members: dict[str, Member], as_of: date,
         prior_audiences: Mapping[str, str | None], *, key: bytes | None = None) -> HoldoutPlan:
    """Split ``members`` into those sent and those held out; compute the arms of customers entering.

    ``prior_audiences``: destination key -> audience it holds now (scoring.delivered_state), so customers
    already at the destination in the same audience are left out of the randomisation.
    """
    measured = dest.measured_audiences
    if not measured:
        return HoldoutPlan(sent=dict(members), new=[], held_out=0)
    recorded = recorded_arms(conn, dest)
    already_there = {(m.audience, m.customer_id) for k, m in members.items()
                     if prior_audiences.get(k) == m.audience}
    key = key if key is not None else holdout_key()
    arms: dict[tuple[str, str], str | None] = {}
    new: dict[tuple[str, str], tuple[str, float]] = {}
    for m in members.values():
        ac = (m.audience, m.customer_id)
        if m.audience not in measured or ac in arms:
            continue
        if ac in recorded:
            arms[ac] = recorded[ac]
        elif ac in already_there:
            arms[ac] = None  # delivered before the holdout was declared: not randomised, keeps receiving
        else:
            share = measured[m.audience]
            position = bucket(key, dest.name, m.audience, m.customer_id)
            arms[ac] = arm_for(position, share)
            new[ac] = (arms[ac], position)
    context = _score_context(conn, sorted({c for _, c in new}), as_of)
    assignments = [
        Assignment(dest.name, aud, cid, as_of, arm, measured[aud], position,
                   context.get(cid, (None, {}))[0], context.get(cid, (None, {}))[1])
        for (aud, cid), (arm, position) in sorted(new.items())
    ]
    sent = {k: m for k, m in members.items() if arms.get((m.audience, m.customer_id)) != "holdout"}
    held_out = len({ac for ac, arm in arms.items() if arm == "holdout"})
    return HoldoutPlan(sent=sent, new=assignments, held_out=held_out)


def record(cur: psycopg.Cursor, export_id: str, assignments: list[Assignment]) -> None:
    """Write the new assignments and, per scoring model run, the campaigns its scores selected (in the
    caller's delivery transaction; an arm already recorded is kept)."""
    if not assignments:
        return
    from psycopg.types.json import Jsonb

    cur.executemany(
        "insert into scoring.campaign_assignments (destination, audience, customer_id, campaign_date, arm, "
        "holdout_share, assignment_bucket, export_id, churn_probability, model_run_ids) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict (destination, audience, customer_id) do nothing",
        [(a.destination, a.audience, a.customer_id, a.campaign_date, a.arm, a.holdout_share,
          a.assignment_bucket, export_id, a.churn_probability, Jsonb(dict(a.model_run_ids)))
         for a in assignments])
    runs: dict[tuple[str, str, str, str, date], list[int]] = {}
    for a in assignments:
        for model, run_id in sorted(a.model_run_ids.items()):
            counts = runs.setdefault((str(run_id), model, a.destination, a.audience, a.campaign_date), [0, 0])
            counts[0] += 1
            counts[1] += a.arm == "holdout"
    if runs:
        cur.executemany(
            "insert into scoring.model_run_campaigns as t (model_run_id, model, destination, audience, "
            "campaign_date, assigned_customers, holdout_customers) values (%s, %s, %s, %s, %s, %s, %s) "
            "on conflict (model_run_id, destination, audience, campaign_date) do update set "
            "assigned_customers = t.assigned_customers + excluded.assigned_customers, "
            "holdout_customers = t.holdout_customers + excluded.holdout_customers, recorded_at = now()",
            [(*k, n, h) for k, (n, h) in sorted(runs.items())])
