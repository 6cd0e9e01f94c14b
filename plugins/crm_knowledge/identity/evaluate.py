"""Evaluation of identity resolution against ground truth (demo data).

Pairwise precision / recall / F1 computed by combinatorics over the contingency table
(customer x person): TP = sum C(n_cp, 2), predicted pairs = sum C(n_c, 2), true pairs = sum C(n_p, 2);
no pair is enumerated.
"""

from __future__ import annotations

import pandas as pd

KEY = ["source_system", "source_record_id"]


def _pairs(counts: pd.Series) -> int:
    c = counts.astype("int64")
    return int((c * (c - 1) // 2).sum())


def evaluate(record_clusters: pd.DataFrame, ground_truth: pd.DataFrame, *,
             unresolved_as_singletons: bool = True) -> dict:
    """Metrics of `record_clusters` (source_system, source_record_id, customer_id) against
    `ground_truth` (source_system, source_record_id, person_id).

    Ground-truth records missing from record_clusters (unresolved) count as singleton customers when
    `unresolved_as_singletons` (their missed links lower recall), else they are left out.
    Records not in the ground truth are ignored.
    """
    gt = ground_truth[KEY + ["person_id"]].astype({"source_record_id": str})
    rc = record_clusters[KEY + ["customer_id"]].astype({"source_record_id": str})
    df = gt.merge(rc, on=KEY, how="left")
    missing = df["customer_id"].isna()
    n_unresolved = int(missing.sum())
    if unresolved_as_singletons:
        df.loc[missing, "customer_id"] = ["__unresolved__" + str(i) for i in range(n_unresolved)]
    else:
        df = df[~missing]
    tp = _pairs(df.groupby(["customer_id", "person_id"]).size())
    predicted = _pairs(df.groupby("customer_id").size())
    true = _pairs(df.groupby("person_id").size())
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_person = df.groupby("person_id")["customer_id"].nunique()
    per_customer = df.groupby("customer_id")["person_id"].nunique()
    return {
        "records": len(df),
        "unresolved_records": n_unresolved,
        "persons": int(per_person.size),
        "customers": int(per_customer.size),
        "true_pairs": true,
        "predicted_pairs": predicted,
        "true_positive_pairs": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "persons_split": int((per_person > 1).sum()),
        "customers_merging_persons": int((per_customer > 1).sum()),
    }


def format_report(metrics: dict) -> str:
    """Plain-text report of :func:`evaluate` metrics."""
    m = metrics
    lines = [
        "Identity resolution vs ground truth",
        f"  records evaluated          {m['records']:>10,}  (unresolved: {m['unresolved_records']:,})",
        f"  true persons               {m['persons']:>10,}",
        f"  customers                  {m['customers']:>10,}",
        f"  pairwise precision         {m['precision']:>10.4f}  ({m['true_positive_pairs']:,} / "
        f"{m['predicted_pairs']:,} predicted pairs)",
        f"  pairwise recall            {m['recall']:>10.4f}  ({m['true_positive_pairs']:,} / {m['true_pairs']:,} "
        "true pairs)",
        f"  pairwise F1                {m['f1']:>10.4f}",
        f"  persons split across customers   {m['persons_split']:>6,}",
        f"  customers merging persons        {m['customers_merging_persons']:>6,}",
    ]
    return "\n".join(lines)
