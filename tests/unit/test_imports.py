"""Every import a task or a user makes works in a fresh interpreter, whatever was imported before it.

An import that only works because an earlier import in the same process already loaded a submodule (a
package ``__getattr__`` answering a name that is both a function and a submodule, an import cycle) passes
in-process tests and fails for the Airflow worker and for ``ckp``: so these run each import in its own
process.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from crm_knowledge.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "plugins" / "crm_knowledge"
DAGS_DIR = PROJECT_ROOT / "dags"


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          cwd=PROJECT_ROOT)


def _task_imports() -> list[str]:
    """`from crm_knowledge.x import a, b` statements inside the DAG files' tasks, as source lines."""
    found = set()
    for path in sorted(DAGS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crm_knowledge"):
                found.add(f"from {node.module} import {', '.join(sorted(a.name for a in node.names))}")
    return sorted(found)


def test_no_module_level_getattr():
    """No lazy module attributes (the house rules: no module __getattr__); imports are explicit."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name in ("__getattr__", "__dir__") for n in tree.body):
            offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert offenders == []


def test_the_dags_import_task_code():
    assert len(_task_imports()) >= 8  # the parametrised test below covers a real list


@pytest.mark.parametrize("statement", _task_imports())
def test_task_imports_work_in_a_fresh_process(statement):
    """What each DAG task imports works when it is the first thing a worker imports."""
    res = _fresh(statement)
    assert res.returncode == 0, f"{statement}:\n{res.stderr[-3000:]}"


def test_export_deliver_is_the_delivery_module_in_a_fresh_process():
    """`from crm_knowledge.export import deliver` once recursed forever: it is the module."""
    res = _fresh("from crm_knowledge.export import deliver\n"
                 "print(deliver.__name__, callable(deliver.deliver), callable(deliver.deliver_all), "
                 "callable(deliver.send_delta))")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["crm_knowledge.export.deliver", "True", "True", "True"]


def test_importing_the_export_package_is_cheap():
    """The package imports none of its modules (nor psycopg, pandas): importing a leaf stays a leaf."""
    res = _fresh("import sys, crm_knowledge.export\n"
                 "print(sorted(m for m in sys.modules if m.startswith(('crm_knowledge.export.', 'psycopg', "
                 "'pandas'))))")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "[]"
