"""Classic SOAP (`CAdxWebServiceXmlCC`, SOAP 1.1 RPC/encoded) on the server side: request envelopes in,
`CAdxResultXml` or `soapenv:Fault` out, and X3's object payloads (`<PARAM><GRP>/<TAB>` XML or its JSON form).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

SOAPENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSS_NS = "http://www.adonix.com/WSS"
OPERATIONS = frozenset({"save", "modify", "delete", "read", "query", "actionObject", "actionObjectKeys", "run",
                        "getDescription"})


class SoapRequestError(Exception):
    """The envelope itself is unusable: answered with a `soapenv:Client` fault."""


class ObjectFormatError(ValueError):
    """objectXml / inputXml does not parse: answered with status 0 and a type-3 message."""


def _parse_xml(text: str | bytes, what: str, error: type[Exception]) -> ET.Element:
    # Expat never fetches external entities; refusing any DTD also rules out entity expansion.
    head = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if "<!DOCTYPE" in head.upper() or "<!ENTITY" in head.upper():
        raise error(f"{what} contains a DTD, which is not accepted")
    try:
        return ET.fromstring(text)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise error(f"{what} is not well-formed XML ({exc})") from None


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((child for child in element if _local(child.tag) == name), None)


def _text(element: ET.Element | None) -> str:
    return "".join(element.itertext()) if element is not None else ""


# ============================================================================================== requests
@dataclass(frozen=True)
class CallContext:
    code_lang: str
    pool_alias: str
    pool_id: str
    request_config: Mapping[str, str]

    @property
    def json_result(self) -> bool:
        return self.request_config.get("adxwss.optreturn", "").upper() == "JSON"

    @property
    def beautify(self) -> bool:
        return self.request_config.get("adxwss.beautify", "").lower() == "true"


@dataclass(frozen=True)
class SoapCall:
    operation: str
    context: CallContext
    public_name: str
    payload: str | None = None  # objectXml (objects) or inputXml (run)
    keys: tuple[tuple[str, str], ...] = ()
    action_code: str = ""
    list_size: int | None = None


def parse_call(body: bytes) -> SoapCall:
    root = _parse_xml(body, "SOAP request", SoapRequestError)
    if _local(root.tag) != "Envelope" or not str(root.tag).startswith(f"{{{SOAPENV_NS}}}"):
        raise SoapRequestError("not a SOAP 1.1 envelope")
    soap_body = _child(root, "Body")
    operation_element = next(iter(soap_body), None) if soap_body is not None else None
    if operation_element is None:
        raise SoapRequestError("SOAP Body is empty")
    operation = _local(operation_element.tag)
    if operation not in OPERATIONS:
        raise SoapRequestError(f"operation '{operation}' is not supported by CAdxWebServiceXmlCC")
    context_element = _child(operation_element, "callContext")
    if context_element is None:
        raise SoapRequestError(f"{operation}: callContext is missing")
    context = CallContext(
        code_lang=_text(_child(context_element, "codeLang")).strip(),
        pool_alias=_text(_child(context_element, "poolAlias")).strip(),
        pool_id=_text(_child(context_element, "poolId")).strip(),
        request_config=dict(parse_qsl(_text(_child(context_element, "requestConfig")).strip())),
    )
    payload_element = _child(operation_element, "objectXml")
    if payload_element is None:
        payload_element = _child(operation_element, "inputXml")
    keys_element = _child(operation_element, "objectKeys")
    keys: list[tuple[str, str]] = []
    if keys_element is not None:
        for item in keys_element:
            key, value = _child(item, "key"), _child(item, "value")
            if key is None or value is None:
                raise SoapRequestError(f"{operation}: objectKeys items need <key> and <value>")
            keys.append((_text(key).strip(), _text(value)))
    list_size_text = _text(_child(operation_element, "listSize")).strip()
    try:
        list_size = int(list_size_text) if list_size_text else None
    except ValueError:
        raise SoapRequestError(f"{operation}: listSize {list_size_text!r} is not an integer") from None
    return SoapCall(
        operation=operation, context=context,
        public_name=_text(_child(operation_element, "publicName")).strip(),
        payload=_text(payload_element) if payload_element is not None else None,
        keys=tuple(keys), action_code=_text(_child(operation_element, "actionCode")).strip(),
        list_size=list_size)


# ============================================================================================== object payloads
@dataclass
class ObjectData:
    """An X3 object payload: groups of fields (`GRP`) and tables of lines (`TAB`). Values are strings on input,
    typed Python values (str, int, Decimal, date) on output."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def parse_object(text: str | None) -> ObjectData:
    """objectXml in X3's XML form (`<PARAM><GRP ID><FLD NAME>`) or JSON form (`{"GRP": {...}, "TAB": [...]}`)."""
    if text is None or not text.strip():
        return ObjectData()
    stripped = text.strip()
    if stripped.startswith("{"):
        return _object_from_json(stripped)
    root = _parse_xml(stripped, "objectXml", ObjectFormatError)
    data = ObjectData()
    for block in root:
        tag, block_id = _local(block.tag), block.get("ID") or ""
        if tag == "GRP":
            data.groups.setdefault(block_id, {}).update(_xml_fields(block))
        elif tag == "TAB":
            data.tables[block_id] = [_xml_fields(line) for line in block if _local(line.tag) == "LIN"]
        else:
            raise ObjectFormatError(f"objectXml: unexpected element <{tag}> (expected GRP or TAB)")
    return data


