"""Data quality gates on a real Postgres: held batches, warnings, audit rows, layer gates, dbt results."""

from __future__ import annotations

import dataclasses
import json

import psycopg
import pytest

from crm_knowledge.quality import gate
from crm_knowledge.quality.gate import CriticalDataQualityError
from crm_knowledge.quality.suites import spec_for_relation
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

FORM_COLS = ("submission_id", "form_type", "submitted_at", "email", "phone", "national_id")


@pytest.fixture()
def db(scratch_db):
    apply_ddl(scratch_db)
    return scratch_db


@pytest.fixture()
def qsettings(settings, tmp_path):
    """Project settings with reports/results under a temporary home (the URL is passed explicitly)."""
    return dataclasses.replace(settings, home=tmp_path)


def open_batch(url: str, batch_id: str, rows: list[dict], source: str = "forms") -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            """insert into audit.load_batches (batch_id, source_name, source_kind, source_file, checksum,
                   rows_read, rows_loaded, status, finished_at)
               values (%s, %s, 'forms', %s, %s, %s, %s, 'loaded', now())""",
            (batch_id, source, f"forms/{batch_id}.jsonl", f"sha-{batch_id}", len(rows), len(rows)))
        for i, row in enumerate(rows, start=1):
            conn.execute(
                f"""insert into raw.form_submissions ({", ".join(FORM_COLS)}, _batch_id, _source_file,
                       _loaded_at, _row_number, _record_hash)
                   values ({", ".join(["%s"] * len(FORM_COLS))}, %s, %s, now(), %s, %s)""",
                (*[row.get(c) for c in FORM_COLS], batch_id, f"forms/{batch_id}.jsonl", i, f"h{i}"))


def good_row(i: int, **over) -> dict:
    row = {"submission_id": f"F{i:07d}", "form_type": "registration", "submitted_at": "2026-03-01T10:22:00+03:30",
           "email": f"customer{i}@example.ir", "phone": "09121234567", "national_id": "0499370899"}
    row.update(over)
    return row


def status_of(url: str, batch_id: str) -> tuple[str, str | None]:
    with psycopg.connect(url) as conn:
        return conn.execute("select status, error from audit.load_batches where batch_id = %s",
                            (batch_id,)).fetchone()


def test_critical_violation_holds_batch_then_fix_releases_it(db, qsettings):
    rows = [good_row(1), good_row(2), good_row(3, submission_id=None, email="secret.person@example.ir"),
            good_row(4)]
    open_batch(db, "b-crit", rows)

    with pytest.raises(CriticalDataQualityError) as exc:
        gate.validate_raw_batches("raw.form_submissions", ["b-crit"], "run-1", settings=qsettings, url=db)

    message = str(exc.value)
    assert "expect_column_values_to_not_be_null" in message
    assert "submission_id" in message
    assert "_row_number=3" in message
    assert "secret.person" not in message  # no personal values in the error
    status, error = status_of(db, "b-crit")
    assert status == "held"
    assert "submission_id" in error and "secret.person" not in error
    assert exc.value.result.held_batches == ["b-crit"]

    with psycopg.connect(db) as conn:
        run = conn.execute("select layer, suite, batch_id, success, critical_failures, action "
                           "from audit.dq_runs where pipeline_run_id = 'run-1'").fetchall()
        failed = conn.execute("select expectation, column_name, severity, unexpected_count, unexpected_sample "
                              "from audit.dq_results where not success and severity = 'critical'").fetchall()
    assert run == [("raw", "raw.form_submissions", "b-crit", False, 1, "held")]
    assert [(f[0], f[1], f[2], f[3]) for f in failed] == [
        ("expect_column_values_to_not_be_null", "submission_id", "critical", 1)]
    assert failed[0][4][0]["row"] == {"_row_number": 3}

    # The source owner corrects the row: re-validation releases the batch to staging.
    with psycopg.connect(db) as conn:
        conn.execute("update raw.form_submissions set submission_id = 'F0000003' where _batch_id = 'b-crit' "
                     "and _row_number = 3")
    result = gate.validate_raw_batches("raw.form_submissions", ["b-crit"], "run-2", settings=qsettings, url=db)
    assert result.success
    assert result.released_batches == ["b-crit"]
    assert status_of(db, "b-crit") == ("loaded", None)
    with psycopg.connect(db) as conn:
        action = conn.execute("select action, success from audit.dq_runs where pipeline_run_id = 'run-2'").fetchone()
    assert action == ("released", True)


