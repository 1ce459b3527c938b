"""Ping Shopify and Sage X3 with the connector's own clients and say, per check, what to fix.

Every check is a plain function returning :class:`CheckResult` rows; a failing row carries one ``fix`` line
that names the setting (``X3SD_...``) or the X3 object to change. ``run_checks`` wires them to a
:class:`ConnectorRuntime` (the same client construction the Dagster assets use); ``render_report`` turns the
rows into the aligned table ``x3sd check`` prints. Everything here only reads: no check writes anywhere.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from x3_shopify_dagster.defs.resources import ConnectorRuntime
from x3_shopify_dagster.domain.mapping import Mapping, MappingError, load_mapping
from x3_shopify_dagster.redaction import scrub
from x3_shopify_dagster.settings import ENV_PREFIX, ConnectorSettings, X3Settings
from x3_shopify_dagster.shopify import (
    DEFAULT_API_VERSION,
    ShopifyAuthError,
    ShopifyClient,
    ShopifyError,
    ShopifyHTTPError,
    ShopifyReauthorizationRequired,
    ShopifyTransportError,
)
from x3_shopify_dagster.shopify.oauth import missing_scopes
from x3_shopify_dagster.x3 import (
    ClassRef,
    TokenStoreError,
    Where,
    X3AuthenticationError,
    X3BusinessError,
    X3Client,
    X3DiagnosisError,
    X3Dimension,
    X3Error,
    X3GlAccount,
    X3HttpError,
    X3ReauthorizationRequired,
    X3ServiceBusyError,
    X3SoapFault,
    X3TransportError,
)

X3 = "x3"
MAPPING = "mapping"
# Shopify's single-query ceiling; the connector sizes its order pages to stay under it (settings.py).
MAX_SINGLE_QUERY_COST = 1000
# Plans by restore rate (points/s), the figure Shopify documents per plan (shopify-admin-api.md §2.1).
_PLANS_BY_RESTORE_RATE = {100.0: "Standard", 200.0: "Advanced", 1000.0: "Plus", 2000.0: "Enterprise"}
# Key field of each SOAP object publication the connector writes through.
_PUBLICATION_KEYS = {"sales_invoice": "NUM", "delivery": "SDHNUM"}
# A key no document carries: a live publication answers "does not exist", a missing one "not published".
_IMPOSSIBLE_KEY = "X3SD-CHECK-NONE"
_VERSION = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class CheckResult:
    """One row of the report. ``fix`` says what to change when ``ok`` is False."""

    system: str  # "shopify <store>", "x3" or "mapping"
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def env_name(*parts: str) -> str:
    """The variable of a setting: ("stores", "eu", "access_token") → X3SD_STORES__EU__ACCESS_TOKEN."""
    return ENV_PREFIX + "__".join(part.upper() for part in parts)


def _passed(system: str, name: str, detail: str) -> CheckResult:
    return CheckResult(system, name, True, detail)


def _failed(system: str, name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(system, name, False, detail, fix)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _status_code(error: X3Error) -> int | None:
    return error.status_code if isinstance(error, X3DiagnosisError | X3HttpError) else None


# ============================================================================================== Shopify
def shopify_plan(restore_rate: float | None) -> str:
    if restore_rate is None:
        return "unknown"
    return _PLANS_BY_RESTORE_RATE.get(float(restore_rate), f"custom ({restore_rate:g} points/s)")


def api_version_support_end(version: str) -> date | None:
    """First day after Shopify's 12-month support of a stable version (None for ``unstable``)."""
    match = _VERSION.match(version)
    if match is None:
        return None
    return date(int(match.group(1)) + 1, int(match.group(2)), 1)


