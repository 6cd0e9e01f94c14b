"""The shared strict YAML reader: errors name the file and the dotted key, in the config's own error class."""

from __future__ import annotations

import re

import pytest

from crm_knowledge.config_reader import ConfigError, ConfigReader, load_yaml_file


class _MyError(ConfigError):
    pass


class _Reader(ConfigReader):
    error = _MyError


def test_errors_name_file_and_dotted_key_in_the_subclass_error():
    top = _Reader({"outer": {"n": "x"}}, "cfg.yml")
    inner = top.child("outer")
    assert isinstance(inner, _Reader)
    with pytest.raises(_MyError, match=re.escape("cfg.yml: key 'outer.n' must be an integer, got 'x'")):
        inner.int_("n")


def test_unknown_and_missing_keys():
    r = ConfigReader({"a": 1, "typo": 2}, "f.yml", "sec")
    with pytest.raises(ConfigError, match=re.escape("key 'sec.typo' is unknown (allowed here: a, b)")):
        r.expect_keys(["a"], ["b"])
    with pytest.raises(ConfigError, match=re.escape("key 'sec.b' is missing")):
        ConfigReader({"a": 1}, "f.yml", "sec").expect_keys(["a", "b"])


def test_not_a_mapping():
    with pytest.raises(ConfigError, match=re.escape("f.yml: key '<top level>' must be a mapping, got list")):
        ConfigReader([], "f.yml")


def test_typed_getters():
    r = ConfigReader({"b": True, "i": 3, "f": 2, "s": "ab", "l": [1], "e": None, "bi": True}, "f.yml")
    assert (r.bool_("b"), r.int_("i", 1), r.float_("f", 0, 5), r.str_("s", ["ab"], re.compile("a")),
            r.list_("l"), r.list_("e", allow_empty=True)) == (True, 3, 2.0, "ab", [1], [])
    assert r.has("i") and not r.has("e") and not r.has("nope")
    for call, message in [
        (lambda: r.int_("bi"), "must be an integer, got True"),
        (lambda: r.int_("i", 5), "must be >= 5, got 3"),
        (lambda: r.float_("f", 3.0, 4.0), "must be within [3.0, 4.0], got 2.0"),
        (lambda: r.str_("s", ["x", "y"]), "must be one of x, y, got 'ab'"),
        (lambda: r.str_("s", pattern=re.compile("^z")), "has an invalid value 'ab' (expected ^z)"),
        (lambda: r.list_("e"), "must be a non-empty list"),
        (lambda: r.bool_("i"), "must be true or false, got 3"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            call()


def test_load_yaml_file(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("a: [1, 2]\n")
    assert load_yaml_file(good, _MyError, "test config") == {"a": [1, 2]}
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [\n")
    with pytest.raises(_MyError, match=re.escape(f"{bad}: not valid YAML")):
        load_yaml_file(bad, _MyError, "test config")
    with pytest.raises(_MyError, match=re.escape(f"{tmp_path / 'nope.yml'}: cannot read test config")):
        load_yaml_file(tmp_path / "nope.yml", _MyError, "test config")
