"""Rows of the sandbox's X3 tables, as immutable values (a snapshot can be handed out without copying).

Attribute comments give the X3 field each attribute is served as.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum


class LineType(IntEnum):
    """LINTYP on the YSIH publication's lines (a sandbox field: real X3 derives accounts from accounting codes)."""

    GOODS = 1
    SHIPPING = 2
    DISCOUNT = 3


class InvoiceType(IntEnum):  # INVTYP, local menu 645
    INVOICE = 1
    CREDIT_MEMO = 2


class InvoiceStatus(IntEnum):  # STA / INVSTA, local menu 2261
    NOT_POSTED = 1
    POSTED = 3


class PriceType(IntEnum):  # PRITYP, local menu 243
    EXCLUDING_TAX = 1
    INCLUDING_TAX = 2


# Stock journal codes used by the sandbox (local menus 701 / 704 differ per installation: map them per folder).
VCRTYP_DELIVERY = 4
TRSTYP_DELIVERY = 4
VCRTYP_MISC_RECEIPT = 19
TRSTYP_MISC_RECEIPT = 3
VCRTYP_MISC_ISSUE = 20  # a miscellaneous issue or a stock count correction (signed quantity)
TRSTYP_MISC_ISSUE = 2


@dataclass(frozen=True)
class Customer:
    code: str  # BPCNUM
    name: str  # BPCNAM
    bill_to: str  # BPCINV
    active: bool  # BPCSTA 2 active / 1 inactive
    currency: str  # CUR
    updated_at: datetime  # UPDDATTIM


@dataclass(frozen=True)
class CustomerAddress:
    entity_type: int  # BPATYP (1 = customer)
    entity: str  # BPANUM
    address_code: str  # BPAADD
    description: str  # BPADES
    email: str  # WEB
    updated_at: datetime


@dataclass(frozen=True)
class GlAccount:
    chart: str  # COA
    account: str  # ACC
    description: str  # DES
    active: bool  # ENAFLG
    valid_from: date | None  # VLYSTR
    valid_to: date | None  # VLYEND
    updated_at: datetime

    def usable_on(self, day: date) -> bool:
        return (self.active and (self.valid_from is None or self.valid_from <= day)
                and (self.valid_to is None or day <= self.valid_to))


@dataclass(frozen=True)
class Dimension:
    dimension_type: str  # DIE
    code: str  # CCE
    description: str  # DES
    active: bool  # ENAFLG
    site: str  # FCY ("" = every site)
    updated_at: datetime


@dataclass(frozen=True)
class TaxCode:
    code: str  # VAT
    description: str  # DES
    rate: Decimal  # VATRAT as a fraction (0.20)
    account: str  # GL account the tax is posted to
    active: bool  # ENAFLG
    updated_at: datetime


@dataclass(frozen=True)
class SalesInvoiceType:
    code: str  # SIVTYP (table TABSIVTYP)
    description: str  # DES
    category: InvoiceType  # INVTYP: invoice or credit memo
    active: bool  # ENAFLG
    updated_at: datetime


@dataclass(frozen=True)
class Item:
    code: str  # ITMREF
    description: str  # ITMDES1
    active: bool  # ITMSTA 1 active / 6 inactive
    stock_unit: str  # STU
    standard_cost: Decimal  # valuation used for COGS on delivery validation
    updated_at: datetime


@dataclass(frozen=True)
class Site:
    code: str  # FCY
    name: str  # FCYNAM
    legal_company: str  # LEGCPY
    updated_at: datetime


@dataclass(frozen=True)
class InvoiceLine:
    line_number: int  # SIDLIN
    line_type: LineType  # LINTYP
    item: str  # ITMREF ("" on shipping/discount lines without an item)
    description: str  # ITMDES
    quantity: Decimal  # QTY
    gross_price: Decimal  # GROPRI (excl. or incl. tax per the header's PRITYP)
    tax_code: str  # VACITM
    account: str  # ACC
    dimension_type: str  # DIE
    cost_centre: str  # CCE
    amount_excl_tax: Decimal  # AMTNOTLIN, signed (discount lines are negative)
    amount_incl_tax: Decimal  # AMTATILIN, signed


@dataclass(frozen=True)
class TaxTotal:
    tax_code: str
    rate: Decimal
    base: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    number: str  # NUM
    invoice_type: InvoiceType  # INVTYP
    sales_invoice_type: str  # SIVTYP
    customer: str  # BPCINV
    invoice_date: date  # INVDAT
    accounting_date: date  # ACCDAT
    currency: str  # CUR
    site: str  # SALFCY
    reference: str  # BPRVCR
    origin_invoice: str  # SIHORINUM
    price_type: PriceType  # PRITYP
    status: InvoiceStatus  # STA / INVSTA
    lines: tuple[InvoiceLine, ...]
    tax_totals: tuple[TaxTotal, ...]
    amount_excl_tax: Decimal  # AMTNOT
    amount_incl_tax: Decimal  # AMTATI
    gl_entry: str  # number of the GACCENTRY written at posting ("" before)
    created_at: datetime
    updated_at: datetime  # UPDDATTIM

    @property
    def tax_amount(self) -> Decimal:  # AMTTAX
        return self.amount_incl_tax - self.amount_excl_tax


@dataclass(frozen=True)
class DeliveryLine:
    line_number: int  # SDDLIN
    item: str  # ITMREF
    quantity: Decimal  # QTY (stock unit)


@dataclass(frozen=True)
class Delivery:
    number: str  # SDHNUM
    customer: str  # BPCORD
    ship_date: date  # SHIDAT
    site: str  # STOFCY
    invoice_number: str  # SIHNUM
    reference: str  # BPRVCR
    tracking: str  # YTRACKING
    validated: bool  # CFMFLG 2 validated / 1 not
    lines: tuple[DeliveryLine, ...]
    gl_entry: str  # COGS entry written at validation
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StockMovement:
    site: str  # STOFCY
    item: str  # ITMREF
    voucher_type: int  # VCRTYP
    voucher_number: str  # VCRNUM
    voucher_line: int  # VCRLIN
    sequence: int  # MVTSEQ (increasing per folder)
    transaction_type: int  # TRSTYP
    quantity: Decimal  # QTYSTU, signed: issues are negative
    posting_date: date  # IPTDAT
    created_at: datetime  # CREDAT + CRETIM
    updated_at: datetime  # UPDDATTIM


@dataclass(frozen=True)
class ProductSiteStock:
    item: str  # ITMREF
    site: str  # STOFCY
    physical: Decimal  # PHYSTO
    allocated: Decimal  # SALSTO (lines of deliveries not yet validated)
    updated_at: datetime


@dataclass(frozen=True)
class GlEntryLine:
    line_number: int  # LIG
    account: str  # ACC
    cost_centre: str  # CCE
    debit: Decimal  # DEB
    credit: Decimal  # CDT
    description: str  # DES


@dataclass(frozen=True)
class GlEntry:
    entry_type: str  # TYP
    number: str  # NUM
    journal: str  # JOU
    accounting_date: date  # ACCDAT
    status: int  # STA (1 temporary)
    reference: str  # BPRVCR of the source document
    origin_document: str  # REF: invoice NUM or delivery SDHNUM
    currency: str  # CUR
    lines: tuple[GlEntryLine, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines), Decimal(0))

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines), Decimal(0))

    @property
    def balanced(self) -> bool:
        return self.total_debit == self.total_credit
