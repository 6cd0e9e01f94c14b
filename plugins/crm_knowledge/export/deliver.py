"""Deliver segments to every configured destination: select, diff, send, and record -- in that order.

For one destination (:func:`deliver`):

1. take the destination's advisory lock on the warehouse (:func:`destination_lock`: two deliveries to one
   destination never overlap) and mark attempts left ``running`` by a crashed run as ``failed``;
2. select the current members (audience.py: consent, forgetting and exclusions are enforced in the query),
   hold back the holdout of measured audiences (holdout.py: customers entering an audience with a ``holdout``
   share are randomised by a keyed hash; held-out ones are never sent) and diff the rest against
   ``scoring.delivered_state`` (delta.py), all in one repeatable-read snapshot;
3. if the same delta failed last time, reuse its ``delivery_id`` (webhook idempotency keys and file names
   derive from it, so the destination can de-duplicate);
4. :func:`send_delta`: record an ``audit.exports`` row ``running``, send the delta (file_drop / db_upsert /
   webhook; nothing is sent for an empty delta), and only when the destination acknowledged, in ONE
   warehouse transaction mark the audit row ``delivered``, write ``delivered_state``,
   ``scoring.communications`` and the new holdout assignments (``scoring.campaign_assignments``). If
   sending failed, the audit row becomes ``failed`` and the state is untouched, so the next run computes
   (and re-sends) the same delta: no gaps, no duplicates.

Erasure (privacy/erasure.py) sends its removals through the same :func:`destination_lock` and
:func:`send_delta`, so a removal is recorded, sent and acknowledged exactly like any delivery.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from crm_knowledge.export import db_upsert, file_drop, holdout, webhook
from crm_knowledge.export.audience import customer_status, select_members
from crm_knowledge.export.config import DestinationConfig, DestinationConfigError, load_destinations
from crm_knowledge.export.delta import Delta, PriorState, compute_delta, record_columns
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import advisory_lock, advisory_unlock, connect

log = logging.getLogger(__name__)

#: Removal reasons for which no communication row is written (the customer is gone or erased).
_SILENT_REMOVALS = ("forgotten", "customer_unknown")


class DeliveryError(RuntimeError):
    """A delivery failed; it is recorded as failed in audit.exports and delivered_state is unchanged."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