def edited_forms_suite(qsettings, tmp_path, edit):
    """Settings whose suites are a copy of the project's with ``raw/form_submissions.json`` changed by `edit`."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(qsettings.expectations_dir, project / "expectations")
    path = project / "expectations" / "suites" / "raw" / "form_submissions.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))

    class Edited(type(qsettings)):
        @property
        def expectations_dir(self):
            return project / "expectations"

    return Edited(**{f.name: getattr(qsettings, f.name) for f in dataclasses.fields(qsettings)})


def test_suite_change_releases_held_batch(db, qsettings, tmp_path):
    """A held batch is released when the rule it broke is relaxed (here: the suite is edited)."""
    rows = [good_row(1), good_row(2, form_type="survey")]
    open_batch(db, "b-type", rows)
    with pytest.raises(CriticalDataQualityError, match="form_type"):
        gate.validate_raw_batches("form_submissions", "b-type", "run-1", settings=qsettings, url=db)
    assert status_of(db, "b-type")[0] == "held"

    # Accept 'survey' as a form type.
    def accept_survey(doc):
        for e in doc["expectations"]:
            if e.get("description", "").startswith("form_type is one of"):
                e["kwargs"]["unexpected_rows_query"] = e["kwargs"]["unexpected_rows_query"].replace(
                    "'erasure_request'", "'erasure_request', 'survey'")

    edited = edited_forms_suite(qsettings, tmp_path, accept_survey)
    result = gate.validate_raw_batches("form_submissions", "b-type", "run-2", settings=edited, url=db)
    assert result.released_batches == ["b-type"]
    assert status_of(db, "b-type")[0] == "loaded"


def test_warning_is_recorded_and_does_not_block(db, qsettings):
    rows = [good_row(1), good_row(2, email="not-an-address", phone="12"), good_row(3)]
    open_batch(db, "b-warn", rows)

    result = gate.validate_raw_batches("raw.form_submissions", ["b-warn"], "run-w", settings=qsettings, url=db)

    assert result.success and not result.held_batches
    assert status_of(db, "b-warn")[0] == "loaded"
    warned = {(o.expectation, o.column_name) for o in result.warnings}
    assert ("unexpected_rows_expectation", "email") in warned
    assert ("unexpected_rows_expectation", "phone") in warned
    with psycopg.connect(db) as conn:
        sample = conn.execute(
            "select unexpected_count, unexpected_sample from audit.dq_results "
            "where column_name = 'email' and not success").fetchone()
        run = conn.execute("select success, critical_failures, warnings, action from audit.dq_runs").fetchone()
    assert sample[0] == 1
    assert sample[1] == [{"row": {"_row_number": 2}}]
    assert run == (True, 0, len(result.warnings), "passed")


def test_audit_rows_match_the_suite(db, qsettings):
    open_batch(db, "b-ok", [good_row(i) for i in range(1, 6)])
    result = gate.validate_raw_batches("raw.form_submissions", ["b-ok"], "run-ok", settings=qsettings, url=db)
    n_expectations = len(spec_for_relation("raw.form_submissions", qsettings).expectations)

    with psycopg.connect(db) as conn:
        counts = conn.execute(
            "select count(*), count(*) filter (where r.success), count(*) filter (where r.batch_id = 'b-ok') "
            "from audit.dq_results r join audit.dq_runs d using (dq_run_id) where d.pipeline_run_id = 'run-ok'"
        ).fetchone()
        severities = conn.execute("select distinct severity from audit.dq_results").fetchall()
        history = conn.execute("select metric, column_name, value from audit.dq_metric_history "
                               "where scope = 'b-ok' order by metric, column_name").fetchall()
    # first batch of the source: no baseline yet, so only the suite's own expectations ran
    assert counts == (n_expectations, n_expectations, n_expectations)
    assert result.checks_run == n_expectations and result.checks_failed == 0
    assert {s[0] for s in severities} <= {"critical", "warning"}
    assert ("row_count", "", 5.0) in history
    assert ("null_rate", "email", 0.0) in history
    assert (qsettings.reports_dir / "data_docs" / "index.html").exists()


def test_data_docs_index_lists_only_the_latest_results(db, qsettings, monkeypatch):
    """The index must not re-read the whole (ever-growing) result store on every build."""
    from crm_knowledge.quality import context

    monkeypatch.setattr(context, "DATA_DOCS_INDEX_RESULTS", 2)
    names = ["batch-alpha", "batch-bravo", "batch-charlie"]
    for i, name in enumerate(names, start=1):
        open_batch(db, name, [good_row(10 * i + k) for k in range(1, 4)])
        gate.validate_raw_batches("raw.form_submissions", [name], f"run-{i}", settings=qsettings, url=db)
    index = (qsettings.reports_dir / "data_docs" / "index.html").read_text(encoding="utf-8")
    assert "batch-charlie" in index and "batch-bravo" in index and "batch-alpha" not in index
    # the older result's own page is still there (the auditor report links to it)
    with psycopg.connect(db) as conn:
        page, = conn.execute("select data_docs_path from audit.dq_runs where batch_id = 'batch-alpha'").fetchone()
    assert (qsettings.reports_dir / "data_docs" / page).exists()


def test_volume_anomaly_and_null_rate_drift_warn_against_history(db, qsettings):
    open_batch(db, "b-1", [good_row(i) for i in range(1, 21)])
    gate.validate_raw_batches("raw.form_submissions", ["b-1"], "run-1", settings=qsettings, url=db)
    # 2 rows after 20 (below 0.2x) and all e-mails missing (history: 0% nulls)
    open_batch(db, "b-2", [good_row(i, email=None) for i in range(21, 23)])

    result = gate.validate_raw_batches("raw.form_submissions", ["b-2"], "run-2", settings=qsettings, url=db)

    assert status_of(db, "b-2")[0] == "loaded"
    warned = {(o.expectation, o.column_name) for o in result.warnings}
    assert ("expect_table_row_count_to_be_between", None) in warned
    assert ("expect_column_values_to_not_be_null", "email") in warned
    volume = next(o for o in result.warnings if o.expectation == "expect_table_row_count_to_be_between")
    assert volume.observed_value == 2


def test_held_batch_does_not_become_the_volume_baseline(db, qsettings):
    open_batch(db, "b-1", [good_row(i) for i in range(1, 11)])
    gate.validate_raw_batches("raw.form_submissions", ["b-1"], "run-1", settings=qsettings, url=db)
    open_batch(db, "b-2", [good_row(100 + i, submission_id=None) for i in range(200)])
    with pytest.raises(CriticalDataQualityError):
        gate.validate_raw_batches("raw.form_submissions", ["b-2"], "run-2", settings=qsettings, url=db)
    open_batch(db, "b-3", [good_row(i) for i in range(300, 310)])
    result = gate.validate_raw_batches("raw.form_submissions", ["b-3"], "run-3", settings=qsettings, url=db)
    # compared with b-1 (10 rows), not with the held 200-row batch
    assert not [o for o in result.warnings if o.expectation == "expect_table_row_count_to_be_between"]


def test_only_given_batches_are_validated(db, qsettings):
    open_batch(db, "b-bad", [good_row(1, submission_id=None)])
    open_batch(db, "b-good", [good_row(2)])
    result = gate.validate_raw_batches("raw.form_submissions", ["b-good", "b-unknown"], "run-1",
                                       settings=qsettings, url=db)
    assert result.success
    assert status_of(db, "b-bad")[0] == "loaded"  # not validated in this call
    assert result.skipped_batches == {"b-unknown": "not in the ledger"}


MARTS_DDL = """
create schema if not exists marts;
create schema if not exists intermediate;
create table marts.dim_customers (customer_id text, source_record_count int, order_count int,
    total_revenue numeric, first_seen_at timestamptz, last_seen_at timestamptz, birth_year int,
    gender text, city text);
create table marts.customer_segments (customer_id text, rfm_segment text, value_tier text,
    churn_probability double precision, p_alive double precision, r_score smallint, f_score smallint,
    m_score smallint, predicted_clv numeric);
insert into marts.dim_customers values ('C1', 1, 2, 100, now() - interval '1 year', now(), 1980, 'f', 'x'),
                                      ('C2', 2, 0, 0, now() - interval '1 year', now(), 1990, 'm', 'y');
