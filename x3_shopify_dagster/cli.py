"""``x3sd``: operator commands that do not need the Dagster UI."""

from __future__ import annotations

import argparse
import json
import sys

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
    print(f"Paired with Sage X3: tokens stored in {x3.token_store_path}{until}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="x3sd", description="x3-shopify-dagster operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("settings", help="validate the configuration and print it with secrets masked")
    commands.add_parser("check", help="ping Shopify and Sage X3, check the mapping, and say what to fix")
    db = commands.add_parser("db", help="connector database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply pending migrations")
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
        if args.command == "x3" and args.x3_command == "connect":
            return _x3_connect(open_browser=not args.no_browser, timeout_s=args.timeout)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
