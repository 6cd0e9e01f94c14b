"""The access log of the read service: one ``audit.api_requests`` row per answered request.

Who (key id and role), which endpoint, the HTTP status, which customers and which personal-data fields
were returned or written, and when. Never a value: not the phone or name looked up, not the profile; the
customer is named by its pseudonymous customer_id. Denials are logged too (no key, wrong role, rate limit),
so an auditor sees who tried.

The row is written before the answer is sent. A lookup or profile read writes it in the same statement that
reads the data (:func:`logged_cte`, a data-modifying ``with`` part): the row exists exactly when the data was
read, and it costs no round trip of its own. Denials and interactions write it with :func:`log_request`.
Either way it is written in the service's autocommit sessions with ``synchronous_commit = off``:
the request does not wait for a disk flush (on a busy disk that flush alone can cost 5-15 ms), and the row
is durable within PostgreSQL's WAL writer delay (a few hundred milliseconds). A crash of the service itself
loses nothing; only a crash of the PostgreSQL server in that window could lose the last rows, never leave
half of one (the trade-off is documented in docs/serve.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

COLUMNS = "key_id, role, method, endpoint, status, customer_ids, fields, duration_ms"


@dataclass(frozen=True)
class Caller:
    """Who asked what, for the audit row a read writes itself (:func:`logged_cte`)."""

    key_id: str
    role: str
    method: str
    endpoint: str
    elapsed_ms: float  # time spent on the request before its statement was sent

    def params(self) -> dict:
        return {"a_key_id": self.key_id, "a_role": self.role, "a_method": self.method,
                "a_endpoint": self.endpoint, "a_ms": round(self.elapsed_ms, 3)}


def logged_cte(*, source: str, status: str, customer_ids: str, fields: str) -> str:
    """A ``with`` part (named ``logged``) that inserts the audit row of a read in the read's own statement.

    `source` is the CTE of the rows being returned; `status`, `customer_ids` and `fields` are SQL expressions
    over it (aggregates: the insert writes exactly one row). The duration is the time before the statement
    plus the statement's own, so it leaves out only the encoding and sending of the answer. The statement
    takes :meth:`Caller.params`."""
    return (f"logged as (insert into audit.api_requests ({COLUMNS}) "
            f"select %(a_key_id)s, %(a_role)s, %(a_method)s, %(a_endpoint)s, {status}, {customer_ids}, {fields}, "
            "round((%(a_ms)s + extract(epoch from clock_timestamp() - statement_timestamp()) * 1000)::numeric, 2) "
            f"from {source} returning 1)")


def log_request(conn: psycopg.Connection, *, key_id: str | None, role: str | None, method: str, endpoint: str,
                status: int, customer_ids: list[str] | None = None, fields: list[str] | None = None,
                duration_ms: float | None = None) -> None:
    conn.execute(f"insert into audit.api_requests ({COLUMNS}) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (key_id, role, method, endpoint, status, customer_ids or [], fields or [],
                  round(duration_ms, 2) if duration_ms is not None else None))
