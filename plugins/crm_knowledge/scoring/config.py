"""Load and validate ``config/scoring.yml``.

Scoring parameters live in one reviewed file rather than in code so that a business change (another AUC floor,
other tier cut points) is a config change. Validation is strict -- unknown keys, missing keys and wrong types
are errors naming the file and the dotted key -- because a silently ignored typo would change published scores
without anyone noticing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm_knowledge.config_reader import ConfigError, ConfigReader, load_yaml_file
from crm_knowledge.settings import get_settings

#: Every segment name the RFM grid may use; a name outside this set is almost certainly a typo.
RFM_SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
)

CHURN_CLASSIFIERS = ("hist_gradient_boosting", "logistic_regression")
CALIBRATION_METHODS = ("isotonic", "sigmoid")


class ScoringConfigError(ConfigError):
    """The scoring config is invalid; the message names the file and the offending key."""


@dataclass(frozen=True)
class RFMConfig:
    """``grid[r_score]`` is a 5-tuple of segment names indexed by ``fm_score - 1``."""

    grid: Mapping[int, tuple[str, ...]]


@dataclass(frozen=True)
class BehaviourFeature:
    """A clustering feature and the words describing a cluster well above (high) or below (low) the mean."""

    name: str
    high: str
    low: str


@dataclass(frozen=True)
class BehaviourConfig:
    features: tuple[BehaviourFeature, ...]
    k_min: int
    k_max: int
    silhouette_sample_size: int
    n_init: int
    random_state: int
    max_centroid_shift: float
    profile_z_threshold: float
    profile_max_terms: int

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


@dataclass(frozen=True)
class ChurnConfig:
    horizon_days: int
    training_cutoff_offsets_days: tuple[int, ...]
    evaluation_cutoff_offset_days: int
    classifier: str
    calibration: str
    calibration_folds: int
    auc_floor: float
    random_state: int
    #: Training snapshots (customer x cut-off rows) kept, drawn at random with `random_state`: training cost
    #: stops growing with the customer base (at 1M customers 7 cut-offs are ~3M rows; a sample of 200k fits
    #: the same shallow trees). 0: every snapshot.
    max_training_rows: int = 0


@dataclass(frozen=True)
class CLVConfig:
    horizon_weeks: int
    annual_discount_rate: float


@dataclass(frozen=True)
class Tier:
    name: str
    min_quantile: float


@dataclass(frozen=True)
class RefitConfig:
    """When a daily scoring run refits the models instead of applying the last fitted ones: at least every
    `every_days` days (and on the weekly full run), or when the share of scored customers whose inputs
    changed since the fit (the drift measure) reaches `max_changed_share`."""

    every_days: int = 7
    max_changed_share: float = 0.25


@dataclass(frozen=True)
class ScoringConfig:
    rfm: RFMConfig
    behaviour: BehaviourConfig
    churn: ChurnConfig
    clv: CLVConfig
    tiers: tuple[Tier, ...]
    refit: RefitConfig = RefitConfig()


# --- validation helpers ---------------------------------------------------------------------------------------


class _Reader(ConfigReader):
    """Reads one mapping of scoring.yml (see :class:`~crm_knowledge.config_reader.ConfigReader`)."""

    error = ScoringConfigError


def _parse_rfm(r: _Reader) -> RFMConfig:
    r.expect_keys(["grid"])
    grid_reader = r.child("grid")
    expected_rows = [5, 4, 3, 2, 1]
    for k in grid_reader.data:
        if k not in expected_rows:
            grid_reader.fail(grid_reader.key(k), "is unknown (rows are the R scores 1..5)")
    grid: dict[int, tuple[str, ...]] = {}
    for r_score in expected_rows:
        if r_score not in grid_reader.data:
            grid_reader.fail(grid_reader.key(r_score), "is missing (one row per R score 1..5)")
        row = grid_reader.data[r_score]
        if not isinstance(row, list) or len(row) != 5:
            grid_reader.fail(grid_reader.key(r_score), "must list 5 segments, one per FM score 1..5")
        for name in row:
            if name not in RFM_SEGMENTS:
                grid_reader.fail(grid_reader.key(r_score), f"names unknown segment {name!r}")
        grid[r_score] = tuple(row)
    return RFMConfig(grid=grid)


def _parse_behaviour(r: _Reader) -> BehaviourConfig:
    r.expect_keys(
        [
            "features",
            "k_min",
            "k_max",
            "silhouette_sample_size",
            "n_init",
            "random_state",
            "max_centroid_shift",
            "profile_z_threshold",
            "profile_max_terms",
        ]
    )
    features = []
    for i, item in enumerate(r.list_("features")):
        fr = _Reader(item, r.source, f"{r.key('features')}[{i}]")
        fr.expect_keys(["name", "high", "low"])
        features.append(BehaviourFeature(fr.str_("name"), fr.str_("high"), fr.str_("low")))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        r.fail(r.key("features"), "lists a feature name twice")
    k_min, k_max = r.int_("k_min", 2), r.int_("k_max", 2)
    if k_max < k_min:
        r.fail(r.key("k_max"), f"must be >= k_min ({k_min}), got {k_max}")
    return BehaviourConfig(
        features=tuple(features),
        k_min=k_min,
        k_max=k_max,
        silhouette_sample_size=r.int_("silhouette_sample_size", 100),
        n_init=r.int_("n_init", 1),
        random_state=r.int_("random_state", 0),
        max_centroid_shift=r.float_("max_centroid_shift", 0.0),
        profile_z_threshold=r.float_("profile_z_threshold", 0.0),
        profile_max_terms=r.int_("profile_max_terms", 1),
    )


def _parse_churn(r: _Reader) -> ChurnConfig:
    r.expect_keys(
        [
            "horizon_days",
            "training_cutoff_offsets_days",
            "evaluation_cutoff_offset_days",
            "classifier",
            "calibration",
            "calibration_folds",
            "auc_floor",
            "random_state",
        ],
        ["max_training_rows"],
    )
    horizon = r.int_("horizon_days", 1)
    eval_offset = r.int_("evaluation_cutoff_offset_days", 0)
    if eval_offset < horizon:
        r.fail(
            r.key("evaluation_cutoff_offset_days"),
            f"must be >= horizon_days ({horizon}) so evaluation labels are known at as_of, got {eval_offset}",
        )
    offsets = r.list_("training_cutoff_offsets_days")
    for off in offsets:
        if isinstance(off, bool) or not isinstance(off, int):
            r.fail(r.key("training_cutoff_offsets_days"), f"must hold integers, got {off!r}")
        if off < eval_offset + horizon:
            r.fail(
                r.key("training_cutoff_offsets_days"),
                f"holds {off}, but each offset must be >= evaluation_cutoff_offset_days + horizon_days "
                f"({eval_offset + horizon}) so training labels end before the evaluation cut-off",
            )
    if len(set(offsets)) != len(offsets):
        r.fail(r.key("training_cutoff_offsets_days"), "holds an offset twice")
    return ChurnConfig(
        horizon_days=horizon,
        training_cutoff_offsets_days=tuple(sorted(offsets)),
        evaluation_cutoff_offset_days=eval_offset,
        classifier=r.str_("classifier", CHURN_CLASSIFIERS),
        calibration=r.str_("calibration", CALIBRATION_METHODS),
        calibration_folds=r.int_("calibration_folds", 2),
        auc_floor=r.float_("auc_floor", 0.0, 1.0),
        random_state=r.int_("random_state", 0),
        max_training_rows=r.int_("max_training_rows", 0) if r.has("max_training_rows") else 0,
    )


def _parse_clv(r: _Reader) -> CLVConfig:
    r.expect_keys(["horizon_weeks", "annual_discount_rate"])
    return CLVConfig(
        horizon_weeks=r.int_("horizon_weeks", 1),
        annual_discount_rate=r.float_("annual_discount_rate", 0.0, 1.0),
    )


def _parse_tiers(top: _Reader) -> tuple[Tier, ...]:
    tiers = []
    for i, item in enumerate(top.list_("tiers")):
        tr = _Reader(item, top.source, f"{top.key('tiers')}[{i}]")
        tr.expect_keys(["name", "min_quantile"])
        tiers.append(Tier(tr.str_("name"), tr.float_("min_quantile", 0.0, 1.0)))
    quantiles = [t.min_quantile for t in tiers]
    if any(a <= b for a, b in zip(quantiles, quantiles[1:], strict=False)):
        top.fail(top.key("tiers"), "must list min_quantile strictly decreasing")
    if quantiles[-1] != 0.0:
        top.fail(f"{top.key('tiers')}[{len(tiers) - 1}].min_quantile", "must be 0 (the floor)")
    return tuple(tiers)


def _parse_refit(r: _Reader) -> RefitConfig:
    r.expect_keys(["every_days", "max_changed_share"])
    return RefitConfig(every_days=r.int_("every_days", 1),
                       max_changed_share=r.float_("max_changed_share", 0.0, 1.0))


def parse_scoring_config(data: Any, source: str = "<scoring config>") -> ScoringConfig:
    """Validate an already-parsed YAML document; ``source`` is used in error messages."""
    top = _Reader(data, source, "")
    top.expect_keys(["rfm", "behaviour", "churn", "clv", "tiers"], ["refit"])
    return ScoringConfig(
        rfm=_parse_rfm(top.child("rfm")),
        behaviour=_parse_behaviour(top.child("behaviour")),
        churn=_parse_churn(top.child("churn")),
        clv=_parse_clv(top.child("clv")),
        tiers=_parse_tiers(top),
        refit=_parse_refit(top.child("refit")) if top.has("refit") else RefitConfig(),
    )


def load_scoring_config(path: Path | str | None = None) -> ScoringConfig:
    """Read and validate the scoring config (default ``config/scoring.yml``)."""
    path = Path(path) if path is not None else get_settings().scoring_file
    data = load_yaml_file(path, ScoringConfigError, "scoring config")
    return parse_scoring_config(data, str(path))
