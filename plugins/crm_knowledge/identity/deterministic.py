"""Deterministic edges on strong identifiers (after junk removal).

Rules (`match_rule`, score 1.0): ``national_id`` (same valid national id), ``customer_ref`` (a form or
contact referring to orders customer X is linked to record ('orders', X); records referring to the same X
are linked too), ``email`` and ``phone`` (same value, guarded by first-name compatibility because
families share them).

Records sharing a value are linked as a star (every record to one centre), which gives the same
connected components as all pairs with O(n) edges.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from crm_knowledge.identity.config import IdentityConfig
from crm_knowledge.identity.junk import PREPARED_COLUMNS
from crm_knowledge.identity.prepare import names_compatible

log = logging.getLogger(__name__)

EDGE_COLUMNS = ["rid_l", "rid_r", "match_rule", "match_score"]
#: strongest first; when several rules link the same pair the first is reported
RULE_PRIORITY = ["national_id", "customer_ref", "email", "phone"]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"rid_l": pd.Series(dtype="int64"), "rid_r": pd.Series(dtype="int64"),
                         "match_rule": pd.Series(dtype="object"), "match_score": pd.Series(dtype="float64")})


def _star(keys: pd.Series, rids: pd.Series, rule: str, centre_first: pd.Series | None = None) -> pd.DataFrame:
    """Star edges within groups of equal `keys`; the centre is the first row after sorting."""
    frame = pd.DataFrame({"k": keys.values, "rid": rids.values})
    sort_cols, asc = ["k", "rid"], [True, True]
    if centre_first is not None:
        frame["pref"] = ~centre_first.values
        sort_cols, asc = ["k", "pref", "rid"], [True, True, True]
    frame = frame.sort_values(sort_cols, ascending=asc, kind="stable")
    centre = frame.groupby("k", sort=False)["rid"].transform("first")
    e = frame.loc[frame["rid"] != centre, ["rid"]].assign(centre=centre[frame["rid"] != centre])
    return pd.DataFrame({"rid_l": e["centre"].astype("int64").values, "rid_r": e["rid"].astype("int64").values,
                         "match_rule": rule, "match_score": 1.0})


def _guarded_subgroups(grp: pd.DataFrame, config: IdentityConfig) -> list[list[int]]:
    """Split one shared-value group into name-compatible subgroups (lists of rids)."""
    named = grp[grp["first_key"].notna()]
    nameless = list(grp.loc[grp["first_key"].isna(), "rid"])
    thr = config.deterministic.name_similarity
    recs = list(zip(named["rid"], named["first_key"], named["name_tokens"], strict=True))

    def by_exact_key() -> list[list[int]]:
        d: dict[str, list[int]] = {}
        for rid, fk, _ in recs:
            d.setdefault(fk, []).append(rid)
        return list(d.values())

    if len(recs) > config.deterministic.max_guard_group:
        subgroups = by_exact_key()
    else:
        parent = list(range(len(recs)))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in range(len(recs)):
            for j in range(i + 1, len(recs)):
                if names_compatible(recs[i][1], recs[i][2], recs[j][1], recs[j][2], thr):
                    parent[find(i)] = find(j)
        comps: dict[int, list[int]] = {}
        for i in range(len(recs)):
            comps.setdefault(find(i), []).append(i)
        subgroups = []
        for members in comps.values():
            # chains through initials ("m" ~ "mohammad", "m" ~ "maryam") must not join conflicting names
            conflict = any(not names_compatible(recs[a][1], recs[a][2], recs[b][1], recs[b][2], thr)
                           for x, a in enumerate(members) for b in members[x + 1:])
            if conflict:
                d: dict[str, list[int]] = {}
                for a in members:
                    d.setdefault(recs[a][1], []).append(recs[a][0])
                subgroups.extend(d.values())
            else:
                subgroups.append([recs[a][0] for a in members])
    if len(subgroups) <= 1:
        # one person (or nobody named): nameless records join unambiguously
        return [sorted([r for s in subgroups for r in s] + nameless)]
    # several persons share the value: a nameless record could be any of them, link none
    return [sorted(s) for s in subgroups]


def _guarded_edges(df: pd.DataFrame, col: str, rule: str, config: IdentityConfig) -> pd.DataFrame:
    sub = df.loc[df[col].notna(), [col, "rid", "first_key", "name_tokens"]]
    sizes = sub.groupby(col)[col].transform("size")
    sub = sub[sizes > 1]
    if sub.empty:
        return _empty()
    nkeys = sub.groupby(col)["first_key"].transform("nunique")
    simple = sub[nkeys <= 1]
    parts = [_star(simple[col], simple["rid"], rule)] if len(simple) else []
    complex_ = sub[nkeys > 1]
    rows = []
    for _, grp in complex_.groupby(col, sort=True):
        for members in _guarded_subgroups(grp, config):
            centre = members[0]
            rows.extend((centre, m) for m in members[1:])
    if rows:
        arr = np.array(rows, dtype="int64")
        parts.append(pd.DataFrame({"rid_l": arr[:, 0], "rid_r": arr[:, 1], "match_rule": rule, "match_score": 1.0}))
    return pd.concat(parts, ignore_index=True) if parts else _empty()


def deterministic_edges(prepared: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """Edges (rid_l < rid_r, match_rule, match_score=1.0) between records sharing a strong identifier.

    `prepared` must already have junk values removed.
    """
    parts = []
    for kind in ("national_id", "email", "phone"):
        col = PREPARED_COLUMNS[kind]
        if kind in config.deterministic.name_guard:
            parts.append(_guarded_edges(prepared, col, kind, config))
        else:
            sub = prepared.loc[prepared[col].notna(), [col, "rid"]]
            parts.append(_star(sub[col], sub["rid"], kind))
    sub = prepared.loc[prepared["cref_key"].notna(), ["cref_key", "rid", "source_system"]]
    parts.append(_star(sub["cref_key"], sub["rid"], "customer_ref", centre_first=sub["source_system"] == "orders"))
    edges = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else _empty()
    if edges.empty:
        return _empty()
    lo = np.minimum(edges["rid_l"], edges["rid_r"])
    hi = np.maximum(edges["rid_l"], edges["rid_r"])
    edges = edges.assign(rid_l=lo, rid_r=hi, _p=edges["match_rule"].map(RULE_PRIORITY.index))
    edges = (edges.sort_values(["rid_l", "rid_r", "_p"]).drop_duplicates(["rid_l", "rid_r"])
             .drop(columns="_p").reset_index(drop=True))
    log.info("deterministic edges: %s", edges["match_rule"].value_counts().to_dict())
    return edges[EDGE_COLUMNS]
