"""The one place that knows where things are and how to reach the warehouse.

Every other part of the project (dbt's profiles.yml, Airflow connections, Great Expectations, the
Python code) derives its settings from here, so a deployment changes environment variables and
nothing else. Reading settings never touches a database or starts a server: DAG files import this
module at parse time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, urlsplit

#: The source checkout this module was loaded from (``plugins/crm_knowledge/settings.py`` -> the repository).
#: Only a default: the pipeline finds its files through :attr:`Settings.project_dir` (``CKP_PROJECT_DIR``), so
#: an installed (non-editable) package, whose parents are site-packages, works once that is set. Tests and
#: development tools that read repository files may use it directly.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Environment variables the project reads, with their defaults and meaning (also rendered in README).
ENV_VARS: dict[str, tuple[str, str]] = {
    "CKP_PROJECT_DIR": ("the source checkout", "the project directory (dags/, dbt_project/, expectations/, "
                        "config/); required when the package is installed from a wheel rather than run from "
                        "its checkout"),
    "CKP_CONFIG_DIR": ("$CKP_PROJECT_DIR/config", "directory of destinations.yml, identity.yml, scoring.yml and "
                       "sources/*.yml"),
    "WAREHOUSE_URL": ("(unset)", "postgresql:// URL of your own PostgreSQL 15+ warehouse; when unset an "
                      "embedded server is started under CKP_HOME/warehouse"),
    "CKP_HOME": ("$CKP_PROJECT_DIR/var", "working directory for the embedded warehouse, landing zone, exports, "
                 "reports"),
    "CKP_WAREHOUSE_PORT": ("54329", "loopback TCP port the embedded warehouse listens on"),
    "CKP_WAREHOUSE_DB": ("warehouse", "database name of the warehouse"),
    "CKP_ORDERS_URL": ("(embedded: database `orders`)", "postgresql:// URL of the operational orders database"),
    "CKP_LANDING_DIR": ("$CKP_HOME/landing", "landing zone where file sources are dropped"),
    "CKP_PSEUDONYM_KEY": ("(demo key in demo mode only)", "secret key for HMAC-SHA-256 pseudonyms"),
    "CKP_WEBHOOK_PORT": ("8765", "loopback port of the demo webhook receiver that `make run` starts"),
    "CKP_DEMO_MODE": ("1 under `make run`/tests", "allows the public demo pseudonym key; never set it in production"),
    "CKP_DEMO_SIZE": ("2000", "number of demo customers `make run` generates"),
    "CKP_DEMO_SEED": ("42", "seed of the demo generator"),
    "CKP_BENCH_PORT": ("54360", "warehouse port of `ckp bench` (its own embedded server, apart from `make run`'s); "
                       "when unset and 54360 is taken (a benchmark of another size), a free port"),
    "CKP_BENCH_WEBHOOK_PORT": ("8790", "webhook receiver port of `ckp bench` when CKP_WEBHOOK_PORT is unset"),
    "CKP_ALERT_WEBHOOK_URL": ("(unset: no alerts)", "URL a failed Airflow task is reported to (Slack-style "
                              "incoming webhook, JSON with a `text` field); or the Airflow connection `ckp_alerts`"),
    "CKP_TASK_RETRIES": ("2 (0 under `make run`)", "retries of every Airflow task before it fails its DAG run"),
    "CKP_INGEST_SCHEDULES": ("on (off under `make run`)", "off: the ingestion DAGs have no time schedule and run "
                             "only when triggered (`make run`'s rounds are the demo's clock: a scheduled run of "
                             "the real day would give the warehouse today's as-of date in the middle of a "
                             "simulated day)"),
    "CKP_TASK_TIMEOUT_MINUTES": ("120", "execution_timeout of every Airflow task (a hung dbt build or load fails)"),
    "CKP_AIRFLOW_PORT": ("8080", "port of the Airflow API server / UI that `make run` and `make up` start"),
    "CKP_RUN_TIMEOUT": ("2700", "seconds `make run` waits for the pipeline's DAG runs before it fails"),
    "CKP_SERVE_HOST": ("127.0.0.1", "address `ckp serve` (the customer read service) listens on"),
    "CKP_SERVE_PORT": ("8094", "port of `ckp serve` (the customer read service and the agent page)"),
    "CKP_SERVE_RATE_LIMIT": ("600", "requests per minute an API key may make to `ckp serve` when the key sets no "
                             "limit of its own"),
    "CKP_SERVE_POOL_SIZE": ("10", "warehouse connections each `ckp serve` worker keeps open"),
    "CKP_SERVE_WORKERS": ("1", "uvicorn worker processes of `ckp serve`"),
    "CKP_SERVE_KEY_CACHE_SECONDS": ("5", "seconds a `ckp serve` worker remembers a checked API key; a revoked key "
                                    "is refused at most this long after `ckp api-keys revoke` (0: check each request)"),
    "CKP_SPARK_MASTER": ("(identity.yml `spark.master`: local[2])", "Spark master of identity resolution when "
                         "`backend: spark` (`spark://host:7077`, `yarn`, `local[4]`)"),
    "CKP_SPARK_CONNECT_URL": ("(unset)", "Spark Connect URL (`sc://host:15002`) used instead of a master"),
    "CKP_SPARK_DRIVER_MEMORY": ("(identity.yml: 1g)", "`spark.driver.memory` of identity resolution"),
    "CKP_SPARK_EXECUTOR_MEMORY": ("(identity.yml: 1g)", "`spark.executor.memory` of identity resolution"),
    "CKP_SPARK_SHUFFLE_PARTITIONS": ("(identity.yml: 8)", "`spark.sql.shuffle.partitions` of identity "
                                     "resolution"),
    "CKP_SPARK_SCRATCH_DIR": ("(system temp directory)", "where identity resolution on Spark stages candidates "
                              "and checkpoints (a private 0700 directory is made inside); on a cluster a path "
                              "the driver and all executors share"),
    "CKP_WAREHOUSE_WAIT": ("30", "seconds a command waits for the WAREHOUSE_URL server to accept a connection "
                           "(it may still be starting) before it fails naming it"),
}


def _is_project_dir(path: Path) -> bool:
    return (path / "dbt_project" / "dbt_project.yml").is_file()


class ProjectNotFound(RuntimeError):
    """Raised when a project file is needed and no project directory is configured or found."""


def env_value(name: str) -> str | None:
    """The value of an environment variable a config file names (``url_env``, ``connection_env``, ``${VAR}``
    in destinations.yml / sources/*.yml), or one a child process keeps when the deployment set it
    (runner.airflow_env): those names are data, so they are looked up here, the one module that reads the
    environment. Empty counts as unset."""
    return os.environ.get(name) or None


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`get_settings`; cheap, no I/O beyond reading small files."""

    home: Path
    warehouse_port: int
    warehouse_db: str
    external_warehouse_url: str | None
    external_orders_url: str | None
    landing_dir: Path
    #: CKP_PROJECT_DIR, else the source checkout; None when neither (see :attr:`project_dir`)
    configured_project_dir: Path | None = PROJECT_ROOT if _is_project_dir(PROJECT_ROOT) else None
    #: CKP_CONFIG_DIR; None: ``<project_dir>/config``
    configured_config_dir: Path | None = None
    webhook_port: int = 8765
    demo_mode: bool = False
    demo_size: int = 2000
    demo_seed: int = 42
    bench_port: int = 54360
    bench_webhook_port: int = 8790
    pseudonym_key: str | None = field(default=None, repr=False)
    alert_webhook_url: str | None = None
    task_retries: int = 2
    #: CKP_INGEST_SCHEDULES: False ("off") leaves the ingestion DAGs unscheduled (triggered runs only)
    ingest_schedules: bool = True
    task_timeout_minutes: int = 120
    airflow_port: int = 8080
    run_timeout_s: float = 2700.0
    serve_host: str = "127.0.0.1"
    serve_port: int = 8094
    serve_rate_limit: int = 600
    serve_pool_size: int = 10
    serve_workers: int = 1
    serve_key_cache_s: float = 5.0
    #: CKP_SPARK_*: override the `spark` section of identity.yml (None: the file's value)
    spark_master: str | None = None
    spark_connect_url: str | None = None
    spark_driver_memory: str | None = None
    spark_executor_memory: str | None = None
    spark_shuffle_partitions: int | None = None
    spark_scratch_dir: str | None = None
    warehouse_wait_s: float = 30.0

    # --- paths -----------------------------------------------------------------------------------
    @property
    def project_dir(self) -> Path:
        """The directory holding dags/, dbt_project/, expectations/ and (by default) config/."""
        if self.configured_project_dir is None:
            raise ProjectNotFound(
                "No project directory: set CKP_PROJECT_DIR to the directory holding dags/, dbt_project/, "
                f"expectations/ and config/ (the package runs from {Path(__file__).resolve().parent}, "
                "not from a source checkout).")
        return self.configured_project_dir

    @property
    def config_dir(self) -> Path:
        return self.configured_config_dir or self.project_dir / "config"

    @property
    def destinations_file(self) -> Path:
        """config/destinations.yml: where segments are delivered (export, erasure, pii scan, lineage)."""
        return self.config_dir / "destinations.yml"

    @property
    def identity_file(self) -> Path:
        return self.config_dir / "identity.yml"

    @property
    def scoring_file(self) -> Path:
        return self.config_dir / "scoring.yml"

    @property
    def sources_dir(self) -> Path:
        """config/sources/: one YAML file per source."""
        return self.config_dir / "sources"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_dir / "dbt_project"

    @property
    def expectations_dir(self) -> Path:
        return self.project_dir / "expectations"

    @property
    def dags_dir(self) -> Path:
        return self.project_dir / "dags"

    @property
    def pgdata_dir(self) -> Path:
        return self.home / "warehouse" / "pgdata"

    @property
    def warehouse_state_file(self) -> Path:
        """Written by the embedded server on start: host, port, user, password file location."""
        return self.home / "warehouse" / "server.json"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def archive_dir(self) -> Path:
        """Where a landing file goes once its batch is recorded (ingestion), one folder per source."""
        return self.home / "archive"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def demo_dir(self) -> Path:
        """Demo-only files the pipeline never reads (ground truth)."""
        return self.home / "demo"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    # --- warehouse -------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.external_warehouse_url is None

    @cached_property
    def _embedded_state(self) -> dict:
        try:
            return json.loads(self.warehouse_state_file.read_text())
        except FileNotFoundError:
            raise WarehouseNotConfigured(
                "No WAREHOUSE_URL is set and the embedded warehouse has not been started "
                f"(no {self.warehouse_state_file}). Run `ckp warehouse start` or `make warehouse-start`."
            ) from None

    def server_url(self, database: str | None = None) -> str:
        """postgresql:// URL for `database` on the warehouse server (default: the warehouse db)."""
        if self.external_warehouse_url:
            if database is None:
                return self.external_warehouse_url
            parts = urlsplit(self.external_warehouse_url)
            return parts._replace(path="/" + database).geturl()
        st = self._embedded_state
        pw = quote(st["password"], safe="")
        return f"postgresql://{st['user']}:{pw}@{st['host']}:{st['port']}/{database or self.warehouse_db}"

    @property
    def warehouse_url(self) -> str:
        return self.server_url()

    def redacted_url(self, database: str | None = None) -> str:
        """:meth:`server_url` with the password replaced by ``***``, for printing and logging."""
        return redact_url(self.server_url(database))

    @property
    def orders_url(self) -> str:
        """The operational orders database: its own database, on the warehouse server by default."""
        return self.external_orders_url or self.server_url("orders")

    def dbt_env(self) -> dict[str, str]:
        """Environment for dbt run with dbt_project/profiles.yml: the ``CKP_DBT_*`` variables it reads, and the
        ``PG*`` variables of libpq parameters dbt has no profile field for (see
        `crm_knowledge.warehouse.dbt_connection`). A URL without a password gives an empty CKP_DBT_PASSWORD:
        libpq then uses trust, peer or the password file, as psql would."""
        from crm_knowledge.warehouse.dbt_connection import url_target

        target = url_target(self.warehouse_url)
        return {
            **{f"CKP_DBT_{key.upper()}": str(value) for key, value in target.profile_fields.items()},
            "CKP_DBT_PASSWORD": target.password or "",
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
            **target.env,
        }


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; everything else is kept exactly as written.

    Handles the password of the user info (``postgresql://user:secret@host/db``, percent-encoded or with a
    raw ``@`` or ``:`` in it, as ``urllib.parse`` splits them) and a libpq ``password`` query parameter
    (``postgresql://host/db?user=u&password=secret``). A URL without a password is returned unchanged.
    """
    parts = urlsplit(url)
    redacted = url
    if parts.password is not None:
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        # the netloc follows the first "//" (the scheme cannot contain one): replace it there only
        redacted = redacted.replace(f"//{parts.netloc}", f"//{user}:***@{hosts}", 1)
    if parts.query:
        head, _, rest = redacted.partition("?")
        query, hash_, fragment = rest.partition("#")
        params = [
            f"{p.partition('=')[0]}=***" if _unquote(p.partition("=")[0]) == "password" else p
            for p in query.split("&")
        ]
        redacted = f"{head}?{'&'.join(params)}{hash_}{fragment}"
    return redacted


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


class WarehouseNotConfigured(RuntimeError):
    """Raised when no warehouse is reachable by configuration."""


def _int_env(name: str, default: int) -> int:
    text = _env(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None


_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def _on_off_env(name: str, default: bool) -> bool:
    text = _env(name, "on" if default else "off").strip().lower()
    if text not in _ON + _OFF:
        raise ValueError(f"{name} must be on or off (1/0, true/false, yes/no), got {text!r}")
    return text in _ON


def _project_dir_env() -> Path | None:
    configured = _env("CKP_PROJECT_DIR", "")
    if not configured:
        return PROJECT_ROOT if _is_project_dir(PROJECT_ROOT) else None
    path = Path(configured).expanduser().resolve()
    if not _is_project_dir(path):
        raise ProjectNotFound(f"CKP_PROJECT_DIR={configured}: no dbt_project/dbt_project.yml under {path}")
    return path


def get_settings() -> Settings:
    """Settings from the environment (read anew on every call: cheap, and tests may change it)."""
    project_dir = _project_dir_env()
    default_home = (project_dir / "var") if project_dir else Path.home() / ".ckp"
    home = Path(_env("CKP_HOME", str(default_home))).resolve()
    config_dir = _env("CKP_CONFIG_DIR", "")
    try:
        port = _int_env("CKP_WAREHOUSE_PORT", 54329)
    except ValueError:
        raise ValueError(f"CKP_WAREHOUSE_PORT must be a port number, got {_env('CKP_WAREHOUSE_PORT', '')!r}") \
            from None
    return Settings(
        home=home,
        warehouse_port=port,
        warehouse_db=_env("CKP_WAREHOUSE_DB", "warehouse"),
        external_warehouse_url=os.environ.get("WAREHOUSE_URL") or None,
        external_orders_url=os.environ.get("CKP_ORDERS_URL") or None,
        landing_dir=Path(_env("CKP_LANDING_DIR", str(home / "landing"))).resolve(),
        configured_project_dir=project_dir,
        configured_config_dir=Path(config_dir).expanduser().resolve() if config_dir else None,
        webhook_port=_int_env("CKP_WEBHOOK_PORT", 8765),
        demo_mode=_on_off_env("CKP_DEMO_MODE", False),
        demo_size=_int_env("CKP_DEMO_SIZE", 2000),
        demo_seed=_int_env("CKP_DEMO_SEED", 42),
        bench_port=_int_env("CKP_BENCH_PORT", 54360),
        bench_webhook_port=_int_env("CKP_BENCH_WEBHOOK_PORT", 8790),
        pseudonym_key=os.environ.get("CKP_PSEUDONYM_KEY") or None,
        alert_webhook_url=_env("CKP_ALERT_WEBHOOK_URL", "") or None,
        task_retries=_int_env("CKP_TASK_RETRIES", 2),
        ingest_schedules=_on_off_env("CKP_INGEST_SCHEDULES", True),
        task_timeout_minutes=_int_env("CKP_TASK_TIMEOUT_MINUTES", 120),
        airflow_port=_int_env("CKP_AIRFLOW_PORT", 8080),
        run_timeout_s=float(_int_env("CKP_RUN_TIMEOUT", 2700)),
        serve_host=_env("CKP_SERVE_HOST", "127.0.0.1"),
        serve_port=_int_env("CKP_SERVE_PORT", 8094),
        serve_rate_limit=_int_env("CKP_SERVE_RATE_LIMIT", 600),
        serve_pool_size=_int_env("CKP_SERVE_POOL_SIZE", 10),
        serve_workers=_int_env("CKP_SERVE_WORKERS", 1),
        serve_key_cache_s=float(_int_env("CKP_SERVE_KEY_CACHE_SECONDS", 5)),
        spark_master=_env("CKP_SPARK_MASTER", "") or None,
        spark_connect_url=_env("CKP_SPARK_CONNECT_URL", "") or None,
        spark_driver_memory=_env("CKP_SPARK_DRIVER_MEMORY", "") or None,
        spark_executor_memory=_env("CKP_SPARK_EXECUTOR_MEMORY", "") or None,
        spark_shuffle_partitions=_int_env("CKP_SPARK_SHUFFLE_PARTITIONS", 0) or None,
        spark_scratch_dir=_env("CKP_SPARK_SCRATCH_DIR", "") or None,
        warehouse_wait_s=float(_int_env("CKP_WAREHOUSE_WAIT", 30)),
    )
