"""`make bench-api`: load benchmark of the read service at a given number of customers.

What it does, in its own home and embedded warehouse (``var/bench-api/<size>``, port ``CKP_BENCH_PORT``, so it
never touches `make run`'s data):

1. **Serving tables at SIZE customers, synthetic.** A full pipeline run at a million customers takes hours on a
   small machine, so the tables the service reads are filled with SQL ``generate_series`` instead, with the
   indexes the pipeline gives them (dbt_project.yml and pii_customer_lookup_keys.sql): ``marts.customer_360``
   (one row per customer), ``pii.pii_customer_profiles``, ``pii.pii_customer_lookup_keys`` (phone, e-mail and
   name + birth date per customer), ``marts.fct_orders`` (3 per customer), ``marts.fct_interactions`` (1),
   ``marts.customer_knowledge`` (3), ``marts.customer_identity_map`` (2). Kept between runs of the same size.
2. **The service as deployed**: `ckp serve` in its own process(es) (``--workers``, default 2 for 2 cores),
   with an agent key made by the key code.
3. **Load phases** (``--phases``, each ``--duration`` seconds after ``--warmup``), all from ONE client process
   (asyncio on uvloop, one keep-alive HTTP/1.1 connection per client, a hand-written minimal HTTP client: the
   load generator shares the machine's cores with the service it measures, so it must cost little). Each
   client loops: look a random customer up by phone in a random spelling (``09…``, ``+98 9…``, Persian digits,
   ``0098…``), then read their profile, then think:

   * ``closed``: ``--clients`` (50) clients, no think time: each sends its next request the moment the last
     answer arrives. The plain reading of "50 concurrent clients", and a saturation test: by Little's law the
     mean latency is then clients / throughput, so p99 <= 50 ms needs well over 1,000 requests a second.
   * ``agents``: ``--clients`` clients that think ``--think-ms`` (default 1,000 ms, random 0.5-1.5x) after each
     lookup + profile pair: 50 agents each finding a customer and opening the card every second, already far
     above what a person at a phone does.
   * ``single``: one client, no think time: the per-request cost without queueing.

   Latency is measured by the client, from sending the request to having the whole response. The machine's
   load average is sampled every second of each phase (this benchmark shares the machine with everything
   else running on it; a busy machine makes every number an upper bound).

It writes ``bench/results/api-<date>-<size>.json`` and ``.md`` with p50 / p95 / p99 / max per endpoint and
phase, the throughput, the errors (any answer other than 200, a wrong customer, or a failed request), the
clients and the load average, and exits non-zero when p99 of lookup or profile in the ``--judge`` phase
(default ``agents``) is above ``--p99-target-ms`` (50) or any request of any phase failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path

from crm_knowledge.settings import PROJECT_ROOT, get_settings

log = logging.getLogger(__name__)

FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")

#: The serving tables at :size customers; every statement is one pass of generate_series. Customer i has the
#: phone +98912<i, 7 digits>, e-mail c<i>@bench.example and id C<i, 9 digits>.
FILL_SQL = """
drop table if exists marts.customer_360, pii.pii_customer_profiles, pii.pii_customer_lookup_keys, marts.fct_orders,
    marts.fct_interactions, marts.customer_knowledge, marts.customer_identity_map;

