"""The RPC/encoded WSDL of `CAdxWebServiceXmlCC`, limited to the operations the sandbox implements."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

# operation → its input parts (name, type), in WSDL parameter order
OPERATION_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "run": (("publicName", "xsd:string"), ("inputXml", "xsd:string")),
    "save": (("publicName", "xsd:string"), ("objectXml", "xsd:string")),
    "delete": (("publicName", "xsd:string"), ("objectKeys", "wss:ArrayOfCAdxParamKeyValue")),
    "read": (("publicName", "xsd:string"), ("objectKeys", "wss:ArrayOfCAdxParamKeyValue")),
    "query": (("publicName", "xsd:string"), ("objectKeys", "wss:ArrayOfCAdxParamKeyValue"),
              ("listSize", "xsd:int")),
    "getDescription": (("publicName", "xsd:string"),),
    "modify": (("publicName", "xsd:string"), ("objectKeys", "wss:ArrayOfCAdxParamKeyValue"),
               ("objectXml", "xsd:string")),
    "actionObject": (("publicName", "xsd:string"), ("actionCode", "xsd:string"), ("objectXml", "xsd:string")),
    "actionObjectKeys": (("publicName", "xsd:string"), ("actionCode", "xsd:string"),
                         ("objectKeys", "wss:ArrayOfCAdxParamKeyValue")),
}

_TYPES = """
  <wsdl:types>
    <xsd:schema targetNamespace="http://www.adonix.com/WSS">
      <xsd:import namespace="http://schemas.xmlsoap.org/soap/encoding/"/>
      <xsd:complexType name="CAdxCallContext"><xsd:sequence>
        <xsd:element name="codeLang" nillable="true" type="xsd:string"/>
        <xsd:element name="codeUser" nillable="true" type="xsd:string"/>
        <xsd:element name="password" nillable="true" type="xsd:string"/>
        <xsd:element name="poolAlias" nillable="true" type="xsd:string"/>
        <xsd:element name="poolId" nillable="true" type="xsd:string"/>
        <xsd:element name="requestConfig" nillable="true" type="xsd:string"/>
      </xsd:sequence></xsd:complexType>
      <xsd:complexType name="CAdxMessage"><xsd:sequence>
        <xsd:element name="message" nillable="true" type="xsd:string"/>
        <xsd:element name="type" nillable="true" type="xsd:string"/>
      </xsd:sequence></xsd:complexType>
      <xsd:complexType name="ArrayOfCAdxMessage"><xsd:complexContent><xsd:restriction base="soapenc:Array">
        <xsd:attribute ref="soapenc:arrayType" wsdl:arrayType="wss:CAdxMessage[]"/>
      </xsd:restriction></xsd:complexContent></xsd:complexType>
      <xsd:complexType name="CAdxTechnicalInfos"><xsd:sequence>
        <xsd:element name="busy" type="xsd:boolean"/>
        <xsd:element name="poolEntryIdx" type="xsd:int"/>
        <xsd:element name="poolExecDuration" type="xsd:double"/>
        <xsd:element name="poolRequestDuration" type="xsd:double"/>
        <xsd:element name="poolWaitDuration" type="xsd:double"/>
        <xsd:element name="totalDuration" type="xsd:double"/>
      </xsd:sequence></xsd:complexType>
      <xsd:complexType name="CAdxResultXml"><xsd:sequence>
        <xsd:element name="messages" nillable="true" type="wss:ArrayOfCAdxMessage"/>
        <xsd:element name="resultXml" nillable="true" type="xsd:string"/>
        <xsd:element name="status" type="xsd:int"/>
        <xsd:element name="technicalInfos" nillable="true" type="wss:CAdxTechnicalInfos"/>
      </xsd:sequence></xsd:complexType>
      <xsd:complexType name="CAdxParamKeyValue"><xsd:sequence>
        <xsd:element name="key" nillable="true" type="xsd:string"/>
        <xsd:element name="value" nillable="true" type="xsd:string"/>
      </xsd:sequence></xsd:complexType>
      <xsd:complexType name="ArrayOfCAdxParamKeyValue"><xsd:complexContent><xsd:restriction base="soapenc:Array">
        <xsd:attribute ref="soapenc:arrayType" wsdl:arrayType="wss:CAdxParamKeyValue[]"/>
      </xsd:restriction></xsd:complexContent></xsd:complexType>
    </xsd:schema>
  </wsdl:types>"""

_BODY = ('<wsdlsoap:body use="encoded" namespace="http://www.adonix.com/WSS" '
         'encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"/>')


def render_wsdl(soap_address: str) -> str:
    messages, port_operations, binding_operations = [], [], []
    for operation, parts in OPERATION_PARTS.items():
        inputs = "".join(f'<wsdl:part name="{name}" type="{kind}"/>'
                         for name, kind in (("callContext", "wss:CAdxCallContext"), *parts))
        messages.append(f'  <wsdl:message name="{operation}Request">{inputs}</wsdl:message>\n'
                        f'  <wsdl:message name="{operation}Response">'
                        f'<wsdl:part name="{operation}Return" type="wss:CAdxResultXml"/></wsdl:message>')
        order = " ".join(("callContext", *(name for name, _ in parts)))
        port_operations.append(
            f'    <wsdl:operation name="{operation}" parameterOrder="{order}">'
            f'<wsdl:input name="{operation}Request" message="wss:{operation}Request"/>'
            f'<wsdl:output name="{operation}Response" message="wss:{operation}Response"/></wsdl:operation>')
        binding_operations.append(
            f'    <wsdl:operation name="{operation}"><wsdlsoap:operation soapAction=""/>'
            f'<wsdl:input name="{operation}Request">{_BODY}</wsdl:input>'
            f'<wsdl:output name="{operation}Response">{_BODY}</wsdl:output></wsdl:operation>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<wsdl:definitions targetNamespace="http://www.adonix.com/WSS" xmlns:wss="http://www.adonix.com/WSS"'
        ' xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:wsdlsoap="http://schemas.xmlsoap.org/wsdl/soap/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/">'
        f"{_TYPES}\n" + "\n".join(messages) + "\n"
        '  <wsdl:portType name="CAdxWebServiceXmlCC">\n' + "\n".join(port_operations) + "\n  </wsdl:portType>\n"
        '  <wsdl:binding name="CAdxWebServiceXmlCCSoapBinding" type="wss:CAdxWebServiceXmlCC">'
        '<wsdlsoap:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>\n'
        + "\n".join(binding_operations) + "\n  </wsdl:binding>\n"
        '  <wsdl:service name="CAdxWebServiceXmlCCService">'
        '<wsdl:port binding="wss:CAdxWebServiceXmlCCSoapBinding" name="CAdxWebServiceXmlCC">'
        f"<wsdlsoap:address location={quoteattr(soap_address)}/></wsdl:port></wsdl:service>\n"
        "</wsdl:definitions>\n"
    )
