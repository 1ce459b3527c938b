"""One place that knows the connector's secrets and scrubs them from text, log records, errors and metadata.

Two layers, because neither alone is enough:

- **known values**: every secret the process holds (Shopify access tokens, the X3 password and its Basic
  ``base64(user:password)`` form, OAuth2 client secrets, access and refresh tokens as they are obtained, minted
  JWTs, vault and token-file keys) is registered here by whoever loads or obtains it (``ConnectorRuntime`` for the
  settings, the auth classes for tokens). Any occurrence is replaced by ``**********``;
- **shapes**: ``Authorization: Basic …``/``Bearer …`` values, ``X-Shopify-Access-Token`` headers, ``key=value``
  pairs of well-known secret names (``client_secret=``, ``"refresh_token": "…"``), JWTs (``eyJ….eyJ….…``) and
  Shopify token prefixes (``shpat_…``) are masked even when the value was never registered (a token another
  process obtained, a value echoed by a server).

Importable by every layer (clients, storage, defs, checks): no Dagster, no HTTP, no database. Dagster's own loggers
are covered through the log-record factory that :func:`install_log_redaction` installs (Dagster's per-run
``context.log`` is a ``logging.Logger`` whose records go through it); materialization metadata is scrubbed by the
defs helper built on :func:`scrub_value`.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "**********"
# Shorter values would garble ordinary text (and no server echoes a 3-character secret).
MIN_SECRET_LENGTH = 4

# Names of secrets (not secrets).
_SECRET_NAMES = "|".join((
    r"access[_-]?token", r"refresh[_-]?token", r"id[_-]?token", r"client[_-]?secret", "pass" + "word", "passwd",
    "secret", r"api[_-]?key", r"authorization[_-]?code", "authorization", "x-shopify-access-token", "assertion",
    "code_verifier",
))
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values: "Basic dXNlcjpwYXNz", "Bearer abc.def".
    # Credentials have a digit or are long: "Basic authentication" or 'Bearer realm="..."' stay readable.
    (re.compile(r"(?i)\b(basic|bearer)(\s+)(?:(?=[\w.~+/-]*\d)[\w.~+/-]{8,}|[\w.~+/-]{20,})=*"), rf"\1\2{MASK}"),
    # name=value / name: value / "name": "value" for well-known secret names (form bodies, JSON, headers).
    (
        re.compile(rf"(?i)([\"']?\b(?:{_SECRET_NAMES})\b[\"']?\s*[:=]\s*[\"']?)(?!\*)(?!(?:basic|bearer)\s)"
                   r"[^\s\"'&,;}\]]{4,}"),
        rf"\1{MASK}",
    ),
    # OAuth2 authorization codes in URLs (the pairing callback; a redirect's Location header).
    (re.compile(r"(?i)([?&](?:code|authorizationcode)=)[^&\s'\"#]{4,}"), rf"\1{MASK}"),
    # JSON Web Tokens (header.payload.signature, both JSON parts base64url of "{").
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # Shopify access tokens (shpat_ app, shpca_ custom app, shppa_ private app, shpss_ shared secret).
    (re.compile(r"\bshp(?:at|ca|pa|ss|ua)_[A-Za-z0-9]{8,}"), MASK),
)


class SecretRegistry:
    """The secret values this process knows. Thread-safe; values are never exposed by ``repr``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._ordered: tuple[str, ...] = ()

    def register(self, *values: object) -> None:
        """Remember secret values (str or pydantic ``SecretStr``); None, empty and very short values are ignored."""
        plain = {_plain(value) for value in values}
        plain = {value for value in plain if value and len(value) >= MIN_SECRET_LENGTH}
        if not plain or plain <= self._values:
            return
        with self._lock:
            self._values = self._values | plain
            # Longest first, so a secret containing another one is masked whole.
            self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def register_basic(self, user: str, password: object) -> None:
        """The password and the ``base64(user:password)`` a Basic header carries (and its URL-safe form)."""
        secret = _plain(password)
        if not secret:
            return
        encoded = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        self.register(secret, encoded, encoded.rstrip("="), base64.urlsafe_b64encode(f"{user}:{secret}".encode())
                      .decode("ascii"))

    def values(self) -> tuple[str, ...]:
        return self._ordered

    def clear(self) -> None:
        """Forget every value (tests only)."""
        with self._lock:
            self._values = frozenset()
            self._ordered = ()

    def __len__(self) -> int:
        return len(self._ordered)

    def __repr__(self) -> str:
        return f"SecretRegistry({len(self._ordered)} values)"


def _plain(value: object) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        value = getter()
    return value if isinstance(value, str) else str(value)


REGISTRY = SecretRegistry()


def register_secret(*values: object) -> None:
    REGISTRY.register(*values)


def register_basic_credentials(user: str, password: object) -> None:
    REGISTRY.register_basic(user, password)


def scrub(text: str, extra: Iterable[object] = ()) -> str:
    """``text`` with every registered secret, every value in ``extra`` and every secret-shaped string masked."""
    if not text:
        return text
    extras = sorted({v for v in (_plain(e) for e in extra) if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
    for secret in (*extras, *REGISTRY.values()):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: Any) -> Any:
    """Strings scrubbed inside plain JSON-like values (dicts, lists, plain tuples); other values as they are."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {key: scrub_value(item) for key, item in value.items()}
    if type(value) is list:
        return [scrub_value(item) for item in value]
    if type(value) is tuple:  # exact type: a named tuple or record is returned as it is, never rebuilt
        return tuple(scrub_value(item) for item in value)
    return value


def contains_secret(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets of ``secrets`` found in ``text`` (for leak tests and audits)."""
    return [secret for secret in secrets if secret and secret in text]


# ============================================================================================== logging
def _scrub_record(record: logging.LogRecord) -> None:
    """Format the message once, scrub it, and freeze it (args cleared) so no handler re-inserts a secret."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave the record for logging's own error report
        return
    cleaned = scrub(message)
    if cleaned != message or record.args:
        record.msg = cleaned
        record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


class RedactingFilter(logging.Filter):
    """Scrubs each record it sees (never drops one). Install it on loggers or handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


# Loggers that get the filter explicitly (their handlers too); the record factory covers their children.
DEFAULT_LOGGERS = ("x3_shopify_dagster", "dagster", "httpx", "httpcore", "uvicorn", "alembic", "sqlalchemy")
_install_lock = threading.Lock()
_installed_factory: Callable[..., logging.LogRecord] | None = None
FILTER = RedactingFilter()


def install_log_redaction(logger_names: Iterable[str] = DEFAULT_LOGGERS) -> None:
    """Idempotent. Adds :data:`FILTER` to the named loggers and their handlers, and wraps the log-record
    factory so records of *every* logger (child loggers, Dagster's per-run ``context.log``) are scrubbed when
    they are created — a filter on a parent logger alone does not see records of its children."""
    global _installed_factory
    with _install_lock:
        for name in logger_names:
            logger = logging.getLogger(name)
            if FILTER not in logger.filters:
                logger.addFilter(FILTER)
            for handler in logger.handlers:
                if FILTER not in handler.filters:
                    handler.addFilter(FILTER)
        current = logging.getLogRecordFactory()
        if current is _installed_factory:
            return
        previous = current

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed_factory = factory


def log_redaction_installed() -> bool:
    return _installed_factory is not None and logging.getLogRecordFactory() is _installed_factory
