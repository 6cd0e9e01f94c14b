"""Source freshness: how long ago each raw source last delivered, against the thresholds its dbt source
declares (`loaded_at_field` + `freshness` in `dbt_project/models/staging/_<source>__sources.yml`).

`dbt source freshness` measures it (``max(_loaded_at)`` per raw table, compared with the time of the check:
freshness is about the deployment now, not about the run's as-of date) and writes ``sources.json``;
:func:`record_freshness` files that as layer ``freshness`` in ``audit.dq_runs`` / ``audit.dq_results``,
one run per source (suite ``freshness.<source>``) and one result per table, so the auditor's report shows
it next to the other checks. Past ``error_after`` is a critical failure (the run stops before scoring and
exports: segments computed without a day of orders would be wrong), past ``warn_after`` a warning.
Recording is idempotent per pipeline run: a re-check replaces the earlier rows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from crm_knowledge.quality import results as res
from crm_knowledge.quality.results import Outcome
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

LAYER = "freshness"
EXPECTATION = "dbt_source_freshness"
_FAILED = {"error", "runtime error"}


class StaleSourceError(RuntimeError):
    """A source is past its ``error_after`` (or its freshness could not be measured)."""


def freshness_run_id(pipeline_run_id: str, suite: str) -> str:
    """The one ``audit.dq_runs`` row per pipeline run and source."""
    return f"dq-freshness-{pipeline_run_id}-{suite}"


def _threshold(criteria: dict[str, Any], key: str) -> str | None:
    rule = criteria.get(key) or {}
    if not rule.get("count") or not rule.get("period"):
        return None
    return f"{rule['count']} {rule['period']}{'s' if rule['count'] != 1 else ''}"


def age_text(seconds: float | None) -> str | None:
    """A source's age as people read it: hours up to two days, then days."""
    if seconds is None:
        return None
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def freshness_outcomes(sources_json: dict[str, Any]) -> dict[str, list[Outcome]]:
    """Suite (``freshness.<source>``) -> one outcome per table, from dbt's ``sources.json``."""
    groups: dict[str, list[Outcome]] = {}
    for r in sources_json.get("results", []):
        unique_id = r["unique_id"]  # source.<project>.<source>.<table>
        _, _, source, table = unique_id.split(".", 3)
        status = (r.get("status") or "").lower()
        criteria = r.get("criteria") or {}
        age_s = r.get("max_loaded_at_time_ago_in_s")
        warn_after, error_after = _threshold(criteria, "warn_after"), _threshold(criteria, "error_after")
        observed = {"status": status, "max_loaded_at": r.get("max_loaded_at"),
                    "snapshotted_at": r.get("snapshotted_at"),
                    "age_seconds": round(age_s) if age_s is not None else None,
                    "warn_after": warn_after, "error_after": error_after}
        if status == "runtime error":
            # dbt's message may quote the database's; keep it free of values
            observed["error"] = res.scrub_db_message(r.get("message"))
            what = f"{table}: freshness could not be measured"
        else:
            what = (f"{table}: last load {age_text(age_s)} ago (warn after {warn_after or '–'}, "
                    f"error after {error_after or '–'})")
        groups.setdefault(f"freshness.{source}", []).append(Outcome(
            suite=f"freshness.{source}", expectation=EXPECTATION, column_name=None,
            severity="warning" if status == "warn" else "critical", success=status == "pass",
            observed_value=observed, expectation_id=unique_id, description=what))
    return groups


def record_freshness(sources_json_path: str | Path, pipeline_run_id: str, url: str) -> dict[str, Any]:
    """File dbt's ``sources.json`` into the audit tables under `pipeline_run_id`; return a summary with
    the stale tables (``error`` and ``warn``) by unique_id."""
    doc = json.loads(Path(sources_json_path).read_text(encoding="utf-8"))
    groups = freshness_outcomes(doc)
    with connect(url) as conn:
        for suite in sorted(groups):
            outcomes = groups[suite]
            dq_run_id = freshness_run_id(pipeline_run_id, suite)
            res.start_run(conn, dq_run_id=dq_run_id, pipeline_run_id=pipeline_run_id, layer=LAYER, suite=suite,
                          batch_id=None, if_missing=True)
            res.replace_results(conn, dq_run_id, [o.expectation_id for o in outcomes], outcomes)
    outcomes = [o for group in groups.values() for o in group]
    summary = {
        "pipeline_run_id": pipeline_run_id,
        "tables_checked": len(outcomes),
        "errors": sorted(o.expectation_id for o in outcomes if o.observed_value["status"] in _FAILED),
        "warnings": sorted(o.expectation_id for o in outcomes if o.observed_value["status"] == "warn"),
    }
    log.info("source freshness recorded for %s: %s", pipeline_run_id, summary)
    return summary
