"""The SData query subset the sandbox understands: `where` filters, `orderBy`, and key cursors for paging.

`where` grammar (keywords case-insensitive, the whole text must parse — trailing garbage is an error):

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | comparison
    comparison := "(" expr ")" | operand (cmp operand | "like" string | ["not"] "in" "(" literal, ... ")")
    cmp        := eq | ne | lt | le | gt | ge
    operand    := PROPERTY | literal
    literal    := 'text' (a quote doubled inside) | "text" | number | @YYYY-MM-DD@ | @YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM)@

A string broken by an unescaped quote leaves a stray token or an unterminated string behind, so it is always a
syntax error: a filter never silently widens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import unquote

PropertyKind = Literal["string", "integer", "decimal", "date", "datetime"]
Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]

COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}
KEYWORDS = COMPARISONS | {"and", "or", "not", "like", "in"}


class WhereSyntaxError(ValueError):
    """The filter does not parse, or compares values of incompatible types (SData BadWhereSyntax)."""


class UnknownPropertyError(ValueError):
    """The filter or sort names a property the representation does not expose."""

    def __init__(self, name: str) -> None:
        super().__init__(f"property '{name}' does not exist in this representation")
        self.name = name


# ============================================================================================== tokens
@dataclass(frozen=True)
class Token:
    kind: Literal["ident", "keyword", "string", "number", "date", "datetime", "lparen", "rparen", "comma", "end"]
    value: Any
    position: int


_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in "(),":
            kind = {"(": "lparen", ")": "rparen", ",": "comma"}[char]
            tokens.append(Token(kind, char, index))  # type: ignore[arg-type]
            index += 1
        elif char in "'\"":
            value, index = _read_string(text, index)
            tokens.append(Token("string", value, index))
        elif char == "@":
            end = text.find("@", index + 1)
            if end < 0:
                raise WhereSyntaxError(f"unterminated date literal at position {index}")
            tokens.append(_date_token(text[index + 1:end], index))
            index = end + 1
        elif match := _NUMBER.match(text, index):
            tokens.append(Token("number", Decimal(match.group()), index))
            index = match.end()
        elif match := _IDENT.match(text, index):
            word = match.group()
            if word.lower() in KEYWORDS:
                tokens.append(Token("keyword", word.lower(), index))
            else:
                tokens.append(Token("ident", word, index))
            index = match.end()
        else:
            raise WhereSyntaxError(f"unexpected character {char!r} at position {index}")
    tokens.append(Token("end", None, len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote_char = text[start]
    parts: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote_char:
            if index + 1 < len(text) and text[index + 1] == quote_char:  # doubled quote = one quote
                parts.append(quote_char)
                index += 2
                continue
            return "".join(parts), index + 1
        parts.append(char)
        index += 1
    raise WhereSyntaxError(f"unterminated string starting at position {start}")


def _date_token(body: str, position: int) -> Token:
    if _DATE.fullmatch(body):
        try:
            return Token("date", date.fromisoformat(body), position)
        except ValueError:
            raise WhereSyntaxError(f"invalid date @{body}@") from None
    if _DATETIME.fullmatch(body):
        try:
            parsed = datetime.fromisoformat(body.replace("Z", "+00:00"))
        except ValueError:
            raise WhereSyntaxError(f"invalid datetime @{body}@") from None
        # X3 timestamps (ADATIM) are GMT: a literal without offset is read as UTC.
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        return Token("datetime", parsed, position)
    raise WhereSyntaxError(f"invalid date literal @{body}@ at position {position}")


# ============================================================================================== syntax tree
@dataclass(frozen=True)
class PropertyRef:
    name: str


@dataclass(frozen=True)
class LiteralValue:
    kind: str  # token kind: string, number, date, datetime
    value: Any


Operand = PropertyRef | LiteralValue


@dataclass(frozen=True)
class Comparison:
    operator: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Like:
    operand: Operand
    pattern: str


@dataclass(frozen=True)
class In:
    operand: Operand
    values: tuple[LiteralValue, ...]
    negated: bool


@dataclass(frozen=True)
class BoolOp:
    operator: Literal["and", "or"]
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    inner: Node


Node = Comparison | Like | In | BoolOp | Not


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.current.kind == "keyword" and self.current.value in words

    def expect(self, kind: str, what: str) -> Token:
        if self.current.kind != kind:
            raise self.error(f"expected {what}")
        return self.advance()

    def error(self, message: str) -> WhereSyntaxError:
        token = self.current
        found = "end of filter" if token.kind == "end" else repr(token.value)
        return WhereSyntaxError(f"{message} at position {token.position}, found {found}")

    def parse(self) -> Node:
        node = self.expression()
        if self.current.kind != "end":
            raise self.error("unexpected text after the filter")
        return node

    def expression(self) -> Node:
        parts = [self.conjunction()]
        while self.at_keyword("or"):
            self.advance()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.unary()]
        while self.at_keyword("and"):
            self.advance()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def unary(self) -> Node:
        if self.at_keyword("not"):
            self.advance()
            return Not(self.unary())
        return self.comparison()

    def comparison(self) -> Node:
        if self.current.kind == "lparen":
            self.advance()
            node = self.expression()
            self.expect("rparen", "')'")
            return node
        left = self.operand()
        if self.current.kind == "keyword" and self.current.value in COMPARISONS:
            operator = self.advance().value
            return Comparison(operator, left, self.operand())
        if self.at_keyword("like"):
            self.advance()
            pattern = self.expect("string", "a quoted pattern after 'like'")
            return Like(left, pattern.value)
        negated = False
        if self.at_keyword("not"):
            self.advance()
            negated = True
            if not self.at_keyword("in"):
                raise self.error("expected 'in' after 'not'")
        if self.at_keyword("in"):
            self.advance()
            self.expect("lparen", "'(' after 'in'")
            values = [self.literal()]
            while self.current.kind == "comma":
                self.advance()
                values.append(self.literal())
            self.expect("rparen", "')' closing the 'in' list")
            return In(left, tuple(values), negated)
        raise self.error("expected a comparison operator (eq ne lt le gt ge like in)")

    def operand(self) -> Operand:
        if self.current.kind == "ident":
            return PropertyRef(self.advance().value)
        return self.literal()

    def literal(self) -> LiteralValue:
        token = self.current
        if token.kind not in {"string", "number", "date", "datetime"}:
            raise self.error("expected a property or a literal")
        self.advance()
        return LiteralValue(token.kind, token.value)


def parse_where(text: str) -> Node:
    if not text.strip():
        raise WhereSyntaxError("empty filter")
    return _Parser(text).parse()


# ============================================================================================== evaluation
def _coerce(literal: LiteralValue, kind: PropertyKind, property_name: str) -> Any:
    """Convert a literal to the type of the property it is compared with, or refuse."""
    value = literal.value
    problem = WhereSyntaxError(f"cannot compare {property_name} ({kind}) with {literal.kind} literal {value!r}")
    if kind == "string":
        if literal.kind != "string":
            raise problem
        return value
    if kind in {"integer", "decimal"}:
        try:
            number = Decimal(value) if literal.kind in {"number", "string"} else None
        except InvalidOperation:
            number = None
        if number is None or (kind == "integer" and number != number.to_integral_value()):
            raise problem
        return int(number) if kind == "integer" else number
    if kind == "date":
        if literal.kind == "date":
            return value
        if literal.kind == "string" and _DATE.fullmatch(value):
            return date.fromisoformat(value)
        raise problem
    if literal.kind == "datetime":
        return value
    if literal.kind == "date":  # a date against a timestamp means midnight UTC
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise problem


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if left is None or right is None:  # a blank value only differs from everything
        return operator == "ne"
    return {
        "eq": left == right, "ne": left != right, "lt": left < right,
        "le": left <= right, "gt": left > right, "ge": left >= right,
    }[operator]


def compile_where(text: str, kinds: Mapping[str, PropertyKind]) -> Predicate:
    """Parse and bind a filter to a representation's properties (name → kind). Raises on unknown names."""
    return _bind(parse_where(text), kinds)


