"""The one place that knows where things are and how to reach the warehouse.

Every other part of the project (dbt's profiles.yml, Airflow connections, Great Expectations, the
Python code) derives its settings from here, so a deployment changes environment variables and
nothing else. Reading settings never touches a database or starts a server: DAG files import this
module at parse time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Environment variables the project reads, with their defaults and meaning (also rendered in README).
ENV_VARS: dict[str, tuple[str, str]] = {
    "WAREHOUSE_URL": ("(unset)", "postgresql:// URL of your own PostgreSQL 15+ warehouse; when unset an "
                      "embedded server is started under CKP_HOME/warehouse"),
    "CKP_HOME": ("<repo>/var", "working directory for the embedded warehouse, landing zone, exports, reports"),
    "CKP_WAREHOUSE_PORT": ("54329", "loopback TCP port the embedded warehouse listens on"),
    "CKP_WAREHOUSE_DB": ("warehouse", "database name of the warehouse"),
    "CKP_ORDERS_URL": ("(embedded: database `orders`)", "postgresql:// URL of the operational orders database"),
    "CKP_LANDING_DIR": ("$CKP_HOME/landing", "landing zone where file sources are dropped"),
    "CKP_PSEUDONYM_KEY": ("(demo key in demo mode only)", "secret key for HMAC-SHA-256 pseudonyms"),
    "CKP_WEBHOOK_PORT": ("8765", "loopback port of the demo webhook receiver that `make run` starts"),
    "CKP_DEMO_MODE": ("1 under `make run`/tests", "allows the public demo pseudonym key; never set it in production"),
    "CKP_DEMO_SIZE": ("2000", "number of demo customers `make run` generates"),
    "CKP_DEMO_SEED": ("42", "seed of the demo generator"),
    "CKP_ALERT_WEBHOOK_URL": ("(unset: no alerts)", "URL a failed Airflow task is reported to (Slack-style "
                              "incoming webhook, JSON with a `text` field); or the Airflow connection `ckp_alerts`"),
    "CKP_TASK_RETRIES": ("2 (0 under `make run`)", "retries of every Airflow task before it fails its DAG run"),
    "CKP_TASK_TIMEOUT_MINUTES": ("120", "execution_timeout of every Airflow task (a hung dbt build or load fails)"),
    "CKP_AIRFLOW_PORT": ("8080", "port of the Airflow API server / UI that `make run` and `make up` start"),
}


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
    alert_webhook_url: str | None = None
    task_retries: int = 2
    task_timeout_minutes: int = 120
    airflow_port: int = 8080

    # --- paths -----------------------------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return PROJECT_ROOT / "config"

    @property
    def dbt_project_dir(self) -> Path:
        return PROJECT_ROOT / "dbt_project"

    @property
    def expectations_dir(self) -> Path:
        return PROJECT_ROOT / "expectations"

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
        """Environment variables read by dbt_project/profiles.yml."""
        parts = urlsplit(self.warehouse_url)
        return {
            "CKP_DBT_HOST": parts.hostname or "127.0.0.1",
            "CKP_DBT_PORT": str(parts.port or 5432),
            "CKP_DBT_USER": parts.username or "postgres",
            "CKP_DBT_PASSWORD": _unquote(parts.password or ""),
            "CKP_DBT_DBNAME": parts.path.lstrip("/") or self.warehouse_db,
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
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


def get_settings() -> Settings:
    home = Path(_env("CKP_HOME", str(PROJECT_ROOT / "var"))).resolve()
    port_text = _env("CKP_WAREHOUSE_PORT", "54329")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"CKP_WAREHOUSE_PORT must be a port number, got {port_text!r}") from None
    return Settings(
        home=home,
        warehouse_port=port,
        warehouse_db=_env("CKP_WAREHOUSE_DB", "warehouse"),
        external_warehouse_url=os.environ.get("WAREHOUSE_URL") or None,
        external_orders_url=os.environ.get("CKP_ORDERS_URL") or None,
        landing_dir=Path(_env("CKP_LANDING_DIR", str(home / "landing"))).resolve(),
        alert_webhook_url=os.environ.get("CKP_ALERT_WEBHOOK_URL") or None,
        task_retries=_int_env("CKP_TASK_RETRIES", 2),
        task_timeout_minutes=_int_env("CKP_TASK_TIMEOUT_MINUTES", 120),
        airflow_port=_int_env("CKP_AIRFLOW_PORT", 8080),
    )


def _int_env(name: str, default: int) -> int:
    text = _env(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None
