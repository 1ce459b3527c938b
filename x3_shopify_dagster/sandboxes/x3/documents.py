"""Business rules of the sandbox's sales invoices (GESSIH) and deliveries (GESSDH).

Transport-free: the SOAP publications turn payloads into the drafts below and map `BusinessError` messages to
`CAdxResultXml` type-3 messages. Every message names the X3 field and the offending value.

Amounts (documented in docs/x3-sandbox.md): each line is rounded to the currency's minor unit, half-up; tax is
computed per tax code on the sum of line bases; totals are sums of rounded figures, so the GL entry balances.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from x3_shopify_dagster.sandboxes.x3.records import (
    TRSTYP_DELIVERY,
    VCRTYP_DELIVERY,
    Delivery,
    DeliveryLine,
    GlEntry,
    GlEntryLine,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceType,
    LineType,
    PriceType,
    TaxTotal,
)
from x3_shopify_dagster.sandboxes.x3.seed import (
    COGS_ACCOUNT,
    RECEIVABLE_ACCOUNT,
    STOCK_VARIATION_ACCOUNT,
)
from x3_shopify_dagster.sandboxes.x3.state import (
    CHART_OF_ACCOUNTS,
    COST_CENTRE_DIMENSION,
    CURRENCY_DECIMALS,
    FolderState,
    Tables,
    period_of,
)

# Invoice types (SIVTYP) live in the folder's TABSIVTYP table (seed.py); these are the defaults per category.
DEFAULT_SALES_INVOICE_TYPE = {InvoiceType.INVOICE: "INV", InvoiceType.CREDIT_MEMO: "CRN"}
DEFAULT_LINE_ACCOUNTS = {LineType.GOODS: "706000", LineType.SHIPPING: "708500", LineType.DISCOUNT: "709000"}
LINE_NUMBER_STEP = 1000  # X3 numbers document lines 1000, 2000, ...


class BusinessError(Exception):
    """One or more rule violations; each message reads "FIELD: what is wrong with 'value'"."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class _Problems:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.messages.append(f"{field}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise BusinessError(self.messages)


def money(amount: Decimal, currency: str) -> Decimal:
    exponent = Decimal(1).scaleb(-CURRENCY_DECIMALS.get(currency, 2))
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)


# ============================================================================================== invoices
@dataclass(frozen=True)
class InvoiceLineDraft:
    line_type: LineType
    item: str
    description: str
    quantity: Decimal
    gross_price: Decimal
    tax_code: str
    account: str = ""  # "" = the default account of the line type
    dimension_type: str = ""
    cost_centre: str = ""


@dataclass(frozen=True)
class InvoiceDraft:
    customer: str
    site: str
    lines: tuple[InvoiceLineDraft, ...]
    sales_invoice_type: str = ""
    invoice_type: InvoiceType | None = None
    invoice_date: date | None = None
    accounting_date: date | None = None
    currency: str = ""
    reference: str = ""
    origin_invoice: str = ""
    price_type: PriceType = PriceType.EXCLUDING_TAX


def draft_from_invoice(invoice: Invoice) -> InvoiceDraft:
    """The draft an existing invoice was built from (the starting point of `modify`)."""
    lines = tuple(
        InvoiceLineDraft(line.line_type, line.item, line.description, line.quantity, line.gross_price,
                         line.tax_code, line.account, line.dimension_type, line.cost_centre)
        for line in invoice.lines)
    return InvoiceDraft(
        customer=invoice.customer, site=invoice.site, lines=lines, sales_invoice_type=invoice.sales_invoice_type,
        invoice_type=invoice.invoice_type, invoice_date=invoice.invoice_date,
        accounting_date=invoice.accounting_date, currency=invoice.currency, reference=invoice.reference,
        origin_invoice=invoice.origin_invoice, price_type=invoice.price_type)


