"""config/destinations.yml: the demo config loads; mistakes are errors naming the file and the key."""

from __future__ import annotations

import copy

import pytest

from crm_knowledge.export.config import (
    DestinationConfigError,
    expand_env,
    load_destinations,
    parse_destination,
    parse_destinations,
)

BASE = {
    "name": "mkt", "kind": "file", "enabled": True, "purpose": "marketing", "consent": "marketing",
    "mode": "mirror", "id_space": "customer_id",
    "audiences": [{"name": "champions", "filter": {"rfm_segment": ["champions"]}}],
    "fields": ["rfm_segment"],
    "file": {"format": "csv", "dir": "marketing"},
}


def variant(**changes):
    doc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def test_demo_config_has_one_destination_of_each_kind(monkeypatch):
    monkeypatch.delenv("CKP_WEBHOOK_PORT", raising=False)
    cfg = load_destinations()
    by_kind = {d.kind: d for d in cfg.destinations}
    assert set(by_kind) == {"file", "database", "webhook"}
    f = by_kind["file"]
    assert (f.purpose, f.consent, [a.name for a in f.audiences]) == \
        ("marketing", "marketing", ["champions", "loyal", "at_risk"])
    db = by_kind["database"]
    assert (db.purpose, db.id_space, db.source_system, db.database.table) == \
        ("service", "source:orders", "orders", "public.customer_segments")
    assert by_kind["webhook"].webhook.resolve_url() == "http://127.0.0.1:8765/segments"
    monkeypatch.setenv("CKP_WEBHOOK_PORT", "9999")
    assert by_kind["webhook"].webhook.resolve_url() == "http://127.0.0.1:9999/segments"


@pytest.mark.parametrize(
    ("doc", "key", "problem"),
    [
        (variant(consent=None), "consent", "is missing"),
        (variant(colour="red"), "colour", "is unknown"),
        (variant(consent="none"), "consent", "must be 'marketing'"),
        (variant(mode="replace"), "mode", "must be one of"),
        (variant(id_space="orders"), "id_space", "source:<source_system>"),
        (variant(fields=["email"]), "fields", "named_fields"),
        (variant(named_fields=["shoe_size"]), "named_fields", "not a field of pii"),
        (variant(file={"format": "csv", "dir": "../etc"}), "file.dir", "relative folder"),
        (variant(file={"format": "xml", "dir": "x"}), "file.format", "must be one of"),
        (variant(file=None), "file", "is missing"),
        (variant(audiences=[{"name": "a", "filter": {"rfm_segmnt": ["x"]}}]), "audiences[0].filter.rfm_segmnt",
         "is unknown"),
        (variant(audiences=[{"name": "a", "filter": {"churn_probability": {"over": 0.5}}}]),
         "audiences[0].filter.churn_probability.over", "is unknown"),
        (variant(audiences=[{"name": "a", "filter": {}}, {"name": "a", "filter": {}}]), "audiences",
         "twice"),
        (variant(kind="webhook", file=None, webhook={"url": "http://x", "url_env": "X", "batch_size": 1,
                                                     "max_retries": 1, "backoff_seconds": 1,
                                                     "timeout_seconds": 1}),
         "webhook.url", "exactly one"),
        (variant(kind="database", database={"table": "customer_segments"}), "file",
         "does not apply"),
    ],
)
def test_invalid_destination_names_file_and_key(doc, key, problem):
    with pytest.raises(DestinationConfigError) as exc:
        parse_destinations({"destinations": [doc]}, "config/destinations.yml")
    msg = str(exc.value)
    assert msg.startswith("config/destinations.yml: key 'destinations[0].")
    assert f"'destinations[0].{key}'" in msg and problem in msg


def test_duplicate_destination_names_rejected():
    with pytest.raises(DestinationConfigError, match="'mkt' twice"):
        parse_destinations({"destinations": [BASE, BASE]}, "f.yml")


def test_load_reports_file_of_bad_yaml(tmp_path):
    p = tmp_path / "destinations.yml"
    p.write_text("destinations: [\n")
    with pytest.raises(DestinationConfigError, match=str(p)):
        load_destinations(p)


def test_exclusions_from_list_and_file(tmp_path):
    (tmp_path / "suppress.csv").write_text("customer_id,reason\nc9,complaint\nc8,legal\n")
    (tmp_path / "plain.txt").write_text("c7\n\nc6\n")
    d = parse_destination(variant(exclude={"customer_ids": ["c1", 2], "file": "suppress.csv"}), "t", tmp_path)
    assert d.exclude_ids == {"c1", "2", "c9", "c8"}
    d = parse_destination(variant(exclude={"file": "plain.txt"}), "t", tmp_path)
    assert d.exclude_ids == {"c7", "c6"}
    with pytest.raises(DestinationConfigError, match="exclude.file"):
        parse_destination(variant(exclude={"file": "missing.csv"}), "t", tmp_path)


def test_filters_and_env_expansion(monkeypatch):
    d = parse_destination(variant(audiences=[
        {"name": "risk", "filter": {"value_tier": ["gold"], "churn_probability": {"gte": 0.6, "lt": 0.9}}},
        {"name": "all", "filter": {}}]), "t")
    risk, everyone = d.audiences
    assert risk.filter.matches({"value_tier": "gold", "churn_probability": 0.6})
    assert not risk.filter.matches({"value_tier": "gold", "churn_probability": 0.95})
    assert not risk.filter.matches({"value_tier": "gold", "churn_probability": None})
    assert everyone.filter.matches({})
    monkeypatch.delenv("CKP_X_UNSET", raising=False)
    assert expand_env("a${CKP_X_UNSET:-b}c") == "abc"
    with pytest.raises(DestinationConfigError, match="CKP_X_UNSET"):
        expand_env("${CKP_X_UNSET}")
