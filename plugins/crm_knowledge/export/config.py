"""Load and validate ``config/destinations.yml``: where segments are written back to, for whom, and how.

Validation is strict -- unknown keys, missing keys, wrong types are errors naming the file and the dotted key --
because a silently ignored typo in a write-back config could send customers who withdrew consent to a marketing
tool, or wipe a destination.

A destination::

    - name: marketing_csv            # [a-z0-9_], unique; also the folder / state key
      kind: file                     # file | database | webhook
      enabled: true
      purpose: marketing             # marketing | service | analytics
      consent: marketing             # marketing (only has_marketing_consent = true) | none
      mode: mirror                   # insert_only | upsert | mirror (mirror also sends removals)
      id_space: customer_id          # customer_id | source:<source_system> (keys from the identity map)
      key_column: customer_id        # optional, name of the key column at the destination
      audiences:                     # by priority: a customer gets the first audience it matches
        - name: champions
          filter: {rfm_segment: [champions]}
        - name: churn_risk
          filter: {value_tier: [gold, platinum], churn_probability: {gte: 0.6}}
          holdout: 0.1               # optional: share of entering customers held out (never sent), measured
        - name: everyone
          filter: {}                 # an empty filter matches every customer
      exclude: {customer_ids: [...], file: exclusions/marketing.csv}   # optional; file relative to config/
      fields: [rfm_segment, value_tier, city]      # from marts.customer_segments / marts.dim_customers
      named_fields: [email]          # optional: personal fields from pii.pii_customer_profiles
      max_removed_fraction: 0.5      # optional guard (see below)
      file: {format: csv, dir: marketing}                 # kind file
      database: {url_env: X, table: public.customer_segments}   # kind database (url_env optional)
      webhook: {url: http://..., batch_size: 500, max_retries: 5,
                backoff_seconds: 0.5, timeout_seconds: 10}      # kind webhook (url or url_env)

``${VAR}`` and ``${VAR:-default}`` in ``webhook.url`` are expanded from the environment at delivery time.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from crm_knowledge.config_reader import ConfigError, ConfigReader, load_yaml_file
from crm_knowledge.settings import env_value, get_settings

KINDS = ("file", "database", "webhook")
PURPOSES = ("marketing", "service", "analytics")
CONSENTS = ("marketing", "none")
MODES = ("insert_only", "upsert", "mirror")
FILE_FORMATS = ("csv", "jsonl")

#: Columns of marts.customer_segments a destination may receive (and their Postgres types).
SEGMENT_FIELDS: dict[str, str] = {
    "rfm_segment": "text",
    "value_tier": "text",
    "behaviour_cluster": "integer",
    "churn_probability": "double precision",
    "predicted_clv": "numeric",
    "p_alive": "double precision",
}
#: Known non-personal columns of marts.dim_customers (others are accepted and checked against the table).
DIM_FIELDS: dict[str, str] = {
    "city": "text",
    "city_name_en": "text",
    "province": "text",
    "province_name_en": "text",
    "has_marketing_consent": "boolean",
    "has_profiling_opt_out": "boolean",
}
#: Personal fields of pii.pii_customer_profiles; only ever delivered when listed under ``named_fields``.
PII_FIELDS: dict[str, str] = {
    "first_name": "text",
    "last_name": "text",
    "full_name": "text",
    "email": "text",
    "phone": "text",
    "national_id": "text",
    "birth_date": "date",
    "gender": "text",
    "street": "text",
    "city": "text",
    "province": "text",
    "postcode": "text",
    "company": "text",
}
#: Filter keys on list membership and on numeric thresholds.
LIST_FILTERS: dict[str, str] = {"rfm_segment": "text", "value_tier": "text", "behaviour_cluster": "int"}
THRESHOLD_FILTERS = ("churn_probability", "p_alive", "predicted_clv")
THRESHOLD_OPS: dict[str, str] = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
#: Names reserved for the columns every delivered record carries.
RESERVED_COLUMNS = ("change_type", "audience", "removal_reason", "customer_id", "as_of_date", "is_forgotten")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
_ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DestinationConfigError(ConfigError):
    """The destinations config is invalid; the message names the file and the offending key."""


@dataclass(frozen=True)
class Threshold:
    column: str
    op: str  # one of THRESHOLD_OPS
    value: float


@dataclass(frozen=True)
class AudienceFilter:
    """All conditions must hold (AND); an empty filter matches everyone."""

    in_lists: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    thresholds: tuple[Threshold, ...] = ()

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Python mirror of the SQL condition (used by tests and dry runs)."""
        for column, values in self.in_lists.items():
            if row.get(column) not in values:
                return False
        for t in self.thresholds:
            v = row.get(t.column)
            if v is None:
                return False
            v = float(v)
            ok = {"gte": v >= t.value, "gt": v > t.value, "lte": v <= t.value, "lt": v < t.value}[t.op]
            if not ok:
                return False
        return True