def _check_account(tables: Tables, problems: _Problems, field: str, account: str, day: date) -> None:
    record = tables.accounts.get((CHART_OF_ACCOUNTS, account))
    if record is None:
        problems.add(field, f"account '{account}' does not exist in chart {CHART_OF_ACCOUNTS}")
    elif not record.active:
        problems.add(field, f"account '{account}' is inactive")
    elif not record.usable_on(day):
        problems.add(field, f"account '{account}' is not valid on {day.isoformat()} "
                            f"(validity {record.valid_from} to {record.valid_to})")


def _check_period(state: FolderState, problems: _Problems, field: str, day: date) -> None:
    if state.is_period_closed(day):
        problems.add(field, f"period {period_of(day)} is closed ({day.isoformat()})")


def _resolve_invoice_type(tables: Tables, draft: InvoiceDraft, problems: _Problems) -> tuple[InvoiceType, str]:
    if draft.sales_invoice_type:
        record = tables.invoice_types.get(draft.sales_invoice_type)
        if record is None:
            problems.add("SIVTYP", f"invoice type '{draft.sales_invoice_type}' does not exist")
            return draft.invoice_type or InvoiceType.INVOICE, draft.sales_invoice_type
        if not record.active:
            problems.add("SIVTYP", f"invoice type '{draft.sales_invoice_type}' is inactive")
        category = record.category
        if draft.invoice_type is not None and draft.invoice_type != category:
            problems.add("INVTYP", f"category {int(draft.invoice_type)} does not match invoice type "
                                   f"'{draft.sales_invoice_type}' (category {int(category)})")
        return category, draft.sales_invoice_type
    invoice_type = draft.invoice_type or InvoiceType.INVOICE
    return invoice_type, DEFAULT_SALES_INVOICE_TYPE[invoice_type]


def _build_invoice(state: FolderState, draft: InvoiceDraft, *, number: str | None,
                   editing: Invoice | None = None) -> Invoice:
    """Validate a draft and compute its amounts; `number` None allocates a new one."""
    tables = state.tables
    problems = _Problems()
    invoice_type, sales_invoice_type = _resolve_invoice_type(tables, draft, problems)

    customer = tables.customers.get(draft.customer)
    if not draft.customer:
        problems.add("BPCINV", "customer is mandatory")
    elif customer is None:
        problems.add("BPCINV", f"customer '{draft.customer}' does not exist")
    elif not customer.active:
        problems.add("BPCINV", f"customer '{draft.customer}' is inactive")
    if not draft.site:
        problems.add("SALFCY", "sales site is mandatory")
    elif draft.site not in tables.sites:
        problems.add("SALFCY", f"site '{draft.site}' does not exist")
    currency = draft.currency or (customer.currency if customer else "EUR")
    if currency not in CURRENCY_DECIMALS:
        problems.add("CUR", f"currency '{currency}' does not exist")
        currency = "EUR"  # keep computing so that every other problem is reported too
    invoice_date = draft.invoice_date or state.today()
    accounting_date = draft.accounting_date or invoice_date
    _check_period(state, problems, "ACCDAT", accounting_date)

    if invoice_type == InvoiceType.CREDIT_MEMO:
        _check_credit_memo_origin(tables, problems, draft, editing)
    elif draft.origin_invoice:
        problems.add("SIHORINUM", f"only a credit memo has an origin invoice (got '{draft.origin_invoice}')")

    if not draft.lines:
        problems.add("SIH4_1", "an invoice needs at least one line")
    lines = tuple(
        _build_line(tables, problems, index, line, draft, accounting_date, currency)
        for index, line in enumerate(draft.lines, 1))
    tax_totals = _tax_totals(tables, lines, draft.price_type, currency)
    amount_excl_tax = sum((line.amount_excl_tax for line in lines), Decimal(0))
    amount_incl_tax = amount_excl_tax + sum((tax.amount for tax in tax_totals), Decimal(0))
    if lines and not problems.messages and amount_incl_tax < 0:
        problems.add("AMTATI", f"the total {amount_incl_tax} is negative: discounts exceed the goods")
    if invoice_type == InvoiceType.CREDIT_MEMO and not problems.messages:
        _check_credit_not_exceeded(tables, problems, draft.origin_invoice, amount_incl_tax, editing)
    problems.raise_if_any()

    now = state.now()
    prefix = DEFAULT_SALES_INVOICE_TYPE[invoice_type]
    return Invoice(
        number=number or state.next_number(prefix, invoice_date), invoice_type=invoice_type,
        sales_invoice_type=sales_invoice_type, customer=draft.customer, invoice_date=invoice_date,
        accounting_date=accounting_date, currency=currency, site=draft.site, reference=draft.reference,
        origin_invoice=draft.origin_invoice, price_type=draft.price_type, status=InvoiceStatus.NOT_POSTED,
        lines=lines, tax_totals=tax_totals, amount_excl_tax=amount_excl_tax, amount_incl_tax=amount_incl_tax,
        gl_entry="", created_at=editing.created_at if editing else now, updated_at=now)


