"""What an X3 client exception means for an exactly-once write, and how results become ledger values."""

from __future__ import annotations

from x3_shopify_dagster.domain.invoicing import GlLine as DraftGlLine
from x3_shopify_dagster.storage.exactly_once import RemoteResult, SendFailure
from x3_shopify_dagster.storage.ledger import GlLine
from x3_shopify_dagster.x3 import (
    X3AuthenticationError,
    X3BusinessError,
    X3InvoiceRef,
    X3OutcomeUnknownError,
    X3ServiceBusyError,
    X3SoapFault,
    X3TransportError,
)
from x3_shopify_dagster.x3.soap import SoapResult


def classify_x3_error(error: Exception) -> SendFailure:
    """Refused (business rule), not executed (safe to resend) or in doubt (look the reference up first)."""
    if isinstance(error, X3OutcomeUnknownError):
        return SendFailure.IN_DOUBT
    if isinstance(error, X3BusinessError):
        # A retryable business error (record locked) is refused before execution too.
        return SendFailure.NOT_EXECUTED if error.retryable else SendFailure.REFUSED
    if isinstance(error, X3ServiceBusyError | X3SoapFault | X3AuthenticationError | X3TransportError):
        # Refused before execution; a transport error on a write that reached X3 is X3OutcomeUnknownError.
        return SendFailure.NOT_EXECUTED
    return SendFailure.IN_DOUBT


def invoice_result(result: SoapResult) -> RemoteResult:
    return RemoteResult(
        document=str(result.field("NUM")),
        details={"status": result.integer("STA"), "amount_incl_tax": result.decimal("AMTATI"),
                 "amount_excl_tax": result.decimal("AMTNOT")},
    )


def invoice_found(invoice: X3InvoiceRef | None, *, posted_only: bool = False) -> RemoteResult | None:
    if invoice is None or (posted_only and invoice.status != 3):
        return None
    return RemoteResult(
        document=invoice.number,
        details={"status": invoice.status, "amount_incl_tax": invoice.amount_incl_tax,
                 "amount_excl_tax": invoice.amount_excl_tax},
    )


def ledger_gl_lines(lines: tuple[DraftGlLine, ...]) -> list[GlLine]:
    """The draft's balanced GL view in the ledger's audit form (account, cost centre, debit, credit)."""
    return [
        GlLine(
            account=str(line.account),
            debit=line.debit,
            credit=line.credit,
            cost_centre=",".join(f"{die}={cce}" for die, cce in sorted(line.dimensions.items())) or None,
            description=line.description,
        )
        for line in lines
    ]