@dataclass(frozen=True)
class Audience:
    name: str
    filter: AudienceFilter
    #: Share (0 <= h < 1) of the customers entering the audience who are held out: recorded in
    #: scoring.campaign_assignments, never sent, and measured against the treated (export/holdout.py).
    #: None: no holdout declared, the audience is not a measured campaign.
    holdout: float | None = None


def _url_from_env(kind: str, name: str) -> str:
    """The URL a `kind` destination's `url_env` names, or an error naming the variable and the setting."""
    url = env_value(name)
    if not url:
        raise DestinationConfigError(f"{kind} destination: environment variable {name} ({kind}.url_env) is not set")
    return url


@dataclass(frozen=True)
class FileSettings:
    format: str
    dir: str


@dataclass(frozen=True)
class DatabaseSettings:
    table: str
    url_env: str | None = None

    def resolve_url(self, settings: Any = None) -> str:
        if self.url_env:
            return _url_from_env("database", self.url_env)
        if settings is None:
            from crm_knowledge.settings import get_settings

            settings = get_settings()
        return settings.orders_url


@dataclass(frozen=True)
class WebhookSettings:
    url: str | None
    url_env: str | None
    batch_size: int
    max_retries: int
    backoff_seconds: float
    timeout_seconds: float

    def resolve_url(self) -> str:
        if self.url_env:
            return _url_from_env("webhook", self.url_env)
        assert self.url is not None
        return expand_env(self.url)


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    kind: str
    enabled: bool
    purpose: str
    consent: str
    mode: str
    id_space: str
    audiences: tuple[Audience, ...]
    fields: tuple[str, ...]
    named_fields: tuple[str, ...] = ()
    exclude_ids: frozenset[str] = frozenset()
    key_column: str = "customer_id"
    max_removed_fraction: float = 0.5
    file: FileSettings | None = None
    database: DatabaseSettings | None = None
    webhook: WebhookSettings | None = None
    source: str = "<destinations config>"

    @property
    def source_system(self) -> str | None:
        """The identity-map source system of ``id_space: source:<system>``, else None."""
        return self.id_space.split(":", 1)[1] if self.id_space.startswith("source:") else None

    @property
    def measured_audiences(self) -> dict[str, float]:
        """Audiences that declare a holdout share (campaigns measured against a holdout), by name."""
        return {a.name: a.holdout for a in self.audiences if a.holdout is not None}

    @property
    def columns(self) -> list[str]:
        """Columns of every delivered record, in order (``change_type`` / ``removal_reason`` come first)."""
        return [self.key_column, "audience", *self.fields, *self.named_fields]


@dataclass(frozen=True)
class DestinationsConfig:
    destinations: tuple[DestinationConfig, ...]
    source: str

    def get(self, name: str) -> DestinationConfig:
        for d in self.destinations:
            if d.name == name:
                return d
        raise KeyError(f"{self.source}: no destination named {name!r} "
                       f"(known: {', '.join(d.name for d in self.destinations)})")


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}``; an unset VAR without a default is an error."""

    def repl(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        value = env_value(name)
        if value not in (None, ""):
            return value
        if default is not None:
            return default
        raise DestinationConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})")

    return _ENV_REF_RE.sub(repl, text)


# --- validation helpers ---------------------------------------------------------------------------------------


class _Reader(ConfigReader):
    """Reads one mapping of destinations.yml (see :class:`~crm_knowledge.config_reader.ConfigReader`)."""

    error = DestinationConfigError


_DEST_REQUIRED = ["name", "kind", "enabled", "purpose", "consent", "mode", "id_space", "audiences", "fields"]
_DEST_OPTIONAL = ["exclude", "named_fields", "key_column", "max_removed_fraction", "file", "database", "webhook"]


def _parse_filter(r: _Reader) -> AudienceFilter:
    r.expect_keys([], [*LIST_FILTERS, *THRESHOLD_FILTERS])
    in_lists: dict[str, tuple[Any, ...]] = {}
    for column, kind in LIST_FILTERS.items():
        if column not in r.data:
            continue
        values = r.list_(column)
        for v in values:
            bad = (isinstance(v, bool) or not isinstance(v, int)) if kind == "int" else not isinstance(v, str)
            if bad:
                r.fail(r.key(column), f"must list {'integers' if kind == 'int' else 'strings'}, got {v!r}")
        in_lists[column] = tuple(values)
    thresholds = []
    for column in THRESHOLD_FILTERS:
        if column not in r.data:
            continue
        tr = r.child(column)
        tr.expect_keys([], list(THRESHOLD_OPS))
        if not tr.data:
            r.fail(r.key(column), f"needs at least one of {', '.join(THRESHOLD_OPS)}")
        for op in THRESHOLD_OPS:
            if op in tr.data:
                thresholds.append(Threshold(column, op, tr.float_(op)))
    return AudienceFilter(in_lists=in_lists, thresholds=tuple(thresholds))


def _read_exclude_file(path: Path, r: _Reader, key: str) -> set[str]:
    """One customer_id per line, or a CSV whose first column (or ``customer_id`` column) holds them."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        r.fail(key, f"names a file that cannot be read ({exc})")
    rows = [row for row in csv.reader(text.splitlines()) if row and row[0].strip()]
    if not rows:
        return set()
    header = [c.strip().lower() for c in rows[0]]
    col = header.index("customer_id") if "customer_id" in header else 0
    body = rows[1:] if "customer_id" in header else rows
    return {row[col].strip() for row in body if len(row) > col and row[col].strip()
            and not row[col].strip().startswith("#")}