def check_shopify_store(
    key: str, client: ShopifyClient, *, today: date, partition_timezone: str = "UTC", auth_mode: str = "token"
) -> list[CheckResult]:
    """Connection and token, API version, rate-limit plan, currency and timezone of one store."""
    system = f"shopify {key}"
    token_var = env_name("stores", key, "access_token")
    url_var, version_var = env_name("stores", key, "shop_url"), env_name("stores", key, "api_version")
    try:
        shop = client.shop_info()
    except ShopifyReauthorizationRequired as exc:
        return [_failed(system, "connection", _one_line(str(exc).removesuffix(f"; {exc.fix}")), exc.fix)]
    except ShopifyAuthError as exc:
        if exc.status_code == 401:
            fix = f"replace {token_var} with the app's Admin API access token for {client.shop_url}"
            return [_failed(system, "connection", "HTTP 401: the access token was refused", fix)]
        fix = f"grant the app its read scopes (orders, inventory) and put the new token in {token_var}"
        return [_failed(system, "connection", f"HTTP {exc.status_code}: the token lacks a scope", fix)]
    except ShopifyTransportError as exc:
        fix = f"check {url_var} and that this machine reaches it (proxy, firewall, DNS)"
        return [_failed(system, "connection", _one_line(exc), fix)]
    except ShopifyHTTPError as exc:
        fix = (
            f"check {url_var} (https://{{shop}}.myshopify.com) and {version_var} "
            f"(a supported YYYY-MM version, e.g. {DEFAULT_API_VERSION})"
        )
        return [_failed(system, "connection", f"HTTP {exc.status_code} from {client.endpoint}", fix)]
    except ShopifyError as exc:
        fix = f"check {url_var} and {token_var}; Shopify's answer is in the detail"
        return [_failed(system, "connection", _one_line(exc), fix)]

    results = [_passed(system, "connection", f"{shop.name} ({shop.domain}), token accepted")]
    results.append(_api_version_result(system, client.api_version, version_var, today))
    results.append(_rate_limit_result(system, shop.maximum_available, shop.restore_rate))
    detail = f"{shop.currency_code}, {shop.iana_timezone}"
    if shop.iana_timezone != partition_timezone:
        detail += f" (business days are cut in {partition_timezone})"
    results.append(_passed(system, "currency / timezone", detail))
    results.append(check_shopify_scopes(key, client, auth_mode=auth_mode))
    return results


def check_shopify_scopes(key: str, client: ShopifyClient, *, auth_mode: str = "token") -> CheckResult:
    """One ``scopes`` row: the granted access scopes cover what the flows need, or which are missing and how to
    grant them (depends on how the store is authorized)."""
    system = f"shopify {key}"
    try:
        granted = client.access_scopes()
    except ShopifyError as exc:
        return _failed(system, "scopes", f"cannot read the granted scopes: {_one_line(exc)}",
                       "fix the connection row above, then run x3sd check again")
    missing = missing_scopes(granted)
    if not missing:
        return _passed(system, "scopes", f"{len(granted)} granted, all the flows need")
    detail = "missing " + "; ".join(f"{need.label} ({need.needed_for})" for need in missing)
    names = ", ".join(need.alternatives[0] for need in missing)
    if auth_mode == "oauth":
        fix = f"run `x3sd shopify connect {key}` again and approve the new scopes ({names})"
    elif auth_mode == "client_credentials":
        fix = (f"add {names} to the app's access scopes in the Dev Dashboard, release the version and update the "
               "app on the store; the next client-credentials token carries them")
    else:
        fix = (f"add {names} to the app's Admin API access scopes, reinstall it and put the new token in "
               f"{env_name('stores', key, 'access_token')}")
    return _failed(system, "scopes", detail, fix)


def _api_version_result(system: str, version: str, version_var: str, today: date) -> CheckResult:
    end = api_version_support_end(version)
    if end is not None and today >= end:
        return _failed(
            system,
            "API version",
            f"{version} answered but is past Shopify's 12-month support (ended about {end.isoformat()}); "
            "Shopify serves such calls with its oldest supported version",
            f"set {version_var} to {DEFAULT_API_VERSION} (the version the queries are checked on)",
        )
    detail = f"{version} answered"
    if end is not None:
        detail += f", supported until about {end.isoformat()}"
    if version != DEFAULT_API_VERSION:
        detail += f"; the connector's queries are validated on {DEFAULT_API_VERSION}"
    return _passed(system, "API version", detail)


