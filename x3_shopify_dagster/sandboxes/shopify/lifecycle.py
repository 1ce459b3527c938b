"""What happens to an order after checkout: payment, fulfilments, refunds, cancellation.

Pure functions from one immutable :class:`Order` to the next, so the seeder, the traffic generator and the
state helpers share the exact same rules. Refund amounts are differences of cumulative shares of the line's
net amount and tax, so refunding a line in several steps adds up to the line exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from x3_shopify_dagster.sandboxes.shopify.models import (
    Fulfillment,
    FulfillmentLine,
    Order,
    Refund,
    RefundLine,
    RefundShipping,
    TrackingInfo,
)
from x3_shopify_dagster.sandboxes.shopify.money import ZERO, MoneyBag
from x3_shopify_dagster.sandboxes.shopify.pricing import cumulative_share

PAID_STATES = ("PAID", "PARTIALLY_REFUNDED")
SETTLED_STATES = ("PAID", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED")


class LifecycleError(ValueError):
    """The requested change is not possible for the order's current state."""


def _changed(order: Order, now: datetime, **changes: object) -> Order:
    updated = dataclasses.replace(order, updated_at=now, version=order.version + 1, **changes)
    return _maybe_close(updated, now)


def _maybe_close(order: Order, now: datetime) -> Order:
    if order.closed_at is not None:
        return order
    nothing_left = all(order.fulfillable_quantity(line.position) == 0 for line in order.cart.lines)
    if nothing_left and order.financial_status in SETTLED_STATES:
        return dataclasses.replace(order, closed_at=now)
    return order


def touch(order: Order, now: datetime) -> Order:
    """Shopify bumps ``updatedAt`` for changes the API does not show (risk analysis, metafields...)."""
    return dataclasses.replace(order, updated_at=now)


def mark_paid(order: Order, now: datetime) -> Order:
    if order.financial_status not in ("PENDING", "AUTHORIZED"):
        raise LifecycleError(f"order {order.name} is {order.financial_status}, not awaiting payment")
    if order.cancelled_at is not None:
        raise LifecycleError(f"order {order.name} is cancelled")
    return _changed(order, now, financial_status="PAID")


def fulfil(order: Order, now: datetime, *, fulfillment_id: int, location_id: int | None,
           lines: Sequence[tuple[int, int]] | None = None, tracking: TrackingInfo | None = None,
           delivered: bool = False) -> Order:
    """Ship ``lines`` as (position, quantity) pairs, or everything still fulfillable."""
    if order.cancelled_at is not None:
        raise LifecycleError(f"order {order.name} is cancelled")
    if lines is None:
        wanted = [(line.position, order.fulfillable_quantity(line.position)) for line in order.cart.lines]
    else:
        wanted = [(position, min(quantity, order.fulfillable_quantity(position))) for position, quantity in lines]
    shipped = tuple(FulfillmentLine(position, quantity) for position, quantity in wanted if quantity > 0)
    if not shipped:
        raise LifecycleError(f"order {order.name} has nothing left to fulfil")
    display_status = "DELIVERED" if delivered else "IN_TRANSIT" if tracking and tracking.number else "FULFILLED"
    fulfillment = Fulfillment(
        legacy_id=fulfillment_id, sequence=len(order.fulfillments) + 1, created_at=now, updated_at=now,
        status="SUCCESS", display_status=display_status, location_id=location_id,
        tracking=(tracking,) if tracking else (), lines=shipped, delivered_at=now if delivered else None)
    return _changed(order, now, fulfillments=(*order.fulfillments, fulfillment))


def change_fulfillment(order: Order, now: datetime, fulfillment_id: int, *, cancel: bool = False,
                       tracking: TrackingInfo | None = None) -> Order:
    """Cancel a fulfilment or replace its tracking: the fulfilment's ``updatedAt`` moves, the order's does not.

    That is the case the connector must survive (shopify-admin-api.md §5): fulfilment changes that do not bump
    ``Order.updatedAt``. They show in the fulfilment's own ``updatedAt`` and its fulfilment order's.
    """
    target = next((f for f in order.fulfillments if f.legacy_id == fulfillment_id), None)
    if target is None:
        raise LifecycleError(f"order {order.name} has no fulfillment {fulfillment_id}")
    if target.status == "CANCELLED":
        raise LifecycleError(f"fulfillment {order.name}.{target.sequence} is cancelled")
    changes: dict[str, object] = {"updated_at": now}
    if cancel:
        changes.update(status="CANCELLED", display_status="CANCELED")
    if tracking is not None:
        changes["tracking"] = (tracking,)
        if not cancel and target.display_status == "FULFILLED" and tracking.number:
            changes["display_status"] = "IN_TRANSIT"
    changed = dataclasses.replace(target, **changes)  # type: ignore[arg-type]
    fulfillments = tuple(changed if f.legacy_id == fulfillment_id else f for f in order.fulfillments)
    reopened = dataclasses.replace(order, fulfillments=fulfillments, version=order.version + 1)
    if cancel and reopened.closed_at is not None and reopened.cancelled_at is None:
        reopened = dataclasses.replace(reopened, closed_at=None)  # units to ship again: the order reopens
    return reopened


