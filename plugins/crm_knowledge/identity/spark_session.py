"""The Spark session identity resolution runs on when `backend: spark` (config/identity.yml).

Where Spark runs is configuration, not code: the `spark` section of config/identity.yml, each key overridable
by an environment variable read in :mod:`crm_knowledge.settings` (a deployment points the same image at its
cluster without editing the file):

=====================  ==============================  ==============================================
key                    environment                     meaning
=====================  ==============================  ==============================================
master                 CKP_SPARK_MASTER                ``local[2]``, ``spark://host:7077``, ``yarn``, ...
connect_url            CKP_SPARK_CONNECT_URL           ``sc://host:15002``: Spark Connect instead of a master
driver_memory          CKP_SPARK_DRIVER_MEMORY         ``spark.driver.memory``
executor_memory        CKP_SPARK_EXECUTOR_MEMORY       ``spark.executor.memory``
shuffle_partitions     CKP_SPARK_SHUFFLE_PARTITIONS    ``spark.sql.shuffle.partitions`` (and Splink's repartitions)
scratch_dir            CKP_SPARK_SCRATCH_DIR           where the private scratch directory is made (default: the
                                                       system's temporary directory); on a cluster, a path the
                                                       driver and every executor share (staged candidates)
conf                   (none)                          any further ``spark.*`` settings
=====================  ==============================  ==============================================

Local and private by default: the UI is off, the driver binds to the loopback with random ports, and scratch
space (shuffle files, Splink's Parquet checkpoints, staged candidates: personal data) lives in one temporary
directory readable by its owner only, removed when the session stops; a run that was killed before it could
(SIGKILL, out of memory) leaves it behind, so starting a session removes such directories of dead processes
on this host. Stopping the session ends the JVM too (:func:`stop_session`): the identity stage stops it after
every run, so a long-lived worker does not keep an idle JVM. Splink's Scala UDF jar (Jaro-Winkler
and friends) ships inside the splink wheel and is put on the classpath from there: nothing is downloaded.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crm_knowledge.identity.scratch import make_scratch

log = logging.getLogger(__name__)

#: the session's scratch folder (crm_knowledge.identity.scratch): `<scratch_dir or tmp>/ckp-spark-*`
SCRATCH_PREFIX = "ckp-spark-"

_MEMORY = re.compile(r"\d+[kmgt]?", re.IGNORECASE)
#: settings the `conf` mapping may not override: they are what keeps the session private and working
PROTECTED_CONF = frozenset({"spark.ui.enabled", "spark.jars", "spark.local.dir", "spark.sql.warehouse.dir"})


class SparkConfigError(ValueError):
    """A `spark` setting is invalid (the message names the file or variable and the key)."""


@dataclass(frozen=True)
class SparkConfig:
    """Where and how big the Spark session of identity resolution is (see the module docstring)."""

    master: str = "local[2]"
    connect_url: str | None = None
    driver_memory: str = "1g"
    executor_memory: str = "1g"
    shuffle_partitions: int = 8
    scratch_dir: str | None = None
    conf: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def is_local(self) -> bool:
        return self.connect_url is None and self.master.startswith("local")


def spark_config_from_dict(raw: Any, source: str) -> SparkConfig:
    """Validate the `spark` section of identity.yml (absent: the local defaults)."""
    if raw is None:
        return SparkConfig()
    if not isinstance(raw, dict):
        raise SparkConfigError(f"{source}: spark must be a mapping, got {type(raw).__name__}")
    known = {"master", "connect_url", "driver_memory", "executor_memory", "shuffle_partitions", "scratch_dir", "conf"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SparkConfigError(f"{source}: spark has unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
    base = SparkConfig()
    conf = raw.get("conf") or {}
    if not isinstance(conf, dict) or not all(isinstance(k, str) and k.startswith("spark.") for k in conf):
        raise SparkConfigError(f"{source}: spark.conf must map spark.* settings to values")
    clash = sorted(set(conf) & PROTECTED_CONF)
    if clash:
        raise SparkConfigError(f"{source}: spark.conf may not set {clash} (they keep the session private)")
    return _checked(SparkConfig(
        master=str(raw.get("master", base.master)),
        connect_url=str(raw["connect_url"]) if raw.get("connect_url") else None,
        driver_memory=str(raw.get("driver_memory", base.driver_memory)),
        executor_memory=str(raw.get("executor_memory", base.executor_memory)),
        shuffle_partitions=raw.get("shuffle_partitions", base.shuffle_partitions),
        scratch_dir=str(raw["scratch_dir"]) if raw.get("scratch_dir") else None,
        conf=tuple(sorted((k, str(v)) for k, v in conf.items())),
    ), source)


def _checked(cfg: SparkConfig, source: str) -> SparkConfig:
    for key in ("driver_memory", "executor_memory"):
        if not _MEMORY.fullmatch(getattr(cfg, key)):
            raise SparkConfigError(f"{source}: spark.{key} must be a JVM size like 1g or 512m, "
                                   f"got {getattr(cfg, key)!r}")
    sp = cfg.shuffle_partitions
    if isinstance(sp, bool) or not isinstance(sp, int) or sp < 1:
        raise SparkConfigError(f"{source}: spark.shuffle_partitions must be a whole number >= 1, got {sp!r}")
    if not cfg.master.strip():
        raise SparkConfigError(f"{source}: spark.master must not be empty")
    if cfg.connect_url is not None and not cfg.connect_url.startswith("sc://"):
        raise SparkConfigError(f"{source}: spark.connect_url must look like sc://host:15002, got {cfg.connect_url!r}")
    return cfg


def effective_config(cfg: SparkConfig) -> SparkConfig:
    """`cfg` with the environment's overrides (crm_knowledge.settings: CKP_SPARK_*) applied."""
    from crm_knowledge.settings import get_settings

    s = get_settings()
    overrides = {k: v for k, v in {
        "master": s.spark_master, "connect_url": s.spark_connect_url, "driver_memory": s.spark_driver_memory,
        "executor_memory": s.spark_executor_memory, "shuffle_partitions": s.spark_shuffle_partitions,
        "scratch_dir": s.spark_scratch_dir,
    }.items() if v is not None}
    return _checked(replace(cfg, **overrides), "environment (CKP_SPARK_*)") if overrides else cfg


