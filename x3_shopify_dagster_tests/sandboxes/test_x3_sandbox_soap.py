"""Classic SOAP on the X3 sandbox over real HTTP: every operation's round trip, payload formats, protocol errors."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from x3_shopify_dagster.sandboxes.x3 import X3Sandbox, X3SandboxConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from x3_shopify_dagster_tests.fixtures.x3_sandbox import X3RawClient

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.x3_sandbox"]

SOAP_PATH = "/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"


def unique_reference() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("json_mode", [True, False], ids=["json", "xml"])
def test_save_read_query_modify_delete_round_trip(x3_raw: X3RawClient, json_mode: bool) -> None:
    reference = unique_reference()
    payload = x3_raw.invoice_payload(reference=reference)

    saved = x3_raw.soap("save", "YSIH", payload=payload, json_mode=json_mode)
    assert (saved.status, saved.errors) == (1, [])
    number = saved.field("NUM")
    assert number.startswith("INV2611-")
    assert saved.messages == [(1, f"Invoice {number} created")]
    assert (saved.field("STA"), saved.field("AMTATI")) == ("1", "120.00")
    assert saved.result["SIH4_1"][0]["ITMREF"] == "ESP-GRINDER-01"

    read = x3_raw.soap("read", "YSIH", keys={"NUM": number}, json_mode=json_mode)
    assert (read.status, read.field("BPRVCR"), read.field("INVDAT")) == (1, reference, "20261127")

    found = x3_raw.soap("query", "YSIH", keys={"BPRVCR": reference}, list_size=5, json_mode=json_mode)
    assert [row["NUM"] for row in found.result["LIST"]] == [number]

    modified = x3_raw.soap("modify", "YSIH", keys={"NUM": number}, json_mode=json_mode,
                           payload={"SIH4_1": [{"ITMREF": "TAMPER-58", "QTY": "3", "GROPRI": "10.00",
                                                "VACITM": "FRN"}]})
    assert (modified.status, modified.field("AMTNOT"), modified.field("AMTATI")) == (1, "30.00", "36.00")
    assert modified.field("BPRVCR") == reference  # header untouched by a lines-only modify

    deleted = x3_raw.soap("delete", "YSIH", keys={"NUM": number}, json_mode=json_mode)
    assert (deleted.status, deleted.messages) == (1, [(1, f"Invoice {number} deleted")])
    gone = x3_raw.soap("read", "YSIH", keys={"NUM": number}, json_mode=json_mode)
    assert gone.status == 0
    assert gone.errors == [f"NUM: invoice '{number}' does not exist"]


def test_json_results_keep_exact_decimal_strings(x3_raw: X3RawClient) -> None:
    saved = x3_raw.save_invoice(lines=[{"ITMREF": "CUP-PORC-6", "QTY": "3", "GROPRI": "29.90", "VACITM": "FRN"}])
    assert saved.result["SIH4_3"] == {"AMTNOT": "89.70", "AMTTAX": "17.94", "AMTATI": "107.64"}


def test_action_object_and_action_object_keys_post(x3_raw: X3RawClient) -> None:
    first = x3_raw.save_invoice().field("NUM")
    second = x3_raw.save_invoice().field("NUM")

    by_payload = x3_raw.soap("actionObject", "YSIH", action_code="VALID", payload={"SIH0_1": {"NUM": first}})
    by_keys = x3_raw.soap("actionObjectKeys", "YSIH", action_code="VALID", keys={"NUM": second}, json_mode=False)

    assert (by_payload.status, by_payload.field("STA")) == (1, "3")
    assert (by_keys.status, by_keys.field("STA")) == (1, "3")
    unknown_action = x3_raw.soap("actionObject", "YSIH", action_code="CANCEL", payload={"SIH0_1": {"NUM": first}})
    assert unknown_action.errors == ["actionCode: action 'CANCEL' does not exist on YSIH"]


def test_run_subprogram_posts_an_invoice(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    number = x3_raw.save_invoice().field("NUM")

    reply = x3_raw.soap("run", "YSIHVALID", payload={"GRP1": {"NUM": number}})

    assert (reply.status, reply.field("STA")) == (1, "3")
    assert reply.field("GACCNUM") == x3_sandbox.state.invoice(number).gl_entry
    again = x3_raw.soap("run", "YSIHVALID", payload={"GRP1": {"NUM": number}})
    assert again.status == 0
    assert "already posted" in again.errors[0]


def test_get_description_lists_the_publication_fields(x3_raw: X3RawClient) -> None:
    reply = x3_raw.soap("getDescription", "YSDH")
    assert reply.status == 1
    assert {"BPCORD", "SHIDAT", "STOFCY", "SIHNUM", "BPRVCR", "YTRACKING"} <= set(reply.result["SDH0_1"])
    assert set(reply.result["SDH1_4"]) == {"ITMREF", "QTY"}


def test_results_carry_technical_infos_and_the_calls_log_counts_saves(fresh_x3_raw: X3RawClient,
                                                                      fresh_x3_sandbox: X3Sandbox) -> None:
    reply = fresh_x3_raw.save_invoice()
    fresh_x3_raw.save_invoice(customer="NOPE")

    assert reply.technical["busy"] == "false"
    assert 0 <= int(reply.technical["poolEntryIdx"]) < fresh_x3_sandbox.config.pool_size
    assert fresh_x3_sandbox.calls_log == [("soap", "save/YSIH", 1), ("soap", "save/YSIH", 0)]
    assert fresh_x3_sandbox.count_calls("soap", "save/", status=1) == 1


@pytest.mark.parametrize(("operation", "public_name", "fragment"), [
    ("save", "YNOPE", "Web service 'YNOPE' is not published"),
    ("run", "YSIH", "object publication"),
    ("save", "YSIHVALID", "only answers 'run'"),
])
def test_unknown_publications_and_wrong_operations_are_status_0(x3_raw: X3RawClient, operation: str,
                                                                public_name: str, fragment: str) -> None:
    reply = x3_raw.soap(operation, public_name, payload={"GRP1": {"NUM": "X"}})
    assert reply.status == 0
    assert fragment in reply.errors[0]


def test_field_and_table_names_are_checked(x3_raw: X3RawClient) -> None:
    payload = x3_raw.invoice_payload()
    payload["SIH0_1"]["BPCNAM"] = "typo"
    payload["SIH9_9"] = [{"ITMREF": "TAMPER-58"}]
    payload["SIH4_1"][0]["PRICE"] = "1"

    reply = x3_raw.soap("save", "YSIH", payload=payload)

    assert reply.status == 0
    assert set(reply.errors) == {"BPCNAM: field is not in the publication", "PRICE (line 1): field is not in the "
                                 "publication", "SIH9_9: unknown table (lines go in SIH4_1)"}


def test_malformed_object_payloads_are_status_0(x3_raw: X3RawClient) -> None:
    broken_json = x3_raw.soap("save", "YSIH", payload='{"SIH0_1": {"BPCINV": ')
    broken_xml = x3_raw.soap("save", "YSIH", payload="<PARAM><GRP ID='SIH0_1'>", json_mode=False)
    with_dtd = x3_raw.soap("save", "YSIH", payload='<!DOCTYPE x [<!ENTITY a "b">]><PARAM/>', json_mode=False)

    assert "not valid JSON" in broken_json.errors[0]
    assert "not well-formed XML" in broken_xml.errors[0]
    assert "DTD" in with_dtd.errors[0]


def test_envelope_errors_are_client_faults(x3_raw: X3RawClient) -> None:
    for body in (b"not xml", b"<a/>", b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/">'
                 b'<e:Body><wss:hack xmlns:wss="http://www.adonix.com/WSS"/></e:Body></e:Envelope>'):
        response = x3_raw.http.post(SOAP_PATH, content=body)
        assert response.status_code == 500
        fault = ET.fromstring(response.content).find(".//faultcode")
        assert fault is not None
        assert fault.text == "soapenv:Client"


def test_an_unknown_pool_alias_is_a_server_fault(x3_raw: X3RawClient) -> None:
    reply = x3_raw.soap("read", "YSIH", keys={"NUM": "X"}, pool_alias="seed")
    assert reply.http_status == 500
    assert reply.fault == "Pool 'seed' does not exist (poolAlias is case-sensitive)"


def test_the_wsdl_describes_the_operations_and_this_server(x3_raw: X3RawClient, x3_sandbox: X3Sandbox) -> None:
    response = x3_raw.http.get("/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC?wsdl")
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    wsdl = "{http://schemas.xmlsoap.org/wsdl/}"
    operations = {op.get("name") for op in root.iter(f"{wsdl}operation")}
    assert {"save", "modify", "delete", "read", "query", "actionObject", "run", "getDescription"} <= operations
    address = root.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None
    assert address.get("location") == x3_sandbox.soap_url


def test_each_folder_has_its_own_data_and_pool(x3_raw_factory: Callable[..., X3RawClient]) -> None:
    with X3Sandbox(X3SandboxConfig(folder="SEED", extra_folders=("DEMO",))) as sandbox:
        client = x3_raw_factory(sandbox)
        in_demo = client.soap("save", "YSIH", payload=client.invoice_payload(), pool_alias="DEMO")
        assert in_demo.status == 1
        assert [i.number for i in sandbox.state_for("DEMO").invoices()] == [in_demo.field("NUM")]
        assert sandbox.state.invoices() == []
        rows = json.loads(client.api1("SINVOICEV", "SINVOICEV.$query", folder="DEMO").content,
                          parse_float=Decimal)["$resources"]
        assert [row["NUM"] for row in rows] == [in_demo.field("NUM")]
        assert client.api1("SINVOICEV", "SINVOICEV.$query").json()["$resources"] == []
        assert sandbox.pool_stats("DEMO").served == 1
        assert sandbox.pool_stats().served == 0
