"""The embedded warehouse: starts idempotently, listens on loopback TCP, and demands its password."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest

from crm_knowledge.warehouse import server

pytestmark = pytest.mark.warehouse


def test_running_on_loopback_with_password(warehouse, settings):
    if not settings.embedded:
        pytest.skip("WAREHOUSE_URL names an external server")
    parts = urlsplit(warehouse)
    assert parts.hostname == "127.0.0.1" and parts.port == settings.warehouse_port
    with psycopg.connect(warehouse) as conn:
        version = conn.execute("show server_version_num").fetchone()[0]
        assert int(version) >= 150000
        assert conn.execute("show timezone").fetchone()[0] == "UTC"
    wrong = parts._replace(netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_start_is_idempotent_and_status_reports_it(warehouse, settings):
    assert server.start(settings) == warehouse  # a second start changes nothing
    st = server.status(settings)
    assert st.running and st.url == warehouse


def test_state_file_is_private(warehouse, settings):
    if not settings.embedded:
        pytest.skip("WAREHOUSE_URL names an external server")
    assert settings.warehouse_state_file.stat().st_mode & 0o077 == 0
