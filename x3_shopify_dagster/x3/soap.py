"""Classic X3 SOAP (`CAdxWebServiceXmlCC`, SOAP 1.1 RPC/encoded): envelopes in, `CAdxResultXml` out.

Pieces, each usable on its own:
- `encode_object` turns a payload mapping `{group_id: {field: value}, table_id: [{field: value}, ...]}` into
  X3's `<PARAM><GRP>/<TAB>/<LIN>/<FLD>` XML or the equivalent JSON;
- `build_envelope` writes the request envelope (callContext from the configuration);
- `parse_envelope` reads a response (inline or multiRef-encoded) into a `SoapResult`, or raises `X3SoapFault`;
- `SoapCaller` sends calls through the shared transport inside the web-service pool semaphore.

Money stays `Decimal`: JSON results are parsed with `parse_float=Decimal`, XML fields typed Decimal become
`Decimal`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx

from x3_shopify_dagster.x3.config import X3Config
from x3_shopify_dagster.x3.errors import (
    SoapMessage,
    X3BusinessError,
    X3HttpError,
    X3ProtocolError,
    X3RecordLockedError,
    X3ServiceBusyError,
    X3SoapFault,
)
from x3_shopify_dagster.x3.transport import Call, X3Transport

SOAPENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSS_NS = "http://www.adonix.com/WSS"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Parameter order of each operation, as in the CAdxWebServiceXmlCC WSDL.
OPERATION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "save": ("objectXml",),
    "modify": ("objectKeys", "objectXml"),
    "read": ("objectKeys",),
    "delete": ("objectKeys",),
    "query": ("objectKeys", "listSize"),
    "actionObject": ("actionCode", "objectXml"),
    "actionObjectKeys": ("actionCode", "objectKeys"),
    "run": ("inputXml",),
    "getDescription": (),
}


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SoapResult:
    """A parsed `CAdxResultXml`."""

    status: int
    messages: tuple[SoapMessage, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)  # resultXml as {group: {field: value}, table: [...]}
    raw_result: str | None = None
    technical_infos: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 1

    @property
    def errors(self) -> list[str]:
        return [m.text for m in self.messages if m.type == 3]

    @property
    def warnings(self) -> list[str]:
        return [m.text for m in self.messages if m.type == 2]

    def field(self, name: str) -> Any:
        """First value of field `name` in any group (header fields such as NUM), else None."""
        for group in self.data.values():
            if isinstance(group, Mapping) and name in group:
                return group[name]
        return None

    def decimal(self, name: str) -> Decimal | None:
        """Field `name` as a Decimal whatever the format (JSON results carry strings, XML ones typed values)."""
        value = self.field(name)
        if value is None or value == "":
            return None
        if isinstance(value, float):  # never produced by our parsers; refuse to guess
            raise X3ProtocolError(f"field {name} arrived as a float")
        try:
            return Decimal(str(value))
        except ArithmeticError:
            raise X3ProtocolError(f"field {name} is not a number: {value!r}") from None

    def integer(self, name: str) -> int | None:
        value = self.field(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise X3ProtocolError(f"field {name} is not an integer: {value!r}") from None

    def table(self, table_id: str) -> list[dict[str, Any]]:
        lines = self.data.get(table_id)
        return list(lines) if isinstance(lines, list) else []


# --------------------------------------------------------------------------------------------- payloads
def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise TypeError("X3 has no booleans: send the local-menu value (1 = no, 2 = yes)")
    if isinstance(value, float):
        raise TypeError("floats are not accepted in X3 payloads: use Decimal")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite decimal: {value}")
        return format(value, "f")
    if isinstance(value, datetime):
        raise TypeError("X3 object fields take dates, not datetimes")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")  # X3's date format in object XML/JSON
    if isinstance(value, str | int):
        return str(value)
    raise TypeError(f"unsupported X3 field value {type(value).__name__}")


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"not a valid X3 {what} name: {value!r}")
    return value


def _is_table(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def encode_object(payload: Mapping[str, Any], *, as_json: bool) -> str:
    """Encode an object payload: top-level keys are group ids (a mapping) or table ids (a list of mappings);
    inside, a list of scalars is an X3 array field (LST)."""
    if as_json:
        return json.dumps(_jsonable(payload), ensure_ascii=False, separators=(",", ":"))
    parts = ["<PARAM>"]
    for block_id, block in payload.items():
        _name(block_id, "group")
        if isinstance(block, Mapping):
            parts.append(f"<GRP ID={quoteattr(block_id)}>{_fields_xml(block)}</GRP>")
        elif _is_table(block):
            lines = "".join(
                f'<LIN NUM="{n}">{_fields_xml(_mapping(line, block_id))}</LIN>'
                for n, line in enumerate(block, 1)
            )
            parts.append(f'<TAB ID={quoteattr(block_id)} SIZE="{len(block)}">{lines}</TAB>')
        else:
            raise TypeError(f"payload block {block_id!r} must be a mapping (group) or a list (table)")
    parts.append("</PARAM>")
    return "".join(parts)


def _mapping(value: Any, block_id: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"lines of table {block_id!r} must be mappings")
    return value


def _fields_xml(fields: Mapping[str, Any]) -> str:
    out = []
    for name, value in fields.items():
        _name(name, "field")
        if _is_table(value):
            items = "".join(f"<ITM>{escape(_scalar(v))}</ITM>" for v in value)
            out.append(f'<LST NAME={quoteattr(name)} SIZE="{len(value)}">{items}</LST>')
        else:
            out.append(f"<FLD NAME={quoteattr(name)}>{escape(_scalar(value))}</FLD>")
    return "".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_name(str(k), "field"): _jsonable(v) for k, v in value.items()}
    if _is_table(value):
        return [_jsonable(v) for v in value]
    return _scalar(value)


# --------------------------------------------------------------------------------------------- envelopes
@dataclass(frozen=True)
class CallContext:
    code_lang: str
    pool_alias: str
    pool_id: str
    request_config: str

    @classmethod
    def from_config(cls, config: X3Config) -> CallContext:
        return cls(config.language, config.pool_alias, config.pool_id, config.soap_request_config)


def _string_param(name: str, value: str) -> str:
    return f'<{name} xsi:type="xsd:string">{escape(value)}</{name}>'


def _keys_param(keys: Mapping[str, str]) -> str:
    items = "".join(
        '<item xsi:type="wss:CAdxParamKeyValue">'
        f'<key xsi:type="xsd:string">{escape(_name(k, "key"))}</key>'
        f'<value xsi:type="xsd:string">{escape(_scalar(v))}</value></item>'
        for k, v in keys.items()
    )
    return (
        f'<objectKeys xsi:type="wss:ArrayOfCAdxParamKeyValue" '
        f'soapenc:arrayType="wss:CAdxParamKeyValue[{len(keys)}]">{items}</objectKeys>'
    )


def build_envelope(
    operation: str,
    context: CallContext,
    public_name: str,
    *,
    object_xml: str | None = None,
    input_xml: str | None = None,
    object_keys: Mapping[str, str] | None = None,
    action_code: str | None = None,
    list_size: int | None = None,
) -> bytes:
    """The SOAP 1.1 RPC/encoded request for one `CAdxWebServiceXmlCC` operation."""
    if operation not in OPERATION_PARAMETERS:
        raise ValueError(f"unknown X3 SOAP operation {operation!r}")
    supplied = {
        "objectXml": object_xml,
        "inputXml": input_xml,
        "objectKeys": object_keys,
        "actionCode": action_code,
        "listSize": list_size,
    }
    params = [
        '<callContext xsi:type="wss:CAdxCallContext">'
        + _string_param("codeLang", context.code_lang)
        + _string_param("poolAlias", context.pool_alias)
        + _string_param("poolId", context.pool_id)
        + _string_param("requestConfig", context.request_config)
        + "</callContext>",
        _string_param("publicName", _name(public_name, "publication")),
    ]
    for name in OPERATION_PARAMETERS[operation]:
        value = supplied[name]
        if value is None:
            raise ValueError(f"SOAP {operation} needs {name}")
        if name == "objectKeys":
            params.append(_keys_param(value))  # type: ignore[arg-type]
        elif name == "listSize":
            params.append(f'<listSize xsi:type="xsd:int">{int(value)}</listSize>')  # type: ignore[call-overload]
        elif name == "actionCode":
            params.append(_string_param(name, _name(str(value), "action")))
        else:
            params.append(_string_param(name, str(value)))
    body = "".join(params)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAPENV_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:wss="{WSS_NS}">'
        "<soapenv:Header/><soapenv:Body>"
        f'<wss:{operation} soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">{body}'
        f"</wss:{operation}></soapenv:Body></soapenv:Envelope>"
    ).encode()


# --------------------------------------------------------------------------------------------- parsing
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _parse_xml(text: str | bytes, what: str) -> ET.Element:
    # The standard library parser never fetches external entities; refusing DTDs outright also rules out
    # entity-expansion tricks, so no third-party hardened parser is needed.
    head = text[:4096] if isinstance(text, str) else text[:4096].decode("utf-8", "replace")
    if "<!DOCTYPE" in head.upper() or "<!ENTITY" in head.upper():
        raise X3ProtocolError(f"{what} contains a DTD; refused")
    try:
        return ET.fromstring(text)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise X3ProtocolError(f"{what} is not well-formed XML ({exc})") from None


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: ET.Element | None) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


class _Refs:
    """Resolves RPC/encoded `href="#id"` references to their `multiRef id="id"` elements."""

    def __init__(self, body: ET.Element) -> None:
        self._by_id = {el.get("id"): el for el in body.iter() if el.get("id")}

    def deref(self, element: ET.Element) -> ET.Element:
        seen = 0
        while (href := element.get("href", "")).startswith("#") and seen < 8:
            target = self._by_id.get(href[1:])
            if target is None:
                raise X3ProtocolError(f"SOAP reference {href} has no target")
            element, seen = target, seen + 1
        return element


def parse_envelope(content: bytes | str, *, status_code: int = 200) -> SoapResult:
    """Parse a SOAP response into a `SoapResult`; raises `X3SoapFault` for a fault."""
    root = _parse_xml(content, "SOAP response")
    if _local(root.tag) != "Envelope":
        raise X3ProtocolError("SOAP response is not a SOAP envelope")
    body = _child(root, "Body")
    if body is None:
        raise X3ProtocolError("SOAP envelope without a Body")
    refs = _Refs(body)
    fault = _child(body, "Fault")
    if fault is not None:
        raise X3SoapFault(
            _text(_child(fault, "faultcode")) or "unknown",
            _text(_child(fault, "faultstring")) or _text(fault),
            status_code=status_code,
        )
    wrapper = next((el for el in body if _local(el.tag) != "multiRef"), None)
    if wrapper is None:
        raise X3ProtocolError("SOAP Body is empty")
    result_el = next(iter(wrapper), None)
    if result_el is None:
        raise X3ProtocolError(f"{_local(wrapper.tag)} carries no CAdxResultXml")
    result_el = refs.deref(result_el)

    status_text = _text(_child(result_el, "status"))
    try:
        status = int(status_text)
    except ValueError:
        raise X3ProtocolError(f"CAdxResultXml status is not an integer: {status_text!r}") from None
    messages = tuple(_messages(_child(result_el, "messages"), refs))
    raw_result_el = _child(result_el, "resultXml")
    raw_result = _text(raw_result_el) or None
    technical = _child(result_el, "technicalInfos")
    technical_infos = {}
    if technical is not None:
        technical = refs.deref(technical)
        technical_infos = {_local(el.tag): _text(el) for el in technical}
    return SoapResult(
        status=status,
        messages=messages,
        data=parse_result_data(raw_result),
        raw_result=raw_result,
        technical_infos=technical_infos,
    )


def _messages(container: ET.Element | None, refs: _Refs) -> Iterable[SoapMessage]:
    if container is None:
        return
    container = refs.deref(container)
    for item in container:
        item = refs.deref(item)
        type_text = _text(_child(item, "type"))
        message = _child(item, "message")
        if message is None:
            message = _child(item, "v")
        try:
            message_type = int(type_text)
        except ValueError:
            message_type = 3
        yield SoapMessage(message_type, _text(message))


def parse_result_data(raw: str | None) -> dict[str, Any]:
    """`resultXml` as a dict: JSON as sent by X3 (Decimal numbers), or RESULT XML converted."""
    if not raw:
        return {}
    stripped = raw.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped, parse_float=Decimal)
        except ValueError:
            raise X3ProtocolError("resultXml looks like JSON but does not parse") from None
        return data if isinstance(data, dict) else {"RESULT": data}
    if stripped.startswith("<"):
        return result_xml_to_dict(_parse_xml(stripped, "resultXml"))
    raise X3ProtocolError("resultXml is neither JSON nor XML")


def _typed(field_el: ET.Element) -> Any:
    text = field_el.text or ""
    kind = (field_el.get("TYPE") or "").lower()
    if kind == "decimal" and text.strip():
        try:
            return Decimal(text.strip())
        except ArithmeticError:
            return text
    if kind == "integer" and text.strip():
        try:
            return int(text.strip())
        except ValueError:
            return text
    return text


def _fields(container: ET.Element) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for el in container:
        tag, name = _local(el.tag), el.get("NAME")
        if tag == "FLD" and name:
            values[name] = _typed(el)
        elif tag == "LST" and name:
            values[name] = [item.text or "" for item in el if _local(item.tag) == "ITM"]
    return values


def result_xml_to_dict(root: ET.Element) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for block in root:
        tag, block_id = _local(block.tag), block.get("ID")
        if not block_id:
            continue
        if tag == "GRP":
            data[block_id] = _fields(block)
        elif tag == "TAB":
            data[block_id] = [_fields(line) for line in block if _local(line.tag) == "LIN"]
    return data


# --------------------------------------------------------------------------------------------- calls
def _contains(texts: Iterable[str], markers: Sequence[str]) -> bool:
    joined = " ".join(texts).lower()
    return any(marker in joined for marker in markers)


class SoapCaller:
    """Sends SOAP operations through the shared transport, inside the pool semaphore."""

    def __init__(self, config: X3Config, transport: X3Transport) -> None:
        self.config = config
        self.transport = transport
        self.context = CallContext.from_config(config)

    def call(
        self,
        operation: str,
        publication: str,
        *,
        idempotent: bool,
        not_found_is_none: bool = False,
        **params: Any,
    ) -> SoapResult | None:
        envelope = build_envelope(operation, self.context, publication, **params)
        timeout = httpx.Timeout(self.config.timeouts.soap_read_s, connect=self.config.timeouts.connect_s)

        def build() -> httpx.Request:
            return self.transport.http.build_request(
                "POST",
                self.config.soap_url,
                content=envelope,
                timeout=timeout,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            )

        def interpret(response: httpx.Response) -> SoapResult | None:
            result = self._interpret_http(response)
            return self._check(operation, publication, result, not_found_is_none=not_found_is_none)

        return self.transport.send(Call("soap", operation, idempotent), build, interpret, pooled=True)

    def _interpret_http(self, response: httpx.Response) -> SoapResult:
        status, markers = response.status_code, self.config.busy_markers
        text = response.text[:500]
        if status == 503:
            raise X3ServiceBusyError(status, text)
        if status in {502, 504}:
            raise X3HttpError(status, text, retryable=True)
        if "Envelope" in text:
            try:
                return parse_envelope(response.content, status_code=status)
            except X3SoapFault as fault:
                if _contains([fault.faultstring], markers):
                    raise X3ServiceBusyError(status, fault.faultstring) from None
                raise
        if _contains([text], markers):
            raise X3ServiceBusyError(status, text)
        raise X3HttpError(status, text or "no SOAP envelope", retryable=status >= 500)

    def _check(
        self, operation: str, publication: str, result: SoapResult, *, not_found_is_none: bool
    ) -> SoapResult | None:
        if result.ok:
            return result
        texts = [m.text for m in result.messages]
        if _contains(texts, self.config.busy_markers):
            raise X3ServiceBusyError(200, "; ".join(texts))
        if _contains(texts, self.config.lock_markers):
            raise X3RecordLockedError(operation, publication, result.messages)
        if not_found_is_none and _contains(texts, self.config.not_found_markers):
            return None
        raise X3BusinessError(operation, publication, result.messages)
