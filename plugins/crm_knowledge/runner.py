"""`make run`: the whole pipeline on demo data, run by Airflow itself (`airflow dags test`).

Airflow's scheduler would chain the DAGs through their Assets; `airflow dags test` runs one DAG run
in-process without a scheduler, so here the DAGs are run one after the other in the order the Assets
imply. Airflow keeps its metadata in SQLite under CKP_HOME/airflow: this is a developer's run, the
production deployment (docker-compose.yml) runs the real scheduler and CeleryExecutor.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm_knowledge.privacy.file_modes import open_private
from crm_knowledge.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: The directory the crm_knowledge package is imported from (plugins/ of a checkout, or site-packages):
#: Airflow's processes import it from there.
PACKAGE_PARENT = Path(__file__).resolve().parents[1]

#: DAGs in the order their Assets chain them (ingestion → warehouse → scoring & exports).
PIPELINE_DAGS = (
    "ingest_forms",
    "ingest_orders",
    "ingest_sibling_units",
    "ingest_contact_channels",
    "customer_warehouse",
    "customer_scoring",
)

DEFAULT_RUN_DATE = dt.date(2026, 11, 20)


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for Airflow processes, every value derived from `settings`."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        # Not the repo's plugins/: Airflow would import every module there under a bare name. The
        # package is pip-installed (editable) instead.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.airflow_home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        # Task logs can quote personal data: Airflow's defaults are 0o775 folders and 0o664 files.
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o700",
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o600",
        # The warehouse as an Airflow connection: cosmos builds dbt's profile from it.
        "AIRFLOW_CONN_WAREHOUSE": settings.warehouse_url,
        "CKP_HOME": str(settings.home),
        "CKP_DEMO_MODE": env.get("CKP_DEMO_MODE", "1"),
        "CKP_WAREHOUSE_PORT": str(settings.warehouse_port),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")])),
        "NO_PROXY": "*",
        # Offline machines: no telemetry from dbt or Airflow.
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    })
    if settings.external_warehouse_url:
        env["WAREHOUSE_URL"] = settings.external_warehouse_url
    # dbt's variables are not set here: cosmos builds dbt's profile from AIRFLOW_CONN_WAREHOUSE, and the
    # PG* variables of WAREHOUSE_URL's libpq options must not reach other connections (the orders database)
    try:
        from crm_knowledge.quality.lineage import openlineage_env

        env.update(openlineage_env(settings))
    except ImportError:
        pass
    return env


def ensure_airflow_db(env: dict[str, str]) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log.info("airflow db migrate (metadata in %s)", env["AIRFLOW_HOME"])
    res = subprocess.run([_venv_bin("airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


@dataclass(frozen=True)
class DbtResult:
    """One finished dbt command: its exit code, its (captured) output and the target folder it wrote to."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    target_path: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure_message(self) -> str:
        """``dbt <args> failed:`` and the tail of dbt's output."""
        return f"dbt {' '.join(self.args)} failed:\n{self.stdout[-4000:]}\n{self.stderr[-2000:]}"

    def run_results(self) -> list[dict[str, Any]]:
        """The ``results`` of ``run_results.json`` in the target folder (written by build/run/test/seed)."""
        data = json.loads((self.target_path / "run_results.json").read_text(encoding="utf-8"))
        return data["results"]


def dbt_process_env(settings: Settings) -> dict[str, str]:
    """Environment of a dbt command run outside an Airflow task: this process's, the profile's variables
    (``settings.dbt_env()``) and no telemetry (offline machines)."""
    return {**os.environ, **settings.dbt_env(), "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def run_dbt(args: Sequence[str], env: Mapping[str, str], settings: Settings, *, target_path: Path | None = None,
            log_path: Path | None = None, cwd: Path | None = None, check: bool = True) -> DbtResult:
    """Run one dbt command (``args``: the sub-command and its options) on the project, quietly.

    ``target_path`` / ``log_path`` are passed as ``--target-path`` / ``--log-path`` when given (else dbt's
    defaults, ``target/`` and ``logs/`` of the project); ``cwd`` defaults to the project folder. With
    ``check`` (the default) a failing command raises RuntimeError with dbt's output; without it the caller
    looks at ``DbtResult.ok``.
    """
    project = settings.dbt_project_dir
    cmd = [_venv_bin("dbt"), *args, "--project-dir", str(project), "--profiles-dir", str(project)]
    if target_path is not None:
        cmd += ["--target-path", str(target_path)]
    if log_path is not None:
        cmd += ["--log-path", str(log_path)]
    cmd.append("--quiet")
    res = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, cwd=cwd or project)
    result = DbtResult(args=tuple(args), returncode=res.returncode, stdout=res.stdout, stderr=res.stderr,
                       target_path=target_path if target_path is not None else project / "target")
    if check and not result.ok:
        raise RuntimeError(result.failure_message())
    return result


