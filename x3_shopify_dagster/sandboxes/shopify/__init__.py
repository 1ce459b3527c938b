"""A local stand-in for the Shopify Admin GraphQL API (version 2026-07), serving several demo stores.

    from x3_shopify_dagster.sandboxes.shopify import ShopifySandbox, SandboxConfig

    sandbox = ShopifySandbox(SandboxConfig(stores=("eu", "us"), seed=7)).start()
    sandbox.shop_url("eu"), sandbox.access_token("eu")   # what a client needs instead of a real shop
    sandbox.stop()

CLI: ``python -m x3_shopify_dagster.sandboxes.shopify --port 8701 --stores eu,us --traffic-interval 2``.
"""

from x3_shopify_dagster.sandboxes.shopify.api import RequestRecord
from x3_shopify_dagster.sandboxes.shopify.config import SUPPORTED_API_VERSIONS, SandboxConfig
from x3_shopify_dagster.sandboxes.shopify.faults import FAULT_KINDS
from x3_shopify_dagster.sandboxes.shopify.sandbox import DEFAULT_API_VERSION, ShopifySandbox

__all__ = ["DEFAULT_API_VERSION", "FAULT_KINDS", "SUPPORTED_API_VERSIONS", "RequestRecord", "SandboxConfig",
           "ShopifySandbox"]
