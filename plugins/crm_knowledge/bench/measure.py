"""Stage timing and memory sampling for the benchmark.

Peak memory is sampled, not asked of the kernel after the fact, because a stage's cost is spread over
this process, the subprocesses it starts (dbt, the webhook receiver) and the warehouse server:

* ``pipeline`` memory: resident set of this process and all its children (RSS); also apart, as ``driver`` (this
  process alone) and ``children`` (its subprocesses: dbt, or the Spark JVM with its Python workers), so a stage
  that hands its work to another engine shows what each side held;
* ``warehouse`` memory: proportional set size (PSS) of the embedded PostgreSQL's processes, so shared
  buffers are counted once rather than once per backend;
* ``total``: the two added at the same instant; the 4 GB memory budget (README "Benchmarks") is about this figure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass
class StageRecord:
    """One measured stage of one phase (``full`` or ``incremental``)."""

    stage: str
    phase: str
    seconds: float = 0.0
    rows: int | None = None
    peak_pipeline_mb: float = 0.0
    peak_driver_mb: float = 0.0
    peak_children_mb: float = 0.0
    peak_warehouse_mb: float = 0.0
    peak_total_mb: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or self.seconds <= 0:
            return None
        return self.rows / self.seconds

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_s"] = round(self.rows_per_s, 1) if self.rows_per_s is not None else None
        d["seconds"] = round(self.seconds, 3)
        for k in ("peak_pipeline_mb", "peak_driver_mb", "peak_children_mb", "peak_warehouse_mb", "peak_total_mb"):
            d[k] = round(d[k], 1)
        return d


def _memory(proc: psutil.Process, *, pss: bool = False) -> int:
    """One process's memory in bytes: PSS when asked for (a shared-memory server's true share), falling back
    to RSS when PSS is not readable (the embedded server runs as another user); 0 once the process is gone."""
    try:
        if pss:
            try:
                return proc.memory_full_info().pss
            except psutil.AccessDenied:
                pass
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(this process's RSS, the sum of its descendants' RSS)."""
    tree = _tree(proc)
    own = _memory(tree[0]) if tree else 0
    return own, sum(_memory(p) for p in tree[1:])


def _postmaster_pid(data_dir: Path | None) -> int | None:
    if data_dir is None:
        return None
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _warehouse_pss(data_dir: Path | None) -> int:
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return 0
    try:
        master = psutil.Process(pid)
    except psutil.Error:
        return 0
    return sum(_memory(p, pss=True) for p in _tree(master))


class MemorySampler:
    """Background thread: samples memory every `interval` seconds; peaks can be reset per stage."""

    def __init__(self, warehouse_data_dir: Path | None, interval: float = 0.25, warehouse_every: int = 4) -> None:
        self._me = psutil.Process(os.getpid())
        self._data_dir = warehouse_data_dir
        self._interval = interval
        self._warehouse_every = warehouse_every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)
        self._warehouse = 0
        self.reset()
        self.overall_total = 0

    def reset(self) -> None:
        with self._lock:
            self.peak_pipeline = self.peak_warehouse = self.peak_total = 0
            self.peak_driver = self.peak_children = 0

    def _sample(self, tick: int) -> None:
        own, children = _tree_rss(self._me)
        pipeline = own + children
        if tick % self._warehouse_every == 0:
            self._warehouse = _warehouse_pss(self._data_dir)
        with self._lock:
            self.peak_pipeline = max(self.peak_pipeline, pipeline)
            self.peak_driver = max(self.peak_driver, own)
            self.peak_children = max(self.peak_children, children)
            self.peak_warehouse = max(self.peak_warehouse, self._warehouse)
            total = pipeline + self._warehouse
            self.peak_total = max(self.peak_total, total)
            self.overall_total = max(self.overall_total, total)

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(self._interval):
            self._sample(tick)
            tick += 1

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class StageTimer:
    """Collects StageRecords; ``with timer.stage("ingest:forms", "full") as rec: ...; rec.rows = n``."""

    def __init__(self, sampler: MemorySampler, echo: bool = True) -> None:
        self.sampler = sampler
        self.records: list[StageRecord] = []
        self.echo = echo

    @contextmanager
    def stage(self, name: str, phase: str) -> Iterator[StageRecord]:
        rec = StageRecord(stage=name, phase=phase)
        self.sampler.reset()
        self.sampler._sample(0)
        started = time.perf_counter()
        if self.echo:
            print(f"  [{phase}] {name} ...", flush=True)
        try:
            yield rec
        finally:
            rec.seconds = time.perf_counter() - started
            self.sampler._sample(0)
            rec.peak_pipeline_mb = self.sampler.peak_pipeline / MB
            rec.peak_driver_mb = self.sampler.peak_driver / MB
            rec.peak_children_mb = self.sampler.peak_children / MB
            rec.peak_warehouse_mb = self.sampler.peak_warehouse / MB
            rec.peak_total_mb = self.sampler.peak_total / MB
            self.records.append(rec)
            if self.echo:
                rate = f", {rec.rows_per_s:,.0f} rows/s" if rec.rows_per_s else ""
                rows = f", {rec.rows:,} rows" if rec.rows is not None else ""
                print(f"  [{phase}] {name}: {rec.seconds:.1f}s{rows}{rate}, peak {rec.peak_total_mb:,.0f} MB",
                      flush=True)
