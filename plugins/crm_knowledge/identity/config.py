"""Configuration of identity resolution (`config/identity.yml`), loaded and validated.

Every error names the file and the key, e.g.
``config/identity.yml: probabilistic.match_threshold must be a number in (0, 1), got 1.5``.

Unlike destinations.yml and scoring.yml, every key here has a default and the file is read section by
section with `_V` below rather than with the strict `crm_knowledge.config_reader.ConfigReader`; the file
itself is read with the shared `load_yaml_file`, and `IdentityConfigError` is a `ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_knowledge.config_reader import ConfigError, load_yaml_file
from crm_knowledge.identity.duckdb_session import DEFAULT_MEMORY_LIMIT
from crm_knowledge.identity.spark_session import SparkConfig, SparkConfigError, spark_config_from_dict
from crm_knowledge.normalize.persian import to_ascii_digits
from crm_knowledge.settings import get_settings

#: Built-in identifier kinds and the candidate column holding each: canonical fields every source can map,
#: normalised and validated in staging (util.normalize_email / normalize_phone / normalize_national_id, the
#: Iranian national id with its check digit).
IDENTIFIER_COLUMNS: dict[str, str] = {
    "email": "email_norm",
    "phone": "phone_e164",
    "national_id": "national_id_valid",
}

#: How a declared identifier's value is normalised before validation and matching.
NORMALIZERS = ("none", "digits", "alnum", "lower")

#: Columns of the prepared frame the probabilistic model may block on.
BLOCKING_COLUMNS = {"first_key", "last_key", "birth_date", "birth_year", "postcode", "postcode_prefix", "city_key",
                    "street_key", "house_number", "address_line2_key"}

#: Names a declared identifier kind may not take: they are columns of the raw tables a source maps onto.
RESERVED_KIND_NAMES = frozenset({
    "source_record_id", "first_name", "last_name", "full_name", "birth_date", "gender", "street", "house_number",
    "address_line2", "city", "province", "postcode", "company", "business_type", "signup_date", "submission_id",
    "form_type", "submitted_at", "customer_ref", "order_ref", "product_interest", "message", "rating",
    "consent_marketing", "consent_profiling", "extras", "identifiers", "unit",
})


@dataclass(frozen=True)
class IdentifierKind:
    """One kind of identifier: a value that names one person (an e-mail, a passport number, ...).

    `unique_per_person`: a person has one value of this kind (a national id), so two records carrying
    different values are evidence against a match (Splink learns how strong); kinds a person can hold
    several of (phones, loyalty cards) only count when they agree. Built-in kinds arrive normalised and
    validated by staging; declared kinds are normalised (`normalize`) and checked (`pattern`, a Python
    regular expression matched with re.fullmatch) in :func:`crm_knowledge.identity.prepare.prepare`, and a
    value that fails the pattern is not used.
    """

    name: str
    builtin: bool = False
    normalize: str = "none"
    pattern: re.Pattern[str] | None = None
    unique_per_person: bool = False
    #: take part in probabilistic matching (a Splink comparison) as well as in the deterministic rule
    probabilistic: bool = True
    description: str = ""

    @property
    def column(self) -> str:
        """The column holding the kind in the prepared frame (and, declared kinds, the candidate frame)."""
        return identifier_column(self.name)

    def normalize_value(self, value: object) -> str | None:
        """A declared kind's value as matching, erasure and lookups compare it: Persian digits to ASCII, then
        `normalize`; None when empty or when it fails `pattern` (such a value names nobody)."""
        if value is None:
            return None
        text = (to_ascii_digits(str(value)) or "").strip()
        if self.normalize == "digits":
            text = re.sub(r"\D", "", text)
        elif self.normalize == "alnum":
            text = re.sub(r"[\W_]", "", text).upper()
        elif self.normalize == "lower":
            text = re.sub(r"\s+", " ", text).lower()
        if not text or (self.pattern is not None and not self.pattern.fullmatch(text)):
            return None
        return text


def identifier_column(kind: str) -> str:
    """Prepared-frame column of an identifier kind: a built-in kind's name, ``id_<kind>`` for a declared one."""
    return kind if kind in IDENTIFIER_COLUMNS else f"id_{kind}"