def _xml_fields(container: ET.Element) -> dict[str, str]:
    fields: dict[str, str] = {}
    for element in container:
        tag, name = _local(element.tag), element.get("NAME")
        if tag == "FLD" and name:
            fields[name] = element.text or ""
        elif tag == "LST" and name:
            raise ObjectFormatError(f"objectXml: array field {name} (LST) is not used by this publication")
        else:
            raise ObjectFormatError(f"objectXml: unexpected element <{tag}> in a group or line")
    return fields


def _object_from_json(text: str) -> ObjectData:
    try:
        raw = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ObjectFormatError(f"objectXml is not valid JSON ({exc})") from None
    data = ObjectData()
    for block_id, block in raw.items():
        if isinstance(block, dict):
            data.groups[block_id] = {name: _json_scalar(value, name) for name, value in block.items()}
        elif isinstance(block, list) and all(isinstance(line, dict) for line in block):
            data.tables[block_id] = [{name: _json_scalar(value, name) for name, value in line.items()}
                                     for line in block]
        else:
            raise ObjectFormatError(f"objectXml: block {block_id} must be an object (group) or a list of objects")
    return data


def _json_scalar(value: Any, name: str) -> str:
    if isinstance(value, bool | dict | list):
        raise ObjectFormatError(f"objectXml: field {name} must be a string or a number")
    if value is None:
        return ""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _field_type(value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError("X3 has no booleans")
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, Decimal):
        return "Decimal"
    if isinstance(value, date):
        return "Date"
    return "Char"


def field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")  # X3's date format in object payloads
    return str(value)


def render_object(data: ObjectData, *, as_json: bool, beautify: bool = False) -> str:
    if as_json:
        payload: dict[str, Any] = {gid: {k: field_text(v) for k, v in fields.items()}
                                   for gid, fields in data.groups.items()}
        payload.update({tid: [{k: field_text(v) for k, v in line.items()} for line in lines]
                        for tid, lines in data.tables.items()})
        return json.dumps(payload, ensure_ascii=False, indent=2 if beautify else None)
    parts = ['<?xml version="1.0" encoding="UTF-8"?><RESULT>']
    for group_id, fields in data.groups.items():
        parts.append(f"<GRP ID={quoteattr(group_id)}>{_xml_field_list(fields)}</GRP>")
    for table_id, lines in data.tables.items():
        body = "".join(f'<LIN NUM="{n}">{_xml_field_list(line)}</LIN>' for n, line in enumerate(lines, 1))
        parts.append(f'<TAB DIM="{max(len(lines), 1)}" ID={quoteattr(table_id)} SIZE="{len(lines)}">{body}</TAB>')
    parts.append("</RESULT>")
    return "".join(parts)


