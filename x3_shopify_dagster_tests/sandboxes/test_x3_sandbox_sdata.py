"""The sandbox's SData `where` / `orderBy` / key-cursor machinery, without HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from x3_shopify_dagster.sandboxes.x3.sdata import (
    PropertyKind,
    SortField,
    UnknownPropertyError,
    WhereSyntaxError,
    compare_sort_values,
    compile_where,
    decode_cursor,
    encode_cursor,
    parse_order_by,
)

KINDS: dict[str, PropertyKind] = {"NAME": "string", "STA": "integer", "AMT": "decimal", "DAT": "date",
                                  "UPD": "datetime"}
ROWS: list[dict[str, Any]] = [
    {"NAME": "O'Brien", "STA": 1, "AMT": Decimal("10.50"), "DAT": date(2026, 11, 1),
     "UPD": datetime(2026, 11, 27, 10, 0, tzinfo=UTC)},
    {"NAME": "Martin", "STA": 2, "AMT": Decimal("99.99"), "DAT": None,
     "UPD": datetime(2026, 11, 27, 12, 30, tzinfo=UTC)},
    {"NAME": "100% Bio_1", "STA": 2, "AMT": Decimal("-1"), "DAT": date(2026, 12, 31),
     "UPD": datetime(2026, 11, 28, 0, 0, tzinfo=UTC)},
]


def matching(where: str) -> list[str]:
    predicate = compile_where(where, KINDS)
    return [row["NAME"] for row in ROWS if predicate(row)]


@pytest.mark.parametrize(("where", "expected"), [
    ("NAME eq 'O''Brien'", ["O'Brien"]),
    ('NAME eq "O\'Brien"', ["O'Brien"]),
    ("(STA eq 2) AND (AMT gt 0)", ["Martin"]),
    ("STA eq 1 or AMT lt 0", ["O'Brien", "100% Bio_1"]),
    ("not STA eq 2", ["O'Brien"]),
    ("not (STA eq 2 or AMT ge 10.50)", []),
    ("AMT le 10.5", ["O'Brien", "100% Bio_1"]),
    ("DAT ge @2026-11-01@", ["O'Brien", "100% Bio_1"]),
    ("DAT ne @2026-11-01@", ["Martin", "100% Bio_1"]),  # a blank date differs from every date
    ("DAT eq '2026-12-31'", ["100% Bio_1"]),
    ("UPD gt @2026-11-27T11:00:00Z@", ["Martin", "100% Bio_1"]),
    ("UPD lt @2026-11-27T13:00:00+02:00@", ["O'Brien"]),
    ("UPD ge @2026-11-28@", ["100% Bio_1"]),
    ("NAME like '100\\% Bio%'", []),  # no escape character in SData like: the backslash is literal
    ("NAME like '100% Bio_1'", ["100% Bio_1"]),
    ("NAME like 'M_rt%'", ["Martin"]),
    ("STA in (2, 3) and NAME not in ('Martin')", ["100% Bio_1"]),
    ("'Martin' eq NAME", ["Martin"]),
])
def test_where_evaluation(where: str, expected: list[str]) -> None:
    assert matching(where) == expected


@pytest.mark.parametrize(("where", "fragment"), [
    ("NAME eq 'O'Brien'", "unterminated string"),
    ("NAME eq 'O'Brien''", "unexpected text"),
    ("NAME eq 'unterminated", "unterminated string"),
    ("NAME eq 'x' NAME", "unexpected text"),
    ("(NAME eq 'x'", "')'"),
    ("NAME eq 'x')", "unexpected text"),
    ("NAME eq 'x' or", "expected a property or a literal"),
    ("NAME", "comparison operator"),
    ("NAME = 'x'", "unexpected character"),
    ("NAME eq 'x'; drop", "unexpected character"),
    ("STA eq 'two'", "cannot compare"),
    ("STA eq 1.5", "cannot compare"),
    ("NAME eq 3", "cannot compare"),
    ("DAT eq @2026-13-01@", "invalid date"),
    ("UPD eq @yesterday@", "invalid date literal"),
    ("STA like '1%'", "string property"),
    ("'a' eq 'a'", "at least one property"),
    ("NAME not eq 'x'", "expected 'in'"),
    ("", "empty"),
])
def test_where_errors_are_syntax_errors(where: str, fragment: str) -> None:
    with pytest.raises(WhereSyntaxError) as error:
        compile_where(where, KINDS)
    assert fragment in str(error.value)


def test_unknown_properties_are_reported_by_name() -> None:
    with pytest.raises(UnknownPropertyError) as error:
        compile_where("STA eq 1 and EMAIL eq 'x'", KINDS)
    assert error.value.name == "EMAIL"
    with pytest.raises(UnknownPropertyError):
        parse_order_by("NAME asc, NOPE desc", KINDS)


def test_order_by_and_blank_values_sort_first() -> None:
    fields = parse_order_by("DAT desc, NAME", KINDS)
    assert fields == [SortField("DAT", True), SortField("NAME", False)]
    ascending = [SortField("DAT")]
    assert compare_sort_values([None], [date(2026, 1, 1)], ascending) == -1
    assert compare_sort_values([date(2026, 1, 2)], [date(2026, 1, 1)], fields[:1]) == -1
    assert compare_sort_values([None, "a"], [None, "a"], fields) == 0


def test_cursor_round_trip_escapes_the_separator() -> None:
    values = ["A~B", 7, Decimal("1.50"), date(2026, 11, 27), datetime(2026, 11, 27, 9, 5, 1, tzinfo=UTC), None]
    kinds: list[PropertyKind] = ["string", "integer", "decimal", "date", "datetime", "date"]
    encoded = encode_cursor(values)
    assert encoded.count("~") == len(values) - 1
    assert decode_cursor(encoded, kinds) == values
    assert encode_cursor(["1", "FR0001", "MAIN"]) == "1~FR0001~MAIN"  # plain X3 composite keys stay readable
    with pytest.raises(WhereSyntaxError):
        decode_cursor("1~FR0001", kinds[:3])
    with pytest.raises(WhereSyntaxError):
        decode_cursor("x", ["integer"])