def _build_line(tables: Tables, problems: _Problems, index: int, draft_line: InvoiceLineDraft,
                draft: InvoiceDraft, accounting_date: date, currency: str) -> InvoiceLine:
    def field(name: str) -> str:
        return f"{name} (line {index})"

    if draft_line.line_type == LineType.GOODS and not draft_line.item:
        problems.add(field("ITMREF"), "a goods line needs an item")
    if draft_line.item:
        item = tables.items.get(draft_line.item)
        if item is None:
            problems.add(field("ITMREF"), f"item '{draft_line.item}' does not exist")
        elif not item.active:
            problems.add(field("ITMREF"), f"item '{draft_line.item}' is inactive")
    if draft_line.quantity <= 0:
        problems.add(field("QTY"), f"quantity must be positive, got {draft_line.quantity}")
    if draft_line.gross_price < 0:
        problems.add(field("GROPRI"), f"price cannot be negative, got {draft_line.gross_price} "
                                      "(discount lines reduce the total through LINTYP 3)")
    tax = tables.tax_codes.get(draft_line.tax_code)
    if not draft_line.tax_code:
        problems.add(field("VACITM"), "tax code is mandatory")
    elif tax is None:
        problems.add(field("VACITM"), f"tax code '{draft_line.tax_code}' does not exist")
    elif not tax.active:
        problems.add(field("VACITM"), f"tax code '{draft_line.tax_code}' is inactive")
    account = draft_line.account or DEFAULT_LINE_ACCOUNTS[draft_line.line_type]
    _check_account(tables, problems, field("ACC"), account, accounting_date)
    dimension_type = draft_line.dimension_type or (COST_CENTRE_DIMENSION if draft_line.cost_centre else "")
    if draft_line.cost_centre:
        dimension = tables.dimensions.get((dimension_type, draft_line.cost_centre))
        if dimension is None:
            problems.add(field("CCE"), f"cost centre '{draft_line.cost_centre}' does not exist "
                                       f"in dimension {dimension_type}")
        elif not dimension.active:
            problems.add(field("CCE"), f"cost centre '{draft_line.cost_centre}' is inactive")
        elif dimension.site and draft.site in tables.sites and dimension.site != draft.site:
            problems.add(field("CCE"), f"cost centre '{draft_line.cost_centre}' is restricted to site "
                                       f"{dimension.site}, not '{draft.site}'")
    elif draft_line.dimension_type:
        problems.add(field("CCE"), f"dimension {draft_line.dimension_type} given without a cost centre")

    rate = tax.rate if tax else Decimal(0)
    sign = -1 if draft_line.line_type == LineType.DISCOUNT else 1
    gross = sign * money(draft_line.quantity * draft_line.gross_price, currency)
    if draft.price_type == PriceType.INCLUDING_TAX:
        amount_incl_tax = gross
        amount_excl_tax = money(gross / (1 + rate), currency)
    else:
        amount_excl_tax = gross
        amount_incl_tax = gross + money(gross * rate, currency)
    return InvoiceLine(
        line_number=index * LINE_NUMBER_STEP, line_type=draft_line.line_type, item=draft_line.item,
        description=draft_line.description, quantity=draft_line.quantity, gross_price=draft_line.gross_price,
        tax_code=draft_line.tax_code, account=account, dimension_type=dimension_type,
        cost_centre=draft_line.cost_centre, amount_excl_tax=amount_excl_tax, amount_incl_tax=amount_incl_tax)


