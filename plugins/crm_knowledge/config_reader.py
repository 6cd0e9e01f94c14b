"""Strict reading of the project's YAML config files, shared by the export, scoring and identity configs.

Why this exists: a config error must name the file and the key (``config/scoring.yml: key 'churn.auc_floor'
must be within [0.0, 1.0], got 1.5``), so whoever edits the YAML can fix it without reading code, and a
mistyped or misplaced key must be an error rather than silently ignored -- a typo in ``destinations.yml``
could send customers who withdrew consent to a marketing tool. One reader keeps those rules and message
texts the same in every config.

Each config module subclasses :class:`ConfigReader` only to set :attr:`ConfigReader.error` to its own
exception class (a subclass of :class:`ConfigError`), so callers keep catching e.g. ``ScoringConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self

import yaml

__all__ = ["ConfigError", "ConfigReader", "load_yaml_file"]


class ConfigError(ValueError):
    """A config file is invalid; the message names the file and the offending key."""


class ConfigReader:
    """One mapping of a YAML document, read with exact key checks and typed getters.

    ``source`` (the file, for messages) and ``prefix`` (the dotted key path of this mapping, ``""`` at the
    top level) make every error read ``<source>: key '<prefix>.<name>' <problem>``.
    """

    #: The exception raised by :meth:`fail`; config modules set their own subclass of ConfigError.
    error: ClassVar[type[ConfigError]] = ConfigError

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(data, Mapping):
            self.fail(prefix or "<top level>", f"must be a mapping, got {type(data).__name__}")
        self.data: Mapping[Any, Any] = data

    def key(self, name: object) -> str:
        """The dotted key path of ``name`` in this mapping."""
        return f"{self.prefix}.{name}" if self.prefix else str(name)

    def fail(self, key: str, problem: str) -> NoReturn:
        """Raise :attr:`error` for ``key`` (a full dotted path, see :meth:`key`)."""
        raise self.error(f"{self.source}: key '{key}' {problem}")

    def expect_keys(self, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        """Reject keys outside ``required`` + ``optional``, then require every key of ``required``."""
        allowed = [*required, *optional]
        unknown = [k for k in self.data if k not in allowed]
        if unknown:
            self.fail(self.key(unknown[0]), f"is unknown (allowed here: {', '.join(allowed)})")
        missing = [k for k in required if k not in self.data]
        if missing:
            self.fail(self.key(missing[0]), "is missing")

    def has(self, name: str) -> bool:
        """Whether ``name`` is given with a value other than null."""
        return name in self.data and self.data[name] is not None

    def bool_(self, name: str) -> bool:
        value = self.data[name]
        if not isinstance(value, bool):
            self.fail(self.key(name), f"must be true or false, got {value!r}")
        return value

    def int_(self, name: str, minimum: int | None = None) -> int:
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self.key(name), f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(self.key(name), f"must be >= {minimum}, got {value}")
        return value

    def float_(self, name: str, low: float | None = None, high: float | None = None) -> float:
        """A number (an integer is accepted) within ``[low, high]``; either bound may be None."""
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.key(name), f"must be a number, got {value!r}")
        value = float(value)
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(self.key(name), f"must be within [{low}, {high}], got {value}")
        return value

    def str_(self, name: str, choices: Sequence[str] | None = None, pattern: re.Pattern[str] | None = None) -> str:
        """A non-empty string, optionally one of ``choices`` and/or matching ``pattern``."""
        value = self.data[name]
        if not isinstance(value, str) or not value:
            self.fail(self.key(name), f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(self.key(name), f"must be one of {', '.join(choices)}, got {value!r}")
        if pattern is not None and not pattern.match(value):
            self.fail(self.key(name), f"has an invalid value {value!r} (expected {pattern.pattern})")
        return value

    def list_(self, name: str, allow_empty: bool = False) -> list[Any]:
        """A list, non-empty unless ``allow_empty`` (which also reads null as ``[]``)."""
        value = self.data[name]
        if value is None and allow_empty:
            return []
        if not isinstance(value, list) or (not value and not allow_empty):
            self.fail(self.key(name), "must be a " + ("list" if allow_empty else "non-empty list"))
        return value

    def child(self, name: str) -> Self:
        """A reader (of the same class) for the nested mapping under ``name``."""
        return type(self)(self.data[name], self.source, self.key(name))


def load_yaml_file(path: Path, error: type[ConfigError], what: str) -> Any:
    """Read and parse one YAML file; an unreadable file or invalid YAML raises ``error`` naming the file.

    ``what`` describes the file in the "cannot read" message (e.g. ``"scoring config"``). Returns whatever
    ``yaml.safe_load`` returns (None for an empty file); validating its shape is the caller's job.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from exc
