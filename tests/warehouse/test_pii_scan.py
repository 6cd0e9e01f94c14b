"""The PII leak scan (privacy/pii_scan.py) finds planted leaks, and only those.

Demo ground truth for a small population is generated (no orders database needed), then demo persons'
identifiers are planted in a scratch warehouse: in a mart (an email in free text, a phone typed with
spaces, a national ID in Persian digits inside JSON, a Latin full name), in an export file and in a
database destination's table — each must be found — and in `pii` and `raw`, which are not scanned, and
in the folder of a destination configured for named fields, which is exempt.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from crm_knowledge.cli import main as ckp
from crm_knowledge.demo.people import generate_people
from crm_knowledge.privacy.pii_scan import demo_needles, scan
from crm_knowledge.warehouse.bootstrap import apply_ddl

pytestmark = pytest.mark.warehouse

SIZE = 40

DESTINATIONS_YML = """
destinations:
  - {name: plain_files, kind: file, enabled: true, purpose: service, consent: none, mode: mirror,
     id_space: customer_id, audiences: [{name: all, filter: {}}], fields: [rfm_segment],
     file: {format: csv, dir: plain}}
  - {name: named_files, kind: file, enabled: true, purpose: service, consent: none, mode: mirror,
     id_space: customer_id, audiences: [{name: all, filter: {}}], fields: [rfm_segment], named_fields: [email],
     file: {format: csv, dir: named}}
  - {name: ops_table, kind: database, enabled: true, purpose: service, consent: none, mode: mirror,
     id_space: customer_id, audiences: [{name: all, filter: {}}], fields: [rfm_segment],
     database: {table: public.ops_segments, url_env: SCAN_TEST_OPS_URL}}
"""


@pytest.fixture()
def world(scratch_db_factory, settings, tmp_path, monkeypatch):
    from crm_knowledge import settings as settings_module
    from crm_knowledge.demo import generate

    wh, ops = scratch_db_factory(), scratch_db_factory()
    monkeypatch.setenv("WAREHOUSE_URL", wh)
    monkeypatch.setenv("CKP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCAN_TEST_OPS_URL", ops)
    monkeypatch.delenv("CKP_LANDING_DIR", raising=False)
    local = settings_module.get_settings()
    generate(size=SIZE, seed=5, settings=local, write_orders_db=False)
    apply_ddl(wh)
    config = tmp_path / "destinations.yml"
    config.write_text(DESTINATIONS_YML, encoding="utf-8")
    monkeypatch.setattr(type(local), "config_dir", property(lambda self: tmp_path))
    return {"settings": local, "wh": wh, "ops": ops, "config": config}


def _person(settings, idx: int):
    import datetime as dt

    state = json.loads((settings.demo_dir / "demo_state.json").read_text())
    people = generate_people(SIZE, state["seed"], dt.date.fromisoformat(state["as_of"]))
    return {"email": people.email[idx], "mobile": str(int(people.mobile[idx])),
            "nid": f"{int(people.national_id[idx]):010d}",
            "name": f"{people.first_latin(idx)} {people.last_latin(idx)}"}


def test_clean_warehouse_scans_clean(world):
    result = scan(world["settings"], config_path=world["config"])
    assert result.clean, result.findings
    assert result.needles > SIZE * 3  # emails, phones (3 forms), national ids, names
    assert result.columns_scanned > 20
    assert result.exempt == ["named_files (named_fields: email)"]


def test_planted_leaks_are_found_and_only_there(world):
    s = world["settings"]
    needles = demo_needles(s)
    persons = {pid for _, pid in needles.values()}
    idx = min(int(p[1:]) - 1 for p in persons)
    p = _person(s, idx)
    fa_nid = p["nid"].translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    spaced = f"0{p['mobile'][:3]} {p['mobile'][3:6]} {p['mobile'][6:]}"
    with psycopg.connect(world["wh"]) as conn:
        conn.execute("create table marts.leaky (customer_id text, note text, payload jsonb, tags text[])")
        conn.execute("insert into marts.leaky values ('C1', %s, %s, null), ('C2', 'nothing personal', '{}', null)",
                     (f"Customer wrote from <{p['email'].upper()}>; call back on {spaced}.",
                      json.dumps({"nid": fa_nid})))
        conn.execute("insert into marts.leaky values ('C3', %s, null, %s)", (f"Met {p['name']} today", ["vip"]))
        # the vault and the raw layer hold personal data by design: not scanned
        conn.execute("create table pii.vault_copy (email text)")
        conn.execute("insert into pii.vault_copy values (%s)", (p["email"],))
        conn.execute("insert into raw.load_rejects (batch_id, source_name, reason, record) values "
                     "('b', 'forms', 'bad date', %s)", (json.dumps({"email": p["email"]}),))
    with psycopg.connect(world["ops"]) as conn:
        conn.execute("create table public.ops_segments (customer_id text, note text)")
        conn.execute("insert into public.ops_segments values ('C1', %s)", (f"+98{p['mobile']}",))
    exports = s.exports_dir
    (exports / "plain" / "plain_files").mkdir(parents=True)
    (exports / "plain" / "plain_files" / "d1.csv").write_text(
        f"change_type,customer_id,note\nadded,C1,{p['name'].lower()}\nadded,C2,fine\n", encoding="utf-8")
    (exports / "named" / "named_files").mkdir(parents=True)
    (exports / "named" / "named_files" / "d1.csv").write_text(
        f"change_type,customer_id,email\nadded,C1,{p['email']}\n", encoding="utf-8")

    result = scan(s, config_path=world["config"])
    found = {(f.location, f.kind) for f in result.findings}
    assert found == {
        ("marts.leaky.note", "email"), ("marts.leaky.note", "phone"), ("marts.leaky.payload", "national_id"),
        ("marts.leaky.note", "name"),
        ("ops_table:public.ops_segments.note", "phone"),
        (str(exports / "plain" / "plain_files" / "d1.csv"), "name"),
    }
    pid = f"P{idx + 1:07d}"
    assert all(f.persons == [pid] for f in result.findings)
    by_loc = {(f.location, f.kind): f.hits for f in result.findings}
    assert by_loc[("marts.leaky.note", "email")] == 1
    # findings name places and person ids, never the values
    assert p["email"].lower() not in json.dumps(result.as_dict()).lower()


def test_cli_exit_code(world, tmp_path):
    """`ckp pii-scan` (config from the patched config_dir): 0 when clean, 1 with the findings written out."""
    assert ckp(["pii-scan", "-o", str(tmp_path / "clean.json")]) == 0
    p = _person(world["settings"], 0)
    with psycopg.connect(world["wh"]) as conn:
        conn.execute("create table scoring.leak (note text)")
        conn.execute("insert into scoring.leak values (%s)", (p["nid"],))
    assert ckp(["pii-scan", "-o", str(tmp_path / "found.json")]) == 1
    out = json.loads((tmp_path / "found.json").read_text())
    assert out["clean"] is False and out["findings"][0]["location"] == "scoring.leak.note"


VAULT_DDL = """
create table pii.pii_source_identities (customer_id text, source_system text, source_record_id text,
    email_norm text, phone_e164 text, national_id_valid text);
