"""Webhook client and the local receiver, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
from export_world import webhook_receivers

from crm_knowledge.export.webhook import WebhookError, post_batch


@pytest.fixture()
def serve(tmp_path):
    with webhook_receivers(tmp_path) as start:
        yield start


def body(n=1):
    return json.dumps({"batch_no": n, "records": [{"customer_id": "c1"}]}).encode()


def test_receiver_stores_once_per_idempotency_key(serve):
    srv = serve()
    assert post_batch(srv.url, body(), "k-1", timeout=5, max_retries=0, backoff_seconds=0) == 1
    assert post_batch(srv.url, body(), "k-1", timeout=5, max_retries=0, backoff_seconds=0) == 1
    assert [e["outcome"] for e in srv.requests_log()] == ["stored", "duplicate"]
    assert len(srv.stored()) == 1 and srv.stored()[0]["_idempotency_key"] == "k-1"
    # the same key with another body is a conflict (422: not retried)
    with pytest.raises(WebhookError, match="422"):
        post_batch(srv.url, body(2), "k-1", timeout=5, max_retries=3, backoff_seconds=0)


def test_retries_5xx_and_429_then_succeeds(serve):
    srv = serve(fail_plan=[503, 429, 500])
    waits = []
    attempts = post_batch(srv.url, body(), "k-2", timeout=5, max_retries=3, backoff_seconds=0.5,
                          sleep=waits.append)
    assert attempts == 4 and waits == [0.5, 1.0, 2.0]
    assert [e["idempotency_key"] for e in srv.requests_log()] == ["k-2"] * 4
    assert len(srv.stored()) == 1


def test_gives_up_after_max_retries(serve):
    srv = serve(fail_plan=[503, 503, 503])
    with pytest.raises(WebhookError, match="gave up after 3 attempts"):
        post_batch(srv.url, body(), "k-3", timeout=5, max_retries=2, backoff_seconds=0, sleep=lambda s: None)
    assert srv.stored() == []


def test_other_4xx_fails_fast(serve):
    srv = serve(fail_plan=[400])
    with pytest.raises(WebhookError) as exc:
        post_batch(srv.url, body(), "k-4", timeout=5, max_retries=5, backoff_seconds=0, sleep=lambda s: None)
    assert exc.value.status == 400 and not exc.value.retryable
    assert len(srv.requests_log()) == 1


def test_connection_refused_is_retried():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    waits = []
    with pytest.raises(WebhookError, match="connection failed"):
        post_batch(f"http://127.0.0.1:{port}/x", body(), "k-5", timeout=2, max_retries=2, backoff_seconds=0.1,
                   sleep=waits.append)
    assert waits == [0.1, 0.2]