# --- the session -----------------------------------------------------------------------------------

_lock = threading.Lock()
_state: dict[str, Any] = {}


def scratch_dir() -> Path:
    """The private (0700) scratch directory of the running session."""
    if "scratch" not in _state:
        raise RuntimeError("no Spark session: call spark_session() first")
    return _state["scratch"]


def spark_session(cfg: SparkConfig):
    """The process's Spark session for `cfg` (created on first use; a JVM start costs seconds, so it is kept
    until :func:`stop_session` or the process ends). Asking for a different configuration restarts it."""
    cfg = effective_config(cfg)
    with _lock:
        if _state.get("config") == cfg and _state.get("session") is not None:
            return _state["session"]
        _stop_locked()
        session = _build(cfg)
        _state.update(config=cfg, session=session)
        return session


def _build(cfg: SparkConfig):
    # pyspark warns that pandas 3 is "not yet fully supported"; the functions used here (Arrow conversion of
    # plain string / number / timestamp columns, mapInPandas) are covered by the backend-equality test
    warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    if cfg.scratch_dir:
        Path(cfg.scratch_dir).mkdir(parents=True, exist_ok=True)
    scratch = make_scratch(SCRATCH_PREFIX, Path(cfg.scratch_dir) if cfg.scratch_dir else None)
    _state["scratch"] = scratch
    builder = SparkSession.builder.appName("ckp-identity")
    if cfg.connect_url:
        builder = builder.remote(cfg.connect_url)
    else:
        builder = builder.master(cfg.master)
    if cfg.is_local:
        # executors are this process's children: they run this interpreter (pandas, pyarrow, crm_knowledge)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    settings = {
        "spark.ui.enabled": "false",
        "spark.jars": similarity_jar_location(),
        "spark.local.dir": str(scratch / "local"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.driver.memory": cfg.driver_memory,
        "spark.executor.memory": cfg.executor_memory,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.default.parallelism": str(cfg.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        # the driver's Python process feeds pandas frames to the JVM and back; keep Arrow batches modest
        "spark.sql.execution.arrow.maxRecordsPerBatch": "5000",
        # no broadcast joins planned from size estimates: the tables Splink and the stage build from pandas
        # UDFs are estimated far below their size, and at 100k customers a "small" side no longer fit the
        # driver's memory ("Not enough memory to build and broadcast the table"); sort-merge joins spill instead
        "spark.sql.autoBroadcastJoinThreshold": "-1",
        **dict(cfg.conf),
    }
    for k, v in settings.items():
        builder = builder.config(k, v)
    log.info("identity: starting Spark (%s, driver %s, executors %s, %d shuffle partitions)",
             cfg.connect_url or cfg.master, cfg.driver_memory, cfg.executor_memory, cfg.shuffle_partitions)
    session = builder.getOrCreate()
    if not cfg.connect_url:
        session.sparkContext.setLogLevel("ERROR")
        session.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    return session


def db_api(cfg: SparkConfig, *, iterative: bool = False):
    """Splink's SparkAPI on the session, its UDF jar registered.

    Splink breaks the lineage of each of its many small intermediate tables by caching them (``persist``)
    rather than writing each to Parquet: at the sizes one run trains on, a file per query costs more than the
    query. `iterative` (the clustering: one round of label propagation per step of the longest chain of
    pairs) checkpoints them instead: a cached table still carries the plan of every round before it, so with
    ``persist`` the plans grow round by round until the JVM runs out of heap (at 1M customers, 2.1M records
    and 2M pairs, a 2 GB heap did). A checkpoint cuts the plan at each round; its files are in the run's
    scratch directory (``checkpoints``), removed with it. Through Spark Connect the server's
    session has no checkpoint directory of this run, so there it persists as before."""
    from splink import SparkAPI

    session = spark_session(cfg)
    # a checkpoint needs the checkpoint directory, set on sessions this process starts (not through Spark Connect)
    checkpoint = iterative and not cfg.connect_url
    return SparkAPI(spark_session=session, break_lineage_method="checkpoint" if checkpoint else "persist",
                    num_partitions_on_repartition=effective_config(cfg).shuffle_partitions)


