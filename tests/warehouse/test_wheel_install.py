"""The package as a deployment installs it: a built wheel in a fresh virtualenv, not the source checkout.

The wheel is built from a copy of the package sources (offline: uv's cache holds the build backend since
the virtualenv was made) and installed with uv into a venv of its own. That venv sees the shared venv's
third-party packages through a plain path in a ``.pth`` file, whose own ``.pth`` files (among them the
editable install pointing at ``plugins/``) are NOT processed, and runs without PYTHONPATH, outside the
checkout: ``crm_knowledge`` can only come from the wheel. It then runs the task functions of the
``ingest_sibling_units`` DAG with its sources read from CKP_CONFIG_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import psycopg
import pytest

from crm_knowledge.settings import PROJECT_ROOT

pytestmark = pytest.mark.warehouse

#: What the DAG's tasks do (dags/ingest_sibling_units.py: prepare_warehouse, list_units, then load_unit per
#: unit), plus what an installed package says when it has no project directory, and what it finds once it has one.
SCRIPT = r"""
import json, os, sys
import crm_knowledge
from crm_knowledge.ingest.tasks import ingest_file_source, prepare_warehouse, source_names
from crm_knowledge.settings import ProjectNotFound, get_settings

prepare_warehouse()
units = source_names("sibling_unit")
loads = [ingest_file_source(name) for name in units]

config_dir = os.environ.pop("CKP_CONFIG_DIR")
try:
    get_settings().config_dir
    unconfigured = None
except ProjectNotFound as exc:
    unconfigured = str(exc)
os.environ["CKP_CONFIG_DIR"] = config_dir

os.environ["CKP_PROJECT_DIR"] = sys.argv[1]
from crm_knowledge.quality.suites import all_specs
suites = len(all_specs())

print(json.dumps({"package": crm_knowledge.__file__, "units": units, "loads": loads,
                  "unconfigured": unconfigured, "suites": suites}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Python of a fresh venv with the package installed from a freshly built wheel."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, src / name)
    shutil.copytree(PROJECT_ROOT / "plugins", src / "plugins",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    uv = str(Path(sys.executable).with_name("uv"))
    build = subprocess.run([uv, "build", "--wheel", "--offline", "-q", "-o", str(work / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"building the wheel failed: {build.stderr[-2000:]}"
    wheel, = (work / "dist").glob("crm_knowledge-*.whl")

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_shared_third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([uv, "pip", "install", "-q", "--offline", "--no-deps", "--python", str(python),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, f"installing the wheel failed: {install.stderr[-2000:]}"
    return python


def test_wheel_install_runs_a_dags_tasks_with_config_from_the_configured_path(installed, scratch_db, tmp_path):
    config_dir = tmp_path / "elsewhere" / "ckp-config"  # no project around it
    (config_dir / "sources").mkdir(parents=True)
    (config_dir / "sources" / "sibling_leasing.yml").write_text(
        "name: sibling_leasing\nkind: sibling_unit\nunit: leasing\npath: siblings/leasing/*.csv\n"
        "format: csv\nencoding: utf-8\ndelimiter: ','\ndate_calendar: jalali\ndate_format: '%Y-%m-%d'\n"
        "primary_key: source_record_id\ncolumns:\n  ID: source_record_id\n  Name: full_name\n  Born: birth_date\n")
    landing = tmp_path / "landing"
    (landing / "siblings" / "leasing").mkdir(parents=True)
    (landing / "siblings" / "leasing" / "2026-03-01.csv").write_text(
        "ID,Name,Born\nL1,Sara Karimi,1375-06-31\nL2,Reza Ahmadi,1360-01-01\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CKP_", "PYTHON")) and k not in ("WAREHOUSE_URL", "VIRTUAL_ENV")}
    env.update(WAREHOUSE_URL=scratch_db, CKP_HOME=str(tmp_path / "home"), CKP_LANDING_DIR=str(landing),
               CKP_CONFIG_DIR=str(config_dir), CKP_DEMO_MODE="1")

    res = subprocess.run([str(installed), "-c", SCRIPT, str(PROJECT_ROOT)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)

    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(installed.parent.parent)  # the wheel's copy, not plugins/
    assert out["units"] == ["sibling_leasing"]  # the only source under CKP_CONFIG_DIR, none of config/
    load, = out["loads"]
    assert (load["loaded"], load["rows_loaded"], load["rows_rejected"]) == (1, 2, 0)
    with psycopg.connect(scratch_db) as conn:
        rows = conn.execute("select unit, source_record_id, birth_date::text from raw.sibling_customers "
                            "order by source_record_id").fetchall()
    assert rows == [("leasing", "L1", "1375-06-31"), ("leasing", "L2", "1360-01-01")]  # as received (Jalali)
    # without CKP_CONFIG_DIR an installed package cannot guess where the project is: it says what to set
    assert "CKP_PROJECT_DIR" in out["unconfigured"]
    # with CKP_PROJECT_DIR it reads the project's files (here: every expectation suite)
    assert out["suites"] == len(list((PROJECT_ROOT / "expectations" / "suites").rglob("*.json")))
