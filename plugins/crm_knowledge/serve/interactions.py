"""Recording what the front line did: an interaction lands as a contact-centre log file, so the loop closes
through the pipeline's one exactly-once path.

``POST /customers/{id}/interactions`` writes one CSV file, in the contact-centre source's own format (the
columns of ``config/sources/contacts.yml``), into that source's landing folder: written under a name the
source's glob does not match, flushed to disk, then renamed into place (atomic on one file system), so the
loader never sees half a file. On its next run ``ingest_contact_channels`` loads it exactly once (the load
ledger keys a file by its SHA-256) into ``raw.contact_interactions``; staging, identity resolution and the
knowledge repository take it from there like any other call.

Exactly once, end to end: the interaction id is derived from the caller's ``Idempotency-Key`` (a retried
POST writes the same id, and staging keeps one version per id) or is a fresh UUID. The customer is named in
the file the way the contact centre names them: ``customer_ref`` = their orders-system account when they
have one, plus the golden record's name, e-mail and phone from the pii vault, so identity resolution files
the interaction under the customer the agent was looking at.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from crm_knowledge.ingest.registry import load_registry
from crm_knowledge.privacy.file_modes import open_private, private_dir
from crm_knowledge.settings import Settings

#: The file source interactions land in (config/sources/<name>.yml, kind contacts).
SOURCE_NAME = "contacts"
CHANNELS = ("phone", "email", "web_chat", "mail", "fax", "in_person")
OUTCOMES = ("resolved", "follow_up", "escalated", "no_answer", "sale")
MAX_NOTE = 2000
MAX_TOPIC = 80
FILE_PREFIX = "frontline-"


class InteractionInvalid(ValueError):
    """The interaction cannot be recorded as given (HTTP 422), or not attributed to the customer (409)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Interaction:
    channel: str
    topic: str
    outcome: str
    note: str
    occurred_at: dt.datetime


def validate(channel: str, topic: str, outcome: str, note: str | None,
             occurred_at: dt.datetime | None, now: dt.datetime) -> Interaction:
    """The interaction as it will be written, or :class:`InteractionInvalid` naming the field."""
    channel = (channel or "").strip().lower()
    if channel not in CHANNELS:
        raise InteractionInvalid(f"channel must be one of {', '.join(CHANNELS)}")
    outcome = (outcome or "").strip().lower()
    if outcome not in OUTCOMES:
        raise InteractionInvalid(f"outcome must be one of {', '.join(OUTCOMES)}")
    topic = " ".join((topic or "").split()).lower()
    if not topic or len(topic) > MAX_TOPIC:
        raise InteractionInvalid(f"topic: 1-{MAX_TOPIC} characters (e.g. complaint, delivery, product question)")
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise InteractionInvalid(f"note: at most {MAX_NOTE} characters")
    when = occurred_at or now
    if when.tzinfo is None:
        raise InteractionInvalid("occurred_at needs a time zone (e.g. 2026-11-20T10:00:00+03:30)")
    if when > now + dt.timedelta(minutes=5):
        raise InteractionInvalid("occurred_at is in the future")
    return Interaction(channel, topic, outcome, note, when.astimezone(dt.UTC))


def interaction_id(key_id: str, idempotency_key: str | None) -> str:
    """``FL-<hex>``: from the caller's Idempotency-Key (the same key gives the same id) or random."""
    if idempotency_key:
        return "FL-" + hashlib.sha256(f"{key_id}\x1f{idempotency_key}".encode()).hexdigest()[:24]
    return "FL-" + uuid.uuid4().hex[:24]


def _customer_identifiers(conn: psycopg.Connection, customer_id: str) -> dict[str, str]:
    """The identifiers the contact log names a customer by: orders account, name, e-mail, phone."""
    contact = conn.execute("select full_name, email, phone from pii.pii_customer_profiles where customer_id = %s",
                           (customer_id,)).fetchone()
    ref = conn.execute("select source_record_id from marts.customer_identity_map where customer_id = %s and "
                       "source_system = 'orders' order by source_record_id limit 1", (customer_id,)).fetchone()
    out = {"customer_ref": ref[0] if ref else "", "customer_name": (contact or (None,))[0] or "",
           "email": contact[1] if contact and contact[1] else "", "phone": contact[2] if contact and contact[2] else ""}
    if not (out["customer_ref"] or out["email"] or out["phone"]):
        raise InteractionInvalid("the customer has no orders account, e-mail or phone the contact log can name "
                                 "them by; record this interaction in the contact-centre system", status=409)
    return out


def landing_folder(settings: Settings) -> tuple[Path, dict[str, str]]:
    """The contacts source's landing folder and its columns (file column -> raw column, in config order)."""
    cfg = next((s for s in load_registry(settings.config_dir) if s.name == SOURCE_NAME), None)
    if cfg is None or not cfg.path or cfg.format != "csv":
        raise RuntimeError(f"the read service records interactions into the CSV file source {SOURCE_NAME!r} "
                           f"(config/sources/{SOURCE_NAME}.yml), which is missing or not a CSV source")
    return settings.landing_dir / Path(cfg.path).parent, dict(cfg.columns)


def record(conn: psycopg.Connection, settings: Settings, customer_id: str, item: Interaction, agent_id: str,
           idempotency_key: str | None) -> dict:
    """Write the interaction's landing file; returns its id and the file name (not its content)."""
    folder, columns = landing_folder(settings)
    ident = interaction_id(agent_id, idempotency_key)
    row = {"interaction_id": ident, "channel": item.channel, "occurred_at": item.occurred_at.isoformat(),
           "topic": item.topic, "outcome": item.outcome, "notes": item.note, "agent_id": agent_id,
           **_customer_identifiers(conn, customer_id)}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerow([row.get(raw, "") for raw in columns.values()])
    private_dir(folder)
    final = folder / f"{FILE_PREFIX}{ident}.csv"
    temp = folder / f".{FILE_PREFIX}{ident}.{uuid.uuid4().hex[:8]}.part"  # not matched by the source's glob
    with open_private(temp, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, final)
    return {"interaction_id": ident, "customer_id": customer_id, "status": "accepted",
            "landing_file": final.name, "loaded_by": "ingest_contact_channels (next run)"}
