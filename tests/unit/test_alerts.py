"""Failure alerts reach the deployment's webhook: a real HTTP server on loopback receives them."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from crm_knowledge.alerts import MAX_ERROR_CHARS, WebhookFailureNotifier, alert_payload


@pytest.fixture()
def receiver():
    """A loopback HTTP server on CKP_TEST_WEBHOOK_PORT+1 recording every POSTed JSON body."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = int(os.environ.get("CKP_TEST_WEBHOOK_PORT", "8775")) + 1
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/hooks/ckp", received
    finally:
        server.shutdown()
        server.server_close()


def _context(error: Exception) -> dict:
    ti = SimpleNamespace(dag_id="customer_warehouse", task_id="dbt_marts.dim_customers_run", map_index=-1,
                         try_number=3, run_id="asset_triggered__2026-11-20", log_url="http://ui/log")
    return {"ti": ti, "dag_run": SimpleNamespace(run_id=ti.run_id, run_type="asset_triggered"), "exception": error}


def test_a_failed_task_is_posted_to_the_configured_webhook(receiver, monkeypatch):
    url, received = receiver
    monkeypatch.setenv("CKP_ALERT_WEBHOOK_URL", url)
    WebhookFailureNotifier()(_context(RuntimeError("relation marts.x does not exist")))
    assert len(received) == 1
    got = received[0]
    assert got["path"] == "/hooks/ckp" and got["type"] == "application/json"
    body = got["json"]
    assert body["dag_id"] == "customer_warehouse" and body["task_id"] == "dbt_marts.dim_customers_run"
    assert body["try_number"] == 3 and body["run_type"] == "asset_triggered"
    assert body["error"] == "RuntimeError: relation marts.x does not exist"
    assert "customer_warehouse.dbt_marts.dim_customers_run failed" in body["text"]


def test_the_airflow_connection_is_the_fallback(receiver, monkeypatch):
    url, received = receiver
    monkeypatch.delenv("CKP_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_CKP_ALERTS", json.dumps({"conn_type": "http", "host": url}))
    WebhookFailureNotifier()(_context(ValueError("boom")))
    assert [r["json"]["error"] for r in received] == ["ValueError: boom"]


def test_no_webhook_configured_sends_nothing_and_does_not_raise(receiver, monkeypatch):
    _, received = receiver
    monkeypatch.delenv("CKP_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CKP_ALERTS", raising=False)
    WebhookFailureNotifier()(_context(ValueError("boom")))
    assert received == []


def test_an_unreachable_webhook_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv("CKP_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    WebhookFailureNotifier()(_context(ValueError("boom")))
    assert "could not be delivered" in caplog.text


def test_the_run_type_is_plain_text_as_airflow_hands_over_an_enum():
    from airflow.utils.types import DagRunType

    context = _context(ValueError("boom"))
    context["dag_run"] = SimpleNamespace(run_id="r", run_type=DagRunType.ASSET_TRIGGERED)
    assert alert_payload(context)["run_type"] == "asset_triggered"


def test_long_errors_are_cut():
    body = alert_payload(_context(RuntimeError("x" * 5000)))
    assert len(body["error"]) <= MAX_ERROR_CHARS + 2
