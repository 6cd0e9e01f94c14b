"""Behaviour clustering: k by silhouette, readable profiles and cluster ids that survive re-runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from crm_knowledge.scoring.behaviour import assign_stable_labels, prepare_features, segment_behaviour
from crm_knowledge.scoring.config import BehaviourConfig, BehaviourFeature

CONFIG = BehaviourConfig(
    features=(
        BehaviourFeature("orders_per_month", "frequent", "occasional"),
        BehaviourFeature("avg_order_value", "high basket", "small basket"),
        BehaviourFeature("complaints_per_year", "complains often", "rarely complains"),
    ),
    k_min=2,
    k_max=5,
    silhouette_sample_size=20000,
    n_init=4,
    random_state=42,
    max_centroid_shift=0.5,
    profile_z_threshold=0.5,
    profile_max_terms=3,
)

# Three well separated groups: (orders/month, basket, complaints/year), sizes 150/100/50.
GROUPS = {
    "bargain": ((1.0, 20.0, 0.2), 150),
    "big_spender": ((4.0, 200.0, 0.3), 100),
    "unhappy": ((1.2, 25.0, 6.0), 50),
}


def _features(seed: int = 0, noise: float = 0.05) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for name, (centre, size) in GROUPS.items():
        centre_arr = np.array(centre)
        values = centre_arr * (1 + noise * rng.standard_normal((size, 3)))
        frames.append(values)
        truth += [name] * size
    data = np.vstack(frames)
    ids = [f"c{i:04d}" for i in range(len(data))]
    frame = pd.DataFrame(data, index=ids, columns=CONFIG.feature_names)
    frame.index.name = "customer_id"
    return frame, pd.Series(truth, index=ids)


def test_finds_three_groups_with_readable_profiles() -> None:
    features, truth = _features()
    result = segment_behaviour(features, CONFIG)
    assert result.k == 3
    assert max(result.silhouette, key=result.silhouette.get) == 3
    # Each true group maps to exactly one cluster; first-run ids are by size (largest = 0).
    pairs = pd.crosstab(truth, result.labels)
    assert (pairs > 0).sum(axis=1).eq(1).all()
    assert result.labels[truth == "bargain"].iloc[0] == 0
    assert result.labels[truth == "big_spender"].iloc[0] == 1
    assert result.labels[truth == "unhappy"].iloc[0] == 2
    profiles = result.profiles.set_index("cluster_id")
    assert profiles["size"].tolist() == [150, 100, 50]
    assert profiles.loc[1, "label"].startswith("high basket") and "frequent" in profiles.loc[1, "label"]
    assert profiles.loc[2, "label"].startswith("complains often")
    assert profiles.loc[1, "avg_order_value"] > 150  # centroids are in original units
    assert {"z_orders_per_month", "share"} <= set(profiles.columns)


def test_assign_stable_labels_permuted_and_moved() -> None:
    previous = pd.DataFrame([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], index=[10, 11, 12])
    # KMeans returned the same clusters in another order, slightly moved, plus a brand new one.
    new = pd.DataFrame([[0.05, 2.9], [3.1, 0.1], [-6.0, -6.0], [0.0, -0.1]], index=[0, 1, 2, 3])
    assert assign_stable_labels(new, previous, max_shift=0.5) == {0: 12, 1: 11, 3: 10, 2: 13}
    # A centroid that moved further than max_shift loses its id (fresh id after the largest old one).
    moved = pd.DataFrame([[0.0, 0.0], [3.0, 2.0], [0.0, 3.0]])
    assert assign_stable_labels(moved, previous, max_shift=0.5) == {0: 10, 2: 12, 1: 13}
    # No history: ids in row order.
    assert assign_stable_labels(new, None, max_shift=0.5) == {0: 0, 1: 1, 2: 2, 3: 3}


def test_ids_stable_across_runs_on_new_data() -> None:
    features, truth = _features(seed=0)
    first = segment_behaviour(features, CONFIG)
    # Next month: fresh noise, rows shuffled. Same groups must keep the same ids.
    later, later_truth = _features(seed=1)
    later = later.sample(frac=1.0, random_state=5)
    second = segment_behaviour(later, CONFIG, previous_centroids=first.centroids)
    for group in GROUPS:
        assert first.labels[truth == group].iloc[0] == second.labels[later_truth == group].iloc[0]
    # Drop the largest group: the others still keep their ids.
    kept = later_truth[later_truth != "bargain"].index
    third = segment_behaviour(later.loc[kept], dataclasses.replace(CONFIG, k_max=3), first.centroids)
    assert set(third.labels.unique()) == {1, 2}


def test_reproducible_and_nan_tolerant() -> None:
    features, _ = _features()
    features.iloc[0, 0] = np.nan
    features.iloc[5, 2] = np.nan
    a = segment_behaviour(features, CONFIG)
    b = segment_behaviour(features, CONFIG)
    pd.testing.assert_series_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.profiles, b.profiles)
    filled = prepare_features(features, CONFIG.feature_names)
    assert filled.iloc[0, 0] == features.iloc[:, 0].median()


def test_sampled_silhouette_and_degenerate_data() -> None:
    features, _ = _features()
    sampled = segment_behaviour(features, dataclasses.replace(CONFIG, silhouette_sample_size=100))
    assert sampled.k == 3  # 300 rows > 100: silhouette on a fixed sample still finds the groups
    same = pd.DataFrame(1.0, index=["a", "b", "c", "d"], columns=CONFIG.feature_names)
    flat = segment_behaviour(same, CONFIG)
    assert flat.k == 1 and flat.labels.eq(0).all() and flat.profiles.loc[0, "label"] == "average"
