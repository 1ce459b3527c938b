"""httpx client for the Shopify GraphQL Admin API: one POST per operation, paced, retried, typed.

The pieces are small and composed: an ``httpx.Client`` (any transport), a :class:`RetryPolicy` (which waits,
how many attempts), a :class:`CostPacer` (waits before sending so the leaky bucket holds the query) and
:class:`ClientMetrics`. The client does not care whether ``shop_url`` is ``https://{shop}.myshopify.com`` or a
loopback sandbox with a path prefix; only the URL and the token change between the two.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx
from graphql import OperationDefinitionNode, OperationType, parse, visit
from graphql.language import DirectiveNode, Visitor
from pydantic import SecretStr

from x3_shopify_dagster.netloc import is_loopback_host
from x3_shopify_dagster.redaction import scrub
from x3_shopify_dagster.shopify.cost import ClientMetrics, CostPacer, QueryCost
from x3_shopify_dagster.shopify.documents import GraphQLDocument, load_document
from x3_shopify_dagster.shopify.errors import (
    MaxCostExceededError,
    ShopifyAuthError,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyHTTPError,
    ShopifyProtocolError,
    ShopifyThrottledError,
    ShopifyTransportError,
    ShopifyUserErrors,
    UserError,
)
from x3_shopify_dagster.shopify.oauth import ShopifyAuth, StaticTokenAuth
from x3_shopify_dagster.shopify.retry import RetryPolicy

logger = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-07"
_USER_AGENT = "x3-shopify-dagster (+https://github.com/x3-shopify-dagster)"


@dataclass(frozen=True)
class GraphQLResponse:
    data: dict[str, Any]
    cost: QueryCost | None
    request_id: str | None = None


@dataclass(frozen=True)
class ShopInfo:
    id: str
    name: str
    domain: str  # the myshopify.com domain
    currency_code: str
    iana_timezone: str
    maximum_available: float | None  # rate-limit bucket size, as Shopify reports it
    restore_rate: float | None  # points restored per second


@dataclass(frozen=True)
class _Retry:
    """One failed attempt that may be retried after ``wait_s``; ``error`` is raised if it may not."""

    error: ShopifyError
    wait_s: float
    reason: str
    throttled: bool = False


def require_tls_or_loopback(url: str, *, what: str) -> httpx.URL:
    """Refuse plain http unless the host is a loopback address (the local sandboxes)."""
    parsed = httpx.URL(url)
    if parsed.scheme == "https" and parsed.host:
        return parsed
    if parsed.scheme == "http" and is_loopback_host(parsed.host):
        return parsed
    raise ValueError(f"{what} must be https (plain http only for loopback addresses): {parsed.scheme}://{parsed.host}")


class _DirectiveNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_directive(self, node: DirectiveNode, *_args: object) -> None:
        self.names.add(node.name.value)


@functools.lru_cache(maxsize=256)
def _retry_safety(text: str) -> tuple[bool, bool]:
    """(is a mutation, may be re-sent after an ambiguous failure).

    Queries may always be re-sent. A mutation may only when it carries ``@idempotent(key:)``: Shopify then
    returns the first result for a repeated key instead of applying the change twice.
    """
    document = parse(text)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    is_mutation = operation.operation is OperationType.MUTATION
    directives = _DirectiveNames()
    visit(operation, directives)
    return is_mutation, (not is_mutation) or "idempotent" in directives.names


class ShopifyClient:
    """Sends GraphQL documents to one store's Admin API."""

    def __init__(
        self,
        shop_url: str,
        access_token: SecretStr | str | None = None,
        *,
        auth: ShopifyAuth | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        base = require_tls_or_loopback(shop_url.rstrip("/"), what="shop_url")
        if (auth is None) == (access_token is None):
            raise ValueError("give either access_token (a static token) or auth (an OAuth/client-credentials auth)")
        # The token is put on each request by the auth object (renewed when it expires), never a default header.
        self.auth: ShopifyAuth = auth if auth is not None else StaticTokenAuth(access_token or "")
        self.shop_url = str(base).rstrip("/")
        self.api_version = api_version
        self.endpoint = f"{self.shop_url}/admin/api/{api_version}/graphql.json"
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.pacer = CostPacer()
        self.metrics = ClientMetrics()
        timeout = httpx.Timeout(timeout_s)
        # No redirects: a redirected request would carry the token header to wherever it points.
        self._http = httpx.Client(
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            auth=self.auth,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": _USER_AGENT,
            },
        )
        # Bulk results live behind signed URLs: fetched without the token, redirects allowed.
        self._downloads = httpx.Client(
            transport=transport, timeout=timeout, follow_redirects=True, headers={"User-Agent": _USER_AGENT}
        )

    def __repr__(self) -> str:
        return f"ShopifyClient(shop_url={self.shop_url!r}, api_version={self.api_version!r})"

    def __enter__(self) -> ShopifyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections (the auth object is shared per store and closed by its owner)."""
        self._http.close()
        self._downloads.close()

    # --- GraphQL -----------------------------------------------------------------------------------------

    def execute(self, document: GraphQLDocument, variables: Mapping[str, Any] | None = None) -> GraphQLResponse:
        """Send one operation; retry what is worth retrying; raise a typed :mod:`errors` error otherwise."""
        operation = document.operation_name
        is_mutation, resend_safe = _retry_safety(document.text)
        body = {"query": document.text, "variables": dict(variables or {}), "operationName": operation}
        started = self.clock()
        attempts = 0
        while True:
            self._pace(operation)
            attempts += 1
            self.metrics.record_request(operation, retry=attempts > 1)
            outcome = self._attempt(
                operation, body, is_mutation=is_mutation, resend_safe=resend_safe, retry_number=attempts
            )
            if isinstance(outcome, GraphQLResponse):
                return outcome
            elapsed = self.clock() - started
            if not self.retry.allows(attempts_made=attempts, elapsed_s=elapsed, wait_s=outcome.wait_s):
                logger.warning("Shopify %s: %s; giving up after %d attempt(s)", operation, outcome.reason, attempts)
                raise outcome.error
            logger.info("Shopify %s: %s; retry %d in %.2fs", operation, outcome.reason, attempts, outcome.wait_s)
            if outcome.throttled:
                self.metrics.record_wait(operation, outcome.wait_s)
            self.sleep(outcome.wait_s)

    def _pace(self, operation: str) -> None:
        wait = self.pacer.wait_before(operation, self.clock())
        if wait > 0:
            logger.debug("Shopify %s: pacing %.2fs for the rate-limit bucket", operation, wait)
            self.metrics.record_wait(operation, wait)
            self.sleep(wait)

    def _attempt(
        self, operation: str, body: dict[str, Any], *, is_mutation: bool, resend_safe: bool, retry_number: int
    ) -> GraphQLResponse | _Retry:
        backoff = self.retry.backoff_s(retry_number)
        try:
            response = self._http.post(self.endpoint, json=body)
        except ShopifyTransportError as exc:
            # The token endpoint was unreachable while renewing: the GraphQL request was never sent.
            return _Retry(exc, backoff, reason=str(exc))
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            # Nothing reached Shopify when the connection could not even be opened: safe to resend anything.
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            error = ShopifyTransportError(
                f"Shopify {operation}: {type(exc).__name__}: {self._scrub(str(exc)) or 'no details'}",
                operation=operation,
            )
            if not (never_sent or resend_safe):
                raise error from exc
            return _Retry(error, backoff, reason=type(exc).__name__)

        request_id = response.headers.get("x-request-id")
        status = response.status_code
        if status == 429:
            # Refused before execution, so even a plain mutation can be re-sent.
            wait = self.retry.retry_after_s(response.headers.get("retry-after"))
            error = ShopifyThrottledError(
                f"Shopify {operation}: HTTP 429 Too Many Requests",
                errors=(),
                operation=operation,
                request_id=request_id,
            )
            return _Retry(error, wait, reason="HTTP 429", throttled=True)
        if status in (401, 403):
            # A 401 already went through the auth object's one renewal (httpx auth flow).
            raise ShopifyAuthError(
                f"Shopify {operation}: HTTP {status} {response.reason_phrase}: the access token was refused "
                f"or lacks a scope for {self.shop_url}",
                status_code=status,
                operation=operation,
                request_id=request_id,
            )
        if status >= 500:
            error = ShopifyHTTPError(
                f"Shopify {operation}: HTTP {status} {response.reason_phrase}",
                status_code=status,
                operation=operation,
                request_id=request_id,
            )
            if not resend_safe:
                raise error
            return _Retry(error, backoff, reason=f"HTTP {status}")
        if status != 200:
            raise ShopifyHTTPError(
                f"Shopify {operation}: HTTP {status} {response.reason_phrase}: {self._scrub(response.text[:300])}",
                status_code=status,
                operation=operation,
                request_id=request_id,
            )

        try:
            payload = response.json()
        except ValueError:
            raise ShopifyProtocolError(
                f"Shopify {operation}: the response is not JSON", operation=operation, request_id=request_id
            ) from None
        if not isinstance(payload, dict):
            raise ShopifyProtocolError(
                f"Shopify {operation}: the response is not a JSON object",
                operation=operation,
                request_id=request_id,
            )

        cost = QueryCost.from_extensions(payload.get("extensions"))
        self.pacer.observe(operation, cost, self.clock())
        self.metrics.record_cost(operation, cost)

        errors = payload.get("errors")
        if errors:
            return self._graphql_errors(operation, errors, cost, request_id, resend_safe=resend_safe, backoff=backoff)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ShopifyProtocolError(
                f"Shopify {operation}: the response has no data", operation=operation, request_id=request_id
            )
        if is_mutation:
            self._raise_user_errors(operation, data, request_id)
        return GraphQLResponse(data=data, cost=cost, request_id=request_id)

    def _graphql_errors(
        self,
        operation: str,
        errors: Any,
        cost: QueryCost | None,
        request_id: str | None,
        *,
        resend_safe: bool,
        backoff: float,
    ) -> _Retry:
        if not isinstance(errors, list):
            errors = [{"message": str(errors)}]
        errors = [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
        codes = [str((e.get("extensions") or {}).get("code") or "") for e in errors]
        messages = "; ".join(self._scrub(str(e.get("message", ""))) for e in errors[:5])
        requested = cost.requested_query_cost if cost else None
        throttle = cost.throttle_status if cost else None

        if "MAX_COST_EXCEEDED" in codes:
            extensions = errors[codes.index("MAX_COST_EXCEEDED")].get("extensions") or {}
            error_cost = int(extensions.get("cost") or requested or 0)
            raise MaxCostExceededError(
                f"Shopify {operation}: {messages}",
                cost=error_cost,
                max_cost=int(extensions.get("maxCost") or 1000),
                errors=errors,
                operation=operation,
                request_id=request_id,
            )
        if "THROTTLED" in codes:
            if requested is not None and throttle is not None and requested > throttle.maximum_available:
                # The bucket can never hold this query (a shop on a reduced limit): only a smaller one helps.
                raise MaxCostExceededError(
                    f"Shopify {operation}: requested cost {requested} exceeds the whole rate-limit bucket "
                    f"({throttle.maximum_available:g})",
                    cost=requested,
                    max_cost=int(throttle.maximum_available),
                    errors=errors,
                    operation=operation,
                    request_id=request_id,
                )
            wait = backoff
            if requested is not None and throttle is not None and throttle.restore_rate > 0:
                needed = (requested - throttle.currently_available) / throttle.restore_rate
                wait = needed if needed > 0 else backoff
            error = ShopifyThrottledError(
                f"Shopify {operation}: {messages}", errors=errors, operation=operation, request_id=request_id
            )
            return _Retry(error, wait, reason="THROTTLED", throttled=True)
        error = ShopifyGraphQLError(
            f"Shopify {operation}: {messages} (codes: {', '.join(c for c in codes if c) or 'none'})",
            errors=errors,
            operation=operation,
            request_id=request_id,
        )
        if "INTERNAL_SERVER_ERROR" in codes and resend_safe:
            return _Retry(error, backoff, reason="INTERNAL_SERVER_ERROR")
        raise error

    def _raise_user_errors(self, operation: str, data: Mapping[str, Any], request_id: str | None) -> None:
        found: list[UserError] = []
        for payload in data.values():
            if not isinstance(payload, Mapping):
                continue
            for item in payload.get("userErrors") or []:
                field = item.get("field")
                found.append(
                    UserError(
                        field=tuple(str(f) for f in field) if field else None,
                        message=self._scrub(str(item.get("message", ""))),
                        code=item.get("code"),
                    )
                )
        if found:
            raise ShopifyUserErrors(found, operation=operation, request_id=request_id)

    def _scrub(self, text: str) -> str:
        return scrub(text, self.auth.secrets())

    # --- Convenience -------------------------------------------------------------------------------------

    def shop_info(self) -> ShopInfo:
        """Identity of the store plus its rate-limit plan as reported in ``throttleStatus``."""
        response = self.execute(load_document("shop_info"))
        shop = response.data["shop"]
        throttle = response.cost.throttle_status if response.cost else None
        return ShopInfo(
            id=shop["id"],
            name=shop["name"],
            domain=shop["myshopifyDomain"],
            currency_code=shop["currencyCode"],
            iana_timezone=shop["ianaTimezone"],
            maximum_available=throttle.maximum_available if throttle else None,
            restore_rate=throttle.restore_rate if throttle else None,
        )

    def access_scopes(self) -> tuple[str, ...]:
        """Handles of the scopes granted to the app (``currentAppInstallation.accessScopes``)."""
        response = self.execute(load_document("access_scopes"))
        scopes = response.data["currentAppInstallation"]["accessScopes"]
        return tuple(sorted(str(scope["handle"]) for scope in scopes))

    # --- Downloads (bulk results) ------------------------------------------------------------------------

    @contextmanager
    def stream_lines(self, url: str) -> Iterator[Iterator[str]]:
        """Open a signed result URL (no token sent) and give its lines one by one, without buffering the file.

        Opening is retried like any request; a failure in the middle of the stream raises
        :class:`ShopifyTransportError` from the line iterator (the caller decides how to resume).
        """
        with self._open_download(url) as response:
            yield _lines(response)

    def download_to(self, url: str, sink: BinaryIO) -> int:
        """Copy a signed result file into ``sink`` as it arrives (no decoding); returns the bytes written.

        Opening is retried like :meth:`stream_lines`. When the transfer breaks off, ``sink`` is cut back to
        its last complete line and :class:`ShopifyTransportError` is raised: what was kept is exactly what
        :meth:`stream_lines` would have given before the failure.
        """
        start = sink.tell()
        written = 0
        whole_lines = 0  # bytes up to and including the last newline
        try:
            with self._open_download(url) as response:
                for chunk in response.iter_bytes():  # as received: a failure loses only the partial line
                    sink.write(chunk)
                    newline = chunk.rfind(b"\n")
                    if newline >= 0:
                        whole_lines = written + newline + 1
                    written += len(chunk)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            sink.seek(start + whole_lines)
            sink.truncate()
            raise ShopifyTransportError(
                f"bulk result download interrupted: {type(exc).__name__}", operation="download"
            ) from exc
        except ShopifyTransportError:
            sink.seek(start + whole_lines)
            sink.truncate()
            raise
        return written

    @contextmanager
    def _open_download(self, url: str) -> Iterator[httpx.Response]:
        require_tls_or_loopback(url, what="bulk result URL")
        started = self.clock()
        attempts = 0
        with ExitStack() as stack:
            while True:
                attempts += 1
                self.metrics.record_request("download", retry=attempts > 1)
                failure: ShopifyError | None = None
                try:
                    response = stack.enter_context(self._downloads.stream("GET", url))
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    failure = ShopifyTransportError(f"bulk result download: {type(exc).__name__}", operation="download")
                else:
                    if response.status_code == 200:
                        break
                    failure = ShopifyHTTPError(
                        f"bulk result download: HTTP {response.status_code}",
                        status_code=response.status_code,
                        operation="download",
                    )
                    stack.close()
                    if response.status_code < 500 and response.status_code != 429:
                        raise failure
                wait = self.retry.backoff_s(attempts)
                if not self.retry.allows(attempts_made=attempts, elapsed_s=self.clock() - started, wait_s=wait):
                    raise failure
                self.sleep(wait)
            yield response


def _lines(response: httpx.Response) -> Iterator[str]:
    try:
        for line in response.iter_lines():
            if line:
                yield line
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise ShopifyTransportError(
            f"bulk result download interrupted: {type(exc).__name__}", operation="download"
        ) from exc
