"""One folder's tables, guarded by a lock, plus the helpers tests and the demo use to move the world.

Request handlers (on the server's event-loop thread) and tests (on their own thread) both go through
`FolderState.lock`; every row is an immutable record, so snapshots returned here are safe to keep.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from x3_shopify_dagster.sandboxes.x3.clock import Clock
from x3_shopify_dagster.sandboxes.x3.records import (
    TRSTYP_MISC_ISSUE,
    TRSTYP_MISC_RECEIPT,
    VCRTYP_MISC_ISSUE,
    VCRTYP_MISC_RECEIPT,
    Customer,
    CustomerAddress,
    Delivery,
    Dimension,
    GlAccount,
    GlEntry,
    Invoice,
    Item,
    ProductSiteStock,
    SalesInvoiceType,
    Site,
    StockMovement,
    TaxCode,
)

CHART_OF_ACCOUNTS = "CHART1"
COST_CENTRE_DIMENSION = "CCT"
CUSTOMER_ADDRESS_TYPE = 1
CURRENCY_DECIMALS = {"EUR": 2, "USD": 2, "GBP": 2}


@dataclass
class Tables:
    """The folder's data. Only touch it while holding `FolderState.lock`."""

    customers: dict[str, Customer] = field(default_factory=dict)
    addresses: dict[tuple[int, str, str], CustomerAddress] = field(default_factory=dict)
    accounts: dict[tuple[str, str], GlAccount] = field(default_factory=dict)
    dimensions: dict[tuple[str, str], Dimension] = field(default_factory=dict)
    tax_codes: dict[str, TaxCode] = field(default_factory=dict)
    invoice_types: dict[str, SalesInvoiceType] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    movements: list[StockMovement] = field(default_factory=list)
    stock: dict[tuple[str, str], ProductSiteStock] = field(default_factory=dict)
    gl_entries: dict[tuple[str, str], GlEntry] = field(default_factory=dict)
    closed_periods: set[str] = field(default_factory=set)  # "YYYY-MM"
    counters: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


