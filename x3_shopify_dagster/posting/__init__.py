"""Posting flows: staged Shopify documents to Sage X3 documents, exactly once, through the ledger.

This layer ties the pure domain (mapping, invoice drafts), the connector database (staging, ledger,
snapshots) and the X3 client together. It knows nothing of Dagster: the assets only call it and turn its
report into materialization metadata.
"""
