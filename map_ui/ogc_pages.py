"""The HTML face of OGC API Features (/ogc?f=html and below): the landing page, the
collections, one collection, a page of items and one item, each with its links and, where
there is geometry, a small map of what the JSON answer holds. Built from the same dicts the
JSON answers are; no database, no web framework."""

from __future__ import annotations

import html
import json
from typing import Any

import folium

from map_ui.pages import BaseMap, _figure, new_map

CSS = """<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0 1.5em 2em;color:#222}
h1{font-size:1.4em;margin:.8em 0 .3em} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .muted{color:#777} nav a{margin-right:1em}
.ogc-map{height:420px;width:100%;max-width:1100px;border:1px solid #bbb;margin:.6em 0}
</style>"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _links(links: list[dict[str, Any]]) -> str:
    rows = "".join(f'<li><a href="{_e(lk["href"])}">{_e(lk.get("title") or lk["rel"])}</a> '
                   f'<span class="muted">{_e(lk["rel"])} · {_e(lk.get("type", ""))}</span></li>'
                   for lk in links)
    return f"<ul>{rows}</ul>"


def _page(title: str, body: str, crumbs: list[tuple[str, str]]) -> str:
    nav = "".join(f'<a href="{_e(h)}">{_e(t)}</a>' for t, h in crumbs)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
            f'</title><link rel="icon" href="data:,">{CSS}</head><body><nav>{nav}</nav>'
            f"<h1>{_e(title)}</h1>{body}</body></html>")


def landing(doc: dict[str, Any]) -> str:
    return _page(doc["title"], f'<p>{_e(doc["description"])}</p>{_links(doc["links"])}',
                 [("gridops", "/ogc?f=html")])


def conformance(doc: dict[str, Any]) -> str:
    items = "".join(f"<li>{_e(c)}</li>" for c in doc["conformsTo"])
    return _page("Conformance", f"<ul>{items}</ul>", [("Landing page", "/ogc?f=html")])


def collections(doc: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td><a href="/ogc/collections/{_e(c["id"])}?f=html">{_e(c["id"])}</a></td>'
        f'<td>{_e(c["title"])}</td><td>{_e(c.get("description"))}</td>'
        f'<td><a href="/ogc/collections/{_e(c["id"])}/items?f=html">items</a></td></tr>'
        for c in doc["collections"])
    body = ("<table><thead><tr><th>id</th><th>title</th><th>description</th><th></th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")
    return _page("Collections", body, [("Landing page", "/ogc?f=html")])


def collection(doc: dict[str, Any]) -> str:
    bbox = (doc.get("extent") or {}).get("spatial", {}).get("bbox")
    body = (f'<p>{_e(doc.get("description"))}</p>'
            f'<p>Extent: {_e(json.dumps(bbox))}</p><p>CRS: {_e(", ".join(doc.get("crs", [])))}'
            f'</p>{_links(doc["links"])}')
    return _page(doc["title"], body, [("Landing page", "/ogc?f=html"),
                                      ("Collections", "/ogc/collections?f=html")])


def queryables(doc: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v.get('type') or v.get('$ref'))}</td></tr>"
                   for k, v in doc["properties"].items())
    body = f"<table><thead><tr><th>name</th><th>type</th></tr></thead><tbody>{rows}</tbody></table>"
    return _page(f"{doc['title']}: queryables", body, [("Landing page", "/ogc?f=html")])


def _map(fc: dict[str, Any], base: BaseMap) -> str:
    """A small Leaflet map of a FeatureCollection, as an iframe-free HTML fragment."""
    feats = [f for f in fc["features"] if f.get("geometry")]
    if not feats:
        return ""
    m = new_map(base, (0.0, 0.0), 12, "features")
    layer = folium.GeoJson({"type": "FeatureCollection", "features": feats}, name="features",
                           style_function=lambda _: {"color": "#c0392b", "weight": 1.5,
                                                     "fillOpacity": 0.08})
    layer.add_to(m)
    m.fit_bounds(layer.get_bounds())  # type: ignore[arg-type]
    fig = _figure(m)
    fig.height = "420px"
    return f'<div class="ogc-map">{m._repr_html_()}</div>'


def items(fc: dict[str, Any], title: str, cid: str, base: BaseMap) -> str:
    feats = fc["features"]
    keys: list[str] = []
    for f in feats:
        for k in f["properties"]:
            if k not in keys:
                keys.append(k)
    head = "".join(f"<th>{_e(k)}</th>" for k in ["id", *keys])
    rows = "".join(
        f'<tr><td><a href="/ogc/collections/{_e(cid)}/items/{_e(f["id"])}?f=html">'
        f'{_e(f["id"])}</a></td>'
        + "".join(f"<td>{_e(_cell(f['properties'].get(k)))}</td>" for k in keys) + "</tr>"
        for f in feats)
    summary = (f'<p>{fc["numberReturned"]} of {fc["numberMatched"]} features</p>'
               f'{_links([lk for lk in fc["links"] if lk["rel"] in ("next", "prev")])}')
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return _page(f"{title}: items", summary + _map(fc, base) + table,
                 [("Landing page", "/ogc?f=html"), ("Collections", "/ogc/collections?f=html"),
                  (title, f"/ogc/collections/{cid}?f=html")])


def item(f: dict[str, Any], title: str, cid: str, base: BaseMap) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_cell(v))}</td></tr>"
                   for k, v in f["properties"].items())
    fc = {"type": "FeatureCollection", "features": [f]}
    return _page(f"{title}: {f['id']}", _map(fc, base) + f"<table>{rows}</table>",
                 [("Landing page", "/ogc?f=html"), ("Collections", "/ogc/collections?f=html"),
                  (title, f"/ogc/collections/{cid}/items?f=html")])


def _cell(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return "" if v is None else str(v)
