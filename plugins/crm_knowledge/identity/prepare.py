"""Preparation of identity candidates: name keys, record keys, usable identifiers.

The prepared frame has one row per candidate, a dense integer `rid` (0..n-1, the row position),
and script-neutral name keys built with :func:`crm_knowledge.normalize.romanize`, so "محمد رضایی" and
"Mohammad Rezaei" get the same keys.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from crm_knowledge.identity.config import IdentifierKind, IdentityConfig
from crm_knowledge.normalize import romanize
from crm_knowledge.normalize.persian import to_ascii_digits

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = [
    "source_system", "source_record_id", "first_name_norm", "last_name_norm", "full_name_norm", "email_norm",
    "phone_e164", "national_id_valid", "birth_date", "postcode", "city_norm", "street_norm", "house_number",
    "address_line2_norm", "customer_ref", "seen_at",
]
#: Candidate columns carrying declared identifier kinds are named ``id_<kind>`` (optional: a kind no source
#: maps has no column; see crm_knowledge.identity.store.read_candidates).
IDENTIFIER_PREFIX = "id_"
KEY = ["source_system", "source_record_id"]


def name_key(value: object) -> str | None:
    """Script-neutral key of one name (:func:`crm_knowledge.normalize.romanize`, spaces removed), or None."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    if not text:
        return None
    key = romanize(text)
    if key is None:
        return None
    key = re.sub(r"\s+", "", str(key))
    return key or None


def _present(v: object) -> bool:
    if v is None or v is pd.NA:
        return False
    if isinstance(v, float) and np.isnan(v):
        return False
    return str(v).strip() != ""


def per_distinct(s: pd.Series, fn) -> pd.Series:
    """`fn` (a list of distinct present values -> a list of results) applied once per distinct value of `s`, spread
    back to an object series: None where `s` is missing, equal values sharing one result object. Values repeat
    (cities, names, postcodes, a customer's records): at millions of records this is what keeps preparation fast
    and its memory to a pointer per cell."""
    codes, uniques = pd.factorize(s)
    mapped = np.empty(len(uniques) + 1, dtype=object)
    mapped[:-1] = fn(list(np.asarray(uniques, dtype=object)))
    mapped[-1] = None  # code -1: missing
    return pd.Series(mapped[codes], index=s.index, dtype="object")


def _clean_text(s: pd.Series) -> pd.Series:
    """Object series of stripped str or None (NaN, NA, empty -> None), from object or Arrow-backed strings."""
    return per_distinct(s, lambda values: [str(v).strip() or None for v in values])


def _obj(values) -> pd.Series:
    return pd.Series([None if not _present(v) else v for v in values], dtype="object")


