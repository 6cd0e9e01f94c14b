"""The expectation suites (``expectations/suites/**/*.json``) and what the gate needs to know about them.

Every suite file is a GX Core 1.x ExpectationSuite document. Besides GX's own fields it carries, in
``meta.ckp``, what the gate needs to run it:

``layer``        raw | staging | marts
``relation``     the validated table or view (``raw.form_submissions``)
``row_id``       columns identifying an offending row in reports: ``_row_number`` for raw batches, the
                 entity key elsewhere (never a personal value)
``batch_column`` raw only: the load-batch column a batch is selected by (``_batch_id``)
``volume``       optional ``{min_ratio, max_ratio, severity}``: row count against the previous accepted
                 scope (batch or run) of the same suite
``null_rates``   optional ``{columns, tolerance, history, severity}``: null share of each column may exceed
                 its mean over the last ``history`` accepted scopes by at most ``tolerance`` (absolute)

An ``unexpected_rows_query`` runs on every batch, once (the gate runs it, not GX: :mod:`.row_checks`): it must
cost in proportion to the batch, so a lookup in another table probes that table's index for each batch row
(``left join ... on <indexed key> = <batch value>``) instead of aggregating the whole table
(``select distinct ... from raw.orders__customers`` read every customer version for each 300-row kiosk batch).
``{batch}`` is aliased (``subselect``) unless the query has a JOIN, as GX does, and braces are placeholders:
write regex quantifiers without ``{n}``.

Every expectation carries ``meta.severity`` (``critical`` blocks, ``warning`` is recorded) and ``notes``
saying why the rule holds. Volume and null-rate expectations are added at run time from the history in
``audit.dq_metric_history`` (they need the previous runs, which a static file cannot know).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_knowledge.settings import Settings, get_settings

SEVERITIES = ("critical", "warning")
LAYERS = ("raw", "staging", "marts")


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    layer: str
    relation: str
    row_id: tuple[str, ...]
    path: Path
    batch_column: str | None = None
    volume: dict[str, Any] | None = None
    null_rates: dict[str, Any] | None = None
    expectations: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def _suites_dir(settings: Settings | None) -> Path:
    return (settings or get_settings()).expectations_dir / "suites"


def load_spec(path: Path) -> SuiteSpec:
    doc = json.loads(path.read_text(encoding="utf-8"))
    ckp = (doc.get("meta") or {}).get("ckp") or {}
    missing = [k for k in ("layer", "relation", "row_id") if k not in ckp]
    if missing:
        raise ValueError(f"{path}: meta.ckp lacks {', '.join(missing)}")
    return SuiteSpec(
        name=doc["name"],
        layer=ckp["layer"],
        relation=ckp["relation"],
        row_id=tuple(ckp["row_id"]),
        path=path,
        batch_column=ckp.get("batch_column"),
        volume=ckp.get("volume"),
        null_rates=ckp.get("null_rates"),
        expectations=tuple(doc.get("expectations") or ()),
    )


def all_specs(settings: Settings | None = None) -> list[SuiteSpec]:
    return [load_spec(p) for p in sorted(_suites_dir(settings).rglob("*.json"))]


def specs_for_layer(layer: str, settings: Settings | None = None) -> list[SuiteSpec]:
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    return [s for s in all_specs(settings) if s.layer == layer]


def spec_for_relation(relation: str, settings: Settings | None = None) -> SuiteSpec:
    """The raw suite of `relation` (``raw.form_submissions`` or ``form_submissions``)."""
    qualified = relation if "." in relation else f"raw.{relation}"
    for spec in all_specs(settings):
        if spec.relation == qualified:
            return spec
    raise LookupError(f"no expectation suite for {qualified} under {_suites_dir(settings)}")


def severity_of(expectation_config: dict[str, Any]) -> str:
    """``meta.severity`` of an expectation (falls back to GX's own `severity`, then critical)."""
    meta = expectation_config.get("meta") or {}
    sev = meta.get("severity") or expectation_config.get("severity") or "critical"
    return sev if sev in SEVERITIES else "critical"


def column_of(expectation_config: dict[str, Any]) -> str | None:
    kwargs = expectation_config.get("kwargs") or {}
    if kwargs.get("column"):
        return kwargs["column"]
    if kwargs.get("column_list"):
        return ",".join(kwargs["column_list"])
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return (expectation_config.get("meta") or {}).get("column")


def runtime_suite(context, spec: SuiteSpec, extra_expectations: list[Any] = ()):
    """A copy of the stored suite plus run-time expectations, NOT attached to the store (never saved)."""
    import great_expectations as gx

    stored = context.suites.get(spec.name)
    suite = gx.ExpectationSuite(
        name=spec.name,
        meta=dict(stored.meta),
        notes=stored.notes,
        expectations=[e.configuration for e in stored.expectations]
        + [e.configuration for e in extra_expectations],
    )
    return suite
