"""A tiny local webhook receiver for the demo run and the tests (standard library only).

    python -m crm_knowledge.export.receiver --port 8765 --out var/webhook_inbox [--fail-first 503,503]

Each accepted POST (a JSON object with an ``Idempotency-Key`` header) is stored as ``<out>/<key>.json``
(written atomically). A repeated key is answered ``200 {"status": "duplicate"}`` and not stored again; the same
key with a different body is refused with ``422``. Keys survive a restart because they are the file names.
Every request, accepted or not, is appended to ``<out>/requests.log`` (JSON lines: key, status, outcome), so
one can see retries. ``--fail-first`` answers the first requests with the given statuses (to demo retries;
0 = answer that request normally).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from crm_knowledge.privacy.file_modes import private_dir
from crm_knowledge.settings import get_settings

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
MAX_BODY_BYTES = 50 * 1024 * 1024


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], out_dir: Path, fail_plan: list[int] | None = None,
                 path: str | None = None) -> None:
        super().__init__(address, _Handler)
        self.out_dir = Path(out_dir)
        private_dir(self.out_dir)  # deliveries hold personal data; mkstemp makes each file 0600
        self.fail_plan = list(fail_plan or [])
        self.path_filter = path
        self.lock = threading.Lock()

    # --- helpers for tests and the demo -----------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{self.path_filter or '/segments'}"

    def stored(self) -> list[dict]:
        """Stored batches, oldest first."""
        files = sorted(self.out_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        return [json.loads(p.read_text(encoding="utf-8")) for p in files]

    def requests_log(self) -> list[dict]:
        path = self.out_dir / "requests.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def start_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="webhook-receiver", daemon=True)
        t.start()
        return t


class _Handler(BaseHTTPRequestHandler):
    server: ReceiverServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # route to logging, not stderr
        log.debug("receiver: " + fmt, *args)

    def _answer(self, status: int, payload: dict, key: str | None, outcome: str) -> None:
        # Logged before answering, so a client that got the answer finds the request in the log.
        entry = {"at": datetime.now(UTC).isoformat(), "path": self.path, "idempotency_key": key,
                 "status": status, "outcome": outcome}
        with self.server.lock, open(self.server.out_dir / "requests.log", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        key = self.headers.get("Idempotency-Key")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, {"error": "body too large"}, key, "refused")
            return
        raw = self.rfile.read(length)
        with self.server.lock:
            planned = self.server.fail_plan.pop(0) if self.server.fail_plan else None
        if planned:  # 0 / None in a plan = answer this request normally
            self._answer(planned, {"error": f"planned failure {planned}"}, key, "planned_failure")
            return
        if self.server.path_filter and self.path.split("?")[0] != self.server.path_filter:
            self._answer(404, {"error": "unknown path"}, key, "refused")
            return
        if not key or not _KEY_RE.match(key):
            self._answer(400, {"error": "missing or invalid Idempotency-Key header"}, key, "refused")
            return
        try:
            doc = json.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("body must be a JSON object")
        except (UnicodeDecodeError, ValueError) as exc:
            self._answer(400, {"error": f"invalid JSON: {exc}"}, key, "refused")
            return
        digest = hashlib.sha256(raw).hexdigest()
        target = self.server.out_dir / f"{key}.json"
        with self.server.lock:
            if target.exists():
                seen = json.loads(target.read_text(encoding="utf-8"))
                if seen.get("_body_sha256") != digest:
                    outcome, status, answer = "conflict", 422, {"error": "idempotency key reused with another body"}
                else:
                    outcome, status, answer = "duplicate", 200, {"status": "duplicate", "idempotency_key": key}
            else:
                doc["_idempotency_key"] = key
                doc["_body_sha256"] = digest
                doc["_received_at"] = datetime.now(UTC).isoformat()
                fd, tmp = tempfile.mkstemp(dir=self.server.out_dir, prefix=".recv.", suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(doc, fh, ensure_ascii=False)
                os.replace(tmp, target)
                outcome, status, answer = "stored", 200, {"status": "stored", "idempotency_key": key}
        self._answer(status, answer, key, outcome)


def make_server(port: int = 0, out_dir: Path | str = "webhook_inbox", *, host: str = "127.0.0.1",
                fail_plan: list[int] | None = None, path: str | None = None) -> ReceiverServer:
    """A receiver bound to host:port (0 = any free port); call ``serve_forever`` or ``start_in_thread``."""
    return ReceiverServer((host, port), Path(out_dir), fail_plan=fail_plan, path=path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=get_settings().webhook_port)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--out", required=True, help="folder where received batches are stored")
    ap.add_argument("--path", default=None, help="only accept POSTs to this path (default: any)")
    ap.add_argument("--fail-first", default="", help="comma-separated statuses to answer first, e.g. 503,503")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plan = [int(s) for s in args.fail_first.split(",") if s.strip()]
    server = make_server(args.port, args.out, host=args.host, fail_plan=plan, path=args.path)
    log.info("webhook receiver listening on http://%s:%d, storing batches in %s", args.host,
             server.server_address[1], args.out)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
