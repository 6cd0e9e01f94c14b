"""The right to be forgotten: erase a customer everywhere, keep only a tombstone, tell every destination.

Requests arrive three ways, all handled by :func:`run_pending` (the ``customer_erasure`` DAG) or
:func:`erase` (``ckp erase``):

* an ``erasure_request`` web form (``raw.form_submissions``; its own identifiers name the customer);
* a file drop: ``<landing>/erasure_requests/*.jsonl`` (one JSON object per line) or ``*.csv`` with the
  columns ``email, phone, national_id, reason``; the file is deleted once its requests completed
  (it holds personal data and is not archived);
* the command line: ``ckp erase --email … --phone … --national-id … --reason …``.

For one request (:func:`erase`), under a warehouse advisory lock, as the ``ckp_pipeline`` role:

1. **find** every matching customer through the identity map (privacy/lookup.py: normalised
   identifiers, junk values ignored, raw rows not yet resolved included);
2. **tombstone** (privacy/tombstones.py): the HMAC pseudonyms (privacy/pseudonym.py) of every email,
   phone, national ID and name their records carried, with the date, go to ``identity.erasure_tombstones``
   — first, so an identity run racing the erasure already drops them; identity resolution enforces the
   tombstones on its input so old or re-delivered source files never re-create them;
3. **removals**: every destination holding one of their keys (``scoring.delivered_state``) receives a
   delta with those keys removed (reason ``forgotten``), through the export package's one delivery path
   (export/deliver.py: destination lock, ``send_delta``: audit row, send, delivered state). A failed removal
   stops the erasure before anything is deleted, so the next run finds everything again and retries;
4. **files**: the landing archive's copies of their source records are rewritten without their rows
   (located through raw ``_batch_id`` / ``_row_number`` and the ledger's checksum *before* the purge),
   and remaining identifier spellings are masked there and in quarantined files
   (privacy/erasure_files.py); a file that cannot be redacted is listed in the result and the audit row;
5. **purge** (privacy/purge.py, shared with tombstone enforcement), in one transaction: their source records
   (and orders) are deleted from ``raw``; every row of theirs in staging, intermediate, marts, ``pii``,
   identity, scoring, snapshots and audit (by ``customer_id`` or source record key) is deleted; any remaining
   occurrence of one of their email / phone / national-ID spellings in any text or JSON column of a project
   schema (e.g. another record's free-text note) is masked to ``[erased]``;
6. **export history**: rows of theirs in earlier export files under ``exports_dir`` are removed and the
   file's manifest updated (sha256, counts, a ``redactions`` entry); the removal files just written
   are kept (they carry only the destination key and ``removal_reason``);
7. **audit**: ``audit.erasure_requests`` records the completed request (counts only, no PII).

Idempotent: the request id derives from the identifiers' pseudonyms; a repeat finds nothing and
changes nothing (unless a re-delivered file brought data back, which is then erased too).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_knowledge.privacy import erasure_files, lookup, purge, tombstones
from crm_knowledge.privacy.pseudonym import load_key, pseudonymize
from crm_knowledge.privacy.roles import PIPELINE
from crm_knowledge.settings import Settings, get_settings
from crm_knowledge.warehouse.db import advisory_lock, advisory_unlock, connect, table_exists

log = logging.getLogger(__name__)

#: Folder under the landing zone where erasure request files are dropped.
REQUEST_DIR = "erasure_requests"
REQUEST_FIELDS = ("email", "phone", "national_id", "reason")
_LOCK = "crm_knowledge.erasure"


@dataclass
class ErasureRequest:
    """One request: at least one identifier. ``origin`` is cli | form | file."""

    email: str | None = None
    phone: str | None = None
    national_id: str | None = None
    reason: str | None = None
    origin: str = "cli"
    received_at: dt.datetime | None = None
    ref: str | None = None  # form submission id / file name (no PII)
    #: identifier kinds declared in config/identity.yml: {"passport": "X1234567"}
    declared: dict[str, str] = field(default_factory=dict)

    def identifiers(self) -> dict[str, str]:
        return lookup.normalise_identifiers(self.email, self.phone, self.national_id, self.declared)


@dataclass
class ErasureResult:
    request_id: str
    origin: str
    status: str  # completed | no_match | already_erased | failed
    customers_erased: int = 0
    records_erased: int = 0
    rows_deleted: int = 0
    values_masked: int = 0
    export_files_redacted: int = 0
    removals_sent: dict[str, int] = field(default_factory=dict)
    tombstones: int = 0
    ignored_junk: list[str] = field(default_factory=list)
    # the landing archive and the quarantine (privacy/erasure_files.py)
    archive_files_redacted: int = 0
    archive_rows_removed: int = 0
    archive_values_masked: int = 0
    quarantine_files_masked: int = 0
    quarantine_values_masked: int = 0
    files_not_redacted: list[str] = field(default_factory=list)  # "<path under CKP_HOME>: <reason>"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add_files(self, files: erasure_files.FileRedaction) -> None:
        self.archive_files_redacted += files.archive_files_redacted
        self.archive_rows_removed += files.archive_rows_removed
        self.archive_values_masked += files.archive_values_masked
        self.quarantine_files_masked += files.quarantine_files_masked
        self.quarantine_values_masked += files.quarantine_values_masked
        self.files_not_redacted += files.not_redacted

    def files_note(self) -> str | None:
        """For the audit row: the files that could not be redacted (paths and reasons, no values)."""
        if not self.files_not_redacted:
            return None
        return (f"completed, but {len(self.files_not_redacted)} file(s) could not be redacted (privacy officer: "
                "remove or redact them by hand: the warehouse rows are already gone, so running the request again "
                "does not revisit them): " + "; ".join(self.files_not_redacted))


# --- helpers -------------------------------------------------------------------------------------------------

def request_id(identifiers: dict[str, str], key: bytes | None = None) -> str:
    """Stable id of a request: a hash of its identifiers' keyed pseudonyms (so no PII, not guessable)."""
    pseudonyms = sorted(pseudonymize(v, k, key) for k, v in identifiers.items())
    return "erq-" + hashlib.sha256("|".join(pseudonyms).encode()).hexdigest()[:24]


