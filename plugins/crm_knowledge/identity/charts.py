"""Splink's charts of the latest identity run, as self-contained HTML (``ckp identity-eval``).

* ``match_weights.html``: the match weight of every comparison level of the model the latest run trained
  (Splink's match-weights chart), rebuilt from the model kept in ``identity.resolution_runs.splink_model``.
* ``waterfall.html``: Splink's waterfall chart for linked pairs (the least certain first): how each
  comparison moved the pair's match weight. Built from the levels recorded in ``identity.match_pairs``
  explanations, with Splink's ``remove_sensitive_data``: the chart shows levels and weights, never a name,
  date or address. A table under the chart names each pair by its record keys (no personal data).

Both are written with Splink's ``to_html(inline=True)``, which embeds vega / vega-lite / vega-embed from the
installed splink package, so the files open offline (nothing is fetched from a CDN).
"""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path

import pandas as pd
import psycopg

log = logging.getLogger(__name__)

#: external scripts Splink's default (non-inline) HTML would load; an offline file must reference none
CDN_MARKERS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.")


def latest_model(conn: psycopg.Connection) -> tuple[int, dict] | None:
    """(run_id, Splink settings dict) of the latest run that trained a model, or None."""
    row = conn.execute("select run_id, splink_model from identity.resolution_runs where splink_model is not null "
                       "order by run_id desc limit 1").fetchone()
    return (int(row[0]), row[1]) if row else None


def _linker(settings: dict):
    """A Splink linker over an empty frame with the model's columns: enough for the model's charts."""
    import duckdb
    from splink import DuckDBAPI, Linker

    from crm_knowledge.identity.probabilistic import MODEL_COLUMNS

    columns = set(MODEL_COLUMNS)
    for comp in settings.get("comparisons", []):
        columns.add(comp.get("output_column_name", ""))
        for lvl in comp.get("comparison_levels", []):
            columns.update(w for w in _words(lvl.get("sql_condition", "")) if w.endswith(("_l", "_r")))
    names = sorted({c[:-2] if c.endswith(("_l", "_r")) else c for c in columns if c} | {"unique_id"})
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in names})
    frame["unique_id"] = frame["unique_id"].astype("int64")
    db_api = DuckDBAPI(duckdb.connect(":memory:"))
    sdf = db_api.register(frame, dataset_display_name="identity_model")
    return Linker(sdf, settings, log_level="ERROR", validate_settings=False)


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text or "")


def waterfall_records(pairs: pd.DataFrame) -> tuple[list[dict], list[int]]:
    """Splink waterfall records (gamma_ / mw_tf_adj_ columns, match weight) from ``identity.match_pairs``
    rows with probabilistic explanations, and the positions of the rows used (pairs whose explanation
    carries no levels, written before levels were recorded, are skipped)."""
    records, used = [], []
    for pos, (_, p) in enumerate(pairs.iterrows()):
        e = p["explanation"] if isinstance(p["explanation"], dict) else json.loads(p["explanation"])
        fields = e.get("fields") or {}
        if not fields or any("gamma" not in f for f in fields.values()):
            continue
        rec = {"match_weight": float(p["match_weight"]), "match_probability": float(p["match_probability"])}
        for f in fields.values():
            rec[f"gamma_{f['comparison']}"] = int(f["gamma"])
            rec[f"mw_tf_adj_{f['comparison']}"] = float(f.get("tf_match_weight", 0.0))
        records.append(rec)
        used.append(pos)
    return records, used


def _offline_html(chart) -> str:
    text = chart.to_html(inline=True)
    leaked = [m for m in CDN_MARKERS if m in text]
    if leaked:  # pragma: no cover - depends on the installed splink
        raise RuntimeError(f"Splink's inline chart still references {leaked}; it would not open offline")
    return text


def _with_table(page: str, title: str, rows: list[tuple]) -> str:
    """`page` with a small table of the charted pairs (record keys, probability) before </body>."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("record", "left record", "right record",
                                                         "match probability", "match weight"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    table = (f"<h2>{html.escape(title)}</h2><table border='1' cellpadding='4' style='border-collapse:collapse;"
             f"font-family:sans-serif;font-size:13px'><tr>{head}</tr>{body}</table>")
    head_part, sep, tail = page.rpartition("</body>")  # the last one: the bundled scripts contain the text too
    return head_part + table + sep + tail if sep else page + table


def write_charts(conn: psycopg.Connection, out_dir: Path, pairs: int = 20) -> dict[str, Path]:
    """Write ``match_weights.html`` and ``waterfall.html`` of the latest trained model into `out_dir`
    (owner-only files); returns their paths. Raises LookupError when no run trained a model yet."""
    found = latest_model(conn)
    if found is None:
        raise LookupError("no identity run has trained a probabilistic model yet: run identity resolution first")
    run_id, settings = found
    linker = _linker(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    mw = out_dir / "match_weights.html"
    _write(mw, _offline_html(linker.visualisations.match_weights_chart()))
    written["match_weights"] = mw

    rows = conn.execute(
        "select source_system_l, source_record_id_l, source_system_r, source_record_id_r, match_probability, "
        "match_weight, explanation from identity.match_pairs where match_rule = 'probabilistic' "
        "order by match_probability, source_system_l, source_record_id_l, source_system_r, source_record_id_r "
        "limit %s", (pairs,)).fetchall()
    frame = pd.DataFrame(rows, columns=["source_system_l", "source_record_id_l", "source_system_r",
                                        "source_record_id_r", "match_probability", "match_weight", "explanation"])
    records, used = waterfall_records(frame)
    wf = out_dir / "waterfall.html"
    if records:
        chart = linker.visualisations.waterfall_chart(records, filter_nulls=True, remove_sensitive_data=True)
        keys = [(i, f"{r.source_system_l} / {r.source_record_id_l}", f"{r.source_system_r} / {r.source_record_id_r}",
                 f"{r.match_probability:.4f}", f"{r.match_weight:.2f}")
                for i, r in enumerate(frame.iloc[used].itertuples())]
        _write(wf, _with_table(_offline_html(chart), f"Linked pairs charted (identity run {run_id}; the least "
                                                     "certain first)", keys))
        written["waterfall"] = wf
    else:
        log.info("identity charts: no probabilistic pairs to chart")
    log.info("identity charts of run %d written to %s", run_id, out_dir)
    return written


def _write(path: Path, text: str) -> None:
    """Write owner-only (the pages name record keys of the warehouse)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
