"""Webhook destination: POST the delta as JSON batches, each with ``Idempotency-Key: <delivery_id>-<batch_no>``.

Body of a batch::

    {"destination": ..., "delivery_id": ..., "as_of_date": "YYYY-MM-DD", "batch_no": 1, "batch_count": n,
     "columns": [...], "records": [{"change_type": "added", "customer_id": ..., "audience": ..., ...}, ...]}

A batch is retried, with the same idempotency key and body, on connection errors, timeouts, 5xx, 408 and 429,
waiting ``backoff_seconds * 2**retry`` (or the server's ``Retry-After`` if longer, capped at 60 s) up to
``max_retries`` times; any other 4xx fails the delivery at once (retrying a request the server refuses only
repeats the refusal). The delivery is acknowledged only when every batch got a 2xx. ``delivery_id`` is the
export id of the first attempt at this exact delta, so batches a failed attempt already delivered are
recognised by the receiver when the next run re-sends the delta.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from crm_knowledge.export.config import DestinationConfig
from crm_knowledge.export.file_drop import SendResult

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_SECONDS = 60.0


class WebhookError(RuntimeError):
    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return min(float(value), MAX_RETRY_AFTER_SECONDS) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP-date Retry-After: fall back to our own back-off


def post_batch(url: str, body: bytes, idempotency_key: str, *, timeout: float, max_retries: int,
               backoff_seconds: float, sleep: Callable[[float], None] = time.sleep) -> int:
    """POST one batch until acknowledged; returns the number of attempts made. Raises WebhookError."""
    opener = _opener(url)
    attempt = 0
    while True:
        attempt += 1
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": idempotency_key,
            "User-Agent": "crm-knowledge-export/1",
        })
        retry_after = None
        try:
            with opener.open(req, timeout=timeout) as resp:
                resp.read()
                status = resp.status
            if 200 <= status < 300:
                return attempt
            error = WebhookError(f"unexpected HTTP {status}", status, retryable=False)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace") if exc.fp else ""
            retry_after = _retry_after(exc.headers)
            error = WebhookError(f"HTTP {exc.code} {exc.reason}: {detail}".strip(), exc.code,
                                 retryable=exc.code in RETRY_STATUSES)
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException,
                OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error = WebhookError(f"connection failed: {reason}", None, retryable=True)
        if not error.retryable or attempt > max_retries:
            suffix = "" if not error.retryable else f" (gave up after {attempt} attempts)"
            raise WebhookError(f"batch {idempotency_key}: {error}{suffix}", error.status, error.retryable)
        wait = backoff_seconds * (2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, retry_after)
        log.warning("webhook batch %s: %s; retry %d/%d in %.2fs", idempotency_key, error, attempt, max_retries,
                    wait)
        sleep(wait)


def batches(records: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def send(dest: DestinationConfig, records: list[dict[str, Any]], columns: list[str], *, delivery_id: str,
         as_of: date, sleep: Callable[[float], None] = time.sleep) -> SendResult:
    assert dest.webhook is not None
    cfg = dest.webhook
    url = cfg.resolve_url()
    parts = batches(records, cfg.batch_size)
    for no, batch in enumerate(parts, start=1):
        body = json.dumps({
            "destination": dest.name,
            "delivery_id": delivery_id,
            "as_of_date": as_of.isoformat(),
            "batch_no": no,
            "batch_count": len(parts),
            "columns": columns,
            "records": [{c: r.get(c) for c in columns} for r in batch],
        }, ensure_ascii=False, sort_keys=True).encode("utf-8")
        post_batch(url, body, f"{delivery_id}-{no}", timeout=cfg.timeout_seconds, max_retries=cfg.max_retries,
                   backoff_seconds=cfg.backoff_seconds, sleep=sleep)
    p = urlsplit(url)
    location = f"{p.scheme}://{p.hostname}{':' + str(p.port) if p.port else ''}{p.path}"
    return SendResult(location=location)