"""


def test_mart_critical_failure_raises(db, qsettings):
    with psycopg.connect(db) as conn:
        conn.execute(MARTS_DDL)
        # an unknown segment is a dbt test's business (accepted_values), not the gate's
        conn.execute("insert into marts.customer_segments values "
                     "('C1', 'champions', 'gold', 0.1, 0.9, 5, 5, 5, 10),"
                     "('C2', 'superstars', 'gold', 1.5, 1.2, 1, 1, 1, 1)")

    with pytest.raises(CriticalDataQualityError) as exc:
        gate.validate_layer("marts", "run-m", suites=["marts.customer_segments"], settings=qsettings, url=db)

    failed = {(o.expectation, o.column_name) for o in exc.value.result.critical_failures}
    assert failed == {("expect_column_values_to_be_between", "churn_probability"),
                      ("expect_column_values_to_be_between", "p_alive")}
    assert "customer_id=C2" in str(exc.value)
    with psycopg.connect(db) as conn:
        run = conn.execute("select layer, success, critical_failures from audit.dq_runs").fetchone()
    assert run == ("marts", False, 2)


def test_mart_totals_checks(db, qsettings):
    with psycopg.connect(db) as conn:
        conn.execute(MARTS_DDL)
        conn.execute("""
            create table marts.fct_orders (order_id text, customer_id text, total_amount numeric,
                ordered_at timestamptz);
            create table marts.fct_order_items (order_item_id text, order_id text, quantity int,
                line_amount numeric, is_line_amount_estimated boolean);
            insert into marts.fct_orders values ('O1', 'C1', 30, now() - interval '2 days'),
                                                ('O2', 'C9', 10, now() - interval '2 days');
            insert into marts.fct_order_items values ('I1', 'O1', 1, 10, false), ('I2', 'O1', 2, 20, false),
                                                     ('I3', 'O2', 1, 9, false);
        """)
    with pytest.raises(CriticalDataQualityError) as exc:
        gate.validate_layer("marts", "run-m", suites=["marts.fct_orders"], settings=qsettings, url=db)
    result = exc.value.result
    critical = {o.description for o in result.critical_failures}
    # O2's customer C9 is not in the customer view: a dbt relationships test, not a gate rule
    assert not any("customer view" in d for d in critical)
    # one order of two does not add up: a warning naming it, and the >1% share is critical
    mismatch = next(o for o in result.warnings if o.description == "order total equals the sum of its items")
    assert mismatch.unexpected_count == 1 and mismatch.sample_refs() == ["order_id=O2"]
    assert "at most 1% of orders have a total different from the sum of their items" in critical


def test_missing_relation_is_critical(db, qsettings):
    with pytest.raises(CriticalDataQualityError, match="does not exist"):
        gate.validate_layer("staging", "run-s", suites=["staging.stg_orders__products"], settings=qsettings,
                            url=db)
    result = gate.validate_layer("staging", "run-s2", suites=["staging.stg_orders__products"],
                                 settings=qsettings, url=db, raise_on_critical=False)
    assert [o.expectation for o in result.critical_failures] == ["relation_exists"]


def test_record_dbt_results(db, qsettings, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "run_results.json").write_text(json.dumps({
        "metadata": {"invocation_id": "inv-1"},
        "results": [
            {"unique_id": "test.crm_knowledge.unique_dim_customers_customer_id.abc", "status": "pass",
             "failures": 0, "message": None},
            {"unique_id": "test.crm_knowledge.not_null_fct_orders_customer_id.def", "status": "warn",
             "failures": 3, "message": "Got 3 results"},
            {"unique_id": "test.crm_knowledge.accepted_values_x.ghi", "status": "fail", "failures": 2,
             "message": "Got 2 results"},
            {"unique_id": "model.crm_knowledge.dim_customers", "status": "success"},
        ]}))
    (target / "manifest.json").write_text(json.dumps({"nodes": {
        "test.crm_knowledge.unique_dim_customers_customer_id.abc": {
            "name": "unique_dim_customers_customer_id", "column_name": "customer_id",
            "attached_node": "model.crm_knowledge.dim_customers", "test_metadata": {"name": "unique"},
            "config": {"severity": "ERROR"}, "original_file_path": "models/marts/dim_customers.yml"},
        "test.crm_knowledge.not_null_fct_orders_customer_id.def": {
            "name": "not_null_fct_orders_customer_id", "column_name": "customer_id",
            "attached_node": "model.crm_knowledge.fct_orders", "test_metadata": {"name": "not_null"},
            "config": {"severity": "WARN"}},
    }}))

    result = gate.record_dbt_results(target / "run_results.json", "run-d", settings=qsettings, url=db)

    assert result.checks_run == 3 and len(result.critical_failures) == 1 and len(result.warnings) == 1
    with psycopg.connect(db) as conn:
        runs = conn.execute("select layer, suite, success, critical_failures, warnings from audit.dq_runs "
                            "order by suite").fetchall()
        rows = conn.execute("select suite, expectation, column_name, severity, success, unexpected_count, "
                            "expectation_id from audit.dq_results order by expectation").fetchall()
        layers = dict(conn.execute("select expectation_id, observed_value->>'model_layer' from audit.dq_results"))
    # the report shows each test under the layer of its model's yml (none known without the manifest's path)
    assert layers == {"test.crm_knowledge.unique_dim_customers_customer_id.abc": "marts",
                      "test.crm_knowledge.not_null_fct_orders_customer_id.def": None,
                      "test.crm_knowledge.accepted_values_x.ghi": None}
    # one dq run per model and pipeline run (a test without a known model files under `dbt`)
    assert runs == [("dbt", "dbt", False, 1, 0), ("dbt", "dbt.dim_customers", True, 0, 0),
                    ("dbt", "dbt.fct_orders", True, 0, 1)]
    assert ("dbt.fct_orders", "dbt:not_null", "customer_id", "warning", False, 3,
            "test.crm_knowledge.not_null_fct_orders_customer_id.def") in rows
    assert ("dbt.dim_customers", "dbt:unique", "customer_id", "critical", True, 0,
            "test.crm_knowledge.unique_dim_customers_customer_id.abc") in rows


def test_record_dbt_results_is_idempotent_per_test_and_masks_values(db, qsettings, tmp_path):
    """A retried task replaces its tests' rows; a rebuilt model clears its build failure; no values kept."""
    target = tmp_path / "target"
    target.mkdir()
    test_uid = "test.crm_knowledge.unique_dim_customers_customer_id.abc"
    model_uid = "model.crm_knowledge.dim_customers"
    (target / "manifest.json").write_text(json.dumps({"nodes": {test_uid: {
        "name": "unique_dim_customers_customer_id", "column_name": "customer_id",
        "attached_node": model_uid, "test_metadata": {"name": "unique"}, "config": {"severity": "ERROR"}}}}))

    def record(*results):
        (target / "run_results.json").write_text(json.dumps({"metadata": {"invocation_id": "i"},
                                                             "results": list(results)}))
        gate.record_dbt_results(target / "run_results.json", "day-2026-11-20", settings=qsettings, url=db)
        with psycopg.connect(db) as conn:
            return (conn.execute("select suite, success, critical_failures from audit.dq_runs").fetchall(),
                    conn.execute("select expectation, success, unexpected_count, observed_value ->> 'message' "
                                 "from audit.dq_results order by expectation").fetchall())

    failing = {"unique_id": test_uid, "status": "fail", "failures": 2, "message": "Got 2 results"}
    first = record(failing)
    assert first == ([("dbt.dim_customers", False, 1)], [("dbt:unique", False, 2, "Got 2 results")])
    assert record(failing) == first  # Airflow retry: not counted twice
    broken = record({"unique_id": model_uid, "status": "error",
                     "message": "DETAIL:  Key (email)=(ali.rezaei@example.ir) already exists."})
    assert broken[0] == [("dbt.dim_customers", False, 2)]
    assert ("dbt:model_build", False, None, "DETAIL:  Key (email)=(xxx.xxxxxx@xxxxxxx.xx) already exists.") \
        in broken[1]
    rebuilt = record({"unique_id": model_uid, "status": "success"},
                     {"unique_id": test_uid, "status": "pass", "failures": 0})
    assert rebuilt == ([("dbt.dim_customers", True, 0)], [("dbt:unique", True, 0, None)])


