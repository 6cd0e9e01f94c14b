"""The one way identity resolution opens DuckDB: bounded memory, and a private place to spill.

DuckDB, left to its defaults, takes up to 80% of the machine's memory and spills to a folder under the current
directory or the shared temporary folder with the umask's permissions. What it spills here is candidate records
(names, phones, national IDs): personal data, which outside the warehouse may only sit in files their owner alone
can read. So every connection of the identity stage (Splink's, junk detection's, the deterministic rules')
gets the configured memory limit (``probabilistic.duckdb_memory_limit``) and its own 0700 spill folder, made
fresh and removed when the connection closes; a folder a killed run left behind is removed by the next run
(as the Spark backend does with its scratch folders).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPILL_PREFIX = "ckp-duckdb-"
DEFAULT_MEMORY_LIMIT = "2GB"


def open_connection(memory_limit: str = DEFAULT_MEMORY_LIMIT) -> Any:
    """A new in-memory DuckDB connection with `memory_limit` and a fresh private spill folder (see the module
    docstring). Close it with :func:`close_connection`, which removes the folder."""
    import duckdb

    _remove_stale_spill()
    spill = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX))  # mkdtemp: mode 0700
    (spill / "owner").write_text(str(os.getpid()), encoding="utf-8")
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(spill / "tmp")})
    _SPILL[id(con)] = spill
    return con


def close_connection(con: Any) -> None:
    """Close `con` and remove its spill folder."""
    try:
        con.close()
    finally:
        spill = _SPILL.pop(id(con), None)
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)


@contextmanager
def connection(memory_limit: str = DEFAULT_MEMORY_LIMIT) -> Iterator[Any]:
    """:func:`open_connection` as a context manager."""
    con = open_connection(memory_limit)
    try:
        yield con
    finally:
        close_connection(con)


#: connection id -> its spill folder
_SPILL: dict[int, Path] = {}


def _remove_stale_spill() -> None:
    """Remove spill folders of runs that were killed (their owning process is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}*"):
        try:
            pid = int((folder / "owner").read_text(encoding="utf-8").strip())
            os.kill(pid, 0)
            continue  # its process lives
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # another user's, or being made now: not ours to judge
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("identity: removed the DuckDB spill folder %s of a killed run", folder)