def _as_pipeline(conn: psycopg.Connection) -> None:
    """Run as ckp_pipeline when the connecting user may (the role that owns and writes everything)."""
    ok = conn.execute("select exists (select from pg_roles where rolname = %s) "
                      "and pg_has_role(current_user, %s, 'MEMBER')", (PIPELINE, PIPELINE)).fetchone()[0]
    if ok:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(PIPELINE)))
    else:
        log.warning("erasure: current user is not a member of %s; running as %s", PIPELINE,
                    conn.execute("select current_user").fetchone()[0])


# --- removals ------------------------------------------------------------------------------------------------

def send_removals(conn: psycopg.Connection, customer_ids: set[str], as_of: dt.date, settings: Settings,
                  config_path: Path | str | None = None) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Send each destination holding one of these customers a removal delta; returns (counts, keys by dest).

    Each removal goes through the export package's one delivery path (destination lock, ``send_delta``:
    audit row, send, delivered state). Raises DeliveryError when a destination did not acknowledge (its
    state is then kept for the retry).
    """
    from crm_knowledge.export.config import load_destinations
    from crm_knowledge.export.deliver import DeliveryError, destination_lock, send_delta
    from crm_knowledge.export.delta import removal_delta

    if not customer_ids:
        return {}, {}
    held = conn.execute(
        "select destination, destination_key, customer_id, payload from scoring.delivered_state "
        "where customer_id = any(%s) order by 1, 2", (sorted(customer_ids),)).fetchall()
    by_dest: dict[str, list[tuple[str, str, str | None]]] = {}
    for dest_name, key, cid, payload in held:
        by_dest.setdefault(dest_name, []).append((key, cid, (payload or {}).get("audience")))
    if not by_dest:
        return {}, {}
    cfg = load_destinations(config_path or settings.destinations_file)
    known = {x.name: x for x in cfg.destinations}
    sent: dict[str, int] = {}
    keys: dict[str, set[str]] = {}
    for dest_name, rows in by_dest.items():
        keys[dest_name] = {r[0] for r in rows}
        dest = known.get(dest_name)
        if dest is None or not dest.enabled:
            raise DeliveryError(
                f"destination {dest_name!r} holds {len(rows)} key(s) of the customer but is "
                f"{'not in ' + str(cfg.source) if dest is None else 'disabled'}: cannot send the removal; "
                "enable it (or remove its rows from scoring.delivered_state once it deleted them) and retry")
        delta = removal_delta(dest, rows, "forgotten")
        with destination_lock(conn, dest, wait=True):  # a running delivery finishes first
            result = send_delta(conn, dest, delta, as_of, settings=settings, error_prefix="erasure removal: ")
        sent[dest.name] = len(rows)
        log.info("erasure: removal of %d key(s) sent to %s -> %s", len(rows), dest.name, result.location)
    return sent, keys


# --- export files --------------------------------------------------------------------------------------------

def redact_export_files(settings: Settings, keys_by_dest: dict[str, set[str]], customer_ids: set[str],
                        needles: Iterable[str], keep: set[str], reason: str,
                        config_path: Path | str | None = None) -> int:
    """Remove the customer's rows from earlier export files (not the removal files in `keep`)."""
    from crm_knowledge.export.config import load_destinations
    from crm_knowledge.export.file_drop import atomic_write

    root = Path(settings.exports_dir)
    if not root.exists():
        return 0
    try:
        cfg = load_destinations(config_path or settings.destinations_file)
        dests = {x.name: x for x in cfg.destinations}
    except Exception:  # a broken config must not stop redaction: fall back to customer ids + needles
        dests = {}
    pattern = purge.python_pattern(needles)
    redacted = 0
    for path in sorted([*root.rglob("*.csv"), *root.rglob("*.jsonl")]):
        if path.name.startswith(".") or str(path) in keep:
            continue
        dest = dests.get(path.parent.name)
        key_col = dest.key_column if dest else "customer_id"
        drop = set(keys_by_dest.get(path.parent.name, set()))
        if dest is None or dest.id_space == "customer_id":
            drop |= customer_ids

        def bad(values: Iterable[Any], key: Any, drop: set[str] = drop) -> bool:
            if key is not None and str(key) in drop:
                return True
            return bool(pattern) and any(pattern.search(str(v)) for v in values if v not in (None, ""))

        text = path.read_text(encoding="utf-8")
        removed: dict[str, int] = {}
        if path.suffix == ".jsonl":
            kept_lines = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                if bad(rec.values(), rec.get(key_col)):
                    ct = str(rec.get("change_type") or "row")
                    removed[ct] = removed.get(ct, 0) + 1
                else:
                    kept_lines.append(line)
            new = ("\n".join(kept_lines) + ("\n" if kept_lines else "")).encode("utf-8")
        else:
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                continue
            header, body = rows[0], rows[1:]
            ki = header.index(key_col) if key_col in header else None
            ci = header.index("change_type") if "change_type" in header else None
            kept_rows = []
            for row in body:
                if bad(row, row[ki] if ki is not None and ki < len(row) else None):
                    ct = row[ci] if ci is not None and ci < len(row) else "row"
                    removed[ct] = removed.get(ct, 0) + 1
                else:
                    kept_rows.append(row)
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(kept_rows)
            new = buf.getvalue().encode("utf-8")
        if not removed:
            continue
        atomic_write(path, new)
        _update_manifest(path, new, removed, reason)
        redacted += 1
        log.info("erasure: %s: %d row(s) removed", path, sum(removed.values()))
    return redacted


