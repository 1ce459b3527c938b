"""The per-customer mapping from Shopify orders to Sage X3 documents: a YAML file, validated with pydantic.

Layers, least to most specific (docs/mapping.md): ``defaults`` → ``stores.<store>`` → ``customers.<code>`` →
``customers.<code>.stores.<store>``. ``Mapping.for_customer(code, store)`` merges them into a complete
``CustomerMapping``. Every validation problem names its YAML path (and line), what is wrong and how to fix it.

YAML is read without implicit numbers, dates or floats: ``706000`` stays the account code "706000" (a leading
zero or a float rate cannot be mangled) and ``0.20`` becomes ``Decimal("0.20")``.

Pure module: pydantic, PyYAML and the standard library only.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Sequence
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

GUIDE = "docs/mapping.md"
ACCOUNT_CODE = re.compile(r"[A-Z0-9]{1,20}")
X3_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,19}")
ITEM_CODE = re.compile(r"[A-Z0-9][A-Z0-9._/-]{0,19}")
STORE_KEY = re.compile(r"[a-z0-9_-]+")


# ============================================================================================ problems
class MappingProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str  # YAML path, e.g. customers.FR0001.accounts.goods
    message: str
    hint: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.path or '(file)'}: {self.message} Fix: {self.hint}"


class MappingError(ValueError):
    """The mapping file is invalid; ``problems`` lists every problem found, each with its YAML path."""

    def __init__(self, source: str, problems: Sequence[MappingProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid mapping {source}: {len(self.problems)} problem(s)\n{listing}")


def _problem(message: str, hint: str) -> PydanticCustomError:
    return PydanticCustomError("mapping", "{message}", {"message": message, "hint": hint})


# ============================================================================================ value formats
def _account_code(value: str) -> str:
    if not ACCOUNT_CODE.fullmatch(value):
        raise _problem(
            f"'{value}' is not a GL account code.",
            "write the X3 account number as upper-case letters and digits (at most 20), quoted, "
            'e.g. "706000".',
        )
    return value


def _x3_code(value: str) -> str:
    if not X3_CODE.fullmatch(value):
        raise _problem(
            f"'{value}' is not an X3 code.",
            "X3 codes are upper-case letters, digits, '-' or '_' (at most 20), e.g. FR011, FRN, WEB-EU.",
        )
    return value


def _item_code(value: str) -> str:
    if not ITEM_CODE.fullmatch(value):
        raise _problem(
            f"'{value}' is not an X3 item reference.",
            "X3 item references (ITMREF) are upper-case letters, digits, '.', '/', '-' or '_' (at most 20).",
        )
    return value


def _store_key(value: str) -> str:
    if not STORE_KEY.fullmatch(value):
        raise _problem(
            f"'{value}' is not a store key.",
            "use the connector's store key (lower-case letters, digits, '-' or '_'), e.g. eu.",
        )
    return value


def _tax_rate(value: Decimal) -> Decimal:
    if not value.is_finite() or value < 0:
        raise _problem(
            f"rate {value} is not a tax rate.", 'write the rate as a fraction, e.g. "0.20" for 20 %.'
        )
    if value >= 1:
        raise _problem(
            f"rate {value} looks like a percentage.",
            f'Shopify tax rates are fractions: write "{value / 100}" for {value} %.',
        )
    return value


AccountCode = Annotated[str, AfterValidator(_account_code)]
X3Code = Annotated[str, AfterValidator(_x3_code)]
ItemCode = Annotated[str, AfterValidator(_item_code)]
StoreKey = Annotated[str, AfterValidator(_store_key)]
TaxRate = Annotated[Decimal, AfterValidator(_tax_rate)]


class MoneySide(StrEnum):
    SHOP = "shop"  # shopMoney: the store's currency (default)
    PRESENTMENT = "presentment"  # presentmentMoney: the currency the customer paid in


class PostingMoment(StrEnum):
    ON_CREATE = "on_create"
    ON_PAID = "on_paid"


class GuestMode(StrEnum):
    CUSTOMER = "customer"  # invoice every guest checkout to one X3 account (e.g. WEBGUEST)
    MATCH = "match"  # treat guests like registered customers: the X3 customer matched by e-mail
    FLAG = "flag"  # fail with reason guest_checkout, so someone decides
    SKIP = "skip"  # record a skip, post nothing


# ============================================================================================ file layers
class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AccountsLayer(_Strict):
    chart: X3Code | None = None
    goods: AccountCode | None = None
    shipping: AccountCode | None = None
    discounts: AccountCode | None = None
    receivable: AccountCode | None = None
    tax: AccountCode | None = None  # output tax, unless a tax rule names its own account
    duties: AccountCode | None = None  # needed only by orders with duties
    rounding: AccountCode | None = None  # X3 tax rounding differences (prices excluding tax)


class TaxRule(_Strict):
    """A Shopify tax line (title and rate) and the X3 tax code it becomes."""

    title: str = Field(min_length=1)
    rate: TaxRate
    code: X3Code
    account: AccountCode | None = None

    def matches(self, title: str, rate: Decimal | None) -> bool:
        return (
            rate is not None
            and self.title.strip().casefold() == title.strip().casefold()
            and self.rate == rate
        )


class ItemsLayer(_Strict):
    identity: bool | None = None  # the SKU is the X3 item reference unless overridden (default true)
    overrides: dict[str, ItemCode | None] = Field(default_factory=dict)  # SKU → item, or null: "no X3 item"
    without_sku: ItemCode | None = None  # item for lines without a SKU; null: such lines fail


class GuestCheckout(_Strict):
    mode: GuestMode = GuestMode.FLAG
    customer: X3Code | None = None

    @model_validator(mode="before")
    @classmethod
    def _customer_implies_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and "customer" in data and "mode" not in data:
            return {**data, "mode": GuestMode.CUSTOMER.value}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> GuestCheckout:
        if self.mode is GuestMode.CUSTOMER and self.customer is None:
            raise _problem(
                "mode 'customer' needs the X3 account to invoice guests to.",
                "write guest_checkout: {customer: WEBGUEST} with your guest account's code.",
            )
        if self.mode is not GuestMode.CUSTOMER and self.customer is not None:
            raise _problem(
                f"a customer is only used with mode 'customer', not '{self.mode.value}'.",
                "drop the customer key, or drop the mode key to invoice guests to that customer.",
            )
        return self


class Layer(_Strict):
    """Everything a mapping level may set; unset keys fall through to the less specific level."""

    site: X3Code | None = None
    invoice_type: X3Code | None = None
    credit_memo_type: X3Code | None = None
    money: MoneySide | None = None
    posting: PostingMoment | None = None
    include_test_orders: bool | None = None
    guest_checkout: GuestCheckout | None = None
    accounts: AccountsLayer = Field(default_factory=AccountsLayer)
    dimensions: dict[X3Code, X3Code] = Field(default_factory=dict)
    taxes: tuple[TaxRule, ...] = ()
    untaxed: X3Code | None = None  # tax code for lines Shopify did not tax (and for rounding lines)
    items: ItemsLayer = Field(default_factory=ItemsLayer)

    @field_validator("dimensions")
    @classmethod
    def _one_dimension(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 1:
            raise _problem(
                f"{len(value)} dimensions given ({', '.join(value)}).",
                "the YSIH publication carries one analytical dimension per line (DIE/CCE): keep one.",
            )
        return value


class CustomerLayer(Layer):
    stores: dict[StoreKey, Layer] = Field(default_factory=dict)

    @field_validator("guest_checkout")
    @classmethod
    def _no_guest_policy(cls, value: GuestCheckout | None) -> GuestCheckout | None:
        if value is not None:
            raise _problem(
                "guest_checkout cannot be set per customer: a guest checkout has no customer.",
                "move it to defaults or to stores.<store>.",
            )
        return value

    @field_validator("stores")
    @classmethod
    def _no_guest_policy_in_stores(cls, value: dict[str, Layer]) -> dict[str, Layer]:
        for store, layer in value.items():
            if layer.guest_checkout is not None:
                raise _problem(
                    f"guest_checkout cannot be set per customer (found under stores.{store}).",
                    "move it to defaults or to the top-level stores section.",
                )
        return value


# Keys every order needs: they must be in `defaults` so that any store and customer resolves completely.
_REQUIRED_DEFAULTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("site",), "the X3 sales site (SALFCY), e.g. site: FR011"),
    (("invoice_type",), "the X3 sales invoice type (SIVTYP), e.g. invoice_type: INV"),
    (("credit_memo_type",), "the X3 credit memo type, e.g. credit_memo_type: CRN"),
    (("accounts", "chart"), "the X3 chart of accounts, e.g. chart: CHART1"),
    (("accounts", "goods"), 'the sales account for goods, e.g. goods: "706000"'),
    (("accounts", "shipping"), 'the shipping income account, e.g. shipping: "708500"'),
    (("accounts", "discounts"), 'the discounts granted account, e.g. discounts: "709000"'),
    (("accounts", "receivable"), 'the customer receivable account, e.g. receivable: "411000"'),
    (("accounts", "tax"), 'the output tax account, e.g. tax: "445710"'),
)


# ============================================================================================ resolved view
class GlAccount(BaseModel):
    """An account of a chart (X3 GACCOUNT key COA~ACC)."""

    model_config = ConfigDict(frozen=True)

    chart: str
    account: str

    def __str__(self) -> str:
        return f"{self.chart}/{self.account}"


class Accounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    goods: GlAccount
    shipping: GlAccount
    discounts: GlAccount
    receivable: GlAccount
    tax: GlAccount
    duties: GlAccount | None
    rounding: GlAccount | None

    def all(self) -> tuple[GlAccount, ...]:
        named = (
            self.goods,
            self.shipping,
            self.discounts,
            self.receivable,
            self.tax,
            self.duties,
            self.rounding,
        )
        return tuple(account for account in named if account is not None)


class ItemMapping(BaseModel):
    model_config = ConfigDict(frozen=True)

    identity: bool
    overrides: dict[str, str | None]
    without_sku: str | None

    def item_for(self, sku: str | None) -> tuple[str | None, str]:
        """The X3 item for a SKU, or None with the reason why there is none."""
        if sku is None or not sku.strip():
            if self.without_sku is None:
                return None, "the line has no SKU and items.without_sku is not set"
            return self.without_sku, "items.without_sku"
        if sku in self.overrides:
            item = self.overrides[sku]
            return (
                item,
                f"items.overrides.{sku}" if item else f"items.overrides maps SKU '{sku}' to no X3 item",
            )
        if not self.identity:
            return None, f"SKU '{sku}' is not listed in items.overrides and items.identity is false"
        if not ITEM_CODE.fullmatch(sku):
            return None, f"SKU '{sku}' is not a valid X3 item reference, so it cannot be used as one"
        return sku, "identity"

    def skus_for(self, item: str) -> tuple[tuple[str, ...], str | None]:
        """The reverse of ``item_for``, for the stock sync: the SKUs whose lines are X3 item ``item``.

        Returns (the SKUs ``items.overrides`` maps to ``item``, sorted; ``item`` itself when ``items.identity`` is
        on and ``item`` is not a key of ``items.overrides``, else None). A SKU overridden to another item or to
        null is not this item, even when it spells the item code.
        """
        explicit = tuple(sorted(sku for sku, target in self.overrides.items() if target == item))
        identity = item if self.identity and item not in self.overrides else None
        return explicit, identity


class CustomerMapping(BaseModel):
    """The fully resolved mapping for one X3 customer in one store; every required key is set."""

    model_config = ConfigDict(frozen=True)

    customer: str | None
    store: str | None
    site: str
    invoice_type: str
    credit_memo_type: str
    money: MoneySide
    posting: PostingMoment
    include_test_orders: bool
    guest_checkout: GuestCheckout
    accounts: Accounts
    dimensions: dict[str, str]
    taxes: tuple[TaxRule, ...]
    untaxed: str | None
    items: ItemMapping

    def tax_rule_for(self, title: str, rate: Decimal | None) -> TaxRule | None:
        return next((rule for rule in self.taxes if rule.matches(title, rate)), None)

    def tax_account(self, rule: TaxRule | None) -> GlAccount:
        if rule is not None and rule.account is not None:
            return GlAccount(chart=self.accounts.tax.chart, account=rule.account)
        return self.accounts.tax


# ============================================================================================ the mapping
class Mapping(_Strict):
    """The whole mapping file; build it with ``load_mapping`` / ``parse_mapping`` (they list all problems)."""

    version: int
    defaults: Layer
    stores: dict[StoreKey, Layer] = Field(default_factory=dict)
    customers: dict[X3Code, CustomerLayer] = Field(default_factory=dict)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != 1:
            raise _problem(f"version {value} is not supported.", "write version: 1.")
        return value

    # -- resolution ---------------------------------------------------------------------------------------
    def _layers(self, code: str | None, store: str | None) -> list[Layer]:
        layers: list[Layer] = [self.defaults]
        if store is not None and store in self.stores:
            layers.append(self.stores[store])
        customer = self.customers.get(code) if code is not None else None
        if customer is not None:
            layers.append(customer)
            if store is not None and store in customer.stores:
                layers.append(customer.stores[store])
        return layers

    def guest_checkout(self, store: str | None) -> GuestCheckout:
        """The guest policy of a store (customers cannot set one)."""
        return _last_set(self._layers(None, store), "guest_checkout") or GuestCheckout()

    def for_customer(self, code: str | None, store: str | None) -> CustomerMapping:
        """Merge the layers for customer ``code`` in ``store``; None (or a code or store the file does not
        list) means that level adds nothing."""
        layers = self._layers(code, store)
        accounts = [layer.accounts for layer in layers]
        chart = _last_set(accounts, "chart")

        def account(name: str) -> GlAccount | None:
            value = _last_set(accounts, name)
            return GlAccount(chart=chart, account=value) if value is not None else None

        # More specific tax rules first: the first rule matching a tax line wins.
        taxes: dict[tuple[str, Decimal], TaxRule] = {}
        for layer in reversed(layers):
            for rule in layer.taxes:
                taxes.setdefault((rule.title.strip().casefold(), rule.rate), rule)
        overrides: dict[str, str | None] = {}
        for layer in layers:
            overrides.update(layer.items.overrides)
        items = [layer.items for layer in layers]
        identity = _last_set(items, "identity")
        return CustomerMapping(
            customer=code,
            store=store,
            site=_last_set(layers, "site"),
            invoice_type=_last_set(layers, "invoice_type"),
            credit_memo_type=_last_set(layers, "credit_memo_type"),
            money=_last_set(layers, "money") or MoneySide.SHOP,
            posting=_last_set(layers, "posting") or PostingMoment.ON_PAID,
            include_test_orders=bool(_last_set(layers, "include_test_orders")),
            guest_checkout=self.guest_checkout(store),
            accounts=Accounts(
                goods=account("goods"),
                shipping=account("shipping"),
                discounts=account("discounts"),
                receivable=account("receivable"),
                tax=account("tax"),
                duties=account("duties"),
                rounding=account("rounding"),
            ),
            dimensions=_last_set(layers, "dimensions") or {},
            taxes=tuple(taxes.values()),
            untaxed=_last_set(layers, "untaxed"),
            items=ItemMapping(
                identity=True if identity is None else identity,
                overrides=overrides,
                without_sku=_last_set(items, "without_sku"),
            ),
        )

    def effective_mappings(self) -> Iterator[CustomerMapping]:
        """Every combination a real order can resolve to: each listed store (and any other), each listed
        customer (and any other). The ``referenced_*`` checks run over these."""
        for store in (*self.stores, None):
            for code in (*self.customers, None):
                yield self.for_customer(code, store)

    # -- what X3 must hold before anything is posted --------------------------------------------------------
    def referenced_gl_accounts(self) -> frozenset[GlAccount]:
        found: set[GlAccount] = set()
        for resolved in self.effective_mappings():
            found.update(resolved.accounts.all())
            found.update(resolved.tax_account(rule) for rule in resolved.taxes)
        return frozenset(found)

    def referenced_dimensions(self) -> frozenset[tuple[str, str]]:
        """(dimension type, value) pairs, e.g. ("CCT", "WEB-EU")."""
        return frozenset(
            pair for resolved in self.effective_mappings() for pair in resolved.dimensions.items()
        )

    def referenced_site_dimensions(self) -> frozenset[tuple[str, str, str]]:
        """(site, dimension type, value) combinations, for X3 cost centres restricted to one site."""
        return frozenset(
            (resolved.site, kind, value)
            for resolved in self.effective_mappings()
            for kind, value in resolved.dimensions.items()
        )

    def referenced_tax_codes(self) -> frozenset[str]:
        return frozenset(self.tax_code_rates())

    def tax_code_rates(self) -> dict[str, Decimal]:
        """Each X3 tax code and the rate the mapping expects X3 to apply (0 for the untaxed code)."""
        rates: dict[str, Decimal] = {}
        for resolved in self.effective_mappings():
            rates.update({rule.code: rule.rate for rule in resolved.taxes})
            if resolved.untaxed is not None:
                rates[resolved.untaxed] = Decimal(0)
        return rates

    def referenced_sites(self) -> frozenset[str]:
        return frozenset(resolved.site for resolved in self.effective_mappings())

    def referenced_customers(self) -> frozenset[str]:
        """X3 customers the mapping itself names (guest accounts), besides those matched by e-mail."""
        return frozenset(
            resolved.guest_checkout.customer
            for resolved in self.effective_mappings()
            if resolved.guest_checkout.customer is not None
        )

    def referenced_items(self) -> frozenset[str]:
        """X3 items named explicitly (overrides and without_sku); identity-mapped SKUs are not listed."""
        found: set[str] = set()
        for resolved in self.effective_mappings():
            found.update(item for item in resolved.items.overrides.values() if item)
            if resolved.items.without_sku:
                found.add(resolved.items.without_sku)
        return frozenset(found)


def _last_set(layers: Sequence[BaseModel], name: str) -> Any:
    """The value of the most specific layer that sets ``name`` (an explicit null counts as set)."""
    for layer in reversed(layers):
        if name in layer.model_fields_set:
            return getattr(layer, name)
    return None


# ============================================================================================ loading
class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit ints, floats and timestamps: such scalars stay text, read by pydantic."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; raises ``MappingError`` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(
            str(path),
            [
                MappingProblem(
                    path="",
                    message=f"cannot read the file ({error.strerror}).",
                    hint=f"check the path; start from docs/mapping.example.yaml ({GUIDE}).",
                )
            ],
        ) from None
    return parse_mapping(text, source=str(path))


def parse_mapping(text: str, *, source: str = "<text>") -> Mapping:
    """Validate mapping YAML given as text (``load_mapping`` reads a file and calls this)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise MappingError(
            source,
            [
                MappingProblem(
                    path="",
                    message=f"not valid YAML: {getattr(error, 'problem', None) or error}.",
                    hint="fix the YAML syntax there (indentation, a missing ':' or an unclosed quote).",
                    line=mark.line + 1 if mark else None,
                )
            ],
        ) from None
    finally:
        loader.dispose()
    lines: dict[tuple[str | int, ...], int] = {}
    problems = _index_nodes(root, (), lines)
    if not isinstance(data, dict):
        raise MappingError(
            source,
            [
                MappingProblem(
                    path="",
                    message="the file does not hold a mapping (key: value pairs).",
                    hint=f"start from docs/mapping.example.yaml ({GUIDE}).",
                )
            ],
        )
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as error:
        problems += [_from_pydantic(detail, lines) for detail in error.errors()]
        raise MappingError(source, sorted(problems, key=lambda problem: problem.line or 0)) from None
    problems += _semantic_problems(mapping, lines)
    if problems:
        raise MappingError(source, sorted(problems, key=lambda problem: problem.line or 0))
    return mapping


