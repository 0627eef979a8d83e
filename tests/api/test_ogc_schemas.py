"""gridops' OGC API Features answers, from a real server on a copy of the demo city,
validated against the official OGC schemas (tests/support/ogc_schemas, copied unchanged
from opengeospatial/ogcapi-features: see its README.md): Part 1 (Core) for the landing
page, conformance, collections, collection, items and item; Part 2 (CRS) for the
collections' crs/storageCrs members; Part 3 (Filtering) for queryables, whose answer is
itself a JSON Schema and so is also checked against the meta-schema it names. The
schemas' relative `$ref`s are resolved offline through a jsonschema_rs Registry. Every
failure names the place in the answer (a JSON pointer), the schema's message and the
schema keyword that failed; broken copies of real answers show the validator rejects."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import yaml
from sqlalchemy import Engine

from layers.cluster import Cluster
from tests.support.clusters import clone_full
from tests.support.servers import serving

SCHEMAS = Path(__file__).resolve().parent.parent / "support" / "ogc_schemas"
PART1 = SCHEMAS / "core" / "openapi" / "schemas"
PART2 = SCHEMAS / "extensions" / "crs" / "openapi" / "schemas"
PART3 = SCHEMAS / "extensions" / "filtering" / "standard" / "openapi" / "ogcapi-features-3.yaml"
# Part 2's schemas extend Part 1's by its published address: served from the local copy
PART1_PUBLISHED = "http://schemas.opengis.net/ogcapi/features/part1/1.0/openapi/schemas/"
# the queryables answer's schema inside Part 3's OpenAPI fragment (a JSON pointer, the
# braces percent-encoded so that it is a valid URI fragment)
QUERYABLES = ("/paths/~1collections~1%7BcollectionId%7D~1queryables/get/responses/200"
              "/content/application~1schema+json/schema")
GRID = "grid-grid"


# ---------------------------------------------------------------- the validator


def _oas31_nulls(node: Any) -> Any:
    """The OpenAPI 3.1 schemas write the JSON type name `null` unquoted (`type: null`,
    `type: [object, null]`), which YAML reads as None: give `type` its string back."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "type" and v is None:
                out[k] = "null"
            elif k == "type" and isinstance(v, list):
                out[k] = ["null" if t is None else t for t in v]
            else:
                out[k] = _oas31_nulls(v)
        return out
    if isinstance(node, list):
        return [_oas31_nulls(v) for v in node]
    return node


def _load(path: Path) -> Any:
    return _oas31_nulls(yaml.safe_load(path.read_text(encoding="utf-8")))


@cache
def _registry() -> jsonschema_rs.Registry:
    """Every copied YAML file under its file: URI (relative $refs resolve next to it),
    Part 1's also under their published address; nothing is fetched from the network."""
    resources = [(p.as_uri(), _load(p)) for p in sorted(SCHEMAS.rglob("*.yaml"))]
    for p in sorted(PART1.glob("*.yaml")):
        resources.append((PART1_PUBLISHED + p.name, _load(p)))
    return jsonschema_rs.Registry(resources, draft=jsonschema_rs.Draft202012)


@cache
def _validator(schema: Path, pointer: str = "") -> jsonschema_rs.Validator:
    """The OpenAPI 3.1 schemas of Part 1 1.1 are JSON Schema 2020-12; formats asserted."""
    ref = schema.as_uri() + (f"#{pointer}" if pointer else "")
    return jsonschema_rs.Draft202012Validator({"$ref": ref}, registry=_registry(),
                                              validate_formats=True)


def _where(path: list[str | int]) -> str:
    return "/" + "/".join(str(p) for p in path)


def _explain(e: jsonschema_rs.ValidationError, indent: str = "") -> list[str]:
    """One line per error (document path, message, failing schema keyword); for a oneOf or
    anyOf none of whose branches matched, the branch(es) that came closest."""
    lines = [f"{indent}at {_where(e.instance_path)}: {e.message}  "
             f"[schema: {e.absolute_keyword_location or _where(e.schema_path)}]"]
    kind = e.kind
    context = getattr(kind, "context", None)
    branchy = (jsonschema_rs.ValidationErrorKind.OneOfNotValid,
               jsonschema_rs.ValidationErrorKind.AnyOf)
    if isinstance(kind, branchy) and context:
        fewest = min(len(branch) for branch in context)
        for i, branch in enumerate(context):
            if len(branch) == fewest:
                lines.append(f"{indent}  closest branch {i}:")
                for sub in branch:
                    lines += _explain(sub, indent + "    ")
    return lines


def problems(schema: Path, doc: Any, pointer: str = "") -> list[str]:
    """Everything `doc` breaks in the schema, as printable lines (empty: valid)."""
    lines: list[str] = []
    for e in _validator(schema, pointer).iter_errors(doc):
        lines += _explain(e)
    return lines


def _meta_problems(doc: dict[str, Any]) -> list[str]:
    """A JSON Schema document against the meta-schema its `$schema` names (bundled)."""
    meta = jsonschema_rs.validator_for({"$schema": doc["$schema"], "$ref": doc["$schema"]})
    lines: list[str] = []
    for e in meta.iter_errors(doc):
        lines += _explain(e)
    return lines


def _report(what: str, found: list[str]) -> str:
    return f"{what} does not match the OGC schema:\n" + "\n".join(found)


# ---------------------------------------------------------------- the answers