def _update_manifest(data_path: Path, data: bytes, removed: dict[str, int], reason: str) -> None:
    from crm_knowledge.export.file_drop import atomic_write

    manifest_path = data_path.with_name(data_path.stem + ".manifest.json")
    if not manifest_path.exists():
        return
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["bytes"] = len(data)
    rows = dict(manifest.get("rows") or {})
    for ct, n in removed.items():
        if ct in rows:
            rows[ct] = max(0, int(rows[ct]) - n)
    rows["total"] = max(0, int(rows.get("total", 0)) - sum(removed.values()))
    manifest["rows"] = rows
    manifest.setdefault("redactions", []).append({
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows_removed": sum(removed.values()),
        "reason": reason})
    atomic_write(manifest_path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


# --- one request ---------------------------------------------------------------------------------------------

def erase(request: ErasureRequest, *, settings: Settings | None = None, as_of: dt.date | None = None,
          config_path: Path | str | None = None, url: str | None = None) -> ErasureResult:
    """Erase the customer(s) a request names (see module doc). Idempotent; raises on a failed removal."""
    settings = settings or get_settings()
    as_of = as_of or dt.date.today()
    identifiers = request.identifiers()
    key = load_key()
    req_id = request_id(identifiers, key)
    with connect(url or settings.warehouse_url, autocommit=True,
                 application_name="crm_knowledge.erasure") as conn:
        _as_pipeline(conn)
        advisory_lock(conn, _LOCK)
        try:
            return _erase_locked(conn, request, identifiers, req_id, key, settings, as_of, config_path)
        finally:
            advisory_unlock(conn, _LOCK)


def _erase_locked(conn: psycopg.Connection, request: ErasureRequest, identifiers: dict[str, str], req_id: str,
                  key: bytes, settings: Settings, as_of: dt.date,
                  config_path: Path | str | None) -> ErasureResult:
    match = lookup.find(conn, identifiers)
    previous = conn.execute("select status from audit.erasure_requests where request_id = %s",
                            (req_id,)).fetchone()
    result = ErasureResult(request_id=req_id, origin=request.origin, status="completed",
                           ignored_junk=match.ignored_junk)
    if match.empty:
        # nothing held: keep the tombstone so nothing is collected again, record the request once; a file
        # that could not be loaded (quarantine) may still name them
        file_needles = purge.file_needles(purge.requested_needles(match.identifiers))
        result.add_files(erasure_files.mask_quarantine(settings, file_needles, f"erasure {req_id}"))
        tomb = tombstones.tombstone_rows(match, key)
        with conn.transaction():
            tombstones.write_tombstones(conn, tomb, req_id, as_of)
            if previous is None:
                conn.execute(
                    "insert into audit.erasure_requests (request_id, origin, reason, status, received_at, "
                    "tombstones, completed_at, first_completed_at) values (%s, %s, %s, 'no_match', "
                    "coalesce(%s, now()), %s, now(), now())",
                    (req_id, request.origin,
                     purge.mask_text(request.reason, purge.needles_of(match) | set(identifiers.values())),
                     request.received_at, len(tomb)))
            if result.files_not_redacted:
                conn.execute("update audit.erasure_requests set error = %s where request_id = %s",
                             (result.files_note()[:4000], req_id))
        result.status = "no_match" if previous is None else "already_erased"
        result.tombstones = len(tomb)
        log.info("erasure %s: nothing held for the request (%s); %d quarantined file(s) masked", req_id,
                 result.status, result.quarantine_files_masked)
        return result

    needles = purge.needles_of(match) | set(identifiers.values())
    reason = purge.mask_text(request.reason, needles)
    tomb = tombstones.tombstone_rows(match, key)
    with conn.transaction():
        conn.execute(
            "insert into audit.erasure_requests (request_id, origin, reason, status, received_at) "
            "values (%s, %s, %s, 'running', coalesce(%s, now())) on conflict (request_id) do update "
            "set status = 'running', runs = audit.erasure_requests.runs + 1, error = null",
            (req_id, request.origin, reason, request.received_at))
        result.tombstones = tombstones.write_tombstones(conn, tomb, req_id, as_of)
    try:
        result.removals_sent, keys_by_dest = send_removals(conn, match.customer_ids, as_of, settings, config_path)
        keep = {str(p) for p in _removal_files(conn, result.removals_sent)}
        # files before the purge: their rows are located through raw; a retry (rows emptied, not deleted,
        # so row numbers stay valid) finds and empties the same rows again, changing nothing more
        file_needles = purge.file_needles(needles)
        located = erasure_files.locate(conn, match.records, purge.sql_pattern(needles))
        result.add_files(erasure_files.redact_archive(settings, located, file_needles, f"erasure {req_id}"))
        result.add_files(erasure_files.mask_quarantine(settings, file_needles, f"erasure {req_id}"))
        result.files_not_redacted = [purge.mask_text(x, needles) for x in result.files_not_redacted]
        with conn.transaction():
            result.rows_deleted = purge.purge_records(conn, match.records, match.customer_ids)
            result.values_masked = purge.mask_everywhere(conn, needles)
        result.export_files_redacted = redact_export_files(settings, keys_by_dest, match.customer_ids, needles,
                                                           keep, f"erasure {req_id}", config_path)
    except Exception as exc:
        conn.execute("update audit.erasure_requests set status = 'failed', error = %s where request_id = %s",
                     (purge.mask_text(f"{type(exc).__name__}: {exc}", needles)[:2000], req_id))
        log.error("erasure %s failed (will be retried; nothing was deleted unless stated): %s", req_id, exc)
        raise
    result.customers_erased = len(match.customer_ids)
    result.records_erased = len(match.records)
    conn.execute(
        "update audit.erasure_requests set status = 'completed', completed_at = now(), "
        "first_completed_at = coalesce(first_completed_at, now()), "
        "customers_erased = customers_erased + %s, records_erased = records_erased + %s, "
        "rows_deleted = rows_deleted + %s, values_masked = values_masked + %s, "
        "export_files_redacted = export_files_redacted + %s, removals_sent = removals_sent || %s, "
        "archive_files_redacted = archive_files_redacted + %s, archive_rows_removed = archive_rows_removed + %s, "
        "quarantine_files_masked = quarantine_files_masked + %s, files_not_redacted = %s, "
        "tombstones = (select count(*) from identity.erasure_tombstones where request_id = %s), error = %s "
        "where request_id = %s",
        (result.customers_erased, result.records_erased, result.rows_deleted, result.values_masked,
         result.export_files_redacted, Jsonb(result.removals_sent), result.archive_files_redacted,
         result.archive_rows_removed, result.quarantine_files_masked, len(result.files_not_redacted), req_id,
         (result.files_note() or "")[:4000] or None, req_id))
    log.info("erasure %s completed: %d customer(s), %d record(s), %d rows deleted, %d masked, removals %s, "
             "%d export file(s) redacted, %d archived file(s) redacted (%d rows removed), %d quarantined file(s) "
             "masked, %d tombstone(s)", req_id, result.customers_erased, result.records_erased,
             result.rows_deleted, result.values_masked, result.removals_sent, result.export_files_redacted,
             result.archive_files_redacted, result.archive_rows_removed, result.quarantine_files_masked,
             result.tombstones)
    for line in result.files_not_redacted:
        log.error("erasure %s: file not redacted: %s", req_id, line)
    return result


def _removal_files(conn: psycopg.Connection, sent: dict[str, int]) -> list[str]:
    """Locations of the removal deliveries just made (kept by the redaction of export history)."""
    if not sent:
        return []
    rows = conn.execute(
        "select distinct on (destination) location from audit.exports where destination = any(%s) "
        "and status = 'delivered' order by destination, started_at desc", (list(sent),)).fetchall()
    return [r[0] for r in rows if r[0]]


# --- pending requests (the DAG) ------------------------------------------------------------------------------

def form_requests(conn: psycopg.Connection) -> list[ErasureRequest]:
    """Erasure requests submitted through the web form (loaded batches only)."""
    if not table_exists(conn, "raw.form_submissions"):
        return []
    rows = conn.execute(
        "select distinct on (btrim(f.submission_id)) btrim(f.submission_id), f.email, f.phone, f.national_id, "
        "util.parse_timestamp(f.submitted_at) from raw.form_submissions f "
        "join audit.load_batches b on b.batch_id = f._batch_id "
        "and b.status = 'loaded' where lower(btrim(f.form_type)) = 'erasure_request' "
        "order by btrim(f.submission_id), f._loaded_at desc").fetchall()
    return [ErasureRequest(email=e, phone=p, national_id=n, reason="erasure_request web form", origin="form",
                           received_at=at, ref=sid) for sid, e, p, n, at in rows]


def request_files(settings: Settings) -> list[Path]:
    folder = Path(settings.landing_dir) / REQUEST_DIR
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in (".jsonl", ".csv"))


