"""The dbt stages of the pipeline, in run order, and the `dbt build` command line of each.

What each stage builds is defined once, as a YAML selector in `dbt_project/selectors.yml`; this module only
names those selectors and says where each one runs (the DAG task that builds it: a cosmos
`dbt build --selector <stage>`, `dags/ckp_common.dbt_build_stage`). The benchmark, the tests and any
hand-run build use :func:`build_args` with :func:`crm_knowledge.runner.run_dbt`, so nothing else spells
out a list of models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DbtStage:
    """One selector of `selectors.yml` and the DAG task that builds it."""

    selector: str
    dag_id: str
    task_id: str
    description: str


STAGING = DbtStage("identity_input", "customer_warehouse", "dbt_staging",
                   "staging tables of every source and the identity matcher's input")
MARTS = DbtStage("post_identity", "customer_warehouse", "dbt_marts",
                 "seeds, identity views, intermediate, marts, pii and the golden-record snapshot")
POST_SCORING = DbtStage("post_scoring", "customer_scoring", "dbt_post_scoring",
                        "customer_segments, customer_360 and the relationship-stage snapshot")

#: The environment variable a daily run's dbt tasks carry the run's start in (crm_knowledge.run_mode; read by
#: the macro `changed_since()` when the var `dbt_tests_since` is unset). An environment variable, not a var:
#: dbt parses the whole project again whenever its `--vars` change (5 s a task at the demo's size), but
#: re-parses only the files that read a changed environment variable, so the stages of a run share one parse.
TESTS_SINCE_ENV = "CKP_DBT_TESTS_SINCE"
#: The same for the run's as-of date (the macro `as_of_date()`, when the var `as_of_date` is unset): with both
#: in the environment the DAGs' dbt tasks run with the same (no) vars every day and every task reuses the parse.
AS_OF_ENV = "CKP_DBT_AS_OF_DATE"

#: Every stage, in the order the pipeline runs them (identity resolution between the first two, scoring
#: between the last two). Together they build every model, seed and snapshot of the project exactly once.
STAGES: tuple[DbtStage, ...] = (STAGING, MARTS, POST_SCORING)


def vars_and_env(dbt_vars: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """A run's dbt vars as the DAGs' dbt tasks hand them to dbt: the as-of date and the run's start in the
    environment (``AS_OF_ENV``, ``TESTS_SINCE_ENV``; '' when not given: today, every row), every other var in
    ``--vars``. A daily run's start changes every day; in ``--vars`` it would make dbt parse the whole project
    again at each run's first stage. Returns (the vars for :func:`build_args`, the environment to add)."""
    from crm_knowledge.run_mode import DBT_TESTS_SINCE_VAR

    rest = dict(dbt_vars or {})
    as_of, since = rest.pop("as_of_date", None), rest.pop(DBT_TESTS_SINCE_VAR, None)
    return rest, {AS_OF_ENV: "" if as_of is None else str(as_of), TESTS_SINCE_ENV: since or ""}


def build_args(stage: DbtStage, *, full_refresh: bool = False, dbt_vars: Mapping[str, Any] | None = None,
               with_tests: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    """The arguments of `dbt build` for one stage (for :func:`crm_knowledge.runner.run_dbt`).

    ``with_tests=False`` leaves dbt's data and unit tests out (fixtures that only need the tables).
    """
    args = ["build", "--selector", stage.selector]
    if full_refresh:
        args.append("--full-refresh")
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars), default=str)]
    if not with_tests:
        args += ["--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]
    return [*args, *extra]
