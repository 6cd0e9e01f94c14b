"""Identifier kinds declared in config/identity.yml: validation, source mapping, normalisation, and their use by
the deterministic rules, junk detection and the probabilistic model; the chart records built from explanations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from crm_knowledge.identity.charts import waterfall_records
from crm_knowledge.identity.config import IdentityConfigError, config_from_dict, load_config
from crm_knowledge.identity.prepare import normalize_identifier
from crm_knowledge.identity.resolve import resolve
from crm_knowledge.identity.synthetic import frame, record
from crm_knowledge.ingest.registry import SourceConfigError, load_registry, parse_source

SSN = {"ssn": {"normalize": "digits", "pattern": r"\d{7}", "unique_per_person": True}}


def _config(**probabilistic) -> object:
    return config_from_dict({"identifiers": SSN, "probabilistic": {"min_records_for_training": 10_000,
                                                                    **probabilistic}})


def test_declared_kinds_follow_the_built_in_ones():
    cfg = _config()
    assert cfg.kinds == ("national_id", "email", "phone", "ssn")
    ssn = cfg.identifier("ssn")
    assert ssn.column == "id_ssn" and ssn.unique_per_person and ssn.probabilistic
    assert cfg.junk.share_limits["ssn"] == 2  # one per person: the stricter default
    repo = load_config()
    assert {"passport", "foreign_national_id", "loyalty_card"} <= set(repo.kinds)
    assert repo.identifier("national_id").unique_per_person and not repo.identifier("national_id").probabilistic


@pytest.mark.parametrize("identifiers, key", [
    ({"Passport No": {}}, "identifiers.Passport No"),
    ({"street": {}}, "identifiers.street"),
    ({"ssn": {"pattern": "("}}, "identifiers.ssn.pattern"),
    ({"ssn": {"normalize": "upper"}}, "identifiers.ssn.normalize"),
    ({"ssn": {"check_digit": True}}, "identifiers.ssn.check_digit"),
    ({"national_id": {"pattern": r"\d+"}}, "identifiers.national_id.pattern"),
])
def test_invalid_identifier_kinds_name_the_key(identifiers, key):
    with pytest.raises(IdentityConfigError, match=key.replace(".", r"\.")):
        config_from_dict({"identifiers": identifiers}, source="config/identity.yml")


def test_junk_settings_of_an_undeclared_kind_are_refused():
    with pytest.raises(IdentityConfigError, match=r"junk\.share_limits\.ssn"):
        config_from_dict({"junk": {"share_limits": {"ssn": 2}}})
    assert config_from_dict({"identifiers": SSN, "junk": {"share_limits": {"ssn": 4}}}).junk.share_limits["ssn"] == 4


@pytest.mark.parametrize("kind, raw, expected", [
    ({"normalize": "digits", "pattern": r"\d{7}"}, " 123-45 67 ", "1234567"),
    ({"normalize": "digits", "pattern": r"\d{7}"}, "۱۲۳۴۵۶۷", "1234567"),  # Persian digits
    ({"normalize": "digits", "pattern": r"\d{7}"}, "123456", None),  # fails the pattern: not used
    ({"normalize": "alnum"}, "p-12 345 678", "P12345678"),
    ({"normalize": "lower"}, "  AB  Cd ", "ab cd"),
    ({"normalize": "none"}, "  Ab-1 ", "Ab-1"),
])
def test_normalize_identifier(kind, raw, expected):
    cfg = config_from_dict({"identifiers": {"k": kind}})
    assert normalize_identifier(pd.Series([raw, None], dtype="object"), cfg.identifier("k")).tolist() == [
        expected, None]


def _write_source(tmp_path: Path, target: str) -> Path:
    (tmp_path / "sources").mkdir(exist_ok=True)
    p = tmp_path / "sources" / "unit_x.yml"
    p.write_text(f"""name: unit_x
