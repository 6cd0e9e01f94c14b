"""Keyed pseudonyms: HMAC-SHA-256 over `kind + "\\x1f" + normalised value`.

A pseudonym (``"email:3f1c…"``) stands for a personal value (an email, a phone number, a national
id, …) wherever the value itself must not travel. Unlike a plain hash it cannot be recomputed, or
checked against a guessed value, without the secret key `CKP_PSEUDONYM_KEY`.

* ``kind`` is part of the hashed message, so the same string as an email and as a name gives
  unrelated pseudonyms, and the pseudonym carries the kind as a readable prefix.
* The value is normalised first (the project's normaliser for email / phone / national_id / name,
  else Unicode NFKC + trimmed, collapsed whitespace + case-folded), so spelling variants of the same
  identifier give the same pseudonym.
* Key rotation: see :func:`rotate` and docs/privacy.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable

from crm_knowledge.settings import get_settings

KEY_ENV_VAR = "CKP_PSEUDONYM_KEY"
DEMO_ENV_VAR = "CKP_DEMO_MODE"
MIN_KEY_BYTES = 32
SEPARATOR = "\x1f"

#: Used only when CKP_DEMO_MODE=1 and no key is set. Public (it is in the source): pseudonyms made
#: with it protect nothing. Never use it with real customer data.
DEMO_KEY: bytes = b"CKP-DEMO-ONLY-PSEUDONYM-KEY--NOT-SECRET--DO-NOT-USE-IN-PRODUCTION"

GENERATE_HINT = 'python -c "import secrets; print(secrets.token_hex(32))"'

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class PseudonymKeyMissing(RuntimeError):
    """No usable pseudonym key (CKP_PSEUDONYM_KEY unset outside demo mode)."""


class PseudonymKeyInvalid(ValueError):
    """CKP_PSEUDONYM_KEY is set but is not base64/hex of at least 32 bytes."""


def _generic_normalise(value: str) -> str:
    value = unicodedata.normalize("NFKC", value)
    return " ".join(value.split()).casefold()


def _normaliser(kind: str) -> Callable[[str], str | None] | None:
    # Imported lazily: the normalisers are the same ones staging and identity resolution use.
    try:
        from crm_knowledge import normalize as n
    except ImportError:  # pragma: no cover - package always present in the project
        return None
    return {
        "email": n.normalize_email,
        "phone": n.normalize_phone,
        "national_id": n.normalize_national_id,
        "name": n.normalize_name,
    }.get(kind)


def normalise(value: str, kind: str) -> str:
    """The normalised form of `value` that gets hashed (kind-specific when the project has a normaliser)."""
    generic = _generic_normalise(value)
    specific = _normaliser(kind)
    if specific is not None:
        try:
            result = specific(value)
        except Exception:  # a normaliser rejecting odd input falls back to the generic form
            result = None
        if result:
            return _generic_normalise(result)
    return generic


def _decode_key(text: str) -> bytes:
    text = text.strip()
    candidates: list[bytes] = []
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
        candidates.append(bytes.fromhex(text))
    padded = (text + "=" * (-len(text) % 4)).encode("ascii", "ignore")
    for altchars in (None, b"-_"):
        try:
            candidates.append(base64.b64decode(padded, altchars=altchars, validate=True))
        except (binascii.Error, ValueError):
            continue
    for key in candidates:
        if len(key) >= MIN_KEY_BYTES:
            return key
    raise PseudonymKeyInvalid(
        f"{KEY_ENV_VAR} must be hex or base64 of at least {MIN_KEY_BYTES} random bytes; "
        f"generate one with: {GENERATE_HINT}"
    )


def is_demo_mode() -> bool:
    return get_settings().demo_mode


def load_key() -> bytes:
    """The pseudonym key from CKP_PSEUDONYM_KEY (hex or base64, >= 32 bytes).

    Unset: the public :data:`DEMO_KEY` in demo mode (CKP_DEMO_MODE=1), else :class:`PseudonymKeyMissing`.
    """
    text = get_settings().pseudonym_key or ""
    if text.strip():
        return _decode_key(text)
    if is_demo_mode():
        return DEMO_KEY
    raise PseudonymKeyMissing(
        f"{KEY_ENV_VAR} is not set. Pseudonyms need a secret key of at least {MIN_KEY_BYTES} bytes "
        f"(hex or base64). Generate one with:\n    {GENERATE_HINT}\n"
        f"and set it as {KEY_ENV_VAR} (keep it in your secret store; losing it means pseudonyms "
        f"can no longer be matched). Only demo mode ({DEMO_ENV_VAR}=1) runs without one."
    )


def pseudonymize(value: str, kind: str, key: bytes | None = None) -> str:
    """``"<kind>:<64 hex>"`` = HMAC-SHA-256(key, kind + "\\x1f" + normalised value).

    `key` defaults to :func:`load_key`. Deterministic for a given key, kind and (normalised) value.
    """
    if not isinstance(value, str):
        raise TypeError(f"value must be str, not {type(value).__name__}")
    if not _KIND_RE.match(kind):
        raise ValueError(f"kind must match {_KIND_RE.pattern!r}, got {kind!r}")
    if key is None:
        key = load_key()
    if len(key) < MIN_KEY_BYTES and key != DEMO_KEY:
        raise PseudonymKeyInvalid(f"pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    message = (kind + SEPARATOR + normalise(value, kind)).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return f"{kind}:{digest}"


def rotate(old_key: bytes, new_key: bytes, values: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Mapping old pseudonym -> new pseudonym for `values`, an iterable of ``(value, kind)`` pairs.

    Pseudonyms cannot be inverted, so rotation needs the original values (from the pii vault, the
    only place they live). The mapping is used to rewrite stored pseudonyms in one transaction;
    afterwards the old key is destroyed. See docs/privacy.md, "Key rotation".
    """
    mapping: dict[str, str] = {}
    for value, kind in values:
        old = pseudonymize(value, kind, old_key)
        new = pseudonymize(value, kind, new_key)
        previous = mapping.setdefault(old, new)
        if previous != new:  # impossible unless HMAC collides; never silently overwrite
            raise ValueError(f"pseudonym collision while rotating: {old}")
    return mapping
