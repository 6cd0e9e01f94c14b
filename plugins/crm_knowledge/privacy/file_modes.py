"""Files under CKP_HOME are readable by the pipeline's OS user only.

Landing files, the archive, quarantine, the demo's ground truth, exports, webhook deliveries, Great
Expectations results (with unexpected-value samples), the auditor's report and every log can hold personal
data. So everything the project creates under CKP_HOME is a 0600 file in a 0700 folder:

* :func:`restrict_umask` sets the process umask to 077 once, at each entry point (the `ckp` command, the
  demo module, `make run`'s Airflow processes inherit it): files created by any library (GX, Airflow's task
  logs, dbt) are private without each call site knowing;
* :func:`private_dir` / :func:`private_file` give explicit modes where the project creates a folder or
  moves a file in (a file moved from the landing zone keeps the mode it was dropped with);
* :func:`secure_home` fixes a home made by an older version (0644 files in 0755 folders) on start.

CKP_HOME itself is 0700, or 0711 (others may traverse it, not list it) when the embedded PostgreSQL runs as
a separate OS user (we are root): that user must reach CKP_HOME/warehouse, which is its own 0700 folder.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
#: CKP_HOME when another OS user (the embedded server's) must traverse it to reach its own folder.
TRAVERSABLE_HOME_MODE = 0o711


def restrict_umask() -> None:
    """Make every file this process (and its children) creates private to its user (umask 077)."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path | str) -> Path:
    """Create `path` (and missing parents) as 0700 folders; an existing `path` is set to 0700. Returns it."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p == p.parent:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        d.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask; chmod is not
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path | str) -> Path:
    """Set an existing file to 0600 (owner read/write only). Returns it."""
    path = Path(path)
    path.chmod(FILE_MODE)
    return path


def open_private(path: Path | str, mode: str = "w", **kwargs):
    """`open(path, mode)` for writing ("w"/"wb"/"a"/"ab") a 0600 file in a 0700 folder (created if missing).

    The file is created with mode 0600 (no window in which it is readable by others) and an existing one is
    set to 0600."""
    path = Path(path)
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to a 0600 file in a 0700 folder (see :func:`open_private`). Returns the path."""
    with open_private(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def home_mode(server_user_differs: bool) -> int:
    return TRAVERSABLE_HOME_MODE if server_user_differs else DIR_MODE


def secure_home(home: Path, *, server_user_differs: bool, skip: tuple[Path, ...] = ()) -> int:
    """Take group and other permissions off every file and folder under `home` (symlinks are not followed);
    `home` itself gets :func:`home_mode`. Folders in `skip` are left as they are (the server's data
    directory, whose modes PostgreSQL checks itself). Returns how many modes were changed."""
    if not home.exists():
        private_dir(home)
    changed = 0
    wanted = home_mode(server_user_differs)
    if stat.S_IMODE(home.stat().st_mode) != wanted:
        home.chmod(wanted)
        changed += 1
    skipped = {p.resolve() for p in skip}
    for root, dirs, files in os.walk(home):
        root_path = Path(root)
        dirs[:] = [d for d in dirs if (root_path / d).resolve() not in skipped]
        for name in dirs + files:
            p = root_path / name
            try:
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                    continue
                p.chmod(stat.S_IMODE(st.st_mode) & 0o700)
                changed += 1
            except (PermissionError, FileNotFoundError) as exc:  # another user's file, or gone meanwhile
                log.warning("could not make %s private: %s", p, exc)
    if changed:
        log.info("made %d files and folders under %s private to their owner", changed, home)
    return changed
