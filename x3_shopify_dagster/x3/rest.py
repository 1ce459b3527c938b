"""api1 (SData 2.0 JSON) reads: `$query` feeds followed page by page, `$details` of one record.

A 200 is only "maybe": error `$diagnoses` inside it are errors, a `transient` one is retried, and a `$details`
answer "Record does not exist" means not found. Numbers are parsed as `Decimal`, never float.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from x3_shopify_dagster.x3.config import X3Config
from x3_shopify_dagster.x3.errors import (
    Diagnosis,
    X3DiagnosisError,
    X3HttpError,
    X3ProtocolError,
    X3ServiceBusyError,
    X3TransientDiagnosisError,
)
from x3_shopify_dagster.x3.sdata import Where, property_name
from x3_shopify_dagster.x3.transport import Call, X3Transport

_ERROR_SEVERITIES = frozenset({"error", "fatal"})
_NOT_FOUND = object()


def parse_json(content: bytes) -> Any:
    return json.loads(content, parse_float=Decimal)


def diagnoses_of(payload: Any) -> list[Diagnosis]:
    raw = payload.get("$diagnoses") if isinstance(payload, Mapping) else None
    if not isinstance(raw, list):
        return []
    return [
        Diagnosis(str(d.get("$severity", "error")).lower(), str(d.get("$message", "")))
        for d in raw
        if isinstance(d, Mapping)
    ]


def _contains(text: str, markers: Sequence[str]) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in markers)


def interpret_api1(response: httpx.Response, config: X3Config, *, not_found_is_none: bool = False) -> Any:
    """Turn one api1 response into its JSON payload, `_NOT_FOUND`, or a classified error."""
    status = response.status_code
    try:
        payload = parse_json(response.content) if response.content else None
    except ValueError:
        payload = None
    diagnoses = diagnoses_of(payload)
    errors = [d for d in diagnoses if d.severity in _ERROR_SEVERITIES]
    transient = [d for d in diagnoses if d.severity == "transient"]
    text = " ".join(d.message for d in diagnoses) or response.text[:300]

    if status == 200:
        if not isinstance(payload, dict):
            raise X3ProtocolError("X3 api1 answered HTTP 200 without a JSON object")
        if (
            errors
            and not_found_is_none
            and all(_contains(d.message, config.not_found_markers) for d in errors)
        ):
            return _NOT_FOUND
        if errors:
            raise X3DiagnosisError(errors)
        if transient:
            raise X3TransientDiagnosisError(transient)
        return payload
    if status == 404 and not_found_is_none:
        return _NOT_FOUND
    if status == 503 or _contains(text, config.busy_markers):
        raise X3ServiceBusyError(status, text)
    if transient and not errors:
        raise X3TransientDiagnosisError(transient, status_code=status)
    if status in {502, 504}:
        raise X3HttpError(status, text, retryable=True)
    if errors or diagnoses:
        # e.g. HTTP 500 for an unknown property in `where`: permanent, never retried.
        raise X3DiagnosisError(errors or diagnoses, status_code=status)
    raise X3HttpError(status, text, retryable=status >= 500)


def _encode_query(params: Mapping[str, str]) -> str:
    # Spaces as %20 (not '+'), quotes and '@' escaped; '$' kept readable as in Sage's own examples.
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='$')}" for k, v in params.items())


def resource_key(key: str | Sequence[str]) -> str:
    parts = [key] if isinstance(key, str) else list(key)
    if not parts or any(not isinstance(p, str) for p in parts):
        raise ValueError("a resource key is a string or a sequence of strings")
    joined = "~".join(parts)
    return quote("('" + joined.replace("'", "''") + "')", safe="()'~")


class Api1Reader:
    def __init__(self, config: X3Config, transport: X3Transport) -> None:
        self.config = config
        self.transport = transport

    def _class_url(self, cls: str) -> str:
        return f"{self.config.api1_url}/{property_name(cls)}"

    def query(
        self,
        cls: str,
        representation: str,
        *,
        where: Where | None = None,
        order_by: str | None = None,
        count: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        params = {
            "representation": f"{property_name(representation)}.$query",
            "count": str(count or self.config.page_size),
        }
        if where is not None:
            params["where"] = str(where)
        if order_by:
            params["orderBy"] = order_by
        url = f"{self._class_url(cls)}?{_encode_query(params)}"
        seen: set[str] = set()
        while url:
            seen.add(url)
            page = self._get(url, Call("api1", "query", idempotent=True))
            resources = page.get("$resources", [])
            if not isinstance(resources, list):
                raise X3ProtocolError("api1 feed without a $resources list")
            for row in resources:
                if isinstance(row, dict):
                    yield row
            next_url = _next_url(page)
            if next_url is None:
                return
            url = self._resolve(next_url)
            if url in seen:
                raise X3ProtocolError("api1 paging loops: $links.$next points to a page already read")

    def details(self, cls: str, representation: str, key: str | Sequence[str]) -> dict[str, Any] | None:
        url = (
            f"{self._class_url(cls)}{resource_key(key)}"
            f"?{_encode_query({'representation': f'{property_name(representation)}.$details'})}"
        )
        result = self._get(url, Call("api1", "details", idempotent=True), not_found_is_none=True)
        return None if result is _NOT_FOUND else result

    def _get(self, url: str, call: Call, *, not_found_is_none: bool = False) -> Any:
        def build() -> httpx.Request:
            return self.transport.http.build_request("GET", url, headers={"Accept": "application/json"})

        return self.transport.send(
            call, build, lambda r: interpret_api1(r, self.config, not_found_is_none=not_found_is_none)
        )

    def _resolve(self, next_url: str) -> str:
        """Resolve a `$next` link and refuse one pointing elsewhere: it would receive our credentials."""
        absolute = urljoin(self.config.base_url + "/", next_url)
        if _origin(absolute) != _origin(self.config.base_url):
            raise X3ProtocolError("api1 $next link points to another server; refusing to follow it")
        return absolute


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _next_url(page: Mapping[str, Any]) -> str | None:
    links = page.get("$links")
    nxt = links.get("$next") if isinstance(links, Mapping) else None
    url = nxt.get("$url") if isinstance(nxt, Mapping) else None
    return url if isinstance(url, str) and url else None