def _parse_destination(r: _Reader, base_dir: Path) -> DestinationConfig:
    r.expect_keys(_DEST_REQUIRED, _DEST_OPTIONAL)
    name = r.str_("name", pattern=_NAME_RE)
    kind = r.str_("kind", KINDS)
    purpose = r.str_("purpose", PURPOSES)
    consent = r.str_("consent", CONSENTS)
    if purpose == "marketing" and consent != "marketing":
        r.fail(r.key("consent"), "must be 'marketing' for a destination whose purpose is marketing")
    mode = r.str_("mode", MODES)
    id_space = r.str_("id_space")
    if id_space != "customer_id" and not (id_space.startswith("source:") and len(id_space) > len("source:")):
        r.fail(r.key("id_space"), f"must be 'customer_id' or 'source:<source_system>', got {id_space!r}")
    key_column = r.str_("key_column", pattern=_NAME_RE) if r.has("key_column") else "customer_id"

    audiences = []
    for i, item in enumerate(r.list_("audiences")):
        ar = _Reader(item, r.source, f"{r.key('audiences')}[{i}]")
        ar.expect_keys(["name", "filter"], ["holdout"])
        aname = ar.str_("name", pattern=_NAME_RE)
        if ar.data["filter"] is None:
            afilter = AudienceFilter()
        else:
            afilter = _parse_filter(ar.child("filter"))
        holdout = None
        if ar.has("holdout"):
            holdout = ar.float_("holdout", 0.0, 1.0)
            if holdout >= 1.0:
                ar.fail(ar.key("holdout"), "must be below 1 (a share of the audience held out, e.g. 0.1)")
        audiences.append(Audience(aname, afilter, holdout))
    names = [a.name for a in audiences]
    if len(set(names)) != len(names):
        r.fail(r.key("audiences"), "names an audience twice")

    fields = r.list_("fields", allow_empty=True)
    for f in fields:
        if not isinstance(f, str) or not _NAME_RE.match(f):
            r.fail(r.key("fields"), f"holds an invalid column name {f!r}")
        if f in PII_FIELDS and f not in DIM_FIELDS:
            r.fail(r.key("fields"), f"holds the personal field {f!r}; list it under named_fields instead")
        if f in RESERVED_COLUMNS or f == key_column:
            r.fail(r.key("fields"), f"holds {f!r}, a column every record carries already")
    if len(set(fields)) != len(fields):
        r.fail(r.key("fields"), "lists a field twice")
    named = r.list_("named_fields", allow_empty=True) if r.has("named_fields") else []
    for f in named:
        if f not in PII_FIELDS:
            r.fail(r.key("named_fields"), f"holds {f!r}, not a field of pii.pii_customer_profiles "
                   f"(allowed: {', '.join(PII_FIELDS)})")
        if f in fields:
            r.fail(r.key("named_fields"), f"holds {f!r}, which is also listed under fields")
    if len(set(named)) != len(named):
        r.fail(r.key("named_fields"), "lists a field twice")

    exclude: set[str] = set()
    if r.has("exclude"):
        er = r.child("exclude")
        er.expect_keys([], ["customer_ids", "file"])
        if er.has("customer_ids"):
            for cid in er.list_("customer_ids", allow_empty=True):
                if not isinstance(cid, str | int) or isinstance(cid, bool):
                    er.fail(er.key("customer_ids"), f"must list customer ids, got {cid!r}")
                exclude.add(str(cid))
        if er.has("file"):
            rel = er.str_("file")
            path = Path(rel) if Path(rel).is_absolute() else base_dir / rel
            exclude |= _read_exclude_file(path, er, er.key("file"))

    max_removed = r.float_("max_removed_fraction", 0.0, 1.0) if r.has("max_removed_fraction") else 0.5

    file_s = db_s = hook_s = None
    for section in ("file", "database", "webhook"):
        if section in r.data and section != kind:
            r.fail(r.key(section), f"does not apply to a destination of kind {kind!r}")
    if kind not in r.data:
        r.fail(r.key(kind), f"is missing (settings of a {kind} destination)")
    sr = r.child(kind)
    if kind == "file":
        sr.expect_keys(["format", "dir"])
        d = sr.str_("dir")
        p = PurePosixPath(d)
        if p.is_absolute() or ".." in p.parts or Path(d).is_absolute():
            sr.fail(sr.key("dir"), f"must be a relative folder under the exports directory, got {d!r}")
        file_s = FileSettings(format=sr.str_("format", FILE_FORMATS), dir=d)
    elif kind == "database":
        sr.expect_keys(["table"], ["url_env"])
        url_env = sr.str_("url_env", pattern=_ENV_NAME_RE) if sr.has("url_env") else None
        db_s = DatabaseSettings(table=sr.str_("table", pattern=_TABLE_RE), url_env=url_env)
    else:
        sr.expect_keys(["batch_size", "max_retries", "backoff_seconds", "timeout_seconds"], ["url", "url_env"])
        if sr.has("url") == sr.has("url_env"):
            sr.fail(sr.key("url"), "exactly one of url and url_env must be given")
        url = sr.str_("url") if sr.has("url") else None
        if url is not None:
            preview = _ENV_REF_RE.sub("x", url)
            if "${" in preview:
                sr.fail(sr.key("url"), f"has a malformed ${{...}} reference: {url!r}")
            if not re.match(r"^https?://", preview):
                sr.fail(sr.key("url"), f"must be an http:// or https:// URL, got {url!r}")
        hook_s = WebhookSettings(
            url=url,
            url_env=sr.str_("url_env", pattern=_ENV_NAME_RE) if sr.has("url_env") else None,
            batch_size=sr.int_("batch_size", 1),
            max_retries=sr.int_("max_retries", 0),
            backoff_seconds=sr.float_("backoff_seconds", 0.0),
            timeout_seconds=sr.float_("timeout_seconds", 0.1),
        )

    return DestinationConfig(
        name=name,
        kind=kind,
        enabled=r.bool_("enabled"),
        purpose=purpose,
        consent=consent,
        mode=mode,
        id_space=id_space,
        audiences=tuple(audiences),
        fields=tuple(fields),
        named_fields=tuple(named),
        exclude_ids=frozenset(exclude),
        key_column=key_column,
        max_removed_fraction=max_removed,
        file=file_s,
        database=db_s,
        webhook=hook_s,
        source=r.source,
    )


