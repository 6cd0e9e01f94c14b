"""One way to reach the warehouse: every module goes through crm_knowledge.warehouse.db."""

from __future__ import annotations

import re

from crm_knowledge.settings import PROJECT_ROOT

ACCESS_LAYER = PROJECT_ROOT / "plugins" / "crm_knowledge" / "warehouse" / "db.py"
#: What the access layer does, written elsewhere: opening a connection, asking whether a table exists.
BYPASSES = re.compile(r"\bpsycopg\.connect\(|\bto_regclass\(")


def test_only_the_access_layer_connects_or_asks_whether_a_table_exists():
    found = []
    for path in sorted([*(PROJECT_ROOT / "plugins").rglob("*.py"), *(PROJECT_ROOT / "dags").glob("*.py")]):
        if path == ACCESS_LAYER:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if BYPASSES.search(code):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}")
    assert not found, "use crm_knowledge.warehouse.db (connect, table_exists):\n" + "\n".join(found)


def test_the_check_sees_a_bypass():
    assert BYPASSES.search('with psycopg.connect(url) as conn:')
    assert BYPASSES.search('conn.execute("select to_regclass(%s) is not null", (name,))')
    assert not BYPASSES.search("with connect(url) as conn:")
