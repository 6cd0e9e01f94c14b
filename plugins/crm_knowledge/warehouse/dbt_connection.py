"""How dbt reaches the warehouse: libpq connection parameters as a dbt-postgres target plus libpq variables.

The warehouse is any libpq URL (`WAREHOUSE_URL`), so it may carry no password (trust, peer, `.pgpass` /
`PGPASSFILE`), no user or host (the OS user, the local socket) and any libpq parameter (`sslmode`,
`sslrootcert`, `target_session_attrs`, ...). psycopg and Great Expectations take the URL as it is; dbt
takes profile fields. dbt-postgres knows a few libpq options as fields (:data:`PROFILE_FIELDS`); every other
libpq parameter reaches dbt's libpq through its ``PG*`` environment variable (:data:`LIBPQ_ENV`), set only in
dbt's own environment. A parameter with neither is refused with its name, rather than silently dropped.

Used by `Settings.dbt_env` (dbt run by the `ckp` commands and tests, through profiles.yml) and by
`crm_knowledge.warehouse.cosmos_profile` (dbt run by cosmos in Airflow, from the `warehouse` connection).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crm_knowledge.settings import env_value

#: libpq parameters dbt-postgres takes as profile fields (besides host, port, user, password, dbname).
PROFILE_FIELDS = ("sslmode", "sslcert", "sslkey", "sslrootcert", "application_name", "connect_timeout",
                  "keepalives_idle")

#: The profile and target every dbt command names (dbt_project/profiles.yml's; cosmos' ProfileConfig,
#: dags/ckp_common.dbt_profile): on the command line too, as cosmos passes them, because dbt keeps a saved
#: parse (partial_parse.msgpack) only for a command naming the same profile and target.
DBT_PROFILE = "crm_knowledge"
DBT_TARGET = "warehouse"

#: The fields a target states besides the URL's, with their value when the URL gives none: dbt-postgres'
#: defaults, and the schema of objects without a configured one (none in this project). Every target states
#: all of them, so profiles.yml (which reads each from a variable, Settings.dbt_env) and cosmos' profile
#: (crm_knowledge.warehouse.cosmos_profile) describe the same connection to the letter: dbt rejects a saved
#: parse made with other connection values ("profile has changed") and parses the whole project again.
PROFILE_DEFAULTS: dict[str, str | int] = {
    "schema": "public",
    "sslmode": "",
    "sslcert": "",
    "sslkey": "",
    "sslrootcert": "",
    "application_name": "dbt",
    "connect_timeout": 10,
    "keepalives_idle": 0,
}

#: Every other libpq parameter with the environment variable libpq reads it from.
LIBPQ_ENV = {
    "hostaddr": "PGHOSTADDR",
    "passfile": "PGPASSFILE",
    "options": "PGOPTIONS",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "channel_binding": "PGCHANNELBINDING",
    "require_auth": "PGREQUIREAUTH",
    "gssencmode": "PGGSSENCMODE",
    "gsslib": "PGGSSLIB",
    "krbsrvname": "PGKRBSRVNAME",
    "requirepeer": "PGREQUIREPEER",
    "service": "PGSERVICE",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslsni": "PGSSLSNI",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
}

_CORE = ("host", "port", "user", "password", "dbname")


@dataclass(frozen=True)
class DbtTarget:
    """A dbt-postgres target: ``fields`` for the profile (password only if there is one), ``env`` the libpq
    variables dbt's process needs besides."""

    fields: dict[str, str | int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def password(self) -> str | None:
        value = self.fields.get("password")
        return str(value) if value else None

    @property
    def profile_fields(self) -> dict[str, str | int]:
        """Every field of the target's profile but the password: ``fields`` over :data:`PROFILE_DEFAULTS`."""
        return {**PROFILE_DEFAULTS, **{k: v for k, v in self.fields.items() if k != "password"}}


def _default_host() -> str:
    """What libpq uses without a host: PGHOST, else its Unix socket folder (Debian's, then upstream's)."""
    if env_value("PGHOST"):
        return env_value("PGHOST")
    for folder in ("/var/run/postgresql", "/tmp"):
        if Path(folder, ".s.PGSQL." + (env_value("PGPORT") or "5432")).exists():
            return folder
    return "localhost"


def dbt_target(params: Mapping[str, object], *, what: str = "WAREHOUSE_URL") -> DbtTarget:
    """The dbt target for libpq `params` (keyword -> value, as `psycopg.conninfo.conninfo_to_dict` gives
    them). Missing host, port, user and database get libpq's defaults, as psql would use them; `what` names
    the setting in errors."""
    given = {k: str(v) for k, v in params.items() if v not in (None, "")}
    user = given.get("user") or env_value("PGUSER") or getpass.getuser()
    fields: dict[str, str | int] = {
        "host": given.get("host") or _default_host(),
        "port": int(given.get("port") or env_value("PGPORT") or 5432),
        "user": user,
        "dbname": given.get("dbname") or env_value("PGDATABASE") or user,
    }
    if given.get("password"):
        fields["password"] = given["password"]
    env: dict[str, str] = {}
    unsupported = []
    for key, value in given.items():
        if key in _CORE:
            continue
        if key in PROFILE_FIELDS:
            fields[key] = int(value) if key in ("connect_timeout", "keepalives_idle") else value
        elif key in LIBPQ_ENV:
            env[LIBPQ_ENV[key]] = value
        else:
            unsupported.append(key)
    if unsupported:
        raise ValueError(f"{what}: the libpq parameter(s) {', '.join(sorted(unsupported))} cannot be passed to "
                         f"dbt (neither a dbt-postgres profile field nor a PG* environment variable)")
    return DbtTarget(fields=fields, env=env)


def url_target(url: str, *, what: str = "WAREHOUSE_URL") -> DbtTarget:
    """:func:`dbt_target` of a libpq URL (or key=value string), parsed by libpq itself."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - libpq's message may quote the URL's parts: not repeated here
        raise ValueError(f"{what} is not a valid PostgreSQL connection URL (libpq: {type(exc).__name__}); "
                         "expected postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]"
                         ) from None
    return dbt_target(params, what=what)
