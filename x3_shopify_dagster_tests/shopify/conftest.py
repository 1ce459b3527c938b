"""Fixtures for the Shopify client tests: a fake clock and clients wired to an in-process fake Shopify."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from x3_shopify_dagster.shopify.client import ShopifyClient
from x3_shopify_dagster.shopify.retry import RetryPolicy
from x3_shopify_dagster_tests.shopify.fakes import SHOP_URL, TOKEN, FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake_clock: FakeClock) -> Iterator[Callable[..., ShopifyClient]]:
    """Build a client on a MockTransport; the jitter is pinned to its ceiling so waits are predictable."""
    clients: list[ShopifyClient] = []

    def build(handler: httpx.MockTransport | Callable[[httpx.Request], httpx.Response], **overrides: object):
        transport = handler if isinstance(handler, httpx.MockTransport) else httpx.MockTransport(handler)
        options: dict[str, object] = {
            "retry": RetryPolicy(random=lambda: 1.0),
            "sleep": fake_clock.sleep,
            "clock": fake_clock,
            "transport": transport,
        }
        options.update(overrides)
        client = ShopifyClient(SHOP_URL, TOKEN, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
