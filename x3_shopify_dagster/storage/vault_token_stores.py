"""Token stores kept in the vault: the X3 OAuth2 pair and each Shopify store's token (pair).

:class:`VaultTokenStore` implements the X3 client's ``TokenStore`` protocol; :class:`VaultShopifyTokenStore`
implements ``ShopifyTokenStore`` (with the locked ``update`` a rotating refresh needs). Vault errors become the
client's own token-store errors, whose messages name the vault key variable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from x3_shopify_dagster.shopify.errors import ShopifyTokenStoreError
from x3_shopify_dagster.shopify.oauth import ShopifyTokens
from x3_shopify_dagster.storage.vault import Vault, VaultError
from x3_shopify_dagster.x3.auth import StoredTokens
from x3_shopify_dagster.x3.errors import TokenStoreError

X3_OAUTH2_SECRET = "x3/oauth2"  # noqa: S105 (a secret name, not a secret)


def shopify_secret_name(store: str) -> str:
    return f"shopify/{store}/token"


class VaultTokenStore:
    """The X3 OAuth2 pair in the vault (implements ``x3_shopify_dagster.x3.auth.TokenStore``)."""

    def __init__(self, vault: Vault, name: str = X3_OAUTH2_SECRET) -> None:
        self.vault = vault
        self.name = name

    def load(self) -> StoredTokens | None:
        try:
            data = self.vault.get_json(self.name)
        except VaultError as exc:
            raise TokenStoreError(str(exc)) from None
        if data is None:
            return None
        try:
            return StoredTokens.from_plain(data)
        except ValueError:
            raise TokenStoreError(f"vault secret {self.name!r} does not hold X3 tokens") from None

    def save(self, tokens: StoredTokens) -> None:
        try:
            self.vault.put_json(self.name, tokens.to_plain())
        except VaultError as exc:
            raise TokenStoreError(str(exc)) from None

    def __repr__(self) -> str:
        return f"VaultTokenStore(name={self.name!r})"


class VaultShopifyTokenStore:
    """One Shopify store's token (pair) in the vault (implements ``ShopifyTokenStore``)."""

    def __init__(self, vault: Vault, store: str) -> None:
        self.vault = vault
        self.store = store
        self.name = shopify_secret_name(store)

    def load(self) -> ShopifyTokens | None:
        try:
            return self._tokens(self.vault.get_json(self.name))
        except VaultError as exc:
            raise ShopifyTokenStoreError(str(exc)) from None

    def save(self, tokens: ShopifyTokens) -> None:
        try:
            self.vault.put_json(self.name, tokens.to_plain())
        except VaultError as exc:
            raise ShopifyTokenStoreError(str(exc)) from None

    def update(self, change: Callable[[ShopifyTokens | None], ShopifyTokens | None]) -> ShopifyTokens | None:
        def change_plain(current: Any) -> Any:
            new = change(self._tokens(current))
            return None if new is None else new.to_plain()

        try:
            return self._tokens(self.vault.update_json(self.name, change_plain))
        except VaultError as exc:
            raise ShopifyTokenStoreError(str(exc)) from None

    def _tokens(self, data: Any) -> ShopifyTokens | None:
        if data is None:
            return None
        try:
            return ShopifyTokens.from_plain(data)
        except ValueError:
            raise ShopifyTokenStoreError(f"vault secret {self.name!r} does not hold Shopify tokens") from None

    def __repr__(self) -> str:
        return f"VaultShopifyTokenStore(store={self.store!r})"

