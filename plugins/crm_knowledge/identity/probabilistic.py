"""Probabilistic matching with Splink 5 (Fellegi-Sunter).

* Backend from config (`probabilistic.backend`: duckdb here, spark for big installations); everything
  else is backend-neutral Splink.
* Comparisons: first and last name (same spelling > same romanised key > both fields *swapped*, so
  "Ali Rezaei" and "Rezaei Ali" agree, also with typos > the same-script spelling one edit apart >
  Jaro-Winkler bands > keys one edit apart; the fuzzy levels only for keys of `fuzzy_min_length`+ letters),
  birth date (exact > one typo or day and month swapped > within a month / year), postcode (exact, area
  prefix), city, the street address, every declared identifier kind; term-frequency adjustments on names,
  postcode and city. String distances sit behind cheap gates (:func:`GatedLevel`).
* Guards after scoring: agreement on a place field and on a person field, both names when the birth dates
  disagree outright, no conflicting national ids (:func:`_corroborated`, :func:`_veto`).
* Training: prior from deterministic rules, u by random sampling with a fixed seed, m by EM over the
  configured training blocking rules. Every level has a prior m/u, used when there are too few records
  to train or a training step fails (logged).
* Each pair above the threshold keeps the level and weight of every comparison (Splink's gamma_/mw_ columns,
  :mod:`crm_knowledge.identity.explanations`): the guards decide on them, and its `explanation` (JSON) is built
  from them when it is written.

Pairs whose records both carry a valid national id that differs are vetoed, and pairs that agree on
none of `require_agreement_on` (birth date, postcode) are dropped: name + city is what namesakes share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_knowledge.identity.config import BlockingRule, IdentifierKind, IdentityConfig
from crm_knowledge.identity.duckdb_session import DEFAULT_MEMORY_LIMIT
from crm_knowledge.identity.explanations import CORE_COLUMNS, Agreement, Labels, scored_pairs

log = logging.getLogger(__name__)

#: a pair with its explanation text (the Spark backend's pairs; in this process a pair keeps its scores instead:
#: explanations.scored_pairs)
PAIR_COLUMNS = [*CORE_COLUMNS, "explanation"]
#: one row per comparison level of a trained model (identity.match_weights)
PARAMETER_COLUMNS = ["comparison", "comparison_vector_value", "label", "m_probability", "u_probability",
                     "match_weight"]
MODEL_COLUMNS = ["unique_id", "first_key", "last_key", "first_text", "last_text", "birth_date", "birth_year",
                 "postcode", "postcode_prefix", "city_key", "street_key", "house_number", "address_line2_key"]
#: parts of the street address compared (one comparison, `address`) when a source maps them (config switch)
ADDRESS_COLUMNS = {"street_key": "street_enabled", "house_number": "house_number_enabled",
                   "address_line2_key": "address_line2_enabled"}
#: the records' street and house number agree (both present): the postcode and city are implied by it
SAME_STREET_ADDRESS = "street_key_l = street_key_r and house_number_l = house_number_r"
#: rows of Splink's predictions converted at a time (ProbabilisticModel._finish)
PREDICTION_BATCH_ROWS = 250_000
#: lower bound of trained m probabilities (see ProbabilisticModel._floor_m)
M_FLOOR = 1e-4
def optional_columns(prepared: pd.DataFrame, config: IdentityConfig) -> list[str]:
    """Address details and identifier kinds the model compares: switched on in config and present on at
    least one record (a kind no source maps adds no comparison, so the demo's model is what it was)."""
    p = config.probabilistic
    cols = [c for c, switch in ADDRESS_COLUMNS.items() if getattr(p, switch)]
    cols += [k.column for k in config.identifiers if k.probabilistic]
    return [c for c in cols if c in prepared.columns and prepared[c].notna().any()]


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({"rid_l": pd.Series(dtype="int64"), "rid_r": pd.Series(dtype="int64"),
                         "match_probability": pd.Series(dtype="float64"),
                         "match_weight": pd.Series(dtype="float64")})


def eligible(prepared: pd.DataFrame, config: IdentityConfig) -> pd.Series:
    """Records with enough fields for probabilistic matching: a name and one of `required_any`."""
    cols = {"birth_date": "birth_date", "postcode": "postcode", "city": "city_key", "address": "street_key"}
    any_req = np.zeros(len(prepared), dtype=bool)
    for r in config.probabilistic.required_any:
        any_req |= prepared[cols[r]].notna().to_numpy()
    return pd.Series(prepared["has_name"].to_numpy() & any_req, index=prepared.index)


# --- backend -------------------------------------------------------------------------------------


def make_db_api(backend: str, memory_limit: str = DEFAULT_MEMORY_LIMIT, spark=None):
    """A Splink database API for `backend` (the only backend-specific code of the model).

    DuckDB gets a memory limit and a private spill folder (:mod:`crm_knowledge.identity.duckdb_session`): by
    default it would take 80% of the machine's memory, next to the pandas frames of a million-customer run;
    above the limit it spills to disk. Spark: the session of `spark` (a
    :class:`crm_knowledge.identity.spark_session.SparkConfig`).
    """
    if backend == "duckdb":
        from splink import DuckDBAPI

        from crm_knowledge.identity.duckdb_session import open_connection

        return DuckDBAPI(open_connection(memory_limit))
    if backend == "spark":
        from crm_knowledge.identity.spark_session import SparkConfig, db_api

        return db_api(spark or SparkConfig())
    raise ValueError(f"unsupported Splink backend {backend!r}")


def _register(db_api, frame, name: str):
    """Register a frame with the backend: a pandas frame on either, a Spark DataFrame on Spark."""
    return db_api.register(frame, dataset_display_name=name)


def _close(db_api) -> None:
    """Close the backend's DuckDB connection (and remove its spill folder); a Spark session is stopped by
    store.run when the stage ends."""
    from crm_knowledge.identity.duckdb_session import close_connection

    con = getattr(db_api, "_con", None)
    if con is not None and hasattr(con, "close"):
        try:
            close_connection(con)
        except Exception:  # pragma: no cover
            log.warning("probabilistic: closing DuckDB failed", exc_info=True)


# --- model ---------------------------------------------------------------------------------------


def _rule(r: BlockingRule):
    from splink import block_on

    return r.sql if r.sql else block_on(*r.columns)


def _typo_prefilter(col: str) -> str:
    """A cheap condition every pair of values at most one edit apart (4+ letters) meets: the edit leaves the
    first two letters, the last two, or the first and the last alone. It spares the string distance on
    almost every random pair of the u sampling (2M pairs: 10x the run otherwise)."""
    return (f"(left({col}_l, 2) = left({col}_r, 2) or right({col}_l, 2) = right({col}_r, 2) "
            f"or (left({col}_l, 1) = left({col}_r, 1) and right({col}_l, 1) = right({col}_r, 1)))")


def _gated_level_class():
    from splink.internals.comparison_level_creator import ComparisonLevelCreator

    class _GatedLevel(ComparisonLevelCreator):
        """`condition` (SQL with ``{jw}`` / ``{dl}`` for the dialect's Jaro-Winkler and Damerau-Levenshtein
        functions), evaluated only for pairs meeting the cheap `gate`: ``case when gate then condition``.
        A string distance on every pair of the u sampling (2M random pairs, nearly all of which reach the
        last levels) would otherwise cost more than the rest of the run; the CASE makes the engine skip it."""

        def __init__(self, gate: str, condition: str, label: str):
            self.gate, self.condition, self.label = gate, condition, label

        def create_sql(self, sql_dialect) -> str:
            cond = self.condition.format(jw=sql_dialect.jaro_winkler_function_name,
                                         dl=sql_dialect.damerau_levenshtein_function_name)
            return f"(case when {self.gate} then ({cond}) else false end)"

        def create_label_for_charts(self) -> str:
            return self.label

    return _GatedLevel


def GatedLevel(gate: str, condition: str, label: str):  # noqa: N802 - reads like Splink's levels
    """A Splink comparison level computing `condition` only where the cheap `gate` holds (see _GatedLevel).
    Splink is imported lazily (heavy)."""
    return _gated_level_class()(gate, condition, label)


def _text_typo_level(text: str, p) -> object:
    """Same-script spelling within `name_text_edit_distance` edits, names of `name_text_edit_min_length`+."""
    k, d = p.name_text_edit_min_length, p.name_text_edit_distance
    gate = (f"length({text}_l) >= {k} and length({text}_r) >= {k} "
            f"and abs(length({text}_l) - length({text}_r)) <= {d}")
    if d == 1:
        gate += f" and {_typo_prefilter(text)}"
    return GatedLevel(gate, f"{{dl}}({text}_l, {text}_r) <= {d}", f"{text} within {d} edit(s) (typo)")


def _swapped_level(col: str, other: str, p) -> object:
    """Both name fields swapped: the same keys, or (`name_swapped_jaro_winkler` > 0) similar spellings."""
    import splink.comparison_level_library as cll

    exact = cll.ColumnsReversedLevel(col, other, symmetrical=True)
    if not p.name_swapped_jaro_winkler:
        return exact
    text, other_text = col.replace("_key", "_text"), other.replace("_key", "_text")
    return cll.Or(exact, _swapped_similar_level(text, other_text, p.name_swapped_jaro_winkler))


def _swapped_similar_level(a: str, b: str, t: float) -> object:
    """Both name fields swapped, each within Jaro-Winkler `t` of the other record's other field ("kpng miza" /
    "mia king"); Splink's ColumnsReversedLevel asks for equality. Gate: the same first or last letter (a name
    Jaro-Winkler finds this close to another rarely differs in both)."""
    gate = " and ".join(f"(left({x}_l, 1) = left({y}_r, 1) or right({x}_l, 1) = right({y}_r, 1))"
                        for x, y in ((a, b), (b, a)))
    return GatedLevel(gate, f"{{jw}}({a}_l, {b}_r) >= {t} and {{jw}}({b}_l, {a}_r) >= {t}",
                      f"{a} and {b} swapped, Jaro-Winkler >= {t}")


def _name_comparison(col: str, other: str, config: IdentityConfig):
    """Levels, strongest first: the same normalised name (same script), the same romanised key
    ("محمد" / "Mohammad", but also Hassan / Hossein), swapped with the other name field, Jaro-Winkler
    bands of the keys, keys one edit apart (a typo in a short name: "Sara" / "Sahar" keys sr / shr)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    p = config.probabilistic
    text = col.replace("_key", "_text")
    levels = [cll.NullLevel(col)]
    if p.name_exact_text:
        same_text = cll.ExactMatchLevel(text).configure(
            m_probability=0.6, u_probability=0.01, label_for_charts=f"Exact match on {text} (same spelling)")
        if p.name_tf:
            same_text.configure(tf_adjustment_column=col)
        levels.append(same_text)
    exact = cll.ExactMatchLevel(col).configure(m_probability=0.25 if p.name_exact_text else 0.85,
                                               u_probability=0.01 if p.name_exact_text else 0.02)
    if p.name_tf:
        exact.configure(tf_adjustment_column=col)
    levels += [
        exact,
        # both name fields swapped (or, `swapped_jaro_winkler`, swapped with typos: one level, as a level this
        # rare on its own keeps the u sampling from stopping early); one field equal to the other record's
        # other field is not enough (that is what a brother and sister's "Rezaei Amir" / "Roya Rezaei" share)
        _swapped_level(col, other, p).configure(
            m_probability=0.05, u_probability=0.0005, label_for_charts=f"{col} and {other} swapped"),
    ]
    # a typo in the same script: one edit of the spelling itself, in a name long enough for one edit not to
    # make another name ("olivr" / "oliver"; "olivia" / "oliver" are two edits apart but share the key "alr")
    if p.name_text_edit_distance:
        levels.append(_text_typo_level(text, p).configure(m_probability=0.05, u_probability=0.001))
    # fuzzy levels only for keys long enough for a string distance to mean something ("r" is Roya)
    n = p.name_fuzzy_min_length
    long_enough = cll.CustomLevel(f"length({col}_l) >= {n} and length({col}_r) >= {n}")
    for i, t in enumerate(sorted(p.name_jw_thresholds, reverse=True)):
        levels.append(cll.And(cll.JaroWinklerLevel(col, t), long_enough).configure(
            m_probability=0.04, u_probability=0.005 * (i + 1) ** 2,
            label_for_charts=f"Jaro-Winkler of {col} >= {t}"))
    if p.name_key_edit_distance:
        levels.append(cll.And(cll.LevenshteinLevel(col, p.name_key_edit_distance), long_enough).configure(
            m_probability=0.02, u_probability=0.03,
            label_for_charts=f"{col} within {p.name_key_edit_distance} edit(s)"))
    levels.append(cll.ElseLevel().configure(m_probability=0.03, u_probability=0.95))
    return cl.CustomComparison(levels, output_column_name=col)


def _birth_date_comparison(config: IdentityConfig):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    p = config.probabilistic
    levels = [
        cll.NullLevel("birth_date"),
        cll.ExactMatchLevel("birth_date").configure(m_probability=0.88, u_probability=0.0001),
        # one typo or two digits transposed (1984 / 1948), or day and month swapped (a month-first date read
        # day-first: 1990-06-10 / 1990-10-06). One level: a level this rare on its own keeps Splink's u
        # sampling from stopping early (it samples until every level was seen 100 times), 10x the time
        cll.Or(
            cll.DamerauLevenshteinLevel("birth_date", 1),
            GatedLevel("left(birth_date_l, 4) = left(birth_date_r, 4)",
                       "substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) "
                       "and substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)", "day and month swapped"),
        ).configure(m_probability=0.05, u_probability=0.002,
                    label_for_charts="birth_date one typo, or day and month swapped"),
    ]
    for i, (t, m) in enumerate(zip(p.birth_date_thresholds, p.birth_date_metrics, strict=True)):
        # ISO dates (prepare): each backend's default date format (DuckDB %Y-%m-%d, Spark yyyy-MM-dd)
        levels.append(cll.AbsoluteDateDifferenceLevel("birth_date", input_is_string=True, threshold=t, metric=m)
                      .configure(m_probability=0.03, u_probability=0.01 * (i + 1) ** 2,
                                 label_for_charts=f"birth_date within {t} {m}"))
    levels.append(cll.ElseLevel().configure(m_probability=0.02, u_probability=0.95))
    return cl.CustomComparison(levels, output_column_name="birth_date")


def _postcode_comparison(config: IdentityConfig):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    p = config.probabilistic
    exact = cll.ExactMatchLevel("postcode").configure(m_probability=0.8, u_probability=0.0005)
    if p.postcode_tf:
        exact.configure(tf_adjustment_column="postcode")
    # the postcode says nothing more once the street address (street and house number) agrees: counting both
    # would count one fact twice (Fellegi-Sunter assumes independent fields), so that pair is "no evidence" here
    levels = [cll.CustomLevel(f"postcode_l is null or postcode_r is null or ({SAME_STREET_ADDRESS})",
                              label_for_charts="postcode missing, or implied by the street address")
              .configure(is_null_level=True),
              exact,
              cll.DamerauLevenshteinLevel("postcode", 1).configure(
                  m_probability=0.05, u_probability=0.002, label_for_charts="postcode one typo or transposition")]
    for n in sorted(p.postcode_prefix_lengths, reverse=True):
        levels.append(cll.CustomLevel(f"substr(postcode_l, 1, {n}) = substr(postcode_r, 1, {n})",
                                      label_for_charts=f"postcode first {n} characters")
                      .configure(m_probability=0.1, u_probability=0.01))
    levels.append(cll.ElseLevel().configure(m_probability=0.1, u_probability=0.99))
    return cl.CustomComparison(levels, output_column_name="postcode")


def _city_comparison(config: IdentityConfig):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    exact = cll.ExactMatchLevel("city_key").configure(m_probability=0.9, u_probability=0.1)
    if config.probabilistic.city_tf:
        exact.configure(tf_adjustment_column="city_key")
    # likewise the city, once the postcode or the street address agrees
    implied = cll.CustomLevel(f"city_key_l is null or city_key_r is null or postcode_l = postcode_r "
                              f"or ({SAME_STREET_ADDRESS})",
                              label_for_charts="city missing, or implied by the postcode or street address")
    return cl.CustomComparison([implied.configure(is_null_level=True), exact,
                                cll.ElseLevel().configure(m_probability=0.1, u_probability=0.9)],
                               output_column_name="city_key")


def _address_comparison(columns: Sequence[str]):
    """One comparison of the street address a source maps (street, house number, second address line).

    One, not three: the parts are not independent (a household shares all of them), and Fellegi-Sunter
    would count the same evidence three times. Levels: same street, number and unit (or one side has no
    unit) > street and second line swapped > the street with a typo, same number > the same street only >
    else. Only the parts present in the data are used.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    house = "house_number" in columns
    line2 = "address_line2_key" in columns
    same_house = "coalesce(house_number_l = house_number_r, false)" if house else "true"
    unit_ok = ("(address_line2_key_l is null or address_line2_key_r is null "
               "or address_line2_key_l = address_line2_key_r)") if line2 else "true"
    levels = [
        cll.CustomLevel("street_key_l is null or street_key_r is null").configure(is_null_level=True),
        cll.CustomLevel(f"street_key_l = street_key_r and {same_house} and {unit_ok}",
                        label_for_charts="same street address").configure(m_probability=0.7, u_probability=1e-4),
    ]
    if line2:
        levels.append(cll.CustomLevel(
            f"(street_key_l = address_line2_key_r or address_line2_key_l = street_key_r) and {same_house}",
            label_for_charts="street and second line swapped").configure(m_probability=0.03, u_probability=1e-5))
    # a typo in the street (at most two edits) counts only with the same house number, and is computed only
    # for such pairs: string distances on every pair of the u-sampling (2M random pairs) cost 10x the run
    if house:
        levels.append(cll.And(
            cll.CustomLevel(f"{same_house} and abs(length(street_key_l) - length(street_key_r)) <= 2"),
            cll.DamerauLevenshteinLevel("street_key", 2),
        ).configure(m_probability=0.15, u_probability=5e-4, label_for_charts="street within 2 edits, same number"))
    levels += [
        cll.ExactMatchLevel("street_key").configure(m_probability=0.05, u_probability=0.01,
                                                    label_for_charts="same street, another number or unit"),
        cll.ElseLevel().configure(m_probability=0.07, u_probability=0.99),
    ]
    return cl.CustomComparison(levels, output_column_name="address")


def _identifier_comparison(kind: IdentifierKind):
    """Same value > (a kind a person has one of) one typo or transposed digits > else. A different value of a
    unique kind is strong evidence against a match; of a kind a person holds several of, weak."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    col = kind.column
    levels = [cll.NullLevel(col), cll.ExactMatchLevel(col).configure(m_probability=0.9, u_probability=1e-5)]
    if kind.unique_per_person:
        levels.append(cll.DamerauLevenshteinLevel(col, 1).configure(
            m_probability=0.07, u_probability=1e-4, label_for_charts=f"{kind.name} one typo or transposition"))
        levels.append(cll.ElseLevel().configure(m_probability=0.03, u_probability=1.0))
    else:
        levels.append(cll.ElseLevel().configure(m_probability=0.4, u_probability=1.0))
    return cl.CustomComparison(levels, output_column_name=col)


def build_settings(config: IdentityConfig, n_records: int, optional: Sequence[str] = ()):
    from splink import SettingsCreator

    p = config.probabilistic
    kinds = {k.column: k for k in config.identifiers}
    extra = [_identifier_comparison(kinds[c]) for c in optional if c in kinds]
    if "street_key" in optional:
        extra.insert(0, _address_comparison([c for c in optional if c in ADDRESS_COLUMNS]))
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=min(0.5, 1.0 / max(n_records, 2)),
        comparisons=[
            _name_comparison("first_key", "last_key", config),
            _name_comparison("last_key", "first_key", config),
            _birth_date_comparison(config),
            _postcode_comparison(config),
            _city_comparison(config),
            *extra,
        ],
        blocking_rules_to_generate_predictions=[_rule(r) for r in p.blocking_rules],
        retain_matching_columns=True,  # Splink 5 keeps gamma_ columns only with this
        retain_intermediate_calculation_columns=True,
    )


def model_frame(prepared: pd.DataFrame, optional: Sequence[str] = ()) -> pd.DataFrame:
    """The columns Splink sees: names, birth date, address and the `optional` columns
    (:func:`optional_columns`; no contact data unless configured), no ids beyond the row number."""
    cols = [*MODEL_COLUMNS[1:], *(c for c in optional if c not in MODEL_COLUMNS)]
    out = prepared[cols].copy()
    out.insert(0, "unique_id", prepared["rid"].astype("int64").to_numpy())
    for c in cols:
        out[c] = out[c].astype("object").where(out[c].notna(), None)
    return out.reset_index(drop=True)


@dataclass
class TrainingReport:
    records: int
    trained: bool
    steps: list[str]


class ProbabilisticModel:
    """A trained Splink linker over `frame` (see :func:`model_frame`). Close it when done."""

    def __init__(self, frame, config: IdentityConfig, optional: Sequence[str] = (), saved: dict | None = None):
        """`frame`: a pandas frame, or on the Spark backend a Spark DataFrame with the same columns.
        `saved`: a trained model (:meth:`model_json` of an earlier run, ``identity.resolution_runs.splink_model``):
        used as it is, not trained again (a daily run scores with the weekly run's model)."""
        from splink import Linker

        self.config = config
        self.optional = list(optional)
        self.db_api = make_db_api(config.probabilistic.backend, config.probabilistic.duckdb_memory_limit,
                                  config.spark)
        dialect = self.db_api.sql_dialect.sql_dialect_str
        if saved is not None and saved.get("sql_dialect", dialect) != dialect:
            # its comparisons are SQL of the backend that trained it (a Spark run's model on DuckDB): train anew
            log.info("probabilistic: the saved model is for %s, not %s; training", saved.get("sql_dialect"), dialect)
            saved = None
        n = len(frame) if isinstance(frame, pd.DataFrame) else frame.count()
        self.sdf = _register(self.db_api, frame, "identity_candidates")
        self.linker = Linker(self.sdf, saved if saved is not None else build_settings(config, n, self.optional),
                             log_level=config.probabilistic.splink_log_level)
        self.training = TrainingReport(n, False, ["saved model"]) if saved is not None else self._train(n)
        self._n_registered = 0

    def _train(self, n: int) -> TrainingReport:
        p = self.config.probabilistic
        steps: list[str] = []
        if n < p.min_records_for_training:
            log.info("probabilistic: %d eligible records < %d, using prior m/u values", n,
                     p.min_records_for_training)
            return TrainingReport(n, False, ["priors only"])
        t = self.linker.training
        try:
            t.estimate_probability_two_random_records_match([_rule(r) for r in p.prior_rules], recall=p.prior_recall)
            steps.append("prior")
        except Exception as e:  # noqa: BLE001 - a failed step keeps the prior values
            _raise_if_stopped(e)
            log.warning("probabilistic: prior estimation failed, keeping default (%s)", _short(e))
        try:
            t.estimate_u_using_random_sampling(max_pairs=p.u_max_pairs, seed=p.seed)
            steps.append("u")
        except Exception as e:  # noqa: BLE001
            _raise_if_stopped(e)
            log.warning("probabilistic: u estimation failed, keeping prior u values (%s)", _short(e))
        for r in p.training_blocking_rules:
            settings = self.linker._settings_obj
            # a failing EM session leaves the linker's comparisons filtered: restore them
            snapshot = settings.core_model_settings.copy()
            try:
                # at most em_max_pairs blocked pairs: Splink counts the rule's pairs on a probe of about
                # EM_PROBE_RECORDS records (all of them in a small run: an exact count, no sampling) and samples
                # records by id hash on each side when the estimate is larger (a pair kept with the same
                # chance whether it matches or not, so m is estimated without bias)
                session = t.estimate_parameters_using_expectation_maximisation(
                    _rule(r), max_pairs=p.em_max_pairs, record_sample_proportion=min(1.0, EM_PROBE_RECORDS / n))
                steps.append(f"em[{r.describe()}]{_sampled(session)}")
            except Exception as e:  # noqa: BLE001
                _raise_if_stopped(e)
                settings.core_model_settings = snapshot
                log.warning("probabilistic: EM on %s failed, keeping previous m values (%s)", r.describe(), _short(e))
        self._floor_m(M_FLOOR)
        return TrainingReport(n, True, steps)

    def _floor_m(self, floor: float) -> None:
        """EM on clean data drives m of disagreement levels towards 0, turning one disagreeing field
        (a moved city) into a veto; keep every trained m at or above `floor`."""
        for comp in self.linker._settings_obj.comparisons:
            for lvl in comp.comparison_levels:
                if lvl.is_null_level:
                    continue
                m = lvl.m_probability
                if isinstance(m, float) and m < floor:
                    lvl.m_probability = floor

    def parameters(self) -> pd.DataFrame:
        """The model's m / u estimates and match weights, one row per comparison level (and the prior):
        what ``identity.match_weights`` records per run. No data values, only the model."""
        rows = [("prior", -1, "Starting match weight (prior)", None, None,
                 float(np.log2(_bayes_factor(self.linker._settings_obj._probability_two_random_records_match))))]
        for comp in self.linker._settings_obj.comparisons:
            for lvl in comp.comparison_levels:
                if lvl.is_null_level:
                    continue
                m, u = lvl.m_probability, lvl.u_probability
                weight = float(np.log2(m / u)) if isinstance(m, float) and isinstance(u, float) and m > 0 and u > 0 \
                    else None
                rows.append((comp.output_column_name, int(lvl.comparison_vector_value), lvl.label_for_charts,
                             m, u, weight))
        return pd.DataFrame(rows, columns=PARAMETER_COLUMNS)

    def model_json(self) -> dict:
        """The trained Splink model (settings with m / u values): rebuilds the charts later (identity-eval)."""
        return self.linker.misc.save_model_to_json()

    def register(self, frame: pd.DataFrame):
        self._n_registered += 1
        return _register(self.db_api, frame, f"identity_subset_{self._n_registered}")

    def predict(self) -> pd.DataFrame:
        df = self.linker.inference.predict(threshold_match_probability=self.config.probabilistic.match_threshold,
                                           warning_mode="never")
        return self._finish(df)

    def predict_within(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._ensure_tf()
        df = self.linker.inference.predict_within(
            self.register(frame), threshold_match_probability=self.config.probabilistic.match_threshold,
            warning_mode="never")
        return self._finish(df)

    def predict_between(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        self._ensure_tf()
        df = self.linker.inference.predict_between(
            self.register(left), self.register(right),
            threshold_match_probability=self.config.probabilistic.match_threshold, warning_mode="never")
        return self._finish(df)

    def _ensure_tf(self) -> None:
        if getattr(self, "_tf_done", False):
            return
        for c in self._tf_columns():
            self.linker.table_management.compute_tf_table(c)
        self._tf_done = True

    def register_tf(self, tables: dict[str, pd.DataFrame]) -> None:
        """Use these term-frequency tables (column -> frame of ``<column>, tf_<column>``, computed over every
        eligible record, e.g. in SQL by the daily run) instead of computing them from this model's input."""
        for c in self._tf_columns():
            sdf = _register(self.db_api, tables[c], f"identity_tf_{c}")
            self.linker.table_management.register_term_frequency_lookup(sdf, c)
        self._tf_done = True

    def _tf_columns(self) -> list[str]:
        p = self.config.probabilistic
        cols = []
        if p.name_tf:
            cols += ["first_key", "last_key"]
        if p.postcode_tf:
            cols.append("postcode")
        if p.city_tf:
            cols.append("city_key")
        return cols

    def level_labels(self) -> dict[str, dict[int, str]]:
        """comparison -> {level -> label}: what explanations name the levels by."""
        out: dict[str, dict[int, str]] = {}
        for comp in self.linker._settings_obj.comparisons:
            out[comp.output_column_name] = {lvl.comparison_vector_value: lvl.label_for_charts
                                            for lvl in comp.comparison_levels}
        return out

    def _finish(self, sdf) -> pd.DataFrame:
        """The pairs of Splink's predictions with their levels and weights (explanations.scored_pairs). Only these
        columns leave the engine: not the records' compared values (both sides of every comparison), nor the Bayes
        factors, which were most of the predictions' memory. On DuckDB they leave in Arrow batches, each made
        compact before the next is read (at 1M customers the whole prediction as one pandas frame, beside its
        compact copy, was the run's peak)."""
        labels = self.level_labels()
        present = {c.unquote().name for c in sdf.columns}
        wanted = ["unique_id_l", "unique_id_r", "match_probability", "match_weight",
                  *(f"{prefix}{c}" for c in labels for prefix in ("gamma_", "mw_", "mw_tf_adj_"))]
        query = f"select {', '.join(c for c in wanted if c in present)} from {sdf.physical_name}"  # noqa: S608
        if self.config.probabilistic.backend == "duckdb":
            batches = self.db_api._con.sql(query).to_arrow_reader(PREDICTION_BATCH_ROWS)
            parts = [scored_pairs(b.to_pandas(), labels) for b in batches]
        else:
            parts = [scored_pairs(self.db_api.query_sql(query, "pandas"), labels)]
        sdf.drop_table_from_database_and_remove_from_cache()
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else empty_pairs()

    def close(self) -> None:
        _close(self.db_api)


def _bayes_factor(p: float) -> float:
    return p / (1 - p)


#: records of the probe by which Splink estimates an EM session's blocked pairs (probabilistic.em_max_pairs)
EM_PROBE_RECORDS = 50_000


def _sampled(session: object) -> str:
    """' (sampled to ~N pairs of ~M)' for an EM session Splink trained on a sample (em_max_pairs), else ''."""
    info = getattr(session, "_sample_info", None) or {}
    if not info.get("sampling_applied"):
        return ""
    return (f" (sampled to ~{info.get('expected_pairs_after_sampling') or 0:,.0f} of "
            f"~{info.get('estimated_total_pairs') or 0:,.0f} pairs)")


#: what an interrupted run's failure says, not a training step's: Ctrl-C makes pyspark cancel every Spark job
#: (the step then fails with this error class), and Airflow stops a task by raising one of these in it
STOPPED_ERROR_CLASSES = ("SPARK_JOB_CANCELLED",)
STOPPED_EXCEPTIONS = ("AirflowTaskTerminated", "AirflowTaskTimeout")


def _raise_if_stopped(e: BaseException) -> None:
    """Re-raise `e` when it means the run was stopped (interrupted, cancelled, terminated), not that a training
    step failed on the data: a stopped run must end, not go on with the prior m / u values and write customers
    from a model it never finished training. Checks `e` and the exceptions it was raised from."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if (isinstance(x, (KeyboardInterrupt, SystemExit)) or type(x).__name__ in STOPPED_EXCEPTIONS
                or any(c in str(x) for c in STOPPED_ERROR_CLASSES)):
            raise e
        x = x.__cause__ or x.__context__


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__


def _veto(pairs: pd.DataFrame, prepared: pd.DataFrame, config: IdentityConfig) -> pd.DataFrame:
    if pairs.empty or not config.probabilistic.veto_conflicting_national_id:
        return pairs
    nid = prepared.set_index("rid")["national_id"]
    a = nid.reindex(pairs["rid_l"]).to_numpy()
    b = nid.reindex(pairs["rid_r"]).to_numpy()
    conflict = pd.notna(a) & pd.notna(b) & (a != b)
    if conflict.any():
        log.info("probabilistic: %d pairs vetoed by conflicting national ids", int(conflict.sum()))
    return pairs[~conflict].reset_index(drop=True)


def _corroborated(pairs: pd.DataFrame, config: IdentityConfig, labels: Labels) -> pd.DataFrame:
    """Keep pairs that agree (fully or partly, i.e. with a positive match weight) on at least one field
    of `probabilistic.require_agreement_on`: a name and a city alone are shared by namesakes.

    Decided on the pairs' levels and weights (explanations.Agreement), all pairs at once."""
    fields = config.probabilistic.require_agreement_on
    if pairs.empty or not (fields or config.probabilistic.person_fields
                           or config.probabilistic.birth_date_conflict_requires):
        return pairs
    n = len(pairs)
    a = Agreement.of(pairs, labels)
    person = set(config.probabilistic.person_fields) | {
        k.name for k in config.identifiers if k.unique_per_person and k.probabilistic}
    needs = set(config.probabilistic.birth_date_conflict_requires)
    unique = {k.name for k in config.identifiers if k.unique_per_person and k.probabilistic}

    keep = a.any_agreed(fields, n) if fields else np.ones(n, bool)
    # A pair must agree on a person field both records carry (its level's weight at least `person_min_weight`:
    # a one-letter edit of a short name key, Emma / Emily, is what siblings' names share as well). Agreeing on
    # where one lives (postcode, city, street address) and on a family name is not agreeing on who one is: a
    # household shares all of that. The level's own weight, before the term-frequency adjustment: an exact match
    # on a common given name is still an exact match.
    best = np.full(n, -np.inf)
    for f in person & set(a.level_weight):
        best = np.where(a.missing[f], best, np.maximum(best, a.level_weight[f]))
    other_person = (best < config.probabilistic.person_min_weight) if person else np.zeros(n, bool)
    # birth dates that disagree outright need all of `needs`, or an agreeing unique identifier
    unsupported = np.zeros(n, bool)
    if needs and "birth_date" in a.disagreed:
        unsupported = a.disagreed["birth_date"] & ~(a.all_agreed(needs, n) | a.any_agreed(unique, n, partly=False))
    if (~keep).any():
        log.info("probabilistic: %d pair(s) above the threshold dropped: no agreement on any of %s",
                 int((~keep).sum()), ", ".join(fields))
    if person:
        if (keep & other_person).any():
            log.info("probabilistic: %d pair(s) above the threshold dropped: no agreement on any of %s",
                     int((keep & other_person).sum()), ", ".join(sorted(person)))
        keep &= ~other_person
    if needs:
        if (keep & unsupported).any():
            log.info("probabilistic: %d pair(s) above the threshold dropped: birth dates differ and no agreement "
                     "on all of %s", int((keep & unsupported).sum()), ", ".join(sorted(needs)))
        keep &= ~unsupported
    return pairs[keep].reset_index(drop=True)


def _dedupe(pairs: pd.DataFrame) -> pd.DataFrame:
    if pairs.empty:
        return pairs
    return (pairs.sort_values(["rid_l", "rid_r", "match_probability"], ascending=[True, True, False])
            .drop_duplicates(["rid_l", "rid_r"]).reset_index(drop=True))


def probabilistic_pairs(prepared: pd.DataFrame, config: IdentityConfig) -> tuple[pd.DataFrame, dict]:
    """Scored pairs (above the threshold) among eligible records of `prepared` (junk already removed)."""
    elig = prepared[eligible(prepared, config)]
    info = {"eligible_records": len(elig), "trained": False, "training_steps": []}
    if not config.probabilistic.enabled or len(elig) < 2:
        return empty_pairs(), info
    optional = optional_columns(elig, config)
    model = ProbabilisticModel(model_frame(elig, optional), config, optional)
    pairs = scored_with(model, info, model.predict)
    return guarded_pairs(pairs, prepared, config, info["labels"]), info


def guarded_pairs(pairs: pd.DataFrame, records: pd.DataFrame, config: IdentityConfig,
                  labels: dict) -> pd.DataFrame:
    """Splink's pairs as the run keeps them: one per record pair (the most probable), corroborated by an
    agreement on a person field, and not vetoed by conflicting identifiers or birth dates among `records`."""
    return _veto(_corroborated(_dedupe(pairs), config, labels), records, config)


def new_record_pairs(model: ProbabilisticModel, new_frame: pd.DataFrame,
                     existing_frame: pd.DataFrame | None) -> pd.DataFrame:
    """The pairs `model` scores that involve at least one new record: new x new (predict_within) and
    new x existing (predict_between), as one frame."""
    parts = []
    if len(new_frame) >= 2:
        parts.append(model.predict_within(new_frame))
    if existing_frame is not None and len(existing_frame):
        parts.append(model.predict_between(new_frame, existing_frame))
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty_pairs()


def scored_with(model: ProbabilisticModel, info: dict, predict: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The pairs `predict` scores with `model`; records in `info` how the model was trained, the model itself
    (saved with the run, :func:`saved_optional_columns`) and its level labels (the guards and the explanations
    read them), and closes the model's engine, also when scoring fails."""
    try:
        pairs = predict()
        info.update(trained=model.training.trained, training_steps=model.training.steps,
                    model={"parameters": model.parameters(), "splink_model": model.model_json()},
                    labels=model.level_labels())
    finally:
        model.close()
    return pairs


def saved_optional_columns(saved: dict) -> list[str]:
    """The optional columns (:func:`optional_columns`) a saved model compares: the model's comparisons are
    fixed when it is trained, so a run scoring with it feeds it exactly these (the address parts are in every
    model frame anyway, :func:`model_frame`; the identifier kinds are what varies)."""
    return [c["output_column_name"] for c in saved.get("comparisons", ())
            if str(c.get("output_column_name", "")).startswith("id_")]


def probabilistic_pairs_incremental(prepared: pd.DataFrame, new_rids: Sequence[int] | np.ndarray,
                                    config: IdentityConfig, saved: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Pairs involving at least one new record: new x new (predict_within) and new x existing
    (predict_between). The model is trained on all eligible records, as in a full run, unless `saved` (a model
    of an earlier run, see :class:`ProbabilisticModel`) is given: then it scores as it is."""
    elig_mask = eligible(prepared, config)
    elig = prepared[elig_mask]
    is_new = elig["rid"].isin(set(int(r) for r in new_rids))
    info = {"eligible_records": len(elig), "eligible_new_records": int(is_new.sum()), "trained": False,
            "training_steps": []}
    if not config.probabilistic.enabled or is_new.sum() == 0 or len(elig) < 2:
        return empty_pairs(), info
    optional = saved_optional_columns(saved) if saved is not None else optional_columns(elig, config)
    model = ProbabilisticModel(model_frame(elig, optional), config, optional, saved=saved)
    pairs = scored_with(model, info, lambda: new_record_pairs(model, model_frame(elig[is_new], optional),
                                                              model_frame(elig[~is_new], optional)))
    return guarded_pairs(pairs, prepared, config, info["labels"]), info
