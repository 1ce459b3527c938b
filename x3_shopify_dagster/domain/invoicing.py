"""One Shopify order → one Sage X3 sales invoice draft that reconciles to Shopify's total to the cent.

``build_invoice`` returns an ``InvoiceDraft``, a ``MappingFailure`` or a ``Skip`` (flows.md §2: validated /
failed / skipped); it never raises for a property of the order or the mapping. The rules (docs/mapping.md):

* Goods: one X3 line per Shopify line item at Shopify's original unit price and quantity (GROPRI x QTY is
  exact, so deliveries can later be checked against invoiced quantities).
* Discounts on goods, line-level and order-level alike, are taken from each line's discount allocations and
  posted as LINTYP 3 lines on the discounts account, one per (discount application, tax code). They are not
  folded into the goods lines: a discounted line total is rarely a whole number of cents per unit.
* Shipping: one LINTYP 2 line per shipping line at its price after shipping discounts (quantity 1, so netting
  is exact). Duties: one LINTYP 2 line per duty on the duties account, with the untaxed tax code.
* Prices include tax (PRITYP 2) when Shopify's do. X3 computes taxes its own way (docs/x3-sandbox.md):
  included → each line's base is rounded and tax = gross - base, so the invoice total is the sum of the gross
  lines and always equals Shopify's; excluded → tax = round(Σ bases x rate) per tax code, which can differ by
  a few cents from Shopify's per-line rounding. That difference is posted as a "tax rounding" line (untaxed
  code, rounding account) so the total still equals Shopify's; differences larger than rounding can explain
  are an ``amount_mismatch``.
* The draft's totals are what X3 will compute; its gross must equal Shopify's ``totalPriceSet`` (in the mapped
  money) to the cent and its GL view must balance, otherwise the outcome is ``amount_mismatch``.

All rounding goes through ``domain.money.round_money``. Pure module: pydantic and the standard library only.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from x3_shopify_dagster.domain.mapping import (
    CustomerMapping,
    GlAccount,
    GuestMode,
    Mapping,
    MoneySide,
    PostingMoment,
    TaxRule,
)
from x3_shopify_dagster.domain.money import minor_units, round_money
from x3_shopify_dagster.domain.outcomes import FailureReason, MappingFailure, Skip, SkipReason
from x3_shopify_dagster.domain.shopify_orders import (
    DiscountApplication,
    LineItem,
    MoneyBag,
    ShippingLine,
    ShopifyOrder,
    TaxLine,
)

REFERENCE_MAX_LENGTH = 30  # X3 BPRVCR (customer document reference) holds 30 characters
DESCRIPTION_MAX_LENGTH = 30  # X3 ITMDES
# Financial statuses of an order whose payment was captured (refunds come later as credit memos).
PAID_STATUSES = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})
_ZERO = Decimal(0)


class LineKind(StrEnum):
    GOODS = "goods"
    DISCOUNT = "discount"
    SHIPPING = "shipping"
    DUTY = "duty"
    ROUNDING = "rounding"


class X3LineType(IntEnum):
    """LINTYP of the YSIH publication: 1 goods, 2 shipping and other charges, 3 discount (amount negated)."""

    GOODS = 1
    SHIPPING = 2
    DISCOUNT = 3


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class InvoiceLine(_Frozen):
    kind: LineKind
    line_type: X3LineType
    item: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal  # GROPRI, never negative; includes tax when the invoice's prices include tax
    tax_code: str
    tax_rate: Decimal
    account: GlAccount
    dimensions: dict[str, str]
    amount: Decimal  # round(quantity x unit_price), negative on discount lines: what X3 computes for the line
    net_amount: Decimal  # the line's base excluding tax, as X3 computes it
    source: str  # where the line comes from in the order, e.g. line_items[2]


class TaxTotal(_Frozen):
    code: str
    rate: Decimal
    base: Decimal
    amount: Decimal  # as X3 computes it
    shopify_amount: Decimal  # the sum of Shopify's tax lines mapped to this code
    account: GlAccount


class InvoiceTotals(_Frozen):
    net: Decimal  # AMTNOT
    tax: Decimal  # AMTTAX
    gross: Decimal  # AMTATI


class InvoiceHeader(_Frozen):
    customer: str
    invoice_type: str
    site: str
    invoice_date: date
    accounting_date: date
    currency: str
    prices_include_tax: bool
    reference: str  # BPRVCR: the connector's idempotency key, see invoice_reference()


class GlLine(_Frozen):
    account: GlAccount
    dimensions: dict[str, str]
    debit: Decimal
    credit: Decimal
    description: str


class InvoiceDraft(_Frozen):
    """An X3 sales invoice ready to save, the totals X3 must answer and the GL lines posting must write."""

    store: str
    order_id: str
    order_name: str
    header: InvoiceHeader
    lines: tuple[InvoiceLine, ...]
    taxes: tuple[TaxTotal, ...]
    totals: InvoiceTotals
    shopify_total: Decimal  # totalPriceSet in the mapped money; equals totals.gross
    shopify_tax: Decimal  # Shopify's tax lines, summed
    receivable_account: GlAccount
    ready_to_post: bool  # posting moment reached (on_create, or on_paid and the order is paid)

    @property
    def tax_rounding_difference(self) -> Decimal:
        """X3's tax minus Shopify's (X3 rounds per tax code or per line, Shopify per line item)."""
        return self.totals.tax - self.shopify_tax

    def gl_lines(self) -> tuple[GlLine, ...]:
        """The balanced GL view for the audit trail, in X3's order: receivable debit, one line per invoice
        line (credit; debit for discounts), one per tax code. Zero amounts are left out, as X3 does."""
        movements = [(self.receivable_account, {}, -self.totals.gross, f"Customer {self.header.customer}")]
        movements += [
            (line.account, line.dimensions, line.net_amount, line.description) for line in self.lines
        ]
        movements += [(tax.account, {}, tax.amount, f"Tax {tax.code}") for tax in self.taxes]
        return tuple(
            GlLine(
                account=account,
                dimensions=dimensions,
                debit=max(-credit, _ZERO),
                credit=max(credit, _ZERO),
                description=description,
            )
            for account, dimensions, credit, description in movements
            if credit != 0
        )

    def to_x3_payload(self) -> dict[str, Any]:
        """The YSIH ``save`` payload: header group SIH0_1, lines table SIH4_1; every value a string."""
        header = self.header
        lines = []
        for line in self.lines:
            fields = {"LINTYP": str(int(line.line_type))}
            if line.item is not None:
                fields["ITMREF"] = line.item
            fields |= {
                "ITMDES": line.description[:DESCRIPTION_MAX_LENGTH],
                "QTY": _plain(line.quantity),
                "GROPRI": _amount_text(line.unit_price, header.currency),
                "VACITM": line.tax_code,
                "ACC": line.account.account,
            }
            for dimension_type, value in line.dimensions.items():
                fields |= {"DIE": dimension_type, "CCE": value}
            lines.append(fields)
        return {
            "SIH0_1": {
                "BPCINV": header.customer,
                "SIVTYP": header.invoice_type,
                "INVDAT": header.invoice_date.strftime("%Y%m%d"),
                "ACCDAT": header.accounting_date.strftime("%Y%m%d"),
                "CUR": header.currency,
                "SALFCY": header.site,
                "BPRVCR": header.reference,
                "PRITYP": "2" if header.prices_include_tax else "1",
            },
            "SIH4_1": lines,
        }


def _plain(value: Decimal) -> str:
    """Decimal as plain text without exponent or trailing zeros ("3", "0.5"); X3 parses it exactly."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _amount_text(value: Decimal, currency: str) -> str:
    """An amount with the currency's decimals ("24.80") when that loses nothing, else exactly as it is."""
    shown = round_money(value, currency)
    return format(shown if shown == value else value, "f")


