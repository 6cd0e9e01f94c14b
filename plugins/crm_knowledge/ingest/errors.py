"""Error texts that are safe to keep: the error class, the column and the row or line, never a value.

Everything ingestion writes about a failure (``audit.load_batches.error``, ``raw.load_rejects.reason``,
``audit.schema_drift``, the task log, the auditor's report, an exception that Airflow logs) is read by
people and roles who must not see customers' data. A database error carries the offending values in
three places: its primary message (``value "99999999999" is out of range``), its ``DETAIL`` and its
``CONTEXT`` (``COPY t, line 7, column email: "ali@example.com"``, or the whole row). :func:`describe`
keeps the class, the SQLSTATE, the primary message with every quoted part removed, and from the
context only the line number and column name. :func:`scrub` is the last line of defence for any other
text: quoted parts, e-mail addresses and runs of digits long enough to be a phone or national ID are
masked.
"""

from __future__ import annotations

import re

import psycopg

#: A quoted part of a message: where Postgres and Python put the value they complain about.
_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+")
#: 5 or more digits in a row (Latin or Persian/Arabic-Indic), possibly split by spaces or dashes: a phone,
#: a national ID, a postcode, an amount. Row and line numbers are written by us as `row N` / `line N` and
#: kept (see :func:`scrub`).
_DIGITS = re.compile(r"[+]?[0-9\u06f0-\u06f9\u0660-\u0669](?:[\s\-]?[0-9\u06f0-\u06f9\u0660-\u0669]){4,}")
_COPY_CONTEXT = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:\s]+))?")
_KEEP_NUMBER = re.compile(r"\b(row|line|byte|column|position|batch|chunk)\s+(\d+)", re.IGNORECASE)

MAX_ERROR_LENGTH = 1000


class LoadFailed(RuntimeError):
    """The warehouse (or the machine) failed during a load: nothing of the batch was kept and the next run
    loads the same data again. The message names the source, the file or window and the error class only;
    it replaces the original exception, whose text (and traceback, in the task log) may quote values."""


def scrub(text: str) -> str:
    """`text` with quoted parts, e-mail addresses and long digit runs masked; `row 12`, `line 3` kept."""
    kept: list[str] = []

    def keep(m: re.Match) -> str:
        kept.append(m.group(0))
        return f"\ue000{len(kept) - 1}\ue000"

    text = _KEEP_NUMBER.sub(keep, text)
    text = _QUOTED.sub("«…»", text)
    text = _EMAIL.sub("«email»", text)
    text = _DIGITS.sub("«digits»", text)
    text = re.sub("\ue000(\\d+)\ue000", lambda m: kept[int(m.group(1))], text)
    return text[:MAX_ERROR_LENGTH]


def describe(exc: BaseException) -> str:
    """One line about `exc` fit for the ledger, a reject reason or a log: class and place, no values."""
    name = type(exc).__name__
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        parts = [name]
        if exc.sqlstate:
            parts[0] += f" (SQLSTATE {exc.sqlstate})"
        primary = diag.message_primary or str(exc).split("\n", 1)[0]
        parts.append(scrub(primary))
        place = []
        ctx = _COPY_CONTEXT.search(diag.context or "")
        column = diag.column_name or (ctx.group(2) if ctx else None)
        if column:
            place.append(f"column {column}")
        if ctx:
            place.append(f"copy line {ctx.group(1)}")
        text = ": ".join(parts)
        if place:
            text += f" ({', '.join(place)})"
        return text[:MAX_ERROR_LENGTH]
    if isinstance(exc, UnicodeError):
        # e.g. "'utf-8' codec can't encode character '\ud800' in position 3": the reason, not the text
        reason = getattr(exc, "reason", "") or ""
        start = getattr(exc, "start", None)
        where = f" at position {start}" if start is not None else ""
        return f"{name}: {scrub(reason)}{where}"
    message = str(exc)
    return f"{name}: {scrub(message)}" if message else name


def is_data_error(exc: BaseException) -> bool:
    """True when the database refused a *value* (a row's fault), False for outages and resource errors.

    Data exceptions (SQLSTATE class 22), integrity violations (23) and program limits such as a row too
    large (54) belong to the row: it becomes a reject. Anything else (connection lost, disk full, the
    server shutting down, a lock timeout) is the warehouse's fault: the load stops and is retried.
    """
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True  # also raised by psycopg itself, e.g. a NUL in a text value, with no SQLSTATE
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        return state[:2] in ("22", "23", "54")
    return isinstance(exc, UnicodeError | ValueError)


def quiet_server_log(conn: psycopg.Connection, *, expected_errors: bool = False) -> bool:
    """Keep this session's errors' values out of the warehouse's server log; returns whether it could.

    By default the server logs an error with its `CONTEXT` (for COPY: the whole row) and the statement. For
    the session, `log_error_verbosity = terse` drops DETAIL, HINT and CONTEXT and `log_min_error_statement =
    panic` the statement. With `expected_errors` (the row-safe retry, where each refused row is an error
    this code handles and reports itself, scrubbed), `log_min_messages = fatal` for the current transaction
    keeps those errors out of the server log altogether. These settings need a superuser (the embedded
    warehouse's admin) or `GRANT SET ON PARAMETER`; without the privilege nothing changes and the server's
    own configuration decides.
    """
    settings = (["set local log_min_messages = fatal"] if expected_errors
                else ["set log_error_verbosity = terse", "set log_min_error_statement = panic"])
    try:
        for statement in settings:
            if conn.autocommit and not expected_errors:
                conn.execute(statement)
            else:
                with conn.transaction():
                    conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
