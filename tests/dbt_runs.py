"""The one way tests run dbt: crm_knowledge.runner.run_dbt (as the pipeline and the benchmark do), on the
stages of the catalogue (crm_knowledge.dbt_stages, dbt_project/selectors.yml).

Importable from every test module (pytest puts `tests/`, the folder of the root conftest, on sys.path).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crm_knowledge import dbt_stages
from crm_knowledge.runner import DbtResult, dbt_parse, dbt_process_env, run_dbt
from crm_knowledge.settings import Settings

#: dbt needs a profile to parse the project or list its nodes, never a connection (neither connects).
OFFLINE_PROFILE = {"CKP_DBT_HOST": "127.0.0.1", "CKP_DBT_PORT": "5432", "CKP_DBT_USER": "x",
                   "CKP_DBT_PASSWORD": "x", "CKP_DBT_DBNAME": "x", "DO_NOT_TRACK": "1"}


def offline_env(settings: Settings) -> dict[str, str]:
    """The environment of a dbt command that reads the project only (parse, ls)."""
    return {**os.environ, **OFFLINE_PROFILE, "DBT_PROFILES_DIR": str(settings.dbt_project_dir)}


def parse_project(settings: Settings) -> Path:
    """`dbt parse` offline into dbt_project/target, where cosmos renders the DAGs' dbt tasks from; the manifest."""
    return dbt_parse(offline_env(settings), settings)


def on_database(settings: Settings, url: str) -> Settings:
    """``settings`` pointed at another warehouse database (a test's scratch database)."""
    return dataclasses.replace(settings, external_warehouse_url=url)


def as_of_vars(as_of: object) -> dict[str, str]:
    """dbt ``--vars`` of a run as of one day."""
    return {"as_of_date": str(as_of)}


def dbt(settings: Settings, tmp: Path, *args: str, env: Mapping[str, str] | None = None) -> DbtResult:
    """One dbt command on ``settings``' warehouse (``env`` added to its environment), its target and logs under
    ``tmp``; a failing command fails the test with dbt's output."""
    result = run_dbt(list(args), {**dbt_process_env(settings), **(env or {})}, settings, target_path=tmp / "target",
                     log_path=tmp / "logs", check=False)
    assert result.ok, result.failure_message()
    return result


def dbt_build_all(settings: Settings, tmp: Path, dbt_vars: Mapping[str, Any], *extra: str) -> DbtResult:
    """`dbt build` of the whole project in one command, for fixtures that seed identity and scoring output
    themselves (no Python stage runs between the catalogue's stages)."""
    return dbt(settings, tmp, "build", "--vars", json.dumps(dict(dbt_vars)), *extra)


def build_stages(settings: Settings, tmp: Path, *stages: dbt_stages.DbtStage,
                 dbt_vars: Mapping[str, Any] | None = None, with_tests: bool = True,
                 full_refresh: bool = False) -> float:
    """`dbt build --selector` of each stage in order, as the DAGs build them (the as-of date and the run's start
    in the environment: dbt_stages.vars_and_env); returns the wall seconds."""
    started = time.monotonic()
    rest, run_env = dbt_stages.vars_and_env(dbt_vars)
    for stage in stages:
        dbt(settings, tmp, *dbt_stages.build_args(stage, dbt_vars=rest, with_tests=with_tests,
                                                  full_refresh=full_refresh), env=run_env)
    return time.monotonic() - started