# ============================================================================================ reference
def invoice_reference(store: str, order: ShopifyOrder | int) -> str:
    """The idempotency key written to X3's BPRVCR (≤ 30 characters): ``SHOPIFY:{store}:{order legacy id}``.

    When that is too long, the store key is replaced by a 6-character digest of it (``SHOPIFY:K4PXQ2:…``),
    and for order ids over 15 digits the prefix shortens to ``SH``: a 64-bit id (20 digits) still fits. The
    order id is never shortened, it is what makes the key unique. Deterministic, so a retry finds its invoice.
    """
    order_id = order.legacy_resource_id if isinstance(order, ShopifyOrder) else order
    return document_reference(store, order_id)


def document_reference(store: str, document_id: int, marker: str = "") -> str:
    """``invoice_reference`` for any document: ``marker`` tells credit memos apart from the order's invoice
    (``R`` + refund id, ``C`` + order id for a cancellation), e.g. ``SHOPIFY:eu:R9100000000007``."""
    if document_id < 0:
        raise ValueError(f"document id must not be negative, got {document_id}")
    number = f"{marker}{document_id}"
    reference = f"SHOPIFY:{store}:{number}"
    if len(reference) <= REFERENCE_MAX_LENGTH:
        return reference
    digest = base64.b32encode(hashlib.sha256(store.encode("utf-8")).digest()).decode("ascii")[:6]
    for prefix in ("SHOPIFY", "SH"):
        reference = f"{prefix}:{digest}:{number}"
        if len(reference) <= REFERENCE_MAX_LENGTH:
            return reference
    raise ValueError(f"document id {number} is longer than a Shopify id (20 digits) can be in the "
                     f"{REFERENCE_MAX_LENGTH}-character reference")


