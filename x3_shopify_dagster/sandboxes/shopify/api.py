"""The Admin GraphQL endpoint without the HTTP plumbing: auth, cost, rate limit, execution.

Order of checks, as on Shopify: API version (404), access token (401), body (400), GraphQL syntax and
validation (200 + errors), requested cost over 1000 (MAX_COST_EXCEEDED), leaky bucket (THROTTLED), then
execution and the refund of ``requested - actual`` to the bucket.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, execute, get_operation_ast
from graphql.execution.values import get_variable_values

from x3_shopify_dagster.sandboxes.shopify.bulk import BulkRunner
from x3_shopify_dagster.sandboxes.shopify.config import MAX_QUERY_COST, SUPPORTED_API_VERSIONS
from x3_shopify_dagster.sandboxes.shopify.context import RequestContext
from x3_shopify_dagster.sandboxes.shopify.cost import CostCalculator, QueryCostError
from x3_shopify_dagster.sandboxes.shopify.oauth import ALL_SCOPES, OAuthAuthority, effective_scopes
from x3_shopify_dagster.sandboxes.shopify.schema import never_awaitable, parse_and_validate, sandbox_schema
from x3_shopify_dagster.sandboxes.shopify.state import SandboxState
from x3_shopify_dagster.sandboxes.shopify.throttle import LeakyBucket

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105 (a message)
THROTTLED_DOCS = "https://shopify.dev/api/usage/rate-limits"
REQUEST_LOG_SIZE = 50_000
ACCESS_SCOPES_DOCS = "https://shopify.dev/api/usage/access-scopes"
# The scope each root field needs (a write scope implies its read scope).
ROOT_FIELD_SCOPES = {
    "order": "read_orders", "orders": "read_orders", "ordersCount": "read_orders", "refund": "read_orders",
    "fulfillment": "read_orders", "fulfillmentOrders": "read_merchant_managed_fulfillment_orders",
    "productVariants": "read_products", "inventoryItems": "read_inventory",
    "inventoryItem": "read_inventory", "locations": "read_locations", "inventorySetQuantities": "write_inventory",
}


class RequestRecord(NamedTuple):
    """One entry of ``sandbox.requests_log``; ``status`` is an outcome word (ok, throttled, fault:http_500…)."""

    store: str
    operation_name: str | None
    requested_cost: int | None
    actual_cost: int | None
    status: str


@dataclass
class ApiResponse:
    status_code: int
    body: Any  # JSON-serialisable, or str for non-JSON bodies
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class ParsedRequest:
    store: str
    version: str
    query: str
    variables: dict[str, Any]
    operation_name: str | None
    scopes: frozenset[str] = frozenset()


class GraphQLService:
    def __init__(self, state: SandboxState, tokens: dict[str, str], buckets: dict[str, LeakyBucket],
                 bulk_runner: BulkRunner, authority: OAuthAuthority | None = None) -> None:
        self.state = state
        self.tokens = tokens
        self.authority = authority
        self.buckets = buckets
        self.bulk_runner = bulk_runner
        self._log: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self._log_lock = threading.Lock()

    # -- request log ----------------------------------------------------------------------------------------
    def record(self, store: str, operation: str | None, requested: int | None, actual: int | None,
               status: str) -> None:
        with self._log_lock:
            self._log.append(RequestRecord(store, operation, requested, actual, status))

    def requests_log(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    # -- stages ---------------------------------------------------------------------------------------------
    def preflight(self, store: str, version: str, token: str | None,
                  body: bytes) -> ParsedRequest | ApiResponse:
        """Routing, auth and body checks; returns the parsed request or the error response."""
        if store not in self.tokens or version not in SUPPORTED_API_VERSIONS:
            self.record(store, None, None, None, "not_found")
            return ApiResponse(404, {"errors": "Not Found"})
        scopes = self.scopes_for(store, token)
        if scopes is None:
            self.record(store, None, None, None, "unauthorized")
            return ApiResponse(401, {"errors": INVALID_TOKEN})
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            payload = None
        query = payload.get("query") if isinstance(payload, dict) else None
        variables = payload.get("variables") if isinstance(payload, dict) else None
        if not isinstance(query, str) or not query.strip() or not isinstance(variables, dict | None):
            self.record(store, None, None, None, "bad_request")
            return ApiResponse(400, {"errors": {"query": "Required parameter missing or invalid"}})
        operation_name = payload.get("operationName") if isinstance(payload.get("operationName"), str) else None
        if operation_name is None:
            document, _ = parse_and_validate(query)
            operation = get_operation_ast(document) if document is not None else None
            operation_name = operation.name.value if operation and operation.name else None
        return ParsedRequest(store, version, query, variables or {}, operation_name, scopes)

    def scopes_for(self, store: str, token: str | None) -> frozenset[str] | None:
        """Scopes of a valid token for ``store`` (the static demo token has them all); None when refused."""
        if token is None:
            return None
        if hmac.compare_digest(token.encode(), self.tokens[store].encode()):
            return effective_scopes(ALL_SCOPES)
        if self.authority is not None:
            scopes = self.authority.scopes_of(store, token)
            return None if scopes is None else effective_scopes(scopes)
        return None

    def access_denied(self, request: ParsedRequest, operation: OperationDefinitionNode) -> ApiResponse | None:
        """Shopify's ACCESS_DENIED for root fields whose scope the token lacks."""
        errors = []
        for selection in operation.selection_set.selections:
            if not isinstance(selection, FieldNode):
                continue
            needed = ROOT_FIELD_SCOPES.get(selection.name.value)
            if needed is not None and needed not in request.scopes:
                name = selection.name.value
                errors.append({"message": f"Access denied for {name} field. Required access: `{needed}` access scope.",
                               "extensions": {"code": "ACCESS_DENIED", "documentation": ACCESS_SCOPES_DOCS,
                                              "requiredAccess": f"`{needed}` access scope."},
                               "path": [selection.alias.value if selection.alias else name]})
        if not errors:
            return None
        self.record(request.store, request.operation_name, None, None, "access_denied")
        return ApiResponse(200, {"errors": errors, "data": None})

    def cost_extension(self, store: str, requested: int | None, actual: int | None) -> dict[str, Any]:
        return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                         "throttleStatus": self.buckets[store].status().as_json()}}

    def throttled(self, request: ParsedRequest, requested: int | None) -> ApiResponse:
        self.record(request.store, request.operation_name, requested, None, "throttled")
        return ApiResponse(200, {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": THROTTLED_DOCS}}],
            "extensions": self.cost_extension(request.store, requested, None)})

    def requested_cost(self, request: ParsedRequest) -> int | None:
        """The requested cost, or None when the document does not parse/validate/cost."""
        document, errors = parse_and_validate(request.query)
        if document is None or errors:
            return None
        operation = get_operation_ast(document, request.operation_name)
        if operation is None:
            return None
        variables = get_variable_values(sandbox_schema(), operation.variable_definitions or [], request.variables)
        if isinstance(variables, list):
            return None
        try:
            return CostCalculator(sandbox_schema(), document, operation, variables).requested()
        except GraphQLError:
            return None

    def execute(self, request: ParsedRequest) -> ApiResponse:
        store, operation_name = request.store, request.operation_name
        document, errors = parse_and_validate(request.query)
        if document is None or errors:
            self.record(store, operation_name, None, None, "invalid")
            return ApiResponse(200, {"errors": [e.formatted for e in errors]})
        operation = get_operation_ast(document, request.operation_name)
        if not isinstance(operation, OperationDefinitionNode):
            self.record(store, operation_name, None, None, "invalid")
            message = (f'Unknown operation named "{request.operation_name}".' if request.operation_name
                       else "An operation name is required when the document holds several operations.")
            return ApiResponse(200, {"errors": [{"message": message}]})
        variables = get_variable_values(sandbox_schema(), operation.variable_definitions or [], request.variables)
        if isinstance(variables, list):
            self.record(store, operation_name, None, None, "invalid")
            return ApiResponse(200, {"errors": [e.formatted for e in variables]})
        denied = self.access_denied(request, operation)
        if denied is not None:
            return denied
        calculator = CostCalculator(sandbox_schema(), document, operation, variables)
        try:
            requested = calculator.requested()
        except QueryCostError as error:
            self.record(store, operation_name, None, None, "invalid")
            return ApiResponse(200, {"errors": [error.formatted]})
        if requested > MAX_QUERY_COST:
            self.record(store, operation_name, requested, None, "max_cost_exceeded")
            return ApiResponse(200, {
                "errors": [{"message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                                       f"({MAX_QUERY_COST}).",
                            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                           "maxCost": MAX_QUERY_COST}}],
                "extensions": self.cost_extension(store, requested, None)})
        bucket = self.buckets[store]
        if not bucket.try_take(requested):
            return self.throttled(request, requested)
        context = RequestContext(state=self.state, store=store, api_version=request.version,
                                 bulk_runner=self.bulk_runner, operation_name=operation_name, scopes=request.scopes)
        result = execute(sandbox_schema(), document, context_value=context, variable_values=request.variables,
                         operation_name=request.operation_name, is_awaitable=never_awaitable)
        actual = min(requested, calculator.actual(result.data))
        bucket.give_back(requested - actual)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        body["data"] = result.data
        body["extensions"] = self.cost_extension(store, requested, actual)
        self.record(store, operation_name, requested, actual, "errors" if result.errors else "ok")
        return ApiResponse(200, body)