def parse_destinations(data: Any, source: str = "<destinations config>",
                       base_dir: Path | None = None) -> DestinationsConfig:
    """Validate an already-parsed YAML document; ``base_dir`` resolves relative exclude files."""
    base_dir = base_dir or get_settings().config_dir
    top = _Reader(data, source, "")
    top.expect_keys(["destinations"])
    items = top.list_("destinations", allow_empty=True)
    dests = [_parse_destination(_Reader(item, source, f"destinations[{i}]"), base_dir)
             for i, item in enumerate(items)]
    names = [d.name for d in dests]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DestinationConfigError(f"{source}: key 'destinations' names destination {dupes[0]!r} twice")
    return DestinationsConfig(destinations=tuple(dests), source=source)


def parse_destination(data: Any, source: str = "<destination>", base_dir: Path | None = None) -> DestinationConfig:
    """Validate one destination mapping (handy for tests and ad-hoc deliveries)."""
    return _parse_destination(_Reader(data, source, ""), base_dir or get_settings().config_dir)


def load_destinations(path: Path | str | None = None) -> DestinationsConfig:
    """Read and validate the destinations config (default :attr:`Settings.destinations_file`)."""
    path = Path(path) if path is not None else get_settings().destinations_file
    data = load_yaml_file(path, DestinationConfigError, "destinations config")
    return parse_destinations(data, str(path), base_dir=path.parent)