class FolderState:
    """Thread-safe state of one X3 folder."""

    def __init__(self, folder: str, clock: Clock, *, allow_negative_stock: bool = False) -> None:
        self.folder = folder
        self.lock = threading.RLock()
        self.tables = Tables()
        self.allow_negative_stock = allow_negative_stock
        self._clock = clock

    # ------------------------------------------------------------------------------------------ primitives
    def now(self) -> datetime:
        """UPDDATTIM resolution: UTC, whole seconds."""
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def today(self) -> date:
        return self.now().date()

    def next_number(self, prefix: str, day: date) -> str:
        """Document numbers like INV2611-00001: a counter per prefix and month."""
        with self.lock:
            counter_key = f"{prefix}{day:%y%m}"
            self.tables.counters[counter_key] += 1
            return f"{counter_key}-{self.tables.counters[counter_key]:05d}"

    def next_movement_sequence(self) -> int:
        with self.lock:
            self.tables.counters["MVTSEQ"] += 1
            return self.tables.counters["MVTSEQ"]

    def is_period_closed(self, day: date) -> bool:
        with self.lock:
            return period_of(day) in self.tables.closed_periods

    def adjust_stock(self, item: str, site: str, *, physical: Decimal = Decimal(0),
                     allocated: Decimal = Decimal(0)) -> ProductSiteStock:
        with self.lock:
            current = self.tables.stock.get((item, site)) or ProductSiteStock(
                item, site, Decimal(0), Decimal(0), self.now())
            updated = replace(current, physical=current.physical + physical,
                              allocated=current.allocated + allocated, updated_at=self.now())
            self.tables.stock[(item, site)] = updated
            return updated

    def record_movement(self, *, site: str, item: str, voucher_type: int, voucher_number: str, voucher_line: int,
                        transaction_type: int, quantity: Decimal, posting_date: date) -> StockMovement:
        """Append a STOJOU row and move ITMMVT.PHYSTO by the same signed quantity."""
        with self.lock:
            now = self.now()
            movement = StockMovement(
                site=site, item=item, voucher_type=voucher_type, voucher_number=voucher_number,
                voucher_line=voucher_line, sequence=self.next_movement_sequence(),
                transaction_type=transaction_type, quantity=quantity, posting_date=posting_date,
                created_at=now, updated_at=now)
            self.tables.movements.append(movement)
            self.adjust_stock(item, site, physical=quantity)
            return movement

    # ------------------------------------------------------------------------------------------ test helpers
    def add_customer(self, code: str, name: str, email: str, active: bool = True, *, currency: str = "EUR",
                     address_code: str = "MAIN") -> Customer:
        """Create a customer (BPCUSTOMER) with one address (BPADDRESS) holding its e-mail in WEB."""
        with self.lock:
            if code in self.tables.customers:
                raise ValueError(f"customer {code} already exists in folder {self.folder}")
            now = self.now()
            customer = Customer(code, name, code, active, currency, now)
            self.tables.customers[code] = customer
            self.tables.addresses[(CUSTOMER_ADDRESS_TYPE, code, address_code)] = CustomerAddress(
                CUSTOMER_ADDRESS_TYPE, code, address_code, "Main address", email, now)
            return customer

    def set_customer_active(self, code: str, flag: bool) -> Customer:
        with self.lock:
            customer = replace(self.tables.customers[code], active=flag, updated_at=self.now())
            self.tables.customers[code] = customer
            return customer

    def set_account_active(self, coa: str, acc: str, flag: bool) -> GlAccount:
        with self.lock:
            account = replace(self.tables.accounts[(coa, acc)], active=flag, updated_at=self.now())
            self.tables.accounts[(coa, acc)] = account
            return account

    def set_invoice_type_active(self, code: str, flag: bool) -> SalesInvoiceType:
        with self.lock:
            invoice_type = replace(self.tables.invoice_types[code], active=flag, updated_at=self.now())
            self.tables.invoice_types[code] = invoice_type
            return invoice_type

    def set_tax_code_active(self, code: str, flag: bool) -> TaxCode:
        with self.lock:
            tax_code = replace(self.tables.tax_codes[code], active=flag, updated_at=self.now())
            self.tables.tax_codes[code] = tax_code
            return tax_code

    def set_item_active(self, code: str, flag: bool) -> Item:
        with self.lock:
            item = replace(self.tables.items[code], active=flag, updated_at=self.now())
            self.tables.items[code] = item
            return item

    def set_dimension_active(self, die: str, cce: str, flag: bool) -> Dimension:
        with self.lock:
            dimension = replace(self.tables.dimensions[(die, cce)], active=flag, updated_at=self.now())
            self.tables.dimensions[(die, cce)] = dimension
            return dimension

    def close_period(self, period: str) -> None:
        """Close an accounting period, e.g. "2026-10": documents dated in it are refused."""
        datetime.strptime(period, "%Y-%m")  # noqa: DTZ007 - only validates the "YYYY-MM" shape
        with self.lock:
            self.tables.closed_periods.add(period)

    def reopen_period(self, period: str) -> None:
        with self.lock:
            self.tables.closed_periods.discard(period)

    def stock_receipt(self, item: str, site: str, qty: Decimal | int | str, *,
                      posting_date: date | None = None) -> StockMovement:
        """A miscellaneous receipt: a positive STOJOU row and a higher ITMMVT.PHYSTO."""
        quantity = Decimal(qty) if not isinstance(qty, Decimal) else qty
        if quantity <= 0:
            raise ValueError(f"receipt quantity must be positive, got {qty}")
        with self.lock:
            if item not in self.tables.items:
                raise KeyError(f"item {item} does not exist in folder {self.folder}")
            if site not in self.tables.sites:
                raise KeyError(f"site {site} does not exist in folder {self.folder}")
            day = posting_date or self.today()
            return self.record_movement(
                site=site, item=item, voucher_type=VCRTYP_MISC_RECEIPT,
                voucher_number=self.next_number("MR", day), voucher_line=1000,
                transaction_type=TRSTYP_MISC_RECEIPT, quantity=quantity, posting_date=day)

    def stock_adjustment(self, item: str, site: str, qty: Decimal | int | str, *,
                         posting_date: date | None = None) -> StockMovement:
        """A miscellaneous issue (negative) or a count correction (either sign): one signed STOJOU row."""
        quantity = Decimal(qty) if not isinstance(qty, Decimal) else qty
        if quantity == 0:
            raise ValueError("an adjustment of zero moves nothing")
        with self.lock:
            if item not in self.tables.items:
                raise KeyError(f"item {item} does not exist in folder {self.folder}")
            if site not in self.tables.sites:
                raise KeyError(f"site {site} does not exist in folder {self.folder}")
            if (not self.allow_negative_stock and quantity < 0
                    and self.stock(item, site).physical + quantity < 0):
                raise ValueError(f"insufficient stock of '{item}' at {site} for an issue of {-quantity}")
            day = posting_date or self.today()
            return self.record_movement(
                site=site, item=item, voucher_type=VCRTYP_MISC_ISSUE,
                voucher_number=self.next_number("MS", day), voucher_line=1000,
                transaction_type=TRSTYP_MISC_ISSUE, quantity=quantity, posting_date=day)

    # ------------------------------------------------------------------------------------------ snapshots
    def customers(self) -> list[Customer]:
        with self.lock:
            return list(self.tables.customers.values())

    def invoices(self) -> list[Invoice]:
        with self.lock:
            return list(self.tables.invoices.values())

    def invoice(self, number: str) -> Invoice | None:
        with self.lock:
            return self.tables.invoices.get(number)

    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self.tables.deliveries.values())

    def delivery(self, number: str) -> Delivery | None:
        with self.lock:
            return self.tables.deliveries.get(number)

    def gl_entries(self) -> list[GlEntry]:
        with self.lock:
            return list(self.tables.gl_entries.values())

    def gl_entry(self, number: str) -> GlEntry | None:
        with self.lock:
            return next((e for e in self.tables.gl_entries.values() if e.number == number), None)

    def stock_movements(self) -> list[StockMovement]:
        with self.lock:
            return list(self.tables.movements)

    def stock(self, item: str, site: str) -> ProductSiteStock:
        """ITMMVT for (item, site); zero quantities when nothing was ever stocked there."""
        with self.lock:
            if item not in self.tables.items or site not in self.tables.sites:
                raise KeyError(f"unknown item/site {item}/{site} in folder {self.folder}")
            return self.tables.stock.get((item, site)) or ProductSiteStock(
                item, site, Decimal(0), Decimal(0), self.now())
