"""One home per concept, checked over the sources: the environment is read in crm_knowledge.settings, the
warehouse is reached through crm_knowledge.warehouse.db, and dbt models join on the record key through the
macro same_source_record, nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

from crm_knowledge.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "plugins" / "crm_knowledge"
#: Reading the environment: `os.environ.get(`, `os.getenv(`, `os.environ["X"]` not assigned to.
ENV_READ = re.compile(r"\bos\.environ\.get\(|\bos\.getenv\(|\bos\.environ\[[^\]]+\](?!\s*=[^=])")
#: What the access layer does, written elsewhere: opening a connection, asking whether a table exists, taking
#: an advisory lock.
WAREHOUSE_BYPASS = re.compile(r"\bpsycopg\.connect\(|\bto_regclass\(|\bpg_(try_)?advisory_")
#: A dbt model spelling the record-key join condition itself (`a.source_record_id = b.source_record_id`).
RECORD_KEY_JOIN = re.compile(r"\b\w+\.source_record_id\s*=\s*\w+\.source_record_id\b")


def lines_matching(pattern: re.Pattern, home: Path) -> list[str]:
    """`file:line: code` of every line of the package and the DAGs (comments aside) that matches, but `home`."""
    found = []
    for path in sorted([*(PROJECT_ROOT / "plugins").rglob("*.py"), *(PROJECT_ROOT / "dags").glob("*.py")]):
        if path == home:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line.split("#", 1)[0]):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}")
    return found


def test_only_settings_reads_the_environment():
    """A module may still hand its whole environment to a child process, or set variables for one."""
    readers = lines_matching(ENV_READ, PACKAGE / "settings.py")
    assert not readers, "read these through crm_knowledge.settings:\n" + "\n".join(readers)


def test_only_the_access_layer_connects_or_asks_whether_a_table_exists():
    bypasses = lines_matching(WAREHOUSE_BYPASS, PACKAGE / "warehouse" / "db.py")
    assert not bypasses, ("use crm_knowledge.warehouse.db (connect, table_exists, advisory_lock):\n"
                          + "\n".join(bypasses))


def test_models_join_on_the_record_key_through_its_macro():
    spelled = [f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}"
               for path in sorted((PROJECT_ROOT / "dbt_project" / "models").rglob("*.sql"))
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if RECORD_KEY_JOIN.search(line.split("--", 1)[0])]
    assert not spelled, ("join with `on {{ same_source_record('a', 'b') }}` (dbt_project/macros/"
                         "same_source_record.sql):\n" + "\n".join(spelled))


def test_the_patterns_see_what_they_look_for():
    assert ENV_READ.search('port = int(os.environ.get("CKP_WEBHOOK_PORT", "8765"))')
    assert ENV_READ.search('url = os.environ["X"]')
    assert not ENV_READ.search('os.environ["CKP_HOME"] = str(home)')
    assert not ENV_READ.search("env = dict(os.environ)")
    assert WAREHOUSE_BYPASS.search("with psycopg.connect(url) as conn:")
    assert WAREHOUSE_BYPASS.search('conn.execute("select to_regclass(%s) is not null", (name,))')
    assert WAREHOUSE_BYPASS.search('conn.execute("select pg_try_advisory_lock(hashtext(%s))", (key,))')
    assert not WAREHOUSE_BYPASS.search("with connect(url) as conn:")
    assert RECORD_KEY_JOIN.search("and form_submissions.source_record_id = record_clusters.source_record_id")
    assert not RECORD_KEY_JOIN.search("on {{ same_source_record('form_submissions', 'record_clusters') }}")
