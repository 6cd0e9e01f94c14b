"""Keyed pseudonyms (crm_knowledge.privacy.pseudonym)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pytest

from crm_knowledge.privacy import pseudonym
from crm_knowledge.privacy.pseudonym import (
    DEMO_KEY,
    PseudonymKeyInvalid,
    PseudonymKeyMissing,
    load_key,
    pseudonymize,
    rotate,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_deterministic_and_prefixed():
    first = pseudonymize("sara@example.com", "email", KEY_A)
    assert first == pseudonymize("sara@example.com", "email", KEY_A)
    assert first.startswith("email:")
    assert len(first.split(":", 1)[1]) == 64
    int(first.split(":", 1)[1], 16)


def test_normalised_before_hashing():
    assert pseudonymize("  Sara@Example.COM ", "email", KEY_A) == pseudonymize("sara@example.com", "email", KEY_A)
    assert pseudonymize("Ali   Rezaei", "city", KEY_A) == pseudonymize("ali rezaei", "city", KEY_A)


def test_is_exactly_hmac_sha256_of_kind_separator_value():
    normalised = pseudonym.normalise("x@y.org", "email")
    expected = hmac.new(KEY_A, ("email\x1f" + normalised).encode(), hashlib.sha256).hexdigest()
    assert pseudonymize("x@y.org", "email", KEY_A) == "email:" + expected


def test_different_keys_and_kinds_differ():
    assert pseudonymize("sara@example.com", "email", KEY_A) != pseudonymize("sara@example.com", "email", KEY_B)
    a = pseudonymize("12345", "customer_ref", KEY_A).split(":")[1]
    b = pseudonymize("12345", "order_ref", KEY_A).split(":")[1]
    assert a != b


def test_cannot_be_recomputed_without_the_key():
    email = "sara@example.com"
    digest = pseudonymize(email, "email", KEY_A).split(":", 1)[1]
    guesses = {
        hashlib.sha256(email.encode()).hexdigest(),
        hashlib.sha256(("email\x1f" + email).encode()).hexdigest(),
        hmac.new(KEY_B, ("email\x1f" + email).encode(), hashlib.sha256).hexdigest(),
        hmac.new(b"", ("email\x1f" + email).encode(), hashlib.sha256).hexdigest(),
        pseudonymize(email, "email", secrets.token_bytes(32)).split(":", 1)[1],
        pseudonymize(email, "email", DEMO_KEY).split(":", 1)[1],
    }
    assert digest not in guesses


def test_load_key_hex_and_base64(monkeypatch):
    raw = secrets.token_bytes(32)
    monkeypatch.setenv("CKP_PSEUDONYM_KEY", raw.hex())
    assert load_key() == raw
    monkeypatch.setenv("CKP_PSEUDONYM_KEY", base64.b64encode(raw).decode())
    assert load_key() == raw
    monkeypatch.setenv("CKP_PSEUDONYM_KEY", base64.urlsafe_b64encode(raw).decode().rstrip("="))
    assert load_key() == raw


def test_load_key_rejects_short_or_garbage(monkeypatch):
    monkeypatch.setenv("CKP_PSEUDONYM_KEY", secrets.token_hex(16))
    with pytest.raises(PseudonymKeyInvalid):
        load_key()
    monkeypatch.setenv("CKP_PSEUDONYM_KEY", "not a key!")
    with pytest.raises(PseudonymKeyInvalid):
        load_key()


def test_missing_key_outside_demo_mode(monkeypatch):
    monkeypatch.delenv("CKP_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("CKP_DEMO_MODE", "0")
    with pytest.raises(PseudonymKeyMissing) as info:
        load_key()
    message = str(info.value)
    assert "CKP_PSEUDONYM_KEY" in message
    assert "secrets.token_hex(32)" in message
    with pytest.raises(PseudonymKeyMissing):
        pseudonymize("sara@example.com", "email")


def test_demo_mode_uses_labelled_demo_key(monkeypatch):
    monkeypatch.delenv("CKP_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("CKP_DEMO_MODE", "1")
    assert load_key() == DEMO_KEY
    assert b"DEMO" in DEMO_KEY and len(DEMO_KEY) >= 32
    assert pseudonymize("sara@example.com", "email") == pseudonymize("sara@example.com", "email", DEMO_KEY)


def test_env_key_wins_over_demo_key(monkeypatch):
    monkeypatch.setenv("CKP_DEMO_MODE", "1")
    monkeypatch.setenv("CKP_PSEUDONYM_KEY", KEY_B.hex())
    assert pseudonymize("a@b.cd", "email") == pseudonymize("a@b.cd", "email", KEY_B)


def test_rejects_bad_kind_and_short_key():
    with pytest.raises(ValueError):
        pseudonymize("x", "Bad Kind", KEY_A)
    with pytest.raises(ValueError):
        pseudonymize("x", "email\x1f", KEY_A)
    with pytest.raises(PseudonymKeyInvalid):
        pseudonymize("x", "email", b"short")


def test_rotation_mapping():
    values = [("sara@example.com", "email"), ("09121234567", "phone"), ("sara@example.com", "email")]
    mapping = rotate(KEY_A, KEY_B, values)
    assert len(mapping) == 2
    for value, kind in values:
        assert mapping[pseudonymize(value, kind, KEY_A)] == pseudonymize(value, kind, KEY_B)
    # stored pseudonyms rewritten through the mapping equal fresh ones under the new key
    stored = [pseudonymize(v, k, KEY_A) for v, k in values]
    assert [mapping[p] for p in stored] == [pseudonymize(v, k, KEY_B) for v, k in values]
    assert not set(mapping) & set(mapping.values())
