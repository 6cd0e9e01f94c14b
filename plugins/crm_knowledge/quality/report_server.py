"""A small read-only web server for the auditors: the data-quality report and the GX Data Docs.

`ckp reports serve` runs it; the compose deployment runs it as the `reports` service over the reports
folder of the shared volume (mounted read-only). It serves files under one folder only, by GET/HEAD:

* ``/`` an index linking the latest run's report, the Data Docs and every run's report (newest first);
* ``/latest.html``, ``/runs/<run>/index.html``, ``/data_docs/...`` the files as the pipeline wrote them;
* ``/healthz`` ``ok`` (for the container's health check).

Why it is this strict: the reports carry no personal data, but the volume they live on may, so nothing
outside the folder is reachable (no ``..``, no symlink out, no hidden or temporary files, no directory
listings) and nothing can be written. Pages may load only what the server itself serves (the Data Docs
are built offline; quality/offline_docs.py), so an auditor's browser fetches nothing from outside.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

DEFAULT_PORT = 8090
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self' 'unsafe-inline' data:; frame-ancestors 'none'; "
                               "form-action 'none'",
}


def _run_pages(root: Path) -> list[tuple[str, dt.datetime]]:
    """(run id, written at) of every run's report page, newest first."""
    runs = root / "runs"
    found = []
    if runs.is_dir():
        for page in runs.glob("*/index.html"):
            found.append((page.parent.name, dt.datetime.fromtimestamp(page.stat().st_mtime, dt.UTC)))
    return sorted(found, key=lambda item: item[1], reverse=True)


def index_page(root: Path) -> str:
    """The landing page: what is there to read, with when it was written."""
    def stamp(path: Path) -> str:
        if not path.exists():
            return "not written yet"
        return f"{dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC):%Y-%m-%d %H:%M} UTC"

    latest, docs = root / "latest.html", root / "data_docs" / "index.html"
    items = [
        f'<li><a id="latest-report" href="latest.html">Latest run: data-quality report</a> ({stamp(latest)})</li>',
        f'<li><a id="data-docs" href="data_docs/index.html">Great Expectations Data Docs</a> ({stamp(docs)})</li>',
    ]
    runs = "".join(
        f'<li><a href="runs/{html.escape(name, quote=True)}/index.html">{html.escape(name)}</a> '
        f"({written:%Y-%m-%d %H:%M} UTC)</li>" for name, written in _run_pages(root))
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Pipeline reports</title>"
        "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}li{margin:.3rem 0}</style></head>"
        "<body><h1>Customer knowledge pipeline: reports for auditors</h1>"
        f"<ul>{''.join(items)}</ul><h2>Every run</h2><ul id=\"runs\">{runs or '<li>no run yet</li>'}</ul>"
        "<p>Read-only. Load batches, quality gate decisions and failed expectations, from the audit schema; "
        "no personal data.</p></body></html>"
    )


class ReportHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of files under `directory` only; everything else is refused."""

    server_version = "ckp-reports"
    sys_version = ""

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        log.info("%s %s", self.address_string(), format % args)

    def _refuse(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815 - http.server's naming

    def _send_text(self, body: str, content_type: str, head_only: bool) -> None:
        data = body.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _route(self, head_only: bool) -> bool:
        """Serve the generated pages; False when the request is for a file."""
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send_text("ok\n", "text/plain; charset=utf-8", head_only)
            return True
        if path in ("/", "/index.html"):
            self._send_text(index_page(Path(self.directory)), "text/html; charset=utf-8", head_only)
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._route(head_only=False):
            super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        if not self._route(head_only=True):
            super().do_HEAD()

    def translate_path(self, path: str) -> str:
        """The file for `path`, or a path that does not exist when it is not one we serve."""
        root = Path(self.directory).resolve()
        nowhere = str(root / ".not-served")
        parts = [p for p in unquote(urlsplit(path).path).split("/") if p]
        if any(p in (".", "..") or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
            return nowhere
        target = root.joinpath(*parts)
        try:
            resolved = target.resolve(strict=True)
        except (OSError, RuntimeError):
            return nowhere
        if resolved != root and root not in resolved.parents:
            return nowhere  # a symlink out of the folder
        if resolved.is_dir():
            # http.server redirects to the trailing slash and serves its index.html; without one it would
            # list the directory, which list_directory refuses
            return str(resolved)
        if resolved.suffix == ".tmp":
            return nowhere  # a page being written
        return str(resolved)

    def list_directory(self, path: str) -> None:
        """Never a directory listing: a folder without index.html is not found."""
        self.send_error(HTTPStatus.NOT_FOUND, "not found")


def make_server(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server for the reports under `root` (not started: call serve_forever)."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"reports folder {root} does not exist (a pipeline run writes it)")
    server = ThreadingHTTPServer((host, port), partial(ReportHandler, directory=str(root)))
    server.daemon_threads = True
    return server


def serve(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve until interrupted (SIGINT / SIGTERM)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `docker stop` sends SIGTERM: end like Ctrl-C

    server = make_server(root, host, port)
    signal.signal(signal.SIGTERM, stop)
    log.info("serving the reports in %s on http://%s:%s/ (read-only; pid %s)", root, host, port, os.getpid())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()
