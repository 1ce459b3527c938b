"""Shopify refunds and cancellations → Sage X3 credit memos (INVTYP 2) that reconcile to the cent.

``build_refund_credit`` turns one refund of an invoiced order into a credit memo draft; ``build_cancellation_credit``
turns the cancellation of an order whose invoice is posted into a credit memo for the whole invoice. Both return
a ``CreditMemoDraft``, a ``MappingFailure`` or a ``Skip`` and never raise for a property of the order or the
mapping. The rules (docs/mapping.md, "Credit memos"):

* Refunded goods: one LINTYP 1 line per refund line item at the order line's original unit price and the
  refunded quantity, so the credit mirrors the invoice line; the part of the line's discounts that fell on the
  refunded units (quantity x unit price - Shopify's refunded subtotal) goes back through a LINTYP 3 line on the
  discounts account, one per tax code.
* Refunded shipping: one LINTYP 2 line per refund shipping line at the refunded amount, on the shipping account.
* Taxes: each line takes the X3 tax code of the order line it refunds; Shopify's refunded tax is reconciled the
  way an invoice's is (a tax rounding line when prices exclude tax), and the credit memo's total must equal the
  refund's ``totalRefundedSet`` to the cent, else ``amount_mismatch`` with both figures.
* Restocks never move X3 stock here: each refunded line records its ``restockType`` and whether goods come
  back (RETURN, LEGACY_RESTOCK) for the audit trail; see the mapping guide for why.
* Dates are the business event's: the refund's processedAt (else createdAt), the order's cancelledAt.

All rounding goes through ``domain.money.round_money``. Pure module: pydantic and the standard library only.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from x3_shopify_dagster.domain.invoicing import (
    GlLine,
    InvoiceDraft,
    LineKind,
    _Builder,
    _fail,
    _Failed,
    document_reference,
)
from x3_shopify_dagster.domain.mapping import Mapping
from x3_shopify_dagster.domain.money import round_money
from x3_shopify_dagster.domain.outcomes import FailureReason, MappingFailure, Skip, SkipReason
from x3_shopify_dagster.domain.shopify_orders import Refund, ShopifyOrder

REFUND_MARKER = "R"  # BPRVCR of a refund's credit memo: SHOPIFY:{store}:R{refund id}
CANCELLATION_MARKER = "C"  # BPRVCR of a cancellation's credit memo: SHOPIFY:{store}:C{order id}
# Shopify restock types whose goods come back to a location (CANCEL: never shipped; NO_RESTOCK: kept).
STOCK_RETURNS = frozenset({"RETURN", "LEGACY_RESTOCK"})
CREDIT_MEMO_CATEGORY = 2  # INVTYP 2


class CreditKind(StrEnum):
    REFUND = "refund"
    CANCELLATION = "cancellation"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class RestockLine(_Frozen):
    """What happened to the refunded units in Shopify (recorded, not posted: see docs/mapping.md)."""

    line_item_id: str
    item: str
    quantity: Decimal
    restock_type: str  # RETURN | CANCEL | NO_RESTOCK | LEGACY_RESTOCK
    goods_return: bool  # the goods come back physically (an X3 customer return is expected)


class CreditMemoDraft(_Frozen):
    """An X3 credit memo ready to save: the invoice-shaped document, its origin invoice and what it credits."""

    kind: CreditKind
    source_id: str  # the refund's gid, or the order's gid for a cancellation
    origin_invoice: str  # SIHORINUM: the posted invoice it credits
    document: InvoiceDraft  # lines, taxes and totals as X3 computes them; header.invoice_type is the CRN type
    restocks: tuple[RestockLine, ...] = ()

    @property
    def reference(self) -> str:
        return self.document.header.reference

    @property
    def gross(self) -> Decimal:
        return self.document.totals.gross

    def gl_lines(self) -> tuple[GlLine, ...]:
        """The invoice's GL view mirrored: receivable credited, sales, shipping and tax debited."""
        return tuple(
            line.model_copy(update={"debit": line.credit, "credit": line.debit}) for line in self.document.gl_lines()
        )

    def to_x3_payload(self) -> dict[str, Any]:
        payload = self.document.to_x3_payload()
        payload["SIH0_1"] |= {"INVTYP": str(CREDIT_MEMO_CATEGORY), "SIHORINUM": self.origin_invoice}
        return payload


def refund_legacy_id(refund_id: str) -> int:
    """``gid://shopify/Refund/123`` → 123."""
    tail = refund_id.rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"not a Shopify refund id: {refund_id!r}")
    return int(tail)


def refund_reference(store: str, refund_id: str) -> str:
    return document_reference(store, refund_legacy_id(refund_id), REFUND_MARKER)


