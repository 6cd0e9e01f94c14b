"""For auditors: docs/privacy.md says exactly what the database grants.

The role x schema table under "## Who can read what" is parsed and every cell is checked, after
`apply_ddl` + `ensure_roles` on a fresh database, with has_schema_privilege (USAGE, CREATE) and
has_table_privilege on every table of the schema — including a table created after ensure_roles,
which only default privileges can cover.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from crm_knowledge.privacy import roles
from crm_knowledge.settings import PROJECT_ROOT
from crm_knowledge.warehouse.bootstrap import apply_ddl

PRIVACY_DOC = PROJECT_ROOT / "docs" / "privacy.md"
SECTION = "## Who can read what"
CELL_LEVELS = {"read/write": roles.WRITE, "read": roles.READ, "-": None}


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]


def parse_access_table(text: str) -> dict[str, dict[str, str | None]]:
    """{role: {schema: "read" | "write" | None}} from the first table of the "Who can read what" section."""
    section = text.split(SECTION, 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    lines = [line for line in section.splitlines() if line.lstrip().startswith("|")]
    assert len(lines) >= 3, "role x schema table not found"
    header = _cells(lines[0])
    assert header[0] == "role"
    assert all(re.fullmatch(r":?-{3,}:?", c) for c in _cells(lines[1])), "second line must be the separator"
    schemas = header[1:]
    table: dict[str, dict[str, str | None]] = {}
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == len(header), f"ragged row: {line}"
        role, values = cells[0], cells[1:]
        assert role not in table, f"duplicate row for {role}"
        unknown = [v for v in values if v not in CELL_LEVELS]
        assert not unknown, f"{role}: unknown access level(s) {unknown}; use one of {list(CELL_LEVELS)}"
        table[role] = {schema: CELL_LEVELS[value] for schema, value in zip(schemas, values, strict=True)}
    return table


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[str, str | None]]:
    return parse_access_table(PRIVACY_DOC.read_text(encoding="utf-8"))


def test_table_covers_every_role_and_schema(documented):
    assert set(documented) == set(roles.GROUP_ROLES)
    for role, schemas in documented.items():
        assert sorted(schemas) == sorted(roles.SCHEMAS), role


def test_table_matches_roles_module(documented):
    for role in roles.GROUP_ROLES:
        expected = {schema: roles.ACCESS[role].get(schema) for schema in roles.SCHEMAS}
        assert documented[role] == expected, role


def test_doc_names_public_revocations_and_consent_columns():
    text = PRIVACY_DOC.read_text(encoding="utf-8")
    for schema in roles.PRIVATE_SCHEMAS:
        assert f"`{schema}`" in text
    for column in ("has_marketing_consent", "has_profiling_opt_out", "is_forgotten", "CKP_PSEUDONYM_KEY"):
        assert column in text


@pytest.mark.warehouse
def test_database_grants_exactly_what_the_doc_says(scratch_db, documented):
    apply_ddl(scratch_db)
    roles.ensure_roles(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        # one table per schema created after ensure_roles: covered only by default privileges
        for schema in roles.SCHEMAS:
            conn.execute(f'create table "{schema}".created_after_roles (id int)')
        conn.commit()

        tables: dict[str, list[str]] = {schema: [] for schema in roles.SCHEMAS}
        for schema, name in conn.execute(
            "select schemaname, tablename from pg_tables where schemaname = any(%s)", (list(roles.SCHEMAS),)
        ):
            tables[schema].append(f'"{schema}"."{name}"')

        mismatches = []
        for role, schemas in documented.items():
            for schema, level in schemas.items():
                # (read, write) on the schema and on each of its tables, as the doc's level says
                want = (level is not None, level == roles.WRITE)
                for kind, name, (read, write) in [("schema", schema, ("USAGE", "CREATE")),
                                                   *(("table", t, ("SELECT", "INSERT")) for t in tables[schema])]:
                    got = conn.execute(f"select has_{kind}_privilege(%s, %s, '{read}'), "
                                       f"has_{kind}_privilege(%s, %s, '{write}')", (role, name, role, name)).fetchone()
                    if got != want:
                        mismatches.append(f"{role} on {kind} {name}: {read}/{write} {got}, doc says {level}")
                if level is not None:
                    assert tables[schema], schema

        for schema in roles.PRIVATE_SCHEMAS:
            if conn.execute("select has_schema_privilege('public', %s, 'USAGE')", (schema,)).fetchone()[0]:
                mismatches.append(f"PUBLIC has USAGE on {schema}")
    assert mismatches == []


def test_doc_describes_erasure_report_scan_and_ownership():
    """What an auditor reads about erasure, access reports, the leak scan and ownership matches the code."""
    from crm_knowledge.privacy import erasure, pii_scan

    text = PRIVACY_DOC.read_text(encoding="utf-8")
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").split("## Privacy", 1)[1]
    for needle in ("ckp erase", "ckp customer-report", "ckp pii-scan", "customer_erasure",
                   f"{erasure.REQUEST_DIR}/", "audit.erasure_requests", "identity.erasure_tombstones",
                   "audit.customer_data_reports", "## Who owns what", "hand_ownership"):
        assert needle in text, needle
    for needle in ("ckp erase", "ckp customer-report", "ckp pii-scan", "audit.erasure_requests", "tombstone"):
        assert needle in readme, needle
    scan_section = text.split("## PII scan", 1)[1]
    for schema in pii_scan.EXCLUDED_SCHEMAS:
        assert f"`{schema}`" in scan_section, schema
    assert set(pii_scan.EXCLUDED_SCHEMAS) - {"pii"} <= set(roles.PRIVATE_SCHEMAS)  # locked, as the doc says
    owned = text.split("## Who owns what", 1)[1].split("\n## ", 1)[0]
    for schema in roles.SCHEMAS:
        assert f"`{schema}`" in owned, schema


@pytest.mark.warehouse
def test_documented_privacy_tables_exist(scratch_db):
    apply_ddl(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        for table in ("audit.erasure_requests", "identity.erasure_tombstones", "audit.customer_data_reports"):
            assert conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0], table
        owners = conn.execute("select distinct tableowner from pg_tables where schemaname = any(%s)",
                              (list(roles.SCHEMAS),)).fetchall()
    assert owners == [(roles.PIPELINE,)]
