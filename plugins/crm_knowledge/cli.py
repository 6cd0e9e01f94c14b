"""`ckp`: the project's command line (warehouse lifecycle, demo data, pipeline run, reports)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from crm_knowledge.termination import INTERRUPTED_EXIT, end_like_ctrl_c, stopped_by


def _cmd_warehouse(args: argparse.Namespace) -> int:
    from crm_knowledge.settings import redact_url
    from crm_knowledge.warehouse import bootstrap, server

    if args.action == "start":
        url = server.start()
        bootstrap.apply_ddl(url)
        # the password stays out of terminals and CI logs; `ckp warehouse url` prints it when asked
        print(f"warehouse running: {redact_url(url)}   (`ckp warehouse url` prints the full URL)")
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running (or external)")
    elif args.action == "status":
        st = server.status()
        print(f"running={st.running} {st.detail}")
        return 0 if st.running else 1
    elif args.action == "url":
        st = server.status()
        if not st.running:
            print("the warehouse is not running: `make warehouse-start`", file=sys.stderr)
            return 1
        print(st.url)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from crm_knowledge.demo import generate, generate_increment

    # generate() checks where it may write before anything else, and starts the embedded server if needed
    if args.increment_day:
        summary = generate_increment(day=dt.date.fromisoformat(args.increment_day), seed=args.seed,
                                     overwrite_external_db=args.overwrite_external_db)
    else:
        summary = generate(size=args.size, seed=args.seed, overwrite_external_db=args.overwrite_external_db)
    print(json.dumps(summary.as_dict(), indent=2, default=str, ensure_ascii=False))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from crm_knowledge.runner import run_pipeline

    run_pipeline(size=args.size, seed=args.seed, keep_running=args.keep_running,
                 overwrite_external_db=args.overwrite_external_db, response_range=not args.no_response_range)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from crm_knowledge.runner import serve

    serve()
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    """Refit the models and score every customer as of a past (or any) day, outside Airflow: the weekly run's
    scoring (the DAG's daily step applies the last fit to the day's changes; crm_knowledge.scoring.run)."""
    from crm_knowledge.scoring.run import score_all

    result = score_all(as_of=dt.date.fromisoformat(args.as_of))
    print(json.dumps(result, indent=2, default=str))
    return 0


def _cmd_identity(args: argparse.Namespace) -> int:
    """Metrics against the demo ground truth (when there is one) and Splink's charts of the latest run."""
    from crm_knowledge.identity.report import evaluation_report, write_identity_charts

    try:
        print(evaluation_report())
    except FileNotFoundError as exc:  # a real deployment has no ground truth: the charts still explain the links
        print(f"no accuracy report: {exc}", file=sys.stderr)
    for name, path in write_identity_charts(pairs=args.pairs).items():
        print(f"{name} chart: {path}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from crm_knowledge.bench.run import prepare_environment

    # before anything reads settings: the benchmark has its own home and warehouse port
    prepare_environment(args.size)
    from crm_knowledge.bench.report import update_readme
    from crm_knowledge.bench.run import home_lock, run_bench
    from crm_knowledge.settings import get_settings

    extra = {"results_dir": Path(args.results_dir)} if args.results_dir else {}
    backends = tuple(b for b in (args.identity_backends or "").split(",") if b)
    unknown = sorted(set(backends) - {"duckdb", "spark"})
    if unknown:
        print(f"ckp bench: --identity-backends takes duckdb and/or spark, got {', '.join(unknown)}", file=sys.stderr)
        return 2
    with home_lock(get_settings().home):
        report = run_bench(args.size, args.seed, incremental=not args.no_incremental, days=args.days,
                           baselines=not args.no_baselines, scaling=not args.no_scaling, identity_backends_=backends,
                           only_ingest=args.only_ingest, only_identity=args.only_identity, rounds=args.rounds,
                           **extra)
    if args.update_readme:
        files = [Path(report["paths"]["markdown"])] + [Path(p) for p in args.also or []]
        print("README updated" if update_readme(files) else "README has no bench markers", file=sys.stderr)
    return 0


def _cmd_erase(args: argparse.Namespace) -> int:
    """Erase one customer now (the customer_erasure DAG's code); prints counts only, never the identifiers."""
    from crm_knowledge.privacy.erasure import ErasureRequest, erase

    request = ErasureRequest(email=args.email, phone=args.phone, national_id=args.national_id,
                             reason=args.reason, origin="cli", declared=args.declared)
    result = erase(request, as_of=dt.date.fromisoformat(args.date) if args.date else None)
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def _cmd_customer_report(args: argparse.Namespace) -> int:
    """Everything held about one customer, as JSON, for a verified access request."""
    from crm_knowledge.privacy.data_report import write_report

    summary = write_report(args.output, email=args.email, phone=args.phone, national_id=args.national_id,
                           declared=args.declared, customer_id=args.customer_id, verified_by=args.verified_by)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_pii_scan(args: argparse.Namespace) -> int:
    """Leak scan of every analytic schema and export; exit 1 on findings, 2 when there was nothing to look for."""
    from crm_knowledge.privacy.pii_scan import demo_needles, scan, vault_needles
    from crm_knowledge.settings import get_settings

    settings = get_settings()
    source = args.needles
    if source == "auto":  # a demo deployment has its ground truth; a real one only its vault
        source = "demo" if (settings.demo_dir / "ground_truth.csv").exists() else "vault"
    needles = demo_needles(settings) if source == "demo" else vault_needles(settings.warehouse_url)
    if not needles:
        print(f"error: no identifiers to search for in the {source} (is the pii vault built?)", file=sys.stderr)
        return 2
    result = scan(settings, needles)
    text = json.dumps(result.as_dict(), indent=2, ensure_ascii=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text)
    return 0 if result.clean else 1


def _cmd_batches(args: argparse.Namespace) -> int:
    """Held and aborted load batches: list them, retire a held one, or mark crashed loads aborted now."""
    from crm_knowledge.ingest import ledger
    from crm_knowledge.settings import get_settings
    from crm_knowledge.warehouse.db import connect

    with connect(get_settings().warehouse_url, autocommit=True) as conn:
        if args.action == "held":
            rows = ledger.held_batches(conn)
            for batch_id, source, where, rows_loaded, started, error in rows:
                print(f"{batch_id}\t{source}\t{where}\t{rows_loaded} rows\t{started:%Y-%m-%d %H:%M}\t{error or ''}")
            print(f"{len(rows)} held batch(es)", file=sys.stderr)
            return 0
        if args.action == "aborted":
            rows = ledger.aborted_batches(conn)
            pending = 0
            for batch_id, source, where, started, finished, reloaded_by in rows:
                pending += reloaded_by is None
                state = f"re-loaded by {reloaded_by}" if reloaded_by else "not re-loaded yet (the next load takes it)"
                print(f"{batch_id}\t{source}\t{where}\tstarted {started:%Y-%m-%d %H:%M}\t"
                      f"aborted {finished:%Y-%m-%d %H:%M}\t{state}")
            print(f"{len(rows)} aborted batch(es), {pending} not re-loaded yet", file=sys.stderr)
            return 0
        if args.action == "recover":
            done = ledger.recover(conn)
            for batch_id, where in done:
                print(f"{batch_id}\t{where}\taborted")
            print(f"{len(done)} batch(es) left running by a crashed load marked aborted; the next load of each "
                  "source loads their data again", file=sys.stderr)
            return 0
        if args.action == "accept":
            ledger.accept_batch(conn, args.batch_id, args.reason or "")
            print(f"batch {args.batch_id} accepted: loaded, with its field issues")
            return 0
        ledger.retire_batch(conn, args.batch_id, args.reason or "")
        print(f"batch {args.batch_id} retired")
        return 0


def _cmd_access(args: argparse.Namespace) -> int:
    """Logins for BI tools, auditors and privacy officers; a generated password is printed once, never stored."""
    from crm_knowledge.privacy import roles
    from crm_knowledge.settings import get_settings

    url = get_settings().warehouse_url
    if args.action == "drop-login":
        roles.drop_login(url, args.name)
        print(f"login {args.name} dropped")
        return 0
    password = None if args.no_password else roles.generate_password()
    verb = roles.create_login(url, args.name, password, args.role)
    reads = ", ".join(sorted(roles.ACCESS[args.role]))
    print(f"login {args.name} {verb}: member of {args.role} (reads {reads})")
    print(f"connect as: {roles.login_url(url, args.name, password)}")
    if password is None:
        print("no password: the server must authenticate this login otherwise (client certificate, or a "
              "trust/peer rule in pg_hba.conf)", file=sys.stderr)
    else:
        print("the password is shown only now and not stored by ckp: put it in the tool's secret store "
              f"(run again to set a new one; `ckp access drop-login {args.name}` removes the login)", file=sys.stderr)
    return 0


def _cmd_reports(args: argparse.Namespace) -> int:
    """Serve the auditor's report and the Data Docs read-only over HTTP (the compose `reports` service)."""
    from pathlib import Path

    from crm_knowledge.quality.report_server import DEFAULT_PORT, serve
    from crm_knowledge.settings import get_settings

    serve(Path(args.dir) if args.dir else get_settings().reports_dir, args.host, args.port or DEFAULT_PORT)
    return 0


def _declared_identifier(text: str) -> tuple[str, str]:
    kind, sep, value = text.partition("=")
    if not sep or not kind.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KIND=VALUE (a kind declared in config/identity.yml), got {text!r}"
                                         if "=" not in text else "expected KIND=VALUE with both parts non-empty")
    return kind.strip(), value


