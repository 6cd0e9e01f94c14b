"""Churn risk: a calibrated classifier of "no purchase in the next N days", trained on past cut-offs.

Time travel is the whole point: for a cut-off c the features use only orders on or before c and the label
only orders in (c, c + N]. Training cut-offs lie ``training_cutoff_offsets_days`` before as_of and the
evaluation cut-off ``evaluation_cutoff_offset_days`` before it; config validation guarantees every training
label window ends on or before the evaluation cut-off and the evaluation label window ends on or before
as_of, so nothing after as_of is ever read and the evaluation never sees its own labels during training.

Probabilities are calibrated (isotonic or sigmoid, CalibratedClassifierCV) because downstream rules use them
as probabilities ("contact if risk > 0.4"), not just as a ranking. A model whose evaluation ROC AUC is below
the configured floor is not usable: :meth:`ChurnModel.predict_proba` raises :class:`ModelBelowFloor` so the
pipeline cannot publish scores that are no better than guessing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from crm_knowledge.scoring.config import ChurnConfig
from crm_knowledge.scoring.features import as_date, customer_summary, orders_as_of

FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "x",
    "mean_gap_days",
    "recency_gap_ratio",
)


#: OpenMP threads for model fitting/scoring. One, deliberately: the data are small (one row per customer per
#: cut-off), and on a shared Airflow worker multi-threaded HistGradientBoosting spin-waits against other
#: tasks -- measured 10x slower than single-threaded on a busy 2-core host. Results do not depend on it.
N_THREADS = 1


class ChurnModelError(Exception):
    """Base class of churn model failures the caller should handle (not publish scores)."""


class InsufficientTrainingData(ChurnModelError):
    """Training data cannot support a model (no customers, or only one label class)."""


class ModelBelowFloor(ChurnModelError):
    """The model's evaluation ROC AUC is below the configured floor (or undefined); scores must not be used."""


