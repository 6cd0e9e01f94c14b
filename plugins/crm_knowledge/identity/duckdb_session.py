"""The one way identity resolution opens DuckDB: bounded memory, and a private place to spill.

DuckDB, left to its defaults, takes up to 80% of the machine's memory and spills to a folder under the current
directory or the shared temporary folder with the umask's permissions. What it spills here is candidate records
(names, phones, national IDs): personal data, which outside the warehouse may only sit in files their owner alone
can read. So every connection of the identity stage (Splink's, junk detection's, the deterministic rules')
gets the configured memory limit (``probabilistic.duckdb_memory_limit``) and its own 0700 spill folder, made
fresh and removed when the connection closes; a folder a killed run left behind is removed by the next run
(crm_knowledge.identity.scratch, as for the Spark backend's scratch folders).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crm_knowledge.identity.scratch import make_scratch

#: each connection's spill folder (crm_knowledge.identity.scratch): `<tmp>/ckp-duckdb-*`
SPILL_PREFIX = "ckp-duckdb-"
#: at 1M customers 1GB peaked 0.8 GB lower than 2GB and was no slower (README, Benchmarks)
DEFAULT_MEMORY_LIMIT = "1GB"


def open_connection(memory_limit: str = DEFAULT_MEMORY_LIMIT) -> Any:
    """A new in-memory DuckDB connection with `memory_limit` and a fresh private spill folder (see the module
    docstring). Close it with :func:`close_connection`, which removes the folder."""
    import duckdb

    spill = make_scratch(SPILL_PREFIX)
    return duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(spill / "tmp")})


def close_connection(con: Any) -> None:
    """Close `con` and remove its spill folder (the parent of its `temp_directory`)."""
    try:
        spill = Path(con.execute("select current_setting('temp_directory')").fetchone()[0]).parent
    except Exception:  # noqa: BLE001 - closed already: nothing left to remove here
        spill = None
    con.close()
    if spill is not None and spill.name.startswith(SPILL_PREFIX):
        shutil.rmtree(spill, ignore_errors=True)


@contextmanager
def connection(memory_limit: str = DEFAULT_MEMORY_LIMIT) -> Iterator[Any]:
    """:func:`open_connection` as a context manager."""
    con = open_connection(memory_limit)
    try:
        yield con
    finally:
        close_connection(con)