def refund(order: Order, now: datetime, *, refund_id: int, lines: Sequence[tuple[int, int]] = (),
           shipping: bool | Decimal = False, restock_type: str = "RETURN", location_id: int | None = None,
           note: str | None = None) -> Order:
    """Refund ``lines`` as (position, quantity) pairs, and shipping: all that is left (True) or an amount."""
    if order.financial_status not in PAID_STATES:
        raise LifecycleError(f"order {order.name} is {order.financial_status}; only paid orders are refunded")
    refund_lines = tuple(_refund_line(order, position, quantity, restock_type, location_id)
                         for position, quantity in lines if quantity > 0)
    refund_shipping = tuple(part for part in (_refund_shipping(order, s.position, shipping)
                                              for s in order.cart.shipping_lines) if part is not None)
    if not refund_lines and not refund_shipping:
        raise LifecycleError(f"refund of order {order.name} would refund nothing")
    zero = MoneyBag.zero(order.cart.currency, order.cart.presentment_currency)
    total = zero
    for part in (*refund_lines, *refund_shipping):
        total = total + part.subtotal
        if not order.cart.taxes_included:
            total = total + part.tax
    new_refund = Refund(legacy_id=refund_id, created_at=now, note=note, lines=refund_lines,
                        shipping=refund_shipping, total=total)
    refunded = (*order.refunds, new_refund)
    refunded_total = sum((r.total.shop.amount for r in refunded), ZERO)
    status = "REFUNDED" if refunded_total >= order.cart.total_price.shop.amount else "PARTIALLY_REFUNDED"
    return _changed(order, now, refunds=refunded, financial_status=status)


def cancel(order: Order, now: datetime, *, refund_id: int, reason: str = "CUSTOMER",
           location_id: int | None = None) -> Order:
    """Cancel; a paid order is refunded in full (unshipped units restocked), an unpaid one is voided."""
    if order.cancelled_at is not None:
        raise LifecycleError(f"order {order.name} is already cancelled")
    if order.financial_status in PAID_STATES:
        lines = [(line.position, order.current_quantity(line.position)) for line in order.cart.lines
                 if order.current_quantity(line.position) > 0]
        shipping_left = any(s.discounted_price.shop.amount > order.refunded_shipping_for(s.position)[0].shop.amount
                            for s in order.cart.shipping_lines)
        if lines or shipping_left:
            order = refund(order, now, refund_id=refund_id, lines=lines, shipping=True, restock_type="CANCEL",
                           location_id=location_id, note=f"Order cancelled ({reason.lower()})")
        status = order.financial_status
    elif order.financial_status in ("PENDING", "AUTHORIZED"):
        status = "VOIDED"
    else:
        status = order.financial_status
    return _changed(order, now, cancelled_at=now, cancel_reason=reason, closed_at=now,
                    financial_status=status)


def _refund_line(order: Order, position: int, quantity: int, restock_type: str,
                 location_id: int | None) -> RefundLine:
    if not 0 <= position < len(order.cart.lines):
        raise LifecycleError(f"order {order.name} has no line item at position {position}")
    line = order.cart.lines[position]
    before = order.refunded_quantity(position)
    if quantity > line.quantity - before:
        raise LifecycleError(f"cannot refund {quantity} of {line.item.sku or line.item.title}: "
                             f"only {line.quantity - before} left on {order.name}")
    after = before + quantity

    def part(bag: MoneyBag) -> MoneyBag:
        return MoneyBag.of(
            cumulative_share(bag.shop.amount, Decimal(after), Decimal(line.quantity))
            - cumulative_share(bag.shop.amount, Decimal(before), Decimal(line.quantity)),
            bag.shop.currency_code,
            cumulative_share(bag.presentment.amount, Decimal(after), Decimal(line.quantity))
            - cumulative_share(bag.presentment.amount, Decimal(before), Decimal(line.quantity)),
            bag.presentment.currency_code)

    restocks = restock_type in ("RETURN", "CANCEL", "LEGACY_RESTOCK")
    return RefundLine(line_position=position, quantity=quantity, restock_type=restock_type,
                      location_id=location_id if restocks else None, subtotal=part(line.net_total),
                      tax=part(line.tax))


def _refund_shipping(order: Order, position: int, shipping: bool | Decimal) -> RefundShipping | None:
    if shipping is False:
        return None
    line = order.cart.shipping_lines[position]
    price, tax = line.discounted_price, line.tax
    done_subtotal, done_tax = order.refunded_shipping_for(position)
    left = price.shop.amount - done_subtotal.shop.amount
    if left <= 0:
        return None
    wanted = left if shipping is True else min(Decimal(shipping), left)
    if wanted <= 0:
        return None
    cumulative = done_subtotal.shop.amount + wanted
    of = price.shop.amount

    def upto(total: Decimal) -> Decimal:
        return cumulative_share(total, cumulative, of)

    subtotal = MoneyBag.of(cumulative - done_subtotal.shop.amount, price.shop.currency_code,
                           upto(price.presentment.amount) - done_subtotal.presentment.amount,
                           price.presentment.currency_code)
    tax_part = MoneyBag.of(upto(tax.shop.amount) - done_tax.shop.amount, tax.shop.currency_code,
                           upto(tax.presentment.amount) - done_tax.presentment.amount,
                           tax.presentment.currency_code)
    return RefundShipping(shipping_position=position, subtotal=subtotal, tax=tax_part)
