"""Behavioural segments: KMeans on standardised behaviour features, with ids that stay stable across runs.

Why each step:
* Features are standardised (StandardScaler) so a feature measured in money does not outweigh one measured
  in counts; missing values are imputed with the column median so a customer without, e.g., any contact
  history is placed with typical customers rather than dropped.
* k is chosen over the configured range by the highest mean silhouette score (ties: the smaller k, the
  simpler model). Silhouette is O(n^2) and fitting one model per candidate k is O(n * k range), so above
  ``silhouette_sample_size`` rows k is chosen on a fixed random sample (deterministic through
  ``random_state``); the final model with that k is fitted on every row.
* KMeans numbers its clusters arbitrarily, and downstream users (campaign lists, dashboards) key on the
  cluster id. :func:`assign_stable_labels` matches new centroids to last run's centroids (Hungarian algorithm
  on Euclidean distance in standard-deviation units) so a cluster that barely moved keeps its id.
* Each cluster gets a readable profile ("frequent, high basket, complains often") from centroid z-scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from crm_knowledge.scoring.config import BehaviourConfig


def prepare_features(features: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """The configured columns as floats, NaN replaced by the column median (0 if a column is all NaN)."""
    missing = [c for c in feature_names if c not in features.columns]
    if missing:
        raise KeyError(f"behaviour features frame lacks configured column(s) {missing}")
    frame = features.loc[:, feature_names].astype(float)
    medians = frame.median(skipna=True).fillna(0.0)
    return frame.fillna(medians)


def choose_k(
    X: np.ndarray, k_min: int, k_max: int, n_init: int, random_state: int, sample_size: int
) -> tuple[int, dict[int, float]]:
    """The k in [k_min, k_max] with the highest mean silhouette; returns (k, {k: silhouette}).

    k values that cannot be scored (k >= number of distinct points) are skipped; when none can, k = 1.
    """
    if len(X) > sample_size:
        # k is chosen on a fixed random sample: fitting k_max - k_min + 1 models on every customer costs
        # minutes at a million customers, and the sample's best k is the population's (same distribution).
        # The final model is still fitted on all rows (segment_behaviour).
        rng = np.random.default_rng(random_state)
        X = X[np.sort(rng.choice(len(X), size=sample_size, replace=False))]
    n_distinct = len(np.unique(X, axis=0))
    scores: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        if k >= n_distinct:
            break
        labels = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit_predict(X)
        scores[k] = float(silhouette_score(X, labels))
    if not scores:
        return 1, scores
    best = max(scores.values())
    return min(k for k, s in scores.items() if s == best), scores


def _as_frame(centroids: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    return centroids if isinstance(centroids, pd.DataFrame) else pd.DataFrame(np.asarray(centroids, dtype=float))


def assign_stable_labels(
    new_centroids: pd.DataFrame | np.ndarray,
    previous_centroids: pd.DataFrame | np.ndarray | None,
    max_shift: float,
) -> dict[int, int]:
    """Map each new cluster (row label of ``new_centroids``) to a stable id.

    Rows of ``previous_centroids`` are indexed by their stable ids; both must be in the same space (callers
    pass standardised coordinates). The one-to-one assignment minimising total distance is found with the
    Hungarian algorithm; a new cluster inherits the previous id when its matched distance is <= ``max_shift``.
    Unmatched or moved-too-far clusters get fresh ids after the largest previous id, in row order, so an id
    never silently changes meaning.
    """
    new = _as_frame(new_centroids)
    if previous_centroids is None or len(_as_frame(previous_centroids)) == 0:
        return {int(label): i for i, label in enumerate(new.index)}
    prev = _as_frame(previous_centroids)
    next_id = int(max(prev.index)) + 1
    mapping: dict[int, int] = {}
    if list(prev.columns) == list(new.columns):
        cost = np.linalg.norm(new.to_numpy()[:, None, :] - prev.to_numpy()[None, :, :], axis=2)
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows, cols, strict=True):
            if cost[i, j] <= max_shift:
                mapping[int(new.index[i])] = int(prev.index[j])
    for label in new.index:
        if int(label) not in mapping:
            mapping[int(label)] = next_id
            next_id += 1
    return mapping


def profile_label(z: pd.Series, config: BehaviourConfig) -> str:
    """Readable text from a centroid's z-scores: the strongest deviations first, at most max_terms words."""
    words = {f.name: (f.high, f.low) for f in config.features}
    strong = z[z.abs() >= config.profile_z_threshold]
    strong = strong.reindex(strong.abs().sort_values(ascending=False, kind="stable").index)
    terms = [words[name][0] if value > 0 else words[name][1] for name, value in strong.items()]
    return ", ".join(terms[: config.profile_max_terms]) or "average"


@dataclass(frozen=True)
class BehaviourSegmentation:
    """Result of one clustering run.

    ``labels``: stable cluster id per customer. ``centroids``: cluster means in original feature units, index
    = stable id -- persist these and pass them as ``previous_centroids`` next run. ``profiles``: cluster_id,
    size, share, the centroid features, their z-scores (``z_<feature>``) and ``label``. ``silhouette``:
    score per k tried.
    """

    labels: pd.Series
    centroids: pd.DataFrame
    profiles: pd.DataFrame
    k: int
    silhouette: dict[int, float]
    model: BehaviourModel | None = None


