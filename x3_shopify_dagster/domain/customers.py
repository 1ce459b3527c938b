"""Finding the X3 customer of a Shopify order by e-mail (flows.md §2): exactly one match, never a guess."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def normalise_email(raw: str | None) -> str:
    """Trimmed and case-folded: how e-mails are compared on both sides."""
    return (raw or "").strip().casefold()


@dataclass(frozen=True)
class CustomerCandidate:
    code: str
    name: str
    active: bool


@dataclass(frozen=True)
class CustomerMatch:
    code: str
    name: str
    email: str


@dataclass(frozen=True)
class CustomerMatchFailure:
    reason: str  # customer_not_found | customer_ambiguous | customer_inactive
    field: str
    message: str
    hint: str


def match_customer(email: str | None, candidates: Sequence[CustomerCandidate]) -> CustomerMatch | CustomerMatchFailure:
    """The single X3 customer holding ``email``; anything else is a specific, replayable failure."""
    wanted = normalise_email(email)
    if not wanted:
        return CustomerMatchFailure(
            reason="customer_not_found",
            field="email",
            message="The order has no e-mail address, so no X3 customer can be found for it.",
            hint="Add the e-mail on the Shopify order or customer, or map guest checkouts to a web customer.",
        )
    if not candidates:
        return CustomerMatchFailure(
            reason="customer_not_found",
            field="email",
            message=f"No X3 customer has the e-mail {wanted!r} on a customer address (BPADDRESS.WEB).",
            hint="Create the customer in X3 (or add the e-mail to its address), refresh x3_customers, then "
            "re-materialize this partition.",
        )
    if len(candidates) > 1:
        codes = ", ".join(sorted(c.code for c in candidates))
        return CustomerMatchFailure(
            reason="customer_ambiguous",
            field="email",
            message=f"The e-mail {wanted!r} belongs to several X3 customers ({codes}); the connector never guesses.",
            hint="Keep the e-mail on one customer only in X3, refresh x3_customers, then re-materialize.",
        )
    only = candidates[0]
    if not only.active:
        return CustomerMatchFailure(
            reason="customer_inactive",
            field="email",
            message=f"X3 customer {only.code} ({only.name}) holding {wanted!r} is inactive.",
            hint="Reactivate the customer in X3 (or move the e-mail), refresh x3_customers, then re-materialize.",
        )
    return CustomerMatch(code=only.code, name=only.name, email=wanted)
