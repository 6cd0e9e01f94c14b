"""The cluster guards on hand-made edges: different values of a kind a person has one of never end up in
one cluster through probabilistic links; a mistyped number does not split a person."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_knowledge.identity.clusters import UniqueValues, build_clusters, conflict_guard, edit_distance


def _edges(pairs, probs=None):
    probs = probs or [0.9] * len(pairs)
    return pd.DataFrame({"rid_l": [a for a, _ in pairs], "rid_r": [b for _, b in pairs],
                         "match_probability": probs})


def _values(*vals, tolerant=True):
    return [UniqueValues("ssn", np.array(vals, dtype=object), tolerant)]


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1234567", "1234567", 0), ("1234567", "1234568", 1), ("1234567", "1243567", 1),  # typo, transposition
    ("9022048", "9022480", 2), ("1234567", "7654321", 3), ("12", "1234567", 3),
])
def test_edit_distance_is_capped_above_the_typo_limit(a, b, expected):
    assert edit_distance(a, b) == expected


def test_chain_through_records_without_a_number_does_not_join_two_numbers():
    # 0 (number A) - 1 (none) - 2 (number B): the weaker link (1-2) is left out, the stronger one kept
    det = _edges([])
    prob = _edges([(0, 1), (1, 2)], [0.99, 0.7])
    result = build_clusters(3, det, prob, 50, unique_values=_values("1111111", None, "7654321"))
    assert result.conflicting_edges == 1
    assert result.labels[0] == result.labels[1] != result.labels[2]


def test_a_mistyped_number_does_not_split_a_person_but_an_exact_kind_does():
    prob = _edges([(0, 1)])
    kept, dropped = conflict_guard(2, [], prob, _values("9022048", "9022480"))
    assert dropped == 0 and len(kept) == 1
    kept, dropped = conflict_guard(2, [], prob, _values("9022048", "9022480", tolerant=False))
    assert dropped == 1 and kept.empty


def test_deterministic_groups_are_nodes_and_clusters_without_conflict_are_untouched():
    # 0-1 deterministic (same e-mail), 1 carries number A; 2 carries B; 3-4 an unrelated pair, no numbers
    det = _edges([(0, 1)])
    prob = _edges([(0, 2), (3, 4)], [0.95, 0.6])
    result = build_clusters(5, det, prob, 50, unique_values=_values(None, "1111111", "7654321", None, None))
    labels = result.labels
    assert labels[0] == labels[1] != labels[2]
    assert labels[3] == labels[4]
    assert result.conflicting_edges == 1
    # without unique values nothing is guarded
    assert build_clusters(5, det, prob, 50).conflicting_edges == 0
