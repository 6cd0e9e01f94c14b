"""The Spark backend's input: candidates streamed from the warehouse into Parquet files chunk by chunk
(identity/staging.py), holding one chunk at a time; the files must hold exactly what store.read_candidates reads
(the in-process backend's input), in the same order, so both backends number and see records alike. And its
output: result tables as Parquet, streamed into the warehouse with COPY batch by batch; the previous resolution
streamed out to Parquet the same way."""

from __future__ import annotations

import math
import stat

import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest

from crm_knowledge.identity import store
from crm_knowledge.identity.config import load_config
from crm_knowledge.identity.prepare import KEY
from crm_knowledge.identity.staging import copy_parquet, stage_candidates, stage_previous
from crm_knowledge.identity.synthetic import CANDIDATES_DDL

pytestmark = pytest.mark.warehouse

N = 1_234
CHUNK = 100

#: the candidates table as identity-only runs create it (identity/synthetic.py), and the declared identifiers
DDL = CANDIDATES_DDL + """
create table intermediate.int_identity_identifiers (
    source_system text, source_record_id text, identifier_kind text, identifier_value text
);
"""


def _fill(conn: psycopg.Connection) -> None:
    """N records in reverse key order, with Persian text, commas, quotes and a line break in values, empty and
    missing values, and a declared identifier (passport) plus an undeclared kind on some."""
    conn.execute(DDL)
    with conn.cursor() as cur:
        cur.execute(
            "insert into intermediate.int_identity_candidates select "
            "case when i %% 3 = 0 then 'orders' when i %% 3 = 1 then 'forms' else 'sibling:insurance' end, "
            "lpad(i::text, 6, '0'), "
            "case when i %% 7 = 0 then null else 'علی ' || i end, 'karimi, \"jr\"', "
            "case when i %% 11 = 0 then '' else 'ali karimi' end, "
            "case when i %% 5 = 0 then null else 'a' || i || '@mail.ir' end, '+98912' || lpad(i::text, 7, '0'), "
            "null, date '1980-01-01' + i, '12345', 'tehran', "
            "case when i %% 13 = 0 then E'line one\\nline two' else null end, '12', null, "
            "case when i %% 17 = 0 then 'R' || i end, "
            "case when i %% 19 = 0 then null else timestamptz '2026-03-01 10:00:00.123456+03:30' "
            "+ i * interval '1 minute' end, timestamptz '2026-03-02 00:00:00+00' "
            "from generate_series(%s, 1, -1) as i", (N,))
        cur.execute(
            "insert into intermediate.int_identity_identifiers select source_system, source_record_id, 'passport', "
            "'P' || source_record_id from intermediate.int_identity_candidates where source_record_id::int % 4 = 0 "
            "union all select source_system, source_record_id, 'undeclared', 'x' "
            "from intermediate.int_identity_candidates where source_record_id::int % 9 = 0")


def _staged_frame(files) -> pd.DataFrame:
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_staging_streams_chunks_that_hold_what_read_candidates_reads(scratch_db, tmp_path):
    config = load_config()
    with psycopg.connect(scratch_db) as conn:
        _fill(conn)
        expected = store.read_candidates(conn)
        staged = stage_candidates(conn, tmp_path / "staged", config, chunk_rows=CHUNK)

    # bounded: one file per chunk of at most CHUNK rows, the driver never held more
    assert staged.rows == N
    assert len(staged.files) == math.ceil(N / CHUNK)
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in staged.files]
    assert sizes == [CHUNK] * (N // CHUNK) + [N % CHUNK]
    # private: personal data
    assert stat.S_IMODE((tmp_path / "staged").stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in staged.files} == {0o600}

    got = _staged_frame(staged.files)
    assert got["rid"].tolist() == list(range(N))  # record numbers = row positions, across chunks
    assert "id_passport" in staged.columns and "id_undeclared" not in staged.columns
    assert staged.is_new is None
    assert len(expected) == N
    for c in staged.columns:
        if c == "seen_at":
            left = pd.to_datetime(got[c], utc=True).dt.as_unit("us")
            right = pd.to_datetime(expected[c], utc=True).dt.as_unit("us")
            pd.testing.assert_series_equal(left, right, check_names=False)
            continue
        want = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in expected[c]]
        assert got[c].astype(object).where(got[c].notna(), None).tolist() == want, c
    assert got.loc[got["source_record_id"] == "000013", "street_norm"].item() == "line one\nline two"
    assert got["full_name_norm"].isna().sum() == N // 11  # empty text is missing, as read_candidates has it


