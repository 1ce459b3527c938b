"""Property-style loops over the orders the Shopify sandbox seeds for both demo stores.

Every order gets the outcome its content calls for; every draft reconciles to Shopify's total to the cent,
balances in the GL, and is accepted by the X3 sandbox's own invoice rules with the same totals and GL entry.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from x3_shopify_dagster.domain.invoicing import (
    InvoiceDraft,
    LineKind,
    X3LineType,
    build_invoice,
    invoice_reference,
)
from x3_shopify_dagster.domain.mapping import Mapping, parse_mapping
from x3_shopify_dagster.domain.outcomes import FailureReason, MappingFailure, Skip, SkipReason
from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster.sandboxes import demo_data
from x3_shopify_dagster_tests.domain.conftest import SeededOrders, X3Folder, x3_customer_for

NOT_IN_X3 = {"GIFT-WRAP", None}  # the demo mapping maps GIFT-WRAP to no item and sets no without_sku


def build(order: ShopifyOrder, store: str, mapping: Mapping) -> InvoiceDraft | MappingFailure | Skip:
    return build_invoice(
        order,
        store=store,
        customer_code=x3_customer_for(order),
        mapping=mapping,
        business_timezone=demo_data.store(store).iana_timezone,
    )


def expected_outcome(order: ShopifyOrder) -> tuple[str, str | None]:
    """What the demo mapping must do with an order, read from the order's content alone."""
    if order.test:
        return SkipReason.TEST_ORDER, None
    if order.cancelled_at is not None:
        return SkipReason.CANCELLED, None
    if order.customer_id is None:
        return FailureReason.GUEST_CHECKOUT, "customer"
    if x3_customer_for(order) is None:  # missing in X3 or ambiguous: the matching step never gets a code
        return FailureReason.CUSTOMER_NOT_MATCHED, "customer_code"
    for index, item in enumerate(order.line_items):
        if item.sku in NOT_IN_X3:
            return FailureReason.ITEM_NOT_MAPPED, f"line_items[{index}].sku"
    return "draft", None


def assert_reconciles(draft: InvoiceDraft, order: ShopifyOrder) -> None:
    assert draft.totals.gross == draft.shopify_total == order.total_price_set.shop_money.amount, order.name
    assert draft.totals.net + draft.totals.tax == draft.totals.gross
    gl = draft.gl_lines()
    assert sum((g.debit for g in gl), Decimal(0)) == sum((g.credit for g in gl), Decimal(0)), order.name
    goods = [line for line in draft.lines if line.kind is LineKind.GOODS]
    assert [(line.quantity, line.unit_price) for line in goods] == [
        (item.quantity, item.original_unit_price_set.shop_money.amount) for item in order.line_items
    ]


def test_every_seeded_order_gets_the_outcome_its_content_calls_for(
    seeded_orders: SeededOrders, demo_mapping: Mapping
):
    seen: Counter[str] = Counter()
    for store, orders in seeded_orders.items():
        demo_store = demo_data.store(store)
        for order in orders:
            reason, field = expected_outcome(order)
            outcome = build(order, store, demo_mapping)
            if reason == "draft":
                assert isinstance(outcome, InvoiceDraft), (order.name, outcome)
                assert_reconciles(outcome, order)
                assert outcome.header.site == demo_store.x3_site
                assert outcome.header.prices_include_tax is demo_store.taxes_included
                assert outcome.header.currency == demo_store.currency
                assert outcome.header.reference == invoice_reference(store, order)
            else:
                assert not isinstance(outcome, InvoiceDraft), order.name
                assert outcome.reason == reason, (order.name, outcome)
                if isinstance(outcome, MappingFailure):
                    assert outcome.field == field
            seen[reason] += 1
    # The seeded history holds every case at least once, so none of the branches above is vacuous.
    assert set(seen) == {
        "draft",
        SkipReason.TEST_ORDER,
        SkipReason.CANCELLED,
        FailureReason.GUEST_CHECKOUT,
        FailureReason.CUSTOMER_NOT_MATCHED,
        FailureReason.ITEM_NOT_MAPPED,
    }
    assert seen["draft"] >= 40


PERMISSIVE = """\
version: 1
defaults:
  site: FR011
  invoice_type: INV
  credit_memo_type: CRN
  include_test_orders: true
  guest_checkout: {customer: FR0001}
  accounts: {chart: CHART1, goods: "706000", shipping: "708500", discounts: "709000", receivable: "411000",
             tax: "445710", rounding: "706000"}
  taxes:
    - {title: VAT, rate: "0.20", code: FRN}
  untaxed: EXO
  items: {without_sku: SERVICE}
stores:
  us:
    site: US011
    guest_checkout: {customer: US0001}
    taxes:
      - {title: Sales tax, rate: "0.0825", code: US825}
"""


def test_every_seeded_order_that_is_not_cancelled_reconciles_to_the_cent(
    seeded_orders: SeededOrders, more_seeded_orders: SeededOrders
):
    mapping = parse_mapping(PERMISSIVE)
    rounding_lines: Counter[X3LineType] = Counter()
    kinds: Counter[LineKind] = Counter()
    tax_differences = 0
    for orders_by_store in (seeded_orders, more_seeded_orders):
        for store, orders in orders_by_store.items():
            for order in orders:
                outcome = build_invoice(order, store=store, customer_code="FR0002", mapping=mapping)
                if order.cancelled_at is not None:
                    assert isinstance(outcome, Skip)
                    continue
                assert isinstance(outcome, InvoiceDraft), (order.name, outcome)
                assert_reconciles(outcome, order)
                kinds.update(line.kind for line in outcome.lines)
                rounding_lines.update(
                    line.line_type for line in outcome.lines if line.kind is LineKind.ROUNDING
                )
                tax_differences += outcome.tax_rounding_difference != 0
                if outcome.header.prices_include_tax:
                    assert LineKind.ROUNDING not in {line.kind for line in outcome.lines}
    # Discounts, shipping and both directions of the X3 tax rounding were all exercised.
    assert {LineKind.GOODS, LineKind.DISCOUNT, LineKind.SHIPPING, LineKind.ROUNDING} <= set(kinds)
    assert rounding_lines[X3LineType.DISCOUNT] > 0
    assert rounding_lines[X3LineType.SHIPPING] > 0
    assert tax_differences > 0


def test_x3_accepts_every_seeded_draft_with_the_same_totals_and_gl_entry(
    seeded_orders: SeededOrders, more_seeded_orders: SeededOrders, demo_mapping: Mapping, x3_folder: X3Folder
):
    posted = 0
    for orders_by_store in (seeded_orders, more_seeded_orders):
        for store, orders in orders_by_store.items():
            for order in orders:
                draft = build(order, store, demo_mapping)
                if not isinstance(draft, InvoiceDraft):
                    continue
                saved = x3_folder.save_and_post(draft.to_x3_payload())
                assert saved.totals == (draft.totals.net, draft.totals.tax, draft.totals.gross), order.name
                assert saved.gl_lines == [
                    (g.account.account, g.dimensions.get("CCT", ""), g.debit, g.credit)
                    for g in draft.gl_lines()
                ], order.name
                posted += 1
    assert posted >= 200
