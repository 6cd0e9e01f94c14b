"""What the DAGs' quality steps call, each given the run's as-of date (ISO ``YYYY-MM-DD``).

Results are keyed on that day (``crm_knowledge.as_of.run_key``), so the warehouse and scoring runs of one
day form one auditor's report. The checks themselves are in ``crm_knowledge.quality.pipeline``.
"""

from __future__ import annotations

from typing import Any

from crm_knowledge.as_of import run_key
from crm_knowledge.quality import pipeline
from crm_knowledge.run_mode import RunMode, complete, complete_post_scoring


def raw_gate(as_of: str) -> dict[str, Any]:
    """Check every newly loaded raw batch; hold the ones with a critical failure."""
    return pipeline.check_new_raw_batches(pipeline_run_id=run_key(as_of))


def source_freshness(as_of: str) -> dict[str, Any]:
    """`dbt source freshness`, recorded for the report; a source past its error_after fails."""
    return pipeline.check_source_freshness(pipeline_run_id=run_key(as_of))


def marts_gate(as_of: str, mode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Staging and marts checks; a critical failure stops scoring and exports. `mode`: the warehouse run's
    ``run_mode`` result (daily: the rows the run wrote; weekly or none: every row)."""
    run_mode = RunMode.from_value(mode)
    result = pipeline.check_layers(["staging", "marts"], pipeline_run_id=run_key(as_of), mode=run_mode)
    complete(run_mode)  # reached only when no critical failure raised
    return result


def post_scoring_gate(as_of: str, mode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Segments and scores, checked before anything leaves the warehouse. `mode`: the scoring run's
    ``run_mode`` result; when the checks pass, the warehouse runs it followed are marked picked up."""
    result = pipeline.check_post_scoring(pipeline_run_id=run_key(as_of))
    complete_post_scoring(RunMode.from_value(mode))  # reached only when no critical failure raised
    return result


def reports(as_of: str) -> dict[str, Any]:
    """The auditor's report and Data Docs of the day (also after a failure)."""
    return pipeline.build_reports(pipeline_run_id=run_key(as_of))
