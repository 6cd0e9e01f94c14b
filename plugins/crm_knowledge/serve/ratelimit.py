"""Per-key rate limits: a token bucket per API key, refilled continuously, shared by every worker of a service.

A key may make ``limit`` requests per minute on average and up to ``limit`` at once after a quiet minute; a
refused request gets HTTP 429 with ``Retry-After``.

The buckets live in a small memory-mapped file (``serve-<port>.buckets``, mode 0600, in :func:`private_dir`)
that every uvicorn worker of one `ckp serve` maps, so the limit holds per key across workers: with N workers a
key still gets its limit, not N times it. `ckp serve` empties the file when it starts. The file is in the
system's temporary directory (a tmpfs in the compose service, whose file system is otherwise read-only), in
a directory only the service's user may enter. A bucket update takes a
``lockf`` lock on the file (and a thread lock inside the worker) around a few bytes of shared memory: a few
microseconds, no database round trip. The clock is ``CLOCK_MONOTONIC``, one for all processes of the machine.

The file holds :data:`SLOTS` buckets (open addressing on the key id). Keys are few (one per system or desk);
should the table ever fill, a key without a slot is limited by a bucket of its worker alone and a warning
is logged.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: Buckets in the shared file; a slot is the key id (16 bytes, zero-padded), tokens and last refill time.
SLOTS = 4096
_SLOT = struct.Struct("<16sdd")
SIZE = SLOTS * _SLOT.size


def private_dir() -> Path:
    """``<temp dir>/ckp-serve-<uid>``, mode 0700, this user's own (checked: another local user must not be able
    to plant or read the buckets)."""
    path = Path(tempfile.gettempdir()) / f"ckp-serve-{os.geteuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise RuntimeError(f"{path} must be a directory of this user with mode 0700 (the read service keeps its "
                           "rate-limit buckets there); remove it or fix its owner and mode")
    return path


def reset(path: Path) -> None:
    """An empty bucket file at `path` (when a service starts: no worker maps it yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, SIZE)
    finally:
        os.close(fd)


def _take(tokens: float, last: float, now: float, per_minute: int) -> tuple[float, float, float]:
    """(tokens left, refill time, seconds to wait): one request against a bucket last refilled at `last`."""
    rate = per_minute / 60.0
    tokens = min(float(per_minute), tokens + max(0.0, now - last) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, now, 0.0
    return tokens, now, (1.0 - tokens) / rate


class RateLimiter:
    """Token buckets per key; shared through `path` by every process that maps it, else in this process only."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._local: dict[str, tuple[float, float]] = {}  # keys without a shared slot (or no file)
        self._fd: int | None = None
        self._mm: mmap.mmap | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size < SIZE:
                os.ftruncate(self._fd, SIZE)
            self._mm = mmap.mmap(self._fd, SIZE)

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            os.close(self._fd)
            self._mm = self._fd = None

    def acquire(self, key: str, per_minute: int) -> float:
        """0 when the request may go ahead (one token taken), else the seconds until a token is free."""
        with self._lock:
            now = self._clock()
            if self._mm is not None:
                wait = self._acquire_shared(key, per_minute, now)
                if wait is not None:
                    return wait
            tokens, last = self._local.get(key, (float(per_minute), now))
            tokens, last, wait = _take(tokens, last, now, per_minute)
            self._local[key] = (tokens, last)
            return wait

    def _acquire_shared(self, key: str, per_minute: int, now: float) -> float | None:
        name = key.encode("utf-8")[:16].ljust(16, b"\0")
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            start = zlib.crc32(name) % SLOTS
            for probe in range(SLOTS):
                offset = ((start + probe) % SLOTS) * _SLOT.size
                slot_name, tokens, last = _SLOT.unpack_from(self._mm, offset)
                if slot_name == name:
                    break
                if slot_name == b"\0" * 16:
                    tokens, last = float(per_minute), now
                    break
            else:
                log.warning("rate limit table full (%d keys): key %s limited per worker", SLOTS, key)
                return None
            tokens, last, wait = _take(tokens, last, now, per_minute)
            _SLOT.pack_into(self._mm, offset, name, tokens, last)
            return wait
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
