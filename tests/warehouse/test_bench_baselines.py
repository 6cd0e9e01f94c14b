"""The benchmark's yardsticks measure every source they claim to.

`ckp bench` sets the loader beside a plain COPY and beside the raw-layer ceiling (COPY plus an unconverted
insert into the raw table). A baseline skips a file the server refuses and says so only in its log, so a stale
column mapping makes a source silently vanish from the comparison: the raw ceiling lost the web forms that
way when forms began mapping a column (`passport`) onto a declared identifier kind, which lands in
`identifiers` rather than in a raw column of its own.
"""

from __future__ import annotations

import dataclasses

import pytest

from crm_knowledge.bench import baselines
from crm_knowledge.demo import generate
from crm_knowledge.ingest.registry import load_registry

pytestmark = pytest.mark.warehouse


def test_every_copy_readable_source_is_measured_by_both_baselines(warehouse, settings, tmp_path):
    # the test server (started by the `warehouse` fixture), reached by URL: the baselines create and drop their
    # scratch database on it
    local = dataclasses.replace(settings, home=tmp_path / "home", landing_dir=tmp_path / "landing",
                                external_warehouse_url=warehouse)
    generate(size=60, seed=3, settings=local, write_orders_db=False)
    sources = [c for c in load_registry(local.config_dir) if c.kind != "orders_db"]
    copy = baselines.plain_copy(local, sources)
    ceiling = baselines.raw_ceiling(local, sources)
    readable = [c.name for c in sources if c.format in ("csv", "jsonl")]
    assert {"forms", "contacts", "sibling_insurance", "sibling_bank_fa", "order_export_kiosk"} <= set(readable)
    for name in readable:
        assert copy[name]["rows"] > 0, (name, copy[name])
        # the ceiling inserts what COPY read into the raw table: the same rows, none lost to a mapping
        assert ceiling[name]["rows"] == copy[name]["rows"], (name, ceiling[name], copy[name])
    assert ceiling["sibling_travel"]["rows"] is None  # xlsx: COPY cannot read it, and the report says so
