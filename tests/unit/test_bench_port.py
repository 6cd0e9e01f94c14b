"""The port of a benchmark's own warehouse (bench.run.bench_port): benchmarks of two sizes at once, or anything
else on the default port, must not make a benchmark fail to start its server."""

from __future__ import annotations

import errno
import json
import os
import socket

from crm_knowledge.bench.run import bench_port
from crm_knowledge.netports import port_free
from crm_knowledge.warehouse.server import running_port

DEFAULT = 54360  # settings: CKP_BENCH_PORT's default


def _hold_default(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port only in TIME_WAIT is free: hold it
    try:
        s.bind(("127.0.0.1", DEFAULT))
        s.listen()
    except OSError as exc:  # held by something else already: as good
        assert exc.errno == errno.EADDRINUSE, exc


def test_a_taken_default_port_gives_way_unless_the_port_was_set(tmp_path, monkeypatch):
    monkeypatch.delenv("CKP_BENCH_PORT", raising=False)
    with socket.socket() as held:
        _hold_default(held)
        port = bench_port(tmp_path / "bench" / "1000")
        assert port != DEFAULT and port_free(port)
        monkeypatch.setenv("CKP_BENCH_PORT", str(DEFAULT))  # the operator's own choice is kept, taken or not
        assert bench_port(tmp_path / "bench" / "1000") == DEFAULT


def test_the_home_keeps_the_port_its_running_server_has(tmp_path, monkeypatch):
    """A benchmark home whose server still runs (a kept serving bench, or one a crash left) keeps its port:
    the server would refuse to move."""
    monkeypatch.delenv("CKP_BENCH_PORT", raising=False)
    home = tmp_path / "bench-api" / "1000"
    (home / "warehouse" / "pgdata").mkdir(parents=True)
    (home / "warehouse" / "server.json").write_text(json.dumps({"port": 54999}))
    assert running_port(home) is None  # no postmaster.pid: not running
    (home / "warehouse" / "pgdata" / "postmaster.pid").write_text(f"{os.getpid()}\n/x\n")  # a live process
    assert running_port(home) == 54999
    assert bench_port(home) == 54999
    (home / "warehouse" / "pgdata" / "postmaster.pid").write_text("999999999\n")  # a dead one
    assert running_port(home) is None
