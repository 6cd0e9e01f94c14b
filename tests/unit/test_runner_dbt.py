"""runner.run_dbt builds the dbt command line the pipeline and the benchmark both use (no dbt is run here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from crm_knowledge import runner
from crm_knowledge.settings import Settings


@pytest.fixture()
def fake_dbt(monkeypatch):
    calls: list[tuple[list[str], dict]] = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw))
        if "--target-path" in cmd:
            target = Path(cmd[cmd.index("--target-path") + 1])
            target.mkdir(parents=True, exist_ok=True)
            (target / "run_results.json").write_text(json.dumps({"results": [{"unique_id": "model.p.m"}]}))
        return subprocess.CompletedProcess(cmd, 1 if "broken" in cmd else 0, "dbt said no", "")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    return calls


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, warehouse_port=1, warehouse_db="w", external_warehouse_url="postgresql://u@h/w",
                    external_orders_url=None, landing_dir=tmp_path)


def test_parse_and_docs_use_the_project_target(fake_dbt, settings):
    project = settings.dbt_project_dir
    assert runner.dbt_parse({"X": "1"}, settings) == project / "target" / "manifest.json"
    assert runner.dbt_docs({"X": "1"}, settings) == project / "target" / "index.html"
    cmd, kw = fake_dbt[0]
    assert cmd[0].endswith("dbt")
    # the profile and target named as cosmos' dbt tasks name them, so they can reuse this parse
    assert cmd[1:] == ["parse", "--project-dir", str(project), "--profiles-dir", str(project),
                       "--profile", "crm_knowledge", "--target", "warehouse", "--quiet"]
    assert kw["cwd"] == project and kw["env"] == {"X": "1"}
    assert fake_dbt[1][0][1:3] == ["docs", "generate"]


def test_target_and_log_paths_and_run_results(fake_dbt, settings, tmp_path):
    res = runner.run_dbt(["build", "--select", "tag:x"], {}, settings, target_path=tmp_path / "t",
                         log_path=tmp_path / "l", cwd=tmp_path)
    cmd, kw = fake_dbt[0]
    assert cmd[1:4] == ["build", "--select", "tag:x"]
    assert cmd[cmd.index("--target-path") + 1] == str(tmp_path / "t")
    assert cmd[cmd.index("--log-path") + 1] == str(tmp_path / "l")
    assert kw["cwd"] == tmp_path
    assert res.ok and res.target_path == tmp_path / "t"
    assert res.run_results() == [{"unique_id": "model.p.m"}]


def test_failure_raises_or_is_returned(fake_dbt, settings):
    with pytest.raises(RuntimeError, match="dbt broken failed:\ndbt said no"):
        runner.run_dbt(["broken"], {}, settings)
    res = runner.run_dbt(["broken"], {}, settings, check=False)
    assert not res.ok and res.returncode == 1 and "dbt said no" in res.failure_message()
