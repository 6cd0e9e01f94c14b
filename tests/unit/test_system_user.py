"""The OS user the embedded warehouse runs as when started by root is created once, whatever runs at once.

On a fresh machine `make test`'s two workers each start a warehouse at the same moment; unserialised, both ran
`useradd` and the second re-created the user under a new uid, after the first had handed its warehouse folder
to the old one (its initdb: "Permission denied", 40 tests in error). Here eight processes ask for a new user at
once, each from its own interpreter.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
import uuid

import pytest

from crm_knowledge.settings import PROJECT_ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating an OS user needs root (as the server does)")

PROCESSES = 8


def test_processes_starting_at_once_create_the_user_once(tmp_path):
    name = f"ckpt{uuid.uuid4().hex[:10]}"
    start = time.time() + 5  # all spin until the same instant (a sleeping poll lets the first one finish first)
    script = (
        "import sys, time; from pathlib import Path\n"
        "from crm_knowledge.warehouse.server import ensure_system_user\n"
        "while time.time() < float(sys.argv[3]): pass\n"
        "print(ensure_system_user(sys.argv[1], Path(sys.argv[2])))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT / "plugins"))
    procs = [subprocess.Popen([sys.executable, "-c", script, name, str(tmp_path), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(PROCESSES)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * PROCESSES, [err for _, err in results]
        entries = [e for e in pwd.getpwall() if e.pw_name == name]
        assert len(entries) == 1
        # every process got the uid the user kept (unserialised, each got its own: 1003, 1004, ... and the
        # user ended with the last)
        assert [int(out) for out, _ in results] == [entries[0].pw_uid] * PROCESSES
    finally:
        for p in procs:
            p.kill()
        subprocess.run(["userdel", name], capture_output=True, check=False)
    assert name not in {e.pw_name for e in pwd.getpwall()}