def _bind(node: Node, kinds: Mapping[str, PropertyKind]) -> Predicate:
    if isinstance(node, BoolOp):
        parts = [_bind(part, kinds) for part in node.parts]
        if node.operator == "and":
            return lambda row: all(part(row) for part in parts)
        return lambda row: any(part(row) for part in parts)
    if isinstance(node, Not):
        inner = _bind(node.inner, kinds)
        return lambda row: not inner(row)
    if isinstance(node, Like):
        name = _property_name(node.operand, "like", kinds)
        if kinds[name] != "string":
            raise WhereSyntaxError(f"'like' needs a string property, {name} is {kinds[name]}")
        regex = _like_regex(node.pattern)
        return lambda row: (value := row.get(name)) is not None and regex.fullmatch(str(value)) is not None
    if isinstance(node, In):
        name = _property_name(node.operand, "in", kinds)
        values = {_coerce(value, kinds[name], name) for value in node.values}
        if node.negated:
            return lambda row: row.get(name) not in values
        return lambda row: row.get(name) in values
    left_kind = _kind_of(node.left, kinds)
    right_kind = _kind_of(node.right, kinds)
    if left_kind is None and right_kind is None:
        raise WhereSyntaxError("a comparison needs at least one property")
    if left_kind and right_kind and left_kind != right_kind:
        raise WhereSyntaxError(f"cannot compare properties of kinds {left_kind} and {right_kind}")
    left = _operand_reader(node.left, right_kind)
    right = _operand_reader(node.right, left_kind)
    operator = node.operator
    return lambda row: _compare(operator, left(row), right(row))


