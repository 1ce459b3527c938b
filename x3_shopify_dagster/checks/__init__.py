"""Set-up checks (``x3sd check``): do Shopify, Sage X3 and the mapping fit this connector? No Dagster here."""

from x3_shopify_dagster.checks.connection import (
    CheckResult,
    check_mapping_file,
    check_mapping_references,
    check_mapping_stores,
    check_shopify_store,
    check_x3_connection,
    check_x3_publications,
    check_x3_representations,
    exit_code,
    render_report,
    run_checks,
    secret_values,
)

__all__ = [
    "CheckResult",
    "check_mapping_file",
    "check_mapping_references",
    "check_mapping_stores",
    "check_shopify_store",
    "check_x3_connection",
    "check_x3_publications",
    "check_x3_representations",
    "exit_code",
    "render_report",
    "run_checks",
    "secret_values",
]