def cancellation_reference(store: str, order: ShopifyOrder) -> str:
    return document_reference(store, order.legacy_resource_id, CANCELLATION_MARKER)


# ============================================================================================ builders
def build_refund_credit(
    order: ShopifyOrder,
    refund: Refund,
    *,
    store: str,
    customer_code: str,
    origin_invoice: str,
    mapping: Mapping,
    business_timezone: str = "UTC",
) -> CreditMemoDraft | MappingFailure | Skip:
    """One Shopify refund of ``order`` as a credit memo on ``origin_invoice`` (billed to ``customer_code``)."""
    zone = ZoneInfo(business_timezone)
    builder = _RefundBuilder(order, refund, store, mapping, customer_code, zone)
    try:
        return builder.build_credit(origin_invoice)
    except _Failed as failed:
        return failed.failure


def build_cancellation_credit(
    order: ShopifyOrder,
    *,
    store: str,
    customer_code: str,
    origin_invoice: str,
    mapping: Mapping,
    business_timezone: str = "UTC",
) -> CreditMemoDraft | MappingFailure | Skip:
    """The whole invoice of a cancelled order credited back, dated on the cancellation's business day.

    The invoice is rebuilt from the order exactly as it was invoiced (a cancellation does not change the
    order's lines); the caller checks the result against the posted invoice's total before sending it.
    """
    if order.cancelled_at is None:
        raise ValueError(f"order {order.name} is not cancelled")
    zone = ZoneInfo(business_timezone)
    resolved = mapping.for_customer(customer_code, store)
    try:
        invoice = _Builder(order, store, resolved, customer_code, zone).build()
    except _Failed as failed:
        return failed.failure
    if isinstance(invoice, Skip):
        return invoice
    day = order.cancelled_at.astimezone(zone).date()
    header = invoice.header.model_copy(
        update={
            "invoice_type": resolved.credit_memo_type,
            "invoice_date": day,
            "accounting_date": day,
            "reference": cancellation_reference(store, order),
        }
    )
    document = invoice.model_copy(update={"header": header, "ready_to_post": True})
    return CreditMemoDraft(
        kind=CreditKind.CANCELLATION, source_id=order.id, origin_invoice=origin_invoice, document=document
    )