create table pii.pii_customer_profiles (customer_id text, first_name text, last_name text, full_name text,
    email text, phone text, national_id text);
"""


def test_vault_needles_find_a_real_customers_identifiers(world):
    """Without demo ground truth, the vault is what a leak is: its identifiers, found anywhere else."""
    from crm_knowledge.privacy.pii_scan import vault_needles

    with psycopg.connect(world["wh"]) as conn:
        conn.execute(VAULT_DDL)
        conn.execute("insert into pii.pii_source_identities values "
                     "('C000000042', 'orders', '7', 'nima.rad@mail.ir', '+989121110042', '0499370899')")
        conn.execute("insert into pii.pii_customer_profiles values ('C000000042', 'نیما', 'راد', 'نیما راد', "
                     "'nima.rad@mail.ir', '+989121110042', '0499370899'), ('C000000043', 'Al', null, 'Al', null, "
                     "null, null)")
    needles = vault_needles(world["wh"])
    assert needles["nima.rad@mail.ir"] == ("email", "C000000042")
    assert {needles[f] for f in ("+989121110042", "09121110042", "989121110042")} == {("phone", "C000000042")}
    assert needles["نیما راد"] == ("name", "C000000042")
    assert "al" not in needles  # a one-word name is ordinary text
    assert scan(world["settings"], needles, config_path=world["config"]).clean
    with psycopg.connect(world["wh"]) as conn:
        conn.execute("create table marts.notes (customer_id text, note text)")
        conn.execute("insert into marts.notes values ('C000000042', %s), ('C2', 'called Al about nothing')",
                     ("Customer نيما راد asked us to call ۰۹۱۲ ۱۱۱ ۰۰۴۲",))
    result = scan(world["settings"], needles, config_path=world["config"])
    assert {(f.location, f.kind, tuple(f.persons)) for f in result.findings} == {
        ("marts.notes.note", "name", ("C000000042",)), ("marts.notes.note", "phone", ("C000000042",))}
    assert "nima" not in json.dumps(result.as_dict())


def test_cli_scans_the_vault_when_there_is_no_demo(world, tmp_path):
    (world["settings"].demo_dir / "ground_truth.csv").unlink()
    assert ckp(["pii-scan"]) == 2  # nothing to search for: said, not reported clean
    with psycopg.connect(world["wh"]) as conn:
        conn.execute(VAULT_DDL)
        conn.execute("insert into pii.pii_source_identities values "
                     "('C000000042', 'orders', '7', 'nima.rad@mail.ir', null, null)")
        conn.execute("create table scoring.leak (note text)")
        conn.execute("insert into scoring.leak values ('NIMA.RAD@mail.ir')")
    assert ckp(["pii-scan", "-o", str(tmp_path / "found.json")]) == 1
    out = json.loads((tmp_path / "found.json").read_text())
    assert out["findings"] == [{"location": "scoring.leak.note", "kind": "email", "hits": 1,
                                "persons": ["C000000042"]}]
