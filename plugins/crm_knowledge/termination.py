"""Ending a process on SIGTERM or SIGHUP the way Ctrl-C ends it.

By default either signal ends Python at once: no ``finally`` block runs, so whatever a command started or
wrote for itself stays behind (Airflow's components, a Spark JVM and its scratch directory of staged
personal data, a benchmark's home lock). Raised as KeyboardInterrupt instead, the signal unwinds the command
like Ctrl-C, and every ``finally`` and context manager on the way cleans up. A supervisor (systemd, ``docker
stop``, CI's timeout) sends SIGTERM; a closed terminal sends SIGHUP.
"""

from __future__ import annotations

import signal
import threading

#: The exit status of a command ended by Ctrl-C or one of these signals (the shell's 128 + SIGINT).
INTERRUPTED_EXIT = 130

#: The signals received since :func:`end_like_ctrl_c`, in the order they came.
_received: list[int] = []


def stopped_by() -> str | None:
    """The name of the first SIGTERM / SIGHUP this process received (``"SIGTERM"``), or None.

    A signal to a process group (CI's ``timeout``, ``docker stop``, systemd) reaches what the command started
    too: a Spark JVM shuts down and fails the running job, a dbt process exits. The command's Python then sees
    that failure, sometimes before the KeyboardInterrupt, which the library it is in may swallow or turn into an
    error of its own (py4j, a wrapper reading the JVM's error). The entry point asks this to report such an
    error as the stop it is (exit 130), not as a failure of the command."""
    return signal.Signals(_received[0]).name if _received else None


def end_like_ctrl_c() -> None:
    """From now on SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread (elsewhere Python handles no
    signals, and nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, _frame: object) -> None:
        _received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
