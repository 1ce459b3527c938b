"""Shopify source: the partitioned orders asset and its change sensor."""