def test_pipeline_validates_new_and_held_batches_of_every_source(db, qsettings):
    from crm_knowledge.quality import pipeline

    open_batch(db, "forms-1", [good_row(1), good_row(2, submission_id=None)])
    with psycopg.connect(db) as conn:
        conn.execute(
            """insert into audit.load_batches (batch_id, source_name, source_kind, source_file, rows_read,
                   rows_loaded, status) values ('orders.orders-1', 'orders.orders', 'orders_db', 'window', 2, 2,
                   'loaded')""")
        conn.execute(
            """insert into raw.orders__orders (order_id, customer_id, ordered_at, status, channel, total_amount,
                   currency, updated_at, _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
               values (1, 10, now() - interval '1 day', 'paid', 'web', 100, 'IRR', now(), 'orders.orders-1', 'w',
                       now(), 1, 'h'),
                      (2, 11, now() - interval '1 day', 'paid', 'web', -5, 'IRR', now(), 'orders.orders-1', 'w',
                       now(), 2, 'h')""")

    out = pipeline.check_new_raw_batches("run-p1", settings=qsettings, url=db)

    assert set(out["tables"]) == {"raw.form_submissions", "raw.orders__orders"}
    assert sorted(out["held_batches"]) == ["forms-1", "orders.orders-1"]
    orders = out["tables"]["raw.orders__orders"]
    assert any("total_amount" in f and "_row_number=2" in f for f in orders["critical_failures"])
    json.dumps(out)  # XCom-able

    # next run: nothing new, held batches re-validated; the corrected one is released
    with psycopg.connect(db) as conn:
        conn.execute("update raw.orders__orders set total_amount = 5 where order_id = 2")
    again = pipeline.check_new_raw_batches("run-p2", settings=qsettings, url=db)
    assert again["released_batches"] == ["orders.orders-1"] and again["held_batches"] == ["forms-1"]
    assert status_of(db, "orders.orders-1")[0] == "loaded"
    assert pipeline.check_new_raw_batches("run-p3", settings=qsettings, url=db, include_held=False)["tables"] == {}

    with pytest.raises(CriticalDataQualityError):
        pipeline.check_new_raw_batches("run-p4", settings=qsettings, url=db, raise_on_held=True)

    reports = pipeline.build_reports("run-p2", settings=qsettings, url=db)
    page = (qsettings.reports_dir / "runs" / "run-p2" / "index.html")
    assert reports["report"] == str(page) and "orders.orders-1" in page.read_text()


def test_check_layers_records_every_layer_before_raising(db, qsettings):
    from crm_knowledge.quality import pipeline

    with pytest.raises(CriticalDataQualityError) as exc:
        pipeline.check_layers(["staging", "marts"], "run-l", settings=qsettings, url=db)
    assert "customer_segments" not in str(exc.value)  # built after scoring: not checked here
    with psycopg.connect(db) as conn:
        layers = dict(conn.execute("select layer, count(*) from audit.dq_runs where pipeline_run_id = 'run-l' "
                                   "group by layer").fetchall())
    assert layers["staging"] == 8 and layers["marts"] == 4


# --- cost follows the batch, not the table -------------------------------------------------------------

def planned_rows(url: str, query: str) -> float:
    with psycopg.connect(url) as conn:
        return conn.execute("explain (format json) " + query).fetchone()[0][0]["Plan"]["Plan Rows"]


def test_measure_counts_rows_and_null_rates_in_one_scan(db):
    open_batch(db, "b-m", [good_row(1), good_row(2, email=None), good_row(3, email=None, phone=None),
                           good_row(4)])
    with psycopg.connect(db) as conn:
        query = "select * from raw.form_submissions where _batch_id = 'b-m'"
        n, rates = gate._measure(conn, query, ["email", "phone", "no_such_column", "email"])
        empty = gate._measure(conn, "select * from raw.form_submissions where _batch_id = 'none'", ["email"])
    assert n == 4 and rates == {"email": 0.5, "phone": 0.25}  # a column the relation lacks is left out
    assert empty == (0, {"email": 0.0})


def test_stale_statistics_of_a_new_batch_are_refreshed_once(db, qsettings, monkeypatch):
    """A batch loaded after the last ANALYZE is planned as ~1 row (GX's uniqueness join then costs rows²):
    the gate analyses the table's batch column once per call, and not when the statistics know the batch."""
    monkeypatch.setattr(gate, "STALE_STATS_MIN_ROWS", 20)
    calls = []
    real = gate._refresh_stale_statistics
    monkeypatch.setattr(gate, "_refresh_stale_statistics",
                        lambda conn, spec, query, n, columns: calls.append((n, real(conn, spec, query, n, columns)))
                        or calls[-1][1])
    with psycopg.connect(db, autocommit=True) as conn:  # no autoanalyze racing the test
        conn.execute("alter table raw.form_submissions set (autovacuum_enabled = false)")
    open_batch(db, "b-s1", [good_row(i) for i in range(1, 201)])
    open_batch(db, "b-s2", [good_row(i) for i in range(201, 401)])
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("analyze raw.form_submissions")
    open_batch(db, "b-s3", [good_row(i) for i in range(401, 601)]
               + [good_row(1000 + i, submission_id="F-DUP") for i in range(2)])
    stale = "select * from raw.form_submissions where _batch_id = 'b-s3'"
    assert planned_rows(db, stale) < 20  # unknown to the statistics
    assert planned_rows(db, "select * from raw.form_submissions where _batch_id = 'b-s1'") > 100

    # b-s1 is known (no ANALYZE); b-s3 is not: analysed, and its duplicates (a warning) are still found
    result = gate.validate_raw_batches("raw.form_submissions", ["b-s1", "b-s3"], "run-s", settings=qsettings,
                                       url=db)
    assert calls == [(200, False), (202, True)]
    assert planned_rows(db, stale) > 100
    assert [(s.batch_id, s.action, s.row_count) for s in result.scopes] == [("b-s1", "passed", 200),
                                                                          ("b-s3", "passed", 202)]
    dup = next(o for o in result.warnings if o.expectation == "expect_column_values_to_be_unique")
    assert dup.batch_id == "b-s3" and dup.unexpected_count == 2
    assert sorted(dup.sample_refs()) == ["_row_number=201", "_row_number=202"]

    # the statistics know b-s2 now: nothing to refresh
    calls.clear()
    gate.validate_raw_batches("raw.form_submissions", ["b-s2"], "run-s2", settings=qsettings, url=db)
    assert calls == [(200, False)]


def test_stale_statistics_check_keeps_small_batches_and_skips_analyze_without_lock(db, qsettings, monkeypatch):
    """Small batches are never analysed for; a table locked by someone else is validated without waiting."""
    open_batch(db, "b-small", [good_row(i) for i in range(1, 6)])
    spec = spec_for_relation("raw.form_submissions", qsettings)
    query = "select * from raw.form_submissions where _batch_id = 'b-small'"
    with psycopg.connect(db) as conn:
        assert gate._refresh_stale_statistics(conn, spec, query, 5, ["_batch_id"]) is False  # too few rows
    monkeypatch.setattr(gate, "STALE_STATS_MIN_ROWS", 2)
    monkeypatch.setattr(gate, "STATS_LOCK_TIMEOUT", "100ms")
    with psycopg.connect(db) as locker, psycopg.connect(db) as conn:
        locker.execute("lock table raw.form_submissions in share update exclusive mode")
        assert gate._refresh_stale_statistics(conn, spec, query, 10**6, ["_batch_id"]) is False
        assert conn.execute("select 1").fetchone() == (1,)  # the connection is still usable
    with psycopg.connect(db) as conn:
        assert gate._refresh_stale_statistics(conn, spec, query, 10**6, ["_batch_id"]) is True
        assert gate._refresh_stale_statistics(conn, spec, query, 5, ["_batch_id"]) is False  # planned right now


