"""Small synthetic identity candidates with ground truth, for tests and quick benchmarks.

Not the demo generator (that lives in crm_knowledge.demo); this only produces frames shaped like
intermediate.int_identity_candidates, with the variations identity resolution must handle.
"""

from __future__ import annotations

import random

import pandas as pd

from crm_knowledge.identity.prepare import CANDIDATE_COLUMNS

#: intermediate.int_identity_candidates on its own, for identity-only runs on synthetic candidates (the daily-run
#: test and bench): the columns identity reads, staged_at as staging stamps it, the record key.
CANDIDATES_DDL = """
create schema if not exists intermediate;
create table intermediate.int_identity_candidates (
    source_system text, source_record_id text, first_name_norm text, last_name_norm text, full_name_norm text,
    email_norm text, phone_e164 text, national_id_valid text, birth_date date, postcode text, city_norm text,
    street_norm text, house_number text, address_line2_norm text, customer_ref text, seen_at timestamptz,
    staged_at timestamptz not null default clock_timestamp(),
    primary key (source_system, source_record_id)
);
"""

FIRST = [("علی", "ali"), ("رضا", "reza"), ("محمد", "mohammad"), ("سارا", "sara"), ("مریم", "maryam"),
         ("حسین", "hossein"), ("زهرا", "zahra"), ("فاطمه", "fatemeh"), ("امید", "omid"), ("نیما", "nima"),
         ("لیلا", "leila"), ("مینا", "mina")]
# last names whose romanised keys differ from every first name's (so a swap is detectable)
LAST = [("صالحی", "salehi"), ("احمدی", "ahmadi"), ("کریمی", "karimi"), ("عباسی", "abbasi"),
        ("قاسمی", "ghasemi"), ("جعفری", "jafari"), ("صادقی", "sadeghi"), ("تقوی", "taghavi"),
        ("موسوی", "mousavi"), ("کاظمی", "kazemi")]
CITIES = [("تهران", "tehran"), ("اصفهان", "esfahan"), ("شیراز", "shiraz"), ("تبریز", "tabriz")]


def record(source_system: str, source_record_id: str, **fields) -> dict:
    """One candidate row with every contract column (missing ones None)."""
    row = {c: None for c in CANDIDATE_COLUMNS}
    row.update(source_system=source_system, source_record_id=str(source_record_id),
               seen_at=pd.Timestamp("2026-03-01T10:00:00Z"))
    row.update(fields)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def make_people(n_persons: int = 80, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates and ground truth (source_system, source_record_id, person_id).

    Each person has an orders record (Latin script, email/phone) and, with some probability, a sibling
    record in Persian script with first/last swapped and no contact data (probabilistic only), and a
    form referring to the orders record (customer_ref) or sharing the email.
    """
    rng = random.Random(seed)
    rows, truth = [], []
    used = set()
    for p in range(n_persons):
        while True:
            fi, li = rng.randrange(len(FIRST)), rng.randrange(len(LAST))
            bd = f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            if (fi, li, bd) not in used:
                used.add((fi, li, bd))
                break
        (f_fa, f_la), (l_fa, l_la) = FIRST[fi], LAST[li]
        ci = rng.randrange(len(CITIES))
        postcode = f"{rng.randint(10000, 99999)}{rng.randint(10000, 99999)}"
        email = f"{f_la}.{l_la}.{p}@mail.ir"
        phone = f"+98912{p:07d}"
        pid = f"P{p:05d}"
        rows.append(record("orders", str(1000 + p), first_name_norm=f_la, last_name_norm=l_la,
                           full_name_norm=f"{f_la} {l_la}", email_norm=email, phone_e164=phone, birth_date=bd,
                           postcode=postcode, city_norm=CITIES[ci][1]))
        truth.append(("orders", str(1000 + p), pid))
        if rng.random() < 0.6:
            swapped = rng.random() < 0.5
            rows.append(record("sibling:insurance", f"S{p}", first_name_norm=l_fa if swapped else f_fa,
                               last_name_norm=f_fa if swapped else l_fa, birth_date=bd,
                               postcode=postcode if rng.random() < 0.8 else None, city_norm=CITIES[ci][0]))
            truth.append(("sibling:insurance", f"S{p}", pid))
        if rng.random() < 0.5:
            by_ref = rng.random() < 0.5
            rows.append(record("forms", f"F{p}", full_name_norm=f"{f_la} {l_la}",
                               email_norm=None if by_ref else email, customer_ref=str(1000 + p) if by_ref else None))
            truth.append(("forms", f"F{p}", pid))
    return frame(rows), pd.DataFrame(truth, columns=["source_system", "source_record_id", "person_id"])
