"""SOAP envelope building and CAdxResultXml parsing, from literal sample payloads."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal

import pytest

from x3_shopify_dagster.x3.errors import X3ProtocolError, X3SoapFault
from x3_shopify_dagster.x3.soap import CallContext, build_envelope, encode_object, parse_envelope

CONTEXT = CallContext("ENG", "SEED", "", "adxwss.optreturn=JSON&adxwss.beautify=false")
SOAPENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
WSS = "{http://www.adonix.com/WSS}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

SAVE_OK_XML_RESULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:wss="http://www.adonix.com/WSS">
 <soapenv:Body>
  <wss:saveResponse soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
   <saveReturn xsi:type="wss:CAdxResultXml">
    <messages xsi:type="soapenc:Array" soapenc:arrayType="wss:CAdxMessage[1]">
     <messages xsi:type="wss:CAdxMessage"><message xsi:type="xsd:string">Tax code defaulted</message>
      <type xsi:type="xsd:string">2</type></messages>
    </messages>
    <resultXml xsi:type="xsd:string"><![CDATA[<?xml version="1.0" encoding="UTF-8"?>
<RESULT>
 <GRP ID="SIH0_1">
  <FLD NAME="SALFCY" TYPE="Char">FR011</FLD>
  <FLD NAME="NUM" TYPE="Char">FAC-FR011-000042</FLD>
  <FLD NAME="INVDAT" TYPE="Date">20261127</FLD>
  <FLD NAME="BPRVCR" TYPE="Char">eu:1001:invoice:3</FLD>
  <FLD MENULAB="Not posted" MENULOCAL="2261" NAME="STA" TYPE="Integer">1</FLD>
  <LST NAME="BPAADDLIG" SIZE="2" TYPE="Char"><ITM>12 rue Neuve</ITM><ITM>Lyon</ITM></LST>
 </GRP>
 <GRP ID="SIH4_3"><FLD NAME="AMTNOT" TYPE="Decimal">349.10</FLD><FLD NAME="AMTATI" TYPE="Decimal">418.92</FLD></GRP>
 <TAB DIM="300" ID="SIH4_1" SIZE="2">
  <LIN NUM="1"><FLD NAME="ITMREF" TYPE="Char">ESP-GRINDER-01</FLD><FLD NAME="QTY" TYPE="Decimal">1</FLD>
   <FLD NAME="GROPRI" TYPE="Decimal">290.8333</FLD></LIN>
  <LIN NUM="2"><FLD NAME="ITMREF" TYPE="Char">FILTER-PAPER-100</FLD><FLD NAME="QTY" TYPE="Decimal">12</FLD>
   <FLD NAME="GROPRI" TYPE="Decimal">4.8</FLD></LIN>
 </TAB>
</RESULT>]]></resultXml>
    <status xsi:type="xsd:int">1</status>
    <technicalInfos xsi:type="wss:CAdxTechnicalInfos">
     <busy xsi:type="xsd:boolean">false</busy>
     <poolExecDuration xsi:type="xsd:double">312</poolExecDuration>
     <poolWaitDuration xsi:type="xsd:double">0</poolWaitDuration>
    </technicalInfos>
   </saveReturn>
  </wss:saveResponse>
 </soapenv:Body>
</soapenv:Envelope>"""

# RPC/encoded answer as Syracuse writes it: the result and the messages live in multiRef elements.
SAVE_ERROR_MULTIREF = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"
    xmlns:wss="http://www.adonix.com/WSS">
 <soapenv:Body>
  <wss:saveResponse><saveReturn href="#id0"/></wss:saveResponse>
  <multiRef id="id0" xsi:type="wss:CAdxResultXml">
   <messages soapenc:arrayType="wss:CAdxMessage[2]"><messages href="#id1"/><messages href="#id2"/></messages>
   <resultXml xsi:type="xsd:string" xsi:nil="true"/>
   <status xsi:type="xsd:int">0</status>
   <technicalInfos href="#id3"/>
  </multiRef>
  <multiRef id="id1" xsi:type="wss:CAdxMessage"><type xsi:type="xsd:string">3</type>
   <message xsi:type="xsd:string">BPCINV : ZZ999 : Record does not exist &amp; cannot be used</message></multiRef>
  <multiRef id="id2" xsi:type="wss:CAdxMessage"><type xsi:type="xsd:string">1</type>
   <message xsi:type="xsd:string">Creation cancelled</message></multiRef>
  <multiRef id="id3" xsi:type="wss:CAdxTechnicalInfos"><busy xsi:type="xsd:boolean">false</busy></multiRef>
 </soapenv:Body>