create table marts.customer_360 as
select
    'C' || lpad(i::text, 9, '0') as customer_id,
    (array['f', 'm'])[1 + i % 2] as gender,
    (array['18-24', '25-34', '35-44', '45-54', '55-64', '65+'])[1 + i % 6] as age_band,
    'تهران' as city, 'Tehran' as city_name_en, 'تهران' as province, 'Tehran' as province_name_en,
    null::text as business_type, array['orders', 'forms'] as source_systems, array[]::text[] as sibling_units,
    now() - (i % 2000) * interval '1 day' as first_seen_at, now() - (i % 90) * interval '1 day' as last_seen_at,
    i % 3 <> 0 as has_marketing_consent, i % 20 = 0 as has_profiling_opt_out, now() as consent_updated_at,
    false as is_forgotten, 3 as order_count, (i % 1000) * 100000.0 as total_revenue,
    (i % 1000) * 33333.0 as avg_order_value, now() - (i % 700) * interval '1 day' as first_order_at,
    now() - (i % 300) * interval '1 day' as last_order_at, 'web' as preferred_channel,
    array['books', 'toys'] as top_product_categories, 1 as interaction_count,
    now() - (i % 200) * interval '1 day' as last_interaction_at, current_date as as_of_date,
    i % 2000 as tenure_days, i % 300 as recency_days, 3 as frequency, (i % 1000) * 100000.0 as monetary,
    0 as cancelled_order_count, 0 as returned_order_count,
    (array['new', 'developing', 'committed', 'eroding', 'lost'])[1 + i % 5] as relationship_stage,
    i % 90 as days_since_last_activity, now() - (i % 90) * interval '1 day' as last_activity_at,
    1 as form_submission_count, (i % 11 = 0)::int as complaint_count, (i % 11 = 0)::int as open_complaints,
    3 as knowledge_item_count, '[]'::jsonb as latest_knowledge_items, null::timestamptz as last_need_at,
    null::timestamptz as last_contacted_for_at, current_date as scores_as_of_date,
    (array['champions', 'loyal', 'at_risk', 'hibernating', 'new'])[1 + i % 5] as rfm_segment,
    1 + i % 5 as r_score, 1 + (i / 5) % 5 as f_score, 1 + (i / 25) % 5 as m_score, i % 4 as behaviour_cluster,
    'average' as behaviour_profile, ((i::bigint * 7919) % 1000) / 1000.0 as churn_probability, 0.9 as p_alive,
    1.5 as expected_purchases, (i % 1000) * 50000.0 as predicted_clv,
    (array['platinum', 'gold', 'silver', 'bronze'])[1 + i % 4] as value_tier
from generate_series(1, %(size)s) as i;
create unique index on marts.customer_360 (customer_id);

create table pii.pii_customer_profiles as
select
    'C' || lpad(i::text, 9, '0') as customer_id, 'نام' || i as first_name, 'خانواده' || i as last_name,
    'نام' || i || ' خانواده' || i as full_name, 'c' || i || '@bench.example' as email,
    '+98912' || lpad(i::text, 7, '0') as phone, null::text as national_id, date '1980-01-01' + i % 9000 as birth_date,
    'تهران' as city
from generate_series(1, %(size)s) as i;
create unique index on pii.pii_customer_profiles (customer_id);

create table pii.pii_customer_lookup_keys as
select encode(sha256(convert_to(kind || ':' || value, 'UTF8')), 'hex') as key_hash, kind as identifier_kind,
       customer_id, 1 as source_record_count, now() as last_seen_at
from (
    select customer_id, 'phone' as kind, phone as value from pii.pii_customer_profiles
    union all
    select customer_id, 'email', email from pii.pii_customer_profiles
    union all
    select customer_id, 'name_birth', full_name || '|' || to_char(birth_date, 'YYYY-MM-DD')
      from pii.pii_customer_profiles
) as identifiers;
create index on pii.pii_customer_lookup_keys (key_hash);
create index on pii.pii_customer_lookup_keys (customer_id);

create table marts.fct_orders as
select 'orders:' || (i * 3 + n) as order_id, 'C' || lpad(i::text, 9, '0') as customer_id,
       now() - ((i + n * 97) % 700) * interval '1 day' as ordered_at, 'shipped' as status, 'web' as channel,
       (1 + (i + n) % 50) * 1000000.0 as total_amount, 'IRR' as currency, 1 + n as item_quantity
from generate_series(1, %(size)s) as i, generate_series(0, 2) as n;
create index on marts.fct_orders (customer_id);

create table marts.fct_interactions as
select 'I' || i as interaction_id, 'C' || lpad(i::text, 9, '0') as customer_id, 'phone' as channel,
       'delivery' as topic, 'resolved' as outcome, now() - (i % 200) * interval '1 day' as occurred_at,
       false as is_complaint, true as is_resolved
from generate_series(1, %(size)s) as i;
create index on marts.fct_interactions (customer_id);

create table marts.customer_knowledge as
select md5(i || ':' || n) as knowledge_item_id, 'C' || lpad(i::text, 9, '0') as customer_id,
       (array['about', 'from', 'for'])[1 + n] as flow,
       (array['product_interest', 'complaint', 'offer_made'])[1 + n] as kind,
       'bench knowledge item ' || n as content, 'contacts' as source, 'K' || i || '-' || n as source_record_id,
       now() - ((i + n) % 300) * interval '1 day' as observed_at, 0.8::numeric(3, 2) as confidence