BACKENDS = ("duckdb", "spark")

#: Values of `full_resolution_weekday`: a day name, or `daily` / `never`.
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class IdentityConfigError(ConfigError):
    """The identity configuration is invalid; the message names the file and key."""


@dataclass(frozen=True)
class JunkConfig:
    deny: dict[str, frozenset[str]]
    deny_patterns: dict[str, tuple[re.Pattern[str], ...]]
    share_limits: dict[str, int]
    name_similarity: float = 0.88


@dataclass(frozen=True)
class DeterministicConfig:
    name_guard: frozenset[str] = frozenset({"email", "phone"})
    name_similarity: float = 0.88
    weak_name_similarity: float = 0.80
    max_guard_group: int = 50
    #: (nickname, given name) pairs, any script; compared by their romanised keys
    nicknames: tuple[tuple[str, str], ...] = ()


def _memory_size(value: str, where: str, v) -> str:
    """A DuckDB memory size such as 2GB or 512MB (checked here so a typo fails at load, naming the key)."""
    import re

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", value, flags=re.IGNORECASE):
        raise v.fail(where, f"must be a size like 2GB or 512MB, got {value!r}")
    return value.strip()


@dataclass(frozen=True)
class BlockingRule:
    """Either equality on `columns` or a raw Splink SQL condition on l./r."""

    columns: tuple[str, ...] = ()
    sql: str | None = None

    def describe(self) -> str:
        return self.sql if self.sql else " and ".join(f"l.{c} = r.{c}" for c in self.columns)


@dataclass(frozen=True)
class ProbabilisticConfig:
    enabled: bool = True
    backend: str = "duckdb"
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    match_threshold: float = 0.95
    seed: int = 42
    u_max_pairs: float = 1e6
    #: at most about this many blocked pairs per EM session (Splink samples records by a hash of their id on
    #: each side when a session's rule would block more): training's cost stops growing with the data
    em_max_pairs: float = 2e6
    min_records_for_training: int = 50
    prior_recall: float = 0.7
    required_any: tuple[str, ...] = ("birth_date", "postcode")
    veto_conflicting_national_id: bool = True
    require_agreement_on: tuple[str, ...] = ("birth_date", "postcode")
    #: a pair whose records both carry one of these (or an identifier kind a person has one of) is linked
    #: only when it agrees on one of them (match weight >= person_min_weight): a household shares a family
    #: name and an address, not a given name and a birth date
    person_fields: tuple[str, ...] = ("first_name", "birth_date")
    #: match weight from which a field of `person_fields` counts as agreeing
    person_min_weight: float = 2.0
    #: a pair whose birth dates both exist and disagree (no partial agreement either) is linked only when it
    #: agrees on all of these (or on an identifier kind a person has one of): one shared name field and an
    #: address is what a father and son have in common (empty: no such rule)
    birth_date_conflict_requires: tuple[str, ...] = ("first_name", "last_name")
    splink_log_level: str = "WARNING"
    blocking_rules: tuple[BlockingRule, ...] = ()
    training_blocking_rules: tuple[BlockingRule, ...] = ()
    prior_rules: tuple[BlockingRule, ...] = ()
    name_jw_thresholds: tuple[float, ...] = (0.92, 0.85)
    name_tf: bool = True
    name_exact_text: bool = True
    name_key_edit_distance: int = 1
    name_fuzzy_min_length: int = 2
    #: same-script spelling within this many edits (Damerau-Levenshtein of the normalised text; 0: no such
    #: level): "olivr" / "oliver", which the romanised keys cannot tell from "olivia" / "oliver"
    name_text_edit_distance: int = 1
    #: ... and only for names at least this long (a one-letter change in a short name is another name)
    name_text_edit_min_length: int = 4
    #: both name fields swapped with a typo: Jaro-Winkler of each field against the other record's other field
    #: at least this (0: no such level)
    name_swapped_jaro_winkler: float = 0.88
    birth_date_thresholds: tuple[int, ...] = (1, 1)
    birth_date_metrics: tuple[str, ...] = ("month", "year")
    postcode_prefix_lengths: tuple[int, ...] = (5,)
    postcode_tf: bool = True
    city_tf: bool = True
    #: address details a source maps (street, house number, second address line): compared when present
    street_enabled: bool = True
    house_number_enabled: bool = True
    address_line2_enabled: bool = True