</soapenv:Envelope>"""

FAULT = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body><soapenv:Fault><faultcode>soapenv:Server.userException</faultcode>
  <faultstring>Pool alias SEEDX not found</faultstring><detail/></soapenv:Fault></soapenv:Body>
</soapenv:Envelope>"""

JSON_RESULT = """<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body><wss:readResponse xmlns:wss="http://www.adonix.com/WSS"><readReturn>
  <messages/>
  <resultXml>{"SIH0_1":{"NUM":"FAC-1","AMTATI":418.92,"STA":3},"SIH4_1":[{"ITMREF":"CUP-PORC-6","QTY":2}]}</resultXml>
  <status>1</status>
 </readReturn></wss:readResponse></soapenv:Body>
</soapenv:Envelope>"""


def test_parses_status_messages_xml_result_and_technical_infos() -> None:
    result = parse_envelope(SAVE_OK_XML_RESULT.encode())
    assert result.ok
    assert result.status == 1
    assert result.warnings == ["Tax code defaulted"]
    assert result.errors == []
    assert result.field("NUM") == "FAC-FR011-000042"
    assert result.field("STA") == 1
    assert result.field("BPAADDLIG") == ["12 rue Neuve", "Lyon"]
    assert result.field("AMTATI") == Decimal("418.92")
    assert isinstance(result.field("AMTATI"), Decimal)
    lines = result.table("SIH4_1")
    assert [line["ITMREF"] for line in lines] == ["ESP-GRINDER-01", "FILTER-PAPER-100"]
    assert lines[0]["GROPRI"] == Decimal("290.8333")
    assert result.technical_infos["poolExecDuration"] == "312"
    assert result.field("MISSING") is None


def test_parses_multiref_encoded_error() -> None:
    result = parse_envelope(SAVE_ERROR_MULTIREF)
    assert result.status == 0
    assert not result.ok
    assert result.errors == ["BPCINV : ZZ999 : Record does not exist & cannot be used"]
    assert [m.type for m in result.messages] == [3, 1]
    assert result.data == {}
    assert result.raw_result is None
    assert result.technical_infos == {"busy": "false"}


def test_json_result_keeps_money_decimal() -> None:
    result = parse_envelope(JSON_RESULT)
    assert result.field("AMTATI") == Decimal("418.92")
    assert isinstance(result.field("AMTATI"), Decimal)
    assert result.table("SIH4_1") == [{"ITMREF": "CUP-PORC-6", "QTY": 2}]


def test_typed_accessors_read_json_strings_and_xml_values_alike() -> None:
    as_json = parse_envelope(JSON_RESULT.replace("418.92", '"418.92"').replace('"STA":3', '"STA":"3"'))
    as_xml = parse_envelope(SAVE_OK_XML_RESULT)
    assert as_json.decimal("AMTATI") == as_xml.decimal("AMTATI") == Decimal("418.92")
    assert as_json.integer("STA") == 3
    assert as_xml.integer("STA") == 1
    assert as_xml.decimal("MISSING") is None
    with pytest.raises(X3ProtocolError, match="not a number"):
        as_xml.decimal("NUM")


@pytest.mark.parametrize("status_code", [200, 500])
def test_fault_raises_with_code_and_text(status_code: int) -> None:
    with pytest.raises(X3SoapFault) as caught:
        parse_envelope(FAULT, status_code=status_code)
    assert caught.value.faultstring == "Pool alias SEEDX not found"
    assert caught.value.status_code == status_code
    assert "Server.userException" in str(caught.value)


@pytest.mark.parametrize("body", [
    "not xml at all",
    "<html><body>Bad gateway</body></html>",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
    "<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body/></soapenv:Envelope>",
])
def test_unusable_bodies_are_protocol_errors(body: str) -> None:
    with pytest.raises(X3ProtocolError):
        parse_envelope(body)


def _parse(envelope: bytes) -> ET.Element:
    root = ET.fromstring(envelope)
    assert root.tag == f"{SOAPENV}Envelope"
    body = root.find(f"{SOAPENV}Body")
    assert body is not None
    return body[0]


