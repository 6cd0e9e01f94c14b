"""Junk identifier values: placeholders that must not link records.

Two sources:

* the configured deny-list (exact values and regular expressions per kind), e.g. ``test@test.com``;
* data-driven: a value of a kind (built-in or declared in config/identity.yml `identifiers`) shared by
  more distinct *name-dissimilar* records than that kind's share limit (a shop's phone typed for every
  walk-in customer, a clerk's own email, ...).

Junk values are nulled before matching and reported by kind, keyed pseudonym of the value
(``crm_knowledge.privacy.pseudonym``: HMAC-SHA-256 with CKP_PSEUDONYM_KEY, so the identity schema holds
no PII and, unlike a plain SHA-256, a stored hash cannot be checked against guessed phone numbers or
national IDs, whose value space is small enough to enumerate) and number of distinct records carrying it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from crm_knowledge.identity.config import IdentityConfig, identifier_column
from crm_knowledge.identity.prepare import names_similar
from crm_knowledge.privacy.pseudonym import load_key, pseudonymize

log = logging.getLogger(__name__)

JUNK_COLUMNS = ["identifier_kind", "identifier_value_hash", "distinct_records", "reason"]


def hash_value(value: str, kind: str) -> str:
    """Keyed pseudonym ``"<kind>:<hex HMAC-SHA-256>"`` of an identifier value (see privacy/pseudonym.py).

    The same pseudonym the erasure tombstones use, so lookups can tell a junk value by its pseudonym.
    """
    return pseudonymize(value, kind)


def hash_values(kinds: Iterable[str], values: Iterable[str]) -> list[str]:
    """:func:`hash_value` of each (kind, value) pair, the key loaded once: loading it reads the settings, which
    took 170 s of a daily run at 1M customers when done for each of its neighbourhood's identifier values."""
    key = load_key()
    return [pseudonymize(v, k, key) for k, v in zip(kinds, values, strict=True)]


def _denied(kind: str, value: str, config: IdentityConfig) -> bool:
    if value in config.junk.deny.get(kind, ()):
        return True
    return any(p.fullmatch(value) for p in config.junk.deny_patterns.get(kind, ()))


def _denied_function(kind: str, config: IdentityConfig):
    """:func:`_denied` of `kind` as a vectorised DuckDB function (Arrow strings in, Arrow booleans out)."""
    import pyarrow as pa

    return lambda values: pa.array([_denied(kind, v, config) for v in values.to_pylist()], pa.bool_())


def _dissimilar_persons(tokens: list[frozenset], limit: int, threshold: float) -> int:
    """Count name-dissimilar records greedily; stops at limit + 1 (all that is needed).

    Records without a name do not count: nothing says they are different persons.
    """
    reps: list[frozenset] = []
    seen: set[frozenset] = set()
    for t in tokens:
        if not t or t in seen:
            continue
        seen.add(t)
        if not any(names_similar(t, r, threshold) for r in reps):
            reps.append(t)
            if len(reps) > limit:
                break
    return len(reps)


def detect_junk(prepared: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """Junk values found in `prepared` (see :func:`crm_knowledge.identity.prepare.prepare`).

    The distinct records per value are counted in DuckDB; the deny-list (Python regular expressions, some with
    back-references SQL engines lack) is applied to each distinct value once, as a vectorised DuckDB function,
    and only the values on more records than the kind's share limit bring their records' names back to Python.

    Returns columns identifier_kind, identifier_value (in memory only, never stored),
    identifier_value_hash, distinct_records, reason (deny_list | shared).
    """
    import numpy as np
    import pyarrow as pa

    from crm_knowledge.identity.duckdb_session import connection

    rows = []
    with connection(config.probabilistic.duckdb_memory_limit) as con:
        for kind in config.kinds:
            col = identifier_column(kind)
            if col not in prepared.columns:
                continue
            con.register("records", pa.table({
                "v": pa.array(prepared[col].to_numpy(dtype=object), type=pa.string(), from_pandas=True),
                "rid": pa.array(prepared["rid"].to_numpy(dtype=np.int64)),
                "pos": pa.array(np.arange(len(prepared), dtype=np.int64))}))
            con.create_function("denied", _denied_function(kind, config), [str], bool, type="arrow")
            limit = config.junk.share_limits[kind]
            found = con.execute("select v, n, deny from (select v, n, denied(v) as deny from (select v, count(distinct "
                                "rid) as n from records where v is not null group by v)) where deny or n > ? "
                                "order by v",
                                [limit]).fetchall()
            con.remove_function("denied")
            rows += [(kind, v, hash_value(v, kind), int(n), "deny_list") for v, n, deny in found if deny]
            # data-driven: only values on more records than the limit can be shared by too many persons
            shared = [(v, int(n)) for v, n, deny in found if not deny]
            if not shared:
                continue
            con.register("shared", pa.table({"v": pa.array([v for v, _ in shared], pa.string())}))
            pos = con.execute("select r.v, r.pos from records r join shared using (v) order by r.v, r.pos").fetchnumpy()
            tokens = prepared["name_tokens"].to_numpy(dtype=object)[np.asarray(pos["pos"], dtype=np.int64)]
            values = np.asarray(pos["v"], dtype=object)
            starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else []
            ends = [*starts[1:], len(values)]
            for (value, n), start, end in zip(shared, starts, ends, strict=True):
                persons = _dissimilar_persons(list(tokens[start:end]), limit, config.junk.name_similarity)
                if persons > limit:
                    rows.append((kind, value, hash_value(value, kind), n, "shared"))
    out = pd.DataFrame(rows, columns=["identifier_kind", "identifier_value", "identifier_value_hash",
                                      "distinct_records", "reason"])
    if len(out):
        log.info("junk identifier values: %s",
                 out.groupby(["identifier_kind", "reason"]).size().to_dict())
    return out


def remove_junk(prepared: pd.DataFrame, junk: pd.DataFrame) -> pd.DataFrame:
    """A copy of `prepared` with junk identifier values nulled (and `junk_kinds` listing what was removed)."""
    out = prepared.copy(deep=False)  # copy-on-write: the columns nulled below are copied, the others shared
    removed = pd.Series([()] * len(out), index=out.index, dtype="object")
    for kind in junk["identifier_kind"].unique():
        col = identifier_column(kind)
        values = set(junk.loc[junk["identifier_kind"] == kind, "identifier_value"])
        if not values or col not in out.columns:
            continue
        hit = out[col].isin(values)
        out.loc[hit, col] = None
        removed[hit] = removed[hit].map(lambda t, k=kind: (*t, k))
    out["junk_kinds"] = removed
    return out
