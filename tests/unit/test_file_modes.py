"""Private files under CKP_HOME: explicit modes on creation, and an old home fixed in place."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crm_knowledge.privacy.file_modes import open_private, private_dir, secure_home, write_private_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def open_umask():
    """The library must not rely on the caller's umask: run every test with a permissive one."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_creates_every_missing_parent_0700(tmp_path):
    leaf = private_dir(tmp_path / "a" / "b" / "c")
    assert [_mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", leaf)] == [0o700] * 3
    (tmp_path / "open").mkdir(mode=0o755)
    assert _mode(private_dir(tmp_path / "open")) == 0o700


def test_open_private_creates_0600_and_tightens_an_existing_file(tmp_path):
    path = tmp_path / "x" / "f.csv"
    with open_private(path, "w", encoding="utf-8") as fh:
        fh.write("a\n")
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    path.chmod(0o644)
    with open_private(path, "a", encoding="utf-8") as fh:
        fh.write("b\n")
    assert _mode(path) == 0o600 and path.read_text() == "a\nb\n"
    write_private_text(tmp_path / "y.txt", "z")
    assert _mode(tmp_path / "y.txt") == 0o600


@pytest.mark.parametrize(("server_user_differs", "home_mode"), [(False, 0o700), (True, 0o711)])
def test_secure_home_fixes_an_old_home(tmp_path, server_user_differs, home_mode):
    home = tmp_path / "home"
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    files = [home / "archive" / "forms" / "a.jsonl", home / "demo" / "ground_truth.csv", home / "skip" / "keep"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
        f.chmod(0o664)
    home.chmod(0o755)
    (home / "link").symlink_to(outside)
    changed = secure_home(home, server_user_differs=server_user_differs, skip=(home / "skip",))
    assert _mode(home) == home_mode
    assert _mode(files[0]) == 0o600 and _mode(files[1]) == 0o600
    assert _mode(home / "archive") == 0o700 and _mode(home / "archive" / "forms") == 0o700
    assert _mode(files[2]) == 0o664  # a skipped folder is left to its owner (the server's data directory)
    assert _mode(outside) == 0o644  # a symlink is not followed out of the home
    assert changed >= 6
    assert secure_home(home, server_user_differs=server_user_differs, skip=(home / "skip",)) == 0  # idempotent


def test_task_entry_callback_sets_the_private_umask():
    import sys

    from crm_knowledge.settings import PROJECT_ROOT

    sys.path.insert(0, str(PROJECT_ROOT / "dags"))
    try:
        from ckp_common import DEFAULT_ARGS
    finally:
        sys.path.remove(str(PROJECT_ROOT / "dags"))
    DEFAULT_ARGS["on_execute_callback"]({})
    assert os.umask(0o022) == 0o077
