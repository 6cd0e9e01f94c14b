"""What the erasure DAG calls (``crm_knowledge.<stage>.tasks``, see identity/tasks.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crm_knowledge.privacy.erasure import run_pending


def erase_pending_requests(as_of: str) -> dict[str, Any]:
    """Carry out every pending erasure request (forms, file drops), dated the run's day."""
    return run_pending(as_of=dt.date.fromisoformat(as_of))