def test_order_export_customer_lookup_matches_customer_ids_as_text(db, qsettings):
    """The unknown-customer check probes the customers' index (no scan of raw.orders__customers) and keeps
    the text semantics of the original `cast(customer_id as text) = btrim(customer_source_id)` join."""
    with psycopg.connect(db) as conn:
        conn.execute(
            """insert into raw.orders__customers (customer_id, _batch_id, _source_file, _loaded_at, _row_number,
                   _record_hash)
               select id, 'c-1', 'w', now(), id, 'h' from unnest(array[0, 7, 10, 2147483647, -5]) id""")
        conn.execute(
            """insert into audit.load_batches (batch_id, source_name, source_kind, source_file, rows_read,
                   rows_loaded, status) values ('x-1', 'order_export_kiosk', 'order_export', 'x.csv', 14, 14,
                   'loaded')""")
        ids = ["10", " 7 ", "010", "+7", "7.0", "abc", "99999999999999999999", "", None, "0", "-0", "2147483647",
               "-5", "11"]
        conn.cursor().executemany(
            """insert into raw.order_exports (shop, order_id, customer_source_id, order_date, quantity, amount,
                   items, _batch_id, _source_file, _loaded_at, _row_number, _record_hash)
               values ('kiosk', %s, %s, current_date - 1, 1, 10, 'sku1: 2', 'x-1', 'x.csv', now(), %s, 'h')""",
            [(f"K{i}", cid, i) for i, cid in enumerate(ids, start=1)])
        old_query = ("select b._row_number from raw.order_exports as b left join (select distinct cast(customer_id "
                     "as text) as customer_id from raw.orders__customers) c on c.customer_id = "
                     "btrim(b.customer_source_id) where nullif(btrim(b.customer_source_id), '') is not null and "
                     "c.customer_id is null")
        expected = sorted(r[0] for r in conn.execute(old_query))
    assert expected == [3, 4, 5, 6, 7, 11, 14]  # 010, +7, 7.0, abc, 2e19, -0, 11

    result = gate.validate_raw_batches("raw.order_exports", ["x-1"], "run-x", settings=qsettings, url=db)
    unknown = next(o for s in result.scopes for o in s.outcomes
                   if o.description and "customer exists" in o.description)
    assert not unknown.success and unknown.severity == "warning", unknown
    assert unknown.unexpected_count == len(expected), (unknown.observed_value, unknown.unexpected_sample)
    assert sorted(r["row"]["_row_number"] for r in unknown.unexpected_sample) == expected
    spec = spec_for_relation("raw.order_exports", qsettings)
    lookup = next(e for e in spec.expectations if "customer exists" in (e.get("description") or ""))
    assert "raw.orders__customers" in lookup["kwargs"]["unexpected_rows_query"]
    with psycopg.connect(db) as conn:  # with many customers: index probes per exported order, no scan
        conn.execute("""insert into raw.orders__customers (customer_id, _batch_id, _source_file, _loaded_at,
                            _row_number, _record_hash)
                        select id, 'c-2', 'w', now(), id, 'h' from generate_series(100, 50099) id""")
        conn.execute("analyze raw.orders__customers")
        conn.execute("analyze raw.order_exports")
        plan = "\n".join(r[0] for r in conn.execute(
            "explain " + lookup["kwargs"]["unexpected_rows_query"].replace(
                "{batch}", "(select * from raw.order_exports where _batch_id = 'x-1')")))
    assert "Seq Scan on orders__customers" not in plan


def test_a_held_batch_can_be_retired_and_is_then_left_alone(db, qsettings, monkeypatch, capsys):
    """`ckp batches held | retire`: a held batch a corrected re-delivery replaced is set aside for good."""
    from crm_knowledge.cli import main as ckp
    from crm_knowledge.quality.pipeline import batches_to_validate

    open_batch(db, "b-bad", [good_row(1), good_row(2, submission_id=None)])
    open_batch(db, "b-fine", [good_row(3)])
    with pytest.raises(CriticalDataQualityError):
        gate.validate_raw_batches("raw.form_submissions", ["b-bad", "b-fine"], "run-1", settings=qsettings, url=db)
    monkeypatch.setenv("WAREHOUSE_URL", db)
    assert ckp(["batches", "held"]) == 0
    assert capsys.readouterr().out.startswith("b-bad\tforms\tforms/b-bad.jsonl\t2 rows")
    # refused: no reason, a batch that is not held, a batch that does not exist
    assert ckp(["batches", "retire", "b-bad", "--reason", " "]) == 1
    assert ckp(["batches", "retire", "b-fine", "--reason", "x"]) == 1
    assert ckp(["batches", "retire", "b-nope", "--reason", "x"]) == 1
    assert status_of(db, "b-bad")[0] == "held" and status_of(db, "b-fine")[0] == "loaded"
    assert batches_to_validate(db) == {"raw.form_submissions": ["b-bad"]}

    assert ckp(["batches", "retire", "b-bad", "--reason", "replaced by forms/b-bad-corrected.jsonl"]) == 0
    status, error = status_of(db, "b-bad")
    assert status == "retired"
    assert error.startswith("retired: replaced by forms/b-bad-corrected.jsonl (was: held by data quality gate")
    assert batches_to_validate(db) == {}  # never re-checked again
    assert ckp(["batches", "retire", "b-bad", "--reason", "again"]) == 1


