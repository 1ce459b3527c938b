"""Relay connections over sorted records, with Shopify-style opaque cursors.

A cursor is base64 of ``{"last_id": <id>, "last_value": <sort value>}`` (the shape public Shopify cursors
decode to), so paging resumes *after a key*, not after an offset: a record updated while a client pages
moves forward and may be seen again, exactly as on Shopify.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graphql import GraphQLError

from x3_shopify_dagster.sandboxes.shopify.config import MAX_PAGE_SIZE

SortKey = tuple[Any, int]  # (sort value, id): ties broken by id


class PaginationError(GraphQLError):
    pass


@dataclass(frozen=True)
class PageRequest:
    first: int | None = None
    after: SortKey | None = None
    last: int | None = None
    before: SortKey | None = None
    reverse: bool = False
    unbounded: bool = False  # bulk operations read whole connections

    @property
    def size(self) -> int | None:
        return self.first if self.first is not None else self.last


def check_page_size(first: int | None, last: int | None) -> None:
    """Shopify's rules: one of first/last is required, and at most 250 per page."""
    if first is None and last is None:
        raise PaginationError("you must provide one of first or last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value > MAX_PAGE_SIZE:
            raise PaginationError(f"The {name} argument must be less than or equal to {MAX_PAGE_SIZE}.")
        if value is not None and value < 0:
            raise PaginationError(f"The {name} argument must be greater than or equal to 0.")


def _value_to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def encode_cursor(key: SortKey) -> str:
    payload = json.dumps({"last_id": key[1], "last_value": _value_to_json(key[0])}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def decode_cursor(cursor: str, value_kind: str) -> SortKey:
    try:
        payload = json.loads(base64.b64decode(cursor.encode(), validate=True))
        last_id, raw = int(payload["last_id"]), payload["last_value"]
        value: Any = datetime.fromisoformat(raw) if value_kind == "time" else int(raw)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise PaginationError(f"Invalid cursor for current pagination sort: {cursor!r}") from exc
    return value, last_id


def page_request(args: dict[str, Any], value_kind: str = "int", *, bulk: bool = False) -> PageRequest:
    reverse = bool(args.get("reverse") or False)
    if bulk:
        return PageRequest(reverse=reverse, unbounded=True)
    first, last = args.get("first"), args.get("last")
    check_page_size(first, last)
    after = decode_cursor(args["after"], value_kind) if args.get("after") else None
    before = decode_cursor(args["before"], value_kind) if args.get("before") else None
    return PageRequest(first=first, after=after, last=last, before=before, reverse=reverse)


@dataclass
class Page:
    records: list[Any]
    keys: list[SortKey]
    has_next_page: bool
    has_previous_page: bool

    def as_connection(self) -> dict[str, Any]:
        cursors = [encode_cursor(key) for key in self.keys]
        return {
            "edges": [{"cursor": c, "node": r} for c, r in zip(cursors, self.records, strict=True)],
            "nodes": self.records,
            "pageInfo": {
                "hasNextPage": self.has_next_page,
                "hasPreviousPage": self.has_previous_page,
                "startCursor": cursors[0] if cursors else None,
                "endCursor": cursors[-1] if cursors else None,
            },
        }


def paginate(records: Sequence[Any], keys: Sequence[SortKey], request: PageRequest,
             matches: Callable[[Any], bool] | None = None, low: int = 0, high: int | None = None) -> Page:
    """One page of ``records`` (sorted ascending by ``keys``) restricted to indexes [low, high)."""
    high = len(records) if high is None else high
    test = matches or (lambda _record: True)
    if not request.reverse:
        start = low if request.after is None else max(low, bisect_right(keys, request.after))
        end = high if request.before is None else min(high, bisect_left(keys, request.before))
        view: range = range(start, end)
        ahead_of_view, behind_view = range(start - 1, low - 1, -1), range(end, high)
    else:
        top = high if request.after is None else min(high, bisect_left(keys, request.after))
        bottom = low if request.before is None else max(low, bisect_right(keys, request.before))
        view = range(top - 1, bottom - 1, -1)
        ahead_of_view, behind_view = range(top, high), range(bottom - 1, low - 1, -1)

    def matching(indexes: Iterable[int], limit: int | None) -> list[int]:
        found: list[int] = []
        for index in indexes:
            if test(records[index]):
                found.append(index)
                if limit is not None and len(found) >= limit:
                    break
        return found

    if request.unbounded:
        chosen = matching(view, None)
        has_next = has_previous = False
    elif request.first is not None:
        chosen = matching(view, request.first + 1)
        has_next = len(chosen) > request.first
        chosen = chosen[: request.first]
        if request.last is not None:
            chosen = chosen[-request.last:] if request.last else []
        has_previous = bool(matching(ahead_of_view, 1)) if request.after is not None else False
    else:
        last = request.last or 0
        chosen = matching(reversed(view), last + 1)
        has_previous = len(chosen) > last
        chosen = list(reversed(chosen[:last]))
        has_next = bool(matching(behind_view, 1)) if request.before is not None else False
    return Page(records=[records[i] for i in chosen], keys=[keys[i] for i in chosen],
                has_next_page=has_next, has_previous_page=has_previous)
