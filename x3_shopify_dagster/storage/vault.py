"""The secret vault: tokens encrypted at rest in the connector database, under keys from the environment.

- Every secret is one row of ``vault_secrets`` holding a Fernet token (AES-128-CBC + HMAC-SHA256): the
  plaintext and the keys never reach the database. A token pair is *one* secret, so it is replaced atomically.
- Keys: ``X3SD_VAULT_KEY`` encrypts (and decrypts); ``X3SD_VAULT_OLD_KEYS`` (comma-separated) only decrypt,
  during a key rotation (``cryptography``'s MultiFernet).
- Rotation (``x3sd vault rotate-key``): put the current key in ``X3SD_VAULT_OLD_KEYS``, a new key in
  ``X3SD_VAULT_KEY``, run the command: every secret is re-encrypted under the new key in one transaction
  (all or nothing); then drop the old key.
- A missing or wrong key is a clear error naming the variable, and nothing is overwritten: a read that cannot
  decrypt never writes, and ``update`` decrypts before it writes.
- ``update`` is a read-modify-write under a lock (PostgreSQL advisory transaction lock; SQLite BEGIN
  IMMEDIATE), so two processes refreshing one rotating token pair never both spend the same refresh token.

The token stores on top of it are in :mod:`vault_token_stores` (they import the clients; this module does not,
so the storage package stays free of HTTP and client imports).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from sqlalchemy import Column, Connection, Integer, String, Table, Text, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from x3_shopify_dagster.storage.database import ConnectorDatabase
from x3_shopify_dagster.storage.schema import UtcDateTime, metadata

VAULT_KEY_ENV = "X3SD_VAULT_KEY"
VAULT_OLD_KEYS_ENV = "X3SD_VAULT_OLD_KEYS"

vault_secrets = Table(
    "vault_secrets",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("version", Integer, nullable=False),  # +1 on every replace (not on a rotation)
    Column("updated_at", UtcDateTime(), nullable=False),
)


class VaultError(RuntimeError):
    """The vault cannot do what was asked; the message says why and how to fix it (never a secret)."""


class VaultKeyError(VaultError):
    """A vault key is missing or malformed, or no configured key decrypts a stored secret."""


def generate_key() -> str:
    """A new random vault key (32 url-safe base64 bytes), for ``X3SD_VAULT_KEY``."""
    return Fernet.generate_key().decode("ascii")


@dataclass(frozen=True)
class VaultKeys:
    """The encryption key and the older keys that may still decrypt (during a rotation)."""

    primary: Fernet
    old: tuple[Fernet, ...] = ()

    @classmethod
    def from_values(cls, primary: SecretStr | str | None, old: SecretStr | str | None = None) -> VaultKeys:
        primary_value = _plain(primary).strip()
        if not primary_value:
            raise VaultKeyError(
                f"environment variable {VAULT_KEY_ENV} is not set: it must hold the key that encrypts the "
                "connector's tokens (create one with `x3sd vault generate-key`); nothing was read or changed"
            )
        return cls(
            _fernet(primary_value, VAULT_KEY_ENV),
            tuple(_fernet(value.strip(), VAULT_OLD_KEYS_ENV) for value in _plain(old).split(",") if value.strip()),
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> VaultKeys:
        env = os.environ if environ is None else environ
        return cls.from_values(env.get(VAULT_KEY_ENV), env.get(VAULT_OLD_KEYS_ENV))

    def multi(self) -> MultiFernet:
        return MultiFernet([self.primary, *self.old])

    def __repr__(self) -> str:
        return f"VaultKeys(primary=**********, old={len(self.old)} key(s))"


def _plain(value: SecretStr | str | None) -> str:
    if value is None:
        return ""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _fernet(value: str, variable: str) -> Fernet:
    try:
        return Fernet(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise VaultKeyError(
            f"environment variable {variable} does not hold valid vault key(s) (each 32 url-safe base64 bytes, "
            "as printed by `x3sd vault generate-key`); nothing was read or changed"
        ) from None


@dataclass(frozen=True)
class VaultEntry:
    name: str
    version: int
    updated_at: datetime
    key: Literal["current", "old", "none"]  # which key decrypts it


@dataclass(frozen=True)
class RotationReport:
    rotated: tuple[str, ...]  # every secret, now encrypted under the current key


class Vault:
    """Secrets by name in the connector database. Thread- and process-safe."""

    def __init__(self, db: ConnectorDatabase, keys: VaultKeys) -> None:
        self._db = db
        self._keys = keys
        self._fernet = keys.multi()

    def __repr__(self) -> str:
        return f"Vault({self._db!r}, {self._keys!r})"

    # -- reads ---------------------------------------------------------------------------------------------
    def get(self, name: str) -> bytes | None:
        with self._db.transaction() as connection:
            row = connection.execute(select(vault_secrets.c.ciphertext).where(vault_secrets.c.name == name)).first()
        return None if row is None else self._decrypt(name, row.ciphertext)

    def get_json(self, name: str) -> Any:
        plain = self.get(name)
        return None if plain is None else json.loads(plain)

    def entries(self) -> list[VaultEntry]:
        """Every secret's name, version, time and which key decrypts it (nothing is decrypted for output)."""
        with self._db.transaction() as connection:
            rows = connection.execute(select(vault_secrets).order_by(vault_secrets.c.name)).all()
        entries = []
        for row in rows:
            key: Literal["current", "old", "none"] = "none"
            try:
                self._keys.primary.decrypt(row.ciphertext.encode("ascii"))
                key = "current"
            except InvalidToken:
                try:
                    self._fernet.decrypt(row.ciphertext.encode("ascii"))
                    key = "old"
                except InvalidToken:
                    pass
            entries.append(VaultEntry(row.name, row.version, row.updated_at, key))
        return entries

    # -- writes --------------------------------------------------------------------------------------------
    def put(self, name: str, plaintext: bytes) -> None:
        """Store (or atomically replace) ``name``."""
        ciphertext = self._fernet.encrypt(plaintext).decode("ascii")
        with self._db.transaction(write=True) as connection:
            self._upsert(connection, name, ciphertext)

    def put_json(self, name: str, value: Any) -> None:
        self.put(name, json.dumps(value, separators=(",", ":")).encode())

    def update(self, name: str, change: Callable[[bytes | None], bytes | None]) -> bytes | None:
        """Read-modify-write under a lock: ``change(current)`` returns the new plaintext or None to keep it.

        The new value is committed before ``update`` returns it. ``change`` may take a while (an HTTP token
        refresh): other writers of the vault wait for it; readers do not.
        """
        with self._db.transaction(write=True) as connection:
            self._lock(connection, name)
            row = connection.execute(select(vault_secrets.c.ciphertext).where(vault_secrets.c.name == name)).first()
            current = None if row is None else self._decrypt(name, row.ciphertext)
            new = change(current)
            if new is None:
                return current
            self._upsert(connection, name, self._fernet.encrypt(new).decode("ascii"))
            return new

    def update_json(self, name: str, change: Callable[[Any], Any]) -> Any:
        def change_bytes(current: bytes | None) -> bytes | None:
            new = change(None if current is None else json.loads(current))
            return None if new is None else json.dumps(new, separators=(",", ":")).encode()

        result = self.update(name, change_bytes)
        return None if result is None else json.loads(result)

    def delete(self, name: str) -> bool:
        with self._db.transaction(write=True) as connection:
            return connection.execute(delete(vault_secrets).where(vault_secrets.c.name == name)).rowcount > 0

    def rotate(self) -> RotationReport:
        """Re-encrypt every secret under the current key, in one transaction: all or nothing.

        A secret no configured key decrypts aborts the whole rotation (VaultKeyError naming it); nothing changes.
        """
        with self._db.transaction(write=True) as connection:
            query = select(vault_secrets.c.name, vault_secrets.c.ciphertext).order_by(vault_secrets.c.name)
            if self._db.dialect_name == "postgresql":
                query = query.with_for_update()
            rows = connection.execute(query).all()
            rotated = []
            for row in rows:
                try:
                    new = self._fernet.rotate(row.ciphertext.encode("ascii")).decode("ascii")
                except InvalidToken:
                    raise self._undecryptable(row.name, rotating=True) from None
                connection.execute(
                    update(vault_secrets).where(vault_secrets.c.name == row.name).values(ciphertext=new)
                )
                rotated.append(row.name)
        return RotationReport(tuple(rotated))

    # -- internals -----------------------------------------------------------------------------------------
    def _decrypt(self, name: str, ciphertext: str) -> bytes:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii"))
        except InvalidToken:
            raise self._undecryptable(name) from None

    @staticmethod
    def _undecryptable(name: str, *, rotating: bool = False) -> VaultKeyError:
        what = "the rotation was rolled back and " if rotating else ""
        return VaultKeyError(
            f"cannot decrypt vault secret {name!r} with the key in {VAULT_KEY_ENV} nor any key in "
            f"{VAULT_OLD_KEYS_ENV} (the key was changed without a rotation, or the row is damaged); {what}nothing "
            f"was changed: put the key that encrypted it back in {VAULT_KEY_ENV}, or add it to "
            f"{VAULT_OLD_KEYS_ENV} and run `x3sd vault rotate-key`"
        )

    def _lock(self, connection: Connection, name: str) -> None:
        if self._db.dialect_name == "postgresql":
            key = int.from_bytes(hashlib.sha256(f"x3sd.vault:{name}".encode()).digest()[:8], "big", signed=True)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        # SQLite: transaction(write=True) began with BEGIN IMMEDIATE, which already excludes other writers.

    def _upsert(self, connection: Connection, name: str, ciphertext: str) -> None:
        now = datetime.now(UTC)
        dialect = self._db.dialect_name
        if dialect not in {"postgresql", "sqlite"}:  # pragma: no cover - only the two supported databases
            raise VaultError(f"the vault supports SQLite and PostgreSQL, not {dialect}")
        insert = postgres_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(vault_secrets).values(name=name, ciphertext=ciphertext, version=1, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[vault_secrets.c.name],
            set_={"ciphertext": ciphertext, "version": vault_secrets.c.version + 1, "updated_at": now},
        )
        connection.execute(statement)
