"""Fixtures of the pure domain tests: the demo mapping, the sandboxes' seeded orders (in-process) and an X3
folder whose invoice rules and totals are the sandbox's own code, called without a server.

Seeded orders are read the way the connector reads them: the product's GraphQL documents (``orders_by_id``,
``orders_after_sales``) run by the Shopify sandbox's schema and resolvers, then ``ShopifyOrder.from_graphql``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from graphql import execute, parse

from x3_shopify_dagster.domain.mapping import Mapping, load_mapping
from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster.sandboxes.shopify import SandboxConfig
from x3_shopify_dagster.sandboxes.shopify.context import RequestContext
from x3_shopify_dagster.sandboxes.shopify.models import gid
from x3_shopify_dagster.sandboxes.shopify.schema import never_awaitable, sandbox_schema
from x3_shopify_dagster.sandboxes.shopify.state import SandboxState
from x3_shopify_dagster.sandboxes.x3 import FolderState, ManualClock
from x3_shopify_dagster.sandboxes.x3.documents import post_invoice
from x3_shopify_dagster.sandboxes.x3.publications import SalesInvoicePublication
from x3_shopify_dagster.sandboxes.x3.seed import seed_folder
from x3_shopify_dagster.sandboxes.x3.soap import CallContext, SoapCall
from x3_shopify_dagster.shopify.documents import load_document

SeededOrders = dict[str, list[ShopifyOrder]]
_IDS_PER_CALL = 250  # nodes(ids:) accepts at most 250 ids


def _run(state: SandboxState, store: str, document: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
    result = execute(
        sandbox_schema(),
        parse(load_document(document).text),
        context_value=RequestContext(state=state, store=store, api_version="2026-07"),
        variable_values=variables,
        is_awaitable=never_awaitable,
    )
    assert not result.errors, result.errors
    assert result.data is not None
    return result.data["nodes"]  # type: ignore[no-any-return]


def read_seeded_orders(config: SandboxConfig) -> SeededOrders:
    """Every order the Shopify sandbox seeds for ``config``, as typed orders (lines, refunds, fulfilments)."""
    state = SandboxState(config)
    orders: SeededOrders = {}
    for store in config.stores:
        ids = [gid("Order", order.legacy_id) for order in state.orders(store)]
        typed = []
        for start in range(0, len(ids), _IDS_PER_CALL):
            batch = ids[start : start + _IDS_PER_CALL]
            nodes = _run(
                state, store, "orders_by_id", {"ids": batch, "lineItemsFirst": 250, "shippingLinesFirst": 10}
            )
            after_sales = {
                node["id"]: node
                for node in _run(
                    state,
                    store,
                    "orders_after_sales",
                    {"ids": batch, "linesFirst": 250, "shippingLinesFirst": 10},
                )
            }
            for node in nodes:
                extra = after_sales[node["id"]]
                typed.append(
                    ShopifyOrder.from_graphql(
                        {**node, "refunds": extra["refunds"], "fulfillments": extra["fulfillments"]}
                    )
                )
        orders[store] = typed
    return orders


@pytest.fixture(scope="session")
def demo_mapping() -> Mapping:
    with resources.as_file(resources.files("x3_shopify_dagster").joinpath("demo_mapping.yaml")) as path:
        return load_mapping(path)


@pytest.fixture(scope="session")
def seeded_orders() -> SeededOrders:
    """The orders of the shared ``shopify_sandbox`` fixture (default config: seed 7, 40 per store)."""
    return read_seeded_orders(SandboxConfig())


@pytest.fixture(scope="session")
def more_seeded_orders() -> SeededOrders:
    """Another seed with more ordinary orders, for the money properties (enough rounding cases)."""
    return read_seeded_orders(SandboxConfig(seed=11, orders_per_store=150))


def x3_customer_for(order: ShopifyOrder) -> str | None:
    """The X3 customer the matching step finds for the demo data: the single code holding the e-mail."""
    email = order.contact_email
    codes = next((c.x3_customer_codes for c in demo_data.CUSTOMERS if c.email == email), ())
    return codes[0] if len(codes) == 1 else None


# ----------------------------------------------------------------------------------------------- X3 folder
@dataclass(frozen=True)
class X3Saved:
    number: str
    totals: tuple[Decimal, Decimal, Decimal]  # AMTNOT, AMTTAX, AMTATI as X3 computed them
    gl_lines: list[tuple[str, str, Decimal, Decimal]]  # (ACC, CCE, DEB, CDT) of the posting's GL entry


class X3Folder:
    """A seeded sandbox folder driven through its YSIH publication (the code the SOAP endpoint runs)."""

    def __init__(self) -> None:
        self.state = FolderState("SEED", ManualClock())
        seed_folder(self.state, seed=7)
        self._publication = SalesInvoicePublication()
        self._context = CallContext("ENG", "SEED", "", {"adxwss.optreturn": "JSON"})

    def save(self, payload: dict[str, Any]) -> tuple[int, list[str], dict[str, Any] | None]:
        call = SoapCall("save", self._context, "YSIH", payload=json.dumps(payload))
        result = self._publication.handle(call, self.state)
        messages = [text for _, text in result.messages]
        return result.status, messages, json.loads(result.result) if result.result else None

    def save_and_post(self, payload: dict[str, Any]) -> X3Saved:
        status, messages, data = self.save(payload)
        assert status == 1, messages
        assert data is not None
        totals = data["SIH4_3"]
        invoice = post_invoice(self.state, data["SIH0_1"]["NUM"])
        entry = self.state.tables.gl_entries[("SIH", invoice.gl_entry)]
        return X3Saved(
            number=invoice.number,
            totals=(Decimal(totals["AMTNOT"]), Decimal(totals["AMTTAX"]), Decimal(totals["AMTATI"])),
            gl_lines=[(line.account, line.cost_centre, line.debit, line.credit) for line in entry.lines],
        )


@pytest.fixture
def x3_folder() -> X3Folder:
    return X3Folder()
