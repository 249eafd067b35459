"""Value rules for the config schema: each rule parses one value or says why it cannot.

A rule's ``describe()`` is the "must be ..." half of the one error format used everywhere:
``averaging.every must be an integer >= 1 or "end"; got 0``.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Invalid(Exception):
    """Raised by a rule; carries the "must be ..." text."""


# Long values are cut in messages, without building their whole text first (a YAML alias
# bomb is a small graph whose full repr is gigabytes).
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 6
_SHOW_MAX = 80


def show(value: Any) -> str:
    """Render a user's value the way they typed it in YAML, cut short if long."""
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= _SHOW_MAX else f'"{value[:_SHOW_MAX]}..."'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _SHORT.repr(value)


class Rule:
    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def fail(self, value: Any) -> Invalid:
        return Invalid(f"must be {self.describe()}; got {show(value)}")


def _bounds_text(
    low: float | None, high: float | None, low_open: bool, high_open: bool = False
) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


@dataclass(frozen=True)
class Int(Rule):
    low: int | None = None
    high: int | None = None

    def parse(self, value: Any) -> int:
        # YAML gives 1e3 as a float; accept whole floats, reject bools and fractions.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise self.fail(value)
            value = int(value)
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise self.fail(value)
        return int(value)

    def describe(self) -> str:
        bounds = _bounds_text(self.low, self.high, False)
        return f"an integer {bounds}".rstrip()


@dataclass(frozen=True)
class Float(Rule):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def parse(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(value)
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(value)
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise self.fail(value)
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            raise self.fail(value)
        return value

    def describe(self) -> str:
        bounds = _bounds_text(self.low, self.high, self.low_open, self.high_open)
        return f"a finite number {bounds}".rstrip()


@dataclass(frozen=True)
class Bool(Rule):
    def parse(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(value)
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Str(Rule):
    pattern: str = r".+"
    what: str = "a non-empty string"

    def parse(self, value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise self.fail(value)
        return value

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class Choice(Rule):
    options: tuple[str, ...]

    def parse(self, value: Any) -> str:
        if value not in self.options or not isinstance(value, str):
            raise self.fail(value)
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(self.options)


@dataclass(frozen=True)
class Registered(Choice):
    """A choice among names a registry knows when the value is checked (backends)."""

    options: tuple[str, ...] = ()
    names: Callable[[], tuple[str, ...]] = tuple

    def parse(self, value: Any) -> str:
        return Choice(self.names()).parse(value)

    def describe(self) -> str:
        return Choice(self.names()).describe()


@dataclass(frozen=True)
class Literal(Rule):
    word: str

    def parse(self, value: Any) -> str:
        if value != self.word:
            raise self.fail(value)
        return self.word

    def describe(self) -> str:
        return f'"{self.word}"'


@dataclass(frozen=True)
class Null(Rule):
    def parse(self, value: Any) -> None:
        if value is not None:
            raise self.fail(value)
        return None

    def describe(self) -> str:
        return "null"


@dataclass(frozen=True)
class Either(Rule):
    rules: tuple[Rule, ...]

    def parse(self, value: Any) -> Any:
        for rule in self.rules:
            try:
                return rule.parse(value)
            except Invalid:
                continue
        # A mapping given where a mapping is allowed: its own error says more.
        mappings = [rule for rule in self.rules if isinstance(rule, Mapping)]
        if isinstance(value, dict) and len(mappings) == 1:
            mappings[0].parse(value)
        raise self.fail(value)

    def describe(self) -> str:
        return " or ".join(rule.describe() for rule in self.rules)


@dataclass(frozen=True)
class ListOf(Rule):
    item: Rule
    min_len: int = 1

    def parse(self, value: Any) -> list[Any]:
        if not isinstance(value, list) or len(value) < self.min_len:
            raise self.fail(value)
        try:
            return [self.item.parse(v) for v in value]
        except Invalid:
            raise self.fail(value) from None

    def describe(self) -> str:
        return f"a list of at least {self.min_len} of {self.item.describe()}"


@dataclass(frozen=True)
class Records(Rule):
    """A list of small mappings, each with exactly the given keys (e.g. averaging phases)."""

    fields: tuple[tuple[str, Rule], ...]

    def parse(self, value: Any) -> list[dict[str, Any]]:
        names = [name for name, _ in self.fields]
        if not isinstance(value, list) or not value:
            raise self.fail(value)
        out = []
        for item in value:
            if not isinstance(item, dict) or sorted(item) != sorted(names):
                raise self.fail(value)
            try:
                out.append({name: rule.parse(item[name]) for name, rule in self.fields})
            except Invalid:
                raise self.fail(value) from None
        return out

    def describe(self) -> str:
        inner = ", ".join(f"{name}: {rule.describe()}" for name, rule in self.fields)
        return f"a non-empty list of {{{inner}}}"


@dataclass(frozen=True)
class Field:
    """One config key: its rule, its default (``REQUIRED`` if it has none) and help text."""

    rule: Rule
    default: Any
    help: str = ""


REQUIRED = object()


@dataclass(frozen=True)
class Section:
    """A mapping of keys. If ``kinds`` is set, the ``kind`` key picks extra keys."""

    fields: dict[str, Field]
    kinds: dict[str, dict[str, Field]] = field(default_factory=dict)
    default_kind: str | None = None


@dataclass(frozen=True)
class Mapping(Rule):
    """A small mapping with declared keys and defaults (e.g. a step-size schedule)."""

    fields: tuple[tuple[str, Rule, Any], ...]  # (name, rule, default or REQUIRED)

    def parse(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(value)
        names = [name for name, _, _ in self.fields]
        unknown = [key for key in value if key not in names]
        if unknown:
            raise Invalid(f"has unknown key {unknown[0]} (valid keys: {', '.join(names)})")
        out = {}
        for name, rule, default in self.fields:
            if name not in value:
                if default is REQUIRED:
                    raise Invalid(f"needs key {name} ({rule.describe()})")
                out[name] = default
                continue
            try:
                out[name] = rule.parse(value[name])
            except Invalid as exc:
                raise Invalid(f"key {name} {exc}") from None
        return out

    def describe(self) -> str:
        return "a mapping with keys " + ", ".join(name for name, _, _ in self.fields)
