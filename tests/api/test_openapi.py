"""The OpenAPI document says what the server sends: every operation documents its success
with a schema (or a non-JSON media type), every 422 is ValidationErrorOut and error answers
are JSON; and the bodies of real requests on the demo city validate against the models their
routes declare, with no key a model leaves out (unless it allows extra keys)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.schemas.common import ErrorOut, ValidationErrorOut
from api.schemas.grids import UnitCollection, UnitDetail, UnitHistory
from api.schemas.health import Health
from api.schemas.hotspots import ChronicCollection, ChronicOut, HotspotCollection
from api.schemas.kpis import KpiOut
from api.schemas.layers import (
    ImportReportOut,
    LayerFeature,
    LayerFeatureCollection,
    LayerInfo,
    LayerItems,
    LayerRowOut,
    LayerVersions,
    RetiredOut,
)
from api.schemas.maps import OpenCases, WallCounts
from api.schemas.resolve import BatchFeatureCollection, BatchOut, ResolveOut
from api.schemas.responsibility import AlignmentOut, AlignmentRanking, LookupOut, OwnerOut
from layers.settings import Settings

GRID = "310117001001001"
P = {"lon": 121.2277, "lat": 31.0322}
OUTSIDE = {"lon": 120.0, "lat": 30.0}
# the routers whose answers these tests check (cases and open311 have their own tests)
MINE = ("/grids", "/resolve", "/health", "/layers", "/owner", "/lookup", "/alignment",
        "/kpis", "/hotspots", "/map/wall/counts.json", "/map/wall/open.json")
JSON_MEDIA = ("application/json", "application/geo+json")


@pytest.fixture(scope="module")
def app() -> Any:
    """An app that never reaches its database (the document needs none)."""
    from api.app import create_app

    return create_app(Settings(database_url="postgresql+psycopg2://nobody@127.0.0.1:9/none"),
                      listen=False)


@pytest.fixture(scope="module")
def doc(app: Any) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi()
    return schema


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def _refs(schema: Any) -> set[str]:
    """The component names a schema refers to, at any depth."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[-1]} if "$ref" in schema else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


def _component(doc: dict[str, Any], model: type[BaseModel]) -> str:
    """The component of a model (qualified by its module when two models share a name)."""
    names = [n for n in doc["components"]["schemas"]
             if n == model.__name__ or n == f"{model.__module__.replace('.', '__')}__"
                                                f"{model.__name__}"]
    assert len(names) == 1, (model, names)
    return names[0]


# ---------------------------------------------------------------- the document


