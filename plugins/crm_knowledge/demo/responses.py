"""Demo customers who respond to campaigns: a known true effect per audience, so measurement can be checked.

After a delivery with holdouts (scoring.campaign_assignments), :func:`plant_campaign_responses` writes the
orders the randomised customers place in the days after the delivery into the demo's orders database:

* every customer of a measured campaign (treated or held out) places Poisson(``BASE_ORDERS``) orders over the
  range -- what they would have bought anyway, the same for both arms;
* a treated customer places Poisson(effect) more, ``PLANTED_EFFECTS`` per (destination, audience); an audience
  missing there (the demo's ``champions``: they buy anyway) has no effect at all, the null audience.

The true lift in revenue orders per customer over the range is therefore exactly the planted effect, whatever
else the customers do (ordinary daily increments hit both arms alike). Orders are paid (revenue orders),
placed uniformly over the range (06:00-20:00 UTC), and synced to the orders system at the end of the range
(their ``updated_at``), so the next incremental extract reads them. The planted truth is written to
``<demo_dir>/campaign_effects.json`` (tests compare campaign_lift with it). Customers are reached through
their orders-system customer number (marts.customer_identity_map); randomised customers without one cannot
order there and are left out of both arms alike.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np

from crm_knowledge.demo import orders_db as odb
from crm_knowledge.demo.messiness import EPOCH
from crm_knowledge.demo.sources import DAY
from crm_knowledge.privacy.file_modes import write_private_text
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import connect, copy_frame

log = logging.getLogger(__name__)

#: Extra revenue orders per treated customer over the response range, by (destination, audience). Audiences
#: with a holdout that are not listed have no effect (the null audience).
PLANTED_EFFECTS: dict[tuple[str, str], float] = {
    ("marketing_campaigns", "loyal"): 0.8,
    ("marketing_campaigns", "at_risk"): 1.2,
}
#: Orders every randomised customer (either arm) places over the range anyway.
BASE_ORDERS = 0.6
#: Days of the demo's response range (make run's second simulated day range).
RESPONSE_DAYS = 7
EFFECTS_FILE = "campaign_effects.json"


def _epoch(d: dt.date, hour: int = 0) -> int:
    return (d - EPOCH).days * DAY + hour * 3600


def effects_path(settings: Settings) -> Path:
    return settings.demo_dir / EFFECTS_FILE


def load_planted_effects(settings: Settings | None = None) -> dict:
    """The truth :func:`plant_campaign_responses` planted (what the measured lift should recover)."""
    return json.loads(effects_path(settings or get_settings()).read_text(encoding="utf-8"))


def _campaign_customers(settings: Settings, delivery_day: dt.date) -> list[tuple[str, str, str, int]]:
    """(destination, audience, arm, orders customer number) of the customers randomised on delivery_day."""
    with connect(settings.warehouse_url) as conn:
        rows = conn.execute(
            "select a.destination, a.audience, a.arm, min(m.source_record_id::bigint) "
            "from scoring.campaign_assignments a join marts.customer_identity_map m "
            "on m.customer_id = a.customer_id and m.source_system = 'orders' "
            "where a.campaign_date = %s and m.source_record_id ~ '^[0-9]+$' "
            "group by a.destination, a.audience, a.arm, a.customer_id "
            "order by a.destination, a.audience, a.customer_id", (delivery_day,)).fetchall()
    return [(d, a, arm, int(cid)) for d, a, arm, cid in rows]


def plant_campaign_responses(delivery_day: dt.date, seed: int, settings: Settings | None = None,
                             days: int = RESPONSE_DAYS) -> dict:
    """Write the orders of the campaigns delivered on ``delivery_day`` over the ``days`` after it (module
    docstring); returns (and saves) the planted truth. Applying it twice for one day is a no-op."""
    from crm_knowledge.demo.generate import _save_state, load_state

    settings = settings or get_settings()
    state = load_state(settings)
    if state is None:
        raise RuntimeError(f"no demo state in {settings.demo_dir}: run the demo generator first")
    done = state.setdefault("campaign_responses", {})
    if delivery_day.isoformat() in done:
        log.info("demo: campaign responses of %s already planted", delivery_day)
        return done[delivery_day.isoformat()]
    customers = _campaign_customers(settings, delivery_day)
    lo, hi = _epoch(delivery_day + dt.timedelta(days=1), 6), _epoch(delivery_day + dt.timedelta(days=days), 20)
    rng = np.random.default_rng([seed, 16, delivery_day.toordinal()])
    cids = np.array([c[3] for c in customers], dtype=np.int64)
    effect = np.array([PLANTED_EFFECTS.get((d, a), 0.0) if arm == "treated" else 0.0
                       for d, a, arm, _ in customers])
    n_orders = rng.poisson(BASE_ORDERS, size=len(cids)) + rng.poisson(effect)
    counters = state["counters"]
    start_oid, start_iid = counters.get("order", 0) + 1, counters.get("order_item", 0) + 1
    cat = odb.build_catalogue(state["seed"], _epoch(dt.date.fromisoformat(state["as_of"]), 20))
    block = odb.make_orders(rng, cids, np.full(len(cids), lo), n_orders, cat, hi, start_oid, start_iid,
                            window=(lo, hi))
    synced = odb.ts_text(np.full(len(block.orders), hi))
    block.orders["status"] = "paid"  # revenue orders: the planted effect is on revenue orders exactly
    block.orders["updated_at"] = synced
    block.items["updated_at"] = odb.ts_text(np.full(len(block.items), hi))
    url = odb.ensure_orders_database(settings)
    with connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        copy_frame(conn, "orders", block.orders)
        copy_frame(conn, "order_items", block.items)
        conn.commit()
    counters["order"] = start_oid - 1 + len(block.orders)
    counters["order_item"] = start_iid - 1 + len(block.items)

    audiences: dict[str, dict] = {}
    for (d, a, arm, _), n in zip(customers, n_orders.tolist(), strict=True):
        entry = audiences.setdefault(f"{d}:{a}", {
            "destination": d, "audience": a, "true_lift_orders_per_customer": PLANTED_EFFECTS.get((d, a), 0.0),
            "treated_customers": 0, "holdout_customers": 0, "orders_planted": 0})
        entry[f"{arm}_customers"] += 1
        entry["orders_planted"] += n
    truth = {"delivery_day": delivery_day.isoformat(), "days": days, "base_orders_per_customer": BASE_ORDERS,
             "window_start": (delivery_day + dt.timedelta(days=1)).isoformat(),
             "window_end": (delivery_day + dt.timedelta(days=days)).isoformat(),
             "orders": len(block.orders), "audiences": audiences}
    done[delivery_day.isoformat()] = truth
    _save_state(settings, state)
    write_private_text(effects_path(settings), json.dumps(truth, indent=2, sort_keys=True))
    log.info("demo: planted %d campaign orders for %d customers of %s", len(block.orders), len(cids),
             delivery_day)
    return truth


def simulate_response_range(delivery_day: dt.date, seed: int, settings: Settings | None = None,
                            days: int = RESPONSE_DAYS) -> tuple[dt.date, dict]:
    """The days after a delivery, as the demo's sources see them: one ordinary increment per day not yet
    generated (new customers, orders, forms, contacts) and the planted campaign responses. Returns the last
    day of the range (the as-of date to run the pipeline for) and the planted truth."""
    from crm_knowledge.demo.generate import generate_increment, load_state

    settings = settings or get_settings()
    state = load_state(settings)
    if state is None:
        raise RuntimeError(f"no demo state in {settings.demo_dir}: run the demo generator first")
    last = max([dt.date.fromisoformat(state["as_of"])] + [dt.date.fromisoformat(d) for d in state["increments"]])
    end = delivery_day + dt.timedelta(days=days)
    day = max(last, delivery_day) + dt.timedelta(days=1)
    while day <= end:
        generate_increment(day, seed, settings)
        day += dt.timedelta(days=1)
    return end, plant_campaign_responses(delivery_day, seed, settings, days=days)
