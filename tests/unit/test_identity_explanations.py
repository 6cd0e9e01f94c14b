"""Probabilistic pairs keep their comparison levels and weights as numbers; the guards decide on them and the
explanation JSON is built from them as pairs are written (crm_knowledge.identity.explanations)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from crm_knowledge.identity.config import config_from_dict
from crm_knowledge.identity.explanations import explanation_texts, scored_pairs, with_explanations
from crm_knowledge.identity.probabilistic import _corroborated

LABELS = {
    "first_key": {-1: "null", 0: "All other comparisons", 1: "first_text within 1 edit(s) (typo)", 2: "Exact match"},
    "birth_date": {-1: "null", 0: "All other comparisons", 1: "one typo", 2: "Exact match"},
    "postcode": {-1: "null", 0: "All other comparisons", 1: "Exact match"},
}


def _pred(rows: list[dict]) -> pd.DataFrame:
    """Splink-shaped predictions: unique ids, probability, weight, gamma_ / mw_ / mw_tf_adj_ per comparison."""
    return pd.DataFrame(rows)


def _row(uid_l, uid_r, first, birth, post, *, w_first=(4.0, np.nan), w_birth=6.0, w_post=3.0) -> dict:
    return {"unique_id_l": uid_l, "unique_id_r": uid_r, "match_probability": 0.99, "match_weight": 9.5,
            "gamma_first_key": first, "mw_first_key": w_first[0], "mw_tf_adj_first_key": w_first[1],
            "gamma_birth_date": birth, "mw_birth_date": w_birth,
            "gamma_postcode": post, "mw_postcode": w_post}


def test_explanations_say_which_fields_agreed_with_levels_and_weights_but_no_values():
    pred = _pred([
        _row(7, 3, 2, 2, -1, w_first=(4.0, -1.25)),          # names and birth date agree, no postcode on one side
        _row(1, 2, 1, 0, 1, w_first=(2.5, np.nan), w_birth=-3.0),   # a typo in the name, birth dates disagree
        _row(4, 5, 0, 1, 0, w_first=(-0.0004, np.nan), w_birth=0.0, w_post=-2.0),
    ])
    pairs = scored_pairs(pred, LABELS)
    assert pairs[["rid_l", "rid_r"]].values.tolist() == [[3, 7], [1, 2], [4, 5]]  # rid_l < rid_r
    assert pairs["gamma_first_key"].dtype == np.int8  # numbers per pair, not text
    texts = explanation_texts(pairs, LABELS)
    first, second, third = (json.loads(t) for t in texts)
    assert first["agreed"] == ["first_name", "birth_date"] and first["missing"] == ["postcode"]
    assert first["partially_agreed"] == [] and first["disagreed"] == []
    # the weight shown is the level's plus its term-frequency adjustment, which is shown apart
    assert first["fields"]["first_name"] == {"level": "Exact match", "match_weight": 2.75, "comparison": "first_key",
                                             "gamma": 2, "tf_match_weight": -1.25}
    assert first["fields"]["postcode"] == {"level": "null", "match_weight": 3.0, "comparison": "postcode",
                                           "gamma": -1}
    assert second["partially_agreed"] == ["first_name"] and second["disagreed"] == ["birth_date"]
    assert second["agreed"] == ["postcode"]
    assert second["fields"]["first_name"]["level"] == "first_text within 1 edit(s) (typo)"
    # a weight of zero or below is a disagreement, whatever the level; -0.0004 is written as 0.0
    assert third["disagreed"] == ["first_name", "birth_date", "postcode"] and third["agreed"] == []
    assert third["fields"]["first_name"]["match_weight"] == 0.0
    assert '"match_weight": -0.0' not in texts[2]


def test_written_pairs_get_their_explanation_and_lose_the_score_columns():
    pairs = scored_pairs(_pred([_row(1, 2, 2, 2, 1)]), LABELS).assign(match_rule="probabilistic")
    det = pd.DataFrame({"rid_l": [5], "rid_r": [6], "match_probability": [1.0], "match_weight": [np.nan],
                        "match_rule": ["email"], "explanation": ['{"rule": "email", "agreed": ["email"]}']})
    both = pd.concat([det, pairs], ignore_index=True)  # as resolve.assemble joins them: gamma_ turns float
    out = with_explanations(both, LABELS)
    assert not [c for c in out.columns if c.startswith(("gamma_", "mw_"))]
    assert out["explanation"].iloc[0] == det["explanation"].iloc[0]  # a deterministic edge keeps its own
    assert json.loads(out["explanation"].iloc[1])["agreed"] == ["first_name", "birth_date", "postcode"]


def test_guards_decide_on_the_levels():
    config = config_from_dict({"probabilistic": {"require_agreement_on": ["birth_date", "postcode"],
                                                 "person_fields": ["first_name"], "person_min_weight": 2.0,
                                                 "birth_date_conflict_requires": ["first_name", "postcode"]}})
    pred = _pred([
        _row(1, 2, 2, 2, 1),                                   # kept: everything agrees
        _row(3, 4, 2, -1, -1),                                 # dropped: neither birth date nor postcode
        _row(5, 6, 1, 2, 1, w_first=(1.5, 3.0)),               # dropped: the name's own weight is below 2.0
        _row(7, 8, 2, 0, 0, w_birth=-4.0, w_post=-1.0),        # dropped: birth dates differ, postcode too
        _row(9, 10, 1, 0, 1, w_first=(2.5, np.nan), w_birth=-4.0),  # kept: birth dates differ, name + postcode agree
    ])
    kept = _corroborated(scored_pairs(pred, LABELS), config, LABELS)
    assert kept[["rid_l", "rid_r"]].values.tolist() == [[1, 2], [9, 10]]


def test_predictions_read_in_batches_give_the_same_pairs(monkeypatch):
    """Splink's predictions leave DuckDB in Arrow batches (ProbabilisticModel._finish): many small batches give
    the pairs one batch gives."""
    from crm_knowledge.identity import probabilistic
    from crm_knowledge.identity.config import load_config
    from crm_knowledge.identity.resolve import resolve
    from crm_knowledge.identity.synthetic import make_people

    cands, _ = make_people(60, seed=5)
    config = load_config()
    whole = resolve(cands, None, config).explained_match_pairs()
    monkeypatch.setattr(probabilistic, "PREDICTION_BATCH_ROWS", 3)
    batched = resolve(cands, None, config).explained_match_pairs()
    assert (whole["match_rule"] == "probabilistic").sum() > 3  # more pairs than one batch holds
    key = ["source_record_id_l", "source_record_id_r"]
    pd.testing.assert_frame_equal(whole.sort_values(key).reset_index(drop=True),
                                  batched.sort_values(key).reset_index(drop=True))

