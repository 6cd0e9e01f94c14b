"""Every DuckDB connection of the identity stage has the configured memory limit and spills only into a folder
its owner alone can read, removed with the connection (spilled rows are candidate records: personal data)."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

from crm_knowledge.identity.duckdb_session import SPILL_PREFIX, connection


def _spill_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}*"))


def test_a_connection_is_bounded_and_spills_privately_and_leaves_nothing():
    # `make test` runs two workers: the other one's identity stage makes and removes spill folders meanwhile, so
    # only this connection's own folder is checked (new when opened, gone when closed)
    before = _spill_folders()
    with connection("256MB") as con:
        limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
        spill = Path(con.execute("select current_setting('temp_directory')").fetchone()[0])
        # DuckDB reports the limit in its own units (256MB -> 244.1 MiB)
        assert limit.endswith(("MiB", "MB")) and float(limit.split()[0]) < 300, limit
        folder = spill.parent
        assert folder in _spill_folders() - before
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # its owner only
        assert spill.name == "tmp" and not spill.exists()  # DuckDB makes it when it first spills
    assert not folder.exists()  # removed with the connection
    assert folder not in _spill_folders()


def test_a_killed_runs_spill_folder_is_removed_by_the_next_connection():
    import socket

    stale = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX))
    (stale / "owner").write_text(f"{socket.gethostname()} 999999999", encoding="utf-8")  # no such process
    (stale / "tmp").mkdir()
    (stale / "tmp" / "duckdb_temp_block-1.block").write_bytes(b"spilled rows")
    with connection():
        pass
    assert not stale.exists()
