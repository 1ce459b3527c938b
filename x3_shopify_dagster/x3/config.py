"""Per-folder configuration of the Sage X3 client.

Everything that differs between X3 installations lives here: the server address and folder (Syracuse
endpoint), the SOAP pool, class/representation names (often customer-specific Y/Z ones), SOAP publications and
action codes, the searchable reference field, pool size, timeouts and the retry budget. Defaults follow the
wire contract in the project's reference notes.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from x3_shopify_dagster.netloc import is_loopback_host
from x3_shopify_dagster.x3.errors import X3ConfigError

_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,29}$")


def check_transport_security(url: str, *, what: str) -> None:
    """https everywhere; plain http only to loopback (the local sandbox); no embedded credentials."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise X3ConfigError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise X3ConfigError(f"{what} must not embed credentials")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise X3ConfigError(f"{what} must use https; plain http is only accepted for loopback addresses")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClassRef(_Frozen):
    """An api1 class and the representation to read it with."""

    cls: str
    representation: str


class X3Representations(_Frozen):
    customers: ClassRef = ClassRef(cls="BPCUSTOMER", representation="BPCUSTOMER")
    customer_addresses: ClassRef = ClassRef(cls="BPADDRESS", representation="ZBPADDRESS")
    gl_accounts: ClassRef = ClassRef(cls="GACCOUNT", representation="ZGACCOUNT")
    dimensions: ClassRef = ClassRef(cls="CACCE", representation="ZCACCE")
    items: ClassRef = ClassRef(cls="ITMMASTER", representation="ITMMASTER")
    tax_codes: ClassRef = ClassRef(cls="TABVAT", representation="ZTABVAT")
    invoice_types: ClassRef = ClassRef(cls="TABSIVTYP", representation="ZTABSIVTYP")
    sites: ClassRef = ClassRef(cls="FACILITY", representation="FACILITY")
    sales_invoices: ClassRef = ClassRef(cls="SINVOICEV", representation="SINVOICEV")
    deliveries: ClassRef = ClassRef(cls="SDELIVERY", representation="ZSDELIVERY")
    stock_journal: ClassRef = ClassRef(cls="STOJOU", representation="ZSTOJOU")
    stock_by_item_site: ClassRef = ClassRef(cls="ITMMVT", representation="ZITMMVT")
    gl_entries: ClassRef = ClassRef(cls="GACCENTRY", representation="ZGACCENTRY")


class X3Publications(_Frozen):
    """Classic SOAP publications (GESAWE) and the action codes used on them."""

    sales_invoice: str = "YSIH"
    delivery: str = "YSDH"
    invoice_validate_action: str = "VALID"
    delivery_validate_action: str = "VALID"


class X3Timeouts(_Frozen):
    connect_s: float = Field(default=10.0, gt=0)
    read_s: float = Field(default=60.0, gt=0)
    # SOAP saves run business rules and may wait for a pool client: give them longer.
    soap_read_s: float = Field(default=120.0, gt=0)


class RetryPolicy(_Frozen):
    """Bounded exponential backoff with full jitter: sleep ~ U(0, min(max_delay, base * 2**(attempt-1)))."""

    max_attempts: int = Field(default=5, ge=1, le=20)
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=20.0, ge=0)


class X3Config(_Frozen):
    server_url: str = Field(description="https://x3.example.com (scheme and host; the port may go in `port`)")
    port: int | None = Field(default=None, ge=1, le=65535)
    folder: str = Field(description="Syracuse endpoint mapped to the X3 folder, e.g. SEED")
    ca_bundle_path: Path | None = Field(default=None, description="PEM bundle for a private CA; TLS stays on")
    language: str = Field(default="ENG", description="X3 language code for SOAP calls (codeLang)")
    pool_alias: str = Field(default="SEED", description="Classic SOAP pool alias (case-sensitive)")
    pool_id: str = ""
    pool_size: int = Field(
        default=4, ge=1, le=64, description="Max concurrent SOAP calls (the folder's pool)"
    )
    soap_json: bool = Field(default=True, description="Ask X3 for JSON (adxwss.optreturn=JSON) and send JSON")
    soap_extra_request_config: str = "adxwss.beautify=false"
    representations: X3Representations = X3Representations()
    publications: X3Publications = X3Publications()
    reference_field: str = Field(default="BPRVCR", description="Searchable field holding the connector's key")
    customer_address_type: int = Field(default=1, description="BPATYP of customer addresses")
    page_size: int = Field(default=100, ge=1, le=1000)
    timeouts: X3Timeouts = X3Timeouts()
    retry: RetryPolicy = RetryPolicy()
    # Text fragments (case-insensitive) of X3 messages meaning "busy, try again" and "locked, try again".
    busy_markers: tuple[str, ...] = (
        "no web services accepted",
        "pool timeout",
        "timeout while waiting",
        "no client available",
        "pool is full",
        "pool exhausted",
    )
    lock_markers: tuple[str, ...] = (
        "record locked",
        "locked by",
        "en cours de modification",
        "verrouillé par",
    )
    not_found_markers: tuple[str, ...] = (
        "record does not exist",
        "does not exist",
        "n'existe pas",
        "inexistant",
    )

    @field_validator("folder", "pool_alias", "reference_field")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError(f"expected an X3 code (letters, digits, underscore), got {value!r}")
        return value

    @model_validator(mode="after")
    def _secure(self) -> X3Config:
        check_transport_security(self.server_url, what="X3 server URL")
        parts = urlsplit(self.server_url)
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise X3ConfigError("X3 server URL must be scheme://host[:port] only, without a path")
        if self.port is not None and parts.port is not None and parts.port != self.port:
            raise X3ConfigError(f"X3 server URL has port {parts.port} but port {self.port} is configured")
        return self

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.server_url)
        port = self.port if self.port is not None else parts.port
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"{parts.scheme}://{host}" + (f":{port}" if port else "")

    @property
    def api1_url(self) -> str:
        return f"{self.base_url}/api1/x3/erp/{self.folder}"

    @property
    def soap_url(self) -> str:
        return f"{self.base_url}/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"

    @property
    def token_url(self) -> str:
        """Default OAuth2 token endpoint on the same server (wire contract; [U] on real Syracuse)."""
        return f"{self.base_url}/auth/oauth2/token"

    @property
    def authorise_url(self) -> str:
        """Default OAuth2 pairing page on the same server (X3 Cloud: /v1/token/authorise; set it explicitly)."""
        return f"{self.base_url}/auth/oauth2/authorise"

    def tls_verify(self) -> ssl.SSLContext | bool:
        """TLS verification is always on; a custom CA bundle only adds trust anchors."""
        if self.ca_bundle_path is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_bundle_path))

    @property
    def soap_request_config(self) -> str:
        parts = [f"adxwss.optreturn={'JSON' if self.soap_json else 'XML'}"]
        if self.soap_extra_request_config:
            parts.append(self.soap_extra_request_config)
        return "&".join(parts)
