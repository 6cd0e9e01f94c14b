"""Finding a customer by whatever the caller gives: a phone in any spelling, an e-mail, a national ID, or a
name with a birth date.

The input is normalised with the project's own normalisers (``crm_knowledge.normalize``: Persian and Arabic
digits, ``+98`` / ``0098`` / ``09…`` phone forms, Arabic letter variants in names), hashed exactly as the
dbt model ``pii.pii_customer_lookup_keys`` hashes the identifiers the customers' records carried, and found
with one index probe on that hash. Customers who asked to be forgotten are not in that table (nor in
``marts.customer_360`` as live customers), so they are never found.

Several customers can carry one identifier (a family's shared phone, a name and birth date two people
share): every candidate is returned, best first, with the identifiers that matched (its match reason), and
the answer says it is ambiguous.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import psycopg

from crm_knowledge.normalize import (
    normalize_email,
    normalize_name,
    normalize_national_id,
    normalize_phone,
    parse_date,
    to_ascii_digits,
)

#: How strongly one identifier kind points at one person (ranks candidates; shown with the reasons).
KIND_WEIGHT = {"national_id": 1.0, "email": 0.9, "phone": 0.8, "name_birth": 0.7}
#: At most this many candidates are returned (a junk phone typed for thousands of callers finds thousands).
MAX_CANDIDATES = 10


class LookupInvalid(ValueError):
    """The request names no usable identifier, or one that does not normalise (HTTP 422)."""


@dataclass(frozen=True)
class LookupKey:
    kind: str
    key_hash: str


@dataclass
class Candidate:
    customer_id: str
    match_reasons: list[str] = field(default_factory=list)
    score: float = 0.0


def key_hash(kind: str, normalised_value: str) -> str:
    """Hex SHA-256 of ``<kind>:<value>``: the same as pii_customer_lookup_keys.key_hash."""
    return hashlib.sha256(f"{kind}:{normalised_value}".encode()).hexdigest()


def parse_birth_date(text: str) -> str:
    """ISO date of a birth date given as YYYY-MM-DD or a Solar Hijri YYYY/MM/DD (Persian digits allowed)."""
    ascii_text = (to_ascii_digits(text) or "").strip()
    head = ascii_text[:4]
    calendar = "jalali" if head.isdigit() and int(head) < 1700 else "gregorian"
    fmt = "%Y/%m/%d" if "/" in ascii_text else "%Y-%m-%d"
    try:
        parsed = parse_date(ascii_text, calendar, fmt)
    except ValueError:
        parsed = None
    if parsed is None:
        raise LookupInvalid("birth_date: not a date (YYYY-MM-DD, or Solar Hijri YYYY/MM/DD)")
    return parsed.isoformat()


def lookup_keys(phone: str | None = None, email: str | None = None, national_id: str | None = None,
                name: str | None = None, birth_date: str | None = None) -> list[LookupKey]:
    """The hashed keys of the given identifiers; :class:`LookupInvalid` names what is missing or unusable.

    The error never repeats the value (it may be personal data that would end up in a log)."""
    keys: list[LookupKey] = []
    if phone:
        value = normalize_phone(phone)
        if value is None:
            raise LookupInvalid("phone: not a usable phone number")
        keys.append(LookupKey("phone", key_hash("phone", value)))
    if email:
        value = normalize_email(email)
        if value is None:
            raise LookupInvalid("email: not a usable e-mail address")
        keys.append(LookupKey("email", key_hash("email", value)))
    if national_id:
        value = normalize_national_id(national_id)
        if value is None:
            raise LookupInvalid("national_id: not a valid national ID (10 digits with a valid check digit)")
        keys.append(LookupKey("national_id", key_hash("national_id", value)))
    if name or birth_date:
        if not (name and birth_date):
            raise LookupInvalid("name and birth_date go together: a name alone identifies nobody")
        value = normalize_name(name)
        if value is None:
            raise LookupInvalid("name: no letters in it")
        keys.append(LookupKey("name_birth", key_hash("name_birth", f"{value}|{parse_birth_date(birth_date)}")))
    if not keys:
        raise LookupInvalid("give phone, email, national_id, or name with birth_date")
    return keys


def find_candidates(conn: psycopg.Connection, keys: list[LookupKey], unit: str | None = None) -> list[Candidate]:
    """Live customers carrying any of the keys, best first (most and strongest identifiers matched).

    ``unit``: only customers with at least one record of that source system (a partner sees its own
    customers only)."""
    rows = conn.execute(
        """select k.customer_id, k.identifier_kind
             from pii.pii_customer_lookup_keys as k
             join marts.customer_360 as c on c.customer_id = k.customer_id and not c.is_forgotten
            where k.key_hash = any(%(keys)s)
              and (%(unit)s::text is null or exists (
                  select from marts.customer_identity_map as m
                   where m.customer_id = k.customer_id and m.source_system = %(unit)s))""",
        {"keys": [k.key_hash for k in keys], "unit": unit}).fetchall()
    by_customer: dict[str, Candidate] = {}
    for customer_id, kind in rows:
        cand = by_customer.setdefault(customer_id, Candidate(customer_id))
        if kind not in cand.match_reasons:
            cand.match_reasons.append(kind)
            cand.score += KIND_WEIGHT[kind]
    ranked = sorted(by_customer.values(), key=lambda c: (-c.score, c.customer_id))
    for cand in ranked:
        cand.match_reasons.sort(key=lambda k: -KIND_WEIGHT[k])
        cand.score = round(cand.score, 2)
    return ranked[:MAX_CANDIDATES]


def contact_cards(conn: psycopg.Connection, customer_ids: list[str]) -> dict[str, dict]:
    """Name, e-mail, phone and city of each customer from the pii vault (only for callers with the
    ``contact`` scope)."""
    if not customer_ids:
        return {}
    rows = conn.execute("select customer_id, full_name, email, phone, city from pii.pii_customer_profiles "
                        "where customer_id = any(%s)", (customer_ids,)).fetchall()
    return {r[0]: {"full_name": r[1], "email": r[2], "phone": r[3], "city": r[4]} for r in rows}
