"""`make run` and `make up`: the pipeline run by Airflow as deployed.

`make run` (:func:`run_pipeline`) starts the embedded warehouse, writes the demo sources, starts Airflow's
scheduler, DAG processor, triggerer and API server (crm_knowledge.airflow_stack), unpauses the pipeline
DAGs and runs each ingestion DAG once; the scheduler then starts `customer_warehouse` and
`customer_scoring` from their Asset events, exactly as in production. Then a second simulated day range
(:func:`run_response_range`): the demo writes the days after the delivery, with customers responding to the
campaigns they were sent (demo/responses.py), and the same DAGs run once more for the range's last day, which
measures the campaigns and writes the campaign report. It shows progress while it waits,
stops on the first failed DAG run naming the failed task and its error (exit code 1), and prints the
summary. `make up` (:func:`serve`) keeps the same stack running on the deployment's own sources.
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

from crm_knowledge.settings import Settings, env_value, get_settings
from crm_knowledge.termination import end_like_ctrl_c

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

INGEST_DAGS = PIPELINE_DAGS[:4]
#: DAGs `make up` unpauses: the pipeline and the erasure DAG (which `make run` leaves paused).
ALL_DAGS = (*PIPELINE_DAGS, "customer_erasure")
#: Seconds the demo webhook receiver may take to start listening.
WEBHOOK_RECEIVER_START_S = 60
TERMINAL_TI_STATES = {"success", "failed", "skipped", "upstream_failed", "removed"}


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def airflow_env(settings: Settings, *, demo: bool = True) -> dict[str, str]:
    """Environment for Airflow processes, every value derived from `settings`.

    With `demo` (make run) the public demo pseudonym key is allowed, tasks are not retried (a demo run
    reports a failure at once) and the ingestion DAGs have no time schedule (the rounds trigger them for the
    day they simulate; an hourly run of the real day must not join a round); each only when the environment
    does not say otherwise.
    """
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
        # cosmos keeps dbt's partial-parse file between tasks here; its default (/tmp/cosmos) is shared by
        # every deployment on the machine, whose different profiles and vars would force full re-parses
        "AIRFLOW__COSMOS__CACHE_DIR": env.get("AIRFLOW__COSMOS__CACHE_DIR",
                                              str(settings.airflow_home / "cosmos_cache")),
        # The warehouse as an Airflow connection: cosmos builds dbt's profile from it.
        "AIRFLOW_CONN_WAREHOUSE": settings.warehouse_url,
        "CKP_HOME": str(settings.home),
        "CKP_DEMO_MODE": env_value("CKP_DEMO_MODE") or ("1" if demo else "0"),
        "CKP_TASK_RETRIES": env_value("CKP_TASK_RETRIES") or ("0" if demo else str(settings.task_retries)),
        # make run's rounds are the demo's clock: each triggers every ingest for the day it simulates
        "CKP_INGEST_SCHEDULES": env_value("CKP_INGEST_SCHEDULES") or ("off" if demo else "on"),
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
    from crm_knowledge.warehouse.dbt_connection import DBT_PROFILE, DBT_TARGET

    project = settings.dbt_project_dir
    # the profile and target named as cosmos' dbt tasks name them: dbt accepts a saved parse only from a command
    # that named the same ones, so the tasks reuse this command's parse (and it theirs)
    cmd = [_venv_bin("dbt"), *args, "--project-dir", str(project), "--profiles-dir", str(project),
           "--profile", DBT_PROFILE, "--target", DBT_TARGET]
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


@contextmanager
def webhook_receiver(settings: Settings, env: dict[str, str]) -> Iterator[None]:
    """The demo's webhook destination: a local receiver on loopback, for the length of the run."""
    import socket

    port = settings.webhook_port
    inbox = settings.home / "webhook_inbox"
    proc = subprocess.Popen([sys.executable, "-m", "crm_knowledge.export.receiver", "--port", str(port),
                             "--out", str(inbox)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # generous: on a busy machine a Python process can take tens of seconds to start
        deadline = time.monotonic() + WEBHOOK_RECEIVER_START_S
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"the demo webhook receiver on 127.0.0.1:{port} exited with code "
                                   f"{proc.returncode} (is the port taken? set CKP_WEBHOOK_PORT)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo webhook receiver did not answer on 127.0.0.1:{port} within "
                                   f"{WEBHOOK_RECEIVER_START_S} s")
            time.sleep(0.2)
        print(f"    webhook receiver on 127.0.0.1:{port}, inbox {inbox}", flush=True)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class PipelineRunFailed(RuntimeError):
    """A DAG run of the pipeline failed; the message names the run, the failed task(s) and their errors."""


def _parse_ts(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _elapsed(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def _prepare_stack(settings: Settings, *, demo: bool):
    """Environment, metadata database, dbt manifest and the (not yet started) stack."""
    from crm_knowledge import airflow_stack

    print("    airflow: metadata database, dbt manifest", flush=True)
    airflow_stack.ensure_metadata_database(settings)
    env = airflow_stack.stack_env(settings, airflow_env(settings, demo=demo), settings.airflow_port)
    airflow_stack.migrate(env)
    dbt_parse(dbt_process_env(settings), settings)
    return airflow_stack.AirflowStack(env=env, port=settings.airflow_port,
                                      log_dir=settings.home / "logs" / "airflow")


def wait_for_dags(api, dag_ids: Sequence[str], timeout: float, stack=None,
                  parsed_after: dt.datetime | None = None) -> dict[str, dict]:
    """Wait until the DAG processor has stored every DAG of `dag_ids` (parsed after `parsed_after`: this
    stack's DAG processor, so today's DAG files and dbt manifest, not a earlier run's); an import error is
    raised at once."""
    deadline = time.monotonic() + timeout
    while True:
        found = {d: api.dag(d) for d in dag_ids}
        if all(found.values()) and all(
                parsed_after is None or (_parse_ts(info.get("last_parsed_time")) or parsed_after) >= parsed_after
                for info in found.values()):
            return found
        errors = api.import_errors()
        if errors:
            raise RuntimeError("DAG import errors:\n" + "\n".join(
                f"{e.get('filename')}: {str(e.get('stack_trace'))[-1500:]}" for e in errors))
        if stack is not None:
            stack.check_alive()
        if time.monotonic() > deadline:
            missing = [d for d, v in found.items() if not v or parsed_after is None
                       or (_parse_ts(v.get("last_parsed_time")) or parsed_after) < parsed_after]
            raise RuntimeError(f"the DAG processor did not load {missing} within {timeout:.0f}s")
        time.sleep(3)


def fail_leftover_runs(api, dag_ids: Sequence[str]) -> None:
    """Mark runs still queued or running from an earlier, interrupted `make run` failed: otherwise they
    resume when the stack starts, take the executor's slots and hold max_active_runs=1 DAGs."""
    for dag_id in dag_ids:
        for run in api.dag_runs(dag_id):
            if run.get("state") in ("queued", "running"):
                api.set_run_state(dag_id, run["dag_run_id"], "failed")
                print(f"    {dag_id} / {run['dag_run_id']} was left {run['state']} by an interrupted run: "
                      "marked failed", flush=True)


def _due_run_taken(api, dag_id: str, info: dict) -> bool:
    """Whether a run already holds the logical date of the DAG's next due run (a first round of an earlier
    `make run` the same day was triggered on it): the scheduler then skips that run instead of starting it."""
    logical = _parse_ts(info.get("next_dagrun_logical_date"))
    return logical is not None and any(_parse_ts(r.get("logical_date")) == logical for r in api.dag_runs(dag_id))


def start_ingestion(api, dags: dict[str, dict], since: dt.datetime, as_of: dt.date | None = None) -> None:
    """Unpause the pipeline DAGs and have each ingestion DAG run once.

    Under `make run` the ingest DAGs have no time schedule (CKP_INGEST_SCHEDULES off, :func:`airflow_env`), so
    each is triggered here. With schedules on, unpausing a scheduled DAG makes the scheduler start its latest
    due run (as in production); an ingest DAG with no run due (already unpaused, or its latest run done) is
    triggered by hand instead, without a logical date: its as-of date is then the day it was queued
    (crm_knowledge.as_of.as_of_date).

    With ``as_of`` (make run's first round before its simulated day range, a past day) every ingest DAG is
    triggered with that ``as_of_date`` in the run's conf, before it is unpaused and on the logical date of
    its due run, so the scheduler does not start a second run of today.
    """
    for dag_id, info in dags.items():
        due = _parse_ts(info.get("next_dagrun_run_after"))
        was_paused = info.get("is_paused", True)
        if dag_id in INGEST_DAGS and due is not None and _due_run_taken(api, dag_id, info):
            due = None  # an earlier round's run already holds that logical date: the scheduler will not start it
        if as_of is not None and dag_id in INGEST_DAGS:
            logical = (_parse_ts(info.get("next_dagrun_logical_date"))
                       if was_paused and due is not None and due <= since else None)
            api.trigger(dag_id, logical_date=logical, conf={"as_of_date": as_of.isoformat()})
            print(f"    triggered {dag_id} for {as_of}", flush=True)
        if was_paused:
            api.set_paused(dag_id, False)
        if as_of is not None:
            continue
        if dag_id in INGEST_DAGS and not (was_paused and due is not None and due <= since):
            api.trigger(dag_id)
            print(f"    triggered {dag_id}", flush=True)
        elif dag_id in INGEST_DAGS:
            print(f"    unpaused {dag_id}: the scheduler starts its run due at {due:%Y-%m-%d %H:%M} UTC", flush=True)


def _failure_message(api, dag_id: str, run: dict) -> str:
    tis = api.task_instances(dag_id, run["dag_run_id"])
    failed = [t for t in tis if t.get("state") == "failed" and t.get("task_id") != "watcher"]
    failed = failed or [t for t in tis if t.get("state") == "failed"]
    lines = [f"DAG run {dag_id} / {run['dag_run_id']} ({run.get('run_type')}) failed."]
    from crm_knowledge.airflow_stack import error_of

    for t in failed[:3]:
        where = t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) not in (-1, None) else "")
        try:
            error = error_of(api.task_log(dag_id, run["dag_run_id"], t["task_id"], t.get("try_number") or 1,
                                          t.get("map_index", -1)))
        except RuntimeError as exc:
            error = f"(its log could not be read: {exc})"
        lines.append(f"failed task: {where}\n{error}")
    upstream_failed = sum(t.get("state") == "upstream_failed" for t in tis)
    if upstream_failed:
        lines.append(f"{upstream_failed} downstream task(s) did not run (upstream_failed).")
    return "\n".join(lines)


def follow_runs(api, since: dt.datetime, timeout: float, stack=None, poll: float = 5) -> dict[str, dict]:
    """Wait for one run of each pipeline DAG queued after `since`: the ingests' and then the warehouse's and
    scoring's, which must be started by Asset events. Prints progress; raises PipelineRunFailed at the first
    failed run; returns the finished runs by DAG id."""
    started = time.monotonic()
    done: dict[str, dict] = {}
    reported: set[tuple[str, str, str]] = set()
    last_line = ""
    last_print = 0.0
    while True:
        active = []
        for dag_id in PIPELINE_DAGS:
            if dag_id in done:
                continue
            runs = [r for r in api.dag_runs(dag_id) if (_parse_ts(r.get("queued_at")) or since) >= since]
            if not runs:
                continue
            run = min(runs, key=lambda r: r.get("queued_at") or "")
            if dag_id not in INGEST_DAGS and run.get("run_type") != "asset_triggered":
                raise PipelineRunFailed(f"{dag_id} was started by a {run.get('run_type')} run "
                                        f"({run['dag_run_id']}), not by its Asset events")
            if run["state"] == "failed":
                raise PipelineRunFailed(_failure_message(api, dag_id, run))
            if run["state"] == "success":
                done[dag_id] = run
                took = ((_parse_ts(run.get("end_date")) or since) - (_parse_ts(run.get("start_date")) or since))
                print(f"    ✓ {dag_id} ({run['run_type']}) succeeded in {_elapsed(took.total_seconds())}",
                      flush=True)
                continue
            active.append((dag_id, run))
        if len(done) == len(PIPELINE_DAGS):
            return done
        if stack is not None:
            stack.check_alive()
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            waiting = [d for d in PIPELINE_DAGS if d not in done]
            raise PipelineRunFailed(f"timed out after {_elapsed(elapsed)} waiting for {waiting}")
        parts = []
        for dag_id, run in active:
            tis = api.task_instances(dag_id, run["dag_run_id"])
            finished = sum(t.get("state") in TERMINAL_TI_STATES for t in tis)
            for t in tis:  # say so at once; the run itself fails once its report tasks are done
                key = (dag_id, run["dag_run_id"], f"{t['task_id']}[{t.get('map_index', -1)}]")
                if t.get("state") == "failed" and key not in reported:
                    reported.add(key)
                    print(f"    ✗ {dag_id}.{t['task_id']} failed; waiting for the run to finish its reports",
                          flush=True)
            parts.append(f"{dag_id} ({run.get('run_type')}) {run['state']} {finished}/{len(tis)} tasks")
        line = "; ".join(parts) or "waiting for the scheduler"
        if line != last_line or time.monotonic() - last_print > 30:
            print(f"    [{_elapsed(elapsed)}] {line}", flush=True)
            last_line, last_print = line, time.monotonic()
        time.sleep(poll)


def run_response_range(api, settings: Settings, seed: int, *, timeout: float, stack=None) -> dict:
    """Campaigns: the second simulated day range of `make run`.

    The demo generates the days after the first round's delivery (ordinary increments and the planted campaign
    responses), then every ingestion DAG is triggered for the range's last day (the `as_of_date` in the run's
    conf becomes its as-of date, carried by the Asset events to the warehouse and scoring runs).
    """
    from crm_knowledge.demo.responses import RESPONSE_DAYS, simulate_response_range
    from crm_knowledge.warehouse.db import connect

    with connect(settings.warehouse_url) as conn:
        delivered = conn.execute("select max(as_of_date) from audit.exports where status = 'delivered'").fetchone()[0]
    if delivered is None:
        raise PipelineRunFailed("the first round delivered nothing: no campaign to measure")
    last_day, truth = simulate_response_range(delivered, seed, settings)
    print(f"    demo: {RESPONSE_DAYS} days after the delivery of {delivered}, {truth['orders']} campaign "
          f"orders planted; running the pipeline for {last_day}", flush=True)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for dag_id in INGEST_DAGS:
        api.trigger(dag_id, conf={"as_of_date": last_day.isoformat()})
    return follow_runs(api, since, timeout=timeout, stack=stack)


def run_pipeline(size: int | None = None, seed: int | None = None, *, keep_running: bool = False,
                 timeout: float | None = None, overwrite_external_db: bool = False,
                 response_range: bool = True) -> dict:
    """`make run`: the whole pipeline on demo data, run by the real Airflow scheduler (module docstring)."""
    from crm_knowledge.demo.guard import check_demo_targets
    from crm_knowledge.warehouse import bootstrap, server

    wall = time.monotonic()
    end_like_ctrl_c()
    settings = get_settings()
    # before anything is started or written: the demo stays out of databases this project did not create
    check_demo_targets(settings, overwrite_external_db=overwrite_external_db, orders_db=True, warehouse=True)
    size = size or settings.demo_size
    seed = seed if seed is not None else settings.demo_seed
    timeout = timeout or settings.run_timeout_s
    # The day the ingest runs will be for: their latest due run, or a run queued now (both today, UTC).
    as_of = dt.datetime.now(dt.UTC).date()
    first_round: dt.date | None = None
    if response_range:
        # campaigns: the first round is for a past day, so that the simulated days after its
        # delivery end yesterday (the raw quality gate holds data dated after its load, i.e. in the future)
        from crm_knowledge.demo.responses import RESPONSE_DAYS

        first_round = as_of = as_of - dt.timedelta(days=RESPONSE_DAYS + 1)

    print(f"1/4 warehouse: {'external (WAREHOUSE_URL)' if not settings.embedded else 'embedded'}", flush=True)
    server.start(settings)
    settings = get_settings()
    bootstrap.apply_ddl(settings.warehouse_url)

    print(f"2/4 demo sources: {size} customers, seed {seed}, as of {as_of}", flush=True)
    from crm_knowledge.demo import generate

    demo = generate(size=size, seed=seed, settings=settings, as_of=as_of,
                    overwrite_external_db=overwrite_external_db)

    print("3/4 airflow: scheduler, DAG processor, triggerer, API server", flush=True)
    stack = _prepare_stack(settings, demo=True)
    timings: dict[str, float] = {}
    with webhook_receiver(settings, stack.env), stack:
        started = dt.datetime.now(dt.UTC)
        api = stack.start()
        print(f"    Airflow UI: {stack.url}  (logs: {stack.log_dir})", flush=True)
        dags = wait_for_dags(api, PIPELINE_DAGS, timeout=600, stack=stack, parsed_after=started)
        print("4/4 running: ingestion once; warehouse and scoring start from their Asset events", flush=True)
        fail_leftover_runs(api, PIPELINE_DAGS)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        start_ingestion(api, dags, since, as_of=first_round)
        runs = follow_runs(api, since, timeout=timeout, stack=stack)
        for dag_id, run in runs.items():
            began, ended = _parse_ts(run.get("start_date")), _parse_ts(run.get("end_date"))
            timings[dag_id] = round((ended - began).total_seconds(), 1) if began and ended else None
        second: dict[str, dict] = {}
        if response_range:
            print("then: a second simulated day range, campaign responses after the delivery", flush=True)
            second = run_response_range(api, settings, seed, timeout=timeout, stack=stack)

        print("    dbt docs generate (catalog and lineage site)", flush=True)
        dbt_docs(dbt_process_env(settings), settings)

        from crm_knowledge.privacy.pii_scan import scan as pii_scan  # the "no PII outside the vault" check
        from crm_knowledge.summary import collect_summary, format_summary

        summary = collect_summary(settings)
        scan = pii_scan(settings)
        summary["pii_scan_findings"] = len(scan.findings)
        summary["pii_scan"] = scan.as_dict()  # what was scanned (findings name places and kinds, never values)
        summary["timings_s"] = timings
        summary["runs"] = {d: {"run_id": r["dag_run_id"], "run_type": r["run_type"], "state": r["state"]}
                           for d, r in runs.items()}
        summary["response_range_runs"] = {
            d: {"run_id": r["dag_run_id"], "run_type": r["run_type"], "state": r["state"]} for d, r in second.items()}
        summary["wall_s"] = round(time.monotonic() - wall, 1)
        summary["demo"] = demo.as_dict() if hasattr(demo, "as_dict") else str(demo)
        print(format_summary(summary, settings))
        print(f"whole run: {_elapsed(summary['wall_s'])}", flush=True)
        if keep_running:
            print(f"Airflow keeps running: {stack.url} (Ctrl-C stops it)", flush=True)
            _block_until_interrupted(stack)
        else:
            print(f"Airflow stopped; `make up` serves the UI with these runs again at {stack.url}", flush=True)
    return summary


def _block_until_interrupted(stack) -> None:
    try:
        while True:
            stack.check_alive()
            time.sleep(5)
    except KeyboardInterrupt:
        print("stopping Airflow", flush=True)


def serve() -> None:
    """`make up`: the same stack on the deployment's own sources (no demo data), until Ctrl-C or SIGTERM.

    Every DAG is unpaused: the ingests run on their schedules, the warehouse and scoring on their Assets.
    """
    from crm_knowledge.warehouse import bootstrap, server

    end_like_ctrl_c()
    settings = get_settings()
    server.start(settings)
    settings = get_settings()
    bootstrap.apply_ddl(settings.warehouse_url)
    stack = _prepare_stack(settings, demo=False)
    with stack:
        started = dt.datetime.now(dt.UTC)
        api = stack.start()
        dags = wait_for_dags(api, ALL_DAGS, timeout=600, stack=stack, parsed_after=started)
        for dag_id, info in dags.items():
            if info.get("is_paused", True):
                api.set_paused(dag_id, False)
        print(f"Airflow is up: {stack.url}  (UI without login, on loopback only; logs: {stack.log_dir})\n"
              f"DAGs unpaused: {', '.join(ALL_DAGS)}. Ctrl-C stops it.", flush=True)
        _block_until_interrupted(stack)