class DeliveriesFailed(RuntimeError):
    """At least one destination of deliver_all failed; ``results`` holds every destination's outcome."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        failed = [r for r in results if r["status"] == "failed"]
        super().__init__("delivery failed for " + ", ".join(f"{r['destination']} ({r['error']})" for r in failed))
        self.results = results


def new_export_id(dest: DestinationConfig, as_of: date) -> str:
    now = datetime.now(UTC)
    return f"{dest.name}-{as_of:%Y%m%d}-{now:%H%M%S}-{uuid.uuid4().hex[:6]}"


def _read_prior(conn: psycopg.Connection, dest: DestinationConfig) -> dict[str, PriorState]:
    rows = conn.execute(
        "select destination_key, customer_id, payload_hash, payload from scoring.delivered_state "
        "where destination = %s", (dest.name,)).fetchall()
    return {r[0]: PriorState(r[1], r[2], r[3]) for r in rows}


def _snapshot(conn: psycopg.Connection, dest: DestinationConfig, as_of: date) -> Delta:
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        members = select_members(conn, dest, as_of)
        prior = _read_prior(conn, dest)
        arms = holdout.plan(conn, dest, members, as_of, {k: p.payload.get("audience") for k, p in prior.items()})
        gone = sorted({p.customer_id for k, p in prior.items() if k not in arms.sent})
        status = customer_status(conn, gone)
    delta = compute_delta(dest, arms.sent, prior, status)
    delta.members = len(members)
    delta.held_out = arms.held_out
    delta.assignments = arms.new
    return delta


def _record_success(conn: psycopg.Connection, dest: DestinationConfig, export_id: str, delta: Delta,
                    location: str | None, checksum: str | None) -> None:
    with conn.transaction():
        conn.execute(
            "update audit.exports set status = 'delivered', location = %s, checksum = %s, error = null, "
            "finished_at = clock_timestamp() where export_id = %s", (location, checksum, export_id))
        sent = [*delta.added, *delta.changed]
        with conn.cursor() as cur:
            if sent:
                cur.executemany(
                    "insert into scoring.delivered_state as t (destination, destination_key, customer_id, "
                    "payload_hash, payload, delivered_at) values (%s, %s, %s, %s, %s, now()) "
                    "on conflict (destination, destination_key) do update set customer_id = excluded.customer_id, "
                    "payload_hash = excluded.payload_hash, payload = excluded.payload, "
                    "delivered_at = excluded.delivered_at",
                    [(dest.name, c.key, c.customer_id, c.payload_hash, Jsonb(c.stored_payload)) for c in sent])
            if delta.removed:
                cur.execute("delete from scoring.delivered_state where destination = %s "
                            "and destination_key = any(%s::text[])", (dest.name, [c.key for c in delta.removed]))
            comms = set()
            for c in delta.to_send:
                if c.change_type == "removed" and c.reason in _SILENT_REMOVALS:
                    continue
                kind = ("offer_made" if dest.purpose == "marketing" and c.change_type != "removed"
                        else "segment_communicated")
                comms.add((c.customer_id, c.audience, c.change_type, kind))
            if comms:
                cur.executemany(
                    "insert into scoring.communications (export_id, destination, customer_id, audience, "
                    "change_type, communicated_at, purpose, kind) values (%s, %s, %s, %s, %s, now(), %s, %s)",
                    [(export_id, dest.name, cid, aud, ct, dest.purpose, kind)
                     for cid, aud, ct, kind in sorted(comms, key=lambda t: (t[0], t[2], t[1] or ""))])
            holdout.record(cur, export_id, delta.assignments)


def _send(dest: DestinationConfig, delta: Delta, *, export_id: str, delivery_id: str, as_of: date,
          settings: Settings, sleep: Callable[[float], None]) -> file_drop.SendResult:
    records = [c.record for c in delta.to_send]
    columns = record_columns(dest)
    if dest.kind == "file":
        return file_drop.send(dest, records, columns, export_id=export_id, delivery_id=delivery_id, as_of=as_of,
                              exports_dir=Path(settings.exports_dir))
    if dest.kind == "database":
        assert dest.database is not None
        return db_upsert.send(dest, records, delivery_id=delivery_id, as_of=as_of,
                              url=dest.database.resolve_url(settings))
    return webhook.send(dest, records, columns, delivery_id=delivery_id, as_of=as_of, sleep=sleep)


def lock_key(dest: DestinationConfig) -> str:
    """The advisory-lock key of a destination: whoever sends to it (delivery or erasure) holds it."""
    return f"crm_knowledge.export:{dest.name}"


@contextmanager
def destination_lock(conn: psycopg.Connection, dest: DestinationConfig, *, wait: bool,
                     result: dict[str, Any] | None = None) -> Iterator[None]:
    """Hold the destination's session advisory lock (``conn`` in autocommit) for the block.

    ``wait=False`` (a scheduled delivery): raise DeliveryError at once when another sender holds it.
    ``wait=True`` (an erasure removal): wait for the running delivery to finish, then send.
    """
    key = lock_key(dest)
    if not advisory_lock(conn, key, wait=wait):
        raise DeliveryError(f"destination {dest.name!r}: another delivery is running", result)
    try:
        yield
    finally:
        try:
            advisory_unlock(conn, key)
        except psycopg.Error:  # a broken connection releases its session locks anyway
            log.debug("export %s: advisory unlock failed", dest.name, exc_info=True)


def send_delta(conn: psycopg.Connection, dest: DestinationConfig, delta: Delta, as_of: date, *,
               settings: Settings, export_id: str | None = None, delivery_id: str | None = None,
               attempt: int = 1, members: int | None = None, error_prefix: str = "",
               sleep: Callable[[float], None] = time.sleep) -> file_drop.SendResult:
    """Record the attempt, send ``delta`` to ``dest``, record the outcome; the one way anything is delivered.

    The caller holds :func:`destination_lock` on ``conn`` (autocommit). Writes the ``audit.exports`` row
    ``running`` first; on acknowledgement marks it ``delivered`` and writes ``scoring.delivered_state`` and
    ``scoring.communications`` in one transaction; on failure marks it ``failed`` (error prefixed with
    ``error_prefix``), leaves the state untouched and raises DeliveryError. An empty delta sends nothing
    and is recorded as delivered.
    """
    export_id = export_id or new_export_id(dest, as_of)
    delivery_id = delivery_id or export_id
    counts = delta.counts
    conn.execute(
        "insert into audit.exports (export_id, destination, kind, as_of_date, rows_added, rows_changed, "
        "rows_removed, status, delivery_id, delta_hash, attempt, purpose, mode, id_space, named_fields, "
        "members) values (%s, %s, %s, %s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s, %s)",
        (export_id, dest.name, dest.kind, as_of, counts["added"], counts["changed"], counts["removed"],
         delivery_id, delta.content_hash(dest.name, as_of), attempt, dest.purpose, dest.mode, dest.id_space,
         list(dest.named_fields), members))
    try:
        if delta.is_empty():
            sent = file_drop.SendResult(location=None)
        else:
            sent = _send(dest, delta, export_id=export_id, delivery_id=delivery_id, as_of=as_of,
                         settings=settings, sleep=sleep)
    except Exception as exc:
        error = f"{error_prefix}{type(exc).__name__}: {exc}"
        conn.execute("update audit.exports set status = 'failed', error = %s, "
                     "finished_at = clock_timestamp() where export_id = %s", (error[:2000], export_id))
        log.error("export %s (%s) failed, delivered state unchanged, will be retried: %s", dest.name,
                  export_id, error)
        raise DeliveryError(f"destination {dest.name!r}: {error}", {"error": error}) from exc
    _record_success(conn, dest, export_id, delta, sent.location, sent.checksum)
    return sent


def deliver(destination_config: DestinationConfig, as_of: date, conn_url: str | None = None, *,
            settings: Settings | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Deliver one destination's delta for ``as_of``; returns the delivery record. Raises DeliveryError."""
    dest = destination_config
    settings = settings or get_settings()
    conn_url = conn_url or settings.warehouse_url
    export_id = new_export_id(dest, as_of)
    result: dict[str, Any] = {
        "export_id": export_id, "delivery_id": export_id, "destination": dest.name, "kind": dest.kind,
        "purpose": dest.purpose, "mode": dest.mode, "id_space": dest.id_space, "as_of_date": as_of.isoformat(),
        "status": "failed", "attempt": 1, "members": None, "rows_added": 0, "rows_changed": 0,
        "rows_removed": 0, "not_sent_changed": 0, "not_sent_removed": 0, "removed_by_reason": {},
        "location": None, "checksum": None, "named_fields": list(dest.named_fields), "error": None,
    }
    with (connect(conn_url, autocommit=True, application_name="crm_knowledge.export") as conn,
          destination_lock(conn, dest, wait=False, result=result)):
        conn.execute(
            "update audit.exports set status = 'failed', finished_at = clock_timestamp(), "
            "error = coalesce(error, 'abandoned: the run ended before the destination acknowledged') "
            "where destination = %s and status = 'running'", (dest.name,))
        try:
            delta = _snapshot(conn, dest, as_of)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            conn.execute(
                "insert into audit.exports (export_id, destination, kind, as_of_date, status, error, "
                "finished_at, delivery_id, purpose, mode, id_space, named_fields) values "
                "(%s, %s, %s, %s, 'failed', %s, clock_timestamp(), %s, %s, %s, %s, %s)",
                (export_id, dest.name, dest.kind, as_of, result["error"][:2000], export_id, dest.purpose,
                 dest.mode, dest.id_space, list(dest.named_fields)))
            log.error("export %s: selecting the delta failed: %s", dest.name, result["error"])
            raise DeliveryError(f"destination {dest.name!r}: {result['error']}", result) from exc
        counts = delta.counts
        reasons: dict[str, int] = {}
        for c in delta.removed:
            reasons[c.reason or ""] = reasons.get(c.reason or "", 0) + 1
        result.update(members=delta.members, held_out=delta.held_out,
                      assigned=len(delta.assignments), rows_added=counts["added"], rows_changed=counts["changed"],
                      rows_removed=counts["removed"], not_sent_changed=delta.not_sent_changed,
                      not_sent_removed=delta.not_sent_removed, removed_by_reason=reasons)
        delta_hash = delta.content_hash(dest.name, as_of)
        delivery_id, attempt = export_id, 1
        last = conn.execute(
            "select status, delta_hash, delivery_id, attempt from audit.exports where destination = %s "
            "order by started_at desc, finished_at desc nulls first limit 1", (dest.name,)).fetchone()
        if last and last[0] == "failed" and last[1] == delta_hash and last[2] and not delta.is_empty():
            delivery_id, attempt = last[2], (last[3] or 1) + 1
        result.update(delivery_id=delivery_id, attempt=attempt)
        try:
            sent = send_delta(conn, dest, delta, as_of, settings=settings, export_id=export_id,
                              delivery_id=delivery_id, attempt=attempt, members=delta.members, sleep=sleep)
        except DeliveryError as exc:  # the audit row says failed; the caller gets this delivery's record
            result["error"] = exc.result.get("error")
            exc.result = result
            raise
        result.update(status="delivered", location=sent.location, checksum=sent.checksum)
        log.info(
            "export %s (%s, %s, attempt %d): %d members (%d held out, %d newly randomised); sent %d added, "
            "%d changed, %d removed%s%s -> %s",
            dest.name, export_id, dest.kind, attempt, delta.members, delta.held_out, len(delta.assignments),
            counts["added"], counts["changed"], counts["removed"],
            f"; {delta.not_sent_changed} changes not sent (insert_only)" if delta.not_sent_changed else "",
            f"; {delta.not_sent_removed} left their audience (kept, mode {dest.mode})"
            if delta.not_sent_removed else "",
            sent.location or "nothing to send")
        if dest.named_fields:
            log.info("export %s carried personal fields: %s", dest.name, ", ".join(dest.named_fields))
        return result