def _index_nodes(
    node: yaml.Node | None, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> list[MappingProblem]:
    """Record the line of every YAML path and report duplicate keys (PyYAML silently keeps the last one)."""
    problems: list[MappingProblem] = []
    if node is None:
        return problems
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    MappingProblem(
                        path=_render_path((*path, key)),
                        message="this key appears twice at the same level.",
                        hint="keep one: YAML would silently use the last one.",
                        line=key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            problems += _index_nodes(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _index_nodes(item, (*path, index), lines)
    return problems


def _render_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (the key)"
        elif re.fullmatch(r"[A-Za-z0-9_\-]+", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def _line_of(loc: Sequence[str | int], lines: dict[tuple[str | int, ...], int]) -> int | None:
    key = tuple(part for part in loc if part != "[key]")
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class holding the last element of ``loc`` (for listing the keys allowed there)."""
    current: Any = Mapping
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is tuple:
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → X; ``Annotated[X, ...]`` → X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation = options[0]
        else:
            return annotation


def _from_pydantic(detail: Any, lines: dict[tuple[str | int, ...], int]) -> MappingProblem:
    loc: tuple[str | int, ...] = tuple(detail["loc"])
    path, line, kind = _render_path(loc), _line_of(loc, lines), detail["type"]
    context = detail.get("ctx") or {}
    if kind == "mapping":
        return MappingProblem(path=path, message=context["message"], hint=context["hint"], line=line)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else "remove or rename it; "
        hint += f"keys allowed here: {', '.join(known)}." if known else f"see {GUIDE}."
        return MappingProblem(path=path, message=f"unknown key '{loc[-1]}'.", hint=hint, line=line)
    if kind == "missing":
        return MappingProblem(
            path=path,
            message="this key is required.",
            hint=f"add it (see docs/mapping.example.yaml and {GUIDE}).",
            line=line,
        )
    return MappingProblem(
        path=path,
        message=f"{detail['msg']} (got {detail.get('input')!r}).",
        hint=f"see the example for this key in docs/mapping.example.yaml ({GUIDE}).",
        line=line,
    )


def _semantic_problems(mapping: Mapping, lines: dict[tuple[str | int, ...], int]) -> list[MappingProblem]:
    problems: list[MappingProblem] = []
    for path, what in _REQUIRED_DEFAULTS:
        value: Any = mapping.defaults
        for part in path:
            value = getattr(value, part)
        if value is None:
            loc = ("defaults", *path)
            problems.append(
                MappingProblem(
                    path=_render_path(loc),
                    message="missing: every order needs it, so defaults must set it.",
                    hint=f"add it under {_render_path(loc[:-1])}: {what} (stores, customers may override).",
                    line=_line_of(loc, lines),
                )
            )
    if problems:
        return problems  # the rules below resolve layers, which needs complete defaults

    # One X3 tax code has one rate: two rules giving it different rates cannot both agree with X3.
    seen: dict[str, tuple[Decimal, str]] = {}
    untaxed_codes = {resolved.untaxed for resolved in mapping.effective_mappings()} - {None}
    for loc, rule in _all_tax_rules(mapping):
        first = seen.setdefault(rule.code, (rule.rate, _render_path(loc)))
        if first[0] != rule.rate:
            problems.append(
                MappingProblem(
                    path=_render_path((*loc, "code")),
                    message=f"tax code {rule.code} is mapped from rate {rule.rate} here and from {first[0]} "
                    f"at {first[1]}.",
                    hint="an X3 tax code has one rate: map each Shopify rate to the X3 code with that rate.",
                    line=_line_of(loc, lines),
                )
            )
        if rule.code in untaxed_codes and rule.rate != 0:
            problems.append(
                MappingProblem(
                    path=_render_path((*loc, "code")),
                    message=f"tax code {rule.code} is the untaxed code but is mapped from rate {rule.rate}.",
                    hint="use a zero-rate X3 code for 'untaxed' and a code with this rate for the rule.",
                    line=_line_of(loc, lines),
                )
            )
    return problems


def _all_tax_rules(mapping: Mapping) -> Iterator[tuple[tuple[str | int, ...], TaxRule]]:
    def of(layer: Layer, prefix: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], TaxRule]]:
        for index, rule in enumerate(layer.taxes):
            yield (*prefix, "taxes", index), rule

    yield from of(mapping.defaults, ("defaults",))
    for store, layer in mapping.stores.items():
        yield from of(layer, ("stores", store))
    for code, customer in mapping.customers.items():
        yield from of(customer, ("customers", code))
        for store, layer in customer.stores.items():
            yield from of(layer, ("customers", code, "stores", store))
