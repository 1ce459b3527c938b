"""Configuration of one X3 sandbox server."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import SecretStr

from x3_shopify_dagster.sandboxes.x3.clock import Clock, utc_now

_FOLDER = re.compile(r"^[A-Z][A-Z0-9_]{0,29}$")
# Fixed sandbox credentials (documented, printed by the CLI): the sandbox guards nothing real.
DEFAULT_PASSWORD = SecretStr("x3-sandbox-password")
DEFAULT_CLIENT_SECRET = SecretStr("x3-sandbox-client-secret")


@dataclass(frozen=True)
class X3SandboxConfig:
    """What the sandbox serves and how it behaves under load.

    `folder` is the Syracuse endpoint (and the SOAP pool alias) of the main folder; `extra_folders` adds more
    endpoints with their own data and pool. `latency_s` is added to every api1 and SOAP call (a SOAP call holds
    its pool slot meanwhile, so SOAP throughput is about pool_size / latency_s).
    """

    folder: str = "SEED"
    seed: int = 7
    latency_s: float = 0.0
    pool_size: int = 4
    pool_wait_s: float = 5.0
    access_token_ttl_s: int = 300
    refresh_token_ttl_s: int = 2_592_000
    authorization_code_ttl_s: int = 600
    # Connected-application JWTs: the "Tokens validity" of the application (longest exp - iat accepted) and how
    # far in the future an iat may be before it is refused (X3 error 21).
    jwt_max_validity_s: int = 600
    jwt_iat_tolerance_s: int = 5
    extra_folders: tuple[str, ...] = ()
    user: str = "WSCONNECT"
    password: SecretStr = DEFAULT_PASSWORD
    client_id: str = "x3-sandbox-connector"
    client_secret: SecretStr = DEFAULT_CLIENT_SECRET
    allow_negative_stock: bool = False
    clock: Clock = field(default=utc_now, repr=False, compare=False)

    def __post_init__(self) -> None:
        for folder in self.folders:
            if not _FOLDER.match(folder):
                raise ValueError(f"folder names are upper-case X3 codes, got {folder!r}")
        if len(set(self.folders)) != len(self.folders):
            raise ValueError(f"duplicate folder in {self.folders}")
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.latency_s < 0 or self.pool_wait_s < 0:
            raise ValueError("latency_s and pool_wait_s cannot be negative")
        if min(self.access_token_ttl_s, self.refresh_token_ttl_s, self.authorization_code_ttl_s) <= 0:
            raise ValueError("token lifetimes must be positive")
        if not self.user or ":" in self.user:
            raise ValueError("the Basic user must be non-empty and contain no ':'")

    @property
    def folders(self) -> tuple[str, ...]:
        return (self.folder, *self.extra_folders)