def test_save_envelope_carries_call_context_and_escaped_payload() -> None:
    payload = '{"SIH0_1":{"BPRVCR":"a<b & c]]>d"}}'
    operation = _parse(build_envelope("save", CONTEXT, "YSIH", object_xml=payload))
    assert operation.tag == f"{WSS}save"
    assert [child.tag for child in operation] == ["callContext", "publicName", "objectXml"]
    context = operation.find("callContext")
    assert context is not None
    assert context.get(XSI_TYPE) == "wss:CAdxCallContext"
    assert {c.tag: c.text or "" for c in context} == {
        "codeLang": "ENG", "poolAlias": "SEED", "poolId": "",
        "requestConfig": "adxwss.optreturn=JSON&adxwss.beautify=false"}
    assert operation.findtext("publicName") == "YSIH"
    assert operation.findtext("objectXml") == payload  # survives escaping byte for byte


def test_keys_and_action_envelopes_follow_wsdl_parameter_order() -> None:
    keys = {"NUM": "FAC<1>&'"}
    action = _parse(build_envelope("actionObjectKeys", CONTEXT, "YSIH", action_code="VALID", object_keys=keys))
    assert [child.tag for child in action] == ["callContext", "publicName", "actionCode", "objectKeys"]
    assert action.findtext("actionCode") == "VALID"
    items = action.findall("objectKeys/item")
    assert [(i.findtext("key"), i.findtext("value")) for i in items] == [("NUM", "FAC<1>&'")]
    read = _parse(build_envelope("read", CONTEXT, "YSIH", object_keys={"NUM": "FAC-1"}))
    assert [child.tag for child in read] == ["callContext", "publicName", "objectKeys"]
    modify = _parse(build_envelope("modify", CONTEXT, "YSIH", object_keys={"NUM": "X"}, object_xml="{}"))
    assert [child.tag for child in modify] == ["callContext", "publicName", "objectKeys", "objectXml"]


def test_envelope_refuses_missing_parameters_and_bad_names() -> None:
    with pytest.raises(ValueError, match="objectXml"):
        build_envelope("save", CONTEXT, "YSIH")
    with pytest.raises(ValueError, match="publication name"):
        build_envelope("save", CONTEXT, "YSIH</publicName>", object_xml="{}")
    with pytest.raises(ValueError, match="unknown X3 SOAP operation"):
        build_envelope("dropTable", CONTEXT, "YSIH")


INVOICE = {
    "SIH0_1": {"BPCINV": "FR0001", "SIVTYP": "FAC", "INVDAT": date(2026, 11, 27), "CUR": "EUR",
               "BPRVCR": "eu:1001:invoice:3"},
    "SIH4_1": [
        {"ITMREF": "ESP-GRINDER-01", "QTY": 1, "GROPRI": Decimal("290.83"), "CCE": ["SALES", "LYON"]},
        {"ITMREF": "CUP-PORC-6", "QTY": 2, "GROPRI": Decimal("24.92")},
    ],
}


def test_encode_object_as_json_keeps_decimals_exact() -> None:
    decoded = json.loads(encode_object(INVOICE, as_json=True))
    assert decoded["SIH0_1"]["INVDAT"] == "20261127"
    assert decoded["SIH4_1"][0] == {"ITMREF": "ESP-GRINDER-01", "QTY": "1", "GROPRI": "290.83",
                                   "CCE": ["SALES", "LYON"]}


def test_encode_object_as_param_xml() -> None:
    root = ET.fromstring(encode_object(INVOICE, as_json=False))
    assert root.tag == "PARAM"
    group = root.find("GRP[@ID='SIH0_1']")
    assert group is not None
    assert group.findtext("FLD[@NAME='INVDAT']") == "20261127"
    table = root.find("TAB[@ID='SIH4_1']")
    assert table is not None
    assert table.get("SIZE") == "2"
    assert [line.get("NUM") for line in table] == ["1", "2"]
    assert table.findtext("LIN[@NUM='1']/FLD[@NAME='GROPRI']") == "290.83"
    assert [i.text for i in table.findall("LIN[@NUM='1']/LST[@NAME='CCE']/ITM")] == ["SALES", "LYON"]


@pytest.mark.parametrize("value", [1.5, True, datetime(2026, 1, 1), object()])
def test_encode_object_refuses_lossy_values(value: object) -> None:
    with pytest.raises(TypeError):
        encode_object({"GRP1": {"X": value}}, as_json=True)


def test_encode_object_refuses_injected_names() -> None:
    with pytest.raises(ValueError, match="group name"):
        encode_object({'GRP1"><FLD NAME="BPCINV': {"X": "1"}}, as_json=False)
    with pytest.raises(ValueError, match="field name"):
        encode_object({"GRP1": {"X></FLD><FLD NAME=": "1"}}, as_json=False)
