"""SData where-clause builder: typed literals, escaping, composition."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from x3_shopify_dagster.x3.sdata import Where, literal, order_by


def test_string_literal_doubles_quotes() -> None:
    assert str(Where.eq("WEB", "o'brien@pub.example")) == "(WEB eq 'o''brien@pub.example')"


@pytest.mark.parametrize(
    "hostile",
    [
        "x' or WEB ne 'x",  # tries to widen the query to every row
        "x') or (1 eq 1",
        "'",
        "''",
        "a'); drop --",
    ],
)
def test_hostile_string_stays_one_literal(hostile: str) -> None:
    rendered = str(Where.eq("WEB", hostile))
    inner = rendered[len("(WEB eq "):-1]
    # The literal is quoted, and every quote inside it is doubled: nothing can end it early.
    assert inner.startswith("'")
    assert inner.endswith("'")
    body = inner[1:-1]
    assert body.replace("''", "").count("'") == 0
    assert body.replace("''", "'") == hostile


def test_typed_literals() -> None:
    assert literal(42) == "42"
    assert literal(Decimal("12.50")) == "12.50"
    assert literal(Decimal("1E+2")) == "100"
    assert literal(date(2026, 11, 27)) == "@2026-11-27@"
    paris = timezone(timedelta(hours=1))
    assert literal(datetime(2026, 11, 27, 11, 0, 0, 999, tzinfo=paris)) == "@2026-11-27T10:00:00Z@"


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1), Decimal("NaN"), True, 1.5, "nul\x00"])
def test_unsafe_or_ambiguous_literals_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        literal(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["WEB eq 'x' or WEB", "A B", "", "1ACC", "BPC-NUM", "x)"])
def test_property_names_are_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="property name"):
        Where.eq(name, "x")


def test_composition_is_fully_parenthesised() -> None:
    where = (Where.eq("WEB", "a@b.example") | Where.eq("WEB", "A@b.example")) & Where.eq("BPATYP", 1)
    assert str(where) == "(((WEB eq 'a@b.example') or (WEB eq 'A@b.example')) and (BPATYP eq 1))"
    assert str(~Where.eq("ENAFLG", 2)) == "(not (ENAFLG eq 2))"
    assert str(Where.any_of([Where.eq("A", 1), Where.eq("B", 2), Where.eq("C", 3)])) == (
        "((A eq 1) or (B eq 2) or (C eq 3))")
    assert str(Where.all_of([Where.gt("UPDDATTIM", datetime(2026, 1, 1, tzinfo=UTC))])) == (
        "(UPDDATTIM gt @2026-01-01T00:00:00Z@)")


def test_in_and_like() -> None:
    assert str(Where.in_("BPCNUM", ["US0007", "O'X"])) == "(BPCNUM in ('US0007', 'O''X'))"
    assert str(Where.like("BPCNAM", "%Kitchen%")) == "(BPCNAM like '%Kitchen%')"
    with pytest.raises(ValueError, match="at least one value"):
        Where.in_("BPCNUM", [])


def test_order_by() -> None:
    assert order_by("UPDDATTIM", "STOFCY") == "UPDDATTIM asc, STOFCY asc"
    with pytest.raises(ValueError, match="property name"):
        order_by("UPDDATTIM desc; x")
