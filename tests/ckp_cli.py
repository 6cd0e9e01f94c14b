"""Run ``ckp`` the way a user does: the installed console script, in a fresh process.

Every ``ckp`` sub-command has a test that calls :func:`run_ckp` (or :func:`start_ckp` for a command that
runs until stopped) with the command's words first (for
example ``run_ckp("batches", "retire", "b-1", "--reason", "x", env=env)``), and is listed in
``tests/unit/test_cli_coverage.py``'s ``SUBPROCESS_TESTS``; a guard test there fails for a command with no
such test. Import it in a test module with ``from ckp_cli import ckp_env, run_ckp`` (``tests/`` is on
``sys.path``: it holds the root ``conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm_knowledge.settings import PROJECT_ROOT

#: The console script `pip install` made (the virtualenv's bin/ckp), as a user runs it.
CKP = Path(sys.executable).with_name("ckp")


def ckp_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment (CKP_HOME, WAREHOUSE_URL, ... as the test set them) plus ``overrides``
    (``None`` removes a variable); this checkout's ``plugins/`` first on PYTHONPATH, so its code runs."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "plugins"), env.get("PYTHONPATH")]))
    return env


def run_ckp(*args: str, env: dict[str, str] | None = None, timeout: float = 900,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``ckp <args>`` in a new process; returns exit code, stdout and stderr (text) for the test to check."""
    return subprocess.run([str(CKP), *args], env=env if env is not None else ckp_env(), capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=cwd, stdin=subprocess.DEVNULL)


def start_ckp(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``ckp <args>`` started in a new process that runs until the test stops it (``ckp up``,
    ``ckp reports serve``): the caller terminates it and reads its output (stdout and stderr merged)."""
    return subprocess.Popen([str(CKP), *args], env=env if env is not None else ckp_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
