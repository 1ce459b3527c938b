"""Typed errors raised by the Shopify client.

Messages carry the operation name, HTTP status, Shopify error codes and request id; never the access token
(the client also scrubs it from any text a server echoes back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from x3_shopify_dagster.redaction import scrub


class ShopifyError(Exception):
    """Base class for every error raised by the Shopify client."""

    def __init__(self, message: str, *, operation: str | None = None, request_id: str | None = None) -> None:
        super().__init__(scrub(message))  # known secrets and token-shaped strings never travel in an error
        self.operation = operation
        self.request_id = request_id


class ShopifyTransportError(ShopifyError):
    """The request never got an HTTP answer (timeout, refused or dropped connection) after all retries."""


class ShopifyHTTPError(ShopifyError):
    """Shopify answered with an HTTP status the client does not retry (or retried until giving up)."""

    def __init__(
        self, message: str, *, status_code: int, operation: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, operation=operation, request_id=request_id)
        self.status_code = status_code


class ShopifyAuthError(ShopifyHTTPError):
    """401/403: the token is wrong, revoked or lacks a scope. Never retried."""


class ShopifyProtocolError(ShopifyError):
    """The answer was not the JSON document the GraphQL endpoint promises."""


class ShopifyGraphQLError(ShopifyError):
    """The response carried top-level GraphQL ``errors`` (validation, access denied, ...)."""

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[Mapping[str, Any]],
        operation: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, request_id=request_id)
        self.errors: tuple[Mapping[str, Any], ...] = tuple(errors)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(str((e.get("extensions") or {}).get("code") or "") for e in self.errors)


class ShopifyThrottledError(ShopifyGraphQLError):
    """Still THROTTLED (or HTTP 429) when the retry budget ran out."""


class MaxCostExceededError(ShopifyGraphQLError):
    """The query's requested cost is above what Shopify accepts for a single query.

    ``max_cost`` is Shopify's single-query limit (1000) or, when the rate-limit bucket itself is smaller than
    the query, the bucket size: in both cases waiting cannot help and the caller has to ask for less.
    """

    def __init__(
        self,
        message: str,
        *,
        cost: int,
        max_cost: int,
        errors: Sequence[Mapping[str, Any]] = (),
        operation: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, errors=errors, operation=operation, request_id=request_id)
        self.cost = cost
        self.max_cost = max_cost


@dataclass(frozen=True)
class UserError:
    field: tuple[str, ...] | None
    message: str
    code: str | None


class ShopifyUserErrors(ShopifyError):
    """A mutation answered with ``userErrors``: the request was understood and refused."""

    def __init__(
        self, user_errors: Sequence[UserError], *, operation: str | None = None, request_id: str | None = None
    ) -> None:
        details = "; ".join(
            f"{'.'.join(e.field) if e.field else '-'}: {e.message}" + (f" ({e.code})" if e.code else "")
            for e in user_errors
        )
        super().__init__(f"{operation or 'mutation'} refused: {details}", operation=operation, request_id=request_id)
        self.user_errors: tuple[UserError, ...] = tuple(user_errors)

    @property
    def codes(self) -> tuple[str | None, ...]:
        return tuple(e.code for e in self.user_errors)


class BulkOperationError(ShopifyError):
    """A bulk export failed, expired or was cancelled and no fallback reader was given."""


class ShopifyReauthorizationRequired(ShopifyAuthError):
    """The store's authorization is gone (token revoked or expired, refresh refused, app uninstalled).

    Retrying cannot help; ``fix`` says what does (for an OAuth store: ``x3sd shopify connect <store>``).
    The message never carries a token.
    """

    def __init__(self, message: str, *, fix: str, status_code: int = 401, operation: str | None = None) -> None:
        super().__init__(f"{message}; {fix}", status_code=status_code, operation=operation)
        self.fix = fix


class ShopifyOAuthError(ShopifyError):
    """The OAuth install or callback was refused (bad HMAC, wrong state, bad shop domain, code exchange failed)."""


class ShopifyTokenStoreError(ShopifyError):
    """The token store cannot be read or written (missing or wrong vault key, database unavailable)."""