from generate_series(1, %(size)s) as i, generate_series(0, 2) as n;
create index on marts.customer_knowledge (customer_id, observed_at);

create table marts.customer_identity_map as
select 'C' || lpad(i::text, 9, '0') as customer_id, s.system as source_system, s.system || '-' || i as source_record_id,
       'national_id' as match_rule, 1.0 as match_score, now() as resolved_at
from generate_series(1, %(size)s) as i, (values ('orders'), ('forms')) as s (system);
create index on marts.customer_identity_map (customer_id);
analyze;
"""


def prepare_environment(size: int) -> Path:
    """The benchmark's own home and warehouse port (before anything reads settings)."""
    from crm_knowledge.bench.run import bench_port

    home = PROJECT_ROOT / "var" / "bench-api" / str(size)
    os.environ["CKP_HOME"] = str(home)
    os.environ["CKP_WAREHOUSE_PORT"] = str(bench_port(home))
    os.environ.pop("WAREHOUSE_URL", None)
    os.environ["CKP_DEMO_MODE"] = "1"
    return home


def fill_tables(url: str, size: int) -> float:
    """The serving tables at `size` customers (kept when already that size); returns the seconds spent."""
    from psycopg import sql

    from crm_knowledge.warehouse.db import connect, table_exists

    started = time.monotonic()
    with connect(url) as conn:
        conn.execute("create schema if not exists marts; create schema if not exists pii")
        if table_exists(conn, "marts.customer_360") and table_exists(conn, "marts.customer_identity_map"):
            have = conn.execute("select count(*) from marts.customer_360").fetchone()[0]
            if have == size:
                log.info("serving tables already hold %s customers", size)
                return 0.0
        log.info("filling the serving tables with %s synthetic customers", size)
        conn.execute(sql.SQL(FILL_SQL.replace("%(size)s", "{size}")).format(size=sql.Literal(size)))
    return time.monotonic() - started


def phone_spelling(i: int, rng: random.Random) -> str:
    local = f"912{i:07d}"
    return rng.choice([f"0{local}", f"+98 {local[:3]} {local[3:6]} {local[6:]}", f"0{local}".translate(FA_DIGITS),
                       f"0098{local}"])


class _Connection:
    """A minimal HTTP/1.1 keep-alive client (GET, Content-Length bodies): a load generator sharing the CPU with
    the service it measures must cost as little as possible (httpx costs several times more per request)."""

    def __init__(self, host: str, port: int, key: str):
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, timeout: float = 10) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = (f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {self.key}\r\n"
                   "Connection: keep-alive\r\n\r\n")
        self.writer.write(request.encode("ascii"))
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length")
            body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except BaseException:
            self.close()
            raise
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _client(host: str, port: int, key: str, size: int, until: float, warm_until: float, think: float,
                  seed: int, results: dict[str, list[float]], errors: dict[str, int]) -> None:
    from urllib.parse import quote

    rng = random.Random(seed)
    conn = _Connection(host, port, key)
    try:
        while time.monotonic() < until:
            i = rng.randint(1, size)
            for endpoint, target in (("lookup", "/customers/lookup?phone=" + quote(phone_spelling(i, rng))),
                                     ("profile", f"/customers/C{i:09d}")):
                started = time.monotonic()
                try:
                    status, body = await conn.get(target)
                    ok = status == 200 and (endpoint != "lookup" or
                                            json.loads(body)["candidates"][0]["customer_id"] == f"C{i:09d}")
                except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration, KeyError, IndexError,
                        ValueError):
                    ok = False
                elapsed = (time.monotonic() - started) * 1000
                errors["sent"] += 1
                if started >= warm_until:
                    results[endpoint].append(elapsed)
                    if not ok:
                        errors[endpoint] += 1
            if think:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
    finally:
        conn.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def _sample_load(samples: list[float], after: float, every: float = 1.0) -> None:
    await asyncio.sleep(after)
    while True:
        samples.append(os.getloadavg()[0])
        await asyncio.sleep(every)


