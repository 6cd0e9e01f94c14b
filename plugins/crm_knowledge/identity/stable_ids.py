"""Stable customer ids across runs.

Rules, given the previous assignment (record -> customer_id) and new clusters:

* every old id that still has records is *owned* by the new cluster holding most of its records (ties:
  the cluster with the smallest label, i.e. the smallest member);
* a cluster takes the smallest old id it owns; each other old id it owns is absorbed and recorded as a
  merge (old -> surviving);
* a cluster owning no old id gets a fresh id after the highest id ever issued (previous assignment and
  merge history, so an absorbed id is never reissued);
* records of an old id that ended in a non-owning cluster move with that cluster (a split; counted).

Re-running on the same data gives the same ids and no merges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY = ["source_system", "source_record_id"]


def format_id(number: int, prefix: str = "C", digits: int = 9) -> str:
    return f"{prefix}{number:0{digits}d}"


def parse_id(customer_id: str, prefix: str = "C") -> int | None:
    if not isinstance(customer_id, str):
        return None
    m = re.fullmatch(re.escape(prefix) + r"(\d+)", customer_id)
    return int(m.group(1)) if m else None


@dataclass
class IdAssignment:
    customer_ids: pd.Series     # aligned with the input records
    merges: pd.DataFrame        # old_customer_id, new_customer_id
    new_ids: int
    kept_ids: int
    split_records: int


def assign_customer_ids(records: pd.DataFrame, previous: pd.DataFrame | None, *, prefix: str = "C",
                        digits: int = 9, retired_ids: Iterable[str] = ()) -> IdAssignment:
    """`records`: source_system, source_record_id, cluster (int). `previous`: source_system,
    source_record_id, customer_id (or None). `retired_ids`: ids issued earlier that must not be reused
    (e.g. both sides of identity.customer_id_merges)."""
    recs = records[KEY + ["cluster"]].reset_index(drop=True)
    if previous is not None and len(previous):
        prev = previous[KEY + ["customer_id"]].drop_duplicates(KEY)
        recs = recs.merge(prev, on=KEY, how="left")
    else:
        prev = None
        recs["customer_id"] = None
    issued = [parse_id(x, prefix) for x in (list(prev["customer_id"]) if prev is not None else [])]
    issued += [parse_id(x, prefix) for x in retired_ids]
    high = max([x for x in issued if x is not None], default=0)

    owned = recs[recs["customer_id"].notna()]
    counts = owned.groupby(["customer_id", "cluster"]).size().rename("n").reset_index()
    assigned, merges, new_ids, split_records = ids_of_clusters(counts, recs["cluster"].unique(), high,
                                                               prefix=prefix, digits=digits)
    ids = recs["cluster"].map(lambda c: assigned[int(c)])
    ids.index = records.index
    return IdAssignment(
        customer_ids=ids,
        merges=merges,
        new_ids=new_ids,
        kept_ids=len(assigned) - new_ids,
        split_records=split_records,
    )


def ids_of_clusters(counts: pd.DataFrame, clusters: Iterable[int], high: int, *, prefix: str = "C",
                    digits: int = 9) -> tuple[dict[int, str], pd.DataFrame, int, int]:
    """The rules of the module docstring on what they look at: `counts` (customer_id, cluster, n: how many
    records of each old id each new cluster holds), every new cluster label, and `high` (the highest id number
    ever issued). Returns (cluster -> customer_id, merges, new ids, split records). assign_customer_ids calls it
    on records in memory; the Spark backend on the counts its jobs aggregate."""
    assigned: dict[int, str] = {}
    merges: list[tuple[str, str]] = []
    split_records = 0
    if len(counts):
        counts = counts.sort_values(["customer_id", "n", "cluster"], ascending=[True, False, True])
        owners = counts.drop_duplicates("customer_id")
        split_records = int(counts["n"].sum() - owners["n"].sum())
        owners = owners.assign(num=owners["customer_id"].map(lambda x: parse_id(x, prefix)))
        owners = owners.assign(sort_key=owners["num"].fillna(np.inf))
        for cluster, grp in owners.sort_values(["cluster", "sort_key", "customer_id"]).groupby("cluster",
                                                                                                 sort=False):
            ids = list(grp["customer_id"])
            assigned[int(cluster)] = ids[0]
            merges.extend((old, ids[0]) for old in ids[1:])
    new_ids = 0
    for cluster in sorted(set(int(c) for c in clusters) - set(assigned)):
        high += 1
        new_ids += 1
        assigned[cluster] = format_id(high, prefix, digits)
    return assigned, pd.DataFrame(merges, columns=["old_customer_id", "new_customer_id"]), new_ids, split_records