def deliver_all(as_of: date, settings: Settings | None = None, only: list[str] | None = None, *,
                config_path: Path | str | None = None, raise_on_failure: bool = True,
                sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Deliver every enabled destination (or those named in ``only``); one failure doesn't stop the others.

    Returns one record per destination. With ``raise_on_failure`` (default) raises DeliveriesFailed after all
    destinations were attempted if any failed (its ``results`` holds the records).
    """
    settings = settings or get_settings()
    cfg = load_destinations(config_path or settings.destinations_file)
    if only is not None:
        known = {d.name for d in cfg.destinations}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise DestinationConfigError(f"{cfg.source}: no destination named {unknown[0]!r} "
                                         f"(known: {', '.join(sorted(known))})")
    results = []
    for dest in cfg.destinations:
        if only is not None and dest.name not in only:
            continue
        if not dest.enabled:
            log.info("export %s: disabled, skipped", dest.name)
            results.append({"destination": dest.name, "kind": dest.kind, "as_of_date": as_of.isoformat(),
                            "status": "skipped", "error": None})
            continue
        try:
            results.append(deliver(dest, as_of, settings.warehouse_url, settings=settings, sleep=sleep))
        except DeliveryError as exc:
            results.append(exc.result or {"destination": dest.name, "status": "failed", "error": str(exc)})
    if raise_on_failure and any(r["status"] == "failed" for r in results):
        raise DeliveriesFailed(results)
    return results