def churn_features(summary: pd.DataFrame) -> pd.DataFrame:
    """Model features from a :func:`customer_summary`; only summary columns, so training and scoring agree.

    ``mean_gap_days`` (average days between purchase days) and ``recency_gap_ratio`` (recency / mean gap:
    "how overdue is the next purchase") are NaN for one-time buyers; the classifiers handle NaN.
    """
    out = summary.loc[:, ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days", "x"]]
    out = out.astype(float)
    x = summary["x"].astype(float)
    gap = (summary["t_x"].astype(float) * 7.0 / x).where(x > 0)
    out["mean_gap_days"] = gap
    out["recency_gap_ratio"] = summary["recency_days"].astype(float) / gap
    return out.loc[:, list(FEATURES)]


def labelled_snapshot(orders: pd.DataFrame, cutoff: dt.date, horizon_days: int) -> pd.DataFrame:
    """Features at ``cutoff`` for customers with an order by then, plus ``churned`` = 1 when they placed no
    order in (cutoff, cutoff + horizon_days]. Index customer_id; column ``cutoff`` records the snapshot."""
    cutoff = as_date(cutoff)
    summary = customer_summary(orders, cutoff)
    features = churn_features(summary)
    window_end = cutoff + dt.timedelta(days=horizon_days)
    later = orders_as_of(orders, window_end)
    later = later.loc[later["ordered_at"] >= pd.Timestamp(cutoff).tz_localize("UTC") + pd.Timedelta(days=1)]
    bought = features.index.isin(later["customer_id"].unique())
    features["churned"] = (~bought).astype(int)
    features["cutoff"] = pd.Timestamp(cutoff)
    return features


def training_set(orders: pd.DataFrame, cutoffs: list[dt.date], horizon_days: int) -> pd.DataFrame:
    """Stacked labelled snapshots (one row per customer per cut-off), oldest cut-off first."""
    frames = [labelled_snapshot(orders, c, horizon_days) for c in sorted(cutoffs)]
    return pd.concat(frames) if frames else pd.DataFrame(columns=[*FEATURES, "churned", "cutoff"])


def bounded_sample(train: pd.DataFrame, max_rows: int, random_state: int) -> pd.DataFrame:
    """At most `max_rows` rows of a training set (0: all), drawn at random with a fixed seed and kept in their
    original order, so the same data always give the same sample and model. Every cut-off stays represented
    in proportion to its size."""
    if not max_rows or len(train) <= max_rows:
        return train
    rng = np.random.default_rng(random_state)
    keep = np.sort(rng.choice(len(train), size=max_rows, replace=False))
    return train.iloc[keep]


def reliability_table(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Observed churn rate per equal-width bin of predicted probability (empty bins omitted).

    A calibrated model has ``mean_predicted`` close to ``observed_rate`` in each bin.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(y_prob, edges[1:-1], right=False), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": y_prob, "y": y_true})
    table = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"), n=("y", "size"))
    table.insert(0, "bin_low", edges[table.index])
    table.insert(1, "bin_high", edges[table.index + 1])
    return table.reset_index(drop=True)


def precision_at_top(y_true: np.ndarray, y_prob: np.ndarray, share: float = 0.1) -> float:
    """Churn rate among the ``share`` of customers with the highest predicted risk (ties: first in order,
    after a stable sort, so the value is deterministic)."""
    n_top = max(1, int(np.ceil(len(y_prob) * share)))
    order = np.argsort(-y_prob, kind="stable")[:n_top]
    return float(np.mean(y_true[order]))


@dataclass(frozen=True)
class ChurnEvaluation:
    """Metrics of the model on one cut-off it was not trained on."""

    cutoff: dt.date
    n: int
    base_rate: float
    roc_auc: float
    precision_at_top_decile: float
    brier: float
    reliability: pd.DataFrame

    def metrics(self) -> dict[str, float | int | str]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "n": self.n,
            "base_rate": round(self.base_rate, 4),
            "roc_auc": round(self.roc_auc, 4),
            "precision_at_top_decile": round(self.precision_at_top_decile, 4),
            "brier": round(self.brier, 4),
        }


class ChurnModel:
    """Calibrated churn classifier with a usability gate.

    ``fit(orders, as_of)`` trains on the configured past cut-offs and evaluates on the later evaluation
    cut-off; ``is_usable`` says whether that evaluation cleared ``auc_floor``. The evaluated model is the one
    used for scoring (it is not refit on the evaluation window) so the published metrics describe it exactly.
    """

    def __init__(self, config: ChurnConfig) -> None:
        self.config = config
        self.model: CalibratedClassifierCV | None = None
        self.evaluation: ChurnEvaluation | None = None
        self.as_of: dt.date | None = None
        self.training_rows_available = 0  # snapshots before the bounded sample (config max_training_rows)

    # --- cut-offs ---------------------------------------------------------------------------------------------
    def training_cutoffs(self, as_of: dt.date) -> list[dt.date]:
        return sorted(as_date(as_of) - dt.timedelta(days=d) for d in self.config.training_cutoff_offsets_days)

    def evaluation_cutoff(self, as_of: dt.date) -> dt.date:
        return as_date(as_of) - dt.timedelta(days=self.config.evaluation_cutoff_offset_days)

    # --- training ---------------------------------------------------------------------------------------------
    def _estimator(self) -> HistGradientBoostingClassifier | Pipeline:
        cfg = self.config
        if cfg.classifier == "hist_gradient_boosting":
            # Shallow, regularised trees: churn signals are few and smooth; deep trees overfit small shops.
            return HistGradientBoostingClassifier(
                max_iter=150, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                l2_regularization=1.0, early_stopping=False, random_state=cfg.random_state,
            )
        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True),
            StandardScaler(),
            LogisticRegression(max_iter=1000, random_state=cfg.random_state),
        )

    def fit(self, orders: pd.DataFrame, as_of: dt.date) -> ChurnModel:
        """Train on snapshots at the training cut-offs, then evaluate at the evaluation cut-off."""
        self.as_of = as_date(as_of)
        train = training_set(orders, self.training_cutoffs(self.as_of), self.config.horizon_days)
        if len(train) == 0 or train["churned"].nunique() < 2:
            raise InsufficientTrainingData(
                f"churn training set at as_of={self.as_of} has {len(train)} rows and "
                f"{train['churned'].nunique() if len(train) else 0} label class(es); need both classes"
            )
        self.training_rows_available = len(train)
        train = bounded_sample(train, self.config.max_training_rows, self.config.random_state)
        n_minority = int(train["churned"].value_counts().min())
        folds = min(self.config.calibration_folds, n_minority)
        if folds < 2:
            raise InsufficientTrainingData(f"only {n_minority} example(s) of the minority class to calibrate on")
        self.model = CalibratedClassifierCV(self._estimator(), method=self.config.calibration, cv=folds)
        with threadpool_limits(limits=N_THREADS):
            self.model.fit(train.loc[:, list(FEATURES)], train["churned"].to_numpy())
        self.evaluation = self.evaluate(orders, self.evaluation_cutoff(self.as_of))
        return self

    def evaluate(self, orders: pd.DataFrame, cutoff: dt.date) -> ChurnEvaluation:
        """Metrics on the labelled snapshot at ``cutoff`` (its labels read orders up to cutoff + horizon)."""
        if self.model is None:
            raise RuntimeError("fit the churn model before evaluating it")
        snap = labelled_snapshot(orders, cutoff, self.config.horizon_days)
        y = snap["churned"].to_numpy()
        p = self._raw_proba(snap.loc[:, list(FEATURES)]) if len(snap) else np.array([])
        two_classes = len(np.unique(y)) == 2
        return ChurnEvaluation(
            cutoff=as_date(cutoff),
            n=len(y),
            base_rate=float(np.mean(y)) if len(y) else float("nan"),
            roc_auc=float(roc_auc_score(y, p)) if two_classes else float("nan"),
            precision_at_top_decile=precision_at_top(y, p) if len(y) else float("nan"),
            brier=float(brier_score_loss(y, p)) if len(y) else float("nan"),
            reliability=reliability_table(y, p),
        )

    # --- gate and scoring -------------------------------------------------------------------------------------
    @property
    def is_usable(self) -> bool:
        """True when the evaluation ROC AUC is defined and at least ``auc_floor``."""
        return self.evaluation is not None and bool(self.evaluation.roc_auc >= self.config.auc_floor)

    def check_usable(self) -> None:
        """Raise :class:`ModelBelowFloor`, with the evaluation metrics, unless the model is usable."""
        if self.evaluation is None:
            raise ModelBelowFloor("churn model has not been fitted and evaluated")
        if not self.is_usable:
            raise ModelBelowFloor(
                f"churn model ROC AUC {self.evaluation.roc_auc:.4f} is below the floor {self.config.auc_floor} "
                f"(as_of={self.as_of}); metrics: {self.evaluation.metrics()}"
            )

    def _raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        assert self.model is not None
        with threadpool_limits(limits=N_THREADS):
            proba = self.model.predict_proba(features)
        return proba[:, list(self.model.classes_).index(1)]

    def predict_proba(self, summary: pd.DataFrame, allow_below_floor: bool = False) -> pd.Series:
        """Calibrated P(no purchase in the next ``horizon_days``) per customer of a :func:`customer_summary`.

        Raises :class:`ModelBelowFloor` unless the model is usable; ``allow_below_floor=True`` is for
        diagnostics only, never for published scores.
        """
        if not allow_below_floor:
            self.check_usable()
        if self.model is None:
            raise RuntimeError("fit the churn model before predicting")
        if summary.empty:
            return pd.Series(dtype=float, index=summary.index, name="churn_probability")
        proba = self._raw_proba(churn_features(summary))
        return pd.Series(proba, index=summary.index, name="churn_probability")
