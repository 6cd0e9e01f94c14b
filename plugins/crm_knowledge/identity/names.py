"""Given-name agreement between two records that share a strong identifier (the deterministic guard).

Families share phones and e-mail addresses, so two records carrying the same value are linked only
when their *given names* agree. Deciding that needs more than comparing ``first_key`` columns:

* a record may hold the name only as one ``full_name`` ("Karimi, Sara" from a contact centre, "sara
  karimi" from a travel file), so which word is the given name is unknown;
* structured records have first and last name swapped now and then;
* given names are typed with typos, as nicknames or short forms ("Fati" for Fatemeh, "Reza" for
  Mohammadreza), in Persian or Latin script.

Each record is reduced to a :class:`NameProfile`: its plausible *alignments* (given, family), the one
a structured record states (first name, last name) marked ``declared``, the others (swapped, any split
of a full name) not. Two records are compatible when some alignment pair agrees on the given name:

* a **strong** given-name match (same script-neutral key, Jaro-Winkler of the keys >= ``strong``, a
  one-letter initial) in the declared alignments of both is enough on its own;
* otherwise (a weak match - a typo at text level, a prefix or short form, a configured nickname -
  or a non-declared alignment) the family names must agree too.

So "Ali Karimi" and "Sara Karimi" sharing a phone never link, "Karimi Sara" links to "Sara Karimi"
(other word order, family name agrees) and "Ebi Hosseini" to "Ebrahim Hosseini" (short form, family
name agrees), but "Ebi Ahmadi" not to "Ebrahim Hosseini". Keys Jaro-Winkler finds close are strong
matches whatever the family name ("Fati"/"Fatemeh": ft/ftm, "Amir"/"Amirhossein": amr/amrhsn).
:func:`families_agree` is the looser test the guard uses for records sharing an e-mail *and* a phone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crm_knowledge.identity.prepare import jaro_winkler


@dataclass(frozen=True)
class Part:
    """One name part: its script-neutral key and its normalised text (for same-script comparisons)."""

    key: str
    text: str


@dataclass(frozen=True)
class Alignment:
    given: Part
    family: Part | None
    declared: bool


@dataclass(frozen=True)
class NameProfile:
    """Alignments of a record's name; ``single`` is a lone word whose role is unknown ("leila", "ziaei")."""

    alignments: tuple[Alignment, ...] = ()
    single: Part | None = None

    @property
    def empty(self) -> bool:
        return not self.alignments and self.single is None


EMPTY = NameProfile()


@dataclass(frozen=True)
class NameRules:
    strong: float = 0.88            # Jaro-Winkler of keys for a strong given-name match
    weak: float = 0.80              # ... for a weak one (family name must agree)
    nicknames: frozenset[frozenset[str]] = frozenset()  # pairs of keys that are the same given name


def _is_persian(text: str) -> bool:
    return any("\u0600" <= ch <= "\u06ff" for ch in text)


def within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance <= 1 (substitution, insertion, deletion; a transposition counts 2)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1:] == b[i + 1:]
    return a[i:] == b[i + 1:]


def _transposed(a: str, b: str) -> bool:
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _text_typo(a: Part, b: Part) -> bool:
    """Same script, words of 4+ letters, one edit or one transposition apart (raw text keeps vowels,
    so this is much stricter than the consonant keys: "Sara"/"Saeed" are far apart, "Maryam"/"Mariam" not)."""
    if _is_persian(a.text) != _is_persian(b.text):
        return False
    ta, tb = a.text.replace(" ", ""), b.text.replace(" ", "")
    if min(len(ta), len(tb)) < 4:
        return False
    return within_one_edit(ta, tb) or _transposed(ta, tb)


def given_match(a: Part, b: Part, rules: NameRules) -> int:
    """2 strong, 1 weak, 0 none."""
    ka, kb = a.key, b.key
    if ka == kb:
        return 2
    short, long_ = (ka, kb) if len(ka) <= len(kb) else (kb, ka)
    if len(short) == 1 and long_.startswith(short):
        return 2  # an initial
    jw = jaro_winkler(ka, kb)
    if jw >= rules.strong:
        return 2
    if frozenset((ka, kb)) in rules.nicknames:
        return 1
    if len(short) >= 2 and long_.startswith(short):
        return 1  # short form / first part of a compound name (Ebi - Ebrahim, Abol - Abolfazl)
    if len(short) >= 2 and len(long_) >= len(short) + 2 and long_.endswith(short):
        return 1  # second part of a compound name (Reza - Mohammadreza)
    if jw >= rules.weak or _text_typo(a, b):
        return 1
    return 0


