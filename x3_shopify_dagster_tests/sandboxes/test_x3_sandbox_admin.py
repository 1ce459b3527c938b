"""The X3 sandbox's demo administration routes: what an X3 user would do in the X3 screens."""

from __future__ import annotations

import httpx

pytest_plugins = ["x3_shopify_dagster_tests.fixtures.x3_sandbox"]


def test_admin_creates_a_customer_and_deactivates_an_account(fresh_x3_sandbox):
    sb = fresh_x3_sandbox
    auth = httpx.BasicAuth(*sb.basic_credentials)
    created = httpx.post(f"{sb.base_url}/_sandbox/{sb.folder}/customers", auth=auth,
                         json={"code": "FR0200", "name": "Nina Novak", "email": "new.buyer@fresh-start.example"})
    assert created.status_code == 201
    found = httpx.get(
        f"{sb.base_url}/api1/x3/erp/{sb.folder}/BPADDRESS",
        params={"representation": "ZBPADDRESS.$query", "where": "(WEB eq 'new.buyer@fresh-start.example')"},
        auth=auth,
    ).json()["$resources"]
    assert [row["BPANUM"] for row in found] == ["FR0200"]
    again = httpx.post(f"{sb.base_url}/_sandbox/{sb.folder}/customers", auth=auth,
                       json={"code": "FR0200", "name": "Twice", "email": "x@example.com"})
    assert again.status_code == 400

    off = httpx.post(f"{sb.base_url}/_sandbox/{sb.folder}/accounts", auth=auth,
                     json={"chart": "CHART1", "account": "708500", "active": False})
    assert off.json() == {"account": "708500", "active": False}
    assert httpx.post(f"{sb.base_url}/_sandbox/{sb.folder}/customers",
                      json={"code": "X", "name": "Y", "email": "z@example.com"}).status_code == 401
