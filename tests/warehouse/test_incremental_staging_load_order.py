"""Incremental staging of a file source without a raw record-key index (macros/incremental_staging.sql).

A file source's versions are ordered by load alone, so a daily run deduplicates the new rows and compares the
newest of each key with the staged row by load time; only the keys of a batch the gate holds now are
recomputed from all of raw. The cases that comparison gets wrong first, on `stg_contacts__interactions`:

* a batch held after its rows were staged (loaded -> held): its keys fall back to their older version, and a
  key it alone held leaves staging;
* the same batch released again (held -> loaded) while a newer batch staged after it holds one of its keys:
  that key keeps the newer version, the other keys take the released one;
each incremental result is what a full build of the same raw rows gives.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.dbt_runs import dbt, on_database
from tests.pipeline_world import scratch_database

pytestmark = pytest.mark.usefixtures("warehouse")

MODEL = "stg_contacts__interactions"
STAGED = f"select interaction_id, notes, loaded_at from staging.{MODEL} order by 1"


def _batch(url: str, batch_id: str, loaded_at: str, rows: list[tuple[str, str]]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("insert into audit.load_batches (batch_id, source_name, source_kind, source_file, rows_read, "
                     "rows_loaded, status) values (%s, 'contacts', 'contacts', %s, %s, %s, 'loaded')",
                     (batch_id, f"{batch_id}.csv", len(rows), len(rows)))
        conn.execute("insert into audit.batch_conventions (batch_id, source_name, date_calendar, "
                     "field_issue_threshold, source_columns) values (%s, 'contacts', 'gregorian', 0.02, '{}')",
                     (batch_id,))
        conn.cursor().executemany(
            "insert into raw.contact_interactions (interaction_id, channel, occurred_at, notes, _batch_id, "
            "_source_file, _loaded_at, _row_number) values (%s, 'phone', '2026-01-05T10:00:00Z', %s, %s, %s, %s, %s)",
            [(key, notes, batch_id, f"{batch_id}.csv", loaded_at, n) for n, (key, notes) in enumerate(rows, 1)])


def _gate(url: str, batch_id: str, action: str) -> None:
    """What the raw gate records and does when it holds or releases a batch."""
    with psycopg.connect(url) as conn:
        conn.execute("update audit.load_batches set status = %s where batch_id = %s",
                     ("held" if action == "held" else "loaded", batch_id))
        conn.execute("insert into audit.dq_runs (dq_run_id, pipeline_run_id, layer, suite, batch_id, started_at, "
                     "finished_at, success, critical_failures, action) values (%s, 'test', 'raw', 'contacts', %s, "
                     "now(), now(), %s, %s, %s)",
                     (uuid.uuid4().hex, batch_id, action == "released", int(action == "held"), action))


def _staged(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(STAGED).fetchall()


def test_a_held_then_released_batch_by_load_order(settings, tmp_path):
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    with scratch_database(settings, "t_stgorder") as url:
        apply_ddl(url)
        on_db = on_database(settings, url)
        run = ("run", "--select", MODEL, "--vars", json.dumps({"as_of_date": "2026-01-10"}))

        def incremental() -> list[tuple]:
            dbt(on_db, tmp_path, *run)
            return [(key, notes) for key, notes, _ in _staged(url)]

        _batch(url, "a", "2026-01-01 10:00+00", [("I1", "a1"), ("I2", "a2")])
        _batch(url, "b", "2026-01-02 10:00+00", [("I1", "b1"), ("I3", "b3"), (" I1 ", "b1 again")])
        assert incremental() == [("I1", "b1 again"), ("I2", "a2"), ("I3", "b3")]  # the first run builds it whole

        # b held after it was staged; a new batch c changes I2
        _gate(url, "b", "held")
        _batch(url, "c", "2026-01-03 10:00+00", [("I2", "c2")])
        assert incremental() == [("I1", "a1"), ("I2", "c2")]

        # b released again: loaded before c, so I2 keeps c's version; I1 and I3 take b's
        _gate(url, "b", "released")
        assert incremental() == [("I1", "b1 again"), ("I2", "c2"), ("I3", "b3")]
