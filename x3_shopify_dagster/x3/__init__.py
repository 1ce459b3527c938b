"""Client for a customer's Sage X3 folder: api1 (JSON) reads and classic SOAP writes.

Knows nothing of Dagster, the connector database or Shopify. Start with `X3Client(X3Config(...), auth)`.
"""

from x3_shopify_dagster.x3.auth import (
    BasicAuth,
    EncryptedFileTokenStore,
    JwtAuth,
    MemoryTokenStore,
    OAuth2Auth,
    StoredTokens,
    TokenStore,
    X3Auth,
)
from x3_shopify_dagster.x3.client import X3Client, normalise_email
from x3_shopify_dagster.x3.config import (
    ClassRef,
    RetryPolicy,
    X3Config,
    X3Publications,
    X3Representations,
    X3Timeouts,
)
from x3_shopify_dagster.x3.errors import (
    Diagnosis,
    SoapMessage,
    TokenStoreError,
    X3AmbiguousReferenceError,
    X3AuthenticationError,
    X3BusinessError,
    X3ConfigError,
    X3DiagnosisError,
    X3Error,
    X3HttpError,
    X3OutcomeUnknownError,
    X3ProtocolError,
    X3ReauthorizationRequired,
    X3RecordLockedError,
    X3ServiceBusyError,
    X3SoapFault,
    X3TransientDiagnosisError,
    X3TransportError,
)
from x3_shopify_dagster.x3.metrics import X3ClientMetrics
from x3_shopify_dagster.x3.models import (
    X3Customer,
    X3DeliveryRef,
    X3Dimension,
    X3GlAccount,
    X3InvoiceRef,
    X3ItemSiteStock,
    X3StockMovement,
)
from x3_shopify_dagster.x3.sdata import Where
from x3_shopify_dagster.x3.soap import SoapResult

__all__ = [
    "BasicAuth",
    "ClassRef",
    "Diagnosis",
    "EncryptedFileTokenStore",
    "JwtAuth",
    "MemoryTokenStore",
    "OAuth2Auth",
    "RetryPolicy",
    "SoapMessage",
    "SoapResult",
    "StoredTokens",
    "TokenStore",
    "TokenStoreError",
    "Where",
    "X3AmbiguousReferenceError",
    "X3Auth",
    "X3AuthenticationError",
    "X3BusinessError",
    "X3Client",
    "X3ClientMetrics",
    "X3Config",
    "X3ConfigError",
    "X3Customer",
    "X3DeliveryRef",
    "X3DiagnosisError",
    "X3Dimension",
    "X3Error",
    "X3GlAccount",
    "X3HttpError",
    "X3InvoiceRef",
    "X3ItemSiteStock",
    "X3OutcomeUnknownError",
    "X3ProtocolError",
    "X3Publications",
    "X3ReauthorizationRequired",
    "X3RecordLockedError",
    "X3Representations",
    "X3ServiceBusyError",
    "X3SoapFault",
    "X3StockMovement",
    "X3Timeouts",
    "X3TransientDiagnosisError",
    "X3TransportError",
    "normalise_email",
]