# ============================================================================================ builder
class _Failed(Exception):  # internal short-circuit carrying the failure value out of the builder
    def __init__(self, failure: MappingFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _fail(reason: FailureReason, field: str, message: str, hint: str, **figures: Any) -> NoReturn:
    raise _Failed(MappingFailure(reason=reason, field=field, message=message, hint=hint, **figures))


def build_invoice(
    order: ShopifyOrder,
    *,
    store: str,
    customer_code: str | None,
    mapping: Mapping,
    business_timezone: str = "UTC",
) -> InvoiceDraft | MappingFailure | Skip:
    """Turn one order into an X3 invoice draft, or say precisely why not.

    ``customer_code`` is the X3 customer matched by e-mail (None when none was matched). For a guest checkout
    (no Shopify customer) the store's ``guest_checkout`` policy decides which account, if any, is invoiced.
    ``business_timezone`` (IANA name) turns the order's processedAt into the invoice and accounting date.
    A cancelled order is skipped: cancelling an order that was already invoiced is the credit flow's job.
    """
    zone = ZoneInfo(business_timezone)  # a bad name is a settings error: raised at once, not per order
    guest = order.customer_id is None
    if order.test and not mapping.for_customer(None if guest else customer_code, store).include_test_orders:
        return Skip(reason=SkipReason.TEST_ORDER, message=f"order {order.name} is a test order")
    if order.cancelled_at is not None:
        why = order.cancel_reason or "no reason given"
        return Skip(reason=SkipReason.CANCELLED, message=f"order {order.name} was cancelled ({why})")
    customer = _invoice_customer(order, store, customer_code, mapping)
    if not isinstance(customer, str):
        return customer
    try:
        return _Builder(order, store, mapping.for_customer(customer, store), customer, zone).build()
    except _Failed as failed:
        return failed.failure


def _invoice_customer(
    order: ShopifyOrder, store: str, customer_code: str | None, mapping: Mapping
) -> str | MappingFailure | Skip:
    if order.customer_id is not None:
        if customer_code:
            return customer_code
        return MappingFailure(
            reason=FailureReason.CUSTOMER_NOT_MATCHED,
            field="customer_code",
            message=f"order {order.name} has a Shopify customer but no X3 customer was given.",
            hint="match the customer by e-mail first; build the invoice once a single X3 customer matched.",
        )
    policy = mapping.guest_checkout(store)
    if policy.mode is GuestMode.CUSTOMER and policy.customer is not None:
        return policy.customer
    if policy.mode is GuestMode.MATCH and customer_code:
        return customer_code
    if policy.mode is GuestMode.SKIP:
        return Skip(
            reason=SkipReason.GUEST_CHECKOUT,
            message=f"order {order.name} is a guest checkout and guest_checkout.mode is skip",
        )
    email = order.contact_email or "no e-mail"
    detail = (
        "no X3 customer matched its e-mail"
        if policy.mode is GuestMode.MATCH
        else "guest checkouts are flagged (guest_checkout.mode: flag)"
    )
    return MappingFailure(
        reason=FailureReason.GUEST_CHECKOUT,
        field="customer",
        message=f"order {order.name} is a guest checkout ({email}): {detail}.",
        hint="create the customer in X3 and replay, or invoice guests to one account with "
        f"guest_checkout: {{customer: <X3 code>}} under stores.{store} or defaults.",
    )


class _Builder:
    """Collects the lines of one order, then computes X3's totals and reconciles them."""

    def __init__(
        self, order: ShopifyOrder, store: str, resolved: CustomerMapping, customer: str, zone: ZoneInfo
    ) -> None:
        self.order = order
        self.store = store
        self.resolved = resolved
        self.customer = customer
        self.zone = zone
        self.presentment = resolved.money is MoneySide.PRESENTMENT
        self.currency = order.presentment_currency_code if self.presentment else order.currency_code
        self.included = order.taxes_included
        self.lines: list[InvoiceLine] = []
        self.rates: dict[str, Decimal] = {}  # tax code → rate
        self.rules: dict[str, TaxRule | None] = {}  # tax code → the rule that chose it (None: untaxed)
        self.shopify_tax: dict[str, Decimal] = defaultdict(Decimal)  # tax code → Shopify's tax lines
        self.shopify_tax_lines: dict[str, int] = defaultdict(int)

    def mapping_levels(self) -> str:
        return f"defaults, stores.{self.store} or customers.{self.customer}"

    def money(self, bag: MoneyBag, where: str) -> Decimal:
        money = bag.presentment_money if self.presentment else bag.shop_money
        if money is None:
            _fail(
                FailureReason.MAPPING,
                where,
                f"order {self.order.name} has no presentment amount at {where}.",
                "read orders with presentmentMoney selected, or set money: shop in the mapping.",
            )
        if money.currency_code != self.currency:
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                where,
                f"{where} is in {money.currency_code}, the invoice in {self.currency}.",
                "Shopify sent mixed currencies on one side of the order: check the order in Shopify.",
            )
        return money.amount

    # -- lines ---------------------------------------------------------------------------------------------
    def build(self) -> InvoiceDraft | Skip:
        discounts: dict[tuple[int, str], Decimal] = defaultdict(Decimal)  # (application, tax code) → amount
        for index, line in enumerate(self.order.line_items):
            if line.quantity <= 0:
                continue
            where = f"line_items[{index}]"
            tax_code = self.tax_code_for(line.tax_lines, f"{where}.tax_lines", f"line '{line.name}'")
            self.add_goods(line, where, tax_code)
            for position, allocation in enumerate(line.discount_allocations):
                at = f"{where}.discount_allocations[{position}]"
                discounts[(allocation.discount_application_index, tax_code)] += self.money(
                    allocation.allocated_amount_set, at
                )
            for position, duty in enumerate(line.duties):
                self.add_duty(self.money(duty.price_set, f"{where}.duties[{position}]"), where, line.name)
        for (application, tax_code), amount in discounts.items():
            if amount:
                self.add_line(
                    LineKind.DISCOUNT,
                    self.discount_label(application),
                    amount,
                    tax_code,
                    self.resolved.accounts.discounts,
                    f"discount_applications[{application}]",
                )
        for index, shipping in enumerate(self.order.shipping_lines):
            if not shipping.is_removed:
                self.add_shipping(shipping, f"shipping_lines[{index}]")
        if not self.lines:
            return Skip(
                reason=SkipReason.NOTHING_TO_INVOICE,
                message=f"order {self.order.name} has no line items, shipping or duties to invoice",
            )
        if not self.included:
            self.add_tax_rounding()
        return self.finish()

    def add_line(
        self,
        kind: LineKind,
        description: str,
        unit_price: Decimal,
        tax_code: str,
        account: GlAccount,
        source: str,
        *,
        item: str | None = None,
        quantity: Decimal = Decimal(1),
        line_type: X3LineType | None = None,
    ) -> None:
        if unit_price < 0:
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                source,
                f"{source} would carry a negative price {unit_price} {self.currency}.",
                "check the order in Shopify: a discount larger than what it applies to is not expected.",
            )
        line_type = line_type or _LINE_TYPES[kind]
        sign = -1 if line_type is X3LineType.DISCOUNT else 1
        amount = sign * round_money(quantity * unit_price, self.currency)
        rate = self.rates[tax_code]
        # X3's base of a tax-inclusive line: the gross divided by (1 + rate), rounded per line.
        net = round_money(amount / (1 + rate), self.currency) if self.included else amount
        self.lines.append(
            InvoiceLine(
                kind=kind,
                line_type=line_type,
                item=item,
                description=description[:DESCRIPTION_MAX_LENGTH],
                quantity=quantity,
                unit_price=unit_price,
                tax_code=tax_code,
                tax_rate=rate,
                account=account,
                dimensions=dict(self.resolved.dimensions),
                amount=amount,
                net_amount=net,
                source=source,
            )
        )

    def add_goods(self, line: LineItem, where: str, tax_code: str, quantity: Decimal | None = None) -> None:
        """The line's goods at its original unit price; ``quantity`` defaults to the ordered quantity."""
        if line.is_gift_card:
            _fail(
                FailureReason.UNSUPPORTED,
                where,
                f"line '{line.name}' sells a gift card: that is a liability, not a sale of goods.",
                "record gift card sales outside the invoice flow; this connector does not post them.",
            )
        item, why = self.resolved.items.item_for(line.sku)
        if item is None:
            what = f"SKU '{line.sku}'" if line.sku else "no SKU"
            fix = (
                f"map it under items.overrides ({line.sku}: <X3 item>)"
                if line.sku
                else "set items.without_sku"
            )
            _fail(
                FailureReason.ITEM_NOT_MAPPED,
                f"{where}.sku",
                f"line '{line.name}' ({what}) has no X3 item: {why}.",
                f"{fix} under {self.mapping_levels()}, then replay the order.",
            )
        unit_price = self.money(line.original_unit_price_set, f"{where}.original_unit_price_set")
        self.add_line(
            LineKind.GOODS,
            line.name,
            unit_price,
            tax_code,
            self.resolved.accounts.goods,
            where,
            item=item,
            quantity=Decimal(line.quantity) if quantity is None else quantity,
        )

    def add_shipping(self, shipping: ShippingLine, where: str) -> None:
        tax_code = self.tax_code_for(shipping.tax_lines, f"{where}.tax_lines", f"shipping '{shipping.title}'")
        price = self.money(shipping.original_price_set, f"{where}.original_price_set")
        for position, allocation in enumerate(shipping.discount_allocations):
            price -= self.money(allocation.allocated_amount_set, f"{where}.discount_allocations[{position}]")
        self.add_line(
            LineKind.SHIPPING, shipping.title, price, tax_code, self.resolved.accounts.shipping, where
        )

    def add_duty(self, amount: Decimal, where: str, line_name: str) -> None:
        account = self.resolved.accounts.duties
        if account is None:
            _fail(
                FailureReason.MAPPING,
                "accounts.duties",
                f"order {self.order.name} carries duties ({where}) and the mapping has no duties account.",
                f"set accounts.duties under {self.mapping_levels()}, then replay the order.",
            )
        code = self.untaxed_code(f"{where}.duties")
        self.add_line(LineKind.DUTY, f"Duties {line_name}", amount, code, account, f"{where}.duties")

    def discount_label(self, index: int) -> str:
        application = next((a for a in self.order.discount_applications if a.index == index), None)
        return f"Discount {_discount_value(application)}".strip()

    # -- taxes ---------------------------------------------------------------------------------------------
    def untaxed_code(self, where: str) -> str:
        code = self.resolved.untaxed
        if code is None:
            _fail(
                FailureReason.TAX_NOT_MAPPED,
                where,
                f"{where} carries no Shopify tax and the mapping has no X3 code for untaxed amounts.",
                "set untaxed: <a zero-rate X3 tax code, e.g. EXO> under defaults.",
            )
        self.rates.setdefault(code, _ZERO)
        self.rules.setdefault(code, None)
        return code

    def tax_code_for(self, tax_lines: Sequence[TaxLine], where: str, what: str) -> str:
        """The X3 tax code of a line's Shopify tax lines; records Shopify's tax for the reconciliation."""
        code = self.resolve_tax_code(tax_lines, where, what)
        if tax_lines:
            self.shopify_tax[code] += self.money(tax_lines[0].price_set, f"{where}[0].price_set")
            self.shopify_tax_lines[code] += 1
        return code

    def resolve_tax_code(self, tax_lines: Sequence[TaxLine], where: str, what: str) -> str:
        """The X3 tax code of a line's Shopify tax lines, without recording any tax (credit memos take the
        tax from the refund, not from the order line)."""
        if not tax_lines:
            return self.untaxed_code(where)
        if len(tax_lines) > 1:
            listed = ", ".join(f"{tax_line.title} {_rate(tax_line)}" for tax_line in tax_lines)
            _fail(
                FailureReason.TAX_NOT_MAPPED,
                where,
                f"{what} has {len(tax_lines)} tax lines ({listed}); an X3 line takes one tax code.",
                "stacked taxes (e.g. state + county) have no single X3 code: post this order by hand.",
            )
        tax_line = tax_lines[0]
        rate = _rate(tax_line)
        rule = self.resolved.tax_rule_for(tax_line.title, rate)
        if rule is None:
            _fail(
                FailureReason.TAX_NOT_MAPPED,
                f"{where}[0]",
                f"Shopify tax line '{tax_line.title}' at rate {rate} ({what}) has no X3 tax code.",
                f'add {{title: {tax_line.title}, rate: "{rate}", code: <X3 tax code>}} to taxes under '
                f"{self.mapping_levels()}, then replay the order.",
            )
        self.rates.setdefault(rule.code, rule.rate)
        self.rules.setdefault(rule.code, rule)
        return rule.code

    def x3_taxes(self) -> dict[str, tuple[Decimal, Decimal]]:
        """(base, tax) per tax code as X3 computes them for the invoice's price type."""
        bases: dict[str, Decimal] = defaultdict(Decimal)
        grosses: dict[str, Decimal] = defaultdict(Decimal)
        for line in self.lines:
            bases[line.tax_code] += line.net_amount
            grosses[line.tax_code] += line.amount
        if self.included:
            return {code: (base, grosses[code] - base) for code, base in bases.items()}
        return {
            code: (base, round_money(base * self.rates[code], self.currency)) for code, base in bases.items()
        }

    def check_tax_differences(self, taxes: dict[str, tuple[Decimal, Decimal]]) -> None:
        """X3's tax per code may differ from Shopify's only by rounding: half a minor unit per rounding made
        (Shopify rounds per line item; X3 per line with prices including tax, else once per code)."""
        half_unit = Decimal(1).scaleb(-minor_units(self.currency)) / 2
        for code, (_base, x3_tax) in taxes.items():
            shopify_tax = self.shopify_tax.get(code, _ZERO)
            x3_roundings = sum(1 for line in self.lines if line.tax_code == code) if self.included else 1
            if abs(x3_tax - shopify_tax) > (self.shopify_tax_lines[code] + x3_roundings) * half_unit:
                _fail(
                    FailureReason.AMOUNT_MISMATCH,
                    f"taxes.{code}",
                    f"X3 would compute {x3_tax} {self.currency} of tax {code} at rate {self.rates[code]}; "
                    f"Shopify charged {shopify_tax}: more than rounding can explain.",
                    "check that the Shopify tax lines mapped to this code have this rate, and that the X3 "
                    "code's rate is the same.",
                    shopify_amount=shopify_tax,
                    invoice_amount=x3_tax,
                    currency=self.currency,
                )

    def add_tax_rounding(self) -> None:
        """Prices excluding tax: X3 rounds tax once per code, Shopify per line; post the difference."""
        taxes = self.x3_taxes()
        self.check_tax_differences(taxes)
        difference = sum((tax - self.shopify_tax.get(code, _ZERO) for code, (_, tax) in taxes.items()), _ZERO)
        if not difference:
            return
        account = self.resolved.accounts.rounding
        if account is None or self.resolved.untaxed is None:
            gross = sum((base + tax for base, tax in taxes.values()), _ZERO)
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                "accounts.rounding",
                f"X3 rounds tax once per tax code, Shopify per line: the invoice would total {gross} "
                f"{self.currency}, Shopify's total is {gross - difference}, and no rounding account is set.",
                f"set accounts.rounding and untaxed (a zero-rate code) under {self.mapping_levels()}.",
                shopify_amount=gross - difference,
                invoice_amount=gross,
                currency=self.currency,
            )
        # X3 charges `difference` more tax than Shopify: a discount-type line gives it back (or vice versa).
        self.add_line(
            LineKind.ROUNDING,
            "Tax rounding difference",
            abs(difference),
            self.untaxed_code("rounding"),
            account,
            "rounding",
            line_type=X3LineType.DISCOUNT if difference > 0 else X3LineType.SHIPPING,
        )

    # -- totals and reconciliation -------------------------------------------------------------------------
    def finish(
        self, expected: Decimal | None = None, field: str = "total_price_set", day: date | None = None
    ) -> InvoiceDraft:
        """Totals as X3 computes them, reconciled to ``expected`` (default: the order's total) at ``field``,
        dated ``day`` (default: the order's processed day)."""
        taxes = self.x3_taxes()
        if self.included:
            self.check_tax_differences(taxes)
        tax_totals = tuple(
            TaxTotal(
                code=code,
                rate=self.rates[code],
                base=base,
                amount=tax,
                shopify_amount=self.shopify_tax.get(code, _ZERO),
                account=self.resolved.tax_account(self.rules[code]),
            )
            for code, (base, tax) in taxes.items()
        )
        net = sum((tax.base for tax in tax_totals), _ZERO)
        tax = sum((tax.amount for tax in tax_totals), _ZERO)
        totals = InvoiceTotals(net=net, tax=tax, gross=net + tax)
        shopify_total = self.money(self.order.total_price_set, field) if expected is None else expected
        if totals.gross != shopify_total:
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                field,
                f"the invoice totals {totals.gross} {self.currency} but Shopify's order total is "
                f"{shopify_total} (difference {totals.gross - shopify_total}); invoice lines: "
                f"{_breakdown(self.lines)}, tax {tax}.",
                "compare with the order in Shopify (tips, additional fees and order edits are not invoiced); "
                "post it by hand if it is right.",
                shopify_amount=shopify_total,
                invoice_amount=totals.gross,
                currency=self.currency,
            )
        invoice_day = day or self.order.processed_at.astimezone(self.zone).date()
        draft = InvoiceDraft(
            store=self.store,
            order_id=self.order.id,
            order_name=self.order.name,
            header=InvoiceHeader(
                customer=self.customer,
                invoice_type=self.resolved.invoice_type,
                site=self.resolved.site,
                invoice_date=invoice_day,
                accounting_date=invoice_day,
                currency=self.currency,
                prices_include_tax=self.included,
                reference=invoice_reference(self.store, self.order),
            ),
            lines=tuple(self.lines),
            taxes=tax_totals,
            totals=totals,
            shopify_total=shopify_total,
            shopify_tax=sum(self.shopify_tax.values(), _ZERO),
            receivable_account=self.resolved.accounts.receivable,
            ready_to_post=self.resolved.posting is PostingMoment.ON_CREATE
            or (self.order.display_financial_status or "") in PAID_STATUSES,
        )
        gl = draft.gl_lines()
        debit, credit = sum((g.debit for g in gl), _ZERO), sum((g.credit for g in gl), _ZERO)
        if debit != credit:
            _fail(
                FailureReason.AMOUNT_MISMATCH,
                "gl_lines",
                f"the GL view does not balance: debit {debit}, credit {credit} {self.currency}.",
                "this is a defect of the invoice builder: report it with the order payload.",
            )
        return draft


