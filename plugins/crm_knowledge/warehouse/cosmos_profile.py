"""The dbt profile of cosmos' dbt tasks, from the Airflow connection `warehouse`, for any reachable warehouse.

cosmos' own `PostgresUserPasswordProfileMapping` insists on a password ("Could not find a value for secret
field password") and passes on only `sslmode` and `keepalives_idle`, so a warehouse reached by trust, peer
or a password file, or with other libpq parameters, failed every dbt task. This mapping builds the target
with `crm_knowledge.warehouse.dbt_connection.dbt_target`, the same rules as dbt run by the `ckp` commands:
password optional (passed, when there is one, through an environment variable as cosmos does, never written
into the profile file), the connection's extras (the URL's query parameters) as profile fields or ``PG*``
variables. Imported by dags/ckp_common.py when the DAG files are parsed; reads the connection only when a
task runs.
"""

from __future__ import annotations

from typing import Any

from cosmos.profiles import PostgresUserPasswordProfileMapping

from crm_knowledge.warehouse.dbt_connection import DbtTarget, dbt_target


class WarehouseProfileMapping(PostgresUserPasswordProfileMapping):
    """Postgres profile from an Airflow connection whose password, user and options are all optional."""

    required_fields = ["host", "dbname"]
    airflow_param_mapping = {"host": "host", "user": "login", "password": "password", "port": "port",
                             "dbname": "schema"}

    def _target(self) -> DbtTarget:
        conn = self.conn
        params: dict[str, Any] = {k: v for k, v in conn.extra_dejson.items() if isinstance(v, str | int)}
        params.update({"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
                       "dbname": conn.schema})
        return dbt_target(params, what=f"the Airflow connection {self.conn_id!r}")

    @property
    def profile(self) -> dict[str, Any]:
        target = self._target()
        # every field profiles.yml states, with the same defaults: a parse saved by dbt run outside Airflow (the
        # `ckp` commands' `dbt parse` before the stack starts) is then one this task's dbt accepts
        profile: dict[str, Any] = {"type": self.dbt_profile_type, **target.profile_fields, **self.profile_args}
        # dbt-postgres requires the field; empty means none, and libpq uses trust, peer or the password file
        profile["password"] = self.get_env_var_format("password") if target.password else ""
        return self.filter_null(profile)

    @property
    def env_vars(self) -> dict[str, str]:
        target = self._target()
        env = dict(target.env)
        if target.password:
            env[self.get_env_var_name("password")] = target.password
        if self.disable_event_tracking:
            env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"})
        return env
