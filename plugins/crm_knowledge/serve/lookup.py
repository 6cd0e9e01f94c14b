"""Finding a customer by whatever the caller gives: a phone in any spelling, an e-mail, a national ID, or a
name with a birth date.

The input is normalised with the project's own normalisers (``crm_knowledge.normalize``: Persian and Arabic
digits, ``+98`` / ``0098`` / ``09…`` phone forms, Arabic letter variants in names), hashed exactly as the
dbt model ``pii.pii_customer_lookup_keys`` hashes the identifiers the customers' records carried, and found
with one index probe on that hash, in one statement that also reads the contact cards and writes the
request's audit row. Customers who asked to be forgotten are not in that table (nor in
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
from crm_knowledge.serve import audit

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
    contact: dict | None = None  # name, e-mail, phone, city: only for callers with the ``contact`` scope


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


#: Personal-data fields of a contact card (what the audit row names when cards were returned).
CONTACT_FIELDS = ("full_name", "email", "phone", "city")

#: The whole lookup in one statement: candidates through the hashed keys (live customers only, of the partner's
#: unit when one is given), ranked by the weights of the kinds that matched, their contact cards when the
#: caller may see them, and the request's audit row (audit.logged_cte) naming the customers returned.
FIND_SQL = """
with hits as (
    select k.customer_id, array_agg(distinct k.identifier_kind) as kinds
      from pii.pii_customer_lookup_keys as k
      join marts.customer_360 as c on c.customer_id = k.customer_id and not c.is_forgotten
     where k.key_hash = any(%(keys)s)
       and (%(unit)s::text is null or exists (
           select from marts.customer_identity_map as m
            where m.customer_id = k.customer_id and m.source_system = %(unit)s))
     group by k.customer_id
),
ranked as (
    select h.customer_id, h.kinds,
           (select sum(w.weight) from unnest(%(kinds)s::text[], %(weights)s::float8[]) as w (kind, weight)
             where w.kind = any(h.kinds)) as score
      from hits as h
     order by score desc, h.customer_id
     limit %(max)s
),
cards as (
    select p.customer_id, p.full_name, p.email, p.phone, p.city
      from pii.pii_customer_profiles as p
     where %(contact)s and p.customer_id in (select r.customer_id from ranked as r)
),
{logged}
select r.customer_id, r.kinds, r.score, c.customer_id is not null as has_card, c.full_name, c.email, c.phone, c.city
  from ranked as r
  left join cards as c on c.customer_id = r.customer_id
 order by r.score desc, r.customer_id
""".replace("{logged}", audit.logged_cte(
    source="ranked",
    status="case when count(*) > 0 then 200 else 404 end",
    customer_ids="coalesce(array_agg(ranked.customer_id order by ranked.score desc, ranked.customer_id), '{}')",
    fields="case when count(*) = 0 then '{}'::text[] "
           "when exists (select from cards) then %(card_fields)s::text[] || array['match_reasons'] "
           "else array['match_reasons'] end"))


def find(conn: psycopg.Connection, keys: list[LookupKey], caller: audit.Caller, *, unit: str | None = None,
         contact: bool = False) -> list[Candidate]:
    """Live customers carrying any of the keys, best first (most and strongest identifiers matched), at most
    :data:`MAX_CANDIDATES`, with their contact card when `contact`; the request's audit row is written by the
    same statement.

    ``unit``: only customers with at least one record of that source system (a partner sees its own
    customers only)."""
    kinds = list(KIND_WEIGHT)
    rows = conn.execute(FIND_SQL, {
        "keys": [k.key_hash for k in keys], "unit": unit, "kinds": kinds, "weights": [KIND_WEIGHT[k] for k in kinds],
        "max": MAX_CANDIDATES, "contact": contact, "card_fields": [f"contact.{f}" for f in CONTACT_FIELDS],
        **caller.params()}).fetchall()
    found = []
    for customer_id, matched, score, has_card, *card in rows:
        found.append(Candidate(customer_id, sorted(matched, key=lambda k: (-KIND_WEIGHT[k], k)), round(score, 2),
                               dict(zip(CONTACT_FIELDS, card, strict=True)) if has_card else None))
    return found
