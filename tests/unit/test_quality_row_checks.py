"""Row checks run by the gate (quality/row_checks.py): GX's `{batch}` substitution and GX's result order."""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

from crm_knowledge.quality import row_checks

BATCH = "select * from raw.t where _batch_id = 'b'"


def test_batch_is_substituted_as_gx_does():
    plain = row_checks.check_sql("select _row_number from {batch} where x is null", BATCH)
    assert plain == f"select _row_number from ({BATCH}) AS subselect where x is null"
    joined = row_checks.check_sql("select b.id from {batch} as b join raw.u u on u.id = b.id", BATCH)
    assert joined == f"select b.id from ({BATCH}) as b join raw.u u on u.id = b.id"


def test_row_check_results_take_gx_places_and_statistics():
    suite = gx.ExpectationSuite(name="s", expectations=[
        gxe.ExpectColumnValuesToNotBeNull(column="a"),
        gxe.UnexpectedRowsExpectation(unexpected_rows_query="select 1 from {batch}"),
        gxe.ExpectColumnValuesToNotBeNull(column="b"),
        gxe.ExpectColumnValuesToBeUnique(column="a"),
    ])
    gx_suite, rows = row_checks.split_suite(suite)
    assert [e.expectation_type for e in gx_suite.expectations] == [
        "expect_column_values_to_not_be_null", "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique"]
    assert [c.type for c in rows] == ["unexpected_rows_expectation"]
    configs = [e.configuration for e in gx_suite.expectations]
    # GX reports grouped by column: a, a (unique), b
    result = ExpectationSuiteValidationResult(success=True, suite_name="s", results=[
        ExpectationValidationResult(success=True, expectation_config=configs[0]),
        ExpectationValidationResult(success=True, expectation_config=configs[2]),
        ExpectationValidationResult(success=True, expectation_config=configs[1])])
    failed = ExpectationValidationResult(success=False, expectation_config=rows[0], result={"observed_value": 3})
    row_checks.merge_results(result, suite, [failed])
    assert [r.expectation_config.type for r in result.results] == [
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_unique",
        "unexpected_rows_expectation", "expect_column_values_to_not_be_null"]
    assert not result.success
    assert result.statistics == {"evaluated_expectations": 4, "successful_expectations": 3,
                                 "unsuccessful_expectations": 1, "success_percent": 75.0}
