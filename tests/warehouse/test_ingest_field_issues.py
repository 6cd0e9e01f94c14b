"""Keep every customer: a sibling unit's record with an invalid field (birth date
19505309) loads as received and reads NULL in staging; the problem is recorded per field in audit.field_issues
(source, batch, row, column, reason, no value) by ingest/field_issues.py before the quality gate, summarised in the
auditor's report, and a per-source threshold holds the batch, which only `ckp batches accept` (or a re-delivery
and `retire`) resolves."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest
from ckp_cli import ckp_env, run_ckp

from crm_knowledge.ingest import field_issues
from crm_knowledge.ingest.files import load_file
from crm_knowledge.ingest.registry import SourceConfigError, load_registry, parse_source
from crm_knowledge.settings import get_settings
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

UNIT_YML = ("name: sibling_leasing\nkind: sibling_unit\nunit: leasing\npath: siblings/leasing/*.csv\n"
            "format: csv\nencoding: utf-8\ndate_calendar: gregorian\ndate_format: '%Y%m%d'\n"
            "primary_key: source_record_id\nrequired_columns: [ID]\n"
            "columns:\n  ID: source_record_id\n  Name: full_name\n  Born: birth_date\n  Tel: phone\n")


@pytest.fixture()
def db(scratch_db):
    apply_ddl(scratch_db)
    return get_settings().server_url(psycopg.conninfo.conninfo_to_dict(scratch_db)["dbname"])


@pytest.fixture()
def unit(tmp_path):
    config_dir = tmp_path / "config"
    (config_dir / "sources").mkdir(parents=True)
    (config_dir / "sources" / "sibling_leasing.yml").write_text(UNIT_YML)
    (cfg,) = load_registry(config_dir)
    return cfg


def _file(local, name: str, n: int, bad: set[int]) -> Path:
    path = local.landing_dir / "siblings" / "leasing" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["ID,Name,Born,Tel"] + [
        f"L{i},Person {i},{'19505309' if i in bad else '19800101'},0912{i:07d}" for i in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def q(url, query, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def test_invalid_optional_field_keeps_the_record(db, unit, local):
    with psycopg.connect(db, autocommit=True) as conn:
        result = load_file(conn, unit, _file(local, "a.csv", 100, {7}), local)
        assert field_issues.check_new_batches(conn) == {}
        assert field_issues.check_new_batches(conn) == {}  # once per batch: a second call finds nothing new
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_rejected) == ("loaded", 100, 100, 0)
    assert q(db, "select count(*), count(birth_date) from raw.sibling_customers") == [(100, 100)]  # as received
    assert q(db, "select r.birth_date, util.parse_date(r.birth_date, c.date_calendar, c.date_format) "
                 "from raw.sibling_customers r join audit.batch_conventions c using (_batch_id) "
                 "where source_record_id = 'L7'".replace("using (_batch_id)", "on c.batch_id = r._batch_id")) \
        == [("19505309", None)]
    assert q(db, "select count(*) from raw.load_rejects") == [(0,)]
    (issue,) = q(db, "select batch_id, source_name, source_file, row_number, column_name, source_column, reason "
                     "from audit.field_issues")
    assert issue[:6] == (result.batch_id, "sibling_leasing", "a.csv", 7, "birth_date", "Born")
    assert "gregorian date in format %Y%m%d" in issue[6] and "19505309" not in issue[6]
    assert q(db, "select status, rows_field_issues, load_hold_reason from audit.load_batches") == \
        [("loaded", 1, None)]

    # the auditor's report counts them
    from crm_knowledge.quality.report import build_run_report

    page = build_run_report("field-issues", settings=local, url=db, since=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                            build_docs=False)
    html = page.read_text(encoding="utf-8")
    assert 'id="field-issues"' in html and "1 field(s) whose value did not convert" in html
    assert "19505309" not in html


def test_too_many_field_issues_hold_the_batch_until_accepted(db, unit, local):
    from crm_knowledge.quality.gate import _release

    with psycopg.connect(db, autocommit=True) as conn:
        # 2 of 20 (10%) in a small file is not enough to hold (fewer than MIN_FIELD_ISSUES_TO_HOLD) ...
        small = load_file(conn, unit, _file(local, "a.csv", 20, {4, 5}), local)
        assert field_issues.check_new_batches(conn) == {}
        # ... 5 of 40 (12.5%, above the 5% threshold) is
        result = load_file(conn, unit, _file(local, "b.csv", 40, {3, 9, 27, 28, 33}), local)
        held = field_issues.check_new_batches(conn)
        assert list(held) == [result.batch_id]
        assert "birth_date invalid in 5 of 40 rows (12.5%)" in held[result.batch_id] and "5.0%" in held[result.batch_id]
        assert q(db, "select batch_id, status, rows_loaded, rows_field_issues from audit.load_batches "
                     "order by started_at") == [(small.batch_id, "loaded", 20, 2), (result.batch_id, "held", 40, 5)]
        # the quality gate's release (after its checks pass) does not lift a hold decided at load
        assert _release(conn, result.batch_id) == "held"
    assert q(db, "select status from audit.load_batches order by started_at") == [("loaded",), ("held",)]

    env = ckp_env(WAREHOUSE_URL=db)
    listed = run_ckp("batches", "held", env=env, timeout=120)
    assert listed.returncode == 0 and result.batch_id in listed.stdout and "held at load" in listed.stdout
    refused = run_ckp("batches", "accept", "no-such-batch", "--reason", "x", env=env, timeout=120)
    assert refused.returncode == 1 and "no batch 'no-such-batch'" in refused.stderr
    reason = "INC-7: the unit has no birth dates before 1950"
    accepted = run_ckp("batches", "accept", result.batch_id, "--reason", reason, env=env, timeout=120)
    assert accepted.returncode == 0, accepted.stderr
    ((status, error, hold),) = q(db, "select status, error, load_hold_reason from audit.load_batches "
                                     "where batch_id = %s", result.batch_id)
    assert status == "loaded" and hold is None
    assert error.startswith("accepted with field issues: INC-7") and "(was: held at load" in error
    again = run_ckp("batches", "accept", result.batch_id, "--reason", "x", env=env, timeout=120)
    assert again.returncode == 1 and "only a batch held at load" in again.stderr


def test_policy_and_threshold_are_validated(tmp_path):
    bad = tmp_path / "x.yml"
    bad.write_text(UNIT_YML + "invalid_optional_field: null\n")  # gone: every source keeps its records
    with pytest.raises(SourceConfigError, match="key 'invalid_optional_field': unknown setting"):
        parse_source(bad)
    bad.write_text(UNIT_YML + "field_issue_threshold: 5\n")
    with pytest.raises(SourceConfigError, match="key 'field_issue_threshold'"):
        parse_source(bad)
    ok = tmp_path / "y.yml"
    ok.write_text(UNIT_YML + "field_issue_threshold: 0.02\n")
    assert parse_source(ok).field_issue_threshold == 0.02
    ok.write_text(UNIT_YML)
    assert parse_source(ok).field_issue_threshold == 0.05
