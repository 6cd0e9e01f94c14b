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

import pandas as pd

from crm_knowledge.identity.config import IdentityConfig, identifier_column
from crm_knowledge.identity.prepare import names_similar
from crm_knowledge.privacy.pseudonym import pseudonymize

log = logging.getLogger(__name__)

JUNK_COLUMNS = ["identifier_kind", "identifier_value_hash", "distinct_records", "reason"]


def hash_value(value: str, kind: str) -> str:
    """Keyed pseudonym ``"<kind>:<hex HMAC-SHA-256>"`` of an identifier value (see privacy/pseudonym.py).

    The same pseudonym the erasure tombstones use, so lookups can tell a junk value by its pseudonym.
    """
    return pseudonymize(value, kind)


def _denied(kind: str, value: str, config: IdentityConfig) -> bool:
    if value in config.junk.deny.get(kind, ()):
        return True
    return any(p.fullmatch(value) for p in config.junk.deny_patterns.get(kind, ()))


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

    Returns columns identifier_kind, identifier_value (in memory only, never stored),
    identifier_value_hash, distinct_records, reason (deny_list | shared).
    """
    rows = []
    for kind in config.kinds:
        col = identifier_column(kind)
        if col not in prepared.columns:
            continue
        present = prepared.loc[prepared[col].notna(), [col, "rid", "name_tokens"]]
        if present.empty:
            continue
        limit = config.junk.share_limits[kind]
        counts = present.groupby(col, sort=True)["rid"].nunique()
        # deny-list
        for value, n in counts.items():
            if _denied(kind, value, config):
                rows.append((kind, value, hash_value(value, kind), int(n), "deny_list"))
        denied = {r[1] for r in rows if r[0] == kind}
        # data-driven: only values on more records than the limit can be shared by too many persons
        shared = counts[(counts > limit) & ~counts.index.isin(denied)]
        if not shared.empty:
            sub = present[present[col].isin(shared.index)]
            for value, grp in sub.groupby(col, sort=True):
                persons = _dissimilar_persons(list(grp["name_tokens"]), limit, config.junk.name_similarity)
                if persons > limit:
                    rows.append((kind, value, hash_value(value, kind), int(shared[value]), "shared"))
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