@dataclass(frozen=True)
class BehaviourModel:
    """What assigning a customer to a fitted cluster needs: the fit's imputation medians, its scaler and the
    KMeans centres in standardised units (index = stable id). :func:`assign_clusters` applies it to any rows,
    one customer's cluster depending on that customer's features only."""

    feature_names: tuple[str, ...]
    medians: dict[str, float]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    centers: pd.DataFrame


def assign_clusters(features: pd.DataFrame, model: BehaviourModel) -> pd.Series:
    """Stable cluster id of each row of `features`: the nearest fitted centre (ties: the lower id)."""
    names = list(model.feature_names)
    missing = [c for c in names if c not in features.columns]
    if missing:
        raise KeyError(f"behaviour features frame lacks configured column(s) {missing}")
    frame = features.loc[:, names].astype(float).fillna(pd.Series(model.medians)).fillna(0.0)
    X = (frame.to_numpy() - np.asarray(model.mean)) / np.asarray(model.scale)
    centers = model.centers.sort_index()
    dist = ((X[:, None, :] - centers.to_numpy()[None, :, :]) ** 2).sum(axis=2)
    ids = centers.index.to_numpy()[np.argmin(dist, axis=1)] if len(X) else np.array([], dtype=int)
    return pd.Series(ids.astype(int), index=features.index, name="cluster_id")


def segment_behaviour(
    features: pd.DataFrame,
    config: BehaviourConfig,
    previous_centroids: pd.DataFrame | None = None,
) -> BehaviourSegmentation:
    """Cluster customers (rows of ``features``, index customer_id) on the configured behaviour features.

    ``previous_centroids`` (original units, index = stable id, columns = feature names) keeps ids stable; it
    is standardised with *this* run's scaler so distances are in today's standard deviations.
    """
    names = config.feature_names
    frame = prepare_features(features, names).sort_index(kind="stable")
    if frame.empty:
        raise ValueError("cannot cluster an empty behaviour features frame")
    scaler = StandardScaler().fit(frame.to_numpy())
    X = scaler.transform(frame.to_numpy())

    k, scores = choose_k(
        X, config.k_min, config.k_max, config.n_init, config.random_state, config.silhouette_sample_size
    )
    if k == 1:
        raw_labels = np.zeros(len(X), dtype=int)
        centers = X.mean(axis=0, keepdims=True)
    else:
        model = KMeans(n_clusters=k, n_init=config.n_init, random_state=config.random_state).fit(X)
        raw_labels, centers = model.labels_, model.cluster_centers_

    new_centers = pd.DataFrame(centers, columns=names)
    if previous_centroids is None or len(previous_centroids) == 0:
        # First run: number clusters by size (largest = 0) so ids do not depend on KMeans' internal order.
        sizes = np.bincount(raw_labels, minlength=k)
        order = sorted(range(k), key=lambda i: (-sizes[i], i))
        mapping = {raw: new_id for new_id, raw in enumerate(order)}
    else:
        prev = previous_centroids.reindex(columns=names)
        prev_scaled = pd.DataFrame(
            scaler.transform(prev.fillna(frame.median()).to_numpy()), index=prev.index, columns=names
        )
        if list(previous_centroids.columns) != names:
            prev_scaled = prev_scaled.set_axis([f"_old_{c}" for c in names], axis=1)  # features changed
        mapping = assign_stable_labels(new_centers, prev_scaled, config.max_centroid_shift)

    labels = pd.Series([mapping[int(v)] for v in raw_labels], index=frame.index, name="cluster_id")
    centroids = frame.groupby(labels.to_numpy()).mean().sort_index()
    centroids.index.name = "cluster_id"
    z = pd.DataFrame(scaler.transform(centroids.to_numpy()), index=centroids.index, columns=names)
    sizes = labels.value_counts().reindex(centroids.index)

    profiles = pd.DataFrame({"cluster_id": centroids.index, "size": sizes.to_numpy()})
    profiles["share"] = profiles["size"] / len(frame)
    for name in names:
        profiles[name] = centroids[name].to_numpy()
    for name in names:
        profiles[f"z_{name}"] = z[name].to_numpy()
    profiles["label"] = [profile_label(z.loc[cid], config) for cid in centroids.index]
    medians = features.loc[:, names].astype(float).median(skipna=True).fillna(0.0)
    model_out = BehaviourModel(
        feature_names=tuple(names), medians={n: float(medians[n]) for n in names},
        mean=tuple(float(v) for v in scaler.mean_), scale=tuple(float(v) for v in scaler.scale_),
        centers=pd.DataFrame(centers, index=[mapping[i] for i in range(len(centers))], columns=names),
    )
    return BehaviourSegmentation(
        labels=labels, centroids=centroids, profiles=profiles.reset_index(drop=True), k=k, silhouette=scores,
        model=model_out,
    )
