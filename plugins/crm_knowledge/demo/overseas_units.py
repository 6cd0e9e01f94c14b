"""A second identity test set, unlike the demo: two overseas sibling units in Latin script, heavily corrupted.

The demo (crm_knowledge.demo.generate, noise from messiness.py) is Persian-first and was built alongside the
matcher. This module is independent of it, with its own noise model, in the style of the public
record-linkage benchmarks (FEBRL and the like): English names and addresses, a 7-digit social-security-style
number on only some records, originals and corrupted duplicates.

Two units, configured by configuration alone (their source files: ``config/examples/overseas_units/``):

* ``overseas_bank``: comma CSV, dates ``YYYYMMDD``; an original record for most persons plus 0-3
  corrupted duplicates of it (deduplication-style).
* ``overseas_club``: semicolon CSV with other headers, dates ``dd/mm/yyyy``; a corrupted record for about
  half of the persons, some twice (linkage-style).

Noise per corrupted record: 1-5 modifications (at most 2 on one field) drawn from typos (insert, delete,
substitute, transpose adjacent letters), nicknames and phonetic spellings, swapped given / family name,
swapped address lines, missing values, birth-date typos, day / month swaps and impossible dates (month 53),
postcode and house-number typos, and a mistyped social-security number. Households (a partner or child at
the same address with the same family name) and namesakes make precision matter too.

Ground truth: a CSV of (source_system, source_record_id, person_id), written outside the landing zone.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

GIVEN = {
    "f": ["olivia", "charlotte", "amelia", "isla", "mia", "ava", "grace", "chloe", "emily", "sophie", "ella",
          "ruby", "lily", "zoe", "hannah", "jessica", "sarah", "emma", "lauren", "rebecca", "katherine",
          "elizabeth", "margaret", "jennifer", "michelle", "nicole", "rachel", "samantha", "stephanie", "victoria",
          "alexandra", "natalie", "georgia", "madison", "abigail", "jasmine", "kayla", "brooke", "paige", "tahlia"],
    "m": ["oliver", "william", "jack", "noah", "thomas", "james", "lucas", "henry", "ethan", "samuel", "joshua",
          "benjamin", "daniel", "matthew", "alexander", "joseph", "michael", "robert", "david", "andrew", "christopher",
          "nicholas", "anthony", "jonathan", "timothy", "patrick", "stephen", "edward", "richard", "liam", "cooper",
          "riley", "mitchell", "jayden", "lachlan", "connor", "harrison", "zachary", "dylan", "callum"],
}
NICKNAMES = {"william": "bill", "robert": "bob", "richard": "dick", "elizabeth": "liz", "margaret": "maggie",
             "katherine": "kate", "alexander": "alex", "alexandra": "alex", "christopher": "chris", "nicholas": "nick",
             "jonathan": "jon", "timothy": "tim", "benjamin": "ben", "samuel": "sam", "samantha": "sam",
             "matthew": "matt", "michael": "mike", "joseph": "joe", "anthony": "tony", "edward": "ted",
             "stephanie": "steph", "jennifer": "jen", "rebecca": "becky", "victoria": "vicky", "daniel": "dan",
             "joshua": "josh", "thomas": "tom", "andrew": "andy", "patrick": "paddy", "zachary": "zac"}
SURNAMES = ["smith", "jones", "williams", "brown", "wilson", "taylor", "johnson", "white", "martin", "anderson",
            "thompson", "nguyen", "thomas", "walker", "harris", "lee", "ryan", "robinson", "kelly", "king", "davis",
            "wright", "evans", "roberts", "green", "hall", "wood", "jackson", "clarke", "patel", "khan", "lewis",
            "james", "phillips", "mitchell", "turner", "campbell", "cooper", "edwards", "young", "hughes", "murphy",
            "obrien", "mcdonald", "stewart", "morris", "baker", "cook", "parker", "bell", "watson", "collins", "ward",
            "price", "bennett", "gray", "russell", "hill", "scott", "adams", "webb", "graham", "matthews", "reid",
            "fraser", "gordon", "hamilton", "kennedy", "sullivan", "walsh", "doyle", "burke", "quinn", "fitzgerald",
            "oconnor", "gallagher", "dunn", "henderson", "rossi", "ferrari", "papadopoulos", "kowalski", "schmidt",
            "muller", "jansen", "dubois", "silva", "santos", "chen", "wang", "li", "zhang", "kim", "park", "tran"]
STREETS = ["george", "victoria", "king", "queen", "church", "station", "park", "high", "elizabeth", "william",
           "albert", "railway", "bridge", "mill", "river", "hill", "forest", "ocean", "beach", "wattle", "banksia",
           "acacia", "jacaranda", "eucalyptus", "kurrajong", "murray", "darling", "hume", "flinders", "lonsdale",
           "collins", "bourke", "spencer", "swanston", "elizabeth bay", "macquarie", "pitt", "castlereagh", "oxford",
           "bondi", "coogee", "manly", "harbour", "botany", "parramatta", "liverpool", "campbell", "cooper"]
STREET_TYPES = ["street", "road", "avenue", "place", "crescent", "drive", "court", "lane", "parade", "close"]
SUBURB_PARTS = ["north", "south", "east", "west", "mount", "port", "glen", "lake", "bay", "point"]
SUBURB_BASES = ["ryde", "kellyville", "epping", "hornsby", "penrith", "blacktown", "bankstown", "cronulla", "maroubra",
                "randwick", "kogarah", "hurstville", "strathfield", "ashfield", "marrickville", "newtown", "glebe",
                "balmain", "mosman", "chatswood", "gordon", "pymble", "turramurra", "wahroonga", "berowra", "dural",
                "castle hill", "baulkham hills", "seven hills", "quakers hill", "rouse hill", "camden", "campbelltown",
                "ingleburn", "minto", "narellan", "picton", "bowral", "mittagong", "moss vale", "goulburn", "yass",
                "queanbeyan", "belconnen", "tuggeranong", "woden", "gungahlin", "fyshwick", "kingston", "braddon"]
STATES = ["nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"]
UNIT_PREFIXES = ["unit", "flat", "apartment", "level", "suite"]
BUILDINGS = ["the grange", "harbour view", "parkside", "riverside", "rosewood", "kingsgate", "wentworth court"]

PHONETIC = [("ph", "f"), ("f", "ph"), ("ck", "k"), ("ie", "y"), ("y", "ie"), ("ll", "l"), ("tt", "t"), ("ou", "ow"),
            ("ae", "e"), ("c", "k"), ("z", "s"), ("s", "z"), ("ei", "ie"), ("an", "en"), ("mm", "m")]
KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"

BANK_HEADER = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
               "state", "date_of_birth", "soc_sec_id"]
CLUB_HEADER = ["MemberNo", "FirstName", "LastName", "HouseNo", "Street", "Unit", "Town", "PostCode", "State", "DOB",
               "SSN"]
FIELDS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
          "date_of_birth", "soc_sec_id"]


@dataclass(frozen=True)
class OverseasSummary:
    persons: int
    records: dict[str, int]
    invalid_birth_dates: int
    ground_truth: Path


def _person(rng: random.Random, pid: int, suburbs: list[tuple[str, str, str]], ssns: set[str],
            household: dict | None) -> dict:
    sex = rng.choice("fm")
    given = _zipf_choice(rng, GIVEN[sex])
    if household is not None:  # a partner or child: same family name and address, another given name
        surname, address = household["surname"], household["address"]
        while given == household["given"]:
            given = _zipf_choice(rng, GIVEN[sex])
    else:
        surname = _zipf_choice(rng, SURNAMES)
        suburb, postcode, state = rng.choice(suburbs)
        has_unit = rng.random() < 0.3
        address = {
            "street_number": str(rng.randint(1, 250)),
            "address_1": f"{rng.choice(STREETS)} {rng.choice(STREET_TYPES)}",
            "address_2": (f"{rng.choice(UNIT_PREFIXES)} {rng.randint(1, 40)}" if has_unit
                          else rng.choice(BUILDINGS) if rng.random() < 0.15 else ""),
            "suburb": suburb, "postcode": postcode, "state": state,
        }
    while True:
        ssn = f"{rng.randint(1_000_000, 9_999_999)}"
        if ssn not in ssns:
            ssns.add(ssn)
            break
    year = rng.randint(1930, 2005)
    return {"person_id": f"O{pid:06d}", "given_name": given, "surname": surname, **address,
            "date_of_birth": (year, rng.randint(1, 12), rng.randint(1, 28)), "soc_sec_id": ssn}


def _zipf_choice(rng: random.Random, values: list[str]) -> str:
    """Skewed choice: early names are common (term frequencies matter), late ones rare."""
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(values))]
    return rng.choices(values, weights)[0]


# --- noise model ------------------------------------------------------------------------------------


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 2:
        return text + rng.choice(KEYBOARD)
    i = rng.randrange(len(text))
    op = rng.choice(("insert", "delete", "substitute", "transpose"))
    if op == "insert":
        return text[:i] + rng.choice(KEYBOARD) + text[i:]
    if op == "delete":
        return text[:i] + text[i + 1:]
    if op == "substitute":
        return text[:i] + rng.choice(KEYBOARD) + text[i + 1:]
    i = min(i, len(text) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def _digit_typo(rng: random.Random, digits: str) -> str:
    if len(digits) < 2:
        return str(rng.randint(0, 9))
    i = rng.randrange(len(digits))
    if rng.random() < 0.5 and i < len(digits) - 1 and digits[i] != digits[i + 1]:
        return digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]
    return digits[:i] + str((int(digits[i]) + rng.randint(1, 9)) % 10) + digits[i + 1:]


def _phonetic(rng: random.Random, text: str) -> str:
    options = [(a, b) for a, b in PHONETIC if a in text]
    if not options:
        return _typo(rng, text)
    a, b = rng.choice(options)
    return text.replace(a, b, 1)


def corrupt(rng: random.Random, rec: dict, max_mods: int = 5) -> dict:
    """A corrupted copy of `rec` (field -> value; dates as (y, m, d) or an already broken string)."""
    out = dict(rec)
    n = rng.choices(range(1, max_mods + 1), [0.25, 0.3, 0.25, 0.12, 0.08][:max_mods])[0]
    per_field: dict[str, int] = {}
    for _ in range(n):
        mod = rng.choices(
            ["typo", "phonetic", "nickname", "swap_names", "swap_address", "missing", "dob", "postcode",
             "street_number", "ssn"],
            [0.30, 0.08, 0.05, 0.05, 0.04, 0.22, 0.10, 0.06, 0.04, 0.06])[0]
        if mod == "typo":
            f = rng.choice(["given_name", "surname", "address_1", "suburb", "address_2", "given_name", "surname"])
        elif mod in ("phonetic", "nickname"):
            f = rng.choice(["given_name", "surname"]) if mod == "phonetic" else "given_name"
        elif mod == "missing":
            f = rng.choice(["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
                            "state", "date_of_birth", "soc_sec_id"])
        elif mod == "dob":
            f = "date_of_birth"
        elif mod == "postcode":
            f = "postcode"
        elif mod == "street_number":
            f = "street_number"
        elif mod == "ssn":
            f = "soc_sec_id"
        else:
            f = mod
        if per_field.get(f, 0) >= 2:
            continue
        per_field[f] = per_field.get(f, 0) + 1
        v = out.get(f)
        if mod == "typo" and v:
            out[f] = _typo(rng, v)
        elif mod == "phonetic" and v:
            out[f] = _phonetic(rng, v)
        elif mod == "nickname" and v:
            out[f] = NICKNAMES.get(v, _phonetic(rng, v))
        elif mod == "swap_names":
            out["given_name"], out["surname"] = out["surname"], out["given_name"]
        elif mod == "swap_address":
            out["address_1"], out["address_2"] = out["address_2"], out["address_1"]
        elif mod == "missing":
            out[f] = "" if f != "date_of_birth" else None
        elif mod == "dob" and isinstance(v, tuple):
            y, m, d = v
            kind = rng.choices(["day", "swap", "invalid", "year"], [0.45, 0.2, 0.1, 0.25])[0]
            if kind == "swap" and d <= 12 and d != m:
                out[f] = (y, d, m)
            elif kind == "invalid":
                out[f] = f"{y:04d}{rng.randint(13, 59):02d}{d:02d}"  # an impossible month, e.g. 19505309
            elif kind == "year":
                out[f] = (int(_digit_typo(rng, f"{y:04d}"[2:]) or 0) + y // 100 * 100, m, d)
            else:
                out[f] = (y, m, max(1, min(28, int(_digit_typo(rng, f"{d:02d}")))))
        elif mod in ("postcode", "street_number", "ssn") and v:
            out[f] = _digit_typo(rng, v)
    return out


def _date_text(value, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # broken by the noise: written as typed
        if fmt == "ymd" or len(value) != 8:
            return value
        return f"{value[6:8]}/{value[4:6]}/{value[0:4]}"
    y, m, d = value
    return f"{y:04d}{m:02d}{d:02d}" if fmt == "ymd" else f"{d:02d}/{m:02d}/{y:04d}"


def _is_valid_date(value) -> bool:
    import datetime as dt

    if value is None:
        return True
    try:
        if isinstance(value, str):
            dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
        else:
            dt.date(*value)
        return True
    except ValueError:
        return False


def generate(landing_dir: Path, truth_file: Path, persons: int = 1000, seed: int = 2024,
             ssn_share: float = 0.6) -> OverseasSummary:
    """Write both units' files under `landing_dir` (``siblings/overseas_bank/``, ``siblings/overseas_club/``)
    and the ground truth to `truth_file` (outside the landing zone); returns counts."""
    rng = random.Random(seed)
    suburbs = []
    for _ in range(120):
        name = rng.choice(SUBURB_BASES)
        if rng.random() < 0.3:
            name = f"{rng.choice(SUBURB_PARTS)} {name}"
        suburbs.append((name, f"{rng.randint(2000, 2999)}", rng.choice(STATES[:3])))
    ssns: set[str] = set()
    people: list[dict] = []
    while len(people) < persons:
        head = _person(rng, len(people), suburbs, ssns, None)
        people.append(head)
        if rng.random() < 0.15 and len(people) < persons:  # a partner / child in the same household
            people.append(_person(rng, len(people), suburbs, ssns, {
                "surname": head["surname"], "given": head["given_name"],
                "address": {k: head[k] for k in ("street_number", "address_1", "address_2", "suburb", "postcode",
                                                 "state")}}))

    bank_rows, club_rows, truth = [], [], []
    invalid = 0

    def with_ssn(rec: dict) -> dict:
        # the number is on only some records (each record independently)
        return rec if rng.random() < ssn_share else {**rec, "soc_sec_id": ""}

    for p in people:
        base = {k: p[k] for k in FIELDS}
        if rng.random() < 0.85:
            n_dups = rng.choices([0, 1, 2, 3], [0.45, 0.3, 0.17, 0.08])[0]
            org = with_ssn(corrupt(rng, base, max_mods=1) if rng.random() < 0.2 else dict(base))
            recs = [("org", org)] + [(f"dup-{i}", with_ssn(corrupt(rng, base))) for i in range(n_dups)]
            for tag, rec in recs:
                rid = f"rec-{p['person_id'][1:]}-{tag}"
                bank_rows.append([rid, *(_date_text(rec[f], "ymd") if f == "date_of_birth" else rec[f]
                                         for f in FIELDS)])
                truth.append(("sibling:overseas_bank", rid, p["person_id"]))
                invalid += not _is_valid_date(rec["date_of_birth"])
        if rng.random() < 0.5:
            for i in range(rng.choices([1, 2], [0.8, 0.2])[0]):
                rec = with_ssn(corrupt(rng, base))
                rid = f"M{rng.randint(10, 99)}{p['person_id'][1:]}{i}"
                club_rows.append([rid, *(_date_text(rec[f], "dmy") if f == "date_of_birth" else rec[f]
                                         for f in FIELDS)])
                truth.append(("sibling:overseas_club", rid, p["person_id"]))
                invalid += not _is_valid_date(rec["date_of_birth"])

    rng.shuffle(bank_rows)
    rng.shuffle(club_rows)
    bank = landing_dir / "siblings" / "overseas_bank" / "customers.csv"
    club = landing_dir / "siblings" / "overseas_club" / "members.csv"
    for path, header, rows, delim in ((bank, BANK_HEADER, bank_rows, ","), (club, CLUB_HEADER, club_rows, ";")):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter=delim)
            w.writerow(header)
            w.writerows(rows)
        path.chmod(0o600)  # personal-looking data: owner only
    gt = truth_file
    gt.parent.mkdir(parents=True, exist_ok=True)
    with open(gt, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_system", "source_record_id", "person_id"])
        w.writerows(truth)
    gt.chmod(0o600)
    return OverseasSummary(persons=len(people), records={"overseas_bank": len(bank_rows),
                                                        "overseas_club": len(club_rows)},
                           invalid_birth_dates=invalid, ground_truth=gt)