@dataclass(frozen=True)
class IdentityConfig:
    junk: JunkConfig
    deterministic: DeterministicConfig
    probabilistic: ProbabilisticConfig
    max_cluster_size: int = 50
    id_prefix: str = "C"
    id_digits: int = 9
    always_resolve_sources: frozenset[str] = frozenset({"orders"})
    #: Days (0 = Monday ... 6 = Sunday, as date.weekday()) on which the daily run re-resolves every record
    #: (mode `full`) instead of matching only new and changed records (mode `incremental`).
    full_resolution_weekdays: frozenset[int] = frozenset({6})
    #: every identifier kind, built-in ones first (see :class:`IdentifierKind`)
    identifiers: tuple[IdentifierKind, ...] = (
        IdentifierKind("national_id", builtin=True, unique_per_person=True),
        IdentifierKind("email", builtin=True, probabilistic=False),
        IdentifierKind("phone", builtin=True, probabilistic=False),
    )
    #: where the Spark session runs when the backend is spark (identity/spark_session.py)
    spark: SparkConfig = field(default_factory=SparkConfig)
    source: str = field(default="<dict>", compare=False)

    @property
    def backend(self) -> str:
        """The engine of the whole identity stage: ``duckdb`` (pandas + Splink on DuckDB, one process) or
        ``spark`` (every step as Spark jobs, identity/spark_backend.py)."""
        return self.probabilistic.backend

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.identifiers)

    @property
    def declared_identifiers(self) -> tuple[IdentifierKind, ...]:
        """The kinds declared in the file (not built in): a source maps a column onto them."""
        return tuple(k for k in self.identifiers if not k.builtin)

    def identifier(self, name: str) -> IdentifierKind:
        for k in self.identifiers:
            if k.name == name:
                return k
        raise KeyError(name)


# --- validation helpers ------------------------------------------------------------------------


