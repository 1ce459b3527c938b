"""Local stand-ins for Shopify and Sage X3 used by the demo, the tests and the benchmarks.

Product code never imports this package (an import-linter contract enforces it); only the demo launcher
and the tests do. The sandboxes never import the product's clients either.
"""