def jaro_winkler(a: str, b: str, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity of two short strings (names keys)."""
    if a == b:
        return 1.0
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    window = max(max(la, lb) // 2 - 1, 0)
    ma, mb = [False] * la, [False] * lb
    matches = 0
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(lb, i + window + 1)):
            if not mb[j] and b[j] == ch:
                ma[i] = mb[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    bs = [b[j] for j in range(lb) if mb[j]]
    a_matched = [a[i] for i in range(la) if ma[i]]
    transpositions = sum(1 for x, y in zip(a_matched, bs, strict=True) if x != y) / 2
    jaro = (matches / la + matches / lb + (matches - transpositions) / matches) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


def names_similar(tokens_a: frozenset, tokens_b: frozenset, threshold: float) -> bool:
    """Whether two records' names look like the same person (or family): any shared or near token."""
    if tokens_a & tokens_b:
        return True
    return any(jaro_winkler(x, y) >= threshold for x in tokens_a for y in tokens_b)


# --- preparation -------------------------------------------------------------------------------


def _address_key(values: pd.Series) -> pd.Series:
    """Lower case, letters and digits only (any script, ASCII digits): "12-B" and "12b" agree."""
    return per_distinct(values, lambda distinct: [
        "".join(ch for ch in (to_ascii_digits(str(v)) or "").lower() if ch.isalnum()) or None for v in distinct])


def normalize_identifier(values: pd.Series, kind: IdentifierKind) -> pd.Series:
    """Declared identifier values normalised as the kind says (:meth:`IdentifierKind.normalize_value`);
    values failing its pattern become None. Each distinct value is normalised once."""
    return per_distinct(values, lambda distinct: [kind.normalize_value(v) for v in distinct])


def _distinct_rows(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, list[tuple]]:
    """(codes, distinct tuples) of the rows of `columns` (object columns, None for missing), distinct rows in order
    of first appearance: what ``pd.factorize`` of the row tuples gives, without a tuple per row."""
    combined = np.zeros(len(df), dtype=np.int64)
    for c in columns:
        col_codes, _ = pd.factorize(df[c])
        width = int(col_codes.max(initial=-1)) + 2
        combined, _ = pd.factorize(combined * width + (col_codes + 1))
        combined = combined.astype(np.int64)
    firsts = np.unique(combined, return_index=True)[1] if len(combined) else np.array([], dtype=np.int64)
    rows = df[columns].to_numpy(dtype=object)[firsts]
    return combined, [tuple(r) for r in rows]


def prepare(candidates: pd.DataFrame, config: IdentityConfig | None = None) -> pd.DataFrame:
    """Validate the candidate frame and add derived columns used by every matching step.

    Added: rid, first_key, last_key, first_text / last_text (the normalised name the key was built from,
    spaces removed: exact comparison within one script), name_tokens (frozenset of romanised tokens), name_profile
    (:class:`crm_knowledge.identity.names.NameProfile`), birth_date (ISO text),
    birth_year, postcode, postcode_prefix (5), city_key, street_key, house_number, address_line2_key, email,
    phone, national_id, cref_key, has_name, and ``id_<kind>`` for every declared identifier kind of `config`
    (normalised and validated by :func:`normalize_identifier`; None when no source maps the kind).
    """
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise ValueError(f"identity candidates lack column(s) {missing}")
    declared = config.declared_identifiers if config is not None else ()
    df = candidates[CANDIDATE_COLUMNS].copy().reset_index(drop=True)
    for kind in declared:
        raw = (candidates[kind.column].reset_index(drop=True) if kind.column in candidates.columns
               else pd.Series([None] * len(df), dtype="object"))
        df[kind.column] = normalize_identifier(_clean_text(raw), kind)
    for c in CANDIDATE_COLUMNS:
        if c not in ("birth_date", "seen_at"):
            df[c] = _clean_text(df[c])
    dup = df.duplicated(KEY, keep=False)
    if dup.any():
        raise ValueError(f"identity candidates are not unique on {KEY}: "
                         f"{df.loc[dup, KEY].head(5).to_dict('records')}")
    if df["source_system"].isna().any() or df["source_record_id"].isna().any():
        raise ValueError("identity candidates have null source_system or source_record_id")
    df["rid"] = np.arange(len(df), dtype=np.int64)

    cache: dict[str, str | None] = {}

    def key(v):
        if v is None:
            return None
        if v not in cache:
            cache[v] = name_key(v)
        return cache[v]

    def text(v: str | None, k: str | None) -> str | None:
        return re.sub(r"\s+", "", str(v)).lower() or None if (v is not None and k) else None

    # Names repeat (a customer's records, common names): derive everything once per distinct
    # (first, last, full) triple and spread it by code, so equal names also share their objects in memory.
    from crm_knowledge.identity.names import build_profile

    codes, distinct = _distinct_rows(df, ["first_name_norm", "last_name_norm", "full_name_norm"])
    firsts, lasts, tokens, ftexts, ltexts, profiles = ([None] * len(distinct) for _ in range(6))
    for i, (f, la, full) in enumerate(distinct):
        fk, lk = key(f), key(la)
        ft, lt = text(f, fk), text(la, lk)
        toks = {k for v in (f, la, full) if v is not None for k in map(key, str(v).split()) if k}
        if fk is None and lk is None and full is not None:
            parts = str(full).split()
            if parts:
                fk = key(parts[0])
                ft = text(parts[0], fk)
                lk = key(" ".join(parts[1:])) if len(parts) > 1 else None
                lt = text(" ".join(parts[1:]), lk) if len(parts) > 1 else None
        for k in (fk, lk):
            if k:
                toks.add(k)
        firsts[i], lasts[i], ftexts[i], ltexts[i] = fk, lk, ft, lt
        tokens[i] = frozenset(toks)
        profiles[i] = build_profile(f, la, full, key)

    def spread(values: list) -> pd.Series:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return pd.Series(arr[codes] if len(codes) else arr[:0], dtype="object")

    df["name_profile"] = spread(profiles)
    df["first_key"] = spread(firsts)
    df["last_key"] = spread(lasts)
    df["first_text"] = spread(ftexts)
    df["last_text"] = spread(ltexts)
    df["name_tokens"] = spread(tokens)
    df["has_name"] = df["first_key"].notna() | df["last_key"].notna()

    def iso(fmt: str):
        return lambda values: list(_obj(pd.to_datetime(pd.Series(values, dtype="object"), errors="coerce")
                                        .dt.strftime(fmt)))

    raw_birth_date = df["birth_date"]
    df["birth_date"] = per_distinct(raw_birth_date, iso("%Y-%m-%d"))
    df["birth_year"] = per_distinct(raw_birth_date, iso("%Y"))
    df["postcode"] = per_distinct(df["postcode"], lambda vs: [re.sub(r"[\s-]", "", v) or None for v in vs])
    df["postcode_prefix"] = per_distinct(df["postcode"], lambda vs: [v[:5] if len(v) >= 5 else None for v in vs])
    df["city_key"] = per_distinct(df["city_norm"], lambda vs: [key(v) for v in vs])
    df["street_key"] = _address_key(df["street_norm"])
    df["house_number"] = _address_key(df["house_number"])
    df["address_line2_key"] = _address_key(df["address_line2_norm"])
    df["email"] = per_distinct(df["email_norm"], lambda vs: [v.lower() for v in vs])
    df["phone"] = df["phone_e164"]  # both cleaned: str or None
    df["national_id"] = df["national_id_valid"]
    # customer_ref key: a record referring to orders customer X, and orders record X itself
    is_orders = df["source_system"] == "orders"
    df["cref_key"] = pd.Series(np.where(is_orders.to_numpy(dtype=bool), df["source_record_id"].to_numpy(dtype=object),
                                        df["customer_ref"].to_numpy(dtype=object)), dtype="object")
    df["seen_at"] = pd.to_datetime(df["seen_at"], errors="coerce", utc=True)
    return df