def _xml_field_list(fields: Mapping[str, Any]) -> str:
    return "".join(f"<FLD NAME={quoteattr(name)} TYPE=\"{_field_type(value)}\">{escape(field_text(value))}</FLD>"
                   for name, value in fields.items())


# ============================================================================================== responses
MESSAGE_INFO, MESSAGE_WARNING, MESSAGE_ERROR = 1, 2, 3


@dataclass
class SoapResult:
    status: int  # 1 ok, 0 error
    messages: list[tuple[int, str]] = field(default_factory=list)
    result: str | None = None  # rendered resultXml (XML or JSON text)


@dataclass(frozen=True)
class TechnicalInfos:
    busy: bool = False
    pool_entry_index: int = -1
    pool_wait_ms: float = 0.0
    pool_exec_ms: float = 0.0
    total_ms: float = 0.0

    def xml(self) -> str:
        values: Sequence[tuple[str, str, str]] = (
            ("busy", "xsd:boolean", str(self.busy).lower()), ("changeLanguage", "xsd:boolean", "false"),
            ("changeUserId", "xsd:boolean", "false"), ("flushAdx", "xsd:boolean", "false"),
            ("loadWebsDuration", "xsd:double", "0"), ("nbDistributionCycle", "xsd:int", "0"),
            ("poolDistribDuration", "xsd:double", "0"), ("poolEntryIdx", "xsd:int", str(self.pool_entry_index)),
            ("poolExecDuration", "xsd:double", f"{self.pool_exec_ms:.1f}"),
            ("poolRequestDuration", "xsd:double", f"{self.pool_wait_ms + self.pool_exec_ms:.1f}"),
            ("poolWaitDuration", "xsd:double", f"{self.pool_wait_ms:.1f}"), ("processReport", "xsd:string", ""),
            ("processReportSize", "xsd:int", "0"), ("reloadWebs", "xsd:boolean", "false"),
            ("resumitAfterDBOpen", "xsd:boolean", "false"), ("rowInDistribStack", "xsd:int", "0"),
            ("totalDuration", "xsd:double", f"{self.total_ms:.1f}"), ("traceRequest", "xsd:string", ""),
            ("traceRequestSize", "xsd:int", "0"),
        )
        inner = "".join(f'<{name} xsi:type="{kind}">{value}</{name}>' for name, kind, value in values)
        return f'<technicalInfos xsi:type="wss:CAdxTechnicalInfos">{inner}</technicalInfos>'


_ENVELOPE_OPEN = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAPENV_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    f' xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:wss="{WSS_NS}"><soapenv:Body>'
)
_ENVELOPE_CLOSE = "</soapenv:Body></soapenv:Envelope>"


def render_result(operation: str, result: SoapResult, technical: TechnicalInfos) -> bytes:
    messages = "".join(
        f'<messages xsi:type="wss:CAdxMessage"><message xsi:type="xsd:string">{escape(text)}</message>'
        f'<type xsi:type="xsd:string">{kind}</type></messages>' for kind, text in result.messages)
    result_xml = ('<resultXml xsi:type="xsd:string" xsi:nil="true"/>' if result.result is None
                  else f'<resultXml xsi:type="xsd:string">{escape(result.result)}</resultXml>')
    body = (
        f'<wss:{operation}Response soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f'<{operation}Return xsi:type="wss:CAdxResultXml">'
        f'<messages xsi:type="soapenc:Array" soapenc:arrayType="wss:CAdxMessage[{len(result.messages)}]">'
        f"{messages}</messages>{result_xml}"
        f'<status xsi:type="xsd:int">{result.status}</status>{technical.xml()}'
        f"</{operation}Return></wss:{operation}Response>"
    )
    return (_ENVELOPE_OPEN + body + _ENVELOPE_CLOSE).encode("utf-8")


def render_fault(message: str, *, code: str = "soapenv:Server") -> bytes:
    body = (f"<soapenv:Fault><faultcode>{escape(code)}</faultcode><faultstring>{escape(message)}</faultstring>"
            "<detail/></soapenv:Fault>")
    return (_ENVELOPE_OPEN + body + _ENVELOPE_CLOSE).encode("utf-8")
