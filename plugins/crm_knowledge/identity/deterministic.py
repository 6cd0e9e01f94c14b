"""Deterministic edges on strong identifiers (after junk removal).

Rules (`match_rule`, score 1.0): ``national_id`` (same valid national id), every identifier kind declared
in config/identity.yml (same normalised, valid value; the rule is named for the kind), ``customer_ref`` (a form or
contact referring to orders customer X is linked to record ('orders', X); records referring to the same X
are linked too), ``email`` and ``phone`` (same value, guarded by given-name agreement because families
share them; see :mod:`crm_knowledge.identity.names` and :func:`_guarded_subgroups`).

Records sharing a value are linked as a star (every record to one centre), which gives the same
connected components as all pairs with O(n) edges.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from crm_knowledge.identity.config import IdentityConfig, identifier_column
from crm_knowledge.identity.duckdb_session import DEFAULT_MEMORY_LIMIT, connection
from crm_knowledge.identity.names import compatible, families_agree, rules_from_config

log = logging.getLogger(__name__)

EDGE_COLUMNS = ["rid_l", "rid_r", "match_rule", "match_score"]
#: strongest first; when several rules link the same pair the first is reported. Declared identifier kinds
#: (config/identity.yml `identifiers`) rank after customer_ref, in the order declared (see rule_priority).
RULE_PRIORITY = ["national_id", "customer_ref", "email", "phone"]


def rule_priority(config: IdentityConfig) -> list[str]:
    """Every deterministic rule of `config`, strongest first."""
    return [*RULE_PRIORITY[:2], *(k.name for k in config.declared_identifiers), *RULE_PRIORITY[2:]]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"rid_l": pd.Series(dtype="int64"), "rid_r": pd.Series(dtype="int64"),
                         "match_rule": pd.Series(dtype="object"), "match_score": pd.Series(dtype="float64")})


def _guarded_subgroups(grp: pd.DataFrame, config: IdentityConfig, others: Sequence[str] = ()) -> list[list[int]]:
    """Split one shared-value group into name-compatible subgroups (lists of rids).

    Two records are name-compatible when their given names agree
    (:func:`crm_knowledge.identity.names.compatible`) or - when they share a second guarded identifier
    as well (`others`: the same e-mail *and* the same phone) - when their family names agree and the
    given names are near (a typo in a short given name); a family sharing a phone rarely shares an
    e-mail address too. Records with a full name are clustered by average linkage on that relation
    (:func:`_agglomerate`), so a chain of near names ("M." ~ "Mohammad", "M." ~ "Maryam") does not join
    conflicting ones. A record with one name word only joins the one cluster it fits; nameless
    records join when the group is one person.
    """
    rules = rules_from_config(config)
    rids = grp["rid"].tolist()
    profiles = grp["name_profile"].tolist()
    firsts = grp["first_key"].tolist()
    other_values = [grp[c].tolist() for c in others]
    full = [i for i, p in enumerate(profiles) if p.alignments]
    single = [i for i, p in enumerate(profiles) if not p.alignments and p.single is not None]
    nameless = [rids[i] for i, p in enumerate(profiles) if p.empty]

    if len(full) + len(single) > config.deterministic.max_guard_group:
        d: dict[str, list[int]] = {}
        for i in full + single:
            d.setdefault(firsts[i] or "", []).append(rids[i])
        subgroups = list(d.values())
        return [sorted(s) for s in subgroups] if len(subgroups) > 1 else [sorted(rids)]

    def compat(a: int, b: int) -> bool:
        if compatible(profiles[a], profiles[b], rules):
            return True
        shares_other = any(v[a] is not None and v[a] == v[b] for v in other_values)
        return shares_other and families_agree(profiles[a], profiles[b], rules)

    clusters = _agglomerate(full, firsts, compat)
    if not clusters:
        # lone words only: the same word (or a near spelling) is one person
        clusters = _agglomerate(single, firsts, compat)
    else:
        unattached = []
        for i in single:
            fits = [c for c in clusters if _fits(i, c, compat)]
            if len(fits) == 1:
                fits[0].append(i)
            elif not fits:
                unattached.append(i)
            # compatible with several persons: could be any of them, link to none
        clusters.extend(_agglomerate(unattached, firsts, compat))
    clusters = _attach_strays(clusters, compat)
    subgroups = [[rids[i] for i in c] for c in clusters]
    if len(subgroups) <= 1:
        # one person (or nobody named): nameless records join unambiguously
        return [sorted([r for s in subgroups for r in s] + nameless)]
    # several persons share the value: a nameless record could be any of them, link none
    return [sorted(s) for s in subgroups]


def _agglomerate(members: list[int], firsts: list, compat) -> list[list[int]]:
    """Average-linkage clustering of `members` on the name-compatibility relation `compat`.

    Repeatedly merges the two clusters with the highest share of compatible pairs across them, as
    long as at least half of those pairs are compatible. One noisy record (a typo in the family name
    of one record, a swapped name in another) does not keep a person apart, while two persons sharing
    a phone (no compatible pair across them) are never merged. Ties: same first-name key first, then
    the smallest members (deterministic).
    """
    if not members:
        return []
    n = len(members)
    ok = [[True] * n for _ in range(n)]
    for x in range(n):
        for y in range(x + 1, n):
            ok[x][y] = ok[y][x] = compat(members[x], members[y])
    clusters: list[list[int]] = [[x] for x in range(n)]
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                ca, cb = clusters[a], clusters[b]
                good = sum(ok[x][y] for x in ca for y in cb)
                if not good or 2 * good < len(ca) * len(cb):
                    continue
                same = any(firsts[members[x]] is not None and firsts[members[x]] == firsts[members[y]]
                           for x in ca for y in cb)
                score = (good / (len(ca) * len(cb)), same)
                if best is None or score > best[0]:
                    best = (score, a, b)
        if best is None:
            break
        _, a, b = best
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    return [[members[x] for x in c] for c in clusters]


def _attach_strays(clusters: list[list[int]], compat) -> list[list[int]]:
    """Records left alone by the average linkage that agree with someone in exactly one other cluster join it.

    A record with a typo agrees only with the records of its own script ("zarha mashhadi" with "zahra
    mashhadi", not with "زهرا مشهدی"), so it falls below the half of compatible pairs the average linkage asks
    for. It is still one of them when no other name in the group fits it; one that fits several, or none,
    stays apart."""
    if len(clusters) < 2:
        return clusters
    strays = [c[0] for c in clusters if len(c) == 1]
    groups = [c for c in clusters if len(c) > 1]
    if not strays or not groups:
        return clusters
    out = [list(c) for c in groups]
    alone = []
    for i in strays:
        fits = [k for k, c in enumerate(groups) if any(compat(i, j) for j in c)]
        others = [j for j in strays if j != i and compat(i, j)]
        if len(fits) == 1 and not others:
            out[fits[0]].append(i)
        else:
            alone.append([i])
    return out + alone


def _fits(i: int, cluster: list[int], compat) -> bool:
    good = sum(compat(i, j) for j in cluster)
    return good > 0 and 2 * good >= len(cluster)


def _arrow_strings(values: pd.Series) -> pa.Array:
    """Arrow strings of an object or string series (None and NaN are null)."""
    return pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)


def _star(keys: pd.Series, rids: pd.Series, rule: str, centre_first: pd.Series | None = None, *,
          memory_limit: str = DEFAULT_MEMORY_LIMIT) -> pd.DataFrame:
    """Star edges within groups of equal `keys` (missing keys: no group), found in DuckDB; the centre is the
    group's first record by (not `centre_first`, rid)."""
    pref = (~centre_first.to_numpy(dtype=bool)) if centre_first is not None else np.zeros(len(keys), dtype=bool)
    members = pa.table({"k": _arrow_strings(keys), "rid": pa.array(rids.to_numpy(dtype=np.int64)),
                        "pref": pa.array(pref)})
    with connection(memory_limit) as con:
        con.register("members", members)
        e = con.execute("select centre, rid from (select rid, first_value(rid) over (partition by k order by pref, "
                        "rid) as centre from members where k is not null) where rid <> centre "
                        "order by centre, rid").fetchnumpy()
    return pd.DataFrame({"rid_l": np.asarray(e["centre"], dtype=np.int64),
                         "rid_r": np.asarray(e["rid"], dtype=np.int64), "match_rule": rule, "match_score": 1.0})


def _guarded_edges(df: pd.DataFrame, col: str, rule: str, config: IdentityConfig) -> pd.DataFrame:
    """Edges of the records sharing a value of `col` (a name-guarded kind): groups whose records carry one
    given-name key (or none) as a star (:func:`_star`), the others split by :func:`_guarded_subgroups` (the name
    rules, Python: only these groups' records are looked at). Group sizes and given-name counts come from DuckDB."""
    memory_limit = config.probabilistic.duckdb_memory_limit
    others = [identifier_column(k) for k in sorted(config.deterministic.name_guard) if identifier_column(k) != col]
    with connection(memory_limit) as con:
        con.register("records", pa.table({"k": _arrow_strings(df[col]), "first_key": _arrow_strings(df["first_key"]),
                                          "pos": pa.array(np.arange(len(df), dtype=np.int64))}))
        g = con.execute("select pos, nk > 1 as complex from (select pos, count(*) over w as n, count(distinct "
                        "first_key) over w as nk from records where k is not null window w as (partition by k)) "
                        "where n > 1 order by pos").fetchnumpy()
    pos, complex_ = np.asarray(g["pos"], dtype=np.int64), np.asarray(g["complex"], dtype=bool)
    if not len(pos):
        return _empty()
    simple = df.iloc[pos[~complex_]]
    parts = [_star(simple[col], simple["rid"], rule, memory_limit=memory_limit)] if len(simple) else []
    rows = []
    for _, grp in df.iloc[pos[complex_]][[col, "rid", "first_key", "name_profile", *others]].groupby(col, sort=True):
        for members in _guarded_subgroups(grp, config, others):
            centre = members[0]
            rows.extend((centre, m) for m in members[1:])
    if rows:
        arr = np.array(rows, dtype="int64")
        parts.append(pd.DataFrame({"rid_l": arr[:, 0], "rid_r": arr[:, 1], "match_rule": rule, "match_score": 1.0}))
    return pd.concat(parts, ignore_index=True) if parts else _empty()


def deterministic_edges(prepared: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    """Edges (rid_l < rid_r, match_rule, match_score=1.0) between records sharing a strong identifier: star edges
    per group of equal values and the strongest rule per pair, in DuckDB (:func:`_star`, :func:`_guarded_edges`).

    `prepared` must already have junk values removed.
    """
    memory_limit = config.probabilistic.duckdb_memory_limit
    parts = []
    for kind in config.kinds:
        col = identifier_column(kind)
        if col not in prepared.columns:
            continue
        if kind in config.deterministic.name_guard:
            parts.append(_guarded_edges(prepared, col, kind, config))
        else:
            parts.append(_star(prepared[col], prepared["rid"], kind, memory_limit=memory_limit))
    parts.append(_star(prepared["cref_key"], prepared["rid"], "customer_ref",
                       centre_first=prepared["source_system"] == "orders", memory_limit=memory_limit))
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    ranks = {r: i for i, r in enumerate(rule_priority(config))}
    edges = pa.table({"rid_l": pa.array(np.concatenate([p["rid_l"].to_numpy(dtype=np.int64) for p in parts])),
                      "rid_r": pa.array(np.concatenate([p["rid_r"].to_numpy(dtype=np.int64) for p in parts])),
                      "rank": pa.array(np.concatenate([np.full(len(p), ranks[p["match_rule"].iat[0]], dtype=np.int64)
                                                       for p in parts]))})
    with connection(memory_limit) as con:
        con.register("edges", edges)
        e = con.execute("select rid_l, rid_r, rank from (select least(rid_l, rid_r) as rid_l, greatest(rid_l, rid_r) "
                        "as rid_r, rank from edges) qualify row_number() over (partition by rid_l, rid_r order by "
                        "rank) = 1 order by rid_l, rid_r").fetchnumpy()
    rules = np.array(list(ranks), dtype=object)
    edges = pd.DataFrame({"rid_l": np.asarray(e["rid_l"], dtype=np.int64),
                          "rid_r": np.asarray(e["rid_r"], dtype=np.int64),
                          "match_rule": pd.Series(rules[np.asarray(e["rank"], dtype=np.int64)], dtype="str"),
                          "match_score": 1.0})
    log.info("deterministic edges: %s", edges["match_rule"].value_counts().to_dict())
    return edges[EDGE_COLUMNS]
