"""dbt run by the `ckp` commands (dbt_project/profiles.yml filled by Settings.dbt_env) and dbt run by cosmos' tasks
(the Airflow connection `warehouse`, crm_knowledge.warehouse.cosmos_profile) state the same connection, field for
field: dbt reuses a saved parse only for identical connection values, so the first task of a stack can start from
the parse `make run` made before starting it (tests/warehouse/test_dbt_partial_parse.py runs both dbts)."""

from __future__ import annotations

import re

import pytest
import yaml

from crm_knowledge.settings import Settings
from crm_knowledge.warehouse.cosmos_profile import WarehouseProfileMapping
from crm_knowledge.warehouse.dbt_connection import DBT_PROFILE, DBT_TARGET

URLS = [
    "postgresql://ckp@127.0.0.1:5432/warehouse",
    "postgresql://u:secret@db.example:6543/w?sslmode=require&application_name=ckp&connect_timeout=3"
    "&target_session_attrs=read-write",
]
ENV_VAR = re.compile(r"env_var\('(\w+)'(?:, '([^']*)')?\)")


def profiles_yml_target(settings: Settings, env: dict[str, str]) -> dict:
    """dbt_project/profiles.yml's target as dbt renders it with `env` (each field reads one variable, some with a
    default)."""
    profiles = yaml.safe_load((settings.dbt_project_dir / "profiles.yml").read_text(encoding="utf-8"))
    assert profiles[DBT_PROFILE]["target"] == DBT_TARGET
    rendered = {}
    for key, template in profiles[DBT_PROFILE]["outputs"][DBT_TARGET].items():
        match = ENV_VAR.search(str(template))
        if match is None:
            rendered[key] = template
            continue
        value = env.get(match.group(1), match.group(2))
        assert value is not None, f"profiles.yml's {key} reads {match.group(1)}, which dbt_env does not set"
        rendered[key] = int(value) if "as_number" in str(template) else value
    return rendered


@pytest.mark.parametrize("url", URLS)
def test_profiles_yml_and_the_cosmos_profile_state_the_same_connection(url, tmp_path, monkeypatch):
    settings = Settings(home=tmp_path, warehouse_port=1, warehouse_db="w", external_warehouse_url=url,
                        external_orders_url=None, landing_dir=tmp_path)
    yml = profiles_yml_target(settings, settings.dbt_env())
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", url)
    cosmos = WarehouseProfileMapping(conn_id="warehouse", profile_args={"threads": 4}).profile
    # the password travels in a variable on both sides (cosmos: its own); every other field is the same value,
    # those with a default in profiles.yml (dbt_connection.PROFILE_DEFAULTS) too
    assert bool(yml.pop("password")) == bool(cosmos.pop("password")) == ("secret" in url)
    assert yml == cosmos
    assert yml["sslmode"] == ("require" if "sslmode" in url else "") and yml["schema"] == "public"
