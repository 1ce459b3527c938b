"""Shopify GraphQL Admin API client (no Dagster here): transport, pacing, retries, orders, bulk exports."""

from x3_shopify_dagster.shopify.bulk import BulkOrderExporter, bulk_orders_query, iter_bulk_jsonl
from x3_shopify_dagster.shopify.client import (
    DEFAULT_API_VERSION,
    GraphQLResponse,
    ShopifyClient,
    ShopInfo,
)
from x3_shopify_dagster.shopify.cost import ClientMetrics, CostPacer, QueryCost, ThrottleStatus
from x3_shopify_dagster.shopify.documents import GraphQLDocument, document_names, load_document
from x3_shopify_dagster.shopify.errors import (
    BulkOperationError,
    MaxCostExceededError,
    ShopifyAuthError,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyHTTPError,
    ShopifyOAuthError,
    ShopifyProtocolError,
    ShopifyReauthorizationRequired,
    ShopifyThrottledError,
    ShopifyTokenStoreError,
    ShopifyTransportError,
    ShopifyUserErrors,
    UserError,
)
from x3_shopify_dagster.shopify.fulfillments import FulfillmentProbe, FulfillmentReader
from x3_shopify_dagster.shopify.oauth import (
    REQUIRED_SCOPES,
    ClientCredentialsAuth,
    OAuthTokenAuth,
    ShopifyAuth,
    ShopifyTokens,
    ShopifyTokenStore,
    StaticTokenAuth,
    missing_scopes,
)
from x3_shopify_dagster.shopify.orders import ChangeProbe, OrderReader, PullStats, orders_search_query
from x3_shopify_dagster.shopify.retry import RetryPolicy

__all__ = [
    "DEFAULT_API_VERSION",
    "REQUIRED_SCOPES",
    "BulkOperationError",
    "BulkOrderExporter",
    "ChangeProbe",
    "ClientCredentialsAuth",
    "ClientMetrics",
    "CostPacer",
    "FulfillmentProbe",
    "FulfillmentReader",
    "GraphQLDocument",
    "GraphQLResponse",
    "MaxCostExceededError",
    "OAuthTokenAuth",
    "OrderReader",
    "PullStats",
    "QueryCost",
    "RetryPolicy",
    "ShopInfo",
    "ShopifyAuth",
    "ShopifyAuthError",
    "ShopifyClient",
    "ShopifyError",
    "ShopifyGraphQLError",
    "ShopifyHTTPError",
    "ShopifyOAuthError",
    "ShopifyProtocolError",
    "ShopifyReauthorizationRequired",
    "ShopifyThrottledError",
    "ShopifyTokenStore",
    "ShopifyTokenStoreError",
    "ShopifyTokens",
    "ShopifyTransportError",
    "ShopifyUserErrors",
    "StaticTokenAuth",
    "ThrottleStatus",
    "UserError",
    "bulk_orders_query",
    "document_names",
    "iter_bulk_jsonl",
    "load_document",
    "missing_scopes",
    "orders_search_query",
]