def family_match(a: Part | None, b: Part | None, rules: NameRules) -> bool:
    if a is None or b is None:
        return False
    ka, kb = a.key, b.key
    if ka == kb or jaro_winkler(ka, kb) >= rules.strong or _text_typo(a, b):
        return True
    short, long_ = (ka, kb) if len(ka) <= len(kb) else (kb, ka)
    # compound family names written in parts or joined ("Gholi Zadeh" / "Gholizadeh")
    return len(short) >= 2 and (long_.startswith(short) or long_.endswith(short))


def compatible(a: NameProfile, b: NameProfile, rules: NameRules) -> bool:
    """False only when both records are named and their given names clearly disagree (see module doc)."""
    if a.empty or b.empty:
        return True
    if a.alignments and b.alignments:
        for x in a.alignments:
            for y in b.alignments:
                g = given_match(x.given, y.given, rules)
                if not g:
                    continue
                if g == 2 and x.declared and y.declared:
                    return True
                if family_match(x.family, y.family, rules):
                    return True
        return False
    # a lone word against a full name (or another lone word): it may be either part
    if a.single is not None and b.single is not None:
        return given_match(a.single, b.single, rules) == 2
    single, full = (a.single, b) if a.single is not None else (b.single, a)
    for y in full.alignments:
        if given_match(single, y.given, rules) == 2 or (y.family is not None and family_match(single, y.family, rules)):
            return True
    return False


def families_agree(a: NameProfile, b: NameProfile, rules: NameRules) -> bool:
    """Both records carry a family name and, in some alignment, the family names agree while the given
    names are not clearly different (a weak match or a near key: a typo in a short given name)."""
    for x in a.alignments:
        for y in b.alignments:
            if family_match(x.family, y.family, rules) and (
                    given_match(x.given, y.given, rules) or _near_keys(x.given.key, y.given.key)):
                return True
    return False


def _near_keys(a: str, b: str) -> bool:
    """Keys one edit apart, the shorter at least two letters ("mm" / "mrm": Maryam typed without r)."""
    return min(len(a), len(b)) >= 2 and within_one_edit(a, b)


# --- building profiles ----------------------------------------------------------------------------


def _words(value: object) -> list[str]:
    if value is None:
        return []
    try:
        text = str(value).strip()
    except Exception:  # noqa: BLE001
        return []
    if not text or text.lower() == "nan":
        return []
    return text.split()


def build_profile(first: object, last: object, full: object, key: Callable[[str], str | None]) -> NameProfile:
    """Profile of one record from its normalised first, last and full name (any may be missing)."""

    def part(words: list[str]) -> Part | None:
        if not words:
            return None
        k = key(" ".join(words))
        return Part(k, " ".join(words)) if k else None

    fw, lw = _words(first), _words(last)
    if fw or lw:
        fp, lp = part(fw), part(lw)
        if fp and lp:
            return NameProfile((Alignment(fp, lp, True), Alignment(lp, fp, False)))
        only = fp or lp
        return NameProfile(single=only) if only else EMPTY
    words = _words(full)
    if not words:
        return EMPTY
    if len(words) == 1:
        p = part(words)
        return NameProfile(single=p) if p else EMPTY
    aligns: list[Alignment] = []
    seen: set[tuple[str, str]] = set()

    def add(g: list[str], f: list[str], declared: bool) -> None:
        gp, fp_ = part(g), part(f)
        if gp and fp_ and (gp.key, fp_.key) not in seen:
            seen.add((gp.key, fp_.key))
            aligns.append(Alignment(gp, fp_, declared))

    # "given family..." is how names are usually written, but family name first is common too ("Karimi
    # Sara", "KARIMI, Sara"), as are two-word given names ("Mohammad Reza Karimi"): no split of a full
    # name is declared, so a match through one always needs the family names to agree as well
    add(words[:1], words[1:], False)
    add(words[-1:], words[:-1], False)
    if len(words) >= 3:
        add(words[:2], words[2:], False)
        add(words[-2:], words[:-2], False)
    return NameProfile(tuple(aligns)) if aligns else EMPTY


def nickname_pairs(pairs: Iterable[tuple[str, str]], key: Callable[[str], str | None]) -> frozenset[frozenset[str]]:
    out = set()
    for a, b in pairs:
        ka, kb = key(a), key(b)
        if ka and kb and ka != kb:
            out.add(frozenset((ka, kb)))
    return frozenset(out)


@functools.lru_cache(maxsize=8)
def _cached_rules(strong: float, weak: float, nick: tuple[tuple[str, str], ...]) -> NameRules:
    from crm_knowledge.identity.prepare import name_key

    return NameRules(strong=strong, weak=weak, nicknames=nickname_pairs(nick, name_key))


def rules_from_config(config) -> NameRules:
    d = config.deterministic
    return _cached_rules(d.name_similarity, d.weak_name_similarity, tuple(d.nicknames))
