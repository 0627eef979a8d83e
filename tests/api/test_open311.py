"""Open311 GeoReport v2 on the demo city: services from the taxonomy, requests posted
form-encoded and as JSON through the same intake as POST /cases, the listing filters, the
spec's error shape, no personal data on any read, and a real Open311 client (georeport)
against a running server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from layers import case_actions, case_queries, rating
from layers.cases import Actor
from layers.models import Case, CaseEvent, Category
from tests.support.servers import serving

V2 = "/open311/v2"
P = (121.2277, 31.0322)  # inside a grid; E0501 (illegal vending) belongs to CGZF here
Q = (121.2300, 31.0300)
REQUEST_FIELDS = {
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
    "long", "media_url"}
PERSON = {"first_name": "Xiaoming", "last_name": "Wang", "email": "wang.xm@example.org",
          "phone": "13912345678", "device_id": "dev-77", "account_id": "acc-99"}


def _spec_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert body[0]["code"] == status and set(body[0]) == {"code", "description"}
    for w in words:
        assert w in body[0]["description"], (w, body[0]["description"])
    return str(body[0]["description"])


def _post(client: TestClient, *, json: bool = False, more: dict[str, Any] | None = None,
          **kw: Any) -> httpx.Response:
    body = {"service_code": "E0501", "lat": P[1], "long": P[0],
            "description": "无照经营游商 at the market gate", **PERSON} | kw | (more or {})
    body = {k: v for k, v in body.items() if v is not None}
    if json:
        return client.post(f"{V2}/requests.json", json=body)
    return client.post(f"{V2}/requests.json", data={k: str(v) for k, v in body.items()})


def _one(client: TestClient, ref: str) -> dict[str, Any]:
    r = client.get(f"{V2}/requests/{ref}.json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1
    item: dict[str, Any] = body[0]
    assert set(item) == REQUEST_FIELDS
    return item


def test_services_are_the_taxonomy(full_client: TestClient, full_session: Session) -> None:
    r = full_client.get(f"{V2}/services.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    services = r.json()
    cats = {c.code: c for c in full_session.scalars(
        select(Category).where(Category.valid_to.is_(None)))}
    assert len(services) == len(cats) == 89
    assert [s["service_code"] for s in services] == sorted(cats)
    for s in services:
        assert set(s) == {"service_code", "service_name", "description", "metadata", "type",
                          "keywords", "group"}
        c = cats[s["service_code"]]
        assert s["service_name"] == c.name and s["group"] == c.major_name
        assert s["metadata"] is False and s["type"] == "realtime"
        assert c.name_en in s["description"] and c.kind in s["description"]
        assert isinstance(s["keywords"], str) and c.name_en in s["keywords"]
    vending = next(s for s in services if s["service_code"] == "E0501")
    assert vending["service_name"] == cats["E0501"].name  # Chinese name

    d = full_client.get(f"{V2}/services/E0501.json")
    assert d.status_code == 200 and d.json() == {"service_code": "E0501", "attributes": []}
    _spec_error(full_client.get(f"{V2}/services/Z9999.json"), 404, "Z9999", "service_code")
    _spec_error(full_client.get(f"{V2}/services.xml"), 400, "JSON")
    _spec_error(full_client.get(f"{V2}/services/E0501.xml"), 400, "JSON")
    disc = full_client.get("/open311/discovery.json").json()
    assert disc["endpoints"][0]["url"].endswith("/open311/v2")
    assert disc["endpoints"][0]["formats"] == ["application/json"]


def test_post_form_encoded_creates_a_case(full_client: TestClient,
                                          full_session: Session) -> None:
    r = _post(full_client, api_key="anything", jurisdiction_id="songjiang",
              media_url="https://img.example.org/vendor.jpg", more={"attribute[SIZE]": "big"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1
    # the standard's three fields, and gridops' rating code for the submitter
    assert set(body[0]) == {"service_request_id", "service_notice", "account_id",
                            "rating_code"}
    assert body[0]["account_id"] is None and body[0]["service_notice"]
    ref = body[0]["service_request_id"]
    assert body[0]["rating_code"] == rating.rating_code(rating.rating_key(full_session), ref)

    # the same intake as POST /cases: resolved, kept with the case, channel open311
    case = full_session.scalar(select(Case).where(Case.ref == ref))
    assert case is not None and case.channel == "open311" and case.status == "collected"
    assert case.inside and case.owner_department == "CGZF" and len(case.grid_code or "") == 15
    assert case.reporter_name == "Xiaoming Wang" and case.reporter_phone == "13912345678"
    assert case.reporter_email == "wang.xm@example.org" and case.reporter_device == "dev-77"
    assert case.resolution["crs"]["key"] == "EPSG:4326"
    assert case.resolution["owner"]["decided_by"] == "category"
    assert case.resolution["open311"]["attributes"] == {"SIZE": "big"}
    ev = full_session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
    assert [(e.action, e.actor, e.role) for e in ev] == [("report", "open311", "public")]

    item = _one(full_client, ref)
    assert item["service_request_id"] == ref and item["status"] == "open"
    assert item["service_code"] == "E0501" and item["service_name"]
    assert item["agency_responsible"] == "松江区城市管理行政执法局"
    assert item["lat"] == pytest.approx(P[1], abs=1e-9)
    assert item["long"] == pytest.approx(P[0], abs=1e-9)
    assert item["media_url"] == "https://img.example.org/vendor.jpg"
    assert item["description"] == "无照经营游商 at the market gate"
    assert item["expected_datetime"] is None  # no deadline before dispatch
    requested = datetime.fromisoformat(item["requested_datetime"])
    assert requested.tzinfo is not None
    assert abs(requested - datetime.now(UTC)) < timedelta(minutes=5)
    assert item["address"]  # the grid chain's names
    listed = full_client.get(f"{V2}/requests.json").json()
    assert ref in [x["service_request_id"] for x in listed]


def test_post_json_creates_a_case(full_client: TestClient, full_session: Session) -> None:
    r = _post(full_client, json=True, service_code="E0101", lat=Q[1], long=Q[0],
              address_string="荣乐东路 near the bus stop", first_name=None, last_name=None,
              attribute={"WHERE": "kerb"})
    assert r.status_code == 201, r.text
    ref = r.json()[0]["service_request_id"]
    item = _one(full_client, ref)
    assert item["status"] == "open" and item["service_code"] == "E0101"
    assert item["address"] == "荣乐东路 near the bus stop"
    assert item["lat"] == pytest.approx(Q[1], abs=1e-9)
    assert item["long"] == pytest.approx(Q[0], abs=1e-9)
    assert item["agency_responsible"]
    case = full_session.scalar(select(Case).where(Case.ref == ref))
    assert case is not None and case.reporter_name is None
    assert case.resolution["open311"]["attributes"] == {"WHERE": "kerb"}


def test_filters(full_client: TestClient, full_session: Session) -> None:
    a = _post(full_client).json()[0]["service_request_id"]
    b = _post(full_client, service_code="E0301", lat=Q[1], long=Q[0]).json()[0][
        "service_request_id"]
    # the centre rejects b: it is closed for Open311, with the reason as its public note
    case = case_queries.get(full_session, b)
    case_actions.act(full_session, case, "reject", Actor("c", "centre"), version=None,
                     note="no noise found on site; ring 13800001111 for details")

    def refs(**params: str) -> list[str]:
        r = full_client.get(f"{V2}/requests.json", params=params)
        assert r.status_code == 200, r.text
        return [x["service_request_id"] for x in r.json()]

    assert a in refs(status="open") and b not in refs(status="open")
    assert b in refs(status="closed") and a not in refs(status="closed")
    assert {a, b} <= set(refs(status="open,closed"))
    closed = _one(full_client, b)
    assert closed["status"] == "closed"
    assert closed["status_notes"] == "no noise found on site; ring [phone removed] for details"
    assert refs(service_code="E0301", status="closed")[:1] == [b]
    assert a not in refs(service_code="E0301")
    assert {a, b} <= set(refs(service_code="E0501,E0301"))
    # service_request_id overrides every other filter
    assert sorted(refs(service_request_id=f"{a},{b}", status="open")) == sorted([a, b])
    now = datetime.now(UTC)
    assert a in refs(start_date=(now - timedelta(hours=1)).isoformat())
    assert a in refs(start_date=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     end_date=(now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert a not in refs(start_date=(now + timedelta(hours=1)).isoformat())
    assert a not in refs(end_date=(now - timedelta(hours=1)).isoformat())
    # an unescaped '+' of an offset arrives as a space: still read as +08:00
    r = full_client.get(f"{V2}/requests.json?start_date=2020-01-01T00:00:00+08:00")
    assert r.status_code == 200
    # newest first, paged
    first = refs(page_size="1")
    assert first == [b]
    assert refs(page_size="1", page="2") == [a]

    _spec_error(full_client.get(f"{V2}/requests.json", params={"start_date": "yesterday"}),
                400, "start_date", "W3C")
    _spec_error(full_client.get(f"{V2}/requests.json",
                                params={"end_date": "2026-01-01T00:00:00"}),
                400, "end_date", "time zone")
    _spec_error(full_client.get(f"{V2}/requests.json",
                                params={"end_date": "0001-01-01T00:00:00Z"}),
                400, "end_date", "out of range")
    _spec_error(full_client.get(f"{V2}/requests.json",
                                params={"start_date": "2026-02-01T00:00:00Z",
                                        "end_date": "2026-01-01T00:00:00Z"}),
                400, "start_date")
    _spec_error(full_client.get(f"{V2}/requests.json", params={"status": "pending"}),
                400, "status", "pending")
    _spec_error(full_client.get(f"{V2}/requests.json", params={"page_size": "5000"}),
                400, "page_size")
    _spec_error(full_client.get(f"{V2}/requests.xml"), 400, "JSON")


def test_errors_in_the_spec_shape(full_client: TestClient, full_session: Session) -> None:
    n = full_session.scalar(text('SELECT count(*) FROM "case"'))
    _spec_error(_post(full_client, service_code="Z9999"), 400, "service_code", "Z9999")
    _spec_error(_post(full_client, service_code=None), 400, "service_code", "missing")
    _spec_error(_post(full_client, lat=None, long=None), 400, "lat", "long")
    d = _spec_error(_post(full_client, lat=None, long=None, address_string="荣乐东路 1 号"),
                    400, "address_string")
    assert "lat" in d
    _spec_error(_post(full_client, lat="abc"), 400, "lat", "'abc'")
    _spec_error(_post(full_client, json=True, lat=95), 400, "lat", "95")
    _spec_error(_post(full_client, long=-181), 400, "long")
    _spec_error(_post(full_client, long=None), 400, "long", "missing")
    _spec_error(_post(full_client, description="x" * 4001), 400, "description", "4000")
    _spec_error(_post(full_client, media_url="ftp://x/y.jpg"), 400, "media_url")
    _spec_error(full_client.post(f"{V2}/requests.json", content=b"[1, 2]",
                                 headers={"content-type": "application/json"}), 400, "body")
    _spec_error(full_client.post(f"{V2}/requests.json", files={"media": b"png"},
                                 data={"service_code": "E0501"}), 415, "content-type")
    _spec_error(full_client.post(f"{V2}/requests.xml", data={"service_code": "E0501"}),
                400, "JSON")
    assert full_session.scalar(text('SELECT count(*) FROM "case"')) == n  # nothing stored
    _spec_error(full_client.get(f"{V2}/requests/SJ2000-NOPE.json"), 404, "SJ2000-NOPE")


def test_no_personal_data_on_any_read(full_client: TestClient) -> None:
    ref = _post(full_client, description="摊贩 again, call me on 13912345678 or "
                                          "wang.xm@example.org").json()[0]["service_request_id"]
    merged = _post(full_client, long=P[0] + 1e-4)  # the same problem, 10 m away
    assert merged.status_code == 201
    assert ref in merged.json()[0]["service_notice"]
    dup = _one(full_client, merged.json()[0]["service_request_id"])
    assert dup["status"] == "closed" and ref in (dup["status_notes"] or "")
    pages = [full_client.get(f"{V2}/requests.json").text,
             full_client.get(f"{V2}/requests/{ref}.json").text,
             full_client.get(f"{V2}/requests.json", params={"service_request_id": ref}).text]
    assert "[phone removed]" in pages[1] and "[email removed]" in pages[1]
    for page in pages:
        for value in PERSON.values():
            assert value not in page, value
        for item in orjson.loads(page):
            assert set(item) == REQUEST_FIELDS  # no reporter, email, phone, account...


def test_contact_is_kept_for_the_centre_only(full_client: TestClient,
                                             full_session: Session) -> None:
    """first_name, last_name, phone, email and device_id are stored with the case; only the
    centre sees them, on the one case; account_id is ignored (no accounts here)."""
    from layers.auth import create_token

    ref = _post(full_client, json=True).json()[0]["service_request_id"]
    case = full_session.scalar(select(Case).where(Case.ref == ref))
    assert case is not None
    assert (case.reporter_name, case.reporter_phone, case.reporter_email,
            case.reporter_device) == ("Xiaoming Wang", "13912345678", "wang.xm@example.org",
                                      "dev-77")
    assert "acc-99" not in orjson.dumps(case.resolution).decode()

    def bearer(role: str, dept: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {create_token(full_session, role, role, dept)[1]}"}

    centre = full_client.get(f"/cases/{ref}", headers=bearer("centre")).json()
    assert centre["reporter"] == {"name": "Xiaoming Wang", "phone": "13912345678",
                                  "email": "wang.xm@example.org", "device_id": "dev-77"}
    for who in (bearer("patrol"), bearer("department", "CGZF"), bearer("planner")):
        one = full_client.get(f"/cases/{ref}", headers=who).text
        listing = full_client.get("/cases", headers=who).text
        for value in ("13912345678", "wang.xm@example.org", "dev-77", "Xiaoming"):
            assert value not in one and value not in listing, (who, value)
    listing = full_client.get("/cases", headers=bearer("centre")).text
    assert "wang.xm@example.org" not in listing and "dev-77" not in listing
    public = full_client.get(f"/public/cases/{ref}").text
    assert "wang.xm@example.org" not in public and "dev-77" not in public
    _spec_error(_post(full_client, email="not-an-address"), 400, "email")
    _spec_error(_post(full_client, device_id="d" * 101), 400, "device_id")


# ------------------------------------------------------------------ a real Open311 client


def test_georeport_client_against_a_running_server(full_engine: Engine) -> None:
    """The georeport package (a GeoReport v2 client, reads only) against the real server;
    the one request it reads is posted over HTTP, committed, and deleted afterwards."""
    georeport = pytest.importorskip("georeport")
    ref = None
    try:
        with serving(full_engine.url.render_as_string(hide_password=False)) as url:
            r = httpx.post(f"{url}{V2}/requests.json", timeout=30, data={
                "service_code": "E0203", "lat": "31.0311", "long": "121.2255",
                "description": "leaflets handed out on the road", **PERSON})
            assert r.status_code == 201, r.text
            ref = r.json()[0]["service_request_id"]

            client = georeport.GeoReport(url + V2)
            services = client.get_service_list()
            assert len(services) == 89 and {"service_code", "service_name", "group"} <= set(
                services[0])
            assert client.get_service_definition("E0203")["service_code"] == "E0203"
            found = client.get_service_requests(service_code="E0203", status="open")
            assert ref in [x["service_request_id"] for x in found]
            one = client.get_service_request(ref)
            assert one["service_request_id"] == ref and one["status"] == "open"
            assert one["lat"] == pytest.approx(31.0311) and one["long"] == pytest.approx(121.2255)
            assert one["agency_responsible"] == "松江区城市管理行政执法局"
            assert PERSON["phone"] not in str(found) + str(one)
            with pytest.raises(Exception, match="404"):
                client.get_service_request("SJ2000-NOPE")
    finally:
        if ref is not None:
            with full_engine.begin() as conn:
                conn.execute(text("DELETE FROM case_event WHERE case_id IN "
                                  '(SELECT id FROM "case" WHERE ref = :r)'), {"r": ref})
                conn.execute(text('DELETE FROM "case" WHERE ref = :r'), {"r": ref})
