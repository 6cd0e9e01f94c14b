"""Personal names: an exact matching form and a script-neutral phonetic key.

``normalize_name`` is what staging stores and what exact comparisons use; it has a SQL twin
(``util.normalize_name``). ``romanize`` exists because one customer appears as "محمد رضایی" in a
web form and "Mohammad Rezaei" in a sibling unit's file: no string distance sees those as close, a
consonant skeleton does. It is Python-only (identity resolution runs in Python).
"""

from __future__ import annotations

import re
import unicodedata

from crm_knowledge.normalize.persian import collapse_whitespace, normalize_persian

#: Apostrophe-like characters are dropped without a space (O'Brien -> obrien, Mas'ud -> masud),
#: because they sit inside one word.
APOSTROPHE_CLASS = r"[\u0027\u0060\u00b4\u02bb\u02bc\u2018\u2019\u2032]"

#: Punctuation and symbols become a space (Jean-Pierre -> jean pierre, "رضا، علی" -> two words).
#: Spelled as code-point ranges so the identical pattern works in PostgreSQL (see 00_functions.sql):
#: ASCII punctuation except the apostrophes above, Latin-1 symbols (what is left after NFKC),
#: × ÷, Arabic/Persian punctuation (، ؛ ؟ ٪ ٫ ٬ ۔) and the General Punctuation block.
PUNCTUATION_CLASS = (
    r"[\u0021-\u0026\u0028-\u002f\u003a-\u0040\u005b-\u005f\u007b-\u007e\u00a1-\u00bf\u00d7\u00f7"
    r"\u060c\u060d\u061b\u061e\u061f\u066a-\u066d\u06d4\u2010-\u2027\u2030-\u205e]"
)

#: Combining marks of Latin letters (é = e + U+0301 after NFD). Arabic marks are outside this range
#: and were already removed by normalize_persian, except madda, which NFC puts back into آ.
_LATIN_COMBINING = re.compile(r"[\u0300-\u036f]")
_APOSTROPHES = re.compile(APOSTROPHE_CLASS)
_PUNCTUATION = re.compile(PUNCTUATION_CLASS)
#: Latin letters without a decomposition that still have an obvious ASCII reading.
_LATIN_FOLD = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ı": "i", "ß": "ss", "æ": "ae", "œ": "oe"})


def normalize_name(s: str | None) -> str | None:
    """Matching form of a personal name: Persian-normalised, lower-case, accent- and punctuation-free.

    Accents are folded because the same Latin-script name is typed with and without them by
    different systems; word boundaries are kept (first/last-name splitting relies on them).
    """
    text = normalize_persian(s)
    if text is None:
        return None
    text = unicodedata.normalize("NFD", text.lower())
    text = unicodedata.normalize("NFC", _LATIN_COMBINING.sub("", text)).translate(_LATIN_FOLD)
    text = _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", text))
    return collapse_whitespace(text) or None


# --- romanize ------------------------------------------------------------------------------------

_VOWEL = "V"  # a vowel (or a silent glottal letter): carries no identity in the skeleton
_GLIDE_V = "v"  # و / v / w: consonant at the start of a word, a vowel carrier elsewhere
_GLIDE_Y = "y"  # ی / y: likewise
_INITIAL_VOWEL_KEY = "a"  # what a name-initial vowel leaves in the key (Ali -> "al", not "l")

#: Persian letters to consonant classes. Letters pronounced alike in Persian share a class
#: (س ص ث; ز ذ ض ظ; ت ط; ه ح; ق غ). ج and ژ share one too, because ژ is romanised "j" as often as
#: "zh" (Pejman / پژمان, Manijeh / منیژه).
_PERSIAN_CLASSES: dict[str, str] = {
    "ا": _VOWEL, "آ": _VOWEL, "ع": _VOWEL, "ء": _VOWEL, "ئ": _VOWEL,
    "و": _GLIDE_V, "ی": _GLIDE_Y,
    "ب": "b", "پ": "p", "ت": "t", "ط": "t", "ث": "s", "س": "s", "ص": "s",
    "ج": "j", "ژ": "j", "چ": "ch", "ح": "h", "ه": "h", "خ": "kh", "د": "d",
    "ذ": "z", "ز": "z", "ض": "z", "ظ": "z", "ر": "r", "ش": "sh", "غ": "gh", "ق": "gh",
    "ف": "f", "ک": "k", "گ": "g", "ل": "l", "م": "m", "ن": "n",
}

