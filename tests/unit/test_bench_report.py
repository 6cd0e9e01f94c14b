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