def _rate_limit_result(system: str, maximum: float | None, restore_rate: float | None) -> CheckResult:
    if maximum is None or restore_rate is None:
        return _passed(system, "rate-limit plan", "not reported by Shopify (no throttleStatus)")
    detail = f"{shopify_plan(restore_rate)}: bucket {maximum:g} points, restores {restore_rate:g}/s"
    if maximum < MAX_SINGLE_QUERY_COST:
        return _failed(
            system,
            "rate-limit plan",
            detail + f", below the {MAX_SINGLE_QUERY_COST} points one orders page may cost",
            f"Shopify reduced this store's limit: lower {env_name('shopify_page_size')} and "
            f"{env_name('shopify_line_items_page_size')} until a page fits",
        )
    return _passed(system, "rate-limit plan", detail)


# ============================================================================================== Sage X3
def check_x3_connection(x3: X3Settings, client: X3Client) -> list[CheckResult]:
    """Reachable, credentials accepted, folder served: one ``count=1`` api1 query on the customers class."""
    customers = client.config.representations.customers
    reached = _passed(X3, "connection", f"{client.config.base_url} answers")
    authenticated = _passed(X3, "authentication", _auth_label(x3))
    try:
        next(iter(client.query(customers.cls, customers.representation, count=1)), None)
    except X3TransportError as exc:
        fix = (
            f"check {env_name('x3', 'server_url')} / {env_name('x3', 'port')} and that this machine reaches "
            f"it (firewall, proxy; a private CA goes in {env_name('x3', 'ca_bundle_path')})"
        )
        return [_failed(X3, "connection", _one_line(exc), fix)]
    except (X3AuthenticationError, TokenStoreError) as exc:
        return [reached, _failed(X3, "authentication", _one_line(exc), _auth_fix(x3, exc))]
    except X3Error as exc:
        fix = (
            f"set {env_name('x3', 'folder')} to an existing X3 endpoint (folder), or fix "
            f"{env_name('x3', 'representations', 'customers')}__CLS/__REPRESENTATION if X3 names the class"
        )
        detail = f"{client.config.folder}: {_one_line(exc)}"
        return [reached, authenticated, _failed(X3, "folder", detail, fix)]
    return [reached, authenticated, _passed(X3, "folder", f"{client.config.folder} answers api1 queries")]


def _auth_label(x3: X3Settings) -> str:
    if x3.auth_mode == "basic":
        return f"basic, user {x3.user}"
    if x3.auth_mode == "jwt":
        return f"jwt (connected application), client {x3.client_id}, user {x3.user}"
    return f"oauth2, client {x3.client_id}"


def _auth_fix(x3: X3Settings, error: X3Error) -> str:
    if isinstance(error, TokenStoreError):
        return (f"check {env_name('x3', 'token_store_path')} and its encryption key (X3SD_X3_TOKEN_KEY), or pair "
                "again with `x3sd x3 connect`")
    if isinstance(error, X3ReauthorizationRequired):
        return "run `x3sd x3 connect` to pair the connector with X3 again (the stored pairing is gone or expired)"
    if x3.auth_mode == "basic":
        password, user = env_name("x3", "password"), env_name("x3", "user")
        return f"replace {password} (and check {user}) with the Syracuse user's credentials"
    if x3.auth_mode == "jwt":
        return (
            f"check {env_name('x3', 'client_id')}, {env_name('x3', 'client_secret')} and {env_name('x3', 'user')} "
            "against the connected application in X3 (Administration > Authentication > Connected applications), "
            f"{env_name('x3', 'jwt_audience')}, and this machine's clock (X3 refuses a token issued in its future; "
            f"raise {env_name('x3', 'jwt_clock_skew_seconds')} if the clocks differ)"
        )
    return f"check {env_name('x3', 'client_id')} and {env_name('x3', 'client_secret')}"


