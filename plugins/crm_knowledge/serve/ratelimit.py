"""Per-key rate limits: a token bucket per API key, refilled continuously.

A key may make ``limit`` requests per minute on average and up to ``limit`` at once after a quiet minute.
The buckets live in the serving process (each uvicorn worker keeps its own, so with N workers a key gets at
most N times its limit); a refused request gets HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def acquire(self, key: str, per_minute: int) -> float:
        """0 when the request may go ahead (one token taken), else the seconds until a token is free."""
        rate = per_minute / 60.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
