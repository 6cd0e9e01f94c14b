"""The access log of the read service: one ``audit.api_requests`` row per answered request.

Who (key id and role), which endpoint, the HTTP status, which customers and which personal-data fields
were returned or written, and when. Never a value: not the phone or name looked up, not the profile; the
customer is named by its pseudonymous customer_id. Denials are logged too (no key, wrong role, rate limit),
so an auditor sees who tried.

The row is written before the answer is sent, in the service's sessions with ``synchronous_commit = off``:
the request does not wait for a disk flush (on a busy disk that flush alone can cost 5-15 ms), and the row
is durable within PostgreSQL's WAL writer delay (a few hundred milliseconds). A crash of the service itself
loses nothing; only a crash of the PostgreSQL server in that window could lose the last rows, never leave
half of one (the trade-off is documented in docs/serve.md).
"""

from __future__ import annotations

import psycopg


def log_request(conn: psycopg.Connection, *, key_id: str | None, role: str | None, method: str, endpoint: str,
                status: int, customer_ids: list[str] | None = None, fields: list[str] | None = None,
                duration_ms: float | None = None) -> None:
    conn.execute("insert into audit.api_requests (key_id, role, method, endpoint, status, customer_ids, fields, "
                 "duration_ms) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (key_id, role, method, endpoint, status, customer_ids or [], fields or [],
                  round(duration_ms, 2) if duration_ms is not None else None))