def check_x3_representations(client: X3Client) -> list[CheckResult]:
    """Every configured class/representation answers a one-row query."""
    results: list[CheckResult] = []
    for name, ref in client.config.representations:
        label = f"{ref.cls}/{ref.representation}"
        try:
            next(iter(client.query(ref.cls, ref.representation, count=1)), None)
        except X3Error as exc:
            variable = env_name("x3", "representations", name)
            status = _status_code(exc)
            if status == 404:
                fix = f"set {variable}__CLS to a class of this folder (now {ref.cls})"
            elif status is not None and 400 <= status < 600:
                fix = (
                    f"set {variable}__REPRESENTATION to a representation of class {ref.cls} "
                    f"(now {ref.representation}), or {variable}__CLS"
                )
            else:
                fix = f"check {variable}__CLS and {variable}__REPRESENTATION; X3's answer is in the detail"
            results.append(_failed(X3, f"representation {name}", f"{label}: {_one_line(exc)}", fix))
        else:
            results.append(_passed(X3, f"representation {name}", f"{label} readable"))
    return results


def check_x3_publications(client: X3Client) -> list[CheckResult]:
    """Each SOAP publication answers a ``read`` of a key no document has with "does not exist"."""
    results: list[CheckResult] = []
    for name, key_field in _PUBLICATION_KEYS.items():
        publication = getattr(client.config.publications, name)
        variable = env_name("x3", "publications", name)
        try:
            client.read(publication, {key_field: _IMPOSSIBLE_KEY})
        except X3BusinessError as exc:
            fix = f"publish {publication} in X3 (GESAWE) or set {variable} to the published name"
            results.append(_failed(X3, f"publication {name}", _one_line(exc), fix))
        except X3ServiceBusyError as exc:
            fix = "start the Classic SOAP pool and give the X3 host web-service children (docs/runbook.md)"
            results.append(_failed(X3, f"publication {name}", _one_line(exc), fix))
        except X3SoapFault as exc:
            if "pool" in exc.faultstring.lower():
                fix = f"set {env_name('x3', 'pool_alias')} to the Classic SOAP pool alias (case-sensitive)"
            else:
                fix = f"check {variable} and the Classic SOAP pool; X3's fault is in the detail"
            results.append(_failed(X3, f"publication {name}", _one_line(exc), fix))
        except X3Error as exc:
            fix = f"check {variable} and {env_name('x3', 'pool_alias')}; X3's answer is in the detail"
            results.append(_failed(X3, f"publication {name}", _one_line(exc), fix))
        else:
            results.append(_passed(X3, f"publication {name}", f"{publication} answers SOAP read"))
    return results


# ============================================================================================== mapping
def check_mapping_file(mapping_path: str | None) -> tuple[list[CheckResult], Mapping | None]:
    """The mapping loads; otherwise one row per problem, each with its YAML path and fix."""
    path_var = env_name("mapping_path")
    if not mapping_path:
        fix = f"set {path_var} to the YAML mapping (start from docs/mapping.example.yaml)"
        return [_failed(MAPPING, "file", "no mapping file is configured", fix)], None
    try:
        mapping = load_mapping(mapping_path)
    except MappingError as exc:
        rows = []
        for problem in exc.problems:
            where = (f"line {problem.line}, " if problem.line else "") + (problem.path or "(file)")
            fix = f"{Path(mapping_path).name} {problem.path or '(file)'}: {_one_line(problem.hint)}"
            rows.append(_failed(MAPPING, "file", f"{where}: {_one_line(problem.message)}", fix))
        return rows, None
    layers = f"{len(mapping.stores)} store layer(s), {len(mapping.customers)} customer(s)"
    detail = f"{mapping_path} loaded ({layers})"
    return [_passed(MAPPING, "file", detail)], mapping