def _property_name(operand: Operand, operator: str, kinds: Mapping[str, PropertyKind]) -> str:
    if not isinstance(operand, PropertyRef):
        raise WhereSyntaxError(f"'{operator}' needs a property on its left")
    if operand.name not in kinds:
        raise UnknownPropertyError(operand.name)
    return operand.name


def _kind_of(operand: Operand, kinds: Mapping[str, PropertyKind]) -> PropertyKind | None:
    if isinstance(operand, PropertyRef):
        if operand.name not in kinds:
            raise UnknownPropertyError(operand.name)
        return kinds[operand.name]
    return None


def _operand_reader(operand: Operand, other_kind: PropertyKind | None) -> Callable[[Row], Any]:
    if isinstance(operand, PropertyRef):
        name = operand.name
        return lambda row: row.get(name)
    # A literal takes the type of the property it is compared with (checked: one side is a property).
    value = _coerce(operand, other_kind, "the property") if other_kind else operand.value
    return lambda row: value


# ============================================================================================== ordering
@dataclass(frozen=True)
class SortField:
    name: str
    descending: bool = False


def parse_order_by(text: str, kinds: Mapping[str, PropertyKind]) -> list[SortField]:
    """`BPCNAM desc, BPCNUM asc` → sort fields."""
    fields: list[SortField] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in {"asc", "desc"}):
            raise WhereSyntaxError(f"invalid orderBy item {part.strip()!r}: expected 'PROPERTY [asc|desc]'")
        if words[0] not in kinds:
            raise UnknownPropertyError(words[0])
        fields.append(SortField(words[0], len(words) == 2 and words[1].lower() == "desc"))
    return fields


def compare_sort_values(left: Sequence[Any], right: Sequence[Any], fields: Sequence[SortField]) -> int:
    """Three-way comparison of two sort tuples; blanks (None) sort first, before any value."""
    for a, b, sort_field in zip(left, right, fields, strict=True):
        if a == b:
            continue
        if a is None:
            result = -1
        elif b is None:
            result = 1
        else:
            result = -1 if a < b else 1
        return -result if sort_field.descending else result
    return 0


# ============================================================================================== key cursors
def encode_cursor(values: Sequence[Any]) -> str:
    """`key=gt.` value: parts joined by `~` like X3's composite keys; `~` and `%` inside a part are escaped."""
    return "~".join(_cursor_text(value).replace("%", "%25").replace("~", "%7E") for value in values)


def _cursor_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def decode_cursor(text: str, kinds: Sequence[PropertyKind]) -> list[Any]:
    parts = text.split("~")
    if len(parts) != len(kinds):
        raise WhereSyntaxError(f"key value {text!r} has {len(parts)} part(s), expected {len(kinds)}")
    return [_parse_cursor_part(unquote(part), kind) for part, kind in zip(parts, kinds, strict=True)]


def _parse_cursor_part(text: str, kind: PropertyKind) -> Any:
    try:
        if kind == "string":
            return text
        if text == "":
            return None
        if kind == "integer":
            return int(text)
        if kind == "decimal":
            return Decimal(text)
        if kind == "date":
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, InvalidOperation):
        raise WhereSyntaxError(f"key part {text!r} is not a valid {kind}") from None
