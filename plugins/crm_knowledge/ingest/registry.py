"""The source registry: `config/sources/*.yml`, one file per source.

Adding a sibling unit is a config change only: drop a new YAML file naming its path/glob, format,
encoding, delimiter, calendar and column mapping. Everything is validated here, up front, so a wrong
config fails with the file and key named instead of failing half-way through a load.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_knowledge.config_reader import ConfigError, load_yaml_file

CANONICAL_FIELDS = (
    "source_record_id", "first_name", "last_name", "full_name", "email", "phone", "national_id",
    "birth_date", "gender", "street", "house_number", "address_line2", "city", "province", "postcode", "company",
    "business_type", "signup_date",
)
#: Kinds whose raw table has an `identifiers` jsonb column: a column may map onto any identifier kind declared
#: in config/identity.yml (`identifiers`), landing there as {"<kind>": "<value>"}.
IDENTIFIER_KINDS = ("forms", "sibling_unit")

#: Source kind → the raw table it lands in and the business columns of that table.
KIND_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "forms": ("raw.form_submissions", (
        "submission_id", "form_type", "submitted_at", "customer_ref", "order_ref", "product_interest",
        "message", "rating", "consent_marketing", "consent_profiling", *CANONICAL_FIELDS)),
    "sibling_unit": ("raw.sibling_customers", CANONICAL_FIELDS),
    "contacts": ("raw.contact_interactions", (
        "interaction_id", "channel", "occurred_at", "customer_name", "email", "phone", "customer_ref",
        "topic", "outcome", "notes", "agent_id")),
    "order_export": ("raw.order_exports", (
        "order_id", "customer_source_id", "order_date", "quantity", "amount", "items")),
}
FILE_KINDS = tuple(KIND_TARGETS)
ALL_KINDS = (*FILE_KINDS, "orders_db")
FORMATS = ("csv", "xlsx", "jsonl")
CALENDARS = ("gregorian", "jalali")
#: Orders-database entity -> its canonical fields (the business columns of `raw.orders__<entity>`), key first.
ORDERS_DB_FIELDS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "first_name", "last_name", "email", "phone", "national_id", "birth_date",
                  "gender", "street", "city", "province", "postcode", "company", "business_type", "created_at",
                  "updated_at"),
    "products": ("product_id", "sku", "name", "category", "unit_price", "updated_at"),
    "orders": ("order_id", "customer_id", "ordered_at", "status", "channel", "total_amount", "currency",
               "updated_at"),
    "order_items": ("order_item_id", "order_id", "product_id", "quantity", "unit_price", "line_amount",
                    "updated_at"),
}
ORDERS_DB_TABLES = tuple(ORDERS_DB_FIELDS)
_ENTITY_KEYS = {"table", "query", "primary_key", "updated_at", "columns", "soft_delete_column",
                "reconcile_deletes", "reconcile_every_hours"}

_KNOWN_KEYS = {
    "name", "kind", "description", "path", "format", "encoding", "delimiter", "sheet",
    "date_calendar", "date_format", "primary_key", "required_columns", "columns", "unit", "shop",
    "connection_env", "lookback_minutes", "tables", "field_issue_threshold",
}
#: Share of a batch's rows with a value staging cannot convert in one column above which the batch is held
#: (ingest/field_issues.py).
DEFAULT_FIELD_ISSUE_THRESHOLD = 0.05


class SourceConfigError(ConfigError):
    """A source configuration file is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class OrdersEntity:
    """Where one orders-database entity lives in the source and how its columns map onto the canonical fields.

    `table` (optionally `schema.table`) or `query` (a SELECT whose result is read like a table) is the
    source relation; `primary_key` and `updated_at` name its key and change-timestamp columns; `columns`
    maps source column -> canonical field (`ORDERS_DB_FIELDS`). Deletions are captured from a soft-delete
    column (true, or any non-null value for a non-boolean column such as `deleted_at`) and/or by key
    reconciliation: keys held in the warehouse but gone from the source get a deletion version.
    """

    entity: str
    table: str | None
    query: str | None
    primary_key: str
    updated_at: str
    columns: dict[str, str]
    soft_delete_column: str | None = None
    reconcile_deletes: bool = False
    reconcile_every_hours: float = 0

    @property
    def key_field(self) -> str:
        return ORDERS_DB_FIELDS[self.entity][0]

    @property
    def setting(self) -> str:
        """The config key of this entity, for error messages (`tables.customers`)."""
        return f"tables.{self.entity}"