def check_mapping_stores(mapping: Mapping, configured: Iterable[str]) -> list[CheckResult]:
    """Store layers of the mapping must name configured stores (a typo would silently never apply)."""
    known = set(configured)
    unknown = sorted(set(mapping.stores) - known)
    if unknown:
        fix = (
            f"rename stores.{unknown[0]} in the mapping to a configured store ({', '.join(sorted(known))}) "
            f"or configure it ({env_name('stores', unknown[0], 'shop_url')})"
        )
        return [_failed(MAPPING, "stores", f"mapping names unconfigured store(s): {', '.join(unknown)}", fix)]
    return [_passed(MAPPING, "stores", f"store layers match configured stores ({', '.join(sorted(known))})")]


def check_mapping_stock(mapping: Mapping, configured: Iterable[str]) -> list[CheckResult]:
    """What the stock sync makes of the `items` section (docs/mapping.md "Items"): per store, the X3 items another
    SKU carries (store-level overrides, read backwards), those several SKUs name (only one may be on a Shopify
    variant, else `item_mapped_to_several_skus`), and customer-level overrides, which stock cannot follow.
    Informational: whether a SKU is on a variant is only known when the item moves."""
    parts: list[str] = []
    for store in sorted(configured):
        skus_of: dict[str, list[str]] = {}
        for sku, item in mapping.for_customer(None, store).items.overrides.items():
            if item is not None and item != sku:
                skus_of.setdefault(item, []).append(sku)
        if not skus_of:
            continue
        carried = ", ".join(f"{item} <- {' / '.join(sorted(skus))}" for item, skus in sorted(skus_of.items()))
        several = sorted(item for item, skus in skus_of.items() if len(skus) > 1)
        note = f" ({', '.join(several)}: only one of the SKUs may be on a Shopify variant)" if several else ""
        parts.append(f"{store}: {len(skus_of)} X3 item(s) stocked under another SKU: {carried}{note}")
    per_customer = sorted(code for code, layer in mapping.customers.items()
                          if layer.items.overrides or any(s.items.overrides for s in layer.stores.values()))
    if per_customer:
        parts.append(f"customer-level items.overrides ({', '.join(per_customer)}) are not followed by stock "
                     "(one level per store): put them under defaults or stores.<store> if stock must follow")
    detail = "; ".join(parts) or "every stocked X3 item is its own SKU (items.identity, no overrides to other items)"
    return [_passed(MAPPING, "stock SKUs", detail)]


def check_mapping_references(mapping: Mapping, client: X3Client, *, today: date) -> list[CheckResult]:
    """GL accounts, cost centres, sites, invoice types, tax codes and items the mapping names exist in X3 and
    can be used today."""
    results: list[CheckResult] = []
    checks = (
        ("GL accounts", lambda: _gl_account_problems(mapping, client, today)),
        ("cost centres", lambda: _dimension_problems(mapping, client)),
        ("sites", lambda: _site_problems(mapping, client)),
        ("invoice types", lambda: _invoice_type_problems(mapping, client)),
        ("tax codes", lambda: _tax_code_problems(mapping, client)),
        ("items", lambda: _item_problems(mapping, client)),
    )
    counts = {
        "GL accounts": len(mapping.referenced_gl_accounts()),
        "cost centres": len(mapping.referenced_dimensions()),
        "sites": len(mapping.referenced_sites()),
        "invoice types": len(_referenced_invoice_types(mapping)),
        "tax codes": len(mapping.tax_code_rates()),
        "items": len(_referenced_items(mapping)),
    }
    for name, find in checks:
        try:
            problems = find()
        except X3Error as exc:
            fix = "fix the X3 representation rows above, then run x3sd check again"
            results.append(_failed(MAPPING, name, f"cannot read them from X3: {_one_line(exc)}", fix))
            continue
        if not problems:
            state = "exist in X3" if name == "sites" else "exist and are active in X3"
            results.append(_passed(MAPPING, name, f"{counts[name]} named, all {state}"))
        results += [_failed(MAPPING, name, detail, fix) for detail, fix in problems]
    return results