def _tax_totals(tables: Tables, lines: tuple[InvoiceLine, ...], price_type: PriceType,
                currency: str) -> tuple[TaxTotal, ...]:
    """Tax per tax code on the summed line bases; with prices incl. tax, tax = gross - base exactly."""
    bases: dict[str, Decimal] = defaultdict(Decimal)
    grosses: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        bases[line.tax_code] += line.amount_excl_tax
        grosses[line.tax_code] += line.amount_incl_tax
    totals = []
    for code, base in bases.items():
        tax = tables.tax_codes.get(code)
        rate = tax.rate if tax else Decimal(0)
        amount = grosses[code] - base if price_type == PriceType.INCLUDING_TAX else money(base * rate, currency)
        totals.append(TaxTotal(code, rate, base, amount))
    return tuple(totals)


def _check_credit_memo_origin(tables: Tables, problems: _Problems, draft: InvoiceDraft,
                              editing: Invoice | None) -> None:
    if not draft.origin_invoice:
        problems.add("SIHORINUM", "a credit memo needs its origin invoice")
        return
    origin = tables.invoices.get(draft.origin_invoice)
    if origin is None:
        problems.add("SIHORINUM", f"invoice '{draft.origin_invoice}' does not exist")
    elif origin.invoice_type != InvoiceType.INVOICE:
        problems.add("SIHORINUM", f"'{draft.origin_invoice}' is not an invoice")
    elif origin.status != InvoiceStatus.POSTED:
        problems.add("SIHORINUM", f"invoice '{draft.origin_invoice}' is not posted: modify or delete it instead")
    elif origin.customer != draft.customer:
        problems.add("SIHORINUM", f"invoice '{draft.origin_invoice}' belongs to customer {origin.customer}, "
                                  f"not '{draft.customer}'")


def _check_credit_not_exceeded(tables: Tables, problems: _Problems, origin_number: str, amount: Decimal,
                               editing: Invoice | None) -> None:
    origin = tables.invoices[origin_number]
    already = sum((memo.amount_incl_tax for memo in tables.invoices.values()
                   if memo.origin_invoice == origin_number and memo.invoice_type == InvoiceType.CREDIT_MEMO
                   and (editing is None or memo.number != editing.number)), Decimal(0))
    if already + amount > origin.amount_incl_tax:
        problems.add("AMTATI", f"credit {amount} plus earlier credits {already} exceed invoice "
                               f"{origin_number} total {origin.amount_incl_tax}")


def create_invoice(state: FolderState, draft: InvoiceDraft) -> Invoice:
    with state.lock:
        invoice = _build_invoice(state, draft, number=None)
        state.tables.invoices[invoice.number] = invoice
        return invoice


def _existing_invoice(state: FolderState, number: str, action: str) -> Invoice:
    invoice = state.tables.invoices.get(number)
    if invoice is None:
        raise BusinessError([f"NUM: invoice '{number}' does not exist"])
    if invoice.status == InvoiceStatus.POSTED:
        raise BusinessError([f"NUM: invoice '{number}' is posted: {action} is not allowed "
                             "(issue a credit memo instead)"])
    return invoice


def modify_invoice(state: FolderState, number: str, draft: InvoiceDraft) -> Invoice:
    with state.lock:
        existing = _existing_invoice(state, number, "modification")
        invoice = _build_invoice(state, draft, number=number, editing=existing)
        state.tables.invoices[number] = invoice
        return invoice


