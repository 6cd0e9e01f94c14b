"""Why a probabilistic pair linked: per comparison its level and match weight, as numbers while the run decides,
as JSON text only when the pair is written.

Splink's predictions give each pair a level (``gamma_<comparison>``), the level's match weight (``mw_<comparison>``)
and, on term-frequency adjusted comparisons, the adjustment (``mw_tf_adj_<comparison>``). A run keeps exactly these
numbers per pair (:func:`scored_pairs`: about 150 bytes a pair), decides on them (:class:`Agreement`:
which fields agreed, partly agreed, disagreed or were missing), and turns them into the `explanation` JSON of
``identity.match_pairs`` chunk by chunk as it writes (:func:`explanation_texts`). At a million customers a run
scores about three million pairs: a JSON text per pair held them in memory as 6 GB of strings and took minutes of
Python to build and parse again.

The explanation (one JSON object per pair)::

    {"agreed": [field, ...], "partially_agreed": [...], "disagreed": [...], "missing": [...],
     "fields": {field: {"level": label, "match_weight": w, "comparison": name, "gamma": level
                        [, "tf_match_weight": t]}}}

`field` is the human name of a comparison (:func:`field_name`); `w` is the level's weight plus its
term-frequency adjustment `t`, both rounded to 3 decimals. A field is agreed at the comparison's top level,
partly agreed at a lower level with a positive weight, disagreed below that, missing when a side is null
(level -1). Labels and weights only: never a compared value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: comparison output name -> human field name used in explanations (identifier kinds: `id_<kind>` -> kind)
FIELDS = {"first_key": "first_name", "last_key": "last_name", "birth_date": "birth_date",
          "postcode": "postcode", "city_key": "city", "address": "address"}
#: the columns of a pair every backend keeps (Spark's pairs add the explanation text, see PAIR_COLUMNS)
CORE_COLUMNS = ["rid_l", "rid_r", "match_probability", "match_weight"]
#: comparison -> {level (gamma) -> label}: a trained model's levels (ProbabilisticModel.level_labels)
Labels = Mapping[str, Mapping[int, str]]


def field_name(column: str) -> str:
    """The field a comparison column stands for in explanations and `require_agreement_on`."""
    return FIELDS.get(column, column.removeprefix("id_") if column.startswith("id_") else column)


def scored_pairs(pred: pd.DataFrame, labels: Labels) -> pd.DataFrame:
    """Splink's predictions -> one row per pair: rid_l < rid_r, probability, weight and the level, level weight and
    term-frequency adjustment of every comparison in `labels` (NaN weights where Splink gave none)."""
    lo = np.minimum(pred["unique_id_l"].to_numpy(dtype=np.int64), pred["unique_id_r"].to_numpy(dtype=np.int64))
    hi = np.maximum(pred["unique_id_l"].to_numpy(dtype=np.int64), pred["unique_id_r"].to_numpy(dtype=np.int64))
    out = {"rid_l": lo, "rid_r": hi,
           "match_probability": pred["match_probability"].to_numpy(dtype=np.float64),
           "match_weight": pred["match_weight"].to_numpy(dtype=np.float64)}
    nan = np.full(len(pred), np.nan)
    for c in compared(pred, labels):
        out[f"gamma_{c}"] = pred[f"gamma_{c}"].to_numpy(dtype=np.int8)
        for prefix in ("mw_", "mw_tf_adj_"):
            col = f"{prefix}{c}"
            out[col] = pred[col].to_numpy(dtype=np.float64) if col in pred.columns else nan
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Agreement:
    """Per comparison field of some pairs: whether it agreed (top level), partly agreed (a lower level with a
    positive weight), disagreed, or was missing (a side null), its level's own weight (before the
    term-frequency adjustment) and its weight (with it). Boolean / float arrays aligned with the pairs."""

    agreed: dict[str, np.ndarray]
    partial: dict[str, np.ndarray]
    disagreed: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    level_weight: dict[str, np.ndarray]
    weight: dict[str, np.ndarray]

    @classmethod
    def of(cls, pairs: pd.DataFrame, labels: Labels) -> Agreement:
        agreed, partial, disagreed, missing, level_weight, weight = {}, {}, {}, {}, {}, {}
        for c in compared(pairs, labels):
            f, levels = field_name(c), labels[c]
            g = pairs[f"gamma_{c}"].to_numpy()
            mw = np.nan_to_num(pairs[f"mw_{c}"].to_numpy(dtype=np.float64))
            tf = np.nan_to_num(pairs[f"mw_tf_adj_{c}"].to_numpy(dtype=np.float64))
            missing[f] = g == -1
            agreed[f] = ~missing[f] & (g == max(levels))
            weight[f] = mw + tf
            partial[f] = ~missing[f] & ~agreed[f] & (weight[f] > 0)
            disagreed[f] = ~missing[f] & ~agreed[f] & ~partial[f]
            level_weight[f] = mw
        return cls(agreed, partial, disagreed, missing, level_weight, weight)

    def any_agreed(self, fields, n: int, *, partly: bool = True) -> np.ndarray:
        """True where at least one of `fields` agreed (or, `partly`, partly agreed)."""
        out = np.zeros(n, bool)
        for f in fields:
            if f in self.agreed:
                out |= self.agreed[f] | (self.partial[f] if partly else False)
        return out

    def all_agreed(self, fields, n: int) -> np.ndarray:
        """True where every one of `fields` agreed or partly agreed (False when one is not compared at all)."""
        out = np.ones(n, bool)
        for f in fields:
            out &= (self.agreed[f] | self.partial[f]) if f in self.agreed else False
        return out


def _texts(values: np.ndarray) -> np.ndarray:
    """Numbers as JSON numbers (Python's float repr, as json.dumps writes them), as an object array: each distinct
    value formatted once (a level's weight is one number for all its pairs; -0.0 is written 0.0)."""
    distinct, inverse = np.unique(values + 0.0, return_inverse=True)
    return np.array([repr(float(v)) for v in distinct], dtype=object)[inverse]


def score_columns(columns) -> list[str]:
    """The level and weight columns among `columns` (Splink's gamma_ / mw_ / mw_tf_adj_, as scored_pairs keeps
    them)."""
    return [c for c in columns if c.startswith(("gamma_", "mw_"))]


def compared(pairs: pd.DataFrame, labels: Labels) -> list[str]:
    """The comparisons of `labels` the pairs carry levels of."""
    return [c for c in labels if f"gamma_{c}" in pairs.columns]


def explanation_texts(pairs: pd.DataFrame, labels: Labels) -> np.ndarray:
    """The explanation JSON of each pair (see the module docstring), built per comparison over all pairs at once:
    a few seconds per million pairs."""
    n = len(pairs)
    if n == 0:
        return np.array([], dtype=object)
    a = Agreement.of(pairs, labels)
    lists = {k: np.full(n, "", dtype=object) for k in ("agreed", "partially_agreed", "disagreed", "missing")}
    fields = np.full(n, "", dtype=object)
    for i, c in enumerate(compared(pairs, labels)):
        f, levels = field_name(c), labels[c]
        quoted = json.dumps(f, ensure_ascii=False)
        for key, mask in (("agreed", a.agreed[f]), ("partially_agreed", a.partial[f]),
                          ("disagreed", a.disagreed[f]), ("missing", a.missing[f])):
            lists[key] = np.where(mask, np.where(lists[key] == "", quoted, lists[key] + ", " + quoted), lists[key])
        g = pairs[f"gamma_{c}"].to_numpy()
        tf = pairs[f"mw_tf_adj_{c}"].to_numpy(dtype=np.float64)
        has_tf = ~np.isnan(tf)
        head = {lvl: f"{quoted}: {{\"level\": {json.dumps(levels.get(lvl, str(lvl)), ensure_ascii=False)}, "
                     f"\"match_weight\": " for lvl in np.unique(g).tolist()}
        tail = {lvl: f", \"comparison\": {json.dumps(c, ensure_ascii=False)}, \"gamma\": {lvl}" for lvl in head}
        part = (np.array([head[x] for x in g.tolist()], dtype=object) + _texts(np.round(a.weight[f], 3))
                + np.array([tail[x] for x in g.tolist()], dtype=object))
        if has_tf.any():
            tf_text = np.full(n, "", dtype=object)
            tf_text[has_tf] = ", \"tf_match_weight\": " + _texts(np.round(tf[has_tf], 3))
            part = part + tf_text
        fields = part + "}" if i == 0 else fields + ", " + part + "}"
    return ("{\"agreed\": [" + lists["agreed"] + "], \"partially_agreed\": [" + lists["partially_agreed"]
            + "], \"disagreed\": [" + lists["disagreed"] + "], \"missing\": [" + lists["missing"]
            + "], \"fields\": {" + fields + "}}")


def with_explanations(pairs: pd.DataFrame, labels: Labels | None) -> pd.DataFrame:
    """`pairs` with their `explanation` filled where it is missing (the probabilistic pairs of a run in this
    process; deterministic edges and Spark's pairs carry theirs) and the score columns dropped."""
    out = pairs.drop(columns=score_columns(pairs.columns))
    if not labels or not len(pairs):
        return out
    todo = pairs["explanation"].isna().to_numpy() if "explanation" in pairs.columns else np.ones(len(pairs), bool)
    if todo.any():
        texts = explanation_texts(pairs.loc[todo].astype({f"gamma_{c}": np.int8 for c in compared(pairs, labels)}),
                                  labels)
        out = out.assign(explanation=out["explanation"] if "explanation" in out.columns else None)
        out.loc[todo, "explanation"] = texts
    return out