def _any_of(field: str, values: Iterable[str]) -> Where:
    return Where.any_of(Where.eq(field, value) for value in sorted(values))


def _rows(client: X3Client, ref: ClassRef, where: Where) -> list[dict[str, object]]:
    return list(client.query(ref.cls, ref.representation, where=where, count=client.config.page_size))


def _gl_account_problems(mapping: Mapping, client: X3Client, today: date) -> list[tuple[str, str]]:
    wanted = sorted(mapping.referenced_gl_accounts(), key=str)
    ref = client.config.representations.gl_accounts
    found: dict[tuple[str, str], X3GlAccount] = {}
    for chart, accounts in itertools.groupby(wanted, key=lambda account: account.chart):
        where = Where.eq("COA", chart) & _any_of("ACC", (a.account for a in accounts))
        for row in _rows(client, ref, where):
            account = X3GlAccount.from_row(row)
            found[(account.chart, account.account)] = account
    problems = []
    for account in wanted:
        x3_account = found.get((account.chart, account.account))
        label, otherwise = f"GL account {account}", "or map another account in the mapping (docs/mapping.md)"
        if x3_account is None:
            problems.append((f"{label} does not exist in X3", f"create {account} in X3 {otherwise}"))
        elif not x3_account.enabled:
            problems.append((f"{label} is inactive in X3", f"activate {account} in X3 {otherwise}"))
        elif not x3_account.usable_on(today):
            problems.append((f"{label} is outside its validity on {today.isoformat()}",
                             f"extend the validity of {account} in X3 {otherwise}"))
    return problems


def _dimension_problems(mapping: Mapping, client: X3Client) -> list[tuple[str, str]]:
    wanted = sorted(mapping.referenced_dimensions())
    ref = client.config.representations.dimensions
    found: dict[tuple[str, str], X3Dimension] = {}
    for kind, pairs in itertools.groupby(wanted, key=lambda pair: pair[0]):
        for row in _rows(client, ref, Where.eq("DIE", kind) & _any_of("CCE", (code for _, code in pairs))):
            dimension = X3Dimension.from_row(row)
            found[(dimension.dimension_type, dimension.code)] = dimension
    problems = []
    for kind, code in wanted:
        dimension = found.get((kind, code))
        label, otherwise = f"cost centre {kind}={code}", "or change it in the mapping"
        if dimension is None:
            problems.append((f"{label} does not exist in X3", f"create {label} in X3 {otherwise}"))
        elif not dimension.enabled:
            problems.append((f"{label} is inactive in X3", f"activate {label} in X3 {otherwise}"))
    return problems


def _site_problems(mapping: Mapping, client: X3Client) -> list[tuple[str, str]]:
    wanted = sorted(mapping.referenced_sites())
    if not wanted:
        return []
    ref = client.config.representations.sites
    present = {str(row.get("FCY", "")) for row in _rows(client, ref, _any_of("FCY", wanted))}
    return [
        (f"site {site} does not exist in X3", f"create site {site} in X3 or change `site` in the mapping")
        for site in wanted
        if site not in present
    ]


# X3 local menu 645 (INVTYP): the category an invoice type must have for its use in the mapping.
_INVOICE_CATEGORY = {1: "invoice", 2: "credit memo"}
# ITMSTA (local menu 246): 1 active, 3 on shortage, 4 not renewed can still be sold; 2 in development,
# 5 obsolete, 6 not usable cannot.
_SELLABLE_ITEM_STATUSES = {1, 3, 4}


def _referenced_invoice_types(mapping: Mapping) -> dict[str, tuple[int, str]]:
    """SIVTYP code → (expected INVTYP category, the mapping key naming it)."""
    wanted: dict[str, tuple[int, str]] = {}
    for resolved in mapping.effective_mappings():
        wanted.setdefault(resolved.invoice_type, (1, "invoice_type"))
        wanted.setdefault(resolved.credit_memo_type, (2, "credit_memo_type"))
    return wanted