def test_every_operation_documents_its_success(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        ok = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert ok, f"{method} {path}: no 2xx answer"
        for status, answer in ok.items():
            if status == "204":  # No Content (OPTIONS: the Allow header)
                assert not answer.get("content"), (method, path)
                continue
            content = answer.get("content") or {}
            assert content, f"{method} {path} {status}: no media type"
            for media, entry in content.items():
                if media in JSON_MEDIA:
                    schema = entry.get("schema") or {}
                    assert _refs(schema), f"{method} {path} {status} {media}: {schema}"
                else:  # CSV, HTML, images: a documented media type of their own
                    assert "/" in media, (method, path, media)


def test_every_422_is_the_validation_error_the_server_sends(doc: dict[str, Any]) -> None:
    seen = 0
    for path, method, op in _operations(doc):
        answer = op["responses"].get("422")
        if answer is None:
            continue
        seen += 1
        assert answer["content"] == {"application/json": {"schema": {
            "$ref": "#/components/schemas/ValidationErrorOut"}}}, (method, path)
    assert seen > 30
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ValidationErrorOut"]["required"]) == {"code", "detail"}
    assert _refs(schemas["ValidationErrorOut"]) == {"FieldError"}


def test_error_answers_are_json_and_declared(app: Any, doc: dict[str, Any]) -> None:
    error_out = _component(doc, ErrorOut)
    for path, method, op in _operations(doc):
        for status, answer in op["responses"].items():
            if status.isdigit() and int(status) >= 400:
                assert list(answer["content"]) == ["application/json"], (method, path, status)
                if path.startswith(MINE) and status != "422":
                    assert _refs(answer["content"]["application/json"]["schema"]) & {
                        error_out}, (method, path, status)
    # what the dependencies can answer is declared on every route that has them
    needs = {"get_session": "503", "get_write_session": "503", "get_indexes": "503",
             "get_active_index": "503", "get_reports": "503", "get_owners": "503",
             "get_generation": "404", "current_user": "401", "get_bbox": "422"}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(MINE):
            continue

        def calls(dep: Any) -> Iterator[str]:
            for d in dep.dependencies:
                yield getattr(d.call, "__name__", "")
                yield from calls(d)

        declared = {str(s) for s in route.responses}
        for name in set(calls(route.dependant)):
            if name in needs:
                assert needs[name] in declared, (route.path, name, declared)
        if route.path.startswith("/layers/") or "{" in route.path:
            assert "404" in declared, route.path


def test_alternative_media_types_are_documented(doc: dict[str, Any]) -> None:
    def content(path: str, method: str = "get", status: str = "200") -> dict[str, Any]:
        c: dict[str, Any] = doc["paths"][path][method]["responses"][status]["content"]
        return c

    assert set(content("/kpis")) == {"application/json", "text/csv"}
    assert set(content("/resolve/batch", "post")) == {"application/json",
                                                      "application/geo+json", "text/csv"}
    assert set(content("/hotspots/chronic")) == {"application/json", "application/geo+json"}
    files = {"text/csv", "application/geopackage+sqlite3", "application/zip",
             "application/flatgeobuf"}
    assert set(content("/layers/{name}")) == {"application/json", "application/geo+json",
                                              *files}
    assert set(content("/grids")) == {"application/geo+json", *files}
    assert content("/grids")["application/geo+json"]["schema"]["anyOf"][0] == {
        "$ref": "#/components/schemas/UnitCollection"}  # a page; f=geojson: the whole file
    assert "201" in doc["paths"]["/layers/{name}"]["post"]["responses"]
    schemas = doc["components"]["schemas"]
    for name in ("BatchFeatureCollection", "ChronicCollection", "LayerFeatureCollection"):
        assert name in schemas
    for name in _refs(doc):
        assert name in schemas, name


# ---------------------------------------------------------------- real answers


def _covered(value: Any, body: Any, where: str) -> None:
    """Every key of the body is a field of the validated model (or the model allows
    extra keys), at any depth."""
    if isinstance(value, BaseModel):
        assert isinstance(body, dict), where
        fields = {f.alias or n: n for n, f in type(value).model_fields.items()}
        for k, v in body.items():
            if k in fields:
                _covered(getattr(value, fields[k]), v, f"{where}.{k}")
            else:
                assert type(value).model_config.get("extra") == "allow", (
                    f"{where}: {type(value).__name__} does not declare {k!r}")
    elif isinstance(value, list | tuple) and isinstance(body, list):
        for i, (a, b) in enumerate(zip(value, body, strict=True)):
            _covered(a, b, f"{where}[{i}]")
    elif isinstance(value, dict) and isinstance(body, dict):
        for k, v in body.items():
            _covered(value.get(k), v, f"{where}.{k}")


class Checker:
    """Requests whose answers are checked against the document and the declared model."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.checked: set[tuple[str, str, str]] = set()

    def __call__(self, client: TestClient, method: str, path: str, status: int,
                 model: Any, url: str | None = None, *, ref: str | None = None,
                 **kw: Any) -> Any:
        r = client.request(method, url or path, **kw)
        assert r.status_code == status, (method, url or path, r.status_code, r.text[:500])
        media = r.headers["content-type"].split(";")[0]
        declared = self.doc["paths"][path][method.lower()]["responses"][str(status)]
        assert media in declared["content"], (method, path, status, media)
        self.checked.add((method, path, str(status)))
        schema = declared["content"][media].get("schema") or {}
        if model is str:
            assert schema == {"type": "string"}
            return r.text
        name = ref or (_component(self.doc, model) if isinstance(model, type) else None)
        assert name in _refs(schema), (method, path, status, media, name, schema)
        body = r.json()
        value = TypeAdapter(model).validate_python(body)
        _covered(value, body, f"{method} {url or path}")
        return body


@pytest.fixture()
def check(doc: dict[str, Any]) -> Checker:
    return Checker(doc)


def test_grid_resolve_and_health_answers(client: TestClient, demo_loaded: int,
                                         check: Checker) -> None:
    c = client
    body = check(c, "GET", "/health", 200, Health)
    assert body["active_generation"]["id"] == demo_loaded
    fc = check(c, "GET", "/grids", 200, UnitCollection, params={"level": "grid", "limit": 3})
    assert fc["features"] and fc["links"]
    check(c, "GET", "/grids", 200, UnitCollection, params={"limit": 2, "offset": 2})
    one = check(c, "GET", "/grids/{code}", 200, UnitDetail, f"/grids/{GRID}")
    assert one["properties"]["neighbours"] and one["properties"]["parents"]
    check(c, "GET", "/grids/{code}", 200, UnitDetail, "/grids/310117")
    check(c, "GET", "/grids/{code}/history", 200, UnitHistory, f"/grids/{GRID}/history")
    # errors: an unknown code, a bad bbox, a time before any grid, a bad parameter
    err = check(c, "GET", "/grids/{code}", 404, ErrorOut, "/grids/999999")
    assert err["code"] == "not_found"
    check(c, "GET", "/grids/{code}/history", 404, ErrorOut, "/grids/999999/history")
    bad = check(c, "GET", "/grids", 422, ValidationErrorOut, params={"bbox": "1,2,3"})
    assert bad["code"] == "invalid_input" and "bbox" in bad["detail"]
    bad = check(c, "GET", "/grids", 422, ValidationErrorOut, params={"at": "yesterday"})
    assert bad["errors"][0]["field"] == "at" and bad["errors"][0]["value"] == "yesterday"
    check(c, "GET", "/grids", 404, ErrorOut, params={"at": "1990-01-01T00:00:00Z"})
    check(c, "GET", "/grids", 404, ErrorOut, params={"generation": 999})

    r = check(c, "GET", "/resolve", 200, ResolveOut, params=P)
    assert r["inside"] and r["grid"]
    r = check(c, "GET", "/resolve", 200, ResolveOut, params=OUTSIDE)
    assert not r["inside"] and r["nearest"]
    check(c, "POST", "/resolve", 200, ResolveOut, json={**P, "crs": "EPSG:4326"})
    bad = check(c, "GET", "/resolve", 422, ValidationErrorOut, params={"lon": 500, "lat": 31})
    assert bad["code"] == "invalid_coordinate" and bad["field"] == "lon"
    check(c, "GET", "/resolve", 422, ValidationErrorOut,
          params={**P, "crs": "EPSG:99999"})
    check(c, "POST", "/resolve", 422, ValidationErrorOut, json={"lon": "x"})

    points = [[P["lon"], P["lat"]], [OUTSIDE["lon"], OUTSIDE["lat"]], ["a", 1]]
    b = check(c, "POST", "/resolve/batch", 200, BatchOut, json=points)
    assert [x["inside"] for x in b["results"]] == [True, False, None]
    check(c, "POST", "/resolve/batch", 200, BatchOut,
          json={"points": [{"id": "x", **P}]})
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "a", "properties": {},
         "geometry": {"type": "Point", "coordinates": [P["lon"], P["lat"]]}}]}
    gj = check(c, "POST", "/resolve/batch", 200, BatchFeatureCollection,
               ref="BatchFeatureCollection", json=fc)
    assert gj["features"][0]["properties"]["inside"] is True
    csv = check(c, "POST", "/resolve/batch", 200, str,
                content=b"id,lon,lat\nA,121.2277,31.0322\nB,x,1\n",
                headers={"content-type": "text/csv"})
    assert csv.startswith("id,wgs84_lon")
    check(c, "POST", "/resolve/batch", 415, ErrorOut, content=b"<x/>",
          headers={"content-type": "text/xml"})

    layers = check(c, "GET", "/layers", 200, dict[str, LayerInfo], ref="LayerInfo")
    assert "assets" in layers
    check(c, "GET", "/layers/{name}", 404, ErrorOut, "/layers/nothing")
    check(c, "GET", "/kpis", 401, ErrorOut, params={"unit": "grid"},
          headers={"authorization": ""})
    check(c, "GET", "/kpis", 401, ErrorOut, params={"unit": "grid"},
          headers={"authorization": "Basic x"})


@pytest.fixture()
def history(full_session: Session, settings: Settings) -> Session:
    """A year of cases up to now on the full demo city (rolled back with the test)."""
    from etl.demo_history import generate_history

    generate_history(full_session, cases=1500, seed=3, settings=settings)
    return full_session


def test_layer_responsibility_kpi_hotspot_and_wall_answers(
        full_client: TestClient, history: Session, check: Checker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from layers import wall
    from layers.auth import create_token

    s, c = history, full_client
    _, secret = create_token(s, "openapi-admin", "admin")
    admin = {"authorization": f"Bearer {secret}"}
    _, secret = create_token(s, "openapi-patrol", "patrol")
    patrol = {"authorization": f"Bearer {secret}"}
    lon, lat, cat = s.execute(text(
        "SELECT ST_X(geom), ST_Y(geom), category_code FROM asset WHERE kind = 'manhole_water' "
        "AND grid_code IS NOT NULL ORDER BY code LIMIT 1")).one()
    asset = s.execute(text("SELECT code FROM asset ORDER BY code LIMIT 1")).scalar_one()
    dept = s.execute(text("SELECT min(department_code) FROM department_zone")).scalar_one()
    spot = {"lon": lon, "lat": lat}

    o = check(c, "GET", "/owner", 200, OwnerOut, params={**spot, "category": cat})
    assert o["owner"] and o["trail"] and o["patrol"]
    check(c, "GET", "/owner", 200, OwnerOut, params={**OUTSIDE, "category": cat})
    check(c, "GET", "/owner", 422, ValidationErrorOut, params={**spot, "category": "Z9"})
    check(c, "GET", "/owner", 404, ErrorOut,
          params={**spot, "category": cat, "at": "2000-01-01T00:00:00Z"})
    lk = check(c, "GET", "/lookup", 200, LookupOut, params={**spot, "radius": 30})
    assert lk["zones"] and lk["assets"] and lk["owners"]
    check(c, "GET", "/lookup", 200, LookupOut, params={**OUTSIDE, "category": cat})
    check(c, "GET", "/alignment", 200, AlignmentRanking)
    check(c, "GET", "/alignment/{department}", 200, AlignmentOut, f"/alignment/{dept}")
    check(c, "GET", "/alignment/{department}", 404, ErrorOut, "/alignment/NOPE")

    for name in ("departments", "categories", "teams", "assignments", "roles"):
        page = check(c, "GET", "/layers/{name}", 200, LayerItems, f"/layers/{name}",
                     params={"limit": 3})
        assert page["items"], name
    for name in ("assets", "areas", "zones"):
        page = check(c, "GET", "/layers/{name}", 200, LayerFeatureCollection,
                     f"/layers/{name}", ref="LayerFeatureCollection", params={"limit": 3})
        assert page["features"], name
    check(c, "GET", "/layers/{name}", 422, ValidationErrorOut, "/layers/assets",
          params={"bogus": 1})
    check(c, "GET", "/layers/{name}/{key}", 200, LayerFeature, f"/layers/assets/{asset}")
    check(c, "GET", "/layers/{name}/{key}", 200, LayerRowOut, "/layers/departments/SW-GS")
    check(c, "GET", "/layers/{name}/{key}", 404, ErrorOut, "/layers/assets/nope")
    check(c, "GET", "/layers/{name}/{key}/history", 200, LayerVersions,
          f"/layers/assets/{asset}/history")
    row = {"code": "OA1", "name": "x", "tier": 3}
    check(c, "POST", "/layers/{name}", 401, ErrorOut, "/layers/departments", json=row)
    check(c, "POST", "/layers/{name}", 403, ErrorOut, "/layers/departments", json=row,
          headers=patrol)
    check(c, "POST", "/layers/{name}", 201, LayerRowOut, "/layers/departments", json=row,
          headers=admin)
    check(c, "POST", "/layers/{name}", 409, ErrorOut, "/layers/departments", json=row,
          headers=admin)
    area = {"type": "Feature", "properties": {"code": "OA-1", "kind": "park",
                                              "owner_department": "OA1"},
            "geometry": {"type": "Polygon", "coordinates": [[
                [121.2, 31.0], [121.21, 31.0], [121.21, 31.01], [121.2, 31.01], [121.2, 31.0]]]}}
    check(c, "POST", "/layers/{name}", 201, LayerFeature, "/layers/areas", json=area,
          headers=admin)
    check(c, "PUT", "/layers/{name}/{key}", 200, LayerRowOut, "/layers/departments/OA1",
          json={"name": "y"}, headers=admin)
    check(c, "GET", "/layers/{name}/{key}/history", 200, LayerVersions,
          "/layers/departments/OA1/history")
    check(c, "DELETE", "/layers/{name}/{key}", 200, RetiredOut, "/layers/areas/OA-1",
          headers=admin)
    rep = check(c, "POST", "/layers/{name}/import", 200, ImportReportOut,
                "/layers/departments/import", content=b"code,name,tier\nOA2,a,3\nOA2,b,3\n",
                headers={**admin, "content-type": "text/csv"})
    assert rep["created"] == 1 and rep["refused"]
    check(c, "POST", "/layers/{name}/import", 422, ValidationErrorOut,
          "/layers/departments/import", content=b"{", headers=admin)

    since = {"since": (datetime.now(UTC) - timedelta(days=120)).isoformat()}
    k = check(c, "GET", "/kpis", 200, KpiOut, params=since)
    assert k["rows"]
    for unit in ("centre", "street", "grid"):
        k = check(c, "GET", "/kpis", 200, KpiOut,
                  params={**since, "unit": unit, "monthly": True}, headers=admin)
        assert k["rows"] and k["rows"][0]["month"], unit
    assert check(c, "GET", "/kpis", 200, str, params={"format": "csv"}).startswith("since,")
    check(c, "GET", "/kpis", 403, ErrorOut, params={"unit": "grid"}, headers=patrol)
    check(c, "GET", "/kpis", 422, ValidationErrorOut, params={"month": "2025-3"})

    h = check(c, "GET", "/hotspots", 200, HotspotCollection, params={"res": 8})
    assert h["features"]
    check(c, "GET", "/hotspots", 200, HotspotCollection, params={"res": 8, "significant": True,
                                                                 "bbox": "121,30.9,121.4,31.2"})
    check(c, "GET", "/hotspots", 422, ValidationErrorOut, params={"res": 99})
    ch = check(c, "GET", "/hotspots/chronic", 200, ChronicOut,
               params={"res": 8, "min_run": 1})
    assert ch["spots"] and ch["grids"]
    ch = check(c, "GET", "/hotspots/chronic", 200, ChronicCollection, ref="ChronicCollection",
               params={"res": 8, "min_run": 1, "format": "geojson"})
    assert ch["features"]

    counts = check(c, "GET", "/map/wall/counts.json", 200, WallCounts)
    assert counts["open"] > 0
    box = {"bbox": "120,30,122,32", "zoom": 12}
    assert not check(c, "GET", "/map/wall/open.json", 200, OpenCases, params=box)["aggregated"]
    monkeypatch.setattr(wall, "CASES_ONE_BY_ONE", 1)
    cells = check(c, "GET", "/map/wall/open.json", 200, OpenCases, params=box)
    assert cells["aggregated"] and cells["features"]
    check(c, "GET", "/map/wall/open.json", 422, ValidationErrorOut, params={"bbox": "x"})