kind: sibling_unit
unit: x
path: siblings/x/*.csv
format: csv
primary_key: source_record_id
columns:
  id: source_record_id
  SSN: {target}
""", encoding="utf-8")
    return p


def test_a_source_maps_a_column_onto_a_declared_kind(tmp_path):
    _write_source(tmp_path, "ssn")
    (tmp_path / "identity.yml").write_text("identifiers:\n  ssn: {normalize: digits}\n", encoding="utf-8")
    (cfg,) = load_registry(tmp_path)
    assert cfg.identifier_targets == frozenset({"ssn"})
    # without the declaration the mapping is an error naming the file and the column
    with pytest.raises(SourceConfigError, match=r"unit_x\.yml: key 'columns\.SSN': 'ssn' is not a field"):
        parse_source(_write_source(tmp_path, "ssn"))


def test_shipped_overseas_example_sources_parse_with_the_declared_number(tmp_path):
    example = Path(__file__).resolve().parents[2] / "config" / "examples" / "overseas_units"
    (tmp_path / "sources").mkdir()
    for f in (example / "sources").glob("*.yml"):
        (tmp_path / "sources" / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "identity.yml").write_text("identifiers:\n" + "".join(
        "  " + line + "\n" for line in (example / "identifiers.yml").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")), encoding="utf-8")
    sources = {c.name: c for c in load_registry(tmp_path)}
    assert sources["overseas_bank"].identifier_targets == frozenset({"ssn"})
    assert sources["overseas_club"].columns["HouseNo"] == "house_number"


def _people() -> pd.DataFrame:
    rows = [
        # one person: the same number (different spelling) on two records with little else in common
        record("sibling:a", "1", first_name_norm="john", last_name_norm="smith", id_ssn="123 4567"),
        record("sibling:b", "2", first_name_norm="jon", last_name_norm="smyth", id_ssn="1234567"),
        # a placeholder number typed for many different people: junk, links nobody
        *[record("sibling:a", f"j{i}", first_name_norm=f, last_name_norm=la, id_ssn="9999999")
          for i, (f, la) in enumerate([("ann", "lee"), ("bob", "king"), ("cara", "ward"), ("dan", "reid")])],
        # an invalid number (fails the pattern) is not used
        record("sibling:a", "3", first_name_norm="eve", last_name_norm="hall", id_ssn="12"),
        record("sibling:b", "4", first_name_norm="ivy", last_name_norm="cole", id_ssn="12"),
    ]
    return frame(rows).assign(id_ssn=[r.get("id_ssn") for r in rows])


def test_deterministic_rule_and_junk_detection_use_a_declared_kind():
    result = resolve(_people(), None, _config())
    rc = result.record_clusters.set_index("source_record_id")
    assert rc.loc["1", "customer_id"] == rc.loc["2", "customer_id"]
    assert rc.loc["1", "match_rule"] == "ssn"
    junk = result.junk_values
    assert list(junk["identifier_kind"]) == ["ssn"] and junk["distinct_records"].iloc[0] == 4
    assert "9999999" not in junk.to_string()  # pseudonyms only
    assert set(result.unresolved["source_record_id"]) >= {"j0", "j1", "j2", "j3", "3", "4"}


def test_values_hashed_together_get_each_ones_own_pseudonym(monkeypatch):
    """hash_values (the daily run's neighbourhood: hundreds of thousands of values) loads the key once and gives
    what hash_value gives each value; a key is a key: another one gives other pseudonyms."""
    from crm_knowledge.identity import junk
    from crm_knowledge.privacy.pseudonym import load_key

    kinds, values = ["email", "phone", "ssn"], ["a@example.com", "+989121234001", "1234567"]
    one_by_one = [junk.hash_value(v, k) for k, v in zip(kinds, values, strict=True)]
    loads = []
    monkeypatch.setattr(junk, "load_key", lambda: loads.append(1) or load_key())
    assert junk.hash_values(kinds, values) == one_by_one and len(loads) == 1
    assert all(h.startswith(f"{k}:") and v not in h for h, k, v in zip(one_by_one, kinds, values, strict=True))
    monkeypatch.setattr(junk, "load_key", lambda: b"k" * 32)
    assert set(junk.hash_values(kinds, values)).isdisjoint(one_by_one)


def test_probabilistic_model_compares_a_declared_kind_and_records_its_weights():
    rows = []
    for p in range(40):
        first, last = ["amy", "ben", "carl", "dina", "eli"][p % 5], f"family{p}"
        bd = f"19{50 + p}-0{1 + p % 9}-1{p % 9}"
        for src in ("sibling:a", "sibling:b"):
            # the number is typed wrong on one side for every fourth person: still evidence, not a veto
            ssn = f"{1000000 + p * 7919}" if src == "sibling:a" or p % 4 else f"{1000000 + p * 7919 + 1}"
            rows.append(record(src, f"{src[-1]}{p}", first_name_norm=first, last_name_norm=last, birth_date=bd,
                               postcode=f"{1000 + p}", city_norm="sydney", id_ssn=ssn))
    cands = frame(rows).assign(id_ssn=[r["id_ssn"] for r in rows])
    cfg = config_from_dict({"identifiers": SSN, "probabilistic": {"min_records_for_training": 10_000}})
    result = resolve(cands, None, cfg)
    params = result.model["parameters"]
    ssn_levels = params[params["comparison"] == "id_ssn"].set_index("comparison_vector_value")["match_weight"]
    # levels 2 (same), 1 (one typo or transposition), 0 (different)
    assert len(ssn_levels) == 3 and ssn_levels[2] > 0 and ssn_levels[1] > 0 > ssn_levels[0]
    rc = result.record_clusters.set_index("source_record_id")["customer_id"]
    assert all(rc[f"a{p}"] == rc[f"b{p}"] for p in range(40))
    pairs = result.explained_match_pairs()
    prob = pairs[pairs["match_rule"] == "probabilistic"]
    assert len(prob) == 10  # the mistyped ones; the rest share the number exactly
    fields = json.loads(prob["explanation"].iloc[0])["fields"]
    assert fields["ssn"]["level"] == "ssn one typo or transposition"


def test_waterfall_records_come_from_explanations_without_values():
    expl = {"fields": {"first_name": {"level": "x", "match_weight": 3.0, "comparison": "first_key", "gamma": 6,
                                      "tf_match_weight": -0.5},
                       "birth_date": {"level": "y", "match_weight": 9.0, "comparison": "birth_date", "gamma": 4}}}
    pairs = pd.DataFrame({"match_weight": [5.0, 1.0], "match_probability": [0.97, 0.6],
                          "explanation": [json.dumps(expl), json.dumps({"rule": "email", "agreed": ["email"]})]})
    records, used = waterfall_records(pairs)
    assert used == [0]
    assert records == [{"match_weight": 5.0, "match_probability": 0.97, "gamma_first_key": 6,
                        "mw_tf_adj_first_key": -0.5, "gamma_birth_date": 4, "mw_tf_adj_birth_date": 0.0}]
