"""Fault injection for delivery: a webhook destination unreachable, then reachable again.

The receiver is a real HTTP server on this test run's webhook port (CKP_TEST_WEBHOOK_PORT), stopped and started
again between and during deliveries. Asserted: the failed delivery changes no delivered state, the next run
delivers, and the receiver holds every customer exactly once (batches re-sent with their idempotency key are
recognised as duplicates).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import date

import psycopg
import pytest
from export_world import delivery_warehouse, webhook_destination

from crm_knowledge.export.deliver import DeliveryError, deliver
from crm_knowledge.export.receiver import make_server

pytestmark = [pytest.mark.warehouse, pytest.mark.faults]

AS_OF = date(2026, 3, 1)


@pytest.fixture()
def wh(scratch_db):
    delivery_warehouse(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        for i in range(1, 6):
            cid = f"c{i}"
            conn.execute("insert into marts.customer_segments values (%s, %s, 'champions', 'gold', 1, 0.1, 100, 0.9)",
                         (cid, AS_OF))
            conn.execute("insert into marts.dim_customers values (%s, true, false, false, 'Tehran', 'Tehran')", (cid,))
    return scratch_db


def _dest(port: int):
    return webhook_destination(f"http://127.0.0.1:{port}/segments", fields=["rfm_segment"], max_retries=2)


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def test_destination_unreachable_then_reachable_delivers_once(wh, settings, tmp_path):
    port = int(os.environ.get("CKP_TEST_WEBHOOK_PORT") or os.environ["CKP_WEBHOOK_PORT"])
    local = dataclasses.replace(settings, home=tmp_path / "home")
    inbox = tmp_path / "inbox"
    dest = _dest(port)

    # 1. Nobody listens: every attempt is refused, the delivery fails and no state moves.
    import socket

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} (CKP_TEST_WEBHOOK_PORT) must be free"
    with pytest.raises(DeliveryError):
        deliver(dest, AS_OF, wh, settings=local, sleep=lambda s: None)
    assert _count(wh, "select count(*) from scoring.delivered_state") == 0

    # 2. The receiver comes up, takes batch 1, then goes away while batch 2 is retried.
    srv = make_server(port, inbox, fail_plan=[0, 503], path="/segments")
    srv.start_in_thread()

    def go_down(_seconds: float) -> None:
        if srv.socket.fileno() != -1:
            srv.shutdown()
            srv.server_close()

    with pytest.raises(DeliveryError):
        deliver(dest, AS_OF, wh, settings=local, sleep=go_down)
    assert _count(wh, "select count(*) from scoring.delivered_state") == 0
    assert len(srv.stored()) == 1  # batch 1 arrived before the outage

    # 3. Reachable again: the same delta is re-sent; batch 1 is recognised, the rest stored once.
    srv = make_server(port, inbox, path="/segments")
    srv.start_in_thread()
    try:
        res = deliver(dest, AS_OF, wh, settings=local, sleep=lambda s: None)
        assert res["status"] == "delivered" and res["rows_added"] == 5
        stored = srv.stored()
        ids = sorted(r["customer_id"] for b in stored for r in b["records"])
        assert ids == ["c1", "c2", "c3", "c4", "c5"]  # nothing lost, nothing twice
        outcomes = [e["outcome"] for e in srv.requests_log()]
        assert outcomes.count("duplicate") == 1 and outcomes.count("stored") == 3
        assert _count(wh, "select count(*) from scoring.delivered_state") == 5
        # a further run sends nothing
        again = deliver(dest, AS_OF, wh, settings=local, sleep=lambda s: None)
        assert (again["rows_added"], again["rows_changed"]) == (0, 0)
        assert len(srv.stored()) == 3
    finally:
        srv.shutdown()
        srv.server_close()
