"""``x3sd``: operator commands that do not need the Dagster UI."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from x3_shopify_dagster.settings import SettingsError, load_settings


def _show_settings() -> int:
    settings = load_settings()
    # model_dump keeps SecretStr masked, so this is safe to paste into a support ticket.
    print(json.dumps(settings.model_dump(mode="json"), indent=2, default=str))
    return 0


def _db_upgrade() -> int:
    from x3_shopify_dagster.storage import ConnectorDatabase

    settings = load_settings()
    database = ConnectorDatabase(settings.database_url)
    database.migrate()
    print(f"Connector database is up to date: {ConnectorDatabase.redacted_url(settings.database_url)}")
    return 0


def _check() -> int:
    from x3_shopify_dagster.checks import exit_code, render_report, run_checks, secret_values
    from x3_shopify_dagster.defs.resources import ConnectorRuntime

    settings = load_settings()
    runtime = ConnectorRuntime(settings)
    try:
        results = run_checks(runtime)
    finally:
        runtime.close()
    print(render_report(results, secrets=secret_values(settings)))
    return exit_code(results)


def _shopify_connect(args: argparse.Namespace, open_url: Callable[[str], None] | None) -> int:
    from x3_shopify_dagster.defs.resources import ConnectorRuntime
    from x3_shopify_dagster.shopify.errors import ShopifyError
    from x3_shopify_dagster.shopify.oauth_connect import ShopifyConnector, run_in_thread
    from x3_shopify_dagster.storage.vault import VaultError
    from x3_shopify_dagster.storage.vault_token_stores import VaultShopifyTokenStore

    settings = load_settings()
    store_key = args.store.lower()
    store = settings.stores.get(store_key)
    if store is None:
        print(f"store {args.store!r} is not configured (configured: {', '.join(settings.stores)})", file=sys.stderr)
        return 2
    prefix = f"X3SD_STORES__{store_key.upper()}__"
    if not store.client_id or store.client_secret is None:
        print(f"set {prefix}CLIENT_ID and {prefix}CLIENT_SECRET (the app's credentials) first", file=sys.stderr)
        return 2
    runtime = ConnectorRuntime(settings)
    try:
        token_store = VaultShopifyTokenStore(runtime.vault(), store_key)
        connector = ShopifyConnector(store.shop_url, store.client_id, store.client_secret, token_store,
                                     store_key=store_key, host=args.host, port=args.port,
                                     expiring=not args.non_expiring)

        def show(url: str) -> None:
            print("Open this URL in a browser logged in to the store's admin, and approve the app:")
            print(f"  {url}")
            print(f"Waiting for Shopify's redirect (up to {args.timeout:g}s)...", flush=True)
            if open_url is not None:
                run_in_thread(lambda: open_url(url))

        result = connector.connect(show, timeout_s=args.timeout)
    except (ShopifyError, VaultError, OSError) as exc:
        print(f"x3sd shopify connect {store_key} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    tokens = result.tokens
    expiry = tokens.expires_at.isoformat() if tokens.expires_at else "never (non-expiring token)"
    print(f"Store {store_key} connected: scopes {','.join(tokens.scopes) or '(none)'}; access token expires {expiry}"
          + ("; refreshed automatically" if tokens.refresh_token else ""))
    if store.auth_mode != "oauth":
        print(f"Set {prefix}AUTH_MODE=oauth for the connector to use it (now {store.auth_mode}).")
    return 0


def _vault(args: argparse.Namespace) -> int:
    from x3_shopify_dagster.defs.resources import ConnectorRuntime
    from x3_shopify_dagster.storage.vault import VaultError, generate_key

    if args.vault_command == "generate-key":
        print(generate_key())
        return 0
    runtime = ConnectorRuntime(load_settings())
    try:
        vault = runtime.vault()
        if args.vault_command == "rotate-key":
            report = vault.rotate()
            print(f"Re-encrypted {len(report.rotated)} secret(s) under X3SD_VAULT_KEY "
                  f"({', '.join(report.rotated) or 'none stored'}); X3SD_VAULT_OLD_KEYS can now be emptied.")
            return 0
        entries = vault.entries()
        for entry in entries:
            print(f"{entry.name}  version {entry.version}  updated {entry.updated_at.isoformat()}  key: {entry.key}")
        if not entries:
            print("The vault is empty.")
        return 1 if any(entry.key == "none" for entry in entries) else 0
    except VaultError as exc:
        print(f"x3sd vault {args.vault_command} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.close()


def _x3_connect(*, open_browser: bool, timeout_s: float) -> int:
    """Pair with X3 (OAuth2 authorization code): print the URL, wait for the loopback callback, store tokens."""
    import webbrowser

    from x3_shopify_dagster.defs.resources import ConnectorRuntime
    from x3_shopify_dagster.x3 import X3Error
    from x3_shopify_dagster.x3.pairing import pair

    settings = load_settings()
    x3 = settings.x3
    if not x3.configured or x3.auth_mode != "oauth2":
        print("x3sd x3 connect pairs an OAuth2 client: set X3SD_X3__SERVER_URL, X3SD_X3__FOLDER, "
              "X3SD_X3__AUTH_MODE=oauth2, X3SD_X3__CLIENT_ID and X3SD_X3__CLIENT_SECRET first", file=sys.stderr)
        return 2
    runtime = ConnectorRuntime(settings)

    def show(url: str) -> None:
        print(f"Open this address and approve the connector as an X3 user:\n  {url}", flush=True)
        if open_browser:
            webbrowser.open(url)

    try:
        auth = runtime.x3_oauth2()
        try:
            result = pair(auth, authorise_endpoint=x3.authorize_url or x3.client_config().authorise_url,
                          redirect_uri=x3.redirect_uri, scope=x3.oauth_scope, open_browser=show, timeout_s=timeout_s)
        finally:
            auth.close()
    except X3Error as exc:
        print(f"Pairing failed: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    until = f" (refresh token valid until {result.refresh_expires_at})" if result.refresh_expires_at else ""
    where = "the connector database vault" if x3.token_store == "vault" else x3.token_store_path  # noqa: S105
    print(f"Paired with Sage X3: tokens stored in {where}{until}.")
    return 0


def main(argv: list[str] | None = None, *, open_url: Callable[[str], None] | None = None) -> int:
    """``open_url``: called with the install URL by ``shopify connect`` (the CLI entry point prints it only)."""
    parser = argparse.ArgumentParser(prog="x3sd", description="x3-shopify-dagster operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("settings", help="validate the configuration and print it with secrets masked")
    commands.add_parser("check", help="ping Shopify and Sage X3, check the mapping, and say what to fix")
    db = commands.add_parser("db", help="connector database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply pending migrations")
    shopify = commands.add_parser("shopify", help="Shopify stores")
    shopify_commands = shopify.add_subparsers(dest="shopify_command", required=True)
    connect = shopify_commands.add_parser(
        "connect", help="authorize the app on a store (OAuth) and keep its token in the vault"
    )
    connect.add_argument("store", help="store key, e.g. eu")
    connect.add_argument("--host", default="127.0.0.1", help="loopback address of the callback server")
    connect.add_argument("--port", type=int, default=8765,
                         help="callback port; the redirect URL http://127.0.0.1:PORT/shopify/callback must be "
                              "allowed in the app's configuration (0: any free port)")
    connect.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the approval")
    connect.add_argument("--non-expiring", action="store_true",
                         help="ask for a non-expiring offline token (custom apps only; default: expiring + refresh)")
    vault = commands.add_parser("vault", help="the encrypted secret vault (X3SD_VAULT_KEY)")
    vault_commands = vault.add_subparsers(dest="vault_command", required=True)
    vault_commands.add_parser("rotate-key", help="re-encrypt every secret under X3SD_VAULT_KEY (all or nothing)")
    vault_commands.add_parser("generate-key", help="print a new random vault key")
    vault_commands.add_parser("list", help="stored secrets (names only) and which key decrypts each")
    x3 = commands.add_parser("x3", help="Sage X3")
    x3_commands = x3.add_subparsers(dest="x3_command", required=True)
    connect = x3_commands.add_parser("connect", help="pair with X3 (OAuth2): approve in a browser, tokens are stored")
    connect.add_argument("--no-browser", action="store_true", help="only print the address to open")
    connect.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the approval")
    args = parser.parse_args(argv)
    try:
        if args.command == "settings":
            return _show_settings()
        if args.command == "check":
            return _check()
        if args.command == "db" and args.db_command == "upgrade":
            return _db_upgrade()
        if args.command == "shopify" and args.shopify_command == "connect":
            return _shopify_connect(args, open_url)
        if args.command == "vault":
            return _vault(args)
        if args.command == "x3" and args.x3_command == "connect":
            return _x3_connect(open_browser=not args.no_browser, timeout_s=args.timeout)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
