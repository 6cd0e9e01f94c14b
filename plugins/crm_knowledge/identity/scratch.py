"""Private scratch folders of the identity stage: where Spark stages candidates and DuckDB spills them.

What lands there is personal data (candidate records), so each folder is made fresh and 0700 for one run and
removed when the run ends. A SIGKILL or an out-of-memory kill skips every `finally`, so each folder names its
owner (host and pid), and the next run removes the folders of owners that are gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: the file in each scratch folder naming its owner (host and pid), for removing those of killed runs
OWNER_FILE = "owner"


def make_scratch(prefix: str, parent: Path | None = None) -> Path:
    """A new private (0700) folder `<parent>/<prefix>*` (parent: the temporary folder) marked with its owner,
    after removing the `prefix` folders of killed runs there."""
    parent = parent or Path(tempfile.gettempdir())
    remove_stale_scratch(parent, prefix)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mkdtemp: mode 0700
    (scratch / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
    return scratch


def remove_stale_scratch(parent: Path, prefix: str) -> list[Path]:
    """Remove `prefix` scratch folders under `parent` left by killed runs on this host (their owning process is
    gone). Folders of other hosts (a shared scratch path on a cluster), of other OS users and of live processes
    are left alone. Returns what was removed."""
    import psutil

    host = socket.gethostname()
    removed = []
    for d in parent.glob(f"{prefix}*"):
        try:
            if not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            owner_host, pid = (d / OWNER_FILE).read_text(encoding="utf-8").split()
        except (OSError, ValueError):
            continue
        if owner_host != host or psutil.pid_exists(int(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    if removed:
        log.warning("identity: removed %d scratch folder(s) %s* of killed runs under %s", len(removed), prefix,
                    parent)
    return removed
