"""SData `where` clauses built from values, never from string concatenation.

Property names must be plain X3 identifiers and every value is rendered as a typed literal: strings in single
quotes with quotes doubled (`'O''Brien'`), dates as `@2026-11-27@`, aware datetimes as
`@2026-11-27T10:00:00Z@` (UTC), numbers as plain decimals. A value can therefore never end its literal early,
so user input (an e-mail with a quote) can neither break nor widen a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OPERATORS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "like"})

Literal = str | int | Decimal | date | datetime | bool


def property_name(name: str) -> str:
    if not _PROPERTY.match(name):
        raise ValueError(f"not an X3 property name: {name!r}")
    return name


def literal(value: Literal) -> str:
    """Render one value as an SData literal."""
    if isinstance(value, bool):  # before int: bool is an int subclass; X3 menus are 1/2, not true/false
        raise TypeError("booleans have no SData literal in X3; compare the local-menu value (1 or 2)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("string literal contains a NUL character")
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite decimal: {value}")
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("datetime literals must be timezone-aware")
        return "@" + value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ") + "@"
    if isinstance(value, date):
        return f"@{value.isoformat()}@"
    raise TypeError(f"no SData literal for {type(value).__name__}")


@dataclass(frozen=True)
class Where:
    """An SData condition. Compose with `&` (and), `|` (or) and `~` (not); `str()` renders it."""

    text: str

    @classmethod
    def compare(cls, name: str, operator: str, value: Literal) -> Where:
        if operator not in _OPERATORS:
            raise ValueError(f"unknown SData operator {operator!r}")
        return cls(f"({property_name(name)} {operator} {literal(value)})")

    @classmethod
    def eq(cls, name: str, value: Literal) -> Where:
        return cls.compare(name, "eq", value)

    @classmethod
    def ne(cls, name: str, value: Literal) -> Where:
        return cls.compare(name, "ne", value)

    @classmethod
    def lt(cls, name: str, value: Literal) -> Where:
        return cls.compare(name, "lt", value)

    @classmethod
    def le(cls, name: str, value: Literal) -> Where:
        return cls.compare(name, "le", value)

    @classmethod
    def gt(cls, name: str, value: Literal) -> Where:
        return cls.compare(name, "gt", value)

    @classmethod
    def ge(cls, name: str, value: Literal) -> Where:
        return cls.compare(name, "ge", value)

    @classmethod
    def like(cls, name: str, pattern: str) -> Where:
        """`pattern` is passed as a literal; `%` inside it is a wildcard by SData's definition."""
        return cls.compare(name, "like", pattern)

    @classmethod
    def in_(cls, name: str, values: Iterable[Literal]) -> Where:
        rendered = [literal(v) for v in values]
        if not rendered:
            raise ValueError("an 'in' condition needs at least one value")
        return cls(f"({property_name(name)} in ({', '.join(rendered)}))")

    @classmethod
    def any_of(cls, conditions: Iterable[Where]) -> Where:
        return _fold(conditions, "or")

    @classmethod
    def all_of(cls, conditions: Iterable[Where]) -> Where:
        return _fold(conditions, "and")

    def __and__(self, other: Where) -> Where:
        return Where(f"({self.text} and {other.text})")

    def __or__(self, other: Where) -> Where:
        return Where(f"({self.text} or {other.text})")

    def __invert__(self) -> Where:
        return Where(f"(not {self.text})")

    def __str__(self) -> str:
        return self.text


def _fold(conditions: Iterable[Where], operator: str) -> Where:
    items = list(conditions)
    if not items:
        raise ValueError(f"'{operator}' of no conditions")
    if len(items) == 1:
        return items[0]
    return Where("(" + f" {operator} ".join(c.text for c in items) + ")")


def order_by(*fields: str, descending: bool = False) -> str:
    direction = "desc" if descending else "asc"
    return ", ".join(f"{property_name(f)} {direction}" for f in fields)