def _referenced_items(mapping: Mapping) -> dict[str, str]:
    """X3 item references the mapping names itself (overrides, without_sku) → the mapping key naming it."""
    wanted: dict[str, str] = {}
    for resolved in mapping.effective_mappings():
        for sku, item in resolved.items.overrides.items():
            if item is not None:
                wanted.setdefault(item, f"items.overrides.{sku}")
        if resolved.items.without_sku is not None:
            wanted.setdefault(resolved.items.without_sku, "items.without_sku")
    return wanted


def _int_field(row: dict[str, object], name: str) -> int | None:
    try:
        return int(str(row.get(name)))
    except (TypeError, ValueError):
        return None


def _invoice_type_problems(mapping: Mapping, client: X3Client) -> list[tuple[str, str]]:
    wanted = _referenced_invoice_types(mapping)
    ref = client.config.representations.invoice_types
    found = {str(row.get("SIVTYP", "")): row for row in _rows(client, ref, _any_of("SIVTYP", wanted))}
    problems = []
    for code, (category, key) in sorted(wanted.items()):
        row = found.get(code)
        label = f"sales invoice type {code} ({key})"
        otherwise = f"or set `{key}` in the mapping to an existing {_INVOICE_CATEGORY[category]} type"
        if row is None:
            problems.append((f"{label} does not exist in X3", f"create invoice type {code} in X3 {otherwise}"))
        elif _int_field(row, "ENAFLG") == 1:
            problems.append((f"{label} is inactive in X3", f"activate invoice type {code} in X3 {otherwise}"))
        elif (actual := _int_field(row, "INVTYP")) is not None and actual != category:
            kind = _INVOICE_CATEGORY.get(actual, f"category {actual}")
            problems.append((f"{label} has category '{kind}' in X3, not '{_INVOICE_CATEGORY[category]}'",
                             f"set `{key}` in the mapping to a {_INVOICE_CATEGORY[category]} type"))
    return problems


def _tax_code_problems(mapping: Mapping, client: X3Client) -> list[tuple[str, str]]:
    wanted = mapping.tax_code_rates()
    if not wanted:
        return []
    ref = client.config.representations.tax_codes
    found = {str(row.get("VAT", "")): row for row in _rows(client, ref, _any_of("VAT", wanted))}
    problems = []
    for code, rate in sorted(wanted.items()):
        row = found.get(code)
        label, otherwise = f"tax code {code}", "or change the tax rule's code (or `untaxed`) in the mapping"
        if row is None:
            problems.append((f"{label} does not exist in X3", f"create {label} in X3 {otherwise}"))
            continue
        if _int_field(row, "ENAFLG") == 1:
            problems.append((f"{label} is inactive in X3", f"activate {label} in X3 {otherwise}"))
            continue
        try:
            x3_percent = Decimal(str(row["VATRAT"])) if "VATRAT" in row else None
        except (InvalidOperation, ValueError):
            x3_percent = None
        expected = (rate * 100).normalize()
        if x3_percent is not None and x3_percent.normalize() != expected:
            problems.append((f"{label} applies {x3_percent.normalize():f} % in X3, the mapping expects {expected:f} %",
                             f"map the Shopify rate to an X3 tax code of {expected:f} % (or fix the rate in X3)"))
    return problems


def _item_problems(mapping: Mapping, client: X3Client) -> list[tuple[str, str]]:
    wanted = _referenced_items(mapping)
    if not wanted:
        return []
    ref = client.config.representations.items
    found = {str(row.get("ITMREF", "")): row for row in _rows(client, ref, _any_of("ITMREF", wanted))}
    problems = []
    for item, key in sorted(wanted.items()):
        row = found.get(item)
        label = f"item {item} ({key})"
        if row is None:
            fix = f"create item {item} in X3 or change {key} in the mapping"
            problems.append((f"{label} does not exist in X3", fix))
        elif (status := _int_field(row, "ITMSTA")) is not None and status not in _SELLABLE_ITEM_STATUSES:
            problems.append((f"{label} has status {status} in X3 (not sellable)",
                             f"set item {item} to status Active in X3 or change {key} in the mapping"))
    return problems


