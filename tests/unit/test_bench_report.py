"""The benchmark report says why a part did not run (bench.report.to_markdown)."""

from __future__ import annotations

import pytest

from crm_knowledge.bench.report import to_markdown

BASE = {"machine": {"cpus": 2, "memory_gb": 23, "python": "3.11"}, "size": 1000,
        "started_at": "2026-12-06T00:00:00", "full_seconds": 1.0, "peak_total_mb": 5, "stages": []}


@pytest.mark.parametrize("extra, flag", [({"only_identity": True}, "--only-identity"),
                                         ({"only_ingest": True}, "--only-ingest"), ({}, "--no-incremental")])
def test_a_skipped_incremental_day_names_the_option_that_skipped_it(extra, flag):
    (line,) = [x for x in to_markdown({**BASE, **extra}).splitlines() if x.startswith("- incremental day")]
    assert line == f"- incremental day: not run in this benchmark (`{flag}`)"


def test_a_run_incremental_day_shows_its_time():
    (line,) = [x for x in to_markdown({**BASE, "incremental_seconds": 12.5}).splitlines()
               if x.startswith("- incremental day")]
    assert "**12.5 s**" in line or "**12.50 s**" in line, line


def test_later_days_get_their_time_in_the_headline_and_their_columns():
    """`ckp bench --days 2`: the second day (an ordinary one) is reported beside the first, in the headline and as
    columns of the stage table."""
    stages = [{"stage": "dbt:marts", "phase": phase, "seconds": s, "rows": 10, "rows_per_s": 1.0,
               "peak_total_mb": 100.0} for phase, s in (("full", 50.0), ("incremental", 20.0),
                                                       ("incremental_2", 7.5))]
    report = {**BASE, "incremental_seconds": 30.0, "stages": stages,
              "days": [{"day": "2026-11-21", "phase": "incremental", "seconds": 30.0},
                       {"day": "2026-11-22", "phase": "incremental_2", "seconds": 12.0}]}
    lines = to_markdown(report).splitlines()
    (headline,) = [x for x in lines if x.startswith("- incremental day")]
    assert "**30.0 s**" in headline and "day 2: **12.0 s**" in headline, headline
    (header,) = [x for x in lines if x.startswith("| stage |")]
    (row,) = [x for x in lines if x.startswith("| dbt:marts |")]
    assert header.endswith("day 2 s | day 2 rows | day 2 peak MB |")
    assert row.split("|")[-4:-1] == [" 7.5 ", " 10 ", " 100 "], row
