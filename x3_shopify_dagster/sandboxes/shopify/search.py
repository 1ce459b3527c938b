"""The subset of Shopify's search syntax the sandbox understands (``orders(query:)`` and friends).

Supported: ``field:value`` terms with ``:``, ``:>``, ``:>=``, ``:<``, ``:<=``; single- or double-quoted values;
terms joined by whitespace or ``AND``; ``OR`` between groups; ``-field:value`` / ``NOT field:value``.
Timestamps: a quoted ISO-8601 value is an instant (naive values are read in the shop's timezone); an
**unquoted** value keeps only its date part, read as midnight in the shop's timezone -- Shopify's documented
pitfall (estuary/connectors#3250, Shopify/shopify-api-ruby#588). ``now`` is the current time.
Like Shopify, unknown fields and free text are ignored (and logged here), never rejected.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)

_TERM = re.compile(r"""(?P<neg>-)?(?P<field>[A-Za-z_][A-Za-z0-9_.]*):(?P<op>>=|<=|>|<)?(?P<value>.*)""", re.S)
_DATE_PREFIX = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ":": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


class SearchField:
    """How one searchable field reads a record and parses the value it is compared with."""

    def __init__(self, getter: Callable[[Any], Any], kind: str = "text") -> None:
        self.getter = getter
        self.kind = kind  # "text" (case-insensitive equality), "time", "int", "bool", "any_text"


@dataclass(frozen=True)
class Bound:
    low: Any = None
    low_inclusive: bool = True
    high: Any = None
    high_inclusive: bool = True


@dataclass
class CompiledSearch:
    groups: list[list[Callable[[Any], bool]]] = field(default_factory=list)  # OR of ANDs
    bounds: dict[str, Bound] = field(default_factory=dict)  # only when there is a single group
    ignored_terms: list[str] = field(default_factory=list)

    def matches(self, record: Any) -> bool:
        if not self.groups:
            return True
        return any(all(test(record) for test in group) for group in self.groups)


def tokenize(query: str) -> list[tuple[str, bool]]:
    """Split on whitespace outside quotes; each token says whether its value part was quoted."""
    tokens: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = False
    quote: str | None = None
    for char in query:
        if quote:
            if char == quote:
                quote = None
            else:
                current.append(char)
        elif char in "'\"":
            quote = char
            quoted = True
        elif char.isspace():
            if current:
                tokens.append(("".join(current), quoted))
            current, quoted = [], False
        else:
            current.append(char)
    if current or quoted:
        tokens.append(("".join(current), quoted))
    return tokens


def parse_time_value(value: str, quoted: bool, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime] | None:
    """The instant a timestamp term means, plus the end of the period it names (for ``:`` equality)."""
    text = value.strip()
    if text.lower() == "now":
        return now, now
    if quoted:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and ("T" in text or " " in text):
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=tz)
            utc = moment.astimezone(ZoneInfo("UTC"))
            return utc, utc
    match = _DATE_PREFIX.match(text)
    if not match:
        return None
    year, month, day = int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1)
    try:
        start_date = date(year, month, day)
    except ValueError:
        return None
    if match.group(3):
        end_date = start_date + timedelta(days=1)
    elif match.group(2):
        end_date = date(year + (month == 12), month % 12 + 1, 1)
    else:
        end_date = date(year + 1, 1, 1)
    utc = ZoneInfo("UTC")
    start = datetime.combine(start_date, time(), tzinfo=tz).astimezone(utc)
    end = datetime.combine(end_date, time(), tzinfo=tz).astimezone(utc)
    return start, end


def compile_search(query: str | None, fields: Mapping[str, SearchField], *, tz: ZoneInfo, now: datetime,
                   what: str = "orders") -> CompiledSearch:
    compiled = CompiledSearch()
    if not query or not query.strip():
        return compiled
    groups: list[list[Callable[[Any], bool]]] = [[]]
    group_bounds: list[dict[str, Bound]] = [{}]
    negate_next = False
    for token, quoted in tokenize(query):
        if token in ("AND", "and"):
            continue
        if token in ("OR", "or"):
            groups.append([])
            group_bounds.append({})
            continue
        if token in ("NOT", "not"):
            negate_next = True
            continue
        match = _TERM.fullmatch(token)
        name = match.group("field").lower() if match else None
        if not match or name not in fields:
            compiled.ignored_terms.append(token)
            negate_next = False
            continue
        negate = negate_next or bool(match.group("neg"))
        negate_next = False
        spec = fields[name]  # type: ignore[index]
        op = match.group("op") or ":"
        test = _term_test(spec, op, match.group("value"), quoted, tz, now)
        if test is None:
            test = _never
        elif not negate and spec.kind in ("time", "int"):
            _narrow(group_bounds[-1], name, op, match.group("value"), quoted, spec, tz, now)  # type: ignore[arg-type]
        groups[-1].append(_negated(test) if negate else test)
    compiled.groups = [g for g in groups if g] or []
    if len(groups) == 1:
        compiled.bounds = group_bounds[0]
    if compiled.ignored_terms:
        logger.warning("Shopify sandbox ignored unsupported %s search terms %s in query %r", what,
                       compiled.ignored_terms, query)
    return compiled


def _never(_record: Any) -> bool:
    return False


def _negated(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda record: not test(record)


def _term_test(spec: SearchField, op: str, raw: str, quoted: bool, tz: ZoneInfo,
               now: datetime) -> Callable[[Any], bool] | None:
    getter = spec.getter
    if spec.kind == "time":
        parsed = parse_time_value(raw, quoted, tz, now)
        if parsed is None:
            return None
        start, end = parsed
        if op == ":" and end != start:
            return lambda r: (v := getter(r)) is not None and start <= v < end
        compare = _OPS[op]
        return lambda r: (v := getter(r)) is not None and compare(v, start)
    if spec.kind == "int":
        number = _as_int(raw)
        if number is None:
            return None
        compare = _OPS[op]
        return lambda r: compare(getter(r), number)
    if spec.kind == "bool":
        wanted = raw.strip().lower()
        if wanted not in ("true", "false"):
            return None
        return lambda r: bool(getter(r)) == (wanted == "true")
    if op != ":":
        return None
    needle = raw.strip().lower()
    if spec.kind == "any_text":
        return lambda r: any(v is not None and v.lower() == needle for v in getter(r))
    return lambda r: (v := getter(r)) is not None and str(v).lower() == needle


def _as_int(raw: str) -> int | None:
    text = raw.strip().rsplit("/", 1)[-1]
    return int(text) if text.isdigit() else None


def _narrow(bounds: dict[str, Bound], name: str, op: str, raw: str, quoted: bool, spec: SearchField,
            tz: ZoneInfo, now: datetime) -> None:
    """Record the range a term imposes so a sorted scan can start and stop early."""
    if spec.kind == "time":
        parsed = parse_time_value(raw, quoted, tz, now)
        if parsed is None:
            return
        start, end = parsed
        low_value, high_value = start, (end if op == ":" and end != start else start)
    else:
        number = _as_int(raw)
        if number is None:
            return
        low_value = high_value = number
    current = bounds.get(name, Bound())
    if op in (">", ">=", ":"):
        inclusive = op != ">"
        if current.low is None or low_value > current.low:
            current = Bound(low_value, inclusive, current.high, current.high_inclusive)
    if op in ("<", "<=", ":"):
        inclusive = op == "<=" or (op == ":" and spec.kind == "int") or (op == ":" and high_value == low_value)
        if current.high is None or high_value < current.high:
            current = Bound(current.low, current.low_inclusive, high_value, inclusive)
    bounds[name] = current