def dbt_parse(env: dict[str, str], settings: Settings) -> Path:
    """Parse the dbt project once (target/manifest.json, partial_parse.msgpack): every dbt stage task and
    `dbt docs` start from it instead of parsing from scratch."""
    return run_dbt(["parse"], env, settings).target_path / "manifest.json"


def dbt_docs(env: dict[str, str], settings: Settings) -> Path:
    """dbt's documentation site (catalog + lineage) for BI users: target/index.html."""
    return run_dbt(["docs", "generate"], env, settings).target_path / "index.html"


def run_dag(dag_id: str, run_date: dt.date, env: dict[str, str], log_dir: Path) -> float:
    """`airflow dags test` one DAG; raises with the log's tail when a task failed."""
    logfile = log_dir / f"{dag_id}.log"
    started = time.monotonic()
    print(f"  ▶ {dag_id} ...", flush=True)
    with open_private(logfile, "w", encoding="utf-8") as fh:
        res = subprocess.run([_venv_bin("airflow"), "dags", "test", dag_id, run_date.isoformat()],
                             env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
    took = time.monotonic() - started
    text = logfile.read_text(encoding="utf-8", errors="replace")
    finished = [line for line in text.splitlines() if "DagRun Finished:" in line]
    failed = res.returncode != 0 or not finished or "state=success" not in finished[-1]
    if failed:
        tail = "\n".join(text.splitlines()[-60:])
        raise RuntimeError(f"DAG {dag_id} failed (exit {res.returncode}); full log: {logfile}\n{tail}")
    print(f"    ✓ {dag_id} in {took:.0f}s (log: {logfile})", flush=True)
    return took


@contextmanager
def webhook_receiver(settings: Settings, env: dict[str, str]) -> Iterator[None]:
    """The demo's webhook destination: a local receiver on loopback, for the length of the run."""
    import socket

    port = settings.webhook_port
    inbox = settings.home / "webhook_inbox"
    proc = subprocess.Popen([sys.executable, "-m", "crm_knowledge.export.receiver", "--port", str(port),
                             "--out", str(inbox)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo webhook receiver did not start on 127.0.0.1:{port} "
                                   "(is the port taken? set CKP_WEBHOOK_PORT)")
            time.sleep(0.2)
        print(f"    webhook receiver on 127.0.0.1:{port}, inbox {inbox}", flush=True)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_pipeline(size: int | None = None, seed: int | None = None, run_date: dt.date | None = None,
                 dags: tuple[str, ...] = PIPELINE_DAGS, overwrite_external_db: bool = False) -> dict:
    from crm_knowledge.demo.guard import check_demo_targets
    from crm_knowledge.warehouse import bootstrap, server

    settings = get_settings()
    # before anything is started or written: the demo stays out of databases this project did not create
    check_demo_targets(settings, overwrite_external_db=overwrite_external_db, orders_db=True, warehouse=True)
    size = size or settings.demo_size
    seed = seed if seed is not None else settings.demo_seed
    run_date = run_date or DEFAULT_RUN_DATE

    print(f"1/4 warehouse: {'external (WAREHOUSE_URL)' if not settings.embedded else 'embedded'}", flush=True)
    server.start(settings)
    settings = get_settings()
    bootstrap.apply_ddl(settings.warehouse_url)

    print(f"2/4 demo sources: {size} customers, seed {seed}, as of {run_date}", flush=True)
    from crm_knowledge.demo import generate

    demo = generate(size=size, seed=seed, settings=settings, as_of=run_date,
                    overwrite_external_db=overwrite_external_db)

    print("3/4 airflow: metadata db, dbt manifest", flush=True)
    env = airflow_env(settings)
    ensure_airflow_db(env)
    dbt_parse({**env, **settings.dbt_env()}, settings)

    print(f"4/4 running {len(dags)} DAGs for logical date {run_date}", flush=True)
    timings = {}
    with webhook_receiver(settings, env):
        for dag_id in dags:
            timings[dag_id] = run_dag(dag_id, run_date, env, settings.home / "logs" / "runs")

    print("    dbt docs generate (catalog and lineage site)", flush=True)
    dbt_docs({**env, **settings.dbt_env()}, settings)

    from crm_knowledge.summary import collect_summary, format_summary

    summary = collect_summary(settings)
    from crm_knowledge.privacy.pii_scan import scan as pii_scan  # "no PII outside the vault"

    summary["pii_scan_findings"] = len(pii_scan(settings).findings)
    summary["timings_s"] = timings
    summary["demo"] = demo.as_dict() if hasattr(demo, "as_dict") else str(demo)
    print(format_summary(summary, settings))
    return summary