#: Spark's own text when a broadcast join's table does not fit the driver (no data in it)
BROADCAST_OUT_OF_MEMORY = "Not enough memory to build and broadcast the table"


class SparkStageError(RuntimeError):
    """A Spark job of the identity stage failed in the JVM (see :func:`jvm_failure`)."""


def jvm_failure(exc: BaseException) -> BaseException:
    """What to raise for `exc`, a failure inside a Spark run, while its JVM still lives.

    py4j's Py4JJavaError renders its text by asking the JVM; the identity stage ends the JVM when it fails (its
    scratch directory holds personal data), after which printing the error fails too ("exception str()
    failed", then a py4j connection traceback instead of the reason). So the reason is taken now: the JVM's
    exception classes down the cause chain, and for running out of memory the message too and what to raise.
    Java messages can quote a row's values, so no other message is kept (Spark's own log has them). Any other
    exception is returned as it is."""
    try:
        from py4j.protocol import Py4JJavaError
    except ImportError:  # pragma: no cover - pyspark brings py4j
        return exc
    if not isinstance(exc, Py4JJavaError):
        return exc
    names: list[str] = []
    oom: str | None = None
    try:
        throwable = exc.java_exception
        while throwable is not None and len(names) < 8:
            name = str(throwable.getClass().getName())
            message = str(throwable.getMessage() or "")
            error_class = re.match(r"\[([A-Z_]+)\]", message)  # Spark's error class: a name, never data
            names.append(f"{name} [{error_class.group(1)}]" if error_class else name)
            if oom is None and name.endswith("OutOfMemoryError"):
                oom = f"{name}: {message}"
            elif oom is None and message.startswith(BROADCAST_OUT_OF_MEMORY):
                oom = f"{name}: {BROADCAST_OUT_OF_MEMORY}"
            throwable = throwable.getCause()
    except Exception:  # noqa: BLE001 - the JVM is already gone: say what is known
        names.append("(the JVM ended before its error could be read)")
    frame = _last_frame(exc)
    where = f" in {frame}" if frame else ""
    if oom:
        return SparkStageError(
            f"identity on Spark ran out of memory{where} ({oom}): give the JVM more (spark.driver_memory / "
            f"CKP_SPARK_DRIVER_MEMORY in local mode, now {_state.get('config', SparkConfig()).driver_memory}; "
            "spark.executor_memory / CKP_SPARK_EXECUTOR_MEMORY on a cluster)")
    return SparkStageError(f"identity on Spark failed{where}: {' <- '.join(names) or type(exc).__name__} "
                           "(the Java messages are left out: they can quote rows)")


def _last_frame(exc: BaseException) -> str | None:
    """`module.function` of the last frame of the package in `exc`'s traceback (no values)."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "crm_knowledge" in f.filename]
    if not frames:
        return None
    f = frames[-1]
    module = Path(f.filename).stem
    return f"{module}.{f.name}"


@contextmanager
def ending_session() -> Iterator[None]:
    """Around a Spark run of the identity stage: a JVM failure is read while the JVM still lives
    (:func:`jvm_failure`), then the session ends (its JVM and scratch directory of personal data), whatever
    happened."""
    try:
        yield
    except Exception as exc:
        failure = jvm_failure(exc)
        if failure is exc:
            raise
        raise failure from None
    finally:
        stop_session()


def stop_session() -> None:
    """Stop the session (if any) and remove its scratch directory."""
    with _lock:
        _stop_locked()


def _stop_locked() -> None:
    session = _state.pop("session", None)
    _state.pop("config", None)
    try:
        if session is not None:
            try:
                session.stop()
            except Exception as e:  # noqa: BLE001 - stopping a dead JVM must not hide the real error
                log.warning("identity: stopping Spark failed: %s", e)
        _end_gateway()
    finally:
        scratch = _state.pop("scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _end_gateway(timeout: float = 20.0) -> None:
    """End the py4j gateway and the JVM this process launched for it.

    SparkSession.stop() stops the SparkContext but keeps the gateway and its JVM (about 1.5 GB) alive for the
    next session, for as long as the process lives: in an Airflow worker or a test worker that is hours. The
    JVM exits when its standard input closes; if it does not within `timeout`, its process tree is killed."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    except Exception as e:  # noqa: BLE001 - the JVM may be gone already
        log.debug("identity: py4j gateway shutdown: %s", e)
    SparkContext._gateway = None
    SparkContext._jvm = None
    if proc is None:
        return
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    try:
        proc.wait(timeout=5)
    except Exception as e:  # noqa: BLE001 - reaped above or unkillable: nothing more to do here
        log.warning("identity: the Spark JVM (pid %d) did not exit: %s", proc.pid, e)
    if alive:
        log.warning("identity: killed %d Spark process(es) that did not exit within %.0fs", len(alive), timeout)
    else:
        log.info("identity: Spark JVM ended")


atexit.register(stop_session)
