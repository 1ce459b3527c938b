"""The domain core: pure rules and types (no Dagster, no HTTP, no database)."""

from x3_shopify_dagster.domain.money import minor_units, parse_amount, round_money
from x3_shopify_dagster.domain.shopify_orders import (
    DiscountAllocation,
    DiscountApplication,
    Duty,
    Fulfillment,
    FulfillmentLineItem,
    IncompleteOrderError,
    LineItem,
    Money,
    MoneyBag,
    Refund,
    RefundLineItem,
    RefundShippingLine,
    ShippingLine,
    ShopifyOrder,
    TaxLine,
    TrackingInfo,
)

__all__ = [
    "DiscountAllocation",
    "DiscountApplication",
    "Duty",
    "Fulfillment",
    "FulfillmentLineItem",
    "IncompleteOrderError",
    "LineItem",
    "Money",
    "MoneyBag",
    "Refund",
    "RefundLineItem",
    "RefundShippingLine",
    "ShippingLine",
    "ShopifyOrder",
    "TaxLine",
    "TrackingInfo",
    "minor_units",
    "parse_amount",
    "round_money",
]
