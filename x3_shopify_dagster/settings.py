"""Typed configuration from environment variables (prefix ``X3SD_``) and an optional ``.env`` file.

Stores are configuration, not code: each ``X3SD_STORES__<KEY>__...`` group defines one Shopify store, and the
store key becomes part of every partition key. A missing or malformed setting fails at start-up with a message
that names the environment variable and says how to fix it (see ``SettingsError``).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from x3_shopify_dagster.netloc import is_loopback_host
from x3_shopify_dagster.redaction import register_basic_credentials, register_secret
from x3_shopify_dagster.x3.config import X3Config, X3Publications, X3Representations

ENV_PREFIX = "X3SD_"
_SHOP_HOST = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
_STORE_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_API_VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
DEFAULT_API_VERSION = "2026-07"
_FIELD_PROBLEM = re.compile(r"^\[(\w+)\] (.*)$", re.DOTALL)


def validate_service_url(url: str, *, what: str) -> str:
    """Allow https anywhere and plain http only on loopback (the sandboxes); never a URL with credentials."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not embed credentials; set them in their own variables")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{what} must use https (plain http is only accepted for loopback addresses)")
    return url.rstrip("/")


class StoreSettings(BaseModel):
    """One Shopify store: ``X3SD_STORES__<KEY>__SHOP_URL``, ``__AUTH_MODE`` and its credentials, ``__API_VERSION``.

    ``auth_mode``: ``token`` (a static ``ACCESS_TOKEN``), ``oauth`` (the token ``x3sd shopify connect`` put in
    the vault, refreshed with rotation) or ``client_credentials`` (``CLIENT_ID``/``CLIENT_SECRET``; the ~24 h
    token is cached in the vault). The last two need ``X3SD_VAULT_KEY``.
    """

    shop_url: str = Field(description="The store's own https://{shop}.myshopify.com address")
    auth_mode: Literal["token", "oauth", "client_credentials"] = Field(default="token")
    access_token: SecretStr | None = Field(default=None, description="Admin API access token (auth_mode token)")
    client_id: str | None = Field(default=None, description="App client id (auth_mode oauth, client_credentials)")
    client_secret: SecretStr | None = Field(default=None, description="App client secret (oauth, client_credentials)")
    api_version: str = Field(default=DEFAULT_API_VERSION, description="Admin API version, YYYY-MM")
    location_sites: dict[str, str] = Field(
        default_factory=dict,
        description="Shopify location (legacy id or GID) → X3 stock site (STOFCY) its fulfilments ship from",
    )

    @field_validator("location_sites")
    @classmethod
    def _location_sites(cls, value: dict[str, str]) -> dict[str, str]:
        """Keys normalised to location GIDs (what fulfilments carry); sites must be X3 codes."""
        normalised: dict[str, str] = {}
        for key, site in value.items():
            location = key.strip()
            if location.isdigit():
                location = f"gid://shopify/Location/{location}"
            if not re.fullmatch(r"gid://shopify/Location/\d+", location):
                raise ValueError(f"location {key!r} must be a Shopify location id (digits) or its GID")
            if not re.fullmatch(r"[A-Za-z0-9_]{1,10}", site.strip()):
                raise ValueError(f"X3 site for location {key!r} must be an X3 site code such as FR011, got {site!r}")
            normalised[location] = site.strip().upper()  # X3 site codes are upper case
        return normalised

    locations: dict[str, str] = Field(
        default_factory=dict,
        description="X3 stock site (FCY) -> Shopify location GID whose stock level follows it",
    )

    @field_validator("locations")
    @classmethod
    def _locations(cls, value: dict[str, str]) -> dict[str, str]:
        # Environment keys arrive lower-cased; X3 site codes are upper case.
        normalised: dict[str, str] = {}
        for site, location in value.items():
            code = site.strip().upper()
            if not re.fullmatch(r"[A-Z0-9_]{1,30}", code):
                raise ValueError(f"X3 site code {site!r} must be letters, digits or underscore (e.g. FR011)")
            if not re.fullmatch(r"gid://shopify/Location/\d+", location.strip()):
                raise ValueError(
                    f"the location of site {code} must be a Shopify location GID such as "
                    f"gid://shopify/Location/123456789, got {location!r}"
                )
            normalised[code] = location.strip()
        return normalised

    @model_validator(mode="after")
    def _derive_site_maps(self) -> StoreSettings:
        """One map is enough when sites and locations pair one to one: the other is derived from it."""
        if self.locations and not self.location_sites:
            shared = {loc for loc, sites in Counter(self.locations.values()).items() if sites > 1}
            if shared:
                raise ValueError(
                    f"locations: several X3 sites feed the same Shopify location ({', '.join(sorted(shared))}); "
                    "give each site its own location, or set location_sites to say which site fulfilments ship from"
                )
            self.location_sites = {location: site for site, location in self.locations.items()}
        elif self.location_sites and not self.locations:
            by_site: dict[str, list[str]] = {}
            for location, site in self.location_sites.items():
                by_site.setdefault(site.upper(), []).append(location)
            # A site shipping from several locations feeds none of them: which one follows X3 is a choice.
            self.locations = {site: found[0] for site, found in by_site.items() if len(found) == 1}
        else:
            for site, location in self.locations.items():
                ships_from = self.location_sites.get(location)
                if ships_from is not None and ships_from != site:
                    raise ValueError(
                        f"locations maps site {site} to {location}, but location_sites says {location} ships from "
                        f"{ships_from}: the two maps must agree (or set only one and let the other be derived)"
                    )
        return self

    @field_validator("shop_url")
    @classmethod
    def _shop_url(cls, value: str) -> str:
        url = validate_service_url(value, what="shop URL")
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" and not (_SHOP_HOST.match(host) and parts.path in {"", "/"}):
            raise ValueError(
                f"shop URL must look like https://{{shop}}.myshopify.com (the store's own myshopify domain), "
                f"got {value!r}"
            )
        return url

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if not _API_VERSION.match(value):
            raise ValueError(f"API version must look like 2026-07 (a quarterly YYYY-MM release), got {value!r}")
        return value

    @field_validator("access_token", "client_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> StoreSettings:
        # "[field] problem": load_settings names the field's own variable (X3SD_STORES__EU__ACCESS_TOKEN).
        if self.auth_mode == "token" and self.access_token is None:
            raise ValueError(
                "[access_token] is not set (auth_mode token needs the Admin API token; or set AUTH_MODE to oauth "
                "or client_credentials with CLIENT_ID and CLIENT_SECRET)"
            )
        if self.auth_mode != "token":
            for name, value in (("client_id", self.client_id), ("client_secret", self.client_secret)):
                if not value:
                    raise ValueError(f"[{name}] is not set (auth_mode {self.auth_mode} needs the app's credentials)")
        return self


class X3Settings(BaseModel):
    """The customer's Sage X3 server: ``X3SD_X3__SERVER_URL``, ``__PORT``, ``__FOLDER``, auth, names."""

    server_url: str | None = Field(default=None, description="https://x3.example.com (no port, no path)")
    port: int | None = Field(default=None, ge=1, le=65535)
    folder: str | None = Field(default=None, description="Syracuse endpoint / X3 folder, e.g. SEED")
    pool_alias: str | None = Field(default=None, description="Classic SOAP pool alias (defaults to the folder)")
    language: str = "ENG"
    pool_size: int = Field(default=4, ge=1, le=64)
    auth_mode: Literal["basic", "oauth2", "jwt"] = "basic"
    user: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token_url: str | None = None
    authorize_url: str | None = Field(default=None, description="OAuth2 pairing page ({server}/auth/oauth2/authorise)")
    oauth_scope: str = Field(default="", description="Scope asked for when pairing (space-separated)")
    redirect_uri: str = Field(
        default="http://127.0.0.1:8765/x3sd/callback",
        description="Loopback callback of `x3sd x3 connect`; register it with the X3 client (port 0: any free port)",
    )
    token_store_path: str = Field(default=".x3sd/x3_tokens.enc", description="Encrypted OAuth2 token file")
    token_store: Literal["file", "vault"] = Field(default="file", description="Where X3 OAuth2 tokens are kept")
    jwt_audience: str = Field(default="", description="aud claim of connected-application JWTs")
    jwt_lifetime_seconds: int = Field(default=300, ge=30, le=3600, description="exp - iat of each minted JWT")
    jwt_clock_skew_seconds: int = Field(default=30, ge=0, le=600, description="iat is set this far in the past")
    ca_bundle_path: str | None = None
    reference_field: str = "BPRVCR"
    representations: X3Representations = Field(default_factory=X3Representations)
    publications: X3Publications = Field(default_factory=X3Publications)

    @model_validator(mode="before")
    @classmethod
    def _no_tls_switch(cls, data: object) -> object:
        # TLS verification cannot be turned off by any setting: say so instead of silently ignoring the variable.
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in {"verify", "tls_verify", "ssl_verify", "verify_tls", "insecure",
                                        "tls_insecure", "verify_ssl"}:
                    raise ValueError(
                        f"X3SD_X3__{str(key).upper()} is not a setting: TLS verification is always on. For a "
                        "private certificate authority set X3SD_X3__CA_BUNDLE_PATH to its PEM bundle"
                    )
        return data

    @field_validator("server_url", "token_url", "authorize_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else validate_service_url(value, what="X3 URL")

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname or not is_loopback_host(parts.hostname):
            raise ValueError(
                "the pairing callback must be a plain http loopback URL (x3sd x3 connect listens on it), e.g. "
                f"http://127.0.0.1:8765/x3sd/callback; got {value!r}"
            )
        return value

    @field_validator("ca_bundle_path")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"CA bundle {value!r} does not exist or is not a file (a PEM file of CA certificates)")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,30}", value):
            raise ValueError(f"folder must be an X3 folder code (letters, digits, underscore), got {value!r}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> X3Settings:
        if self.server_url is None:
            return self
        if self.folder is None:
            raise ValueError("X3SD_X3__FOLDER is needed with X3SD_X3__SERVER_URL (the X3 folder, e.g. SEED)")
        if self.auth_mode == "basic" and (self.user is None or self.password is None):
            raise ValueError("X3 basic auth needs both X3SD_X3__USER and X3SD_X3__PASSWORD")
        if self.auth_mode == "oauth2" and (self.client_id is None or self.client_secret is None):
            raise ValueError("X3 oauth2 needs X3SD_X3__CLIENT_ID and X3SD_X3__CLIENT_SECRET")
        if self.auth_mode == "jwt" and (self.client_id is None or self.client_secret is None or self.user is None):
            raise ValueError(
                "X3 jwt (connected application) needs X3SD_X3__CLIENT_ID, X3SD_X3__CLIENT_SECRET and X3SD_X3__USER "
                "(the X3 user the application acts as)"
            )
        if self.auth_mode == "jwt" and self.jwt_lifetime_seconds <= self.jwt_clock_skew_seconds:
            raise ValueError("X3SD_X3__JWT_LIFETIME_SECONDS must exceed X3SD_X3__JWT_CLOCK_SKEW_SECONDS")
        return self

    def register_secrets(self) -> None:
        """Tell the redaction layer the X3 secrets (and the Basic header form of the password)."""
        if self.password is not None:
            register_basic_credentials(self.user or "", self.password)
        register_secret(self.client_secret)

    @property
    def configured(self) -> bool:
        return self.server_url is not None

    def client_config(self) -> X3Config:
        """The X3 client's configuration (no secrets in it)."""
        if self.server_url is None or self.folder is None:
            raise ValueError("Sage X3 is not configured: set X3SD_X3__SERVER_URL and X3SD_X3__FOLDER")
        return X3Config(
            server_url=self.server_url,
            port=self.port,
            folder=self.folder,
            pool_alias=self.pool_alias or self.folder,
            language=self.language,
            pool_size=self.pool_size,
            ca_bundle_path=self.ca_bundle_path,
            reference_field=self.reference_field,
            representations=self.representations,
            publications=self.publications,
        )


class ConnectorSettings(BaseSettings):
    """Everything the connector reads from its environment. See docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    stores: dict[str, StoreSettings] = Field(description="Shopify stores by key")
    database_url: str = Field(
        default="sqlite:///.x3sd/connector.db",
        description="Connector database (SQLAlchemy URL): SQLite file by default, PostgreSQL in production",
    )
    partition_timezone: str = Field(default="UTC", description="IANA timezone of the business day")
    partition_start_date: date = Field(default=date(2026, 1, 1), description="First daily partition")
    shopify_overlap_minutes: int = Field(default=10, ge=0, le=24 * 60)
    shopify_safety_lag_seconds: int = Field(default=60, ge=0, le=3600)
    # Sized to keep one OrdersPage request under Shopify's 1,000-point single-query limit (about 814 points
    # requested for 4 orders x 5 line items x 2 shipping lines); longer orders are paged separately.
    shopify_page_size: int = Field(default=4, ge=1, le=250)
    shopify_line_items_page_size: int = Field(default=5, ge=1, le=250)
    shopify_shipping_lines_page_size: int = Field(default=2, ge=1, le=250)
    shopify_bulk_threshold_orders: int = Field(default=2000, ge=1)
    shopify_timeout_seconds: float = Field(default=30.0, gt=0)
    sensor_interval_seconds: int = Field(default=30, ge=5)
    sensor_initial_lookback_hours: int = Field(default=24, ge=0)
    sensors_running_by_default: bool = False
    x3: X3Settings = Field(default_factory=X3Settings)
    mapping_path: str | None = Field(default=None, description="YAML mapping of X3 customers to GL accounts etc.")
    x3_snapshot_cron: str = Field(default="*/15 * * * *", description="Refresh of x3_customers and x3_gl_accounts")
    posting_lease_seconds: int = Field(default=900, ge=30, description="Lease of one X3 write (exactly-once)")
    # Declared after `stores` and `x3`: the validator checks the key is there when something needs the vault.
    vault_key: SecretStr | None = Field(
        default=None, validate_default=True, description="Fernet key encrypting the vault (tokens at rest)"
    )
    vault_old_keys: SecretStr | None = Field(default=None, description="Older vault keys (comma-separated), rotation")
    # X3SD_X3_TOKEN_KEY (one underscore: not a field of `x3`), read from the environment or `.env` like every setting.
    x3_token_key: SecretStr | None = Field(
        default=None, description="Fernet key of the X3 OAuth2 token file (X3SD_X3__TOKEN_STORE=file)"
    )
    shopify_fulfillment_orders_page_size: int = Field(default=5, ge=1, le=250)
    shopify_fulfillments_per_order: int = Field(default=5, ge=1, le=250)
    # "flag": a fulfilment cancelled after its X3 delivery was validated fails with reason
    # fulfillment_cancelled_after_delivery for a manual customer return. ("return", an automatic X3 customer
    # return, needs a returns publication the connector does not drive yet.)
    fulfillment_cancel_action: Literal["flag"] = Field(default="flag")
    # Stock sync (X3 stock -> Shopify levels, flows.md §4)
    stock_sensor_interval_seconds: int = Field(default=30, ge=5, description="Interval of x3_stock_sensor")
    stock_quantity_name: Literal["on_hand", "available"] = Field(
        default="on_hand", description="The Shopify quantity X3's stock sets"
    )
    stock_transaction_types: list[int] = Field(
        default_factory=lambda: [2, 3, 4],
        description="X3 stock journal transaction types (STOJOU.TRSTYP, local menu 704) that move sellable stock",
    )
    stock_overlap_seconds: int = Field(default=120, ge=0, le=24 * 3600)
    stock_safety_lag_seconds: int = Field(default=2, ge=0, le=3600)
    stock_reason: str = Field(default="correction", description="inventorySetQuantities reason")
    stock_stale_retries: int = Field(default=3, ge=0, le=10)
    # Longer than the Shopify client's longest call with its retries (120 s budget + a 30 s timeout).
    stock_lease_seconds: int = Field(default=300, ge=60, description="Lease of one Shopify inventory write")

    @field_validator("stores")
    @classmethod
    def _stores(cls, value: dict[str, StoreSettings]) -> dict[str, StoreSettings]:
        if not value:
            raise ValueError("define at least one store (X3SD_STORES__<KEY>__SHOP_URL and __ACCESS_TOKEN)")
        normalised: dict[str, StoreSettings] = {}
        for key, store in value.items():
            k = key.lower()
            if not _STORE_KEY.match(k):
                raise ValueError(
                    f"store key {key!r} must be lowercase letters, digits, '-' or '_' (it is used in partition keys)"
                )
            normalised[k] = store
        return dict(sorted(normalised.items()))

    @field_validator("vault_key")
    @classmethod
    def _vault_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            return value
        stores = info.data.get("stores") or {}
        x3 = info.data.get("x3")
        users = [f"store {key} (auth_mode {s.auth_mode})" for key, s in stores.items() if s.auth_mode != "token"]
        if x3 is not None and x3.token_store == "vault":  # noqa: S105 (a setting value)
            users.append("X3 OAuth2 tokens (X3SD_X3__TOKEN_STORE=vault)")
        if users:
            raise ValueError(
                f"is needed by {', '.join(users)}: set it to a key from `x3sd vault generate-key` (and keep it: "
                "the vault cannot be read without it)"
            )
        return None

    @field_validator("partition_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA timezone name (e.g. Europe/Paris): {value!r}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("database URL must be sqlite:///path or postgresql+psycopg2://user@host/db")
        return value


def register_settings_secrets(settings: ConnectorSettings) -> None:
    """Every secret value of the configuration, for the redaction layer (logs, errors, metadata)."""
    register_secret(*(store.access_token for store in settings.stores.values()))
    register_secret(*(store.client_secret for store in settings.stores.values()))
    register_secret(settings.vault_key, settings.x3_token_key)
    old_keys = settings.vault_old_keys.get_secret_value() if settings.vault_old_keys else ""
    register_secret(*(key.strip() for key in old_keys.split(",")))
    settings.x3.register_secrets()


class SettingsError(RuntimeError):
    """Raised at start-up with one line per bad setting: the variable, the problem, the fix."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def load_settings(**overrides: object) -> ConnectorSettings:
    """Load settings from the environment/.env, turning validation errors into actionable messages."""
    try:
        return ConnectorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            name = _env_name(tuple(error["loc"]))
            if name == f"{ENV_PREFIX}STORES" and error["type"] == "missing":
                problem = (
                    "no Shopify store is configured; set X3SD_STORES__<KEY>__SHOP_URL and "
                    "X3SD_STORES__<KEY>__ACCESS_TOKEN (KEY is a short name such as EU)"
                )
            elif error["type"] == "missing":
                problem = "is not set"
            else:
                problem = error["msg"].removeprefix("Value error, ")
                field = _FIELD_PROBLEM.match(problem)
                if field is not None:  # a model-level check about one field: name that field's variable
                    name, problem = f"{name}__{field.group(1).upper()}", field.group(2)
            lines.append(f"  {name}: {problem}")
        raise SettingsError(
            "The connector's configuration is incomplete or invalid:\n"
            + "\n".join(lines)
            + "\nSet these environment variables (or put them in .env); see .env.example and docs/configuration.md."
        ) from None