class _DeclaredIdentifiers(argparse.Action):
    """Collects repeated ``--identifier KIND=VALUE`` into {kind: value}."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        kind, value = values
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), kind: value})


def _cmd_serve(args: argparse.Namespace) -> int:
    """The customer read service (lookup, profile, interactions, agent page) until stopped."""
    from crm_knowledge.serve.app import serve
    from crm_knowledge.settings import get_settings

    serve(get_settings(), args.host, args.port, args.workers)
    return 0


def _cmd_api_keys(args: argparse.Namespace) -> int:
    """API keys of the read service; a new key is printed once, only its hash is stored."""
    from crm_knowledge.serve import keys
    from crm_knowledge.settings import get_settings
    from crm_knowledge.warehouse.bootstrap import apply_ddl
    from crm_knowledge.warehouse.db import connect

    settings = get_settings()
    url = settings.warehouse_url
    apply_ddl(url)
    with connect(url) as conn:
        if args.action == "create":
            full, key = keys.create_key(conn, args.name, args.role, args.unit, args.rate_limit)
            print(full)
            print(f"key {key.key_id} ({key.role}{', unit ' + key.unit if key.unit else ''}) created for "
                  f"{key.name}: shown only now, only its hash is stored", file=sys.stderr)
        elif args.action == "list":
            for k in keys.list_keys(conn):
                state = f"revoked {k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "active"
                print(f"{k['key_id']}\t{k['role']}\t{k['unit'] or ''}\t{k['name']}\t"
                      f"{k['rate_limit_per_minute'] or 'default'}/min\t{state}")
        elif not keys.revoke_key(conn, args.key_id):
            print(f"error: no active key {args.key_id}", file=sys.stderr)
            return 1
        else:
            print(f"key {args.key_id} revoked: a running `ckp serve` refuses it within "
                  f"{settings.serve_key_cache_s:g} s (CKP_SERVE_KEY_CACHE_SECONDS)")
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the option when it refuses one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _identifier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--email")
    p.add_argument("--phone", help="any spelling: 0912…, +98 912 …, Persian digits")
    p.add_argument("--national-id", dest="national_id")
    p.add_argument("--identifier", dest="declared", metavar="KIND=VALUE", type=_declared_identifier,
                   action=_DeclaredIdentifiers, default={},
                   help="an identifier kind declared in config/identity.yml, e.g. passport=X1234567 (repeatable)")


def _overwrite_external_arg(p: argparse.ArgumentParser) -> None:
    from crm_knowledge.demo.guard import OVERWRITE_FLAG

    p.add_argument(OVERWRITE_FLAG, dest="overwrite_external_db", action="store_true",
                   help="let the demo drop and refill the orders tables of the database CKP_ORDERS_URL or "
                        "WAREHOUSE_URL names, and load demo customers into WAREHOUSE_URL's warehouse (only for "
                        "databases created for the demo; without it the demo refuses to touch them)")


def build_parser() -> argparse.ArgumentParser:
    """The ``ckp`` parser: every sub-command (tests enumerate them to check each has a subprocess test)."""
    from crm_knowledge.privacy.roles import LOGIN_GROUPS

    parser = argparse.ArgumentParser(prog="ckp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("warehouse", help="start/stop/status of the embedded warehouse, or print its URL")
    w.add_argument("action", choices=["start", "stop", "status", "url"])
    w.set_defaults(func=_cmd_warehouse)

    d = sub.add_parser("demo", help="generate demo sources into the landing zone and the orders database")
    d.add_argument("--size", type=int, default=2000)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--increment-day", help="add one day of new data (YYYY-MM-DD) on top of a generated set")
    _overwrite_external_arg(d)
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("run", help="run the whole pipeline on demo data with the real Airflow scheduler")
    r.add_argument("--size", type=int, default=None, help="demo customers (default CKP_DEMO_SIZE or 2000)")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--keep-running", action="store_true", help="leave Airflow (and its UI) running afterwards")
    r.add_argument("--no-response-range", action="store_true",
                   help="one round for today only: no second simulated day range measuring the campaigns")
    _overwrite_external_arg(r)
    r.set_defaults(func=_cmd_run)

    u = sub.add_parser("up", help="run Airflow (scheduler, DAG processor, triggerer, UI) on the deployment's "
                                  "own sources until Ctrl-C")
    u.set_defaults(func=_cmd_up)

    sc = sub.add_parser("score", help="score all customers as of a day (any past day), outside Airflow")
    sc.add_argument("--as-of", dest="as_of", required=True, help="YYYY-MM-DD: only data on or before it is used")
    sc.set_defaults(func=_cmd_score)

    i = sub.add_parser("identity-eval", help="identity-resolution precision/recall against the demo ground truth, "
                                             "and Splink's match-weight and waterfall charts (HTML, offline)")
    i.add_argument("--pairs", type=int, default=20, help="linked pairs in the waterfall chart (least certain first)")
    i.set_defaults(func=_cmd_identity)

    b = sub.add_parser("bench", help="benchmark the whole pipeline at --size customers (full run + --days days)")
    b.add_argument("--size", type=int, default=100_000)
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--no-incremental", action="store_true", help="skip the incremental days")
    b.add_argument("--days", type=_positive_int, default=2,
                   help="incremental days after the full run (default 2: the day after the weekly run, which "
                        "follows its deliveries, then an ordinary day)")
    b.add_argument("--no-baselines", action="store_true", help="skip plain COPY and pandas to_sql baselines")
    b.add_argument("--no-scaling", action="store_true", help="skip identity resolution at 100k/1M records")
    b.add_argument("--identity-backends", metavar="LIST",
                   help="after the full run, time a full identity resolution on each backend, e.g. duckdb,spark "
                        "(Spark as configured in config/identity.yml `spark` / CKP_SPARK_*: local mode by default)")
    b.add_argument("--only-ingest", action="store_true",
                   help="only the file sources' ingest stage with its COPY baselines: the loader against plain COPY "
                        "of the same file, interleaved (--rounds each, medians), the ingest and the raw gate")
    b.add_argument("--only-identity", action="store_true",
                   help="only the identity stage: synthetic candidates of --size customers (about 2.1 records each, "
                        "bench/identity_daily.py), a full resolution on each of --identity-backends "
                        "(default duckdb,spark), time and peak memory of the driver and the JVM apart")
    b.add_argument("--rounds", type=int, default=3, help="rounds of loader and COPY per file with --only-ingest")
    b.add_argument("--update-readme", action="store_true", help="copy the markdown table into README.md")
    b.add_argument("--also", nargs="*", help="more report .md files to put in the README after this one")
    b.add_argument("--results-dir", help="where the JSON and markdown reports go (default bench/results)")
    b.set_defaults(func=_cmd_bench)

    e = sub.add_parser("erase", help="right to be forgotten: erase the customer(s) an email/phone/national ID names")
    _identifier_args(e)
    e.add_argument("--reason", help="short reference for the audit log (a ticket number; no personal data)")
    e.add_argument("--date", help="erasure date recorded in the tombstone (default today)")
    e.set_defaults(func=_cmd_erase)

    cr = sub.add_parser("customer-report", help="everything held about one customer, as JSON (access request)")
    _identifier_args(cr)
    cr.add_argument("--customer-id", dest="customer_id")
    cr.add_argument("--verified-by", dest="verified_by", required=True,
                    help="who verified the requester's identity (recorded in audit.customer_data_reports)")
    cr.add_argument("-o", "--output", required=True, help="JSON file to write (it holds personal data)")
    cr.set_defaults(func=_cmd_customer_report)

    bt = sub.add_parser("batches", help="held and aborted load batches: list them, retire a held one, recover "
                                        "crashed loads")
    bt_sub = bt.add_subparsers(dest="action", required=True)
    bt_sub.add_parser("held", help="list every batch the raw quality gate holds")
    bt_sub.add_parser("aborted", help="list the batches whose load crashed, and whether their data was re-loaded")
    bt_sub.add_parser("recover", help="mark batches left running by a crashed load aborted now (a running load "
                                      "is left alone); the next load re-loads them")
    rt = bt_sub.add_parser("retire", help="set a held batch aside for good (never re-checked, never staged)")
    rt.add_argument("batch_id")
    rt.add_argument("--reason", required=True, help="why (kept in audit.load_batches.error for the auditors)")
    ac = bt_sub.add_parser("accept", help="release a batch held at load for too many field issues (their fields "
                                          "stay NULL)")
    ac.add_argument("batch_id")
    ac.add_argument("--reason", required=True, help="why (kept in audit.load_batches.error for the auditors)")
    bt.set_defaults(func=_cmd_batches)

    ac = sub.add_parser("access", help="warehouse logins for BI tools, auditors and privacy officers")
    ac_sub = ac.add_subparsers(dest="action", required=True)
    cl = ac_sub.add_parser("create-login", help="create (or re-key) a login that is a member of ROLE")
    cl.add_argument("role", choices=LOGIN_GROUPS,
                    help="ckp_bi_reader: marts; ckp_auditor: audit + marts; ckp_privacy_officer: pii + marts")
    cl.add_argument("name", help="the login's name (lower_snake_case), e.g. metabase or auditor_jane")
    cl.add_argument("--no-password", action="store_true",
                    help="no password (client-certificate, trust or peer authentication); default: a generated "
                         "password, printed once")
    dl = ac_sub.add_parser("drop-login", help="drop a login made by create-login")
    dl.add_argument("name")
    ac.set_defaults(func=_cmd_access)

    rp = sub.add_parser("reports", help="serve the data-quality report and Data Docs to auditors (read-only)")
    rp_sub = rp.add_subparsers(dest="action", required=True)
    sv = rp_sub.add_parser("serve", help="a read-only HTTP server over the reports folder")
    sv.add_argument("--dir", help="the reports folder (default: $CKP_HOME/reports)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, help="port to listen on (default 8090)")
    rp.set_defaults(func=_cmd_reports)

    sv = sub.add_parser("serve", help="the customer read service: lookup, profile, interactions, agent page")
    sv.add_argument("--host", help="address to listen on (default CKP_SERVE_HOST or 127.0.0.1)")
    sv.add_argument("--port", type=int, help="port (default CKP_SERVE_PORT or 8094)")
    sv.add_argument("--workers", type=int, help="uvicorn worker processes (default CKP_SERVE_WORKERS or 1)")
    sv.set_defaults(func=_cmd_serve)

    ak = sub.add_parser("api-keys", help="API keys of the read service (stored hashed)")
    ak_sub = ak.add_subparsers(dest="action", required=True)
    kc = ak_sub.add_parser("create", help="create a key and print it once")
    kc.add_argument("--role", required=True, choices=["agent", "partner"],
                    help="agent: contact data, full profile, record interactions; partner: pseudonymous ids and "
                         "segments of its own unit's customers only")
    kc.add_argument("--name", required=True, help="who holds the key (a system or team; no personal data)")
    kc.add_argument("--unit", help="partner: the source system it speaks for, e.g. sibling:bank_fa")
    kc.add_argument("--rate-limit", dest="rate_limit", type=int,
                    help="requests per minute (default CKP_SERVE_RATE_LIMIT)")
    ak_sub.add_parser("list", help="every key: id, role, unit, holder, limit, active or revoked (never a secret)")
    kr = ak_sub.add_parser("revoke", help="revoke a key (refused within CKP_SERVE_KEY_CACHE_SECONDS)")
    kr.add_argument("key_id")
    ak.set_defaults(func=_cmd_api_keys)

    ps = sub.add_parser("pii-scan", help="scan analytic schemas and exports for customers' identifiers")
    ps.add_argument("-o", "--output", help="also write the findings (no personal values) to this JSON file")
    ps.add_argument("--needles", choices=["auto", "vault", "demo"], default="auto",
                    help="what to search for: the pii vault's identifiers (vault), the demo persons' (demo), or "
                         "demo when the demo ground truth exists, else vault (auto, the default)")
    ps.set_defaults(func=_cmd_pii_scan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from crm_knowledge.privacy.file_modes import restrict_umask

    restrict_umask()  # every file a command (or the Airflow / dbt processes it starts) creates is 0600 / 0700
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    end_like_ctrl_c()  # SIGTERM / SIGHUP unwind a command like Ctrl-C: its cleanup runs (termination.py)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        signal_name = stopped_by()
        by = f" by {signal_name}" if signal_name else ""
        print(f"ckp: interrupted{by}; what the command started was stopped", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as exc:  # a clear one-line error for operators; -v shows the traceback
        signal_name = stopped_by()
        if signal_name:  # what the signal did to a child (a JVM, dbt) surfaced first: still a stop
            print(f"ckp: interrupted by {signal_name}; what the command started was stopped "
                  f"(it ended with {type(exc).__name__})", file=sys.stderr)
            return INTERRUPTED_EXIT
        if args.verbose:
            raise
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001 - an error whose text cannot be rendered (a dead JVM's) still gets a line
            text = f"{type(exc).__name__} (its message could not be read; run with -v for the traceback)"
        print(f"error: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
