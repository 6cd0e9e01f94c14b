"""GX results -> audit rows: the facts survive, personal values do not."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from crm_knowledge.quality import results
from crm_knowledge.quality.results import Outcome, mask_value, outcomes_from_validation, scrub_validation_result
from crm_knowledge.settings import get_settings


def test_mask_value_keeps_shape_not_content():
    assert mask_value("ali.rezaei@mail") == "xxx.xxxxxx@xxxx"
    assert mask_value("۰۹۱۲ ۳۴۵") == "9999 999"  # Persian digits are digits
    assert mask_value("علی") == "xxx"
    assert mask_value(None) is None
    assert len(mask_value("x" * 100)) == 41  # truncated with an ellipsis


def test_safe_value_keeps_non_personal_columns():
    assert results.safe_value("status", "pending") == "pending"
    assert results.safe_value("total_amount", 12) == 12
    assert results.safe_value("email", "a@b.ir") == "x@x.xx"
    assert results.safe_value("my_key", "K1", row_id=("my_key",)) == "K1"
    assert results.safe_value(None, "secret") == "xxxxxx"


@pytest.fixture()
def validated(tmp_path):
    """A real GX validation (pandas, no database) with personal values among the failures."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from crm_knowledge.quality.context import build_context

    context = build_context(dataclasses.replace(get_settings(), home=tmp_path), datasource=False)
    df = pd.DataFrame({"_row_number": [1, 2, 3, 4],
                       "email": ["ok@example.ir", "leila.private@", "x@y.ir", None],
                       "status": ["paid", "paid", "weird", "paid"]})
    batch = (context.data_sources.add_pandas("p").add_dataframe_asset("a")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df}))
    suite = gx.ExpectationSuite(name="raw.test", expectations=[
        gxe.ExpectColumnValuesToMatchRegex(column="email", regex=r"^[^@]+@[^@]+\.[a-z]+$",
                                           meta={"severity": "warning"}),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["paid"], meta={"severity": "critical"}),
        gxe.ExpectColumnValuesToNotBeNull(column="_row_number", meta={"severity": "critical"}),
    ])
    result = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                                  "unexpected_index_column_names": ["_row_number"]})
    return result


def test_outcomes_carry_row_numbers_and_masked_values(validated):
    outs = {o.column_name: o for o in outcomes_from_validation(validated, suite="raw.test", row_id=("_row_number",),
                                                               batch_id="b1")}
    email, status, rn = outs["email"], outs["status"], outs["_row_number"]
    assert (email.severity, email.success, email.unexpected_count) == ("warning", False, 1)
    # (GX's pandas engine reports index columns as text; Postgres keeps them as numbers)
    [sample] = email.unexpected_sample
    assert str(sample["row"]["_row_number"]) == "2" and sample["value"] == "xxxxx.xxxxxxx@"
    assert email.warning and not email.critical_failure
    [sample] = status.unexpected_sample
    assert status.critical_failure and str(sample["row"]["_row_number"]) == "3" and sample["value"] == "weird"
    assert rn.success and rn.batch_id == "b1"
    assert "leila" not in json.dumps([dataclasses.asdict(o) for o in outs.values()])
    text = status.describe()
    assert "expect_column_values_to_be_in_set" in text and "status" in text and "_row_number=3" in text


def test_scrubbed_gx_result_holds_no_personal_values(validated):
    assert "leila.private" in json.dumps(validated.to_json_dict())
    scrub_validation_result(validated, row_id=("_row_number",))
    dumped = json.dumps(validated.to_json_dict())
    assert "leila" not in dumped
    assert "xxxxx.xxxxxxx@" in dumped and "weird" in dumped  # shapes and non-personal values remain


def test_outcome_describe_without_sample():
    o = Outcome(suite="s", expectation="relation_exists", column_name=None, severity="critical", success=False,
                observed_value={"error": "relation marts.x does not exist"})
    assert "relation marts.x does not exist" in o.describe()