def test_retired_status_reaches_a_ledger_created_before_it_existed(scratch_db):
    """The ledger's status check is widened on existing tables by the DDL (no migration step needed)."""
    with psycopg.connect(scratch_db) as conn:
        conn.execute("create schema audit")
        conn.execute("""create table audit.load_batches (batch_id text primary key, source_name text not null,
            source_kind text not null, source_file text, window_start timestamptz, window_end timestamptz,
            checksum text, rows_read bigint not null default 0, rows_loaded bigint not null default 0,
            rows_rejected bigint not null default 0, rows_duplicate bigint not null default 0,
            status text not null check (status in ('running', 'loaded', 'quarantined', 'failed', 'held')),
            error text, started_at timestamptz not null default now(), finished_at timestamptz)""")
    apply_ddl(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        conn.execute("insert into audit.load_batches (batch_id, source_name, source_kind, status) "
                     "values ('b', 'forms', 'forms', 'retired')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into audit.load_batches (batch_id, source_name, source_kind, status) "
                         "values ('c', 'forms', 'forms', 'archived')")


def test_a_daily_slice_the_statistics_do_not_know_is_analysed_first(db, qsettings, monkeypatch):
    """The rows a daily run wrote into a mart after its last ANALYZE are planned as ~1 row (the 1M benchmark's
    day: the check of orders' totals against their items then ran for minutes as a nested loop): the gate
    analyses the columns the slice is chosen by first, and not when the statistics know the rows."""
    from crm_knowledge.run_mode import RunMode

    monkeypatch.setattr(gate, "STALE_STATS_MIN_ROWS", 20)
    calls = []
    real = gate._refresh_stale_statistics
    monkeypatch.setattr(gate, "_refresh_stale_statistics",
                        lambda conn, spec, query, n, columns: calls.append((n, columns, real(conn, spec, query, n,
                                                                                              columns)))
                        or calls[-1][2])
    with psycopg.connect(db) as conn:
        conn.execute(MARTS_DDL)
        conn.execute("""
            create table marts.fct_orders (order_id text, customer_id text, total_amount numeric,
                ordered_at timestamptz, staged_at timestamptz) with (autovacuum_enabled = false);
            create table marts.fct_order_items (order_item_id text, order_id text, quantity int,
                line_amount numeric, is_line_amount_estimated boolean, staged_at timestamptz);
            insert into marts.fct_orders select 'O' || i, 'C1', 10, now() - interval '2 days',
                now() - interval '2 days' from generate_series(1, 200) i;
            insert into marts.fct_order_items select 'I' || i, 'O' || i, 1, 10, false, now() - interval '2 days'
                from generate_series(1, 300) i;
            analyze marts.fct_orders;
        """)
        since = conn.execute("select now() - interval '1 day'").fetchone()[0].isoformat()
        conn.execute("insert into marts.fct_orders select 'O' || i, 'C1', 10, now(), now() "
                     "from generate_series(201, 300) i")
    today = f"select * from marts.fct_orders where staged_at >= cast('{since}' as timestamptz)"
    assert planned_rows(db, today) < 20  # unknown to the statistics
    result = gate.validate_layer("marts", "run-a1", suites=["marts.fct_orders"], settings=qsettings, url=db,
                                 mode=RunMode("incremental", since))
    assert calls == [(100, ["staged_at"], True)] and planned_rows(db, today) > 50
    assert result.success and result.scopes[0].row_count == 100  # the new orders, their totals match
    calls.clear()  # known now: nothing to refresh
    gate.validate_layer("marts", "run-a2", suites=["marts.fct_orders"], settings=qsettings, url=db,
                        mode=RunMode("incremental", since))
    assert calls == [(100, ["staged_at"], False)]


def test_daily_run_checks_the_rows_it_wrote_and_keys_on_the_whole_table(db, qsettings):
    """A daily run (crm_knowledge.run_mode) validates the rows written since it began: an old bad order is not
    re-checked, a new order re-using an old order's key is caught by the whole-table SQL uniqueness check; the
    weekly run checks every row. Each run's scope is recorded for the auditor."""
    from crm_knowledge.run_mode import RunMode

    with psycopg.connect(db) as conn:
        conn.execute(MARTS_DDL)
        conn.execute("""
            create table marts.fct_orders (order_id text, customer_id text, total_amount numeric,
                ordered_at timestamptz, staged_at timestamptz);
            create table marts.fct_order_items (order_item_id text, order_id text, quantity int,
                line_amount numeric, is_line_amount_estimated boolean, staged_at timestamptz);
            insert into marts.fct_orders values
                ('O1', 'C1', 30, now() - interval '2 days', now() - interval '2 days'),
                ('O2', 'C9', 10, now() - interval '2 days', now() - interval '2 days');
            insert into marts.fct_order_items values
                ('I1', 'O1', 1, 10, false, now() - interval '2 days'),
                ('I2', 'O1', 2, 20, false, now() - interval '2 days'),
                ('I3', 'O2', 1, 9, false, now() - interval '2 days');
        """)
        since = conn.execute("select now() - interval '1 day'").fetchone()[0].isoformat()
        conn.execute("insert into marts.fct_orders values ('O3', 'C1', 5, now(), now())")
        conn.execute("insert into marts.fct_order_items values ('I4', 'O3', 1, 5, false, now())")
    daily = RunMode("incremental", since)
    clean = gate.validate_layer("marts", "run-d1", suites=["marts.fct_orders"], settings=qsettings, url=db,
                                mode=daily)
    scope = clean.scopes[0]
    assert scope.scope == f"rows written since {since}" and scope.row_count == 1  # O3 only: O2 not re-checked
    assert clean.success
    unique = next(o for o in scope.outcomes if o.expectation == "ckp_sql:key_unique_in_whole_table")
    assert unique.success and unique.observed_value == {"duplicated_keys": 0}

    with psycopg.connect(db) as conn:  # today's run writes an order under the key of an old one
        conn.execute("insert into marts.fct_orders values ('O1', 'C1', 30, now(), now())")
    with pytest.raises(CriticalDataQualityError) as exc:
        gate.validate_layer("marts", "run-d2", suites=["marts.fct_orders"], settings=qsettings, url=db, mode=daily)
    failed = exc.value.result.critical_failures
    assert [(o.expectation, o.unexpected_count) for o in failed] == [("ckp_sql:key_unique_in_whole_table", 1)]

    with pytest.raises(CriticalDataQualityError) as exc:  # weekly: every row, O2's old mismatch too
        gate.validate_layer("marts", "run-w", suites=["marts.fct_orders"], settings=qsettings, url=db,
                            mode=RunMode("full"))
    weekly = exc.value.result.scopes[0]
    assert weekly.scope == "whole table" and weekly.row_count == 4
    assert any(o.sample_refs() == ["order_id=O2"] for o in weekly.warnings)
    with psycopg.connect(db) as conn:
        recorded = dict(conn.execute("select pipeline_run_id, scope from audit.dq_runs where suite = 'marts.fct_orders'"
                                     " and pipeline_run_id like 'run-%'").fetchall())
    assert recorded == {"run-d1": f"rows written since {since}", "run-d2": f"rows written since {since}",
                        "run-w": "whole table"}
    from crm_knowledge.quality import report

    page = report.build_run_report("run-d1", settings=qsettings, url=db).read_text(encoding="utf-8")
    scopes = page[page.index('id="scopes"'):].split("</table>")[0]
    assert "marts.fct_orders" in scopes and f"rows written since {since}" in scopes


# --- each check runs once and fetches only what is recorded ----------------------------------------------

def recorded_results(url: str, pipeline_run_id: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """select r.expectation, r.column_name, r.severity, r.success, r.observed_value, r.unexpected_count,
                      r.unexpected_percent, r.unexpected_sample, r.batch_id, r.expectation_id, r.description
                 from audit.dq_results r join audit.dq_runs d using (dq_run_id)
                where d.pipeline_run_id = %s order by r.expectation_id, r.expectation, r.column_name""",
            (pipeline_run_id,)).fetchall()


def test_checks_run_once_and_record_what_gx_records(db, qsettings, tmp_path, monkeypatch):
    """More offending rows than the sample size: the full count and share, at most SAMPLE_SIZE samples, the
    same audit rows as GX's own evaluation (COMPLETE result format, GX's UnexpectedRowsExpectation), and
    every row check's query runs once (a counter the check's SQL bumps per row it reads; GX ran it twice)."""
    from crm_knowledge.quality import row_checks
    from crm_knowledge.quality.results import SAMPLE_SIZE

    def add_counted_check(doc):
        doc["expectations"].append({
            "type": "unexpected_rows_expectation", "id": "00000000-0000-4000-8000-00000000c0de",
            "kwargs": {"unexpected_rows_query": "select _row_number, email from {batch} where ckp_test.tick()"},
            "meta": {"severity": "warning", "column": "email"}, "description": "every row, counted"})

    edited = edited_forms_suite(qsettings, tmp_path, add_counted_check)
    with psycopg.connect(db) as conn:
        conn.execute("create schema ckp_test; create sequence ckp_test.ticks")
        conn.execute("create function ckp_test.tick() returns boolean language sql volatile "
                     "as $$ select nextval('ckp_test.ticks') > 0 $$")
    n = SAMPLE_SIZE + 15
    open_batch(db, "b-many", [good_row(i, form_type="survey" if i > 1 else "registration",
                                       email=f"nobody{i}.example" if i % 4 else f"c{i}@example.ir",
                                       submission_id=None if i % 5 == 0 else f"F{i % 10}")
                              for i in range(1, n + 1)])

    def ticks() -> int:
        with psycopg.connect(db) as conn:
            return conn.execute("select last_value from ckp_test.ticks").fetchone()[0]

    # GX's own evaluation, as the gate asked for it before: every check through GX, COMPLETE.
    with monkeypatch.context() as m:
        m.setattr(row_checks, "split_suite", lambda suite: (suite, []))
        m.setattr(gate, "_result_format", lambda spec: {
            "result_format": "COMPLETE", "unexpected_index_column_names": list(spec.row_id),
            "partial_unexpected_count": SAMPLE_SIZE, "return_unexpected_index_query": False})
        with pytest.raises(CriticalDataQualityError):
            gate.validate_raw_batches("form_submissions", "b-many", "run-gx", settings=edited, url=db)
    assert ticks() == 2 * n  # GX: count(*) over the check, then the check itself
    with pytest.raises(CriticalDataQualityError):
        gate.validate_raw_batches("form_submissions", "b-many", "run-gate", settings=edited, url=db)
    assert ticks() == 3 * n  # the gate: once

    by_gx, by_gate = recorded_results(db, "run-gx"), recorded_results(db, "run-gate")
    assert by_gate == by_gx
    outcomes = {(r[0], r[1], r[10]): r for r in by_gate}
    counted = outcomes[("unexpected_rows_expectation", "email", "every row, counted")]
    assert counted[5] == n and counted[6] == pytest.approx(100.0) and len(counted[7]) == SAMPLE_SIZE
    assert counted[7][0] == {"row": {"_row_number": 1}, "values": {"email": "xxxxxx9.xxxxxxx"}}  # masked
    form_type = next(r for r in by_gate if r[0] == "unexpected_rows_expectation" and r[1] == "form_type")
    assert form_type[5] == n - 1 and form_type[6] == pytest.approx(100.0 * (n - 1) / n)
    assert len(form_type[7]) == SAMPLE_SIZE
    not_null = outcomes[("expect_column_values_to_not_be_null", "submission_id", None)]
    assert not_null[5] == n // 5 and not not_null[3] and len(not_null[7]) == n // 5
    unique = outcomes[("expect_column_values_to_be_unique", "submission_id", None)]
    assert unique[5] > SAMPLE_SIZE and len(unique[7]) == SAMPLE_SIZE
    # nothing personal reached the stored validation results (Data Docs)
    stored = "".join(p.read_text() for p in (qsettings.home / "gx" / "validations").rglob("*.json"))
    assert "run-gate" in stored and "nobody" not in stored and "example" not in stored


def _rows_sent_to_gx() -> tuple[list[int], object]:
    """(a list every data query GX runs appends its returned row count to, the listener to remove)."""
    import sqlalchemy as sa

    counts: list[int] = []

    def after(conn, cursor, statement, parameters, context, executemany):
        # a statement that returns rows and reads data (not the catalog: a column list has a row per column)
        if cursor.description is not None and "pg_catalog." not in statement:
            counts.append(cursor.rowcount)

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", after)
    return counts, after


def test_gx_is_sent_no_more_rows_than_it_records(db, qsettings):
    """GX 1.x reads a query asset's columns by running the query and fetching every row: each validation used
    to copy its whole scope (a raw batch, a table, a daily slice) into the gate's process (6.5-7 GB at 1M). The
    gate hands GX tables and scope views instead, so no statement of GX's returns more than the sample it
    records; the views are gone afterwards, a view a killed gate left behind (its lock released with its session)
    is dropped by the next gate, and a running gate's view (its lock held) is kept."""
    import datetime as dt

    import sqlalchemy as sa

    from crm_knowledge.quality import scope_views
    from crm_knowledge.quality.results import SAMPLE_SIZE
    from crm_knowledge.run_mode import RunMode

    n = 300
    open_batch(db, "b-big", [good_row(i) for i in range(1, n + 1)])
    with psycopg.connect(db) as conn:
        conn.execute(MARTS_DDL)
        conn.execute("""
            create table marts.fct_orders (order_id text, customer_id text, total_amount numeric,
                ordered_at timestamptz, staged_at timestamptz);
            insert into marts.fct_orders
                select 'O' || g, 'C' || g, 10, now() - interval '2 days', now() - interval '2 days'
                from generate_series(1, 300) g;
            insert into marts.fct_orders
                select 'N' || g, 'C' || g, 10, now(), now() from generate_series(1, 300) g;
            create table marts.fct_order_items (order_item_id text, order_id text, quantity int,
                line_amount numeric, is_line_amount_estimated boolean, staged_at timestamptz);
            insert into marts.fct_order_items select 'I' || order_id, order_id, 1, 10, false, staged_at
                from marts.fct_orders;
            create view quality_scopes.scope_20261101000000_0123abcd as select 1 as left_by_a_killed_gate;
        """)
        since = conn.execute("select now() - interval '1 day'").fetchone()[0].isoformat()
        killed = scope_views.new_name(dt.datetime.now(dt.UTC))  # a minute old, its gate killed: no lock held
        conn.execute(f"create view quality_scopes.{killed} as select 1")
        conn.commit()
    # another gate's view, in use right now: its session holds the view's lock for the whole test
    running = psycopg.connect(db, autocommit=True)
    live = scope_views.new_name(dt.datetime.now(dt.UTC))
    running.execute("select pg_advisory_lock(hashtext(%s))", (scope_views.lock_key(live),))
    running.execute(f"create view quality_scopes.{live} as select 1")

    counts, listener = _rows_sent_to_gx()
    try:
        raw = gate.validate_raw_batches("form_submissions", "b-big", "run-big", settings=qsettings, url=db)
        weekly = gate.validate_layer("marts", "run-w", suites=["marts.fct_orders"], settings=qsettings, url=db,
                                     mode=RunMode("full"))
        daily = gate.validate_layer("marts", "run-d", suites=["marts.fct_orders"], settings=qsettings, url=db,
                                    mode=RunMode("incremental", since))
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", listener)
        running.close()

    assert raw.success and raw.scopes[0].row_count == n and raw.checks_run > 5
    assert weekly.scopes[0].row_count == 2 * n and daily.scopes[0].row_count == n
    assert len(counts) > 20  # GX ran its metrics through SQLAlchemy
    assert max(counts) <= SAMPLE_SIZE, sorted(counts)[-5:]  # before: a statement returned all n (or 2n) rows
    with psycopg.connect(db) as conn:
        views = {v for (v,) in conn.execute("select viewname from pg_views where schemaname = 'quality_scopes'")}
    assert views == {live}  # the gate's own views dropped, the killed gates' too; a live one (another gate's) kept


def test_a_check_failing_in_the_database_is_critical_and_in_the_data_docs(db, qsettings):
    """A row check whose SQL fails (here: a relation it joins is missing) is a critical failure with the
    database's message, and the Data Docs still build with that run's page: the error result's shape used to
    break GX's renderer (a None traceback), so the site was not rebuilt for exactly the failing run."""
    with psycopg.connect(db) as conn:
        conn.execute(MARTS_DDL)
        conn.execute("create table marts.fct_orders (order_id text, customer_id text, total_amount numeric, "
                     "ordered_at timestamptz, staged_at timestamptz); "
                     "insert into marts.fct_orders values ('O1', 'C1', 30, now(), now())")  # no fct_order_items
    with pytest.raises(CriticalDataQualityError, match="fct_order_items") as exc:
        gate.validate_layer("marts", "run-broken", suites=["marts.fct_orders"], settings=qsettings, url=db)
    result = exc.value.result
    failed = [o for o in result.critical_failures if o.expectation == "unexpected_rows_expectation"]
    assert failed and "does not exist" in failed[0].observed_value["error"]
    page = qsettings.reports_dir / "data_docs" / result.scopes[0].data_docs_page
    assert result.data_docs_index is not None and page.is_file()
    assert "fct_order_items" in page.read_text(encoding="utf-8")


def test_a_whole_table_share_is_checked_on_the_whole_table_in_a_daily_run(db, qsettings):
    """`customer_identity_map`'s resolved share (at least 80% of the candidates resolved) is a property of the
    whole table (`meta.whole_table`). A daily run's slice is a few percent of the records: measured on the
    slice, the share failed every daily run at scale (the 100k benchmark's incremental day stopped on it);
    on the whole table it holds, and it still catches a table that lost its rows."""
    from crm_knowledge.run_mode import RunMode

    with psycopg.connect(db) as conn:
        conn.execute("""
            create schema if not exists marts; create schema if not exists intermediate;
            create table intermediate.int_identity_candidates as select g as record_id from generate_series(1, 100) g;
            create table marts.customer_identity_map (source_system text, source_record_id text,
                customer_id text, match_score double precision, staged_at timestamptz);
            insert into marts.customer_identity_map
                select 'old', g::text, 'C' || g, 1.0, now() - interval '2 days' from generate_series(1, 90) g;
            insert into marts.customer_identity_map
                select 'new', g::text, 'C' || g, 1.0, now() from generate_series(1, 5) g;
        """)
        since = conn.execute("select now() - interval '1 day'").fetchone()[0].isoformat()
    daily = RunMode("incremental", since)
    result = gate.validate_layer("marts", "run-d", suites=["marts.customer_identity_map"], settings=qsettings,
                                 url=db, mode=daily)
    assert result.success and result.scopes[0].row_count == 5  # the slice: 5 rows, 95 resolved in the table
    assert not result.warnings  # 95% resolved: the warning's floor holds too

    with psycopg.connect(db) as conn:
        conn.execute("delete from marts.customer_identity_map where source_system = 'old' "
                     "and source_record_id::int > 5")  # the old rows mostly gone: 5 + 5 of 100 resolved
    with pytest.raises(CriticalDataQualityError, match="80% of customer-bearing"):
        gate.validate_layer("marts", "run-d2", suites=["marts.customer_identity_map"], settings=qsettings,
                            url=db, mode=daily)


def test_the_raw_gate_first_drops_a_killed_gate_s_view_that_would_block_a_column_drop(db, qsettings):
    """A scope view a killed gate left depends on its relation: dbt's `on_schema_change` could not drop a column
    of that relation while it exists. The raw gate, the first check of every warehouse run (before its dbt
    stages), drops such views, however young, even when it has no batch to check."""
    import datetime as dt

    from crm_knowledge.quality import pipeline, scope_views

    left = scope_views.new_name(dt.datetime.now(dt.UTC))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("create table marts.fct_scoped (order_id text, dropped_column text)")
        conn.execute(f"create view quality_scopes.{left} as select order_id, dropped_column from marts.fct_scoped")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            conn.execute("alter table marts.fct_scoped drop column dropped_column")

    out = pipeline.check_new_raw_batches("run-orphans", settings=qsettings, url=db)

    assert out["orphaned_scope_views_dropped"] == 1 and out["tables"] == {}
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("alter table marts.fct_scoped drop column dropped_column")  # as dbt's sync_all_columns
        assert conn.execute("select count(*) from pg_views where schemaname = 'quality_scopes'").fetchone() == (0,)


def test_an_orphaned_view_of_another_role_is_left_with_a_warning_not_a_failure(db, caplog):
    """A view of another role (a gate run by hand as the warehouse's owner, then killed) cannot be dropped by the
    pipeline's role: the clean-up logs it and goes on, so the warehouse run does not fail for it."""
    import datetime as dt
    import urllib.parse
    import uuid

    from crm_knowledge.quality import scope_views

    cleaner = f"scope_cleaner_{uuid.uuid4().hex[:8]}"  # roles are the server's, not the scratch database's
    theirs = scope_views.new_name(dt.datetime.now(dt.UTC))
    ours = scope_views.new_name(dt.datetime.now(dt.UTC))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"create role {cleaner} nologin")
        conn.execute(f"grant usage, create on schema quality_scopes to {cleaner}")
        conn.execute(f"grant {cleaner} to {conn.info.user}")
        conn.execute(f"create view quality_scopes.{theirs} as select 1 as by_the_owner")
        conn.execute(f"set role {cleaner}")
        conn.execute(f"create view quality_scopes.{ours} as select 1 as by_the_cleaner")
    as_cleaner = db + ("&" if "?" in db else "?") + "options=" + urllib.parse.quote(f"-c role={cleaner}")
    try:
        with caplog.at_level("WARNING", logger="crm_knowledge.quality.scope_views"):
            assert scope_views.drop_orphaned(as_cleaner) == [ours]

        assert theirs in caplog.text and "not dropped" in caplog.text
        with psycopg.connect(db) as conn:
            assert {v for (v,) in conn.execute(
                "select viewname from pg_views where schemaname = 'quality_scopes'")} == {theirs}
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"drop owned by {cleaner}")
            conn.execute(f"drop role {cleaner}")