async def run_load(host: str, port: int, key: str, size: int, clients: int, duration: float, warmup: float,
                   think_ms: float, seed: int = 0) -> dict:
    """One load phase: `clients` concurrent clients for `warmup` + `duration` seconds; the measured part's
    latencies per endpoint, and the load average sampled during it."""
    results: dict[str, list[float]] = {"lookup": [], "profile": []}
    errors = {"lookup": 0, "profile": 0, "sent": 0}  # sent: every request, warm-up included
    load: list[float] = []
    now = time.monotonic()
    sampler = asyncio.create_task(_sample_load(load, after=warmup))
    try:
        await asyncio.gather(*(_client(host, port, key, size, now + warmup + duration, now + warmup,
                                       think_ms / 1000, seed + n, results, errors) for n in range(clients)))
    finally:
        sampler.cancel()
    out: dict = {"clients": clients, "think_ms": think_ms, "duration_s": duration, "warmup_s": warmup,
                 "requests_sent": errors["sent"],
                 "load_average": {"min": round(min(load, default=0), 2), "mean": round(statistics.fmean(load), 2)
                                  if load else None, "max": round(max(load, default=0), 2)}}
    for endpoint, values in results.items():
        out[endpoint] = {"requests": len(values), "errors": errors[endpoint],
                         "throughput_per_s": round(len(values) / duration, 1),
                         "p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2),
                         "p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values, default=0), 2),
                         "mean_ms": round(statistics.fmean(values), 2) if values else None}
    return out


#: The load phases (see the module docstring): name -> (clients: "all" of --clients or 1, think time or none).
PHASES = {"closed": ("closed loop, no think time", True, False),
          "agents": ("agents, think time after each lookup + profile", True, True),
          "single": ("one client, no think time", False, False)}