def delete_invoice(state: FolderState, number: str) -> Invoice:
    with state.lock:
        invoice = _existing_invoice(state, number, "deletion")
        linked = sorted(d.number for d in state.tables.deliveries.values() if d.invoice_number == number)
        if linked:
            raise BusinessError([f"NUM: invoice '{number}' has deliveries {', '.join(linked)}: delete them first"])
        del state.tables.invoices[number]
        return invoice


def post_invoice(state: FolderState, number: str) -> Invoice:
    """Validation (posting): re-check the references, write a balanced GL entry, STA 1 → 3, then immutable."""
    with state.lock:
        invoice = state.tables.invoices.get(number)
        if invoice is None:
            raise BusinessError([f"NUM: invoice '{number}' does not exist"])
        if invoice.status == InvoiceStatus.POSTED:
            raise BusinessError([f"NUM: invoice '{number}' is already posted (GL entry {invoice.gl_entry})"])
        # Master data may have changed since the invoice was saved: posting re-runs every check.
        _build_invoice(state, draft_from_invoice(invoice), number=number, editing=invoice)
        entry = _invoice_gl_entry(state, invoice)
        state.tables.gl_entries[(entry.entry_type, entry.number)] = entry
        posted = replace(invoice, status=InvoiceStatus.POSTED, gl_entry=entry.number, updated_at=state.now())
        state.tables.invoices[number] = posted
        return posted


def _invoice_gl_entry(state: FolderState, invoice: Invoice) -> GlEntry:
    # Signed "credit amounts": positive is a credit, negative a debit. They sum to zero by construction:
    # -AMTATI + Σ line bases + Σ taxes = 0. A credit memo mirrors every line.
    mirror = -1 if invoice.invoice_type == InvoiceType.CREDIT_MEMO else 1
    movements: list[tuple[str, str, Decimal, str]] = [
        (RECEIVABLE_ACCOUNT, "", -invoice.amount_incl_tax, f"Customer {invoice.customer}")]
    movements += [(line.account, line.cost_centre, line.amount_excl_tax, line.description or line.item
                   or line.line_type.name.lower()) for line in invoice.lines]
    movements += [(state.tables.tax_codes[tax.tax_code].account, "", tax.amount, f"Tax {tax.tax_code}")
                  for tax in invoice.tax_totals]
    lines = []
    for account, cost_centre, credit_amount, description in movements:
        signed = credit_amount * mirror
        if signed == 0:
            continue
        lines.append(GlEntryLine(len(lines) + 1, account, cost_centre, max(-signed, Decimal(0)),
                                 max(signed, Decimal(0)), description))
    now = state.now()
    return GlEntry(entry_type="SIH", number=state.next_number("JE", invoice.accounting_date), journal="SAL",
                   accounting_date=invoice.accounting_date, status=1, reference=invoice.reference,
                   origin_document=invoice.number, currency=invoice.currency, lines=tuple(lines),
                   created_at=now, updated_at=now)


# ============================================================================================== deliveries
@dataclass(frozen=True)
class DeliveryLineDraft:
    item: str
    quantity: Decimal


@dataclass(frozen=True)
class DeliveryDraft:
    customer: str
    site: str
    lines: tuple[DeliveryLineDraft, ...]
    ship_date: date | None = None
    invoice_number: str = ""
    reference: str = ""
    tracking: str = ""


def draft_from_delivery(delivery: Delivery) -> DeliveryDraft:
    return DeliveryDraft(
        customer=delivery.customer, site=delivery.site,
        lines=tuple(DeliveryLineDraft(line.item, line.quantity) for line in delivery.lines),
        ship_date=delivery.ship_date, invoice_number=delivery.invoice_number, reference=delivery.reference,
        tracking=delivery.tracking)


