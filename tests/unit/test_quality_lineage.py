"""OpenLineage file transport configuration and the static lineage map."""

from __future__ import annotations

import dataclasses
import json

import yaml

from crm_knowledge.quality import lineage
from crm_knowledge.settings import PROJECT_ROOT, get_settings


def test_openlineage_env_configures_a_file_transport(tmp_path):
    settings = dataclasses.replace(get_settings(), home=tmp_path)
    env = lineage.openlineage_env(settings)
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "file", "append": True,
                         "log_file_path": str(settings.reports_dir / "openlineage" / "events.jsonl")}
    assert env["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "crm_knowledge"
    assert (settings.reports_dir / "openlineage").is_dir()


def test_the_transport_config_is_what_openlineage_writes_with(tmp_path):
    """openlineage-python (used by the Airflow provider) builds a working file transport from it."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.uuid import generate_new_uuid

    settings = dataclasses.replace(get_settings(), home=tmp_path)
    config = json.loads(lineage.openlineage_env(settings)["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    client = OpenLineageClient(transport=FileTransport(FileConfig.from_dict(config)))
    for state in (RunState.START, RunState.COMPLETE):
        client.emit(RunEvent(eventType=state, eventTime="2026-03-01T10:00:00Z",
                             run=Run(runId=str(generate_new_uuid())),
                             job=Job(namespace="crm_knowledge", name="ckp.validate_raw"), producer="test"))
    lines = lineage.openlineage_events_path(settings).read_text().splitlines()
    assert [json.loads(line)["eventType"] for line in lines] == ["START", "COMPLETE"]


def test_airflow_provider_reads_the_transport_from_the_environment(tmp_path):
    """The provider's own config readers see the file transport (fresh process: they cache)."""
    import os
    import subprocess
    import sys

    settings = dataclasses.replace(get_settings(), home=tmp_path)
    env = {**os.environ, **lineage.openlineage_env(settings), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    code = ("import json; from airflow.providers.openlineage import conf; "
            "print(json.dumps([conf.transport(), conf.namespace(), conf.is_disabled()]))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    transport, namespace, disabled = json.loads(proc.stdout.strip().splitlines()[-1])
    assert transport["type"] == "file"
    assert transport["log_file_path"] == str(lineage.openlineage_events_path(settings))
    assert namespace == "crm_knowledge" and disabled is False


def test_every_configured_source_kind_has_a_lineage():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in (PROJECT_ROOT / "config" / "sources").glob("*.yml")}
    assert kinds <= {s.kind for s in lineage.SOURCES}
    for s in lineage.SOURCES:
        assert all(t.startswith("raw.") for t in s.raw) and all(t.startswith("staging.") for t in s.staging)
    assert lineage.CUSTOMER_VIEW_PATH[-1][0] == lineage.EXPORT_INPUT
    assert lineage.CUSTOMER_VIEW in [node for node, _ in lineage.CUSTOMER_VIEW_PATH]


def test_destinations_come_from_config():
    names = {d.name for d in lineage.destinations()}
    config = yaml.safe_load((PROJECT_ROOT / "config" / "destinations.yml").read_text())
    assert names == {d["name"] for d in config["destinations"]}


def test_no_destinations_file_means_no_destination(tmp_path):
    assert lineage.destinations(dataclasses.replace(get_settings(), configured_config_dir=tmp_path)) == ()


def test_the_report_renders_the_lineage_with_an_invalid_destinations_config(tmp_path, caplog):
    """The report runs after failed runs too: a destinations config the exports reject is logged, not fatal."""
    from crm_knowledge.quality.report import _lineage_section

    (tmp_path / "destinations.yml").write_text("destinations:\n  - name: crm\n    kind: carrier_pigeon\n")
    settings = dataclasses.replace(get_settings(), configured_config_dir=tmp_path)
    export = {"destination": "crm", "kind": "file", "export_id": "x1", "as_of_date": "2026-03-01",
              "status": "succeeded", "rows_added": 3, "rows_changed": 0, "rows_removed": 0}
    html = _lineage_section({"batches": [], "exports": [export], "exports_in_run": True}, settings)
    assert "destinations config is invalid" in html and "<code>x1</code>" in html
    assert "destinations config not shown" in caplog.text
