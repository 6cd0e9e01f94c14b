"""Render source records of true persons: the same person, typed differently by each source.

`render(people, pidx, rng, profile, fresh)` returns the identity columns of one record per entry of
`pidx` (a person index per record) as Python lists, with None for a missing value. Decisions are drawn
as numpy masks; the string work runs only over the affected records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crm_knowledge.demo import names_fa as N
from crm_knowledge.demo.messiness import (
    NO_DAY,
    PHONE_FORMATS,
    arabic_letters,
    format_mobile,
    format_national_id,
    latin_case,
    messy_email,
    to_persian_digits,
    typo,
)
from crm_knowledge.demo.people import (
    DOMAIN_W,
    DOMAINS,
    FIRST_FA,
    FIRST_LAT,
    FIRST_NICK_FA,
    FIRST_NICK_LAT,
    LAST_FA,
    LAST_LAT,
    People,
    fresh_mobile,
)

CITY_FA = [c[0] for c in N.CITIES]
CITY_LAT = [c[1] for c in N.CITIES]
PROV_FA = [c[2] for c in N.CITIES]
PROV_LAT = [c[3] for c in N.CITIES]
STREET_FA = [s[0] for s in N.STREETS]
STREET_LAT = [s[1] for s in N.STREETS]


@dataclass(frozen=True)
class Profile:
    """How one source types a person. Probabilities are per record."""

    latin: float = 0.2            # name written in Latin script
    arabic: float = 0.12          # Persian-script text with Arabic ي/ك
    typo: float = 0.03            # per name part: one edit
    swap: float = 0.015           # first and last name swapped
    nick: float = 0.0             # nickname instead of the first name (where one exists)
    upper: float = 0.08           # Latin name in UPPER case
    lower: float = 0.05           # Latin name in lower case
    email: float = 0.8            # presence
    phone: float = 0.85
    nid: float = 0.5
    dob: float = 0.8
    gender: float = 0.9
    street: float = 0.6
    city: float = 0.8
    postcode: float = 0.5
    email_messy: float = 0.12     # capitalised / upper / spaces
    phone_formats: tuple[float, ...] = (0.15, 0.15, 0.4, 0.1, 0.08, 0.07, 0.05)
    nid_formats: tuple[float, ...] = (0.85, 0.08, 0.05, 0.02)  # plain, persian digits, dashed, zeros lost
    digits_fa: float = 0.1        # Persian digits in street / postcode (Persian-script records)
    alt: float = 0.5              # use the newer email/phone when the person has one
    weak: float = 0.05            # no shared strong identifier: linkable by name + birth date + address only
    weak_fresh: float = 1.0       # ... of those, carrying a fresh (record-only) email or phone
    noid: float = 0.005           # no usable identifier at all, a name only
    addr_flip: float = 0.2        # address in the other script than the name
    can_weak: bool = True         # the source carries birth date + postcode/city, so weak is matchable
    extra: dict = field(default_factory=dict)


@dataclass
class Fresh:
    """Global counter of fresh (record-only) emails and phone numbers; persisted between runs."""

    k: int = 0

    def take(self, n: int) -> np.ndarray:
        out = np.arange(self.k, self.k + n, dtype=np.int64)
        self.k += n
        return out


@dataclass
class Rendered:
    first: list
    last: list
    full: list
    email: list
    phone: list
    national_id: list
    birth: np.ndarray          # int32 days or NO_DAY
    gender: list
    street: list
    city: list
    province: list
    postcode: list
    latin: np.ndarray          # bool
    weak: np.ndarray           # bool
    noid: np.ndarray           # bool

    def __len__(self) -> int:
        return len(self.first)


def _mask(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return rng.random(n) < p


def render(people: People, pidx: np.ndarray, rng: np.random.Generator, prof: Profile, fresh: Fresh) -> Rendered:
    n = len(pidx)
    first_i = people.first[pidx]
    last_i = people.last[pidx]
    latin = _mask(rng, n, prof.latin)
    sp_f = rng.choice(4, size=n, p=[0.62, 0.25, 0.09, 0.04])
    sp_l = rng.choice(4, size=n, p=[0.62, 0.25, 0.09, 0.04])
    # most records use the person's own spelling; some a variant
    own = rng.random(n) < 0.6
    sp_f = np.where(own, people.first_sp[pidx], sp_f)
    sp_l = np.where(own, people.last_sp[pidx], sp_l)
    nick = _mask(rng, n, prof.nick) & (FIRST_NICK_FA[first_i] != None)  # noqa: E711

    first = [
        (FIRST_NICK_LAT[f] if nk else FIRST_LAT[f][s % len(FIRST_LAT[f])]) if lt
        else (FIRST_NICK_FA[f] if nk else FIRST_FA[f])
        for f, s, lt, nk in zip(first_i, sp_f, latin, nick, strict=True)
    ]
    last = [LAST_LAT[g][s % len(LAST_LAT[g])] if lt else LAST_FA[g]
            for g, s, lt in zip(last_i, sp_l, latin, strict=True)]

    arab = _mask(rng, n, prof.arabic) & ~latin
    for j in np.flatnonzero(arab):
        first[j] = arabic_letters(first[j])
        last[j] = arabic_letters(last[j])
    case = rng.choice(3, size=n, p=[1 - prof.upper - prof.lower, prof.upper, prof.lower])
    for j in np.flatnonzero(latin & (case > 0)):
        first[j] = latin_case(first[j], int(case[j]))
        last[j] = latin_case(last[j], int(case[j]))
    for j in np.flatnonzero(_mask(rng, n, prof.typo)):
        first[j] = typo(first[j], rng)
    for j in np.flatnonzero(_mask(rng, n, prof.typo)):
        last[j] = typo(last[j], rng)
    for j in np.flatnonzero(_mask(rng, n, prof.swap)):
        first[j], last[j] = last[j], first[j]
    full = [f"{a} {b}" for a, b in zip(first, last, strict=True)]

    # --- emails ---------------------------------------------------------------------------------
    e1 = people.email[pidx]
    e2 = people.email2[pidx]
    use_alt = _mask(rng, n, prof.alt) & (e2 != None)  # noqa: E711
    email_v = np.where(use_alt, e2, e1)
    has_email = _mask(rng, n, prof.email)
    style = np.where(_mask(rng, n, prof.email_messy), rng.integers(1, 5, size=n), 0)
    email = [messy_email(e, int(s)) if h else None for e, s, h in zip(email_v, style, has_email, strict=True)]

    # --- phones ---------------------------------------------------------------------------------
    m1 = people.mobile[pidx]
    m2 = people.mobile2[pidx]
    use_alt_m = _mask(rng, n, prof.alt) & (m2 > 0)
    mob = np.where(use_alt_m, m2, m1)
    has_phone = _mask(rng, n, prof.phone)
    pw = np.array(prof.phone_formats, dtype=float)
    fmt = rng.choice(len(PHONE_FORMATS), size=n, p=pw / pw.sum())
    phone = [format_mobile(int(v), PHONE_FORMATS[f]) if h else None
             for v, f, h in zip(mob, fmt, has_phone, strict=True)]

    # --- national id ----------------------------------------------------------------------------
    has_nid = _mask(rng, n, prof.nid)
    nw = np.array(prof.nid_formats, dtype=float)
    nfmt = rng.choice(len(nw), size=n, p=nw / nw.sum())
    nids = people.national_id[pidx]
    nid = [format_national_id(int(v), int(f)) if h else None for v, f, h in zip(nids, nfmt, has_nid, strict=True)]

    # --- birth date, gender, address ------------------------------------------------------------
    birth = np.where(_mask(rng, n, prof.dob), people.birth[pidx], NO_DAY).astype(np.int32)
    g = people.gender[pidx]
    has_gender = _mask(rng, n, prof.gender)
    gender = [("f" if x else "m") if h else None for x, h in zip(g, has_gender, strict=True)]
    city_i = people.city[pidx]
    addr_latin = np.where(rng.random(n) < 1 - prof.addr_flip, latin, ~latin)
    city_sp = rng.integers(0, 3, size=n)
    digits_fa = _mask(rng, n, prof.digits_fa) & ~addr_latin
    has_street = _mask(rng, n, prof.street)
    st_i = people.street[pidx]
    alley = people.alley[pidx]
    plaque = people.plaque[pidx]
    street_style = rng.integers(0, 3, size=n)
    street: list = [None] * n
    for j in np.flatnonzero(has_street):
        if addr_latin[j]:
            s = STREET_LAT[st_i[j]]
            street[j] = (f"{s} St., Alley {alley[j]}, No. {plaque[j]}" if street_style[j] == 0
                         else f"No. {plaque[j]}, {alley[j]}th Alley, {s} Street" if street_style[j] == 1
                         else f"{s} Ave, alley {alley[j]}, no {plaque[j]}")
        else:
            s = STREET_FA[st_i[j]]
            t = (f"خیابان {s}، کوچه {alley[j]}، پلاک {plaque[j]}" if street_style[j] == 0
                 else f"خ {s} ک {alley[j]} پ {plaque[j]}" if street_style[j] == 1
                 else f"{s}، کوچه {alley[j]}، پلاک {plaque[j]}")
            street[j] = to_persian_digits(t) if digits_fa[j] else t
    has_city = _mask(rng, n, prof.city)
    city = [
        (CITY_LAT[c][s % len(CITY_LAT[c])] if al else CITY_FA[c]) if h else None
        for c, s, al, h in zip(city_i, city_sp, addr_latin, has_city, strict=True)
    ]
    province = [(PROV_LAT[c] if al else PROV_FA[c]) if h else None
                for c, al, h in zip(city_i, addr_latin, has_city, strict=True)]
    has_pc = _mask(rng, n, prof.postcode)
    pc_dash = rng.random(n) < 0.15
    pcs = people.postcode[pidx]
    postcode: list = [None] * n
    for j in np.flatnonzero(has_pc):
        s = f"{pcs[j]:010d}"
        s = f"{s[:5]}-{s[5:]}" if pc_dash[j] else s
        postcode[j] = to_persian_digits(s) if digits_fa[j] else s
    arab_addr = arab & ~addr_latin
    for j in np.flatnonzero(arab_addr):
        if street[j]:
            street[j] = arabic_letters(street[j])
        if city[j]:
            city[j] = arabic_letters(city[j])

    # --- weak records: no shared strong identifier; name + birth date + address agree ------------
    weak = _mask(rng, n, prof.weak) if prof.can_weak else np.zeros(n, dtype=bool)
    wj = np.flatnonzero(weak)
    if len(wj):
        give = rng.random(len(wj)) < prof.weak_fresh
        ks = fresh.take(len(wj))
        fresh_mob = fresh_mobile(ks + 30_000_000)
        fresh_dom = rng.choice(len(DOMAINS), size=len(wj), p=DOMAIN_W)
        for t, j in enumerate(wj):
            email[j] = phone[j] = nid[j] = None
            if give[t]:
                p = int(pidx[j])
                fl = FIRST_LAT[people.first[p]][0].lower().replace(" ", "")
                ll = LAST_LAT[people.last[p]][0].lower().replace(" ", "")
                if prof.email > 0 and (t % 2 == 0 or prof.phone == 0):
                    email[j] = f"{fl}.{ll}.{int(ks[t])}@{DOMAINS[fresh_dom[t]]}"
                elif prof.phone > 0:
                    phone[j] = format_mobile(int(fresh_mob[t]), PHONE_FORMATS[int(fmt[j])])
            if birth[j] == NO_DAY:
                birth[j] = people.birth[pidx[j]]
            if prof.postcode > 0 and postcode[j] is None:
                postcode[j] = f"{pcs[j]:010d}"
            if city[j] is None and prof.city > 0:
                c = city_i[j]
                city[j] = CITY_LAT[c][0] if addr_latin[j] else CITY_FA[c]
                province[j] = PROV_LAT[c] if addr_latin[j] else PROV_FA[c]

    # every record that is not deliberately unidentifiable carries at least an email or a phone
    for j in np.flatnonzero(~weak):
        if email[j] is None and phone[j] is None:
            if prof.email > 0:
                email[j] = email_v[j]
            elif prof.phone > 0:
                phone[j] = format_mobile(int(mob[j]), PHONE_FORMATS[int(fmt[j])])

    # --- no usable identifier at all: a name, nothing else ---------------------------------------
    noid = _mask(rng, n, prof.noid) & ~weak
    for j in np.flatnonzero(noid):
        email[j] = phone[j] = nid[j] = street[j] = postcode[j] = None
        birth[j] = NO_DAY

    return Rendered(first=first, last=last, full=full, email=email, phone=phone, national_id=nid, birth=birth,
                    gender=gender, street=street, city=city, province=province, postcode=postcode,
                    latin=latin, weak=weak, noid=noid)