# ============================================================================================== all of it
def run_checks(runtime: ConnectorRuntime) -> list[CheckResult]:
    """Every check, in report order: each Shopify store, X3, then the mapping (against X3 when it answers)."""
    settings = runtime.settings
    today = runtime.clock().date()
    results: list[CheckResult] = []
    for key in settings.stores:
        with runtime.shopify_client(key) as shopify:
            results += check_shopify_store(
                key, shopify, today=today, partition_timezone=settings.partition_timezone,
                auth_mode=settings.stores[key].auth_mode,
            )

    x3_client = _open_x3(runtime, results)
    try:
        if x3_client is not None:
            connection = check_x3_connection(settings.x3, x3_client)
            results += connection
            if all(row.ok for row in connection):
                results += check_x3_representations(x3_client)
                results += check_x3_publications(x3_client)
            else:
                x3_client.close()
                x3_client = None
        file_rows, mapping = check_mapping_file(settings.mapping_path)
        results += file_rows
        if mapping is not None:
            results += check_mapping_stores(mapping, settings.stores)
            results += check_mapping_stock(mapping, settings.stores)
            if x3_client is not None:
                results += check_mapping_references(mapping, x3_client, today=today)
            else:
                results.append(_failed(MAPPING, "X3 references", "not checked: the X3 connection failed",
                                       "fix the X3 rows above, then run x3sd check again"))
    finally:
        if x3_client is not None:
            x3_client.close()
    return results


def _open_x3(runtime: ConnectorRuntime, results: list[CheckResult]) -> X3Client | None:
    settings = runtime.settings
    if not settings.x3.configured:
        fix = (
            f"set {env_name('x3', 'server_url')}, {env_name('x3', 'folder')}, {env_name('x3', 'user')} and "
            f"{env_name('x3', 'password')} (see docs/configuration.md)"
        )
        results.append(_failed(X3, "configuration", "Sage X3 is not configured", fix))
        return None
    try:
        return runtime.x3_client()
    except (X3Error, ValueError) as exc:
        fix = "fix the X3 settings named in the detail (see docs/configuration.md)"
        results.append(_failed(X3, "configuration", _one_line(exc), fix))
        return None


def exit_code(results: Sequence[CheckResult]) -> int:
    return 0 if all(row.ok for row in results) else 1


def secret_values(settings: ConnectorSettings) -> list[str]:
    """Token and password values, so the report can scrub them even if a server echoed one back."""
    secrets = [
        secret.get_secret_value()
        for store in settings.stores.values()
        for secret in (store.access_token, store.client_secret)
        if secret is not None
    ]
    x3_secrets = (settings.x3.password, settings.x3.client_secret)
    secrets += [secret.get_secret_value() for secret in x3_secrets if secret is not None]
    return [s for s in secrets if s]


def render_report(results: Sequence[CheckResult], *, secrets: Iterable[str] = ()) -> str:
    """An aligned table (system, check, status, detail), one ``Fix:`` line per failure, then a summary."""
    header = ("SYSTEM", "CHECK", "STATUS", "DETAIL")
    rows = [(r.system, r.name, "OK" if r.ok else "FAIL", r.detail) for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]).rstrip()
        for row in [header, *rows]
    ]
    failures = [r for r in results if not r.ok]
    if failures:
        lines.append("")
        lines += [f"Fix: [{r.system} / {r.name}] {r.fix or 'see the detail above'}" for r in failures]
    lines.append("")
    lines.append(f"{len(results)} checks, " + (f"{len(failures)} failed" if failures else "all OK"))
    return scrub("\n".join(lines), secrets)