@pytest.fixture(scope="module")
def server_base(pg_cluster: Cluster, full_engine: Engine) -> Iterator[str]:
    url = clone_full(pg_cluster, full_engine, "gridops_ogc_schemas")
    with serving(url, GRIDOPS_SCHEDULER_INTERVAL_S="0") as base:
        yield base


@pytest.fixture(scope="module")
def answers(server_base: str) -> dict[str, Any]:
    """Each answer once, by the path below /ogc it was asked at (JSON asked for)."""
    got: dict[str, Any] = {}
    with httpx.Client(base_url=server_base, timeout=30,
                      headers={"accept": "application/json"}) as c:
        def get(path: str, status: int = 200) -> Any:
            r = c.get(f"/ogc{path}")
            assert r.status_code == status, (path, r.status_code, r.text[:500])
            assert "json" in r.headers["content-type"], (path, r.headers["content-type"])
            return r.json()

        for path in ("", "/conformance", "/collections", f"/collections/{GRID}",
                     "/collections/assets", "/collections/departments",
                     f"/collections/{GRID}/items?limit=5", "/collections/zones/items?limit=5",
                     "/collections/departments/items?limit=5", f"/collections/{GRID}/queryables"):
            got[path] = get(path)
        for coll in (GRID, "departments"):
            first = got[f"/collections/{coll}/items?limit=5"]["features"][0]
            one = get(f"/collections/{coll}/items/{first['id']}")
            got[f"/collections/{coll}/items/{{id}}"] = one
        got["/collections/nothing"] = get("/collections/nothing", 404)
    return got


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{schema}:/ogc{path}" for path, schema in cases]


PART1_CASES = [
    ("", "landingPage"),
    ("/conformance", "confClasses"),
    ("/collections", "collections"),
    (f"/collections/{GRID}", "collection"),
    ("/collections/assets", "collection"),
    ("/collections/departments", "collection"),
    (f"/collections/{GRID}/items?limit=5", "featureCollectionGeoJSON"),
    ("/collections/zones/items?limit=5", "featureCollectionGeoJSON"),
    ("/collections/departments/items?limit=5", "featureCollectionGeoJSON"),
    (f"/collections/{GRID}/items/{{id}}", "featureGeoJSON"),
    ("/collections/departments/items/{id}", "featureGeoJSON"),
    ("/collections/nothing", "exception"),
]


@pytest.mark.parametrize(("path", "schema"), PART1_CASES, ids=_ids(PART1_CASES))
def test_part1_core(answers: dict[str, Any], path: str, schema: str) -> None:
    found = problems(PART1 / f"{schema}.yaml", answers[path])
    assert not found, _report(f"/ogc{path} (Part 1 {schema}.yaml)", found)


PART2_CASES = [
    ("/collections", "collections"),
    (f"/collections/{GRID}", "collection"),
    ("/collections/assets", "collection"),
    ("/collections/departments", "collection"),
]


@pytest.mark.parametrize(("path", "schema"), PART2_CASES, ids=_ids(PART2_CASES))
def test_part2_crs(answers: dict[str, Any], path: str, schema: str) -> None:
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in answers[
        "/conformance"]["conformsTo"]
    found = problems(PART2 / f"{schema}.yaml", answers[path])
    assert not found, _report(f"/ogc{path} (Part 2 {schema}.yaml)", found)


def test_part3_queryables(answers: dict[str, Any]) -> None:
    doc = answers[f"/collections/{GRID}/queryables"]
    found = problems(PART3, doc, QUERYABLES)
    assert not found, _report(f"/ogc/collections/{GRID}/queryables (Part 3)", found)
    found = _meta_problems(doc)
    assert not found, _report(f"/ogc/collections/{GRID}/queryables (as {doc['$schema']})",
                              found)
    # what Part 3's text asks and no schema file checks (/req/queryables/...): JSON Schema
    # 2020-12, the geometry named by its format (the $ref beside it is QGIS's way)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["properties"]["geometry"]["format"] == "geometry-multipolygon"


# ---------------------------------------------------------------- it can fail


def test_broken_copies_are_rejected(answers: dict[str, Any]) -> None:
    feature = copy.deepcopy(answers[f"/collections/{GRID}/items/{{id}}"])
    del feature["type"]
    assert any(line.startswith('at /: "type" is a required property')
               for line in problems(PART1 / "featureGeoJSON.yaml", feature))

    page = copy.deepcopy(answers[f"/collections/{GRID}/items?limit=5"])
    page["features"][1]["geometry"]["coordinates"] = [1.0]
    found = problems(PART1 / "featureCollectionGeoJSON.yaml", page)
    assert any(line.startswith("at /features/1/geometry:") for line in found), found

    landing = copy.deepcopy(answers[""])
    del landing["links"][0]["href"]
    assert any(line.startswith('at /links/0: "href" is a required property')
               for line in problems(PART1 / "landingPage.yaml", landing))

    coll = copy.deepcopy(answers[f"/collections/{GRID}"])
    coll["storageCrs"] = 84  # Part 2: a URI string
    del coll["id"]  # Part 1, reached through Part 2's allOf
    found = problems(PART2 / "collection.yaml", coll)
    assert any(line.startswith("at /storageCrs:") for line in found), found
    assert any(line.startswith('at /: "id" is a required property') for line in found), found

    queryables = copy.deepcopy(answers[f"/collections/{GRID}/queryables"])
    queryables["properties"] = []
    assert any(line.startswith("at /properties:") for line in _meta_problems(queryables))
    assert problems(PART3, [], QUERYABLES)  # the answer must be an object