_LINE_TYPES = {
    LineKind.GOODS: X3LineType.GOODS,
    LineKind.DISCOUNT: X3LineType.DISCOUNT,
    LineKind.SHIPPING: X3LineType.SHIPPING,
    LineKind.DUTY: X3LineType.SHIPPING,
    LineKind.ROUNDING: X3LineType.SHIPPING,
}


def _rate(tax_line: TaxLine) -> Decimal | None:
    if tax_line.rate is not None:
        return tax_line.rate
    if tax_line.rate_percentage is not None:
        return tax_line.rate_percentage / 100
    return None


def _discount_value(application: DiscountApplication | None) -> str:
    if application is None:
        return ""
    if application.value_percentage is not None:
        value = f"{_plain(application.value_percentage)}%"
    elif application.value_amount is not None:
        money = application.value_amount
        value = f"{_amount_text(money.amount, money.currency_code)} {money.currency_code}"
    else:
        value = ""
    scope = "order" if application.target_selection == "ALL" else "line"
    return f"{value} ({scope})".strip()


def _breakdown(lines: Iterable[InvoiceLine]) -> str:
    sums: dict[LineKind, Decimal] = defaultdict(Decimal)
    for line in lines:
        sums[line.kind] += line.amount
    return ", ".join(f"{kind.value} {amount}" for kind, amount in sums.items())