def test_staging_flags_new_records_as_split_new_and_orders_them_last(scratch_db, tmp_path):
    config = load_config()
    with psycopg.connect(scratch_db) as conn:
        _fill(conn)
        store.ensure_schema(conn)
        # resolved: every third record, some before their seen_at (changed), some before staged_at (re-staged)
        conn.execute(
            "insert into identity.record_clusters (source_system, source_record_id, customer_id, match_rule, "
            "match_score, resolved_at) select source_system, source_record_id, 'C' || source_record_id, "
            "'singleton', null, case when source_record_id::int % 2 = 0 then timestamptz '2026-04-01 00:00+00' "
            "when source_record_id::int % 5 = 0 then timestamptz '2026-03-01 12:00+00' "
            "else timestamptz '2026-03-01 00:00+00' end "
            "from intermediate.int_identity_candidates where source_record_id::int % 3 = 0")
        candidates = store.read_candidates(conn)
        previous = store.read_previous(conn)
        new, existing = store.split_new(candidates, previous)
        staged = stage_candidates(conn, tmp_path / "inc", config, with_previous=True, new_last=True,
                                  chunk_rows=CHUNK)
    assert 0 < len(existing) < N and len(new) + len(existing) == N
    got = _staged_frame(staged.files)
    # existing first then new, each in key order: the numbering resolve_incremental gives
    assert list(zip(got["source_system"], got["source_record_id"], strict=True)) == [
        *zip(existing["source_system"], existing["source_record_id"], strict=True),
        *zip(new["source_system"], new["source_record_id"], strict=True)]
    assert staged.is_new.tolist() == [False] * len(existing) + [True] * len(new)
    assert got["is_new"].tolist() == staged.is_new.tolist()
    pd.testing.assert_frame_equal(staged.new_keys(), new[KEY].reset_index(drop=True))


def test_staging_no_candidates_gives_one_empty_file(scratch_db, tmp_path):
    with psycopg.connect(scratch_db) as conn:
        conn.execute(DDL)
        staged = stage_candidates(conn, tmp_path / "empty", load_config(), chunk_rows=CHUNK)
    assert staged.rows == 0 and len(staged.files) == 1
    assert pq.read_table(staged.files[0]).num_rows == 0
    assert "rid" in pq.read_table(staged.files[0]).column_names


def test_result_files_stream_into_the_warehouse_and_previous_streams_back(scratch_db, tmp_path):
    """copy_parquet (record batches of 2 rows here) writes text with commas, quotes, line breaks and Persian
    letters as it is, an empty string as empty and a null as NULL, epoch microseconds as UTC timestamps and a
    null resolved_at as the transaction's time; stage_previous reads the table back into Parquet."""
    import datetime as dt

    import pyarrow as pa

    rows = [("orders", "1", "C000000001", "email", 1.0, 1_700_000_000_123_456),
            ("forms", 'a,"b"\nc', "C000000001", "", 0.25, None),
            ("sibling:insurance", "علی", "C000000002", None, None, None)]
    names = ["source_system", "source_record_id", "customer_id", "match_rule", "match_score", "resolved_at"]
    path = tmp_path / "rc.parquet"
    pq.write_table(pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}), path)
    with psycopg.connect(scratch_db) as conn:
        conn.execute("create schema identity; create table identity.record_clusters (source_system text, "
                     "source_record_id text, customer_id text, match_rule text, match_score double precision, "
                     "resolved_at timestamptz)")
        now = conn.execute("select now()").fetchone()[0]
        assert copy_parquet(conn, psycopg.sql.SQL("identity.record_clusters"), str(path), now=now, batch_rows=2) == 3
        got = conn.execute("select source_system, source_record_id, customer_id, match_rule, match_score, "
                           "resolved_at from identity.record_clusters order by customer_id, match_score").fetchall()
        conn.commit()
        staged = pq.read_table(stage_previous(conn, tmp_path / "prev")).to_pylist()
    first = dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.UTC)
    assert [g[:5] for g in got] == [r[:5] for r in (rows[1], rows[0], rows[2])]
    assert [g[5] for g in got] == [now, first, now]
    # read back as read_previous reads it: empty text is NULL
    assert {tuple(r.values()) for r in staged} == {(*(v if v != "" else None for v in g[:5]),
                                                    int(g[5].timestamp() * 1_000_000)) for g in got}