def _parse_entity(path: Path, entity: str, spec: Any) -> OrdersEntity:
    where = f"tables.{entity}"
    if not isinstance(spec, dict):
        raise _fail(path, where, "must be a mapping (table or query, primary_key, updated_at, columns)")
    unknown = sorted(set(spec) - _ENTITY_KEYS)
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", f"unknown setting (known: {', '.join(sorted(_ENTITY_KEYS))})")
    if spec.get("table") and spec.get("query"):
        raise _fail(path, f"{where}.query", "give either a table or a query, not both")
    query = spec.get("query")
    if query is not None:
        query = str(query).strip().rstrip(";").strip()
        if not query.lower().startswith(("select", "with")):
            raise _fail(path, f"{where}.query", "must be a single SELECT (or WITH ... SELECT) statement")
    table = None if query else str(spec.get("table") or entity)
    if table is not None and (table.count(".") > 1 or not all(table.split("."))):
        raise _fail(path, f"{where}.table", f"{table!r} is not a table name (name or schema.name)")
    if not spec.get("primary_key"):
        raise _fail(path, f"{where}.primary_key", "is required (the source column holding the record key)")
    primary_key = str(spec["primary_key"])
    updated_at = str(spec.get("updated_at") or "updated_at")
    fields = ORDERS_DB_FIELDS[entity]
    columns = spec.get("columns")
    if columns is None:
        # No mapping: the source uses the canonical names (the demo's orders database does).
        columns = {f: f for f in fields}
    if not isinstance(columns, dict) or not columns:
        raise _fail(path, f"{where}.columns", "must map source column names to canonical fields")
    columns = {str(k): str(v) for k, v in columns.items()}
    for src, dst in columns.items():
        if dst not in fields:
            raise _fail(path, f"{where}.columns.{src}",
                        f"{dst!r} is not a field of raw.orders__{entity} (allowed: {', '.join(fields)})")
    targets = list(columns.values())
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise _fail(path, f"{where}.columns", f"several columns map onto {dupes}")
    key_field = fields[0]
    if columns.get(primary_key, key_field) != key_field:
        raise _fail(path, f"{where}.primary_key",
                    f"{primary_key!r} is mapped onto {columns[primary_key]!r}, not the key field {key_field!r}")
    if key_field in targets and columns.get(primary_key) != key_field:
        raise _fail(path, f"{where}.primary_key",
                    f"{primary_key!r} is not the column mapped onto the key field {key_field!r}")
    columns.setdefault(primary_key, key_field)
    if columns.get(updated_at, "updated_at") != "updated_at":
        raise _fail(path, f"{where}.updated_at", f"{updated_at!r} is mapped onto {columns[updated_at]!r}, "
                    "not onto updated_at")
    if "updated_at" in targets and columns.get(updated_at) != "updated_at":
        raise _fail(path, f"{where}.updated_at",
                    f"{updated_at!r} is not the column mapped onto updated_at")
    columns.setdefault(updated_at, "updated_at")
    reconcile = spec.get("reconcile_deletes", False)
    if not isinstance(reconcile, bool):
        raise _fail(path, f"{where}.reconcile_deletes", "must be true or false")
    every = spec.get("reconcile_every_hours", 0)
    if isinstance(every, bool) or not isinstance(every, int | float) or every < 0:
        raise _fail(path, f"{where}.reconcile_every_hours", "must be a number of hours >= 0")
    soft = spec.get("soft_delete_column")
    return OrdersEntity(entity=entity, table=table, query=query, primary_key=primary_key, updated_at=updated_at,
                        columns=columns, soft_delete_column=str(soft) if soft else None,
                        reconcile_deletes=reconcile, reconcile_every_hours=float(every))


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    config_file: Path
    description: str = ""
    path: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None
    date_calendar: str = "gregorian"
    date_format: str | None = None
    primary_key: str | None = None
    required_columns: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    unit: str | None = None
    shop: str | None = None
    connection_env: str | None = None
    lookback_minutes: int = 0
    tables: dict[str, OrdersEntity] = field(default_factory=dict)
    field_issue_threshold: float = DEFAULT_FIELD_ISSUE_THRESHOLD
    #: mapped columns whose target is a declared identifier kind (subset of `columns`' values)
    identifier_targets: frozenset[str] = frozenset()

    @property
    def target_table(self) -> str:
        return KIND_TARGETS[self.kind][0]

    @property
    def source_system(self) -> str:
        """The `source_system` value its customer records carry downstream (see data contracts)."""
        return {"forms": "forms", "contacts": "contacts", "orders_db": "orders"}.get(
            self.kind, f"sibling:{self.unit}" if self.kind == "sibling_unit" else self.name
        )

    @property
    def constant_columns(self) -> dict[str, str]:
        """Columns filled from config rather than the file (the unit or shop the file belongs to)."""
        if self.kind == "sibling_unit":
            return {"unit": str(self.unit)}
        if self.kind == "order_export":
            return {"shop": str(self.shop)}
        return {}


