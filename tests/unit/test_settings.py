"""Settings: the warehouse URL with its password hidden, for summaries and logs."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from crm_knowledge.settings import Settings, redact_url
from crm_knowledge.summary import format_summary


def _settings(tmp_path: Path, url: str | None = None) -> Settings:
    return Settings(home=tmp_path, warehouse_port=54329, warehouse_db="warehouse", external_warehouse_url=url,
                    external_orders_url=None, landing_dir=tmp_path / "landing")


@pytest.mark.parametrize("url, expected", [
    ("postgresql://ckp:s3cret@db.example.com:5432/warehouse",
     "postgresql://ckp:***@db.example.com:5432/warehouse"),
    ("postgresql://ckp:s3cret@db.example.com/warehouse?sslmode=require&application_name=ckp",
     "postgresql://ckp:***@db.example.com/warehouse?sslmode=require&application_name=ckp"),
    ("postgresql://ckp:s3cret@[::1]:5432/warehouse", "postgresql://ckp:***@[::1]:5432/warehouse"),
    ("postgresql://ckp:s3cret@h1:5432,h2:5433/warehouse", "postgresql://ckp:***@h1:5432,h2:5433/warehouse"),
    ("postgresql://ckp:@localhost/warehouse", "postgresql://ckp:***@localhost/warehouse"),
    ("postgresql://localhost/warehouse?user=ckp&password=s3cret&sslmode=require",
     "postgresql://localhost/warehouse?user=ckp&password=***&sslmode=require"),
])
def test_password_is_replaced_and_the_rest_kept(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize("url", [
    "postgresql://ckp@db.example.com:5432/warehouse",
    "postgresql://db.example.com:5432/warehouse",
    "postgresql:///warehouse?host=/var/run/postgresql",
    "postgresql://ckp@localhost/warehouse?sslmode=require#frag",
])
def test_url_without_password_is_unchanged(url):
    assert redact_url(url) == url


@pytest.mark.parametrize("password", ["p@ss:w/rd", "a b+c%d", "ü#?&=;", "@@::"])
def test_special_characters_in_password(password):
    url = f"postgresql://ck%40p:{quote(password, safe='')}@127.0.0.1:54329/warehouse"
    redacted = redact_url(url)
    assert redacted == "postgresql://ck%40p:***@127.0.0.1:54329/warehouse"
    assert quote(password, safe="") not in redacted


def test_unencoded_at_and_colon_in_password():
    # not valid per RFC 3986, but urllib (and libpq) split the user info at the last "@" and first ":"
    assert redact_url("postgresql://ckp:p@ss:word@host:5432/db") == "postgresql://ckp:***@host:5432/db"


def test_settings_redacted_url_external(tmp_path):
    s = _settings(tmp_path, "postgresql://ckp:s3cret@db.example.com:5432/warehouse")
    assert s.redacted_url() == "postgresql://ckp:***@db.example.com:5432/warehouse"
    assert s.redacted_url("orders") == "postgresql://ckp:***@db.example.com:5432/orders"


def test_settings_redacted_url_embedded(tmp_path):
    s = _settings(tmp_path)
    s.warehouse_state_file.parent.mkdir(parents=True)
    s.warehouse_state_file.write_text(json.dumps(
        {"user": "postgres", "password": "x/y@z:w", "host": "127.0.0.1", "port": 54329}))
    assert s.warehouse_url == "postgresql://postgres:x%2Fy%40z%3Aw@127.0.0.1:54329/warehouse"
    assert s.redacted_url() == "postgresql://postgres:***@127.0.0.1:54329/warehouse"


def test_summary_shows_bi_tools_a_bi_reader_login_not_the_admin_url(tmp_path):
    s = _settings(tmp_path, "postgresql://ckp:s3cret@db.example.com:5432/warehouse?sslmode=require")
    text = format_summary({"layers": {}}, s)
    bi_line = next(line for line in text.splitlines() if line.startswith("BI tools"))
    assert "postgresql://<login>@db.example.com:5432/warehouse?sslmode=require" in bi_line
    assert "ckp_bi_reader" in bi_line and "ckp access create-login ckp_bi_reader" in bi_line
    assert "s3cret" not in text and "ckp:" not in text and "//ckp@" not in text