def _build_delivery(state: FolderState, draft: DeliveryDraft, *, number: str | None,
                    editing: Delivery | None = None) -> Delivery:
    tables = state.tables
    problems = _Problems()
    customer = tables.customers.get(draft.customer)
    if not draft.customer:
        problems.add("BPCORD", "customer is mandatory")
    elif customer is None:
        problems.add("BPCORD", f"customer '{draft.customer}' does not exist")
    elif not customer.active:
        problems.add("BPCORD", f"customer '{draft.customer}' is inactive")
    if not draft.site:
        problems.add("STOFCY", "shipment site is mandatory")
    elif draft.site not in tables.sites:
        problems.add("STOFCY", f"site '{draft.site}' does not exist")
    ship_date = draft.ship_date or state.today()
    _check_period(state, problems, "SHIDAT", ship_date)
    invoiced: dict[str, Decimal] | None = None
    if draft.invoice_number:
        invoice = tables.invoices.get(draft.invoice_number)
        if invoice is None:
            problems.add("SIHNUM", f"invoice '{draft.invoice_number}' does not exist")
        elif invoice.invoice_type != InvoiceType.INVOICE:
            problems.add("SIHNUM", f"'{draft.invoice_number}' is a credit memo, not an invoice")
        elif invoice.customer != draft.customer:
            problems.add("SIHNUM", f"invoice '{draft.invoice_number}' belongs to customer {invoice.customer}, "
                                   f"not '{draft.customer}'")
        else:
            invoiced = _deliverable_quantities(tables, invoice, editing)
    if not draft.lines:
        problems.add("SDH1_4", "a delivery needs at least one line")
    requested: dict[str, Decimal] = defaultdict(Decimal)
    for index, line in enumerate(draft.lines, 1):
        item = tables.items.get(line.item)
        if item is None:
            problems.add(f"ITMREF (line {index})", f"item '{line.item}' does not exist")
        elif not item.active:
            problems.add(f"ITMREF (line {index})", f"item '{line.item}' is inactive")
        if line.quantity <= 0:
            problems.add(f"QTY (line {index})", f"quantity must be positive, got {line.quantity}")
        requested[line.item] += line.quantity
    if invoiced is not None:
        for item_code, quantity in requested.items():
            remaining = invoiced.get(item_code)
            if item_code not in tables.items:
                continue  # already reported
            if remaining is None:
                problems.add("ITMREF", f"item '{item_code}' is not on invoice {draft.invoice_number}")
            elif quantity > remaining:
                problems.add("QTY", f"{quantity} x '{item_code}' exceeds the {remaining} left to deliver "
                                    f"on invoice {draft.invoice_number}")
    problems.raise_if_any()
    now = state.now()
    return Delivery(
        number=number or state.next_number("SDH", ship_date), customer=draft.customer, ship_date=ship_date,
        site=draft.site, invoice_number=draft.invoice_number, reference=draft.reference, tracking=draft.tracking,
        validated=False,
        lines=tuple(DeliveryLine(index * LINE_NUMBER_STEP, line.item, line.quantity)
                    for index, line in enumerate(draft.lines, 1)),
        gl_entry="", created_at=editing.created_at if editing else now, updated_at=now)


def _deliverable_quantities(tables: Tables, invoice: Invoice, editing: Delivery | None) -> dict[str, Decimal]:
    """Invoiced goods quantities per item, less what other deliveries of the invoice already carry."""
    left: dict[str, Decimal] = defaultdict(Decimal)
    for line in invoice.lines:
        if line.line_type == LineType.GOODS:
            left[line.item] += line.quantity
    for delivery in tables.deliveries.values():
        if delivery.invoice_number == invoice.number and (editing is None or delivery.number != editing.number):
            for line in delivery.lines:
                left[line.item] -= line.quantity
    return dict(left)


def _allocate(state: FolderState, delivery: Delivery, sign: int) -> None:
    for line in delivery.lines:
        state.adjust_stock(line.item, delivery.site, allocated=sign * line.quantity)


def create_delivery(state: FolderState, draft: DeliveryDraft) -> Delivery:
    """A delivery not yet validated (CFMFLG 1): its quantities are allocated (SALSTO), stock does not move."""
    with state.lock:
        delivery = _build_delivery(state, draft, number=None)
        state.tables.deliveries[delivery.number] = delivery
        _allocate(state, delivery, +1)
        return delivery


