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
    ShopifyProtocolError,
    ShopifyThrottledError,
    ShopifyTransportError,
    ShopifyUserErrors,
    UserError,
)
from x3_shopify_dagster.shopify.fulfillments import FulfillmentProbe, FulfillmentReader
from x3_shopify_dagster.shopify.orders import ChangeProbe, OrderReader, PullStats, orders_search_query
from x3_shopify_dagster.shopify.retry import RetryPolicy

__all__ = [
    "DEFAULT_API_VERSION",
    "BulkOperationError",
    "BulkOrderExporter",
    "ChangeProbe",
    "ClientMetrics",
    "CostPacer",
    "FulfillmentProbe",
    "FulfillmentReader",
    "GraphQLDocument",
    "GraphQLResponse",
    "MaxCostExceededError",
    "OrderReader",
    "PullStats",
    "QueryCost",
    "RetryPolicy",
    "ShopInfo",
    "ShopifyAuthError",
    "ShopifyClient",
    "ShopifyError",
    "ShopifyGraphQLError",
    "ShopifyHTTPError",
    "ShopifyProtocolError",
    "ShopifyThrottledError",
    "ShopifyTransportError",
    "ShopifyUserErrors",
    "ThrottleStatus",
    "UserError",
    "bulk_orders_query",
    "document_names",
    "iter_bulk_jsonl",
    "load_document",
    "orders_search_query",
]