#: Latin spellings to the same classes; longest match first. "x" is read as in Alexander.
_LATIN_MULTI: list[tuple[str, list[str]]] = [
    ("tch", ["ch"]), ("sch", ["sh"]),
    ("kh", ["kh"]), ("sh", ["sh"]), ("ch", ["ch"]), ("zh", ["j"]), ("gh", ["gh"]), ("dj", ["j"]),
    ("ph", ["f"]), ("ck", ["k"]), ("th", ["t"]),
    ("x", ["k", "s"]),
]
_LATIN_SINGLE: dict[str, str] = {
    **{c: _VOWEL for c in "aeiou"},
    "v": _GLIDE_V, "w": _GLIDE_V, "y": _GLIDE_Y,
    "q": "gh", "c": "k",
    **{c: c for c in "bdfghjklmnprstz"},
}
_SOFT_C_FOLLOWERS = set("eiy")


def _latin_tokens(word: str, i: int) -> tuple[list[str], int]:
    """Class tokens of the Latin spelling starting at ``word[i]`` and the index after it."""
    for spelling, tokens in _LATIN_MULTI:
        if word.startswith(spelling, i):
            return tokens, i + len(spelling)
    ch = word[i]
    if ch == "c" and i + 1 < len(word) and word[i + 1] in _SOFT_C_FOLLOWERS:
        return ["s"], i + 1
    if ch in _LATIN_SINGLE:
        return [_LATIN_SINGLE[ch]], i + 1
    if ch.isdigit():
        return [], i + 1
    return [ch], i + 1  # a letter of another script: kept as itself


def _tokens(word: str) -> list[str]:
    """Class tokens of one word, either script (mixed-script words are handled letter by letter)."""
    out: list[str] = []
    i = 0
    while i < len(word):
        ch = word[i]
        if ch in _PERSIAN_CLASSES:
            out.append(_PERSIAN_CLASSES[ch])
            i += 1
        else:
            tokens, i = _latin_tokens(word, i)
            out.extend(tokens)
    return out


def _skeleton(word: str, first_word: bool) -> str:
    """Consonant skeleton of one word.

    Order matters: doubled letters are collapsed *before* vowels are dropped, so "Mohammad" loses
    one m (orthographic doubling) but "Leila"/"لیلا" keep both l's (two real consonants).
    """
    tokens = _tokens(word)
    collapsed = [t for k, t in enumerate(tokens) if k == 0 or t != tokens[k - 1]]
    kept: list[str] = []
    for k, tok in enumerate(collapsed):
        if k == 0 and tok in (_GLIDE_V, _GLIDE_Y):
            kept.append(tok)  # word-initial و/ی/v/w/y are consonants (Vahid, Yasaman)
        elif k == 0 and tok == _VOWEL:
            if first_word:
                kept.append(_INITIAL_VOWEL_KEY)
        elif tok not in (_VOWEL, _GLIDE_V, _GLIDE_Y):
            kept.append(tok)
    if len(kept) > 1 and kept[-1] == "h" and collapsed[-1] == "h":
        kept.pop()  # word-final ه is a vowel (Fatemeh = Fatima); Latin writes it "-eh" or not at all
    return "".join(kept)


def romanize(s: str | None) -> str | None:
    """Script-neutral phonetic key of a name: "محمد", "Mohammad", "Muhammad" all give ``"mhmd"``.

    Consonant skeleton: Persian letters and Latin spellings map onto shared consonant classes,
    vowels are dropped (Persian ا و ی and Latin v/w/y too, except at the start of a word, because
    Persian writes long vowels and v/y with the same letters), doubled letters collapse, a
    word-final h is dropped, and a name-initial vowel leaves an ``a``. Words are joined without a
    separator because compound names are written both ways ("Mohammad Reza", "محمدرضا").

    The key is lossy by design and meant for blocking and fuzzy comparison next to the exact
    normalised name, never as an identifier on its own: e.g. Hassan/Hossein, Mohammad/Mahmoud and
    Hamid/Hamed share a key.
    """
    text = normalize_name(s)
    if text is None:
        return None
    words = [w for w in text.split(" ") if w]
    key = "".join(_skeleton(w, first_word=(n == 0)) for n, w in enumerate(words))
    return key or None
