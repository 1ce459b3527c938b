"""Small typed views of the X3 records the connector reads. Field names in comments are X3's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict

# X3 stores an empty date as 31/12/1599.
_X3_NULL_DATES = {"", "1599-12-31", "15991231", "0000-00-00", "00000000"}


def text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


def integer(row: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = row.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def decimal(row: Mapping[str, Any], name: str) -> Decimal:
    value = row.get(name)
    if value in (None, ""):
        return Decimal(0)
    if isinstance(value, float):  # defensive: our JSON parsing never produces floats
        value = repr(value)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"X3 field {name} is not a decimal: {value!r}") from None


def x3_date(row: Mapping[str, Any], name: str) -> date | None:
    value = text(row, name)
    if value in _X3_NULL_DATES:
        return None
    if len(value) == 8 and value.isdigit():
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    return date.fromisoformat(value[:10])


def x3_datetime(row: Mapping[str, Any], name: str) -> datetime | None:
    """X3 ADATIM values are GMT; a value without offset is read as UTC."""
    value = text(row, name)
    if not value or value[:10] in _X3_NULL_DATES:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class X3Customer(_Model):
    code: str  # BPCNUM
    name: str  # BPCNAM
    bill_to: str  # BPCINV
    active: bool  # BPCSTA 2
    currency: str  # CUR
    email: str  # BPADDRESS.WEB that matched
    address_code: str  # BPAADD

    @classmethod
    def from_rows(cls, customer: Mapping[str, Any], address: Mapping[str, Any]) -> X3Customer:
        code = text(customer, "BPCNUM")
        return cls(
            code=code,
            name=text(customer, "BPCNAM"),
            bill_to=text(customer, "BPCINV") or code,
            active=integer(customer, "BPCSTA") == 2,
            currency=text(customer, "CUR"),
            email=text(address, "WEB"),
            address_code=text(address, "BPAADD"),
        )


class X3InvoiceRef(_Model):
    number: str  # NUM
    customer: str  # BPCINV
    invoice_type: int  # INVTYP 1 invoice, 2 credit memo
    sales_invoice_type: str  # SIVTYP
    status: int  # INVSTA 1 not posted, 3 posted
    currency: str
    amount_excl_tax: Decimal  # AMTNOT
    amount_incl_tax: Decimal  # AMTATI
    reference: str  # BPRVCR (or the configured reference field)
    origin_invoice: str  # SIHORINUM (credit memos)
    invoice_date: date | None
    accounting_date: date | None
    updated_at: datetime | None

    @property
    def posted(self) -> bool:
        return self.status == 3

    @property
    def is_credit_memo(self) -> bool:
        return self.invoice_type == 2

    @classmethod
    def from_row(cls, row: Mapping[str, Any], reference_field: str = "BPRVCR") -> X3InvoiceRef:
        return cls(
            number=text(row, "NUM"),
            customer=text(row, "BPCINV"),
            invoice_type=integer(row, "INVTYP", 1),
            sales_invoice_type=text(row, "SIVTYP"),
            status=integer(row, "INVSTA", 1),
            currency=text(row, "CUR"),
            amount_excl_tax=decimal(row, "AMTNOT"),
            amount_incl_tax=decimal(row, "AMTATI"),
            reference=text(row, reference_field),
            origin_invoice=text(row, "SIHORINUM"),
            invoice_date=x3_date(row, "INVDAT"),
            accounting_date=x3_date(row, "ACCDAT"),
            updated_at=x3_datetime(row, "UPDDATTIM"),
        )


class X3DeliveryRef(_Model):
    number: str  # SDHNUM
    customer: str  # BPCORD
    ship_date: date | None  # SHIDAT
    validated: bool  # CFMFLG 2
    invoice: str  # SIHNUM
    site: str  # STOFCY
    reference: str  # BPRVCR
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], reference_field: str = "BPRVCR") -> X3DeliveryRef:
        return cls(
            number=text(row, "SDHNUM"),
            customer=text(row, "BPCORD"),
            ship_date=x3_date(row, "SHIDAT"),
            validated=integer(row, "CFMFLG") == 2,
            invoice=text(row, "SIHNUM"),
            site=text(row, "STOFCY"),
            reference=text(row, reference_field),
            updated_at=x3_datetime(row, "UPDDATTIM"),
        )


class X3GlAccount(_Model):
    chart: str  # COA
    account: str  # ACC
    description: str  # DES
    enabled: bool  # ENAFLG 2
    valid_from: date | None  # VLYSTR
    valid_to: date | None  # VLYEND

    def usable_on(self, day: date) -> bool:
        return (
            self.enabled
            and (self.valid_from is None or self.valid_from <= day)
            and (self.valid_to is None or day <= self.valid_to)
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> X3GlAccount:
        return cls(
            chart=text(row, "COA"),
            account=text(row, "ACC"),
            description=text(row, "DES"),
            enabled=integer(row, "ENAFLG") == 2,
            valid_from=x3_date(row, "VLYSTR"),
            valid_to=x3_date(row, "VLYEND"),
        )


class X3Dimension(_Model):
    dimension_type: str  # DIE
    code: str  # CCE
    description: str  # DES
    enabled: bool  # ENAFLG 2
    site: str  # FCY (empty: all sites)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> X3Dimension:
        return cls(
            dimension_type=text(row, "DIE"),
            code=text(row, "CCE"),
            description=text(row, "DES"),
            enabled=integer(row, "ENAFLG") == 2,
            site=text(row, "FCY"),
        )


class X3StockMovement(_Model):
    """One stock journal (STOJOU) row: a receipt, an issue, a delivery, an adjustment..."""

    site: str  # STOFCY
    item: str  # ITMREF
    voucher_type: int  # VCRTYP
    voucher: str  # VCRNUM
    voucher_line: int  # VCRLIN
    sequence: int  # MVTSEQ
    transaction_type: int  # TRSTYP
    quantity: Decimal  # QTYSTU, signed (issues are negative)
    posting_date: date | None  # IPTDAT
    updated_at: datetime  # UPDDATTIM

    @property
    def key(self) -> str:
        """The movement's identity in X3 (STOFCY, VCRTYP, VCRNUM, VCRLIN, MVTSEQ): what overlapping reads dedupe on."""
        return f"{self.site}|{self.voucher_type}|{self.voucher}|{self.voucher_line}|{self.sequence}"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> X3StockMovement:
        updated = x3_datetime(row, "UPDDATTIM")
        if updated is None:
            raise ValueError(f"stock journal row {text(row, 'VCRNUM')} has no UPDDATTIM")
        return cls(
            site=text(row, "STOFCY"),
            item=text(row, "ITMREF"),
            voucher_type=integer(row, "VCRTYP"),
            voucher=text(row, "VCRNUM"),
            voucher_line=integer(row, "VCRLIN"),
            sequence=integer(row, "MVTSEQ"),
            transaction_type=integer(row, "TRSTYP"),
            quantity=decimal(row, "QTYSTU"),
            posting_date=x3_date(row, "IPTDAT"),
            updated_at=updated,
        )


class X3ItemSiteStock(_Model):
    """Product-site totals (ITMMVT): X3's authoritative stock of one item at one site."""

    item: str  # ITMREF
    site: str  # STOFCY
    physical: Decimal  # PHYSTO
    allocated: Decimal  # SALSTO
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> X3ItemSiteStock:
        return cls(
            item=text(row, "ITMREF"),
            site=text(row, "STOFCY"),
            physical=decimal(row, "PHYSTO"),
            allocated=decimal(row, "SALSTO"),
            updated_at=x3_datetime(row, "UPDDATTIM"),
        )
