"""Loopback ports: whether one is free, and a free one.

Every server the pipeline starts on this machine (the embedded warehouse, `ckp serve`, the tests' servers)
listens on 127.0.0.1; these are the one place that asks the kernel about a port.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Nothing listens on ``host:port`` now: a bind (with SO_REUSEADDR, so a port in TIME_WAIT counts as free)
    that is released at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now, as the kernel hands one out (bound and released at once; a caller that
    needs it to stay free starts its server soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_or_free(port: int, *, span: int = 1, host: str = LOOPBACK) -> int:
    """`port` when it (and the `span - 1` ports after it) are free, else the first of `span` free ports the
    kernel hands out: a default port that something else on the machine holds must not stop a server of ours
    that could listen anywhere."""
    if all(port_free(port + i, host) for i in range(span)):
        return port
    for _ in range(50):
        free = free_port(host)
        if all(port_free(free + i, host) for i in range(span)):
            return free
    raise RuntimeError(f"no {span} free consecutive port(s) on {host}")
