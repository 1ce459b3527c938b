"""Outcomes of the pure domain steps that are not a document: a failure to record or a deliberate skip.

Both are values, never exceptions, so the Dagster layer can write them to the ledger as they are (with the
order payload, so a replay needs nothing re-fetched) and a whole batch keeps going past one bad order.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class FailureReason(StrEnum):
    """Why an order cannot become an X3 document yet. Each value is a ledger failure reason (flows.md §2)."""

    MAPPING = "mapping"  # the mapping file lacks something the order needs (e.g. a duties account)
    AMOUNT_MISMATCH = "amount_mismatch"  # the draft does not reconcile to Shopify's total, or the GL is off
    ITEM_NOT_MAPPED = "item_not_mapped"  # a SKU (or a line without SKU) has no X3 item
    TAX_NOT_MAPPED = "tax_not_mapped"  # a Shopify tax line has no X3 tax code
    GUEST_CHECKOUT = "guest_checkout"  # guest orders are flagged by configuration
    CUSTOMER_NOT_MATCHED = (
        "customer_not_matched"  # no X3 customer was given for a registered customer's order
    )
    UNSUPPORTED = "unsupported"  # content this flow does not post (e.g. gift card sales)


class SkipReason(StrEnum):
    TEST_ORDER = "test_order"
    CANCELLED = "cancelled"
    GUEST_CHECKOUT = "guest_checkout"
    NOTHING_TO_INVOICE = "nothing_to_invoice"
    NOTHING_TO_CREDIT = "nothing_to_credit"  # a refund that returns no money (restock only)


class MappingFailure(BaseModel):
    """The order cannot be posted: ``message`` says what is wrong and where, ``hint`` how to fix it.

    ``field`` is a path into the order (``line_items[2].sku``) or into the mapping file
    (``defaults.accounts.duties``). For ``amount_mismatch`` the two figures and the currency are set too.
    """

    model_config = ConfigDict(frozen=True)

    reason: FailureReason
    field: str
    message: str
    hint: str
    shopify_amount: Decimal | None = None
    invoice_amount: Decimal | None = None
    currency: str | None = None

    @property
    def difference(self) -> Decimal | None:
        """Invoice minus Shopify (positive: the invoice would charge more than Shopify did)."""
        if self.shopify_amount is None or self.invoice_amount is None:
            return None
        return self.invoice_amount - self.shopify_amount

    def __str__(self) -> str:
        return f"{self.reason.value} at {self.field}: {self.message} Fix: {self.hint}"


class Skip(BaseModel):
    """Nothing to post, on purpose (a test order, a guest checkout configured to be skipped, ...)."""

    model_config = ConfigDict(frozen=True)

    reason: SkipReason
    message: str

    def __str__(self) -> str:
        return f"skipped ({self.reason.value}): {self.message}"
