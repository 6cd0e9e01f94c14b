"""True persons: the ground truth every demo source record is rendered from.

Persons are generated column-wise with numpy in fixed blocks of `BLOCK` persons, each block from its
own RNG stream, so person *i* is the same whatever the population size (an increment that adds persons
extends the population without changing anyone already generated). Identifiers that must be unique
(national id, mobile number) come from affine bijections of the person index, emails are de-duplicated
in person order; both keep that prefix stability.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_knowledge.demo import names_fa as N
from crm_knowledge.demo.messiness import EPOCH, email_local, national_ids_from_first9

BLOCK = 65_536

FIRST = N.MALE_FIRST + N.FEMALE_FIRST
N_MALE = len(N.MALE_FIRST)
FIRST_FA = np.array([f for f, _ in FIRST], dtype=object)
FIRST_LAT = [lat for _, lat in FIRST]
LAST_FA = np.array([f for f, _ in N.LAST], dtype=object)
LAST_LAT = [lat for _, lat in N.LAST]
FIRST_NICK_FA = np.array([N.NICKNAMES.get(f, (None, None))[0] for f, _ in FIRST], dtype=object)
FIRST_NICK_LAT = np.array([N.NICKNAMES.get(f, (None, None))[1] for f, _ in FIRST], dtype=object)
CITY_W = np.array([c[4] for c in N.CITIES], dtype=float)
CITY_W /= CITY_W.sum()
DOMAINS = np.array([d for d, _ in N.EMAIL_DOMAINS], dtype=object)
DOMAIN_W = np.array([w for _, w in N.EMAIL_DOMAINS], dtype=float)
DOMAIN_W /= DOMAIN_W.sum()

#: Mobile prefixes of persons' own numbers; fresh numbers (a new SIM, a number typed for one record)
#: come from a disjoint prefix set so they never collide with someone's own number.
MOBILE_PREFIXES = np.array([912, 919, 935, 936, 901, 902, 910, 911, 917, 938, 939, 990, 921, 922], dtype=np.int64)
FRESH_PREFIXES = np.array([933, 934, 937, 903, 905, 941], dtype=np.int64)
_FRESH_SPACE = len(FRESH_PREFIXES) * 10_000_000
#: Postcode region prefix per city (two digits from the digits Iranian postcodes use: no 0 or 2).
_PC_DIGITS = np.array([1, 3, 4, 5, 6, 7, 8, 9])


def _zipf_weights(n: int, offset: float = 4.0) -> np.ndarray:
    w = 1.0 / (np.arange(n) + offset)
    return w / w.sum()


MALE_W = _zipf_weights(N_MALE)
FEMALE_W = _zipf_weights(len(N.FEMALE_FIRST))
LAST_W = _zipf_weights(len(N.LAST), 8.0)
CITY_PC_PREFIX = np.array([(_PC_DIGITS[i % 8] * 10 + _PC_DIGITS[(i * 3 + 1) % 8]) for i in range(len(N.CITIES))])


def person_id(idx: int | np.ndarray) -> str:
    return f"P{int(idx) + 1:07d}"


def fresh_mobile(k: np.ndarray | int) -> np.ndarray:
    """The k-th fresh mobile number (10 digits, no trunk 0); distinct for distinct k < 6e7."""
    k = np.asarray(k, dtype=np.int64)
    x = (k * 7_919_333 + 12_345_677) % _FRESH_SPACE
    return FRESH_PREFIXES[x // 10_000_000] * 10_000_000 + x % 10_000_000


@dataclass
class People:
    """Column arrays, one entry per person (index = person index, person_id = P + index + 1)."""

    n: int
    gender: np.ndarray        # int8: 0 male, 1 female
    first: np.ndarray         # int16 index into FIRST
    first_sp: np.ndarray      # int8 the person's own Latin spelling (index into FIRST_LAT[first])
    last: np.ndarray          # int16 index into LAST
    last_sp: np.ndarray       # int8
    birth: np.ndarray         # int32 days since 1970-01-01
    national_id: np.ndarray   # int64, 10 digits, valid check digit
    mobile: np.ndarray        # int64, 10 digits without trunk 0 (9xxxxxxxxx)
    mobile2: np.ndarray       # int64, a newer number (moved on) or 0
    email: np.ndarray         # object
    email2: np.ndarray        # object: a newer address (moved on) or None
    city: np.ndarray          # int16 index into CITIES
    street: np.ndarray        # int16 index into STREETS
    alley: np.ndarray         # int16
    plaque: np.ndarray        # int16
    postcode: np.ndarray      # int64, 10 digits
    company: np.ndarray       # int16 index into COMPANIES or -1
    business_type: np.ndarray  # int8 index into BUSINESS_TYPES
    since: np.ndarray         # int32 days: start of the person's relationship with the group

    def first_latin(self, i: int) -> str:
        sp = FIRST_LAT[self.first[i]]
        return sp[self.first_sp[i] % len(sp)]

    def last_latin(self, i: int) -> str:
        sp = LAST_LAT[self.last[i]]
        return sp[self.last_sp[i] % len(sp)]

    def birth_date(self, i: int) -> dt.date:
        return EPOCH + dt.timedelta(days=int(self.birth[i]))


def _block(seed: int, b: int, as_of: dt.date) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 1, b])
    m = BLOCK
    gender = (rng.random(m) < 0.5).astype(np.int8)
    male_first = rng.choice(N_MALE, size=m, p=MALE_W)
    female_first = N_MALE + rng.choice(len(N.FEMALE_FIRST), size=m, p=FEMALE_W)
    first = np.where(gender == 1, female_first, male_first).astype(np.int16)
    sp_w = np.array([0.65, 0.25, 0.07, 0.03])
    first_sp = rng.choice(4, size=m, p=sp_w).astype(np.int8)
    last = rng.choice(len(N.LAST), size=m, p=LAST_W).astype(np.int16)
    last_sp = rng.choice(4, size=m, p=sp_w).astype(np.int8)
    as_of_days = (as_of - EPOCH).days
    age_days = (18 * 365.25 + rng.beta(2.0, 3.2, size=m) * 62 * 365.25).astype(np.int32)
    birth = (as_of_days - age_days).astype(np.int32)
    has_mobile2 = rng.random(m) < 0.08
    has_email2 = rng.random(m) < 0.07
    city = rng.choice(len(N.CITIES), size=m, p=CITY_W).astype(np.int16)
    street = rng.integers(0, len(N.STREETS), size=m).astype(np.int16)
    alley = rng.integers(1, 41, size=m).astype(np.int16)
    plaque = rng.integers(1, 251, size=m).astype(np.int16)
    pc_mid = rng.choice(_PC_DIGITS, size=(m, 3))
    pc_tail = rng.integers(0, 100_000, size=m)
    postcode = (CITY_PC_PREFIX[city] * 100_000_000 + (pc_mid[:, 0] * 100 + pc_mid[:, 1] * 10 + pc_mid[:, 2])
                * 100_000 + pc_tail).astype(np.int64)
    is_b2b = rng.random(m) < 0.05
    company = np.where(is_b2b, rng.integers(0, len(N.COMPANIES), size=m), -1).astype(np.int16)
    business_type = rng.integers(0, len(N.BUSINESS_TYPES), size=m).astype(np.int8)
    # relationship start: 2016-01-01 .. as_of - 1, skewed towards recent years
    start = (dt.date(2016, 1, 1) - EPOCH).days
    span = as_of_days - 1 - start
    since = (start + (np.sqrt(rng.random(m)) * span)).astype(np.int32)
    since = np.maximum(since, birth + 18 * 365)
    email_style = rng.choice(8, size=m, p=[0.24, 0.1, 0.1, 0.16, 0.06, 0.1, 0.16, 0.08])
    email_num = rng.integers(1, 10_000, size=m)
    domain = rng.choice(len(DOMAINS), size=m, p=DOMAIN_W)
    email2_style = rng.choice(8, size=m)
    email2_num = rng.integers(1, 10_000, size=m)
    domain2 = rng.choice(len(DOMAINS), size=m, p=DOMAIN_W)
    return dict(gender=gender, first=first, first_sp=first_sp, last=last, last_sp=last_sp, birth=birth,
                has_mobile2=has_mobile2, has_email2=has_email2, city=city, street=street, alley=alley,
                plaque=plaque, postcode=postcode, company=company, business_type=business_type, since=since,
                email_style=email_style, email_num=email_num, domain=domain, email2_style=email2_style,
                email2_num=email2_num, domain2=domain2)


def _dedupe_emails(email: np.ndarray, email2: np.ndarray) -> None:
    """Make every address unique, keeping the first holder (in person order) unchanged. In place."""
    n = len(email)
    inter = np.empty(2 * n, dtype=object)
    inter[0::2] = email
    inter[1::2] = email2
    owner = np.repeat(np.arange(n), 2)
    for attempt in range(6):
        s = pd.Series(inter)
        dup = (s.duplicated(keep="first") & s.notna()).to_numpy()
        if not dup.any():
            break
        for j in np.flatnonzero(dup):
            local, _, domain = inter[j].partition("@")
            tag = f"{owner[j] + 1}" if attempt == 0 else f"{owner[j] + 1}{'x' * attempt}{j % 2}"
            inter[j] = f"{local}{tag}@{domain}"
    email[:] = inter[0::2]
    email2[:] = inter[1::2]


def generate_people(n: int, seed: int, as_of: dt.date) -> People:
    """The first `n` persons of the population defined by (seed, as_of)."""
    n_blocks = max(1, -(-n // BLOCK))
    parts = [_block(seed, b, as_of) for b in range(n_blocks)]
    cols = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
    idx = np.arange(n, dtype=np.int64)

    # national id: a bijection of the person index onto 9 digits, then the check digit
    first9 = (idx * 387_420_489 + 100_000_000 + (seed % 1000) * 1_000_003) % 1_000_000_000
    nid = national_ids_from_first9(first9)
    same = nid % 1_111_111_111 == 0  # 0000000000, 1111111111, ... are rejected by every validator
    if same.any():
        nid[same] = national_ids_from_first9((first9[same] + 500_000_000) % 1_000_000_000)
    # mobile: a bijection onto the 14 prefixes x 10^7 numbers
    space = len(MOBILE_PREFIXES) * 10_000_000
    x = (idx * 48_271_009 + 1_234_567 + (seed % 997) * 10_007) % space
    mobile = MOBILE_PREFIXES[x // 10_000_000] * 10_000_000 + x % 10_000_000
    mobile2 = np.where(cols["has_mobile2"], fresh_mobile(idx), 0)

    first_lat = [FIRST_LAT[f][s % len(FIRST_LAT[f])] for f, s in zip(cols["first"], cols["first_sp"], strict=True)]
    last_lat = [LAST_LAT[f][s % len(LAST_LAT[f])] for f, s in zip(cols["last"], cols["last_sp"], strict=True)]
    email = np.array(
        [f"{email_local(f, ln, st, num)}@{DOMAINS[d]}" for f, ln, st, num, d in
         zip(first_lat, last_lat, cols["email_style"], cols["email_num"], cols["domain"], strict=True)], dtype=object)
    email2 = np.array(
        [f"{email_local(f, ln, st, num)}@{DOMAINS[d]}" if has else None for f, ln, st, num, d, has in
         zip(first_lat, last_lat, cols["email2_style"], cols["email2_num"], cols["domain2"], cols["has_email2"],
             strict=True)],
        dtype=object)
    _dedupe_emails(email, email2)

    return People(
        n=n, gender=cols["gender"], first=cols["first"], first_sp=cols["first_sp"], last=cols["last"],
        last_sp=cols["last_sp"], birth=cols["birth"], national_id=nid, mobile=mobile, mobile2=mobile2,
        email=email, email2=email2, city=cols["city"], street=cols["street"], alley=cols["alley"],
        plaque=cols["plaque"], postcode=cols["postcode"], company=cols["company"],
        business_type=cols["business_type"], since=cols["since"],
    )
