"""Prices an order the way Shopify reports it, consistent to the cent in both currencies.

Rules (Shopify's field descriptions in the 2026-07 schema, plus the choices the sandbox makes where Shopify
does not document the arithmetic):

* Line-level discounts (target selection ENTITLED/EXPLICIT) apply first, then order-level discounts
  (target selection ALL on LINE_ITEM) on what remains, split across lines in proportion to their remaining
  amount; the rounding residue goes to the largest line so allocations always sum to the discount exactly.
  Shipping discounts (target type SHIPPING_LINE) apply to shipping lines only.
* Every line carries ``discountAllocations`` for *all* discounts that touched it (order-level shares too), as
  Shopify does. ``totalDiscountSet`` and ``discountedTotalSet`` leave order-level discounts out;
  ``discountedTotalSet`` also leaves code discounts out unless ``withCodeDiscounts: true``.
* Tax is computed per line (and per shipping line) on the amount after all its discounts, rounded half-up to
  the cent per line. With ``taxesIncluded`` the tax is the included part: ``amount * rate / (1 + rate)``.
* Order totals: ``subtotal = sum  line originals - line discounts - order discounts`` (tax-inclusive when taxes
  are included); ``totalShipping = sum  shipping originals`` (before discounts); ``totalDiscounts = line + order +
  shipping discounts``; ``total = sum  line originals - totalDiscounts + totalShipping + tax (when excluded)``.
* Presentment money is priced independently from atomic inputs converted at a fixed rate (unit prices,
  fixed discount values and shipping prices, each rounded to the cent), so each currency reconciles on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from x3_shopify_dagster.sandboxes.shopify.money import ZERO, MoneyBag, to_cents

LINE_ITEM = "LINE_ITEM"
SHIPPING_LINE = "SHIPPING_LINE"
ORDER_LEVEL = "ALL"


@dataclass(frozen=True, slots=True)
class CatalogRef:
    """What a line item points at in the catalog; ``None`` ids for custom (non-catalog) items."""

    sku: str | None
    title: str
    vendor: str
    product_id: int | None
    variant_id: int | None
    inventory_item_id: int | None


@dataclass(frozen=True, slots=True)
class LineSpec:
    item: CatalogRef
    quantity: int
    unit_price: Decimal  # shop currency
    taxable: bool = True
    requires_shipping: bool = True


@dataclass(frozen=True, slots=True)
class ShippingSpec:
    title: str
    code: str
    price: Decimal  # shop currency
    taxable: bool
    source: str = "shopify"


@dataclass(frozen=True, slots=True)
class DiscountSpec:
    kind: str  # "code" | "automatic" | "manual"
    label: str  # the code, or the title of an automatic/manual discount
    value_type: str  # "percentage" | "fixed"
    value: Decimal  # percent (10 = 10 %) or a fixed amount in the shop currency
    target_type: str = LINE_ITEM
    target_selection: str = ORDER_LEVEL  # ALL (order level) | ENTITLED | EXPLICIT
    allocation_method: str = "ACROSS"  # ACROSS | EACH
    line_positions: tuple[int, ...] = ()  # the lines an ENTITLED/EXPLICIT discount targets
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CartSpec:
    lines: tuple[LineSpec, ...]
    shipping: tuple[ShippingSpec, ...] = ()
    discounts: tuple[DiscountSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class TaxLine:
    title: str
    rate: Decimal
    price: MoneyBag
    channel_liable: bool = False


@dataclass(frozen=True, slots=True)
class DiscountApplication:
    index: int
    spec: DiscountSpec
    value_amount: Decimal | None  # fixed discounts: the value in presentment currency
    value_currency: str

    @property
    def is_code(self) -> bool:
        return self.spec.kind == "code"

    @property
    def is_order_level(self) -> bool:
        return self.spec.target_type == LINE_ITEM and self.spec.target_selection == ORDER_LEVEL


@dataclass(frozen=True, slots=True)
class DiscountAllocation:
    application: DiscountApplication
    amount: MoneyBag


@dataclass(frozen=True, slots=True)
class CartLine:
    position: int
    item: CatalogRef
    quantity: int
    taxable: bool
    requires_shipping: bool
    original_unit_price: MoneyBag
    original_total: MoneyBag
    allocations: tuple[DiscountAllocation, ...]
    line_level_discount: MoneyBag  # totalDiscountSet: line-level allocations only
    line_level_discount_without_codes: MoneyBag
    net_total: MoneyBag  # after every discount, the amount tax is computed on
    tax_lines: tuple[TaxLine, ...]

    @property
    def tax(self) -> MoneyBag:
        return self.tax_lines[0].price if self.tax_lines else self.original_total - self.original_total


@dataclass(frozen=True, slots=True)
class CartShippingLine:
    position: int
    title: str
    code: str
    source: str
    original_price: MoneyBag
    allocations: tuple[DiscountAllocation, ...]
    discounted_price: MoneyBag
    tax_lines: tuple[TaxLine, ...]

    @property
    def tax(self) -> MoneyBag:
        return self.tax_lines[0].price if self.tax_lines else self.original_price - self.original_price


@dataclass(frozen=True, slots=True)
class Cart:
    """A fully priced order content; immutable and shareable between orders (bulk seeding relies on it)."""

    currency: str
    presentment_currency: str
    taxes_included: bool
    lines: tuple[CartLine, ...]
    shipping_lines: tuple[CartShippingLine, ...]
    discount_applications: tuple[DiscountApplication, ...]
    line_items_subtotal: MoneyBag
    subtotal: MoneyBag
    total_shipping: MoneyBag
    shipping_discounts: MoneyBag
    total_discounts: MoneyBag
    total_tax: MoneyBag
    total_price: MoneyBag
    tax_lines: tuple[TaxLine, ...] = field(default=())


@dataclass(slots=True)
class _PricedLine:
    original_unit: Decimal
    original_total: Decimal
    allocations: dict[int, Decimal]
    tax: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.original_total - sum(self.allocations.values(), ZERO)


def split_proportionally(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``total`` (cents) in proportion to ``weights``; the residue goes to the largest weight."""
    weight_sum = sum(weights, ZERO)
    if weight_sum <= 0:
        return [ZERO for _ in weights]
    shares = [to_cents(total * weight / weight_sum) for weight in weights]
    residue = total - sum(shares, ZERO)
    if residue:
        largest = max(range(len(weights)), key=lambda i: weights[i])
        shares[largest] += residue
    return shares


