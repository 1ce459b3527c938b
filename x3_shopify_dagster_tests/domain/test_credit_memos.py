"""build_refund_credit / build_cancellation_credit on hand-made orders, every figure worked out by hand.

flows.md §5: a credit memo's total equals the refund's total to the cent (else amount_mismatch with both
figures) and its GL view balances; §1: its date is the refund's (or the cancellation's) business day.
EU demo store: prices include 20 % VAT; US demo store: prices exclude 8.25 % sales tax, shipping untaxed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from x3_shopify_dagster.domain.credit_memos import (
    CreditKind,
    CreditMemoDraft,
    build_cancellation_credit,
    build_refund_credit,
    refund_reference,
)
from x3_shopify_dagster.domain.invoicing import InvoiceDraft, LineKind, X3LineType, build_invoice
from x3_shopify_dagster.domain.mapping import Mapping
from x3_shopify_dagster.domain.outcomes import FailureReason, MappingFailure, Skip, SkipReason
from x3_shopify_dagster.domain.shopify_orders import ShopifyOrder
from x3_shopify_dagster_tests.domain.conftest import X3Folder
from x3_shopify_dagster_tests.domain.order_factory import allocation, bag, line, order, shipping, tax

D = Decimal
TZ = "Europe/Paris"


def refund(
    number: int,
    total: str,
    *,
    lines: list[tuple[dict[str, Any], int, str, str, str]] = (),  # (order line, quantity, subtotal, tax, restock)
    shipping_lines: list[tuple[str, str, str]] = (),  # (title, subtotal, tax)
    currency: str = "EUR",
    processed_at: str = "2026-11-30T23:30:00Z",
) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Refund/{number}",
        "created_at": processed_at,
        "processed_at": processed_at,
        "total_refunded_set": bag(total, currency),
        "refund_line_items": [
            {"quantity": quantity, "restock_type": restock, "line_item_id": item["id"], "sku": item["sku"],
             "subtotal_set": bag(subtotal, currency), "total_tax_set": bag(tax_amount, currency)}
            for item, quantity, subtotal, tax_amount, restock in lines
        ],
        "refund_shipping_lines": [
            {"shipping_line_id": None, "title": title, "subtotal_amount_set": bag(subtotal, currency),
             "tax_amount_set": bag(tax_amount, currency)}
            for title, subtotal, tax_amount in shipping_lines
        ],
    }


def with_refunds(o: ShopifyOrder, *refunds: dict[str, Any], **fields: Any) -> ShopifyOrder:
    return ShopifyOrder.model_validate({**o.to_payload(), "refunds": list(refunds), **fields})


def credit(o: ShopifyOrder, mapping: Mapping, store: str = "eu", customer: str = "FR0001", index: int = 0):
    return build_refund_credit(o, o.refunds[index], store=store, customer_code=customer, origin_invoice="INV-1",
                               mapping=mapping, business_timezone=TZ)


def memo_of(result: CreditMemoDraft | MappingFailure | Skip) -> CreditMemoDraft:
    assert isinstance(result, CreditMemoDraft), result
    return result


def gl(memo: CreditMemoDraft | InvoiceDraft) -> list[tuple[str, Decimal, Decimal]]:
    return [(line.account.account, line.debit, line.credit) for line in memo.gl_lines()]


def balanced(memo: CreditMemoDraft) -> bool:
    lines = memo.gl_lines()
    return sum(g.debit for g in lines) == sum(g.credit for g in lines) > 0


def eu_order() -> tuple[ShopifyOrder, dict[str, Any], dict[str, Any]]:
    # 2 x 60.00 knives (VAT 20.00) and 3 x 10.00 cups with a 10 % discount (27.00, VAT 4.50), shipping 6.00
    # (VAT 1.00): 120 + 27 + 6 = 153.00.
    knives = line("TAMPER-58", 2, "60.00", taxes=[tax("20.00")])
    cups = line("CUP-PORC-6", 3, "10.00", taxes=[tax("4.50")], discounts=[allocation("3.00")])
    o = order(lines=[knives, cups], total="153.00",
              shipping_lines=[shipping("Colissimo", "6.00", taxes=[tax("1.00")])])
    return o, knives, cups


def test_partial_refund_of_one_unit_credits_its_price_and_tax(demo_mapping: Mapping) -> None:
    o, knives, _ = eu_order()
    o = with_refunds(o, refund(9100000000001, "60.00", lines=[(knives, 1, "60.00", "10.00", "RETURN")]))
    memo = memo_of(credit(o, demo_mapping))
    assert memo.kind is CreditKind.REFUND
    assert memo.reference == "SHOPIFY:eu:R9100000000001" == refund_reference("eu", o.refunds[0].id)
    assert memo.document.header.invoice_type == "CRN"
    # The refund was processed on 30 Nov 23:30 UTC = 1 Dec 00:30 in Paris: the business event's day.
    assert memo.document.header.accounting_date == date(2026, 12, 1)
    assert [(li.item, li.quantity, li.unit_price) for li in memo.document.lines] == [("TAMPER-58", 1, D("60.00"))]
    assert memo.document.totals.model_dump() == {"net": D("50.00"), "tax": D("10.00"), "gross": D("60.00")}
    # Mirrored GL: revenue and tax debited, the receivable credited.
    assert gl(memo) == [("411000", D(0), D("60.00")), ("706000", D("50.00"), D(0)), ("445710", D("10.00"), D(0))]
    assert balanced(memo)
    assert [(r.item, r.quantity, r.restock_type, r.goods_return) for r in memo.restocks] == [
        ("TAMPER-58", 1, "RETURN", True)]
    payload = memo.to_x3_payload()["SIH0_1"]
    assert payload["INVTYP"] == "2"
    assert payload["SIHORINUM"] == "INV-1"
    assert payload["SIVTYP"] == "CRN"


def test_refunded_units_give_back_their_share_of_the_discount(demo_mapping: Mapping) -> None:
    o, _, cups = eu_order()
    # One discounted cup: 9.00 refunded (VAT 1.50), i.e. 10.00 original price less 1.00 of discount.
    o = with_refunds(o, refund(9100000000002, "9.00", lines=[(cups, 1, "9.00", "1.50", "CANCEL")]))
    memo = memo_of(credit(o, demo_mapping))
    lines = [(li.kind, li.line_type, li.amount) for li in memo.document.lines]
    assert lines == [
        (LineKind.GOODS, X3LineType.GOODS, D("10.00")), (LineKind.DISCOUNT, X3LineType.DISCOUNT, D("-1.00"))]
    assert memo.gross == D("9.00")
    assert memo.restocks[0].goods_return is False  # CANCEL: never shipped, nothing comes back


def test_shipping_refund_alone(demo_mapping: Mapping) -> None:
    o, _, _ = eu_order()
    o = with_refunds(o, refund(9100000000003, "6.00", shipping_lines=[("Colissimo", "6.00", "1.00")]))
    memo = memo_of(credit(o, demo_mapping))
    assert [(li.kind, li.account.account, li.amount) for li in memo.document.lines] == [
        (LineKind.SHIPPING, "708500", D("6.00"))]
    assert memo.document.totals.model_dump() == {"net": D("5.00"), "tax": D("1.00"), "gross": D("6.00")}
    assert memo.restocks == ()


def test_taxes_excluded_refund_reconciles_with_a_rounding_line(demo_mapping: Mapping) -> None:
    # US store, 8.25 % added: two 0.06 items are taxed 0.00495 -> 0.00 each by Shopify (per line), X3 taxes
    # the code once: round(0.12 x 0.0825 = 0.0099) = 0.01. The refund returns 0.12: a 0.01 rounding line
    # gives X3's extra cent back so the credit memo totals the refund's 0.12.
    sales_tax = tax("0.00", title="Sales tax", rate="0.0825", currency="USD")
    a = line("TAMPER-58", 1, "0.06", currency="USD", taxes=[sales_tax])
    b = line("CUP-PORC-6", 1, "0.06", currency="USD", taxes=[sales_tax])
    o = order(lines=[a, b], total="0.13", currency="USD", taxes_included=False)
    o = with_refunds(o, refund(9100000000004, "0.12", currency="USD", lines=[
        (a, 1, "0.06", "0.00", "NO_RESTOCK"), (b, 1, "0.06", "0.00", "RETURN")]))
    memo = memo_of(credit(o, demo_mapping, store="us", customer="US0005"))
    assert memo.document.totals.gross == D("0.12")
    rounding = [li for li in memo.document.lines if li.kind is LineKind.ROUNDING]
    assert [(li.line_type, li.amount) for li in rounding] == [(X3LineType.DISCOUNT, D("-0.01"))]
    assert balanced(memo)


def test_us_partial_refund_with_tax_added(demo_mapping: Mapping) -> None:
    # 1 x 19.99 + 8.25 % = 1.649175 -> 1.65: 21.64 refunded.
    item = line("TAMPER-58", 3, "19.99", currency="USD",
                taxes=[tax("4.95", title="Sales tax", rate="0.0825", currency="USD")])
    o = order(lines=[item], total="64.92", currency="USD", taxes_included=False)
    o = with_refunds(o, refund(9100000000005, "21.64", currency="USD", lines=[(item, 1, "19.99", "1.65", "RETURN")]))
    memo = memo_of(credit(o, demo_mapping, store="us", customer="US0005"))
    assert memo.document.totals.model_dump() == {"net": D("19.99"), "tax": D("1.65"), "gross": D("21.64")}
    assert memo.document.header.prices_include_tax is False


def test_refund_total_not_matching_its_lines_is_an_amount_mismatch_with_both_figures(demo_mapping: Mapping) -> None:
    o, knives, _ = eu_order()
    # 65.00 refunded for a 60.00 knife (an extra 5.00 goodwill amount without a line).
    o = with_refunds(o, refund(9100000000006, "65.00", lines=[(knives, 1, "60.00", "10.00", "RETURN")]))
    failure = credit(o, demo_mapping)
    assert isinstance(failure, MappingFailure), failure
    assert failure.reason is FailureReason.AMOUNT_MISMATCH
    assert (failure.shopify_amount, failure.invoice_amount, failure.difference) == (D("65.00"), D("60.00"), D("-5.00"))
    assert "refund" in failure.field
    assert "65.00" in failure.message


def test_an_amount_refunded_without_lines_fails_and_a_restock_only_refund_is_skipped(demo_mapping: Mapping) -> None:
    o, knives, _ = eu_order()
    o = with_refunds(o, refund(9100000000007, "5.00"), refund(9100000000008, "0.00",
                                                             lines=[(knives, 1, "60.00", "10.00", "RETURN")]))
    failure = credit(o, demo_mapping, index=0)
    assert isinstance(failure, MappingFailure)
    assert failure.reason is FailureReason.AMOUNT_MISMATCH
    assert failure.shopify_amount == D("5.00")
    assert failure.invoice_amount == D(0)
    skipped = credit(o, demo_mapping, index=1)
    assert isinstance(skipped, Skip)
    assert skipped.reason is SkipReason.NOTHING_TO_CREDIT


def test_cancellation_credit_mirrors_the_invoice_so_both_net_to_zero(demo_mapping: Mapping) -> None:
    o, _, _ = eu_order()
    invoice = build_invoice(o, store="eu", customer_code="FR0001", mapping=demo_mapping, business_timezone=TZ)
    assert isinstance(invoice, InvoiceDraft)
    cancelled = with_refunds(o, cancelled_at="2026-12-03T09:00:00Z", cancel_reason="CUSTOMER")
    memo = memo_of(build_cancellation_credit(cancelled, store="eu", customer_code="FR0001", origin_invoice="INV-9",
                                             mapping=demo_mapping, business_timezone=TZ))
    assert memo.kind is CreditKind.CANCELLATION
    assert memo.reference == "SHOPIFY:eu:C5800000000042"
    assert memo.document.header.accounting_date == date(2026, 12, 3)
    assert memo.gross == invoice.totals.gross == D("153.00")
    net: dict[str, Decimal] = defaultdict(Decimal)
    for account, debit, credit_amount in gl(invoice) + gl(memo):
        net[account] += debit - credit_amount
    assert set(net.values()) == {D(0)}, net


def test_x3_computes_the_same_credit_memo_totals(demo_mapping: Mapping, x3_folder: X3Folder) -> None:
    o, knives, cups = eu_order()
    invoice = build_invoice(o, store="eu", customer_code="FR0001", mapping=demo_mapping, business_timezone=TZ)
    assert isinstance(invoice, InvoiceDraft)
    posted = x3_folder.save_and_post(invoice.to_x3_payload())
    o = with_refunds(o, refund(9100000000009, "69.00", lines=[(knives, 1, "60.00", "10.00", "RETURN"),
                                                               (cups, 1, "9.00", "1.50", "RETURN")]))
    memo = build_refund_credit(o, o.refunds[0], store="eu", customer_code="FR0001", origin_invoice=posted.number,
                               mapping=demo_mapping, business_timezone=TZ)
    memo = memo_of(memo)
    saved = x3_folder.save_and_post(memo.to_x3_payload())
    totals = memo.document.totals
    assert saved.totals == (totals.net, totals.tax, totals.gross)
    expected = sorted((str(g.account.account), g.debit, g.credit) for g in memo.gl_lines())
    assert sorted((account, debit, credit_amount) for account, _, debit, credit_amount in saved.gl_lines) == expected
