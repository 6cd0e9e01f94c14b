"""The warehouse access layer (crm_knowledge.warehouse.db) against the real server."""

from __future__ import annotations

import psycopg
import pytest

from crm_knowledge.warehouse.db import (
    advisory_lock,
    advisory_unlock,
    connect,
    copy_arrow,
    copy_frame,
    copy_rows,
    hold_off_schema_changes,
    lock_schema_changes,
    read_frame,
    refresh_statistics,
    reloading,
    table_count,
    table_exists,
)

pytestmark = pytest.mark.warehouse


def test_connect_commits_unless_the_block_raised_and_names_itself(scratch_db):
    with connect(scratch_db, application_name="ckp-test") as conn:
        conn.execute("create table t (id int)")
        assert conn.execute("select current_setting('application_name')").fetchone()[0] == "ckp-test"
    with pytest.raises(RuntimeError), connect(scratch_db) as conn:
        conn.execute("insert into t values (1)")
        raise RuntimeError("boom")
    with connect(scratch_db) as conn:
        assert conn.closed is False
        assert table_count(conn, "public.t") == 0  # rolled back
    assert conn.closed


def test_table_exists(scratch_db):
    with connect(scratch_db) as conn:
        conn.execute("create schema s; create table s.present (id int); create view s.seen as select 1 as x")
        assert table_exists(conn, "s.present") and table_exists(conn, "s.seen")
        assert not table_exists(conn, "s.absent") and not table_exists(conn, "nowhere.absent")


def test_advisory_lock_excludes_a_second_session_until_released(scratch_db):
    with connect(scratch_db, autocommit=True) as first, connect(scratch_db, autocommit=True) as second:
        assert advisory_lock(first, "ckp.test") is True  # blocking form: acquired
        assert advisory_lock(second, "ckp.test", wait=False) is False
        assert advisory_lock(second, "ckp.other", wait=False) is True  # locks are per name
        advisory_unlock(first, "ckp.test")
        assert advisory_lock(second, "ckp.test", wait=False) is True


def test_transaction_lock_ends_with_the_transaction(scratch_db):
    with connect(scratch_db) as first, connect(scratch_db, autocommit=True) as second:
        assert advisory_lock(first, "ckp.tx", transaction=True) is True
        assert advisory_lock(second, "ckp.tx", wait=False, transaction=True) is False
        first.commit()
        assert advisory_lock(second, "ckp.tx", wait=False) is True


def test_catalog_writing_work_runs_alongside_itself_but_never_alongside_a_schema_change(scratch_db):
    """Loads (sequence restart) and statistics refreshes hold the schema-change lock shared: two at once are
    fine; a schema change (DDL, grants) waits for them, and they wait for (or, for statistics, skip) it."""
    with (connect(scratch_db) as load, connect(scratch_db) as other_load,
          connect(scratch_db, autocommit=True) as ddl):
        load.execute("create table public.t (id int)")
        load.commit()
        assert hold_off_schema_changes(load) is True
        assert hold_off_schema_changes(other_load, wait=False) is True  # shared with the other load
        assert advisory_lock(ddl, "crm_knowledge.schema_changes", wait=False, transaction=True) is False
        load.commit()
        other_load.commit()
        with ddl.transaction():
            lock_schema_changes(ddl)  # now free: the schema change holds it until its transaction ends
            assert hold_off_schema_changes(load, wait=False) is False
            load.rollback()
            before = load.execute("select coalesce(last_analyze, last_autoanalyze) from pg_stat_user_tables"
                                  " where relname = 't'").fetchone()[0]
            assert refresh_statistics(load, "public.t") is False  # skipped, not waiting: best effort
            load.commit()
        assert before is None
        assert load.execute("select last_analyze from pg_stat_user_tables where relname = 't'").fetchone()[0] is None
        assert refresh_statistics(load, "public.t") is True
        load.commit()
        assert load.execute("select last_analyze from pg_stat_user_tables where relname = 't'").fetchone()[0]


def test_copy_rows_in_and_read_frame_out(scratch_db):
    rows = [(1, "علی", None), (2, 'with "quotes", commas\nand a newline', 3.5)]
    with connect(scratch_db) as conn:
        conn.execute("create table c (id int, name text, score double precision)")
        assert copy_rows(conn, "copy c (id, name, score) from stdin", iter(rows)) == 2
        frame = read_frame(conn, "select * from c where id >= %(low)s order by id", {"low": 1})
    assert frame["id"].tolist() == [1, 2]
    assert frame["name"].tolist() == [rows[0][1], rows[1][1]]
    assert frame["score"].isna().tolist() == [True, False] and frame["score"].iloc[1] == 3.5


def test_copy_arrow_reads_text_as_arrow_strings_with_empty_text_null(scratch_db):
    rows = [("علی", ""), (None, 'with "quotes", commas\nand a newline')]
    with connect(scratch_db) as conn:
        conn.execute("create table a (k int, x text, y text)")
        copy_rows(conn, "copy a (k, x, y) from stdin", ((i, *r) for i, r in enumerate(rows)))
        table = copy_arrow(conn, "select x, y from a order by k", ["x", "y"])
        empty = copy_arrow(conn, "select x, y from a where false", ["x", "y"])
    assert table.to_pylist() == [{"x": "علی", "y": None}, {"x": None, "y": rows[1][1]}]
    assert empty.num_rows == 0 and empty.column_names == ["x", "y"]


def test_copy_frame_writes_nulls_and_keeps_empty_text(scratch_db):
    import pandas as pd

    frame = pd.DataFrame({"id": [1, 2, 3], "name": ["a,\"b\"", None, ""], "score": [0.5, float("nan"), 2.0]})
    with connect(scratch_db) as conn:
        conn.execute("create table t (id int, name text, score float8)")
        copy_frame(conn, "public.t", frame)
        rows = conn.execute("select id, name, score from t order by id").fetchall()
    assert rows == [(1, 'a,"b"', 0.5), (2, None, None), (3, "", 2.0)]


def test_reloading_replaces_the_contents_and_builds_the_indexes_again(scratch_db):
    """The old rows go, the secondary index is gone during the load and back after it, the primary key stays
    throughout, and a reader in another session sees the old contents until commit, then the new, never an
    empty table."""
    import pandas as pd

    index_names = "select indexname from pg_indexes where tablename = 't' order by 1"
    with connect(scratch_db) as conn:
        conn.execute("create schema s; create table s.t (id int primary key, k text); create index t_k on s.t (k);"
                     "insert into s.t select g, 'old' from generate_series(1, 100) g")
    with connect(scratch_db) as conn, connect(scratch_db, autocommit=True) as reader:
        reader.execute("set lock_timeout = '200ms'")
        hold_off_schema_changes(conn)
        with reloading(conn, ["s.t"]):
            assert [r[0] for r in conn.execute(index_names)] == ["t_pkey"]  # the constraint's index stays
            copy_frame(conn, "s.t", pd.DataFrame({"id": range(1, 51), "k": ["new"] * 50}))
        assert [r[0] for r in conn.execute(index_names)] == ["t_k", "t_pkey"]
        with pytest.raises(psycopg.errors.LockNotAvailable):  # a reader waits for the commit: no half state
            reader.execute("select count(*) from s.t")
        conn.commit()
        assert reader.execute("select k, count(*) from s.t group by k").fetchall() == [("new", 50)]
        analyzed = reader.execute("select reltuples from pg_class where relname = 't'").fetchone()[0]
    assert analyzed == 50  # statistics refreshed with the load
