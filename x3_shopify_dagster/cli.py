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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="x3sd", description="x3-shopify-dagster operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("settings", help="validate the configuration and print it with secrets masked")
    commands.add_parser("check", help="ping Shopify and Sage X3, check the mapping, and say what to fix")
    db = commands.add_parser("db", help="connector database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply pending migrations")
    args = parser.parse_args(argv)
    try:
        if args.command == "settings":
            return _show_settings()
        if args.command == "check":
            return _check()
        if args.command == "db" and args.db_command == "upgrade":
            return _db_upgrade()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
