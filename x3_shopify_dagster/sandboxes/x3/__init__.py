"""A local Sage X3 (Syracuse) server: api1 reads, classic SOAP writes, Basic/OAuth2 auth, a web-service pool
and injectable faults. See docs/x3-sandbox.md.

    from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig
    sandbox = X3Sandbox(X3SandboxConfig(folder="SEED")).start()
"""

from x3_shopify_dagster.sandboxes.x3.app import X3Call
from x3_shopify_dagster.sandboxes.x3.clock import ManualClock
from x3_shopify_dagster.sandboxes.x3.config import X3SandboxConfig
from x3_shopify_dagster.sandboxes.x3.faults import FAULT_KINDS, FaultKind
from x3_shopify_dagster.sandboxes.x3.server import X3Sandbox
from x3_shopify_dagster.sandboxes.x3.state import FolderState

__all__ = ["FAULT_KINDS", "FaultKind", "FolderState", "ManualClock", "X3Call", "X3Sandbox", "X3SandboxConfig"]
