"""Failure alerts: an Airflow notifier that posts a failed task to the deployment's webhook.

Where it goes is the deployment's choice, not the code's: ``CKP_ALERT_WEBHOOK_URL`` (see
``crm_knowledge.settings``) or, when that is unset, the Airflow connection ``ckp_alerts`` (its URL: e.g.
``AIRFLOW_CONN_CKP_ALERTS='https://hooks.slack.com/services/…'``, or a connection whose ``host`` holds
the full URL). The body is JSON with a ``text`` line (what Slack, Mattermost, Teams' and Rocket.Chat's
incoming webhooks display) plus the fields a receiver can route on. No URL configured: nothing is sent.

The error text is cut to :data:`MAX_ERROR_CHARS` and is the task's exception message; the pipeline's own
errors name files, rows and settings, never personal data (see the developers' guide).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

ALERTS_CONN_ID = "ckp_alerts"
MAX_ERROR_CHARS = 600
TIMEOUT_S = 10


def alert_url() -> str | None:
    """The configured webhook URL: ``CKP_ALERT_WEBHOOK_URL``, else the ``ckp_alerts`` connection, else None."""
    from crm_knowledge.settings import get_settings

    url = get_settings().alert_webhook_url
    if url:
        return url
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(ALERTS_CONN_ID)
    except Exception:  # not defined (the usual case without alerts): AirflowNotFoundException
        return None
    host = conn.host or ""
    if host.startswith(("http://", "https://")):
        return host
    return conn.get_uri()


def alert_payload(context: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body for a failed task's `context`."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    error = context.get("exception")
    error_text = f"{type(error).__name__}: {error}" if error is not None else "(no exception recorded)"
    if len(error_text) > MAX_ERROR_CHARS:
        error_text = error_text[:MAX_ERROR_CHARS] + " …"
    fields = {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
        "run_id": getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None),
        "run_type": _plain(getattr(dag_run, "run_type", None)),
        "error": error_text,
        "log_url": getattr(ti, "log_url", None),
    }
    where = f"{fields['dag_id']}.{fields['task_id']}"
    if fields["map_index"] not in (None, -1):
        where += f"[{fields['map_index']}]"
    text = f":red_circle: crm-knowledge: task {where} failed in run {fields['run_id']}: {error_text}"
    return {"text": text, **fields}


def _plain(value: Any) -> str | None:
    """An enum's value (Airflow hands run types over as DagRunType), else the text, else None."""
    value = getattr(value, "value", value)
    return str(value) if value else None


def post_alert(url: str, payload: Mapping[str, Any]) -> None:
    """POST `payload` as JSON to `url`; a failing receiver is logged, never raised (the task failed already)."""
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (deployment's URL)
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        log.error("failure alert to the webhook could not be delivered: %s", exc)


class WebhookFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every pipeline task (``dags/ckp_common.DEFAULT_ARGS``): one alert per task
    that failed for good (after its retries), posted to :func:`alert_url`."""

    template_fields = ()

    def notify(self, context: Mapping[str, Any]) -> None:
        url = alert_url()
        if not url:
            log.info("no CKP_ALERT_WEBHOOK_URL and no %s connection: failure alert not sent", ALERTS_CONN_ID)
            return
        post_alert(url, alert_payload(context))