def read_request_file(path: Path) -> list[ErasureRequest]:
    """Requests in a dropped file; an unknown column or a malformed line is an error naming file and line."""
    out: list[ErasureRequest] = []
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".jsonl":
        records = []
        for no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {no} is not JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line {no} must be a JSON object")
            records.append((no, rec))
    else:
        records = list(enumerate(csv.DictReader(io.StringIO(text)), start=2))
    declared = sorted(lookup.declared_kinds())
    allowed = [*REQUEST_FIELDS, *declared]
    for no, rec in records:
        unknown = sorted(set(rec) - set(allowed))
        if unknown:
            raise ValueError(f"{path}: line {no} has unknown field(s) {unknown}; allowed: {allowed}")
        req = ErasureRequest(email=rec.get("email") or None, phone=rec.get("phone") or None,
                             national_id=rec.get("national_id") or None, reason=rec.get("reason") or None,
                             origin="file", ref=path.name,
                             declared={k: str(rec[k]) for k in declared if rec.get(k)})
        try:
            req.identifiers()
        except lookup.IdentifierError as exc:
            raise ValueError(f"{path}: line {no}: {exc}") from None
        out.append(req)
    return out


def run_pending(as_of: dt.date | None = None, settings: Settings | None = None,
                config_path: Path | str | None = None) -> dict[str, Any]:
    """Process every pending request (web forms, then dropped files); the DAG's task. No PII in the result."""
    settings = settings or get_settings()
    with connect(settings.warehouse_url, autocommit=True) as conn:
        from_forms = form_requests(conn)
    results: list[ErasureResult] = []
    failed: list[str] = []   # one failing request (a destination down, a bug) must not hold up the others

    def attempt(req: ErasureRequest) -> bool:
        try:
            results.append(erase(req, settings=settings, as_of=as_of, config_path=config_path))
            return True
        except Exception as exc:  # noqa: BLE001 - recorded as failed in the audit table by erase(); retried
            failed.append(f"{req.origin} {req.ref}: {type(exc).__name__}")
            log.exception("erasure: request %s (%s) failed; carrying on with the other requests", req.ref,
                          req.origin)
            return False

    skipped_forms = 0
    for req in from_forms:
        try:
            req.identifiers()
        except lookup.IdentifierError:
            skipped_forms += 1
            log.warning("erasure: web form %s names no usable identifier; left for the privacy officer", req.ref)
            continue
        attempt(req)
    files_done = 0
    for path in request_files(settings):
        outcomes = [attempt(req) for req in read_request_file(path)]
        if not all(outcomes):
            log.error("erasure: request file %s kept for the next run: %d of its requests failed", path.name,
                      outcomes.count(False))
            continue
        path.unlink()  # personal data: deleted, not archived, once every request in it completed
        files_done += 1
        log.info("erasure: request file %s processed and deleted", path.name)
    # re-delivered copies of redacted files that the ledger skipped are archived as they arrived: redact them
    copies = erasure_files.sweep_copies(settings)
    summary = {
        "requests": len(results),
        "by_status": {s: sum(r.status == s for r in results) for s in sorted({r.status for r in results})},
        "customers_erased": sum(r.customers_erased for r in results),
        "files_processed": files_done,
        "forms_without_identifier": skipped_forms,
        "archive_files_redacted": sum(r.archive_files_redacted for r in results),
        "archive_rows_removed": sum(r.archive_rows_removed for r in results),
        "quarantine_files_masked": sum(r.quarantine_files_masked for r in results),
        "archive_copies_replaced": copies.copies_replaced,
        "files_not_redacted": sum(len(r.files_not_redacted) for r in results) + len(copies.not_redacted),
        "request_ids": [r.request_id for r in results],
    }
    log.info("erasure run: %s", summary)
    if failed:  # the task fails (and Airflow retries it) only after every other request was done
        raise RuntimeError(f"{len(failed)} erasure request(s) failed and will be retried (web forms and request "
                           f"files stay pending): {'; '.join(failed)}. Completed this run: {summary}")
    return summary
