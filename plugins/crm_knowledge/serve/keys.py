"""API keys of the read service: roles, their scopes, and keys stored only as hashes.

A key reads ``ckp_<key_id>_<secret>``. ``key_id`` is public (it names the key in ``audit.api_keys`` and in
every ``audit.api_requests`` row); the secret is 32 random bytes shown once by ``ckp api-keys create`` and
stored as its SHA-256 (a random 256-bit secret needs no slow hash: nothing can be guessed from the digest).
Checking a key is one primary-key read and a constant-time comparison. The service remembers a checked key
for ``CKP_SERVE_KEY_CACHE_SECONDS`` (:class:`KeyCache`, default 5 s) so a request does not pay that read:
revoking a key therefore takes effect within that many seconds in every worker, not at once.

Roles and what each may do (:data:`SCOPES`):

* ``agent`` -- the contact centre and branch staff: look customers up (with their contact data), read the
  whole profile, record interactions, use the agent page;
* ``partner`` -- a sibling unit's system: look customers up and read their pseudonymous id, segments and its
  *own* unit's record ids; never contact data, orders, contacts, knowledge items or another unit's records,
  and it cannot write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

AGENT = "agent"
PARTNER = "partner"
ROLES = (AGENT, PARTNER)

#: Scopes of each role. lookup: find customers; profile:full / profile:segments: the 360 view or the
#: pseudonymous segments only; contact: see contact data (names, phone, e-mail); interactions:write.
SCOPES: dict[str, frozenset[str]] = {
    AGENT: frozenset({"lookup", "profile:full", "contact", "interactions:write"}),
    PARTNER: frozenset({"lookup", "profile:segments"}),
}

_KEY_RE = re.compile(r"^ckp_([a-f0-9]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,79}$")
_UNIT_RE = re.compile(r"^[a-z][a-z0-9_:]{0,62}$")


class ApiKeyInvalid(ValueError):
    """A key cannot be created as asked (unknown role, a partner without its unit, a bad name)."""


@dataclass(frozen=True)
class ApiKey:
    """A verified caller."""

    key_id: str
    name: str
    role: str
    unit: str | None
    rate_limit_per_minute: int | None

    @property
    def scopes(self) -> frozenset[str]:
        return SCOPES[self.role]

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_key(conn: psycopg.Connection, name: str, role: str, unit: str | None = None,
               rate_limit_per_minute: int | None = None) -> tuple[str, ApiKey]:
    """Create a key; returns ``(the full key, to show once, the stored ApiKey)``."""
    if role not in ROLES:
        raise ApiKeyInvalid(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not _NAME_RE.match(name or ""):
        raise ApiKeyInvalid("name: 1-80 letters, digits, spaces or ._:- (who holds the key; no personal data)")
    if role == PARTNER and not unit:
        raise ApiKeyInvalid("a partner key needs --unit: the source system it speaks for, e.g. sibling:bank_fa")
    if unit is not None and not _UNIT_RE.match(unit):
        raise ApiKeyInvalid(f"unit must be a source system name such as sibling:bank_fa, got {unit!r}")
    if rate_limit_per_minute is not None and rate_limit_per_minute <= 0:
        raise ApiKeyInvalid("rate limit must be a positive number of requests per minute")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    conn.execute("insert into audit.api_keys (key_id, secret_sha256, name, role, unit, rate_limit_per_minute) "
                 "values (%s, %s, %s, %s, %s, %s)", (key_id, _digest(secret), name, role, unit,
                                                     rate_limit_per_minute))
    return f"ckp_{key_id}_{secret}", ApiKey(key_id, name, role, unit if role == PARTNER else None,
                                            rate_limit_per_minute)


def parse_key(presented: str | None) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None."""
    m = _KEY_RE.match((presented or "").strip())
    return (m.group(1), m.group(2)) if m else None


def verify_key(conn: psycopg.Connection, presented: str | None) -> ApiKey | None:
    """The caller of a presented key, or None (malformed, unknown, revoked or a wrong secret)."""
    parsed = parse_key(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = conn.execute("select secret_sha256, name, role, unit, rate_limit_per_minute from audit.api_keys "
                       "where key_id = %s and revoked_at is null", (key_id,)).fetchone()
    if row is None or not hmac.compare_digest(row[0], _digest(secret)):
        return None
    return ApiKey(key_id, row[1], row[2], row[3], row[4])


class KeyCache:
    """:func:`verify_key` answers remembered for ``ttl`` seconds, in one serving process.

    Keyed on the key id and the SHA-256 of the presented secret (never the secret itself), so a wrong secret
    for a known key id is a different entry and is never let in by a cached right one. Refusals are
    remembered too (a client retrying a bad key costs no database read). After ``ttl`` seconds the key is
    read again: a revoked key is refused at most ``ttl`` seconds after its revocation. ``ttl`` 0 reads the
    key on every request."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self.ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: dict[tuple[str, str], tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def verify(self, conn: psycopg.Connection, presented: str | None) -> ApiKey | None:
        parsed = parse_key(presented)
        if parsed is None:
            return None
        if self.ttl <= 0:
            return verify_key(conn, presented)
        entry = (parsed[0], _digest(parsed[1]))
        now = self._clock()
        with self._lock:
            hit = self._entries.get(entry)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = verify_key(conn, presented)
        with self._lock:
            if len(self._entries) >= self._max:  # bounded: a flood of made-up keys cannot grow it without end
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[entry] = (now + self.ttl, key)
        return key


def list_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key (never a secret or its hash): id, name, role, unit, limit, created, revoked."""
    rows = conn.execute("select key_id, name, role, unit, rate_limit_per_minute, created_at, revoked_at "
                        "from audit.api_keys order by created_at, key_id").fetchall()
    cols = ("key_id", "name", "role", "unit", "rate_limit_per_minute", "created_at", "revoked_at")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def revoke_key(conn: psycopg.Connection, key_id: str, when: dt.datetime | None = None) -> bool:
    """Revoke a key (a running service refuses it within CKP_SERVE_KEY_CACHE_SECONDS, see KeyCache); False when
    there is no such active key."""
    cur = conn.execute("update audit.api_keys set revoked_at = coalesce(%s, now()) "
                       "where key_id = %s and revoked_at is null", (when, key_id))
    return cur.rowcount == 1