def _tax(amount: Decimal, rate: Decimal, taxes_included: bool) -> Decimal:
    if taxes_included:
        return to_cents(amount * rate / (1 + rate))
    return to_cents(amount * rate)


def _price_one_currency(spec: CartSpec, convert: Decimal | None, taxes_included: bool,
                        tax_rate: Decimal) -> tuple[list[_PricedLine], list[_PricedLine]]:
    def atomic(amount: Decimal) -> Decimal:
        return amount if convert is None else to_cents(amount * convert)

    lines = [_PricedLine(atomic(s.unit_price), atomic(s.unit_price) * s.quantity, {}) for s in spec.lines]
    shipping = [_PricedLine(atomic(s.price), atomic(s.price), {}) for s in spec.shipping]
    ordered = sorted(enumerate(spec.discounts), key=lambda item: _discount_stage(item[1]))
    for index, discount in ordered:
        if discount.target_type == SHIPPING_LINE:
            _allocate(shipping, range(len(shipping)), index, discount, atomic, quantities=None)
        elif discount.target_selection == ORDER_LEVEL:
            _allocate(lines, range(len(lines)), index, discount, atomic, quantities=None)
        else:
            quantities = [spec.lines[i].quantity for i in range(len(spec.lines))]
            _allocate(lines, discount.line_positions, index, discount, atomic, quantities=quantities)
    for priced, line_spec in zip(lines, spec.lines, strict=True):
        priced.tax = _tax(priced.remaining, tax_rate, taxes_included) if line_spec.taxable else ZERO
    for priced, ship_spec in zip(shipping, spec.shipping, strict=True):
        priced.tax = _tax(priced.remaining, tax_rate, taxes_included) if ship_spec.taxable else ZERO
    return lines, shipping


def _discount_stage(discount: DiscountSpec) -> int:
    # Line-level discounts first, order-level on what remains; shipping discounts are independent.
    if discount.target_type == SHIPPING_LINE:
        return 2
    return 1 if discount.target_selection == ORDER_LEVEL else 0


def _allocate(targets: list[_PricedLine], positions: Sequence[int], index: int, discount: DiscountSpec,
              atomic: Callable[[Decimal], Decimal], quantities: list[int] | None) -> None:
    chosen = [p for p in positions if 0 <= p < len(targets)]
    if not chosen:
        return
    remaining = [targets[p].remaining for p in chosen]
    if discount.value_type == "percentage" and discount.target_selection == ORDER_LEVEL \
            and discount.target_type == LINE_ITEM:
        # An order-level percentage is computed on the order, then spread over the lines.
        amounts = split_proportionally(to_cents(sum(remaining, ZERO) * discount.value / 100), remaining)
    elif discount.value_type == "percentage":
        amounts = [to_cents(r * discount.value / 100) for r in remaining]
    elif discount.allocation_method == "EACH" and quantities is not None:
        value = atomic(discount.value)
        amounts = [min(value * quantities[p], r) for p, r in zip(chosen, remaining, strict=True)]
    else:
        value = atomic(discount.value)
        amounts = split_proportionally(min(value, sum(remaining, ZERO)), remaining)
    for position, amount in zip(chosen, amounts, strict=True):
        if amount > 0:
            targets[position].allocations[index] = amount


