"""Errors raised by the Sage X3 client.

Every error says whether retrying later can help (`retryable`). The client already retries what is safe to
retry; an error that reaches the caller has exhausted that budget or is permanent. Error texts carry X3's own
messages but never credentials or tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from x3_shopify_dagster.redaction import scrub


@dataclass(frozen=True)
class Diagnosis:
    """One entry of an api1 `$diagnoses` array."""

    severity: str  # info | warning | transient | error | fatal (lower-cased)
    message: str


@dataclass(frozen=True)
class SoapMessage:
    """One CAdxMessage of a SOAP result: type 1 information, 2 warning, 3 error."""

    type: int
    text: str

    @property
    def is_error(self) -> bool:
        return self.type == 3


class X3Error(Exception):
    """Base class. `retryable` tells callers whether the same call may succeed later.

    Messages are scrubbed of known secrets and secret-shaped strings (see `x3_shopify_dagster.redaction`) when
    the error is created, so a token echoed by a server never reaches a log, a run failure or the event log.
    """

    retryable: bool = False

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(arg) if isinstance(arg, str) else arg for arg in args))


class X3ConfigError(X3Error, ValueError):
    """The X3 configuration is unusable (e.g. plain http to a remote host)."""


class X3TransportError(X3Error):
    """Network failure (connect, timeout, dropped connection) that outlived the retry budget."""

    retryable = True


class X3OutcomeUnknownError(X3Error):
    """A write may or may not have been executed by X3 (timeout or dropped connection after sending).

    Never resend blindly: look the document up by its reference first (flows.md §3, "in doubt").
    """

    retryable = False

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(
            f"outcome of X3 {operation} is unknown ({reason}); look the document up by its "
            "reference before sending it again"
        )
        self.operation = operation
        self.reason = reason


class X3HttpError(X3Error):
    """Unexpected HTTP status from X3."""

    def __init__(self, status_code: int, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"X3 answered HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.retryable = retryable


class X3ServiceBusyError(X3HttpError):
    """X3 refused the call before executing it: web-service pool exhausted, pool timeout, "No Web services
    accepted", 503. Safe to resend, even for writes."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message, retryable=True)


class X3AuthenticationError(X3Error):
    """X3 rejected the credentials (HTTP 401 even after one refresh)."""


class X3ReauthorizationRequired(X3AuthenticationError):
    """The OAuth2 pairing is gone (no tokens; refresh token expired, revoked or used): re-pair."""


class TokenStoreError(X3Error):
    """The token store cannot be read or written (missing or wrong encryption key, unreadable file)."""


class X3ProtocolError(X3Error):
    """X3 answered something this client cannot interpret (not JSON, not a SOAP envelope...)."""


class X3DiagnosisError(X3Error):
    """api1 answered with error `$diagnoses` (possibly inside an HTTP 200)."""

    def __init__(self, diagnoses: Sequence[Diagnosis], *, status_code: int = 200) -> None:
        self.diagnoses = tuple(diagnoses)
        self.status_code = status_code
        super().__init__(f"X3 diagnoses (HTTP {status_code}): " + _join(d.message for d in self.diagnoses))

    @property
    def messages(self) -> list[str]:
        return [d.message for d in self.diagnoses]


class X3TransientDiagnosisError(X3DiagnosisError):
    """A `$severity: transient` diagnosis (e.g. record locked): retried by the client."""

    retryable = True


class X3BusinessError(X3Error):
    """SOAP status 0 with error messages: X3 refused the document (unknown customer, closed period...).

    Never retried: the same payload fails the same way until the data or the configuration changes.
    """

    def __init__(self, operation: str, publication: str, messages: Sequence[SoapMessage]) -> None:
        self.operation = operation
        self.publication = publication
        self.messages = tuple(messages)
        shown = [m.text for m in self.messages if m.is_error] or [m.text for m in self.messages]
        super().__init__(f"X3 {operation} on {publication} failed: " + (_join(shown) or "no message"))

    @property
    def error_texts(self) -> list[str]:
        return [m.text for m in self.messages if m.is_error]


class X3RecordLockedError(X3BusinessError):
    """X3 refused because the record is locked by another session: retried by the client."""

    retryable = True


class X3SoapFault(X3Error):
    """A SOAP fault (in an HTTP 200 or 500)."""

    def __init__(
        self, faultcode: str, faultstring: str, *, status_code: int, retryable: bool = False
    ) -> None:
        super().__init__(f"X3 SOAP fault {faultcode} (HTTP {status_code}): {faultstring}")
        self.faultcode = faultcode
        self.faultstring = faultstring
        self.status_code = status_code
        self.retryable = retryable


class X3AmbiguousReferenceError(X3Error):
    """More than one X3 document carries the same connector reference: idempotency is broken, never guess."""

    def __init__(self, what: str, reference: str, numbers: Sequence[str]) -> None:
        super().__init__(f"{len(numbers)} X3 {what} carry reference {reference!r}: {', '.join(numbers)}")
        self.reference = reference
        self.numbers = tuple(numbers)


def _join(texts: Iterable[str]) -> str:
    return "; ".join(t for t in texts if t)