class _RefundBuilder(_Builder):
    def __init__(
        self, order: ShopifyOrder, refund: Refund, store: str, mapping: Mapping, customer: str, zone: ZoneInfo
    ) -> None:
        super().__init__(order, store, mapping.for_customer(customer, store), customer, zone)
        self.refund = refund
        self.where = f"refunds[{refund.id}]"
        self.restocks: list[RestockLine] = []

    def build_credit(self, origin_invoice: str) -> CreditMemoDraft | Skip:
        refund = self.refund
        total = self.money(refund.total_refunded_set, f"{self.where}.total_refunded_set")
        if total == 0:
            return Skip(
                reason=SkipReason.NOTHING_TO_CREDIT,
                message=f"refund {refund.id} of order {self.order.name} returns no money (restock only)",
            )
        self.add_refunded_goods()
        self.add_refunded_shipping()
        if not self.lines:
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                f"{self.where}.total_refunded_set",
                f"refund {refund.id} of order {self.order.name} returns {total} {self.currency} but refunds no "
                "line item and no shipping (an amount refunded on its own).",
                "post this credit by hand in X3: the connector credits refunded lines and shipping only.",
                shopify_amount=total,
                invoice_amount=_ZERO,
                currency=self.currency,
            )
        if not self.included:
            self.add_tax_rounding()
        document = self.finish_credit(total)
        return CreditMemoDraft(
            kind=CreditKind.REFUND,
            source_id=refund.id,
            origin_invoice=origin_invoice,
            document=document,
            restocks=tuple(self.restocks),
        )

    def add_refunded_goods(self) -> None:
        by_id = {line.id: (index, line) for index, line in enumerate(self.order.line_items)}
        discounts: dict[str, Decimal] = defaultdict(Decimal)  # tax code → discount on the refunded units
        for position, refunded in enumerate(self.refund.refund_line_items):
            where = f"{self.where}.refund_line_items[{position}]"
            found = by_id.get(refunded.line_item_id)
            if found is None:
                _fail(
                    FailureReason.MAPPING,
                    f"{where}.line_item_id",
                    f"refund {self.refund.id} refunds line item {refunded.line_item_id}, which order "
                    f"{self.order.name} does not carry.",
                    "re-read the order from Shopify (re-materialize shopify_orders for its day), then replay.",
                )
            index, line = found
            code = self.resolve_tax_code(line.tax_lines, f"line_items[{index}].tax_lines", f"line '{line.name}'")
            self.refunded_tax(code, bool(line.tax_lines), refunded.total_tax_set, f"{where}.total_tax_set")
            quantity = Decimal(refunded.quantity)
            before = len(self.lines)
            self.add_goods(line, f"line_items[{index}]", code, quantity)
            goods = self.lines[before]
            subtotal = self.money(refunded.subtotal_set, f"{where}.subtotal_set")
            discount = goods.amount - subtotal
            if discount < 0:
                _fail(
                    FailureReason.AMOUNT_MISMATCH,
                    f"{where}.subtotal_set",
                    f"refund {self.refund.id} returns {subtotal} {self.currency} for {quantity} x '{line.name}', "
                    f"more than their original price {goods.amount}.",
                    "check the refund in Shopify; post this credit by hand if it is right.",
                    shopify_amount=subtotal,
                    invoice_amount=goods.amount,
                    currency=self.currency,
                )
            discounts[code] += discount
            self.restocks.append(
                RestockLine(
                    line_item_id=line.id,
                    item=goods.item or "",
                    quantity=quantity,
                    restock_type=refunded.restock_type,
                    goods_return=refunded.restock_type in STOCK_RETURNS,
                )
            )
        for code, amount in discounts.items():
            if amount:
                self.add_line(
                    LineKind.DISCOUNT,
                    "Discount on refunded items",
                    amount,
                    code,
                    self.resolved.accounts.discounts,
                    f"{self.where}.discounts",
                )

    def add_refunded_shipping(self) -> None:
        by_id = {s.id: s for s in self.order.shipping_lines if s.id}
        for position, refunded in enumerate(self.refund.refund_shipping_lines):
            where = f"{self.where}.refund_shipping_lines[{position}]"
            shipping = by_id.get(refunded.shipping_line_id or "") or next(
                (s for s in self.order.shipping_lines if refunded.title and s.title == refunded.title), None
            )
            price = self.money(refunded.subtotal_amount_set, f"{where}.subtotal_amount_set")
            tax_lines = shipping.tax_lines if shipping is not None else ()
            code = self.resolve_tax_code(tax_lines, f"{where}.tax_lines", "refunded shipping")
            self.refunded_tax(code, bool(tax_lines), refunded.tax_amount_set, f"{where}.tax_amount_set")
            if price:
                title = refunded.title or (shipping.title if shipping is not None else "")
                self.add_line(
                    LineKind.SHIPPING, f"Shipping {title}".strip(), price, code, self.resolved.accounts.shipping, where
                )

    def refunded_tax(self, code: str, taxed: bool, amount_set: Any, where: str) -> None:
        """Shopify's refunded tax joins the reconciliation of the line's X3 tax code."""
        amount = self.money(amount_set, where)
        if not taxed and amount:
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                where,
                f"refund {self.refund.id} returns {amount} {self.currency} of tax on a line the order did not tax.",
                "check the refund in Shopify; post this credit by hand if it is right.",
                shopify_amount=amount,
                invoice_amount=_ZERO,
                currency=self.currency,
            )
        if taxed:
            self.shopify_tax[code] += amount
            self.shopify_tax_lines[code] += 1

    def finish_credit(self, refund_total: Decimal) -> InvoiceDraft:
        when = self.refund.processed_at or self.refund.created_at
        if when is None:
            _fail(
                FailureReason.MAPPING,
                f"{self.where}.processed_at",
                f"refund {self.refund.id} has neither processedAt nor createdAt: its credit memo has no date.",
                "re-read the order from Shopify with the refund's dates selected, then replay.",
            )
        field = f"{self.where}.total_refunded_set"
        try:
            draft = self.finish(refund_total, field, when.astimezone(self.zone).date())
        except _Failed as failed:
            failure = failed.failure
            if failure.field != field:
                raise
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                field,
                f"the credit memo totals {failure.invoice_amount} {self.currency} but the refund's total is "
                f"{failure.shopify_amount} (difference {failure.difference}); credit memo lines: {_lines(self)}.",
                "compare with the refund in Shopify (amounts refunded without lines, duties and fees are not "
                "credited); post the credit by hand if it is right.",
                shopify_amount=failure.shopify_amount,
                invoice_amount=failure.invoice_amount,
                currency=self.currency,
            )
        header = draft.header.model_copy(
            update={
                "invoice_type": self.resolved.credit_memo_type,
                "reference": refund_reference(self.store, self.refund.id),
            }
        )
        return draft.model_copy(update={"header": header, "ready_to_post": True})


_ZERO = Decimal(0)


def _lines(builder: _Builder) -> str:
    return ", ".join(f"{line.kind.value} {round_money(line.amount, builder.currency)}" for line in builder.lines)