def markdown(report: dict) -> str:
    p = report["parameters"]
    lines = [f"### Read service load benchmark, {report['date']}, {p['size']:,} customers",
             "",
             f"{p['workers']} uvicorn worker(s) of `ckp serve`; one client process (asyncio, keep-alive HTTP/1.1); "
             f"{p['duration']:.0f} s measured per phase after {p['warmup']:.0f} s warm-up; serving tables synthetic "
             f"(SQL generate_series, {report['fill_seconds']:.0f} s to fill; 0 = reused); {report['machine']}. "
             "Each client: lookup by phone (random spelling), then that customer's profile.",
             "",
             "| phase | clients | think ms | load avg (min-max) | endpoint | requests | errors | req/s | p50 ms | "
             "p95 ms | p99 ms | max ms |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for phase, res in report["phases"].items():
        la = res["load_average"]
        for endpoint in ("lookup", "profile"):
            r = res[endpoint]
            lines.append(f"| {phase} | {res['clients']} | {res['think_ms']:.0f} | {la['min']}-{la['max']} | "
                         f"{endpoint} | {r['requests']} | {r['errors']} | {r['throughput_per_s']} | {r['p50_ms']} | "
                         f"{r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    lines += ["", "CPU per request (ms, all requests of the phase incl. warm-up; service = every uvicorn worker, "
                  "warehouse = every PostgreSQL process, client = this load generator):", ""]
    for phase, res in report["phases"].items():
        cpu = res.get("cpu_ms_per_request", {})
        lines.append(f"- `{phase}`: " + ", ".join(f"{part} {ms}" for part, ms in cpu.items()))
    lines += ["", f"Target p99 <= {p['p99_target_ms']:.0f} ms for lookup and profile, judged on the "
                  f"`{p['judge']}` phase: **{'met' if report['target_met'] else 'NOT met'}**."]
    for phase, met in report["target_met_by_phase"].items():
        lines.append(f"- `{phase}` ({PHASES[phase][0]}): p99 target {'met' if met else 'not met'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_knowledge.serve.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before each phase is measured")
    parser.add_argument("--think-ms", dest="think_ms", type=float, default=1000.0,
                        help="mean think time of the agents phase after each lookup + profile pair")
    parser.add_argument("--phases", default="closed,agents,single",
                        help=f"comma-separated, of {', '.join(PHASES)} (see the module docstring)")
    parser.add_argument("--judge", default="agents", choices=sorted(PHASES),
                        help="the phase whose p99 decides the exit code (must be among --phases)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the served process")
    parser.add_argument("--p99-target-ms", dest="p99_target_ms", type=float, default=50.0)
    parser.add_argument("--results-dir", default=str(PROJECT_ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or set(phases) - set(PHASES) or args.judge not in phases:
        parser.error(f"--phases: a comma-separated list of {', '.join(PHASES)} that includes --judge {args.judge}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    prepare_environment(args.size)
    from crm_knowledge.privacy.file_modes import restrict_umask
    from crm_knowledge.serve.keys import create_key
    from crm_knowledge.warehouse import server
    from crm_knowledge.warehouse.bootstrap import apply_ddl
    from crm_knowledge.warehouse.db import connect

    restrict_umask()
    settings = get_settings()
    load_before = os.getloadavg()[0]
    url = server.start(settings)
    try:
        apply_ddl(url)
        fill_seconds = fill_tables(url, args.size)
        with connect(url) as conn:
            key, _ = create_key(conn, "bench-api", "agent", rate_limit_per_minute=10_000_000)
        results = _served_load(settings, key, args, phases)
        with connect(url) as conn:  # the benchmark's key is not left behind
            conn.execute("update audit.api_keys set revoked_at = now() where name = 'bench-api' "
                         "and revoked_at is null")
    finally:
        server.stop(settings)  # the data stays in the bench home for the next run of this size
    errors = sum(r[e]["errors"] for r in results.values() for e in ("lookup", "profile"))
    met_by_phase = {phase: all(r[e]["p99_ms"] <= args.p99_target_ms for e in ("lookup", "profile"))
                    for phase, r in results.items()}
    met = errors == 0 and met_by_phase[args.judge]
    report = {"date": dt.date.today().isoformat(), "parameters": {**vars(args), "phases": phases},
              "fill_seconds": fill_seconds, "phases": results, "target_met": met,
              "target_met_by_phase": met_by_phase,
              "machine": f"{os.cpu_count()} CPU(s), load average {load_before:.1f} before the run, "
                         f"{os.getloadavg()[0]:.1f} at the end"}
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"api-{report['date']}-{args.size}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    print(f"written: {stem}.json, {stem}.md")
    return 0 if met else 1


def _served_load(settings, key: str, args: argparse.Namespace, phases: list[str]) -> dict:
    """`ckp serve` in its own processes, each phase's clients against it, the service stopped afterwards."""
    import subprocess

    port = settings.serve_port
    env = {**os.environ, "CKP_SERVE_POOL_SIZE": str(max(4, args.clients // (2 * args.workers)))}
    proc = subprocess.Popen([sys.executable, "-m", "crm_knowledge.cli", "serve", "--port", str(port), "--workers",
                             str(args.workers)], env=env, stdin=subprocess.DEVNULL)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        out = {}
        pg_pid = _postmaster_pid(settings)
        for n, phase in enumerate(phases):
            _, many, thinks = PHASES[phase]
            log.info("phase %s: %s", phase, PHASES[phase][0])
            before = _cpu_seconds(proc.pid, pg_pid)
            out[phase] = _run(run_load("127.0.0.1", port, key, args.size, args.clients if many else 1,
                                       args.duration, args.warmup, args.think_ms if thinks else 0.0,
                                       seed=1000 * n))
            after = _cpu_seconds(proc.pid, pg_pid)
            sent = max(1, out[phase]["requests_sent"])
            out[phase]["cpu_ms_per_request"] = {part: round((after[part] - before[part]) * 1000 / sent, 3)
                                                for part in after}
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _postmaster_pid(settings) -> int | None:
    try:
        return int((settings.pgdata_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tree_cpu_seconds(root: int | None) -> float:
    """User + system CPU seconds of a live process and all its descendants (Linux /proc; 0 elsewhere)."""
    if root is None or not Path("/proc/self/stat").exists():
        return 0.0
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def _cpu_seconds(service_pid: int, warehouse_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the service (all workers), the warehouse server (all backends), this client."""
    me = os.times()
    return {"service": _tree_cpu_seconds(service_pid), "warehouse": _tree_cpu_seconds(warehouse_pid),
            "client": me.user + me.system}


def _run(coro):
    """Run the clients on uvloop when it is installed (uvicorn's own event loop; cheaper than asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _wait_healthy(url: str, proc, timeout: float = 120) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ckp serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError("ckp serve did not become healthy")


if __name__ == "__main__":
    sys.exit(main())
