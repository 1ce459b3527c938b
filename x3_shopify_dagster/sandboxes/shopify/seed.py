"""Deterministic order generation: the seeded history, ad-hoc orders, traffic and bulk benchmark data.

Everything random comes from the ``random.Random`` handed in, so one seed always yields the same store.
The history plan puts one order of each interesting kind first (guest checkout, null e-mail, test order,
multi-currency, each discount kind, partial fulfilment, refunds, cancellations, a 65-line order, customers
missing or ambiguous in X3, a SKU unknown to X3, a custom line without SKU, a spurious updatedAt bump) and
fills the rest with ordinary random orders.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from x3_shopify_dagster.sandboxes.shopify import lifecycle
from x3_shopify_dagster.sandboxes.shopify.catalog import PRESENTMENT_RATES, IdAllocator, StoreData
from x3_shopify_dagster.sandboxes.shopify.models import Customer, Order, TrackingInfo, Variant
from x3_shopify_dagster.sandboxes.shopify.pricing import (
    SHIPPING_LINE,
    Cart,
    CartSpec,
    CatalogRef,
    DiscountSpec,
    LineSpec,
    ShippingSpec,
    build_cart,
)

BIG_ORDER_LINES = 65  # above the usual lineItems(first: 50) page, so nested paging is exercised

WELCOME10 = DiscountSpec("code", "WELCOME10", "percentage", Decimal("10"))
SAVE20 = DiscountSpec("code", "SAVE20", "fixed", Decimal("20.00"))
FREESHIP = DiscountSpec("code", "FREESHIP", "percentage", Decimal("100"), target_type=SHIPPING_LINE)
SHIPPING_5_OFF = DiscountSpec("automatic", "Shipping 5 off", "fixed", Decimal("5.00"),
                              target_type=SHIPPING_LINE)

_SHIPPING_RATES = {
    "EUR": (("Standard", "STD", Decimal("9.90")), ("Express", "EXP", Decimal("19.90")),
            ("Freight", "FRT", Decimal("49.00"))),
    "USD": (("Ground", "GND", Decimal("12.00")), ("2-Day", "2DY", Decimal("24.00")),
            ("Freight", "FRT", Decimal("55.00"))),
}
_CARRIERS = (("DHL Express", "https://www.dhl.com/track?AWB={}"), ("UPS", "https://www.ups.com/track?tracknum={}"),
             ("Colissimo", "https://www.laposte.fr/outils/suivre-vos-envois?code={}"))


def tracking_for(rng: random.Random) -> TrackingInfo:
    company, url = rng.choice(_CARRIERS)
    number = f"{rng.randrange(10**11, 10**12)}"
    return TrackingInfo(company=company, number=number, url=url.format(number))


@dataclass
class OrderPlan:
    """What to create and what happens to it afterwards, before any id or timestamp is fixed."""

    spec: CartSpec
    customer: Customer | None
    email: str | None
    presentment_currency: str | None = None
    test: bool = False
    source_name: str = "web"
    financial_status: str = "PAID"
    events: list[str] = field(default_factory=list)  # lifecycle steps, applied in order


class OrderFactory:
    def __init__(self, store: StoreData, ids: IdAllocator, rng: random.Random) -> None:
        self.store = store
        self.ids = ids
        self.rng = rng
        demo_customers = [c for c in store.customers if c.email]
        # Most orders come from the regular customers; the X3-problem customers appear but less often.
        self._weights = [1 if (c.email or "").endswith(("fresh-start.example", "lefevre-traiteur.example",
                                                         "shared-kitchen.example")) else 4
                         for c in demo_customers]
        self._customers = demo_customers

    # -- carts ----------------------------------------------------------------------------------------
    def line(self, variant: Variant, quantity: int) -> LineSpec:
        ref = CatalogRef(sku=variant.sku, title=variant.title, vendor=variant.vendor,
                         product_id=variant.product_id, variant_id=variant.variant_id,
                         inventory_item_id=variant.inventory_item_id)
        return LineSpec(item=ref, quantity=quantity, unit_price=variant.price)

    def shipping(self, kind: int = 0, *, taxable: bool | None = None) -> ShippingSpec:
        title, code, price = _SHIPPING_RATES[self.store.currency][kind]
        if taxable is None:
            # VAT applies to shipping in the EU store; most US states do not tax shipping.
            taxable = self.store.demo.taxes_included
        return ShippingSpec(title=title, code=code, price=price, taxable=taxable)

    def price(self, spec: CartSpec, presentment_currency: str | None = None) -> Cart:
        demo = self.store.demo
        rate = None
        if presentment_currency and presentment_currency != demo.currency:
            rate = PRESENTMENT_RATES[demo.currency][presentment_currency]
        return build_cart(spec, currency=demo.currency, presentment_currency=presentment_currency or demo.currency,
                          presentment_rate=rate, taxes_included=demo.taxes_included, tax_title=demo.tax_title,
                          tax_rate=demo.tax_rate)

    def random_lines(self, count: int | None = None) -> list[LineSpec]:
        rng = self.rng
        count = count or rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        variants = rng.sample(list(self.store.variants), k=min(count, len(self.store.variants)))
        return [self.line(v, 1 if v.price > 300 else rng.randint(1, 3)) for v in variants]

    def random_customer(self) -> Customer:
        return self.rng.choices(self._customers, weights=self._weights, k=1)[0]

    def random_plan(self) -> OrderPlan:
        rng = self.rng
        lines = self.random_lines()
        heavy = any(line.unit_price > 1000 for line in lines)
        shipping = (self.shipping(2 if heavy else rng.choice((0, 0, 0, 1))),) if rng.random() < 0.92 else ()
        discounts: list[DiscountSpec] = []
        roll = rng.random()
        if roll < 0.12:
            discounts.append(WELCOME10)
        elif roll < 0.18:
            discounts.append(SAVE20)
        if rng.random() < 0.08 and shipping:
            discounts.append(FREESHIP)
        customer = self.random_customer()
        guest = rng.random() < 0.1
        plan = OrderPlan(
            spec=CartSpec(lines=tuple(lines), shipping=shipping, discounts=tuple(discounts)),
            customer=None if guest else customer, email=customer.email,
            test=rng.random() < 0.03,
            financial_status=rng.choices(("PAID", "PENDING", "AUTHORIZED"), weights=(85, 10, 5), k=1)[0])
        if plan.financial_status == "PAID":
            roll = rng.random()
            if roll < 0.55:
                plan.events.append("fulfil")
                if rng.random() < 0.12:
                    plan.events.append("refund_line")
            elif roll < 0.65:
                plan.events.append("fulfil_partial")
            elif roll < 0.70:
                plan.events.append("cancel")
        elif plan.financial_status == "PENDING" and rng.random() < 0.3:
            plan.events.append("pay")
        return plan

    # -- the showcase plans -------------------------------------------------------------------------------
    def showcase_plans(self) -> list[tuple[str, Callable[[], OrderPlan]]]:
        """One order of each kind worth testing against, most important first."""
        store = self.store

        def variant(sku: str) -> Variant:
            found = store.variant_by_sku(sku)
            assert found is not None, sku
            return found

        def plan(lines: Sequence[LineSpec], *, shipping: Sequence[ShippingSpec] | None = None,
                 discounts: Sequence[DiscountSpec] = (), customer: Customer | str | None = "random",
                 email: str | None = "customer", **kwargs: object) -> OrderPlan:
            chosen = self.random_customer() if customer == "random" else customer
            assert not isinstance(chosen, str)
            mail = (chosen.email if chosen else None) if email == "customer" else email
            ship = (self.shipping(0),) if shipping is None else tuple(shipping)
            return OrderPlan(spec=CartSpec(tuple(lines), ship, tuple(discounts)), customer=chosen, email=mail,
                             **kwargs)  # type: ignore[arg-type]

        def big() -> OrderPlan:
            lines = [self.line(self.rng.choice(store.variants[2:]), self.rng.randint(1, 2))
                     for _ in range(BIG_ORDER_LINES)]
            return plan(lines, shipping=[self.shipping(2)], events=["fulfil_partial"])

        grinder, cups, beans = variant("ESP-GRINDER-01"), variant("CUP-PORC-6"), variant("BEANS-HOUSE-1KG")
        decaf, tamper, jug = variant("BEANS-DECAF-1KG"), variant("TAMPER-58"), variant("MILK-JUG-35")
        line_auto = DiscountSpec("automatic", "Beans bundle 5%", "percentage", Decimal("5"),
                                 target_selection="ENTITLED", line_positions=(0, 1))
        manual_each = DiscountSpec("manual", "Staff discount", "fixed", Decimal("2.00"),
                                   target_selection="EXPLICIT", allocation_method="EACH", line_positions=(1,),
                                   description="Loyal customer")
        grinder_code = DiscountSpec("code", "GRINDER15", "percentage", Decimal("15"),
                                    target_selection="ENTITLED", line_positions=(0,))
        multi = next(iter(PRESENTMENT_RATES[store.currency]))
        custom_item = LineSpec(item=CatalogRef(sku=None, title="Custom engraving", vendor="Acme Coffee Supply",
                                               product_id=None, variant_id=None, inventory_item_id=None),
                               quantity=1, unit_price=Decimal("15.00"), requires_shipping=False)
        ambiguous = store.customer_by_email("orders@shared-kitchen.example")
        missing = store.customer_by_email("new.buyer@fresh-start.example")
        gift_wrap = variant("GIFT-WRAP")
        return [
            ("big_order", big),
            ("guest_checkout", lambda: plan([self.line(cups, 2)], customer=None,
                                            email="walk.in@guest-buyer.example", events=["fulfil"])),
            ("null_email", lambda: plan([self.line(jug, 1)], customer=None, email=None, shipping=[],
                                        source_name="pos")),
            ("test_order", lambda: plan([self.line(tamper, 1)], test=True)),
            ("multi_currency", lambda: plan([self.line(beans, 3), self.line(cups, 1)],
                                            presentment_currency=multi, discounts=[WELCOME10],
                                            events=["fulfil"])),
            ("order_discount_code", lambda: plan([self.line(grinder, 1), self.line(beans, 2)],
                                                 discounts=[WELCOME10], events=["fulfil"])),
            ("line_discounts", lambda: plan([self.line(beans, 3), self.line(decaf, 2), self.line(cups, 1)],
                                            discounts=[line_auto, manual_each, SAVE20])),
            ("line_discount_code", lambda: plan([self.line(grinder, 1), self.line(tamper, 1)],
                                                discounts=[grinder_code])),
            ("free_shipping", lambda: plan([self.line(beans, 2)], discounts=[FREESHIP])),
            ("shipping_discount_taxed", lambda: plan([self.line(cups, 3)],
                                                     shipping=[self.shipping(1, taxable=True)],
                                                     discounts=[SHIPPING_5_OFF])),
            ("partial_fulfilment", lambda: plan([self.line(beans, 3), self.line(jug, 2)],
                                                events=["fulfil_partial"])),
            ("delivered", lambda: plan([self.line(tamper, 2)], events=["fulfil_delivered"])),
            ("partial_refund", lambda: plan([self.line(beans, 3), self.line(cups, 2)],
                                            events=["fulfil", "refund_line"])),
            ("refund_with_shipping", lambda: plan([self.line(decaf, 2)], events=["fulfil", "refund_all"])),
            ("partial_shipping_refund", lambda: plan([self.line(jug, 2)], events=["refund_shipping_part"])),
            ("cancelled_paid", lambda: plan([self.line(grinder, 1)], events=["cancel"])),
            ("cancelled_unpaid", lambda: plan([self.line(cups, 1)], financial_status="PENDING",
                                              events=["cancel"])),
            ("pending_payment", lambda: plan([self.line(beans, 1)], financial_status="PENDING")),
            ("customer_ambiguous_in_x3", lambda: plan([self.line(jug, 1)], customer=ambiguous)),
            ("customer_missing_in_x3", lambda: plan([self.line(beans, 2)], customer=missing)),
            ("sku_unknown_to_x3", lambda: plan([self.line(cups, 1), self.line(gift_wrap, 1)])),
            ("custom_line_without_sku", lambda: plan([self.line(tamper, 1), custom_item])),
            ("touched", lambda: plan([self.line(cups, 1)], events=["fulfil", "touch"])),
        ]

    # -- building orders ---------------------------------------------------------------------------------
    def create(self, plan: OrderPlan, created_at: datetime, cart: Cart | None = None) -> Order:
        store = self.store
        order_id = self.ids.next("Order")
        number = store.next_order_number
        store.next_order_number += 1
        return Order(
            store=store.key, legacy_id=order_id, number=number, customer=plan.customer, email=plan.email,
            created_at=created_at, processed_at=created_at, updated_at=created_at,
            cart=cart or self.price(plan.spec, plan.presentment_currency),
            financial_status=plan.financial_status, test=plan.test, source_name=plan.source_name)

    def apply_event(self, order: Order, event: str, at: datetime) -> Order:
        rng, store = self.rng, self.store
        location = store.default_location.legacy_id
        if event == "pay":
            return lifecycle.mark_paid(order, at)
        if event == "touch":
            return lifecycle.touch(order, at)
        if event in ("fulfil", "fulfil_delivered"):
            return lifecycle.fulfil(order, at, fulfillment_id=self.ids.next("Fulfillment"), location_id=location,
                                    tracking=tracking_for(rng), delivered=event == "fulfil_delivered")
        if event == "fulfil_partial":
            first = order.cart.lines[0]
            lines = [(first.position, max(1, first.quantity - 1))] if len(order.cart.lines) == 1 else [
                (line.position, line.quantity) for line in order.cart.lines[: max(1, len(order.cart.lines) // 2)]]
            return lifecycle.fulfil(order, at, fulfillment_id=self.ids.next("Fulfillment"), location_id=location,
                                    lines=lines, tracking=tracking_for(rng))
        if event == "refund_line":
            line = order.cart.lines[0]
            return lifecycle.refund(order, at, refund_id=self.ids.next("Refund"),
                                    lines=[(line.position, 1)], restock_type="RETURN", location_id=location,
                                    note="Damaged in transit")
        if event == "refund_all":
            lines = [(line.position, order.current_quantity(line.position)) for line in order.cart.lines]
            return lifecycle.refund(order, at, refund_id=self.ids.next("Refund"), lines=lines, shipping=True,
                                    restock_type="RETURN", location_id=location, note="Returned")
        if event == "refund_shipping_part":
            return lifecycle.refund(order, at, refund_id=self.ids.next("Refund"), shipping=Decimal("4.00"),
                                    note="Late delivery goodwill")
        if event == "cancel":
            return lifecycle.cancel(order, at, refund_id=self.ids.next("Refund"),
                                    reason=rng.choice(("CUSTOMER", "INVENTORY", "DECLINED")),
                                    location_id=location)
        raise ValueError(f"unknown lifecycle event {event!r}")


def _seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def seed_history(factory: OrderFactory, count: int, now: datetime, history_days: int) -> list[Order]:
    """``count`` orders created over the last ``history_days`` days, each with its lifecycle played out."""
    rng = factory.rng
    window = history_days * 86400 - 600
    created = sorted(_seconds(now - timedelta(seconds=rng.randint(600, max(601, window)))) for _ in range(count))
    showcase = factory.showcase_plans()
    kinds: list[Callable[[], OrderPlan] | None] = [builder for _, builder in showcase[:count]]
    kinds += [None] * (count - len(kinds))
    rng.shuffle(kinds)
    orders = []
    for created_at, builder in zip(created, kinds, strict=True):
        plan = builder() if builder else factory.random_plan()
        order = factory.create(plan, created_at)
        span = (now - created_at).total_seconds()
        for step, event in enumerate(plan.events, start=1):
            # Events land between creation and now, in order, never in the future.
            fraction = (step + rng.random()) / (len(plan.events) + 1.5)
            order = factory.apply_event(order, event, _seconds(created_at + timedelta(seconds=span * fraction)))
        orders.append(order)
    if len(orders) >= 4:
        # Two orders changed within the same second: ordering must fall back to the id.
        first, second = rng.sample(range(len(orders)), k=2)
        same = max(orders[first].updated_at, orders[second].updated_at)
        orders[first] = lifecycle.touch(orders[first], same)
        orders[second] = lifecycle.touch(orders[second], same)
    return orders


def bulk_orders(factory: OrderFactory, count: int, now: datetime, history_days: int,
                templates: int = 48) -> list[Order]:
    """Many plain paid orders, fast: carts are priced once per template and shared between orders."""
    rng = factory.rng
    carts = []
    for _ in range(templates):
        plan = factory.random_plan()
        carts.append(factory.price(plan.spec))
    customers = list(factory.store.customers)
    window = history_days * 86400
    offsets = sorted((rng.randrange(60, window) for _ in range(count)), reverse=True)
    store, ids = factory.store, factory.ids
    template = Order(store=store.key, legacy_id=0, number=0, customer=None, email=None, created_at=now,
                     processed_at=now, updated_at=now, cart=carts[0], financial_status="PAID")
    replace = dataclasses.replace
    orders = []
    for offset in offsets:
        customer = customers[rng.randrange(len(customers))]
        moment = _seconds(now - timedelta(seconds=offset))
        number = store.next_order_number
        store.next_order_number += 1
        orders.append(replace(template, legacy_id=ids.next("Order"), number=number, customer=customer,
                              email=customer.email, created_at=moment, processed_at=moment, updated_at=moment,
                              cart=carts[rng.randrange(templates)]))
    return orders
