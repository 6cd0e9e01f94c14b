"""Benchmark report: `bench/results/<date>-<size>.json` (everything) and `.md` (the tables people read).

The markdown puts each stage's full and incremental figures side by side, then the baselines as ratios:
ingest against a plain `COPY` of the same files (the physical limit; target ≥ 0.7), against
the raw-layer ceiling (COPY plus an unconverted insert into the raw table: what any loader of this raw
layer must pay) and against `pandas.to_sql`, and identity resolution's growth with the number of
records (exponent 1 = linear).
`update_readme` copies the markdown between the README's bench markers.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from crm_knowledge.settings import PROJECT_ROOT

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
TARGETS = {"full_seconds_1m": 15 * 60, "incremental_seconds": 90, "peak_total_mb": 4096, "copy_ratio": 0.7}


def _fmt(v: float | int | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, int) or (isinstance(v, float) and v >= 100):
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _stage_table(report: dict[str, Any]) -> list[str]:
    """One row per stage: the full run's and the first incremental day's seconds, rows and peak memory, then the
    seconds and peak of each further day (bench.run.day_phase names them)."""
    by_key: dict[str, dict[str, dict[str, Any]]] = {}
    order: list[str] = []
    for s in report["stages"]:
        if s["stage"] not in by_key:
            order.append(s["stage"])
        by_key.setdefault(s["stage"], {})[s["phase"]] = s
    later = [d["phase"] for d in report.get("days") or [] if d["phase"] != "incremental"]
    head = ("| stage | full s | full rows | full rows/s | full peak MB | incr. s | incr. rows | incr. rows/s "
            "| incr. peak MB |")
    rule = "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    for number, _ in enumerate(later, start=2):
        head += f" day {number} s | day {number} rows | day {number} peak MB |"
        rule += "--:|--:|--:|"
    lines = [head, rule]
    for name in order:
        f, i = by_key[name].get("full", {}), by_key[name].get("incremental", {})
        row = (f"| {name} | {_fmt(f.get('seconds'))} | {_fmt(f.get('rows'))} | {_fmt(f.get('rows_per_s'))} "
               f"| {_fmt(f.get('peak_total_mb'))} | {_fmt(i.get('seconds'))} | {_fmt(i.get('rows'))} "
               f"| {_fmt(i.get('rows_per_s'))} | {_fmt(i.get('peak_total_mb'))} |")
        for phase in later:
            d = by_key[name].get(phase, {})
            row += f" {_fmt(d.get('seconds'))} | {_fmt(d.get('rows'))} | {_fmt(d.get('peak_total_mb'))} |"
        lines.append(row)
    return lines


def _baseline_table(report: dict[str, Any]) -> list[str]:
    copy, to_sql, ingest = (report.get("baseline_copy") or {}, report.get("baseline_to_sql") or {},
                            report.get("ingest_full") or {})
    ceiling = report.get("baseline_raw_ceiling") or {}
    if not copy and not to_sql:
        return []
    lines = ["| source | pipeline rows/s | plain COPY rows/s | ratio to COPY (target ≥ 0.7) "
             "| raw-layer ceiling rows/s | ceiling's ratio to COPY | pipeline's ratio to ceiling "
             "| pandas to_sql rows/s | ratio to to_sql |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    for name, ing in ingest.items():
        c, t, r = copy.get(name, {}), to_sql.get(name, {}), ceiling.get(name, {})
        ours = ing.get("rows_per_s")
        note = f" ({c['note']})" if c.get("note") else ""
        lines.append(f"| {name} | {_fmt(ours)} | {_fmt(c.get('rows_per_s'))}{note} "
                     f"| {_fmt(ratio(ours, c.get('rows_per_s')), 2)} | {_fmt(r.get('rows_per_s'))} "
                     f"| {_fmt(ratio(r.get('rows_per_s'), c.get('rows_per_s')), 2)} "
                     f"| {_fmt(ratio(ours, r.get('rows_per_s')), 2)} "
                     f"| {_fmt(t.get('rows_per_s'))} | {_fmt(ratio(ours, t.get('rows_per_s')), 2)} |")
    return lines


def _loader_ratio_table(report: dict[str, Any]) -> list[str]:
    """The loader against plain COPY of the same file, interleaved (bench.loader_ratio): medians per file."""
    entries = [e for e in report.get("loader_ratio") or [] if "loader_s" in e]
    if not entries:
        return []
    lines = ["| source | file | rows | rounds | loader s (median) | plain COPY s (median) "
             f"| ratio (target ≥ {TARGETS['copy_ratio']}) | COPY into jsonb s | ratio to jsonb COPY "
             "| loader phases s (median) |", "|---|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    for e in entries:
        phases = ", ".join(f"{k} {v:.2f}" for k, v in sorted(e["phases_s"].items(), key=lambda kv: -kv[1])
                           if v >= 0.01)
        lines.append(f"| {e['source']} | {e['file']} | {e['rows']:,} | {e['rounds']} | {_fmt(e['loader_s'], 2)} "
                     f"| {_fmt(e.get('copy_s'), 2)} | {_fmt(e.get('ratio'), 2)} | {_fmt(e.get('copy_jsonb_s'), 2)} "
                     f"| {_fmt(e.get('ratio_to_jsonb_copy'), 2)} | {phases} |")
    return lines


def _scaling_table(report: dict[str, Any]) -> list[str]:
    points = report.get("identity_scaling") or []
    if not points:
        return []
    lines = ["| source records | seconds | records/s | customers |", "|--:|--:|--:|--:|"]
    for p in points:
        lines.append(f"| {p['records']:,} | {_fmt(p['seconds'])} | {_fmt(p['records_per_s'])} | {p['customers']:,} |")
    exp = points[-1].get("growth_exponent")
    if exp is not None:
        lines.append("")
        lines.append(f"Growth exponent (time ∝ records^k): **k = {exp}** (1 is linear, 2 quadratic).")
    return lines


def _backends_table(report: dict[str, Any]) -> list[str]:
    rows = report.get("identity_backends") or []
    if not rows:
        return []
    lines = ["| backend | records | customers | seconds | peak driver MB | peak JVM / children MB |",
             "|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['records']:,} | {r['customers']:,} | {_fmt(r['seconds'])} "
                     f"| {_fmt(r.get('peak_driver_mb'))} | {_fmt(r.get('peak_children_mb'))} |")
    return lines


def _later_days(report: dict[str, Any]) -> str:
    """The headline's note on the days after the first: the first follows the full run's deliveries (a first
    delivery sends every member), the next are ordinary days."""
    later = [d for d in report.get("days") or [] if d["phase"] != "incremental"]
    if not later:
        return ""
    return ("; the first day follows the weekly run's deliveries, the next an ordinary day's: "
            + ", ".join(f"day {n}: **{_fmt(d['seconds'])} s**" for n, d in enumerate(later, start=2)))


def to_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    size = report["size"]
    lines = [f"### Benchmark: {size:,} customers ({report['started_at'][:10]})", "",
             f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB RAM, Python {m['python']}, embedded PostgreSQL.",
             "", (f"- ingest stage with its baselines (after generating the sources): "
                  f"**{_fmt(report.get('full_seconds'))} s**" if report.get("only_ingest") else
                  f"- identity stage alone, candidates and every backend: **{_fmt(report.get('full_seconds'))} s**"
                  if report.get("only_identity") else
                  f"- full pipeline (after generating the sources): **{_fmt(report.get('full_seconds'))} s**"
                  + (f" (target at 1M: ≤ {TARGETS['full_seconds_1m']} s)" if size >= 1_000_000 else "")),
             (f"- incremental day: **{_fmt(report.get('incremental_seconds'))} s** (target ≤ "
              f"{TARGETS['incremental_seconds']} s)" + _later_days(report)
              if report.get("incremental_seconds") is not None
              else "- incremental day: not run in this benchmark ("
              + ("`--only-ingest`" if report.get("only_ingest") else "`--only-identity`" if report.get("only_identity")
                 else "`--no-incremental`") + ")"),
             f"- peak memory, pipeline processes + warehouse: **{_fmt(report.get('peak_total_mb'))} MB** "
             f"(target ≤ {TARGETS['peak_total_mb']} MB)", ""]
    load = report.get("load_average")
    if load:
        lines[-1:-1] = [f"- load average (1, 5, 15 min) at start {load.get('start')}, at end {load.get('end')}"]
    if report.get("only_ingest"):
        lines[-1:-1] = ["- only the ingest stage and its baselines (`--only-ingest`); the orders database is not "
                        "generated"]
    if report.get("only_identity"):
        lines[-1:-1] = [f"- only the identity stage (`--only-identity`) on {report.get('identity_candidates', 0):,} "
                        "synthetic candidate records (bench/identity_daily.py)"]
    lines += _stage_table(report)
    for heading, table in (
            ("The loader against a plain `COPY` of the same file, alternately on each file (medians; "
             "bench/loader_ratio.py):", _loader_ratio_table),
            ("Ingest against the same machine's baselines (full run):", _baseline_table),
            ("Identity resolution (full, written to the warehouse) per backend; on Spark the driver is this "
             "process and the JVM (with its Python workers) its children:", _backends_table),
            ("Identity resolution alone (full, in memory), by number of source records:", _scaling_table)):
        rows = table(report)
        if rows:
            lines += ["", heading, "", *rows]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], results_dir: Path) -> dict[str, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.fromisoformat(report['started_at'][:10]).isoformat()}-{report['size']}"
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return {"json": json_path, "markdown": md_path}


def update_readme(markdown_files: list[Path], readme: Path = PROJECT_ROOT / "README.md") -> bool:
    """Replace the text between the README's bench markers with the given reports; False if no markers."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = "\n".join(p.read_text(encoding="utf-8") for p in markdown_files)
    readme.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}", encoding="utf-8")
    return True
