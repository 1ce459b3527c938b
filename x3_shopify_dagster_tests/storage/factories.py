"""Small builders for order versions used by the storage tests."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from x3_shopify_dagster.storage import OrderVersion

STORE = "eu"
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class FixedClock:
    """An injectable clock that only moves when told to."""

    def __init__(self, now: datetime = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def order_gid(number: int) -> str:
    return f"gid://shopify/Order/{number}"


def order_payload(number: int, *, total: str = "19.90", note: str = "") -> dict[str, Any]:
    return {
        "id": order_gid(number),
        "name": f"#{1000 + number}",
        "note": note,
        "totalPriceSet": {"shopMoney": {"amount": total, "currencyCode": "EUR"}},
        "lineItems": [{"sku": "MUG-01", "quantity": 2, "originalUnitPrice": total}],
    }


def version(
    number: int,
    minutes: float = 0,
    *,
    total: str = "19.90",
    note: str = "",
    store: str = STORE,
    payload: dict[str, Any] | None = None,
) -> OrderVersion:
    """Order `number` as Shopify shows it `minutes` after T0; the content hash follows the content."""
    body = payload if payload is not None else order_payload(number, total=total, note=note)
    content_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return OrderVersion(
        store=store,
        order_id=order_gid(number),
        order_name=f"#{1000 + number}",
        updated_at=T0 + timedelta(minutes=minutes),
        content_hash=content_hash,
        payload=body,
    )
