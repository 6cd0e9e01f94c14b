"""What changed for a destination since its last acknowledged delivery (``scoring.delivered_state``).

* ``added``   -- a key the destination was never (successfully) sent;
* ``changed`` -- a key whose payload hash differs from the one delivered;
* ``removed`` -- a delivered key that is no longer a member. Sent in ``mirror`` mode; in every mode when the
  reason is a privacy or suppression one (customer forgotten, marketing consent withdrawn / profiling opt-out
  on a marketing destination, customer excluded, customer id no longer known) -- a destination must not keep
  acting on someone who may no longer be there.

``insert_only`` sends only ``added`` (plus those privacy removals); ``upsert`` sends ``added`` and ``changed``.
Pure functions, no I/O: the caller reads the state and writes it back after the destination acknowledged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from crm_knowledge.export.audience import Member
from crm_knowledge.export.config import DestinationConfig

#: Removal reasons sent whatever the mode.
FORCED_REMOVAL_REASONS = ("forgotten", "consent_withdrawn", "excluded", "customer_unknown")
#: The mirror-mode removal guard only applies once a destination holds at least this many keys.
REMOVAL_GUARD_MIN_KEYS = 10


class RemovalGuardTripped(RuntimeError):
    """A mirror delivery would remove a larger share of the destination than configured."""


@dataclass(frozen=True)
class PriorState:
    customer_id: str
    payload_hash: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Change:
    change_type: str  # added | changed | removed
    key: str
    customer_id: str
    audience: str | None
    record: dict[str, Any]  # what the destination receives
    payload_hash: str | None = None  # added / changed
    stored_payload: dict[str, Any] | None = None  # added / changed: payload without named (personal) fields
    reason: str | None = None  # removed


@dataclass
class Delta:
    added: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    not_sent_changed: int = 0  # insert_only: changes the destination does not take
    not_sent_removed: int = 0  # non-mirror: members who left their audience (kept at the destination)
    members: int = 0
    held_out: int = 0  # members held out of measured audiences (export/holdout.py): never sent
    #: holdout.Assignment rows this delivery records (customers newly randomised into an arm)
    assignments: list[Any] = field(default_factory=list)

    @property
    def to_send(self) -> list[Change]:
        return [*self.added, *self.changed, *self.removed]

    @property
    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "changed": len(self.changed), "removed": len(self.removed)}

    def is_empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def content_hash(self, destination: str, as_of: date) -> str:
        """Identifies the delta's content: a retry of the same delta gets the same delivery id."""
        h = hashlib.sha256(f"{destination}|{as_of.isoformat()}".encode())
        for c in self.to_send:
            h.update(f"\n{c.change_type}|{c.key}|{c.payload_hash or c.reason}".encode())
        return h.hexdigest()


def payload_hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_columns(dest: DestinationConfig) -> list[str]:
    return ["change_type", *dest.columns, "removal_reason"]


def _record(dest: DestinationConfig, change_type: str, payload: dict[str, Any], reason: str | None) -> dict:
    rec: dict[str, Any] = {"change_type": change_type}
    for col in dest.columns:
        rec[col] = payload.get(col)
    rec["removal_reason"] = reason
    return rec


def removal_reason(dest: DestinationConfig, customer_id: str,
                   status: dict[str, dict[str, Any]]) -> str:
    st = status.get(customer_id)
    if st is None:
        return "customer_unknown"
    if st["is_forgotten"]:
        return "forgotten"
    if dest.consent == "marketing" and (not st["has_marketing_consent"] or st["has_profiling_opt_out"]):
        return "consent_withdrawn"
    if customer_id in dest.exclude_ids:
        return "excluded"
    return "left_audience"


def compute_delta(dest: DestinationConfig, members: dict[str, Member], prior: dict[str, PriorState],
                  status: dict[str, dict[str, Any]]) -> Delta:
    """``status``: privacy flags by customer id for the customers of ``prior`` keys (see audience.customer_status)."""
    delta = Delta(members=len(members))
    named = set(dest.named_fields)
    for key in sorted(members):
        m = members[key]
        h = payload_hash(m.payload)
        stored = {k: v for k, v in m.payload.items() if k not in named}
        before = prior.get(key)
        if before is None:
            delta.added.append(Change("added", key, m.customer_id, m.audience,
                                      _record(dest, "added", m.payload, None), h, stored))
        elif before.payload_hash != h:
            if dest.mode == "insert_only":
                delta.not_sent_changed += 1
            else:
                delta.changed.append(Change("changed", key, m.customer_id, m.audience,
                                            _record(dest, "changed", m.payload, None), h, stored))
    left_audience = 0
    for key in sorted(set(prior) - set(members)):
        before = prior[key]
        reason = removal_reason(dest, before.customer_id, status)
        if reason == "left_audience":
            if dest.mode != "mirror":
                delta.not_sent_removed += 1
                continue
            left_audience += 1
        payload = {dest.key_column: key, "audience": before.payload.get("audience")}
        delta.removed.append(Change("removed", key, before.customer_id, payload["audience"],
                                    _record(dest, "removed", payload, reason), reason=reason))
    if (dest.mode == "mirror" and len(prior) >= REMOVAL_GUARD_MIN_KEYS
            and left_audience > dest.max_removed_fraction * len(prior)):
        raise RemovalGuardTripped(
            f"destination {dest.name!r}: {left_audience} of {len(prior)} delivered keys would be removed "
            f"(more than max_removed_fraction={dest.max_removed_fraction}); refusing. Check the scores, or raise "
            "max_removed_fraction for this destination if this is intended."
        )
    return delta


def removal_delta(dest: DestinationConfig, held: list[tuple[str, str, str | None]], reason: str) -> Delta:
    """A delta that removes the given delivered keys, each ``(key, customer_id, audience)``, for ``reason``.

    Erasure's removals: the keys come from ``scoring.delivered_state`` (what the destination holds), not from
    an audience selection, so ``members`` is unknown and left 0.
    """
    delta = Delta()
    for key, customer_id, audience in held:
        payload = {dest.key_column: key, "audience": audience}
        delta.removed.append(Change("removed", key, customer_id, audience,
                                    _record(dest, "removed", payload, reason), reason=reason))
    return delta
