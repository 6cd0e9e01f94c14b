"""The identity driver's memory: candidates read whole into pandas (the in-process backend) against streamed to
Parquet chunk by chunk (the Spark backend's staging, identity/staging.py), at a size the test suite cannot afford.

Each variant runs in a fresh process (spawned, so nothing is shared or already allocated), which reports its
peak resident set (``ru_maxrss``) above what it held after its imports; the candidates are synthetic rows of the
candidates table's shape (Persian and Latin names, e-mails, phones, a declared identifier on a quarter of them),
made by the server in a scratch database of the running warehouse, dropped afterwards.

    python -m crm_knowledge.bench.staging_memory [--rows 1000000] [--chunk-rows 200000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from crm_knowledge.bench.baselines import create_baseline_db, drop_baseline_db
from crm_knowledge.settings import get_settings
from crm_knowledge.warehouse.db import connect

FILL = """
create schema intermediate;
create table intermediate.int_identity_candidates as
select
    case when i % 3 = 0 then 'orders' when i % 3 = 1 then 'forms' else 'sibling:insurance' end as source_system,
    lpad(i::text, 9, '0') as source_record_id,
    'علی' || (i % 5000) as first_name_norm, 'karimi' || (i % 20000) as last_name_norm,
    'علی karimi ' || (i % 100000) as full_name_norm, 'person' || i || '@mail.example' as email_norm,
    '+98912' || lpad((i % 10000000)::text, 7, '0') as phone_e164,
    case when i % 2 = 0 then lpad((i % 1000000000)::text, 10, '0') end as national_id_valid,
    date '1950-01-01' + (i % 20000) as birth_date, lpad((i % 99999)::text, 10, '1') as postcode,
    'tehran' as city_norm, 'street ' || (i % 3000) as street_norm, (i % 200)::text as house_number,
    null::text as address_line2_norm, case when i % 7 = 0 then 'R' || i end as customer_ref,
    timestamptz '2026-01-01 00:00+00' + i * interval '1 second' as seen_at,
    timestamptz '2026-01-02 00:00+00' as staged_at
from generate_series(1, {rows}) as i;
create table intermediate.int_identity_identifiers as
select source_system, source_record_id, 'passport'::text as identifier_kind,
       'P' || right(source_record_id, 8) as identifier_value
from intermediate.int_identity_candidates where right(source_record_id, 1) in ('0', '4');
"""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _child(variant: str, url: str, chunk_rows: int) -> dict[str, Any]:
    from crm_knowledge.identity import store
    from crm_knowledge.identity.config import load_config
    from crm_knowledge.identity.staging import stage_candidates

    config = load_config()
    base = _rss_mb()
    started = time.perf_counter()
    with connect(url) as conn, tempfile.TemporaryDirectory() as tmp:
        if variant == "pandas":
            rows = len(store.read_candidates(conn))
            files = None
        else:
            staged = stage_candidates(conn, Path(tmp) / "staged", config, chunk_rows=chunk_rows)
            rows, files = staged.rows, len(staged.files)
    return {"variant": variant, "rows": rows, "files": files, "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(_rss_mb(), 1), "peak_above_imports_mb": round(_rss_mb() - base, 1)}


def measure(rows: int, chunk_rows: int) -> list[dict[str, Any]]:
    settings = get_settings()
    url = create_baseline_db(settings)
    try:
        with connect(url) as conn:
            conn.execute(FILL.format(rows=int(rows)))
        ctx = multiprocessing.get_context("spawn")
        out = []
        for variant in ("staged", "pandas"):
            with ctx.Pool(1) as pool:
                out.append(pool.apply(_child, (variant, url, chunk_rows)))
        return out
    finally:
        drop_baseline_db(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    for entry in measure(args.rows, args.chunk_rows):
        print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