def _fail(path: Path, key: str, message: str) -> SourceConfigError:
    return SourceConfigError(f"{path}: key '{key}': {message}")


def parse_source(path: Path, identifier_kinds: frozenset[str] = frozenset()) -> SourceConfig:
    """One source file, validated; `identifier_kinds`: the kinds declared in config/identity.yml."""
    raw = load_yaml_file(path, SourceConfigError, "source config")
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{path}: expected a mapping of settings at the top level")

    if "schedule" in raw:
        raise _fail(path, "schedule", "is not a source setting: a source is loaded on the schedule of the DAG "
                    "that loads its kind (docs/operations.md, \"The DAGs\"); remove the key")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown setting (known: {', '.join(sorted(_KNOWN_KEYS))})")
    for key in ("name", "kind"):
        if not raw.get(key):
            raise _fail(path, key, "is required")
    name, kind = str(raw["name"]), str(raw["kind"])
    if not name.replace("_", "").isalnum() or not name.islower():
        raise _fail(path, "name", f"{name!r} must be lower_snake_case")
    if kind not in ALL_KINDS:
        raise _fail(path, "kind", f"{kind!r} is not one of {', '.join(ALL_KINDS)}")

    if kind == "orders_db":
        tables = raw.get("tables") or {}
        if not isinstance(tables, dict) or not tables:
            raise _fail(path, "tables", "lists the orders-db tables to extract")
        entities = {}
        for tname, spec in tables.items():
            if tname not in ORDERS_DB_TABLES:
                raise _fail(path, f"tables.{tname}", f"unknown entity (known: {', '.join(ORDERS_DB_TABLES)})")
            entities[tname] = _parse_entity(path, tname, spec)
        lookback = raw.get("lookback_minutes", 0)
        if not isinstance(lookback, int) or lookback < 0:
            raise _fail(path, "lookback_minutes", "must be a whole number of minutes >= 0")
        return SourceConfig(name=name, kind=kind, config_file=path, description=raw.get("description", ""),
                            tables=entities,
                            connection_env=raw.get("connection_env"), lookback_minutes=lookback)

    for key in ("path", "format", "columns", "primary_key"):
        if not raw.get(key):
            raise _fail(path, key, "is required for file sources")
    fmt = str(raw["format"]).lower()
    if fmt not in FORMATS:
        raise _fail(path, "format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    encoding = str(raw.get("encoding", "utf-8"))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _fail(path, "encoding", f"{encoding!r} is not an encoding Python knows") from None
    calendar = str(raw.get("date_calendar", "gregorian")).lower()
    if calendar not in CALENDARS:
        raise _fail(path, "date_calendar", f"{calendar!r} is not one of {', '.join(CALENDARS)}")
    delimiter = str(raw.get("delimiter", ","))
    if len(delimiter) != 1:
        raise _fail(path, "delimiter", f"{delimiter!r} must be a single character")
    if fmt == "xlsx" and not raw.get("sheet"):
        raise _fail(path, "sheet", "is required for xlsx sources")

    columns = raw["columns"]
    if not isinstance(columns, dict):
        raise _fail(path, "columns", "must map source column names to canonical fields")
    allowed = KIND_TARGETS[kind][1]
    kinds = identifier_kinds if kind in IDENTIFIER_KINDS else frozenset()
    for src, dst in columns.items():
        if dst not in allowed and dst not in kinds:
            declared = f"; identifier kinds declared in identity.yml: {', '.join(sorted(kinds))}" if kinds else ""
            raise _fail(path, f"columns.{src}", f"{dst!r} is not a field of {KIND_TARGETS[kind][0]} "
                        f"(allowed: {', '.join(allowed)}{declared})")
    targets = list(columns.values())
    dupes = {t for t in targets if targets.count(t) > 1}
    if dupes:
        raise _fail(path, "columns", f"several columns map onto {sorted(dupes)}")
    primary_key = str(raw["primary_key"])
    if primary_key not in targets:
        raise _fail(path, "primary_key", f"{primary_key!r} is not the target of any mapped column")
    required = tuple(str(c) for c in raw.get("required_columns") or ())
    for col in required:
        if col not in columns:
            raise _fail(path, "required_columns", f"{col!r} is not a mapped source column")
    if kind == "sibling_unit" and not raw.get("unit"):
        raise _fail(path, "unit", "names the sibling unit (used as source_system 'sibling:<unit>')")
    if kind == "order_export" and not raw.get("shop"):
        raise _fail(path, "shop", "names the shop the export comes from")
    threshold = raw.get("field_issue_threshold", DEFAULT_FIELD_ISSUE_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise _fail(path, "field_issue_threshold", f"{threshold!r} must be a share between 0 and 1 (0.05 = 5%)")

    return SourceConfig(
        name=name, kind=kind, config_file=path, description=raw.get("description", ""),
        path=str(raw["path"]), format=fmt, encoding=encoding,
        delimiter=delimiter, sheet=raw.get("sheet"), date_calendar=calendar,
        date_format=raw.get("date_format"), primary_key=primary_key, required_columns=required,
        columns={str(k): str(v) for k, v in columns.items()}, unit=raw.get("unit"), shop=raw.get("shop"),
        field_issue_threshold=float(threshold),
        identifier_targets=frozenset(str(v) for v in columns.values() if v in kinds and v not in allowed),
    )


def load_registry(config_dir: Path | None = None) -> list[SourceConfig]:
    """Every source in `config_dir/sources/*.yml`, validated; names must be unique."""
    if config_dir is None:
        from crm_knowledge.settings import get_settings

        config_dir = get_settings().config_dir
    files = sorted((config_dir / "sources").glob("*.yml"))
    kinds = _declared_identifier_kinds(config_dir)
    sources = [parse_source(f, kinds) for f in files]
    seen: dict[str, Path] = {}
    for s in sources:
        if s.name in seen:
            raise SourceConfigError(f"{s.config_file}: key 'name': {s.name!r} is also used by {seen[s.name]}")
        seen[s.name] = s.config_file
    return sources


def _declared_identifier_kinds(config_dir: Path) -> frozenset[str]:
    """Identifier kinds declared in `config_dir/identity.yml` (none when the file is absent)."""
    from crm_knowledge.identity.config import load_config

    path = config_dir / "identity.yml"
    if not path.exists():
        return frozenset()
    return frozenset(k.name for k in load_config(path).declared_identifiers)


def sources_of_kind(kind: str, config_dir: Path | None = None) -> list[SourceConfig]:
    return [s for s in load_registry(config_dir) if s.kind == kind]