class _V:
    """Reads typed values from nested dicts, raising errors that name file and dotted key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, msg: str) -> IdentityConfigError:
        return IdentityConfigError(f"{self.source}: {key} {msg}")

    def section(self, d: dict, key: str, path: str, required: bool = False) -> dict:
        full = f"{path}.{key}" if path else key
        if key not in d or d[key] is None:
            if required:
                raise self.fail(full, "is required")
            return {}
        v = d[key]
        if not isinstance(v, dict):
            raise self.fail(full, f"must be a mapping, got {type(v).__name__}")
        return v

    def number(self, d, key, path, default, lo=None, hi=None, integer=False, open_lo=False, open_hi=False):
        full = f"{path}.{key}" if path else key
        v = d.get(key, default)
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        if ok and integer:
            ok = float(v).is_integer()
        if ok and lo is not None:
            ok = v > lo if open_lo else v >= lo
        if ok and hi is not None:
            ok = v < hi if open_hi else v <= hi
        if not ok:
            rng = ""
            if lo is not None or hi is not None:
                rng = (f" in {'(' if open_lo else '['}{lo if lo is not None else '-inf'}, "
                       f"{hi if hi is not None else 'inf'}{')' if open_hi else ']'}")
            kind = "an integer" if integer else "a number"
            raise self.fail(full, f"must be {kind}{rng}, got {v!r}")
        return int(v) if integer else float(v)

    def boolean(self, d, key, path, default):
        full = f"{path}.{key}" if path else key
        v = d.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(full, f"must be true or false, got {v!r}")
        return v

    def string(self, d, key, path, default, choices=None):
        full = f"{path}.{key}" if path else key
        v = d.get(key, default)
        if not isinstance(v, str) or not v:
            raise self.fail(full, f"must be a non-empty string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(full, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def str_list(self, d, key, path, default):
        full = f"{path}.{key}" if path else key
        v = d.get(key, default)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str | int) for x in v):
            raise self.fail(full, f"must be a list of strings, got {v!r}")
        return [str(x) for x in v]

    def num_list(self, d, key, path, default, integer=False):
        full = f"{path}.{key}" if path else key
        v = d.get(key, default)
        if not isinstance(v, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            raise self.fail(full, f"must be a list of numbers, got {v!r}")
        if integer and not all(float(x).is_integer() and x > 0 for x in v):
            raise self.fail(full, f"must be a list of positive integers, got {v!r}")
        return [int(x) if integer else float(x) for x in v]

    def kinds(self, d: dict, path: str, known: Sequence[str]) -> None:
        for k in d:
            if k not in known:
                raise self.fail(f"{path}.{k}", f"is not an identifier kind (declared: {', '.join(known)})")

    def rules(self, d, key, path, default) -> tuple[BlockingRule, ...]:
        full = f"{path}.{key}"
        v = d.get(key, default)
        if not isinstance(v, list):
            raise self.fail(full, f"must be a list of rules, got {v!r}")
        out = []
        for i, item in enumerate(v):
            where = f"{full}[{i}]"
            if isinstance(item, list):
                if not item or not all(isinstance(c, str) for c in item):
                    raise self.fail(where, f"must be a non-empty list of column names, got {item!r}")
                bad = [c for c in item if c not in BLOCKING_COLUMNS]
                if bad:
                    raise self.fail(where, f"names unknown column(s) {bad}; available: "
                                           f"{', '.join(sorted(BLOCKING_COLUMNS))}")
                out.append(BlockingRule(columns=tuple(item)))
            elif isinstance(item, dict) and set(item) == {"sql"} and isinstance(item["sql"], str):
                out.append(BlockingRule(sql=item["sql"]))
            else:
                raise self.fail(where, f"must be a list of columns or {{sql: ...}}, got {item!r}")
        return tuple(out)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> IdentityConfig:
    """Validate a parsed identity.yml mapping."""
    v = _V(source)
    if not isinstance(raw, dict):
        raise IdentityConfigError(f"{source}: top level must be a mapping")

    cid = v.section(raw, "customer_id", "")
    prefix = v.string(cid, "prefix", "customer_id", "C")
    digits = v.number(cid, "digits", "customer_id", 9, lo=4, hi=18, integer=True)
    always = frozenset(v.str_list(raw, "always_resolve_sources", "", ["orders"]))
    full_days = _full_resolution_weekdays(v, raw)
    identifiers = _identifiers(v, raw)
    kinds = [k.name for k in identifiers]

    j = v.section(raw, "junk", "")
    deny_raw = v.section(j, "deny", "junk")
    v.kinds(deny_raw, "junk.deny", kinds)
    deny = {k: frozenset(v.str_list(deny_raw, k, "junk.deny", [])) for k in kinds}
    pat_raw = v.section(j, "deny_patterns", "junk")
    v.kinds(pat_raw, "junk.deny_patterns", kinds)
    patterns: dict[str, tuple[re.Pattern[str], ...]] = {}
    for k in kinds:
        compiled = []
        for i, p in enumerate(v.str_list(pat_raw, k, "junk.deny_patterns", [])):
            try:
                compiled.append(re.compile(p))
            except re.error as e:
                raise v.fail(f"junk.deny_patterns.{k}[{i}]", f"is not a valid regular expression ({e})") from None
        patterns[k] = tuple(compiled)
    lim_raw = v.section(j, "share_limits", "junk")
    v.kinds(lim_raw, "junk.share_limits", kinds)
    # default: a value of a kind a person has one of is shared by at most 2 name-dissimilar records
    defaults = {k.name: 2 if k.unique_per_person else 3 for k in identifiers}
    limits = {k: v.number(lim_raw, k, "junk.share_limits", defaults[k], lo=1, integer=True) for k in kinds}
    junk = JunkConfig(deny=deny, deny_patterns=patterns, share_limits=limits,
                      name_similarity=v.number(j, "name_similarity", "junk", 0.88, lo=0, hi=1))

    d = v.section(raw, "deterministic", "")
    guard = v.str_list(d, "name_guard", "deterministic", ["email", "phone"])
    for g in guard:
        if g not in kinds:
            raise v.fail("deterministic.name_guard", f"names unknown identifier kind {g!r}")
    nick_raw = d.get("nicknames", [])
    if not isinstance(nick_raw, list) or not all(
            isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) and y.strip() for y in x)
            for x in nick_raw):
        raise v.fail("deterministic.nicknames", f"must be a list of [nickname, given name] pairs, got {nick_raw!r}")
    strong = v.number(d, "name_similarity", "deterministic", 0.88, lo=0, hi=1)
    weak = v.number(d, "weak_name_similarity", "deterministic", 0.80, lo=0, hi=1)
    if weak > strong:
        raise v.fail("deterministic.weak_name_similarity", f"must not exceed name_similarity ({strong}), got {weak}")
    det = DeterministicConfig(
        name_guard=frozenset(guard),
        name_similarity=strong,
        weak_name_similarity=weak,
        max_guard_group=v.number(d, "max_guard_group", "deterministic", 50, lo=2, integer=True),
        nicknames=tuple((a.strip(), b.strip()) for a, b in nick_raw),
    )

    p = v.section(raw, "probabilistic", "")
    path = "probabilistic"
    comps = v.section(p, "comparisons", path)
    cname = v.section(comps, "name", f"{path}.comparisons")
    cbd = v.section(comps, "birth_date", f"{path}.comparisons")
    cpc = v.section(comps, "postcode", f"{path}.comparisons")
    ccity = v.section(comps, "city", f"{path}.comparisons")
    cstreet = v.section(comps, "street", f"{path}.comparisons")
    chouse = v.section(comps, "house_number", f"{path}.comparisons")
    cline2 = v.section(comps, "address_line2", f"{path}.comparisons")
    jw = v.num_list(cname, "jaro_winkler_thresholds", f"{path}.comparisons.name", [0.92, 0.85])
    if not all(0 < x < 1 for x in jw):
        raise v.fail(f"{path}.comparisons.name.jaro_winkler_thresholds", f"must be numbers in (0, 1), got {jw}")
    bd_thr = v.num_list(cbd, "thresholds", f"{path}.comparisons.birth_date", [1, 1], integer=True)
    bd_met = v.str_list(cbd, "metrics", f"{path}.comparisons.birth_date", ["month", "year"])
    if len(bd_thr) != len(bd_met):
        raise v.fail(f"{path}.comparisons.birth_date", "thresholds and metrics must have the same length")
    for m in bd_met:
        if m not in ("day", "month", "year"):
            raise v.fail(f"{path}.comparisons.birth_date.metrics", f"must be day, month or year, got {m!r}")
    required_any = v.str_list(p, "required_any", path, ["birth_date", "postcode"])
    for r in required_any:
        if r not in ("birth_date", "postcode", "city", "address"):
            raise v.fail(f"{path}.required_any", f"must name birth_date, postcode, city or address, got {r!r}")
    agree_on = v.str_list(p, "require_agreement_on", path, ["birth_date", "postcode"])
    agree_fields = ("first_name", "last_name", "birth_date", "postcode", "city", "address", *kinds)
    for r in agree_on:
        if r not in agree_fields:
            raise v.fail(f"{path}.require_agreement_on", f"must name fields among {', '.join(agree_fields)}, got {r!r}")
    person_fields = v.str_list(p, "person_fields", path, ["first_name", "birth_date"])
    for r in person_fields:
        if r not in agree_fields:
            raise v.fail(f"{path}.person_fields", f"must name fields among {', '.join(agree_fields)}, got {r!r}")
    bd_conflict = v.str_list(p, "birth_date_conflict_requires", path, ["first_name", "last_name"])
    for r in bd_conflict:
        if r not in agree_fields:
            raise v.fail(f"{path}.birth_date_conflict_requires",
                         f"must name fields among {', '.join(agree_fields)}, got {r!r}")
    level = v.string(p, "splink_log_level", path, "WARNING",
                     choices=("INFO", "WARNING", "ERROR", "CRITICAL"))
    prob = ProbabilisticConfig(
        enabled=v.boolean(p, "enabled", path, True),
        backend=_backend(v, raw, p),
        duckdb_memory_limit=_memory_size(v.string(p, "duckdb_memory_limit", path, DEFAULT_MEMORY_LIMIT),
                                         f"{path}.duckdb_memory_limit", v),
        match_threshold=v.number(p, "match_threshold", path, 0.95, lo=0, hi=1, open_lo=True, open_hi=True),
        seed=v.number(p, "seed", path, 42, integer=True),
        u_max_pairs=v.number(p, "u_max_pairs", path, 1e6, lo=1),
        em_max_pairs=v.number(p, "em_max_pairs", path, 2e6, lo=1000),
        min_records_for_training=v.number(p, "min_records_for_training", path, 50, lo=2, integer=True),
        prior_recall=v.number(p, "prior_recall", path, 0.7, lo=0, hi=1, open_lo=True),
        required_any=tuple(required_any),
        veto_conflicting_national_id=v.boolean(p, "veto_conflicting_national_id", path, True),
        require_agreement_on=tuple(agree_on),
        person_fields=tuple(person_fields),
        person_min_weight=v.number(p, "person_min_weight", path, 2.0),
        birth_date_conflict_requires=tuple(bd_conflict),
        splink_log_level=level,
        blocking_rules=v.rules(p, "blocking_rules", path, [["birth_date"], ["postcode"]]),
        training_blocking_rules=v.rules(p, "training_blocking_rules", path,
                                        [["first_key", "last_key"], ["birth_date"]]),
        prior_rules=v.rules(p, "prior_rules", path, [["first_key", "last_key", "birth_date"]]),
        name_jw_thresholds=tuple(jw),
        name_tf=v.boolean(cname, "term_frequency", f"{path}.comparisons.name", True),
        name_exact_text=v.boolean(cname, "exact_text_level", f"{path}.comparisons.name", True),
        name_key_edit_distance=v.number(cname, "key_edit_distance", f"{path}.comparisons.name", 1, lo=0, hi=3,
                                        integer=True),
        name_text_edit_distance=v.number(cname, "text_edit_distance", f"{path}.comparisons.name", 1, lo=0, hi=3,
                                         integer=True),
        name_text_edit_min_length=v.number(cname, "text_edit_min_length", f"{path}.comparisons.name", 4, lo=1,
                                           integer=True),
        name_swapped_jaro_winkler=v.number(cname, "swapped_jaro_winkler", f"{path}.comparisons.name", 0.88, lo=0,
                                           hi=1),
        name_fuzzy_min_length=v.number(cname, "fuzzy_min_length", f"{path}.comparisons.name", 2, lo=1,
                                       integer=True),
        birth_date_thresholds=tuple(bd_thr),
        birth_date_metrics=tuple(bd_met),
        postcode_prefix_lengths=tuple(v.num_list(cpc, "prefix_lengths", f"{path}.comparisons.postcode", [5],
                                                 integer=True)),
        postcode_tf=v.boolean(cpc, "term_frequency", f"{path}.comparisons.postcode", True),
        city_tf=v.boolean(ccity, "term_frequency", f"{path}.comparisons.city", True),
        street_enabled=v.boolean(cstreet, "enabled", f"{path}.comparisons.street", True),
        house_number_enabled=v.boolean(chouse, "enabled", f"{path}.comparisons.house_number", True),
        address_line2_enabled=v.boolean(cline2, "enabled", f"{path}.comparisons.address_line2", True),
    )
    if prob.enabled and not prob.blocking_rules:
        raise v.fail(f"{path}.blocking_rules", "must list at least one rule when probabilistic.enabled")

    c = v.section(raw, "clusters", "")
    max_size = v.number(c, "max_size", "clusters", 50, lo=2, integer=True)
    try:
        spark = spark_config_from_dict(raw.get("spark"), source)
    except SparkConfigError as e:
        raise IdentityConfigError(str(e)) from None
    return IdentityConfig(spark=spark, junk=junk, deterministic=det, probabilistic=prob, max_cluster_size=max_size,
                          id_prefix=prefix, id_digits=digits, always_resolve_sources=always,
                          full_resolution_weekdays=full_days, identifiers=identifiers, source=source)


def _backend(v: _V, raw: dict[str, Any], prob: dict) -> str:
    """Top-level `backend` (the whole identity stage), or the older `probabilistic.backend`; both must agree."""
    top = v.string(raw, "backend", "", None, choices=BACKENDS) if raw.get("backend") is not None else None
    old = v.string(prob, "backend", "probabilistic", None, choices=BACKENDS) \
        if prob.get("backend") is not None else None
    if top and old and top != old:
        raise v.fail("backend", f"is {top!r} but probabilistic.backend is {old!r}: set one of them")
    return top or old or "duckdb"


#: Built-in kinds in rule order, with their defaults (a person has one national id, several phones / e-mails).
_BUILTIN_DEFAULTS = {"national_id": True, "email": False, "phone": False}


def _identifiers(v: _V, raw: dict[str, Any]) -> tuple[IdentifierKind, ...]:
    """`identifiers`: the built-in kinds (whose `unique_per_person` / `probabilistic` may be set) and any
    declared kind with its normalisation, validation pattern and uniqueness."""
    sec = v.section(raw, "identifiers", "")
    out = []
    for name, unique in _BUILTIN_DEFAULTS.items():
        d = v.section(sec, name, "identifiers")
        extra = sorted(set(d) - {"unique_per_person", "probabilistic", "description"})
        if extra:
            raise v.fail(f"identifiers.{name}.{extra[0]}", "cannot be set on a built-in kind (staging normalises "
                                                        "and validates it)")
        out.append(IdentifierKind(
            name=name, builtin=True,
            unique_per_person=v.boolean(d, "unique_per_person", f"identifiers.{name}", unique),
            # contact data stays out of the probabilistic model unless asked for: families share it
            probabilistic=v.boolean(d, "probabilistic", f"identifiers.{name}", name == "national_id"),
            description=str(d.get("description", ""))))
    for name, d in sec.items():
        if name in _BUILTIN_DEFAULTS:
            continue
        path = f"identifiers.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
            raise v.fail(path, "must be a lower_snake_case name (letters, digits, _; at most 41 characters)")
        if name in RESERVED_KIND_NAMES:
            raise v.fail(path, "is the name of a canonical field; choose another name for the identifier kind")
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise v.fail(path, f"must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {"normalize", "pattern", "unique_per_person", "probabilistic", "description"})
        if unknown:
            raise v.fail(f"{path}.{unknown[0]}", "is not a setting of an identifier kind (known: normalize, "
                                                "pattern, unique_per_person, probabilistic, description)")
        pattern = None
        if d.get("pattern") is not None:
            text = v.string(d, "pattern", path, None)
            try:
                pattern = re.compile(text)
            except re.error as e:
                raise v.fail(f"{path}.pattern", f"is not a valid regular expression ({e})") from None
        out.append(IdentifierKind(
            name=name, normalize=v.string(d, "normalize", path, "none", choices=NORMALIZERS), pattern=pattern,
            unique_per_person=v.boolean(d, "unique_per_person", path, False),
            probabilistic=v.boolean(d, "probabilistic", path, True), description=str(d.get("description", ""))))
    return tuple(out)


def _full_resolution_weekdays(v: _V, raw: dict[str, Any]) -> frozenset[int]:
    """`full_resolution_weekday`: a day name (default sunday), `daily` or `never`, as weekday numbers."""
    value = raw.get("full_resolution_weekday", "sunday")
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text == "daily":
        return frozenset(range(7))
    if text == "never":
        return frozenset()
    if text not in WEEKDAYS:
        raise v.fail("full_resolution_weekday",
                     f"must be a day name ({', '.join(WEEKDAYS)}), daily or never, got {value!r}")
    return frozenset({WEEKDAYS.index(text)})


def load_config(path: str | Path | None = None) -> IdentityConfig:
    """Load `config/identity.yml` (or `path`) and validate it."""
    settings = get_settings()
    p = Path(path) if path is not None else settings.identity_file
    if not p.exists():
        raise IdentityConfigError(f"{p}: identity configuration file not found")
    raw = load_yaml_file(p, IdentityConfigError, "identity configuration") or {}
    try:
        shown = p.relative_to(settings.config_dir.parent)
    except ValueError:
        shown = p
    return config_from_dict(raw, source=str(shown))


def default_config() -> IdentityConfig:
    """The built-in defaults (used by tests and when no file is given)."""
    return config_from_dict({}, source="<defaults>")
