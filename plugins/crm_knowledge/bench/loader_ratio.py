"""The loader against a plain COPY of the same file, interleaved in one process (the aim: at least 0.7).

What the ratio compares, per landing file (CSV and JSON Lines; XLSX is timed against no COPY):

* **loader**: `ingest.files.ingest_source` on a scratch landing zone holding only that file, into the raw layer
  of a scratch database (`bench_baseline`, the warehouse's DDL): what `ckp ingest` / the ingest task does for
  the file and a user waits for until raw is committed: the source lock, the stale-batch check, checksum and
  ledger, header check, COPY, landing insert and rejects, drift and
  conventions, the commit, the move to the archive. The raw quality gate (planner statistics of the new
  batches, field issues, GX checks) is a separate stage that runs afterwards; with `--raw-gate` it is timed
  once per file and reported apart (`raw_gate_s`).
* **plain COPY**: `baselines.copy_file`: the same bytes with the server's `COPY` into a table of text columns
  (CSV as CSV, a JSON Lines line as one text value), nothing else. For JSON Lines a COPY into one `jsonb`
  column is timed too (`copy_jsonb_s`): that is the JSON parse alone, which any loader that looks inside the
  objects pays.

The machine may be shared: the loader and the COPY run alternately on the same file (the order swapped every
round), `rounds` times each, and the medians are compared; the load average before and after is reported.
Each loader round starts from an empty raw table and ledger, as the COPY starts from a new table. The files
are copied to a scratch landing zone, so the real landing zone is not touched.

    python -m crm_knowledge.bench.loader_ratio [--rounds 5] [--landing DIR] [--raw-gate] [source ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from crm_knowledge.bench.baselines import copy_file, create_baseline_db, drop_baseline_db
from crm_knowledge.ingest.files import PG_ENCODINGS, ingest_source
from crm_knowledge.ingest.registry import SourceConfig, load_registry
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.bootstrap import apply_ddl
from crm_knowledge.warehouse.db import connect

#: ingest_source's own time beyond its files' phases (connection, lock, stale-batch check, listing)
SOURCE_OVERHEAD = "source"


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _time_loader(settings: Settings, url: str, cfg: SourceConfig, path: Path,
                 scratch: Path) -> tuple[float, int, str, dict[str, float], Settings]:
    local = dataclasses.replace(settings, home=scratch / "home", landing_dir=scratch / "landing")
    landed = local.landing_dir / (cfg.path or "")
    copy = landed.parent / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, copy)
    with connect(url, autocommit=True) as conn:
        conn.execute("truncate audit.load_batches, audit.batch_conventions, audit.schema_drift, raw.load_rejects")
        conn.execute(f"truncate {cfg.target_table}")
        conn.execute("checkpoint")  # the previous round's dirty pages are not this round's cost
    started = time.perf_counter()
    results = ingest_source(cfg, url, local)
    took = time.perf_counter() - started
    if len(results) != 1:
        raise RuntimeError(f"{cfg.name}: expected one file in the scratch landing zone, found {len(results)}")
    result = results[0]
    phases = dict(result.seconds)
    phases[SOURCE_OVERHEAD] = took - sum(phases.values())
    return took, result.rows_loaded, result.status, phases, local


def _time_copy(url: str, cfg: SourceConfig, path: Path, table: str, line_type: str = "text") -> tuple[float, int]:
    with connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")
        started = time.perf_counter()
        with conn.transaction():
            rows = copy_file(conn, cfg, path, table, PG_ENCODINGS[cfg.encoding.lower()], line_type=line_type)
        took = time.perf_counter() - started
        conn.execute(f"drop table {table}")
    return took, rows


def _time_raw_gate(url: str, local: Settings) -> float:
    from crm_knowledge.quality.pipeline import check_new_raw_batches

    started = time.perf_counter()
    check_new_raw_batches("loader-ratio", settings=local, url=url)
    return time.perf_counter() - started


def _median(values: list[float]) -> float:
    return statistics.median(values)


def measure_file(settings: Settings, url: str, cfg: SourceConfig, path: Path, rounds: int, scratch: Path,
                 raw_gate: bool = False) -> dict[str, Any]:
    """Loader and plain COPY of one file, alternately, `rounds` times each; medians and the ratio."""
    copyable = cfg.format in ("csv", "jsonl") and cfg.encoding.lower() in PG_ENCODINGS
    loader: list[float] = []
    plain: list[float] = []
    plain_jsonb: list[float] = []
    phases: list[dict[str, float]] = []
    rows = plain_rows = 0
    local = settings
    load_before = _load_average()
    for n in range(rounds):
        for step in (("loader", "copy") if n % 2 == 0 else ("copy", "loader")):
            if step == "loader":
                took, rows, status, laps, local = _time_loader(settings, url, cfg, path, scratch / f"{n}")
                if status != "loaded":  # e.g. the demo's planted corrupt file: nothing to compare
                    return {"source": cfg.name, "file": path.name, "status": status}
                loader.append(took)
                phases.append(laps)
            elif copyable:
                took, plain_rows = _time_copy(url, cfg, path, f"plain_{n}")
                plain.append(took)
                if cfg.format == "jsonl":
                    plain_jsonb.append(_time_copy(url, cfg, path, f"plain_jsonb_{n}", "jsonb")[0])
    entry: dict[str, Any] = {
        "source": cfg.name, "file": path.name, "format": cfg.format, "rows": rows, "rounds": rounds,
        "loader_s": round(_median(loader), 3), "loader_rows_per_s": round(rows / _median(loader)),
        "loader_all_s": [round(t, 3) for t in loader],
        # phases to the microsecond: a small file's COPY takes well under a millisecond
        "phases_s": {k: round(_median([p.get(k, 0.0) for p in phases]), 6)
                     for k in dict.fromkeys(k for p in phases for k in p)},
    }
    if plain:
        entry.update({"copy_s": round(_median(plain), 3), "copy_rows": plain_rows,
                      "copy_all_s": [round(t, 3) for t in plain],
                      "ratio": round(_median(plain) / _median(loader), 2)})
    if plain_jsonb:
        entry.update({"copy_jsonb_s": round(_median(plain_jsonb), 3),
                      "ratio_to_jsonb_copy": round(_median(plain_jsonb) / _median(loader), 2)})
    if raw_gate:
        entry["raw_gate_s"] = round(_time_raw_gate(url, local), 3)  # the batch of the last loader round
    entry["load_average"] = {"before": load_before, "after": _load_average()}
    return entry


def measure(settings: Settings, sources: list[SourceConfig], rounds: int = 5, landing: Path | None = None,
            raw_gate: bool = False) -> list[dict[str, Any]]:
    """Every landing file of `sources` (from `landing`, default the settings' landing zone), one entry each."""
    landing = landing or settings.landing_dir
    url = create_baseline_db(settings)
    out = []
    try:
        apply_ddl(url)
        with tempfile.TemporaryDirectory() as tmp:
            for i, cfg in enumerate(sources):
                for j, path in enumerate(sorted(p for p in landing.glob(cfg.path or "") if p.is_file())):
                    out.append(measure_file(settings, url, cfg, path, rounds, Path(tmp) / f"{i}-{j}", raw_gate))
    finally:
        drop_baseline_db(settings)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--landing", type=Path, help="the landing zone to read (default: the settings')")
    parser.add_argument("--raw-gate", action="store_true", help="time the raw quality gate too (once per file)")
    parser.add_argument("sources", nargs="*", help="source names (default: every file source)")
    args = parser.parse_args(argv)
    settings = get_settings()
    sources = [s for s in load_registry() if s.kind != "orders_db" and (not args.sources or s.name in args.sources)]
    for entry in measure(settings, sources, args.rounds, args.landing, raw_gate=args.raw_gate):
        print(json.dumps(entry, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
