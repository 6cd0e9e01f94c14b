"""Settings: the warehouse URL with its password hidden, for summaries and logs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from crm_knowledge.settings import ENV_VARS, PROJECT_ROOT, ProjectNotFound, Settings, get_settings, redact_url
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


# --- one place for configuration ---------------------------------------------------------------------------

def test_every_setting_is_in_the_readme_table():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration"):].split("\n\n", 2)[1]
    documented = set(re.findall(r"`((?:CKP|WAREHOUSE)_[A-Z_]+)`", table))
    assert documented == set(ENV_VARS)


def test_project_and_config_dir_by_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("CKP_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CKP_PROJECT_DIR", raising=False)
    assert get_settings().project_dir == PROJECT_ROOT  # from the source checkout by default
    assert get_settings().destinations_file == PROJECT_ROOT / "config" / "destinations.yml"

    monkeypatch.setenv("CKP_CONFIG_DIR", str(tmp_path / "conf"))
    s = get_settings()
    assert (s.config_dir, s.sources_dir, s.scoring_file) == (
        tmp_path / "conf", tmp_path / "conf" / "sources", tmp_path / "conf" / "scoring.yml")
    assert s.dbt_project_dir == PROJECT_ROOT / "dbt_project"

    monkeypatch.setenv("CKP_PROJECT_DIR", str(tmp_path))
    with pytest.raises(ProjectNotFound, match=r"CKP_PROJECT_DIR=.*no dbt_project/dbt_project.yml"):
        get_settings()
    # an installed package (no checkout around it) says which setting is missing when a project file is needed
    unconfigured = dataclasses.replace(get_settings_without_project(monkeypatch), configured_config_dir=None)
    with pytest.raises(ProjectNotFound, match="set CKP_PROJECT_DIR"):
        _ = unconfigured.config_dir


def get_settings_without_project(monkeypatch) -> Settings:
    monkeypatch.delenv("CKP_PROJECT_DIR", raising=False)
    return dataclasses.replace(get_settings(), configured_project_dir=None)


@pytest.mark.parametrize("name, value, message", [
    ("CKP_WAREHOUSE_PORT", "x", "CKP_WAREHOUSE_PORT must be a port number"),
    ("CKP_DEMO_SIZE", "lots", "CKP_DEMO_SIZE must be a whole number"),
    ("CKP_INGEST_SCHEDULES", "sometimes", "CKP_INGEST_SCHEDULES must be on or off"),
    ("CKP_DEMO_MODE", "maybe", "CKP_DEMO_MODE must be on or off"),
])
def test_bad_values_name_the_setting(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        get_settings()


def test_an_unreachable_warehouse_url_fails_after_ckp_warehouse_wait(tmp_path, monkeypatch):
    """CKP_WAREHOUSE_WAIT bounds how long a command retries a WAREHOUSE_URL server that may still be starting
    (30 s by default); then it fails naming the server, never its password."""
    import time

    from crm_knowledge.warehouse import server

    monkeypatch.delenv("CKP_WAREHOUSE_WAIT", raising=False)
    assert get_settings().warehouse_wait_s == 30.0
    monkeypatch.setenv("CKP_HOME", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://ckp:s3cret@127.0.0.1:9/warehouse")  # discard port: refused
    monkeypatch.setenv("CKP_WAREHOUSE_WAIT", "1")
    assert get_settings().warehouse_wait_s == 1.0
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"Cannot connect to the warehouse at 127\.0\.0\.1:9/warehouse") as err:
        server.start(get_settings())
    assert 1.0 <= time.monotonic() - started < 10
    assert "s3cret" not in str(err.value)