def _existing_delivery(state: FolderState, number: str, action: str) -> Delivery:
    delivery = state.tables.deliveries.get(number)
    if delivery is None:
        raise BusinessError([f"SDHNUM: delivery '{number}' does not exist"])
    if delivery.validated:
        raise BusinessError([f"SDHNUM: delivery '{number}' is validated: {action} is not allowed"])
    return delivery


def modify_delivery(state: FolderState, number: str, draft: DeliveryDraft) -> Delivery:
    with state.lock:
        existing = _existing_delivery(state, number, "modification")
        delivery = _build_delivery(state, draft, number=number, editing=existing)
        _allocate(state, existing, -1)
        _allocate(state, delivery, +1)
        state.tables.deliveries[number] = delivery
        return delivery


def delete_delivery(state: FolderState, number: str) -> Delivery:
    with state.lock:
        delivery = _existing_delivery(state, number, "deletion")
        _allocate(state, delivery, -1)
        del state.tables.deliveries[number]
        return delivery


def validate_delivery(state: FolderState, number: str) -> Delivery:
    """CFMFLG 1 → 2: STOJOU issue rows (negative QTYSTU), ITMMVT.PHYSTO down, COGS at standard cost."""
    with state.lock:
        tables = state.tables
        delivery = tables.deliveries.get(number)
        if delivery is None:
            raise BusinessError([f"SDHNUM: delivery '{number}' does not exist"])
        if delivery.validated:
            raise BusinessError([f"SDHNUM: delivery '{number}' is already validated"])
        problems = _Problems()
        _check_period(state, problems, "SHIDAT", delivery.ship_date)
        for account in (COGS_ACCOUNT, STOCK_VARIATION_ACCOUNT):
            _check_account(tables, problems, "ACC", account, delivery.ship_date)
        needed: dict[str, Decimal] = defaultdict(Decimal)
        for line in delivery.lines:
            needed[line.item] += line.quantity
        if not state.allow_negative_stock:
            for item_code, quantity in needed.items():
                physical = state.stock(item_code, delivery.site).physical
                if physical < quantity:
                    problems.add("QTY", f"insufficient stock of '{item_code}' at {delivery.site}: "
                                        f"{physical} available, {quantity} to deliver")
        problems.raise_if_any()

        for line in delivery.lines:
            state.record_movement(
                site=delivery.site, item=line.item, voucher_type=VCRTYP_DELIVERY, voucher_number=delivery.number,
                voucher_line=line.line_number, transaction_type=TRSTYP_DELIVERY, quantity=-line.quantity,
                posting_date=delivery.ship_date)
        _allocate(state, delivery, -1)
        entry = _cogs_entry(state, delivery)
        if entry is not None:
            tables.gl_entries[(entry.entry_type, entry.number)] = entry
        validated = replace(delivery, validated=True, gl_entry=entry.number if entry else "",
                            updated_at=state.now())
        tables.deliveries[number] = validated
        return validated


def _cogs_entry(state: FolderState, delivery: Delivery) -> GlEntry | None:
    lines: list[GlEntryLine] = []
    customer = state.tables.customers[delivery.customer]
    for line in delivery.lines:
        cost = money(line.quantity * state.tables.items[line.item].standard_cost, customer.currency)
        if cost == 0:
            continue
        description = f"{line.quantity} x {line.item}"
        lines.append(GlEntryLine(len(lines) + 1, COGS_ACCOUNT, "", cost, Decimal(0), description))
        lines.append(GlEntryLine(len(lines) + 1, STOCK_VARIATION_ACCOUNT, "", Decimal(0), cost, description))
    if not lines:
        return None
    now = state.now()
    return GlEntry(entry_type="STK", number=state.next_number("JE", delivery.ship_date), journal="STK",
                   accounting_date=delivery.ship_date, status=1, reference=delivery.reference,
                   origin_document=delivery.number, currency=customer.currency, lines=tuple(lines),
                   created_at=now, updated_at=now)
