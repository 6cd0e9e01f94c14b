"""`make bench SIZE=…`: the whole pipeline at a given size, stage by stage, full run then incremental days (two by
default: the day after the weekly run, then an ordinary day).

The stages are the DAGs' task bodies called directly (the same functions, in the order the Assets chain
them), not `airflow dags test`: the benchmark measures the pipeline's work, not the scheduler's task
start-up (README, "dbt in Airflow"). dbt runs as one `dbt build` per stage of the catalogue
(dbt_project/selectors.yml, crm_knowledge.dbt_stages), as the DAGs run it.

Everything happens under its own home (`var/bench/<size>`, wiped first) and its own warehouse port, so a
benchmark never touches the data of `make run` or of the tests. Results go to
`bench/results/<date>-<size>.json` and `.md`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crm_knowledge import dbt_stages
from crm_knowledge.bench.measure import MemorySampler, StageTimer
from crm_knowledge.runner import airflow_env, dbt_process_env, run_dbt, webhook_receiver
from crm_knowledge.settings import PROJECT_ROOT, Settings, get_settings
from crm_knowledge.warehouse.db import connect

log = logging.getLogger(__name__)

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
AS_OF = dt.date(2026, 11, 20)
IDENTITY_SCALING_SIZES = (100_000, 1_000_000)


def prepare_environment(size: int, home: Path | None = None, port: int | None = None) -> Path:
    """Point every setting at the benchmark's own home and port; must run before get_settings()."""
    home = home or PROJECT_ROOT / "var" / "bench" / str(size)
    os.environ["CKP_HOME"] = str(home)
    os.environ["CKP_WAREHOUSE_PORT"] = str(port or bench_port(home))
    os.environ.setdefault("CKP_WEBHOOK_PORT", str(get_settings().bench_webhook_port))
    os.environ["CKP_DEMO_MODE"] = "1"
    os.environ["AIRFLOW_HOME"] = str(home / "airflow")
    return home


def bench_port(home: Path) -> int:
    """The warehouse port of a benchmark in `home`: CKP_BENCH_PORT when set; else the port of the server this
    home already runs, if any; else the default (54360) when it is free, or any free port: a benchmark of
    another size (or anything else) may hold the default, and the benchmark's server is its own."""
    from crm_knowledge.netports import port_or_free
    from crm_knowledge.settings import env_value
    from crm_knowledge.warehouse.server import running_port

    settings = get_settings()
    if env_value("CKP_BENCH_PORT"):
        return settings.bench_port
    own = running_port(home)
    if own is not None:
        return own
    port = port_or_free(settings.bench_port)
    if port != settings.bench_port:
        log.info("port %s (CKP_BENCH_PORT's default) is taken; the benchmark's warehouse uses %s",
                 settings.bench_port, port)
    return port


class BenchHomeBusy(RuntimeError):
    """Another benchmark holds this home."""


@contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """One benchmark per home at a time. Each run wipes its home first and stops the server left there, so a
    second `ckp bench` of the same size would delete a running one's data and stop its warehouse mid-run; it
    fails at once instead, naming the home. The lock is a file beside the home (the home itself is wiped)."""
    import fcntl

    home.parent.mkdir(parents=True, exist_ok=True)
    lock_path = home.parent / f".{home.name}.lock"
    with open(lock_path, "a", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchHomeBusy(f"another benchmark is running in {home} (it holds {lock_path}); a second one "
                                "would wipe its home and stop its warehouse: wait for it to finish") from None
        yield


def _wipe(home: Path) -> None:
    """A benchmark starts from nothing: stop a server left in this home, then delete the home."""
    from crm_knowledge.warehouse import server

    if home.exists():
        try:
            server.stop(get_settings())
        except Exception:  # noqa: BLE001 - nothing running is fine
            log.debug("no server to stop in %s", home, exc_info=True)
        shutil.rmtree(home)


#: Disk a benchmark's home takes per customer, measured: the full run with its incremental day about 55 KB (the
#: 1M warehouse had reached 50 GB in the day's staging, 2026-12-07; 100k: 7.5 GB), the identity stage alone 5 KB
#: (1M: 4.6 GB); each further day adds its own rows and dead versions (estimated at 5 KB, not yet measured). A
#: benchmark that needs more than the filesystem has free fails at the start, not an hour in.
DISK_PER_CUSTOMER = {"full": 65_000, "only_ingest": 20_000, "only_identity": 5_000}
DISK_MARGIN = 2 * 2**30


class NotEnoughDisk(RuntimeError):
    """The benchmark's home is on a filesystem with less free space than the run needs."""


def check_disk(home: Path, size: int, mode: str) -> int:
    """Raise :class:`NotEnoughDisk` unless the filesystem of `home` (after the old home is wiped) has room for
    a `mode` run of `size` customers; returns the bytes needed."""
    needed = size * DISK_PER_CUSTOMER[mode] + DISK_MARGIN
    existing = next(p for p in (home, *home.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise NotEnoughDisk(
            f"a {mode.replace('_', '-')} benchmark of {size:,} customers needs about {needed / 2**30:.0f} GB free "
            f"under {home} ({free / 2**30:.1f} GB free): free disk space, or run a smaller --size")
    return needed


def _dbt_build(settings: Settings, stage: dbt_stages.DbtStage,
               dbt_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """`dbt build` of one stage of the catalogue; returns models built, tests run and rows written (from
    run_results.json)."""
    dbt_vars, run_env = dbt_stages.vars_and_env(dbt_vars)  # as the DAGs' tasks: the day's start in the environment
    args = dbt_stages.build_args(stage, dbt_vars=dbt_vars)
    results = run_dbt(args, {**dbt_process_env(settings), **run_env}, settings,
                      target_path=settings.home / "dbt_target", log_path=settings.home / "dbt_logs").run_results()
    models = [r for r in results if r["unique_id"].startswith(("model.", "snapshot.", "seed."))]
    tests = [r for r in results if r["unique_id"].startswith(("test.", "unit_test."))]
    rows = sum(int((r.get("adapter_response") or {}).get("rows_affected") or 0) for r in models)
    slowest = sorted(models, key=lambda r: r.get("execution_time", 0), reverse=True)[:5]
    return {"models": len(models), "tests": len(tests), "rows": rows,
            "slowest_models": {r["unique_id"].split(".")[-1]: round(r["execution_time"], 2) for r in slowest}}


def _table_rows(url: str, schemas: tuple[str, ...]) -> int:
    """The live rows of the tables in `schemas`, from the server's statistics (no scan, no ANALYZE: the bench's
    count must not do work the pipeline does not do, or leave the planner statistics it would not have)."""
    with connect(url) as conn:
        return int(conn.execute(
            "select coalesce(sum(n_live_tup), 0) from pg_stat_user_tables where schemaname = any(%s)",
            (list(schemas),)).fetchone()[0])


def _batch_rows(url: str, batch_ids: list[str]) -> int:
    with connect(url) as conn:
        return int(conn.execute("select coalesce(sum(rows_loaded), 0) from audit.load_batches "
                                "where batch_id = any(%s)", (batch_ids,)).fetchone()[0])


def _ingest_stages(timer: StageTimer, phase: str, settings: Settings,
                   files_only: bool = False) -> dict[str, dict[str, Any]]:
    from crm_knowledge.ingest.registry import load_registry
    from crm_knowledge.ingest.tasks import ingest_file_source, ingest_orders_database

    out = {}
    for cfg in load_registry(settings.config_dir):
        if files_only and cfg.kind == "orders_db":
            continue
        with timer.stage(f"ingest:{cfg.name}", phase) as rec:
            if cfg.kind == "orders_db":
                summary = ingest_orders_database(cfg.name)
            else:
                summary = ingest_file_source(cfg.name)
            rec.rows = int(summary["rows_loaded"])
            rec.detail = {k: v for k, v in summary.items() if k != "batch_ids"}
        out[cfg.name] = {"rows": rec.rows, "seconds": rec.seconds, "rows_per_s": rec.rows_per_s}
    return out


def _raw_gate_stage(timer: StageTimer, phase: str, run_id: str, settings: Settings) -> None:
    from crm_knowledge.quality.pipeline import batches_to_validate, check_new_raw_batches

    url = settings.warehouse_url
    with timer.stage("quality:raw_gate", phase) as rec:
        pending = [b for ids in batches_to_validate(url).values() for b in ids]
        raw = check_new_raw_batches(pipeline_run_id=run_id, settings=settings)
        rec.rows = _batch_rows(url, pending) or None
        rec.detail = {"held_batches": raw["held_batches"], "tables": len(raw["tables"]),
                      "checks_run": sum(t["checks_run"] for t in raw["tables"].values())}


def _only_ingest(timer: StageTimer, report: dict[str, Any], settings: Settings, rounds: int) -> None:
    """`--only-ingest`: the file sources' loader against plain COPY, interleaved on the same files
    (bench.loader_ratio, `rounds` each, medians), then the ingest stage itself and the raw quality gate, each
    timed as in the full run. The orders database is neither generated nor loaded (it is not a file)."""
    from crm_knowledge.bench import loader_ratio
    from crm_knowledge.ingest.registry import load_registry

    file_sources = [c for c in load_registry(settings.config_dir) if c.kind != "orders_db"]
    with timer.stage("baseline:loader_vs_copy", "full") as rec:
        report["loader_ratio"] = loader_ratio.measure(settings, file_sources, rounds=rounds)
        rec.rows = sum(e.get("rows", 0) for e in report["loader_ratio"])
    ingest = _ingest_stages(timer, "full", settings, files_only=True)
    report["ingest_full"] = ingest
    _raw_gate_stage(timer, "full", f"bench-ingest-{AS_OF}", settings)


def _run_phase(timer: StageTimer, phase: str, as_of: dt.date, settings: Settings,
               identity_mode: str) -> dict[str, Any]:
    """Every stage after the sources exist: ingest, gates, dbt, identity, scoring, exports."""
    from crm_knowledge.export.config import load_destinations
    from crm_knowledge.export.deliver import deliver_all
    from crm_knowledge.identity.store import run as resolve_identities
    from crm_knowledge.quality.pipeline import check_layers, check_post_scoring
    from crm_knowledge.run_mode import FULL, INCREMENTAL, RunMode, warehouse_now
    from crm_knowledge.scoring.run import score_all, score_day
    from crm_knowledge.warehouse.db import connect

    url = settings.warehouse_url
    run_id = f"bench-{phase}-{as_of}"
    # the day runs as the DAGs run a daily run (crm_knowledge.run_mode): its dbt tests and gates read the rows
    # it writes, scoring applies the fitted models to the customers it changed
    daily = phase != "full"
    if daily:
        with connect(url) as conn:
            mode = RunMode(INCREMENTAL, warehouse_now(conn))
    else:
        mode = RunMode(FULL)
    # The benchmark's "next day" comes minutes after the full run. Incremental staging re-reads rows loaded
    # within incremental_lookback_hours of its newest staged load (loads that committed during a staging
    # run); measured in wall-clock time that would be the whole full run, so the day runs with no look-back.
    # A real daily run re-reads the previous day's loads too (about one extra day of rows).
    dbt_vars = {"incremental_lookback_hours": 0, **mode.dbt_vars()} if daily else None
    ingest = _ingest_stages(timer, phase, settings)

    _raw_gate_stage(timer, phase, run_id, settings)

    with timer.stage("dbt:staging", phase) as rec:
        built = _dbt_build(settings, dbt_stages.STAGING, dbt_vars=dbt_vars)
        rec.rows, rec.detail = built["rows"], built

    with timer.stage("identity_resolution", phase) as rec:
        stats = resolve_identities(url, mode=identity_mode)
        rec.rows = int(stats.get("records", 0)) or None
        rec.detail = {k: v for k, v in stats.items() if isinstance(v, (int, float, str))} | {"mode": identity_mode}

    with timer.stage("dbt:marts", phase) as rec:
        built = _dbt_build(settings, dbt_stages.MARTS, dbt_vars=dbt_vars)
        rec.rows, rec.detail = built["rows"], built

    with timer.stage("quality:staging_and_marts", phase) as rec:
        checked = check_layers(["staging", "marts"], pipeline_run_id=run_id, settings=settings, mode=mode)
        rec.detail = checked["layers"]
    rec.rows = _table_rows(url, ("staging", "marts"))  # counted after the stage's clock stopped

    with timer.stage("scoring:all_models", phase) as rec:
        scored = (score_day(as_of, settings=settings) if daily
                  else score_all(as_of=as_of, settings=settings, reason="weekly"))
        rec.rows = int(scored["customers_scored"])
        rec.detail = scored
    for model, seconds in scored.get("model_seconds", {}).items():
        # the models run inside score_all; their own times are split out here (memory is the whole call's)
        timer.records.append(type(rec)(stage=f"scoring:{model}", phase=phase, seconds=seconds,
                                       rows=scored.get("model_rows", {}).get(model),
                                       peak_pipeline_mb=rec.peak_pipeline_mb,
                                       peak_warehouse_mb=rec.peak_warehouse_mb, peak_total_mb=rec.peak_total_mb))

    with timer.stage("dbt:post_scoring", phase) as rec:
        built = _dbt_build(settings, dbt_stages.POST_SCORING, dbt_vars=dbt_vars)
        rec.rows, rec.detail = built["rows"], built
    with timer.stage("quality:post_scoring", phase) as rec:
        rec.detail = check_post_scoring(pipeline_run_id=run_id, settings=settings)

    destinations = load_destinations(settings.destinations_file).destinations
    with webhook_receiver(settings, airflow_env(settings)):
        for dest in destinations:
            with timer.stage(f"export:{dest.name}", phase) as rec:
                result = deliver_all(as_of, settings, only=[dest.name])[0]
                rec.rows = sum(int(result.get(k) or 0) for k in ("rows_added", "rows_changed", "rows_removed"))
                rec.detail = {k: v for k, v in result.items() if k in ("status", "members", "rows_added",
                                                                        "rows_changed", "rows_removed")}
    return {"ingest": ingest}


def identity_scaling(settings: Settings, sizes: tuple[int, ...] = IDENTITY_SCALING_SIZES) -> list[dict[str, Any]]:
    """Full identity resolution (in memory, no writes) on the first N candidate records of the warehouse,
    for each N that the warehouse holds (the largest size it lacks is replaced by all its records)."""
    from crm_knowledge.identity.resolve import resolve
    from crm_knowledge.identity.store import read_candidates

    with connect(settings.warehouse_url) as conn:
        candidates = read_candidates(conn)
    # records of whole persons stay together: order by a stable hash of the record key, which mixes sources
    candidates = candidates.sort_values(["source_record_id", "source_system"], kind="stable").reset_index(drop=True)
    points, wanted = [], sorted({min(n, len(candidates)) for n in sizes})
    for n in wanted:
        started = time.perf_counter()
        result = resolve(candidates.iloc[:n].reset_index(drop=True), None)
        took = time.perf_counter() - started
        points.append({"records": n, "seconds": round(took, 2), "records_per_s": round(n / took, 1),
                       "customers": int(result.stats.get("customers", 0))})
        log.info("identity scaling: %s records in %.1fs", n, took)
    if len(points) >= 2:
        import math

        a, b = points[0], points[-1]
        k = math.log(b["seconds"] / a["seconds"]) / math.log(b["records"] / a["records"])
        points[-1]["growth_exponent"] = round(k, 3)
    return points


def _return_freed_memory() -> None:
    """Free what the last stage left to the garbage collector and hand the freed heap back to the system
    (glibc's ``malloc_trim``; elsewhere nothing more). A backend run after another in the same process otherwise
    starts with the first one's freed but still resident memory: at 1M customers the Spark stage's driver peak
    read 2.6 GB, all of it left by the DuckDB stage before it (Spark's own driver stayed near 1.2 GB)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def identity_backends(timer: StageTimer, settings: Settings, backends: tuple[str, ...]) -> list[dict[str, Any]]:
    """A full identity resolution on each of `backends` (duckdb, spark: local mode from config/identity.yml's
    `spark` section or CKP_SPARK_*), one timed stage each, with the peak memory of this process (the driver) and
    of its children (on Spark: the JVM and its Python workers) apart. Each run writes its result, so the last
    backend's is what the warehouse keeps. The customers found are reported side by side: with Splink's sampled
    u estimate (the default) borderline pairs may differ between the engines, which hash the sample differently
    (tests/warehouse/test_identity_spark.py shows identical answers with u from every pair)."""
    import dataclasses

    from crm_knowledge.identity.config import load_config
    from crm_knowledge.identity.store import run as resolve_identities

    base = load_config()
    out = []
    for backend in backends:
        _return_freed_memory()  # each backend's driver peak starts from this process's own size, not the last one's
        config = dataclasses.replace(base, probabilistic=dataclasses.replace(base.probabilistic, backend=backend))
        with timer.stage(f"identity_backend:{backend}", "full") as rec:
            stats = resolve_identities(settings.warehouse_url, mode="full", config=config)
            rec.rows = stats["records"]
            rec.detail = {"customers": stats["customers"], "backend": backend}
        out.append({"backend": backend, "records": stats["records"], "customers": stats["customers"],
                    "seconds": round(rec.seconds, 1), "peak_pipeline_mb": round(rec.peak_pipeline_mb, 1),
                    "peak_driver_mb": round(rec.peak_driver_mb, 1), "peak_children_mb": round(rec.peak_children_mb, 1),
                    "steps": stats["probabilistic"].get("spark_seconds")})
    return out


def _only_identity(timer: StageTimer, report: dict[str, Any], settings: Settings, size: int, seed: int,
                   backends: tuple[str, ...]) -> None:
    """`--only-identity`: the identity stage alone, without the pipeline before it. The candidates table is filled
    with the synthetic demo people of bench/identity_daily.py (about 2.1 records per customer: an orders record, a
    Persian-script sibling record, a form), then a full resolution runs on each backend (identity_backends)."""
    from crm_knowledge.bench.identity_daily import fill_candidates

    with timer.stage("generate:identity_candidates", "full") as rec:
        rec.rows = fill_candidates(settings.warehouse_url, size, seed=seed)
    report["identity_candidates"] = rec.rows
    report["identity_backends"] = identity_backends(timer, settings, backends or ("duckdb", "spark"))


def day_phase(number: int) -> str:
    """The report's phase name of the `number`-th incremental day after the full run: `incremental` for the first
    (the name every report before the second day was added uses), `incremental_<n>` after it."""
    return "incremental" if number == 1 else f"incremental_{number}"


def run_bench(size: int, seed: int = 42, *, incremental: bool = True, baselines: bool = True,
              scaling: bool = True, results_dir: Path = RESULTS_DIR, label: str | None = None,
              identity_backends_: tuple[str, ...] = (), only_ingest: bool = False, only_identity: bool = False,
              rounds: int = 3, days: int = 2) -> dict[str, Any]:
    """Run the benchmark; returns the report dict (also written as JSON and markdown).

    `days`: incremental days after the full run (with `incremental`). The first carries what the full run's
    exports delivered (the first delivery of every destination: every member is new to it), which the
    customer-level models that read deliveries follow; the second is an ordinary day: its deliveries are
    the first day's changes only. Both are reported (incremental_seconds is the first, `days` lists each).

    `only_ingest`: generate the file sources, then only the ingest stage with its COPY baselines: plain COPY
    of every file, the loader against plain COPY interleaved on each file (`rounds` each), the ingest stage
    and the raw quality gate (see _only_ingest). `only_identity`: only the identity stage on synthetic candidates,
    on each of `identity_backends_` (default duckdb and spark; see _only_identity)."""
    from crm_knowledge.bench import baselines as base
    from crm_knowledge.demo import generate, generate_increment
    from crm_knowledge.ingest.registry import load_registry
    from crm_knowledge.warehouse import bootstrap, server

    settings = get_settings()
    _wipe(settings.home)
    check_disk(settings.home, size, "only_identity" if only_identity else "only_ingest" if only_ingest else "full")
    started_at = dt.datetime.now(dt.UTC)
    print(f"benchmark: {size:,} customers, home {settings.home}", flush=True)
    server.start(settings)
    try:
        settings = get_settings()
        bootstrap.apply_ddl(settings.warehouse_url)
        data_dir = settings.pgdata_dir if settings.embedded else None  # an external server is not sampled

        memory_gb = round(__import__("psutil").virtual_memory().total / 2**30, 1)
        report: dict[str, Any] = {"size": size, "seed": seed, "label": label, "started_at": started_at.isoformat(),
                                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                              "python": platform.python_version(), "memory_gb": memory_gb}}
        wall = time.perf_counter()
        with MemorySampler(data_dir) as sampler:
            timer = StageTimer(sampler)
            if only_identity:
                report["only_identity"] = True
                report["load_average"] = {"start": [round(x, 2) for x in os.getloadavg()]}
                _only_identity(timer, report, settings, size, seed, identity_backends_)
                report["full_seconds"] = round(time.perf_counter() - wall, 1)
                report["peak_total_mb"] = round(sampler.overall_total / 2**20, 1)
                report["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
                return _finish(report, timer, settings, results_dir)
            with timer.stage("generate", "full") as rec:
                demo = generate(size=size, seed=seed, settings=settings, as_of=AS_OF, write_orders_db=not only_ingest)
                rec.rows = sum(v for k, v in demo.counts.items() if k not in ("persons", "ground_truth"))
            file_sources = [c for c in load_registry(settings.config_dir) if c.kind != "orders_db"]
            report["only_ingest"] = only_ingest
            report["load_average"] = {"start": [round(x, 2) for x in os.getloadavg()]}
            if only_ingest:
                if baselines:
                    with timer.stage("baseline:plain_copy", "full") as rec:
                        report["baseline_copy"] = base.plain_copy(settings, file_sources)
                        rec.rows = sum(v["rows"] or 0 for v in report["baseline_copy"].values())
                _only_ingest(timer, report, settings, rounds)
                report["full_seconds"] = round(time.perf_counter() - wall, 1)
                incremental = scaling = False
            if baselines and not only_ingest:
                with timer.stage("baseline:plain_copy", "full") as rec:
                    report["baseline_copy"] = base.plain_copy(settings, file_sources)
                    rec.rows = sum(v["rows"] or 0 for v in report["baseline_copy"].values())
                with timer.stage("baseline:raw_ceiling", "full") as rec:
                    report["baseline_raw_ceiling"] = base.raw_ceiling(settings, file_sources)
                    rec.rows = sum(v["rows"] or 0 for v in report["baseline_raw_ceiling"].values())
                with timer.stage("baseline:pandas_to_sql", "full") as rec:
                    report["baseline_to_sql"] = base.pandas_to_sql(settings, file_sources)
                    rec.rows = sum(v["rows"] or 0 for v in report["baseline_to_sql"].values())
            if not only_ingest:
                full = _run_phase(timer, "full", AS_OF, settings, identity_mode="full")
                report["full_seconds"] = round(time.perf_counter() - wall, 1)
                report["ingest_full"] = full["ingest"]
            if identity_backends_ and not only_ingest:
                report["identity_backends"] = identity_backends(timer, settings, identity_backends_)

            for number in range(1, days + 1) if incremental else ():
                day, phase = AS_OF + dt.timedelta(days=number), day_phase(number)
                inc_wall = time.perf_counter()
                with timer.stage("generate", phase) as rec:
                    inc = generate_increment(day=day, seed=seed, settings=settings)
                    rec.rows = sum(v for k, v in inc.counts.items() if k not in ("persons", "ground_truth"))
                gen_seconds = time.perf_counter() - inc_wall
                _run_phase(timer, phase, day, settings, identity_mode="incremental")
                seconds = round(time.perf_counter() - inc_wall - gen_seconds, 1)
                report.setdefault("days", []).append({"day": day.isoformat(), "phase": phase, "seconds": seconds})
                if number == 1:
                    report["incremental_seconds"] = seconds
            if scaling:
                with timer.stage("baseline:identity_scaling", "full") as rec:
                    report["identity_scaling"] = identity_scaling(settings)
            report["peak_total_mb"] = round(sampler.overall_total / 2**20, 1)
            report["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
        return _finish(report, timer, settings, results_dir)
    except BaseException:
        if settings.embedded:  # a failed or stopped benchmark leaves no warehouse running either (GBs, a port)
            server.stop(settings)
        raise


def _finish(report: dict[str, Any], timer: StageTimer, settings: Settings, results_dir: Path) -> dict[str, Any]:
    """Stop the benchmark's warehouse, write the report (JSON and markdown) and print the markdown."""
    from crm_knowledge.bench.report import write_report
    from crm_knowledge.warehouse import server

    if settings.embedded:
        server.stop(settings)  # a benchmark's warehouse is not kept running: it holds GBs of memory and a port
    report["stages"] = [r.as_dict() for r in timer.records]
    report["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    paths = write_report(report, results_dir)
    report["paths"] = {k: str(v) for k, v in paths.items()}
    print(paths["markdown"].read_text(encoding="utf-8"), flush=True)
    return report