def build_cart(spec: CartSpec, *, currency: str, presentment_currency: str, presentment_rate: Decimal | None,
               taxes_included: bool, tax_title: str, tax_rate: Decimal) -> Cart:
    """Price ``spec`` in the shop currency and (independently) in the presentment currency."""
    shop_lines, shop_shipping = _price_one_currency(spec, None, taxes_included, tax_rate)
    if presentment_rate is None:
        pres_lines, pres_shipping = shop_lines, shop_shipping
    else:
        pres_lines, pres_shipping = _price_one_currency(spec, presentment_rate, taxes_included, tax_rate)

    def bag(shop_amount: Decimal, presentment_amount: Decimal) -> MoneyBag:
        return MoneyBag.of(shop_amount, currency, presentment_amount, presentment_currency)

    applications = tuple(
        DiscountApplication(
            index=i, spec=d,
            value_amount=None if d.value_type == "percentage" else (
                d.value if presentment_rate is None else to_cents(d.value * presentment_rate)),
            value_currency=presentment_currency)
        for i, d in enumerate(spec.discounts))

    def allocations(shop: _PricedLine, pres: _PricedLine) -> tuple[DiscountAllocation, ...]:
        return tuple(DiscountAllocation(applications[i], bag(amount, pres.allocations.get(i, ZERO)))
                     for i, amount in sorted(shop.allocations.items()))

    def tax_lines(shop_tax: Decimal, pres_tax: Decimal, taxable: bool) -> tuple[TaxLine, ...]:
        return (TaxLine(tax_title, tax_rate, bag(shop_tax, pres_tax)),) if taxable else ()

    lines: list[CartLine] = []
    for position, (line_spec, shop, pres) in enumerate(zip(spec.lines, shop_lines, pres_lines, strict=True)):
        line_allocs = allocations(shop, pres)
        line_level = [a for a in line_allocs if not a.application.is_order_level]
        zero = bag(ZERO, ZERO)
        lines.append(CartLine(
            position=position, item=line_spec.item, quantity=line_spec.quantity, taxable=line_spec.taxable,
            requires_shipping=line_spec.requires_shipping,
            original_unit_price=bag(shop.original_unit, pres.original_unit),
            original_total=bag(shop.original_total, pres.original_total),
            allocations=line_allocs,
            line_level_discount=sum((a.amount for a in line_level), zero),
            line_level_discount_without_codes=sum((a.amount for a in line_level if not a.application.is_code),
                                                  zero),
            net_total=bag(shop.remaining, pres.remaining),
            tax_lines=tax_lines(shop.tax, pres.tax, line_spec.taxable),
        ))
    shipping_lines = tuple(
        CartShippingLine(
            position=position, title=s.title, code=s.code, source=s.source,
            original_price=bag(shop.original_total, pres.original_total),
            allocations=allocations(shop, pres),
            discounted_price=bag(shop.remaining, pres.remaining),
            tax_lines=tax_lines(shop.tax, pres.tax, s.taxable))
        for position, (s, shop, pres) in enumerate(zip(spec.shipping, shop_shipping, pres_shipping,
                                                        strict=True)))
    return _with_totals(currency, presentment_currency, taxes_included, tuple(lines), shipping_lines,
                        applications, tax_title, tax_rate)


def _with_totals(currency: str, presentment_currency: str, taxes_included: bool, lines: tuple[CartLine, ...],
                 shipping_lines: tuple[CartShippingLine, ...], applications: tuple[DiscountApplication, ...],
                 tax_title: str, tax_rate: Decimal) -> Cart:
    zero = MoneyBag.zero(currency, presentment_currency)
    line_items_subtotal = sum((line.original_total for line in lines), zero)
    line_discounts = sum((a.amount for line in lines for a in line.allocations), zero)
    subtotal = line_items_subtotal - line_discounts
    total_shipping = sum((s.original_price for s in shipping_lines), zero)
    shipping_discounts = sum((a.amount for s in shipping_lines for a in s.allocations), zero)
    total_tax = sum((line.tax for line in lines), zero) + sum((s.tax for s in shipping_lines), zero)
    total_discounts = line_discounts + shipping_discounts
    total_price = line_items_subtotal - total_discounts + total_shipping
    if not taxes_included:
        total_price = total_price + total_tax
    has_tax = any(line.tax_lines for line in lines) or any(s.tax_lines for s in shipping_lines)
    order_tax_lines = (TaxLine(tax_title, tax_rate, total_tax),) if has_tax else ()
    return Cart(
        currency=currency, presentment_currency=presentment_currency, taxes_included=taxes_included,
        lines=lines, shipping_lines=shipping_lines, discount_applications=applications,
        line_items_subtotal=line_items_subtotal, subtotal=subtotal, total_shipping=total_shipping,
        shipping_discounts=shipping_discounts, total_discounts=total_discounts, total_tax=total_tax,
        total_price=total_price, tax_lines=order_tax_lines)


def cumulative_share(total: Decimal, done: Decimal, of: Decimal) -> Decimal:
    """The cent-rounded part of ``total`` that corresponds to ``done`` out of ``of`` (exact when done == of).

    Refunds use differences of cumulative shares, so refunding a line in several steps adds up exactly.
    """
    if of <= 0:
        return ZERO
    if done >= of:
        return total
    return to_cents(total * done / of)
