"""Folium page builders: data in, HTML out (no database here).

Every page loads Leaflet and its own script from gridops (/map/static), never from the
internet; the base map is a setting (an intranet tile server) and by default there is
none: a plain background with the grid as the map.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import folium
from branca.element import Element, Figure, MacroElement
from folium.plugins import VectorGridProtobuf
from jinja2 import Template

STATIC = "/map/static"  # where the API serves STATIC_DIR
STATIC_DIR = Path(__file__).parent / "static"
# outlines by depth from the finest level: (colour, weight, label from zoom, label class)
# (the district, the whole map, is never labelled on it)
DEPTH_STYLE = (("#6b6b6b", 0.7, 16, "lbl-fine"), ("#2f7d32", 1.6, 14, "lbl-mid"),
               ("#1b3a6b", 3.0, 11, "lbl-top"), ("#111111", 4.5, 99, "lbl-top"))
ZONE_COLOURS = ("#8e44ad", "#16a085", "#c0392b", "#d35400", "#2c3e50", "#7f8c8d")
BIN_LEGEND = ((3, "#d62f27", "Hot spot, 99% confidence"),
              (2, "#ed7551", "Hot spot, 95% confidence"),
              (1, "#fab984", "Hot spot, 90% confidence"),
              (0, "#d9d9d9", "Not significant"),
              (-1, "#b5c8e0", "Cold spot, 90% confidence"),
              (-2, "#7590c1", "Cold spot, 95% confidence"),
              (-3, "#4575b5", "Cold spot, 99% confidence"))


@dataclass(frozen=True)
class BaseMap:
    """Where tiles come from (None: no tiles, works offline) and the map's extent."""

    tiles: str | None
    attribution: str
    max_zoom: int = 19


class Script(MacroElement):
    """A piece of page script run once the map exists; {map} names the map variable and
    every other {name} a layer variable."""

    _template = Template("{% macro script(this, kwargs) %}{{ this.code }}{% endmacro %}")

    def __init__(self, code: str) -> None:
        super().__init__()
        self._name = "Script"
        self.code = code


def _vars(named: dict[str, Any]) -> str:
    """A JS object literal of layer names to their variables (for tests and scripts)."""
    return ", ".join(f"{json.dumps(k)}: {v.get_name()}" for k, v in named.items())


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool = False,
           empty: str = "none") -> str:
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _esc(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    if not body:
        return f'<p class="muted">{_esc(empty)}</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(m: folium.Map) -> Figure:
    root = m.get_root()
    assert isinstance(root, Figure)
    return root


def new_map(base: BaseMap, centre: tuple[float, float], zoom: int, title: str, *,
            prefer_canvas: bool = True) -> folium.Map:
    """A Leaflet map served entirely by gridops, with the base map of the settings
    (prefer_canvas=False: overlays drawn in SVG, which lets the mouse through to the vector
    tiles beneath them wherever no overlay is drawn)."""
    m = folium.Map(location=[centre[1], centre[0]], zoom_start=zoom, tiles=None,
                   control_scale=True, prefer_canvas=prefer_canvas, max_zoom=base.max_zoom)
    # instance lists replace folium's CDN defaults (jQuery, Bootstrap, Font Awesome...)
    m.default_js = [("leaflet", f"{STATIC}/vendor/leaflet/leaflet.js"),
                    ("gridops", f"{STATIC}/gridops.js")]
    m.default_css = [("leaflet_css", f"{STATIC}/vendor/leaflet/leaflet.css"),
                     ("gridops_css", f"{STATIC}/map.css")]
    if base.tiles:
        folium.TileLayer(tiles=base.tiles, attr=base.attribution or "intranet tiles",
                         name="Base map", max_zoom=base.max_zoom, overlay=False,
                         control=True).add_to(m)
    root = _figure(m)
    root.header.add_child(Element(f"<title>{_esc(title)}</title>"), name="title")
    root.header.add_child(Element('<meta charset="utf-8"><link rel="icon" href="data:,">'),
                          name="charset")
    return m


def _depth_style(depth: int) -> tuple[str, float, int, str]:
    return DEPTH_STYLE[min(depth, len(DEPTH_STYLE) - 1)]


VECTORGRID_JS = f"{STATIC}/vendor/leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js"


def _tiled_layer(url: str, name: str, layer: str, style: str, show: bool = True,
                 min_zoom: int = 0) -> VectorGridProtobuf:
    """Vector tiles of an OGC collection (Leaflet.VectorGrid, served by gridops): style is
    a JS function of a feature's properties returning its style, or [] to hide it; drawn
    from min_zoom on."""
    options = (f'{{"vectorTileLayerStyles": {{{json.dumps(layer)}: {style}}}, '
               f'"minZoom": {int(min_zoom)}, '
               '"interactive": true, "rendererFactory": L.canvas.tile, "maxNativeZoom": 22, '
               '"getFeatureId": function (f) { return f.properties.code + "|" + '
               '(f.properties.layer || ""); }}')
    vg = VectorGridProtobuf(url, name=name, options=options, show=show)
    vg.default_js = [("vectorGrid", VECTORGRID_JS)]  # not the CDN's
    return vg


def _outline_layer(url: str, layer: str, depth: int, name: str, show: bool = True,
                   min_zoom: int = 0) -> VectorGridProtobuf:
    colour, weight, _, _ = _depth_style(depth)
    # the finest level is filled (invisibly) so that hovering anywhere names the grid
    style = json.dumps({"color": colour, "weight": weight, "fillOpacity": 0.0,
                        "fill": depth == 0, "opacity": 0.9})
    return _tiled_layer(url, name, layer, f"function (p) {{ return {style}; }}", show,
                        min_zoom)


def _zone_layer(url: str, layer: str, colour: str, show: bool = False) -> VectorGridProtobuf:
    style = json.dumps({"color": colour, "weight": 2, "dashArray": "6 4", "fill": True,
                        "fillColor": colour, "fillOpacity": 0.08})
    return _tiled_layer(url, f"Zones: {layer}", "zones",
                        f"function (p) {{ return p.layer === {json.dumps(layer)} ? {style} "
                        f": []; }}", show)


def _legend() -> str:
    rows = "".join(f'<div><i style="background:{c}"></i>{_esc(t)}</div>'
                   for _, c, t in BIN_LEGEND)
    return (
        '<div class="panel wall-legend"><b>Gi* hot spots</b>'
        '<div class="muted" id="gridops-hotspot-summary"></div>' + rows +
        '<div style="margin-top:.4rem"><b>Open cases</b></div>'
        '<div><i class="dot" style="background:#2166ac"></i>open (number = cases there)</div>'
        '<div><i class="dot" style="background:#d62f27"></i>overdue</div>'
        '<div><i class="dot" style="background:#7b2cbf;border-color:#ffd400"></i>escalated '
        '(督办)</div>'
        '<div><i style="background:#fff;border:2px solid #000"></i>chronic spot (顽症)</div>'
        '</div>')


def wall_page(*, base: BaseMap, bounds: tuple[float, float, float, float], title: str,
              levels: Sequence[tuple[int, str, str, str, int]], zones: Sequence[str],
              zones_url: str, labels_url: str, chronic: dict[str, Any],
              counts: dict[str, int], filters: dict[str, Any], period_text: str,
              refresh_s: int) -> str:
    """The command-centre wall: grid levels and department zones as vector tiles (levels:
    (rank, label, tile URL template, MVT layer, the zoom it is drawn from) coarse to fine;
    zones: the zone layers, all in the tiles of zones_url), Gi* hexagons, open cases,
    chronic spots, a legend, counts and the period; refreshes itself in place. labels_url
    ({level}) gives the label points of a level in a bbox."""
    m = new_map(base, ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2), 11, title,
                prefer_canvas=False)  # the grid is in canvas tiles under the overlays
    fit = [[bounds[1], bounds[0]], [bounds[3], bounds[2]]]
    # the view first (the address's, else the territory fitted), then the tile layers: else
    # they would fetch every tile of the map's first zoom for nothing
    m.add_child(Script(f"gridops.initialView({m.get_name()}, {json.dumps(fit)});"))
    named: dict[str, Any] = {}
    tiled: list[str] = []
    for i, (_, name, url, mvt_layer, min_zoom) in enumerate(levels):
        layer = _outline_layer(url, mvt_layer, len(levels) - 1 - i, name, min_zoom=min_zoom)
        layer.add_to(m)
        named[name] = layer
        tiled.append(f"gridops.tiled(map, {layer.get_name()}, "
                     f"{json.dumps({'click': i == len(levels) - 1})});")
    for i, layer_name in enumerate(sorted(zones)):
        zl = _zone_layer(zones_url, layer_name, ZONE_COLOURS[i % len(ZONE_COLOURS)])
        zl.add_to(m)
        named[f"Zones: {layer_name}"] = zl
        tiled.append(f"gridops.tiled(map, {zl.get_name()}, {json.dumps({'zone': True})});")
    hot = folium.FeatureGroup(name="Hotspots (Gi*)", show=True)
    hot.add_to(m)
    named["Hotspots (Gi*)"] = hot
    chronic_fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [s["ring"]]},
         "properties": {"h3": s["h3"], "grid": s["grid"] or "-",
                        "grid_name": s["grid_name"] or "-",
                        "months": ", ".join(s["months_hot"]), "cases": s["cases"],
                        "run": s["longest_run"]}} for s in chronic["spots"]]}
    chronic_layer = folium.FeatureGroup(name="Chronic spots (顽症)", show=True)
    if chronic_fc["features"]:
        folium.GeoJson(
            chronic_fc, name="chronic",
            style_function=lambda _f: {"color": "#000", "weight": 3, "fillOpacity": 0.0},
            tooltip=folium.GeoJsonTooltip(
                fields=["grid_name", "grid", "run", "months", "cases"],
                aliases=["grid", "code", "months hot in a row", "hot in", "cases"]),
        ).add_to(chronic_layer)
    chronic_layer.add_to(m)
    named["Chronic spots (顽症)"] = chronic_layer
    cases = folium.FeatureGroup(name="Open cases", show=True)
    cases.add_to(m)
    named["Open cases"] = cases
    folium.LayerControl(collapsed=False, position="bottomright").add_to(m)

    counts_html = "".join(
        f'<div class="{k}"><b id="count-{k}">{counts.get(k, 0):,}</b><span>{_esc(t)}</span>'
        f"</div>" for k, t in (("open", "open"), ("overdue", "overdue"),
                               ("escalated", "escalated 督办"), ("today", "reported today"),
                               ("closed_today", "closed today"),
                               ("outside", "outside every grid")))
    filt = ", ".join(f"{k} {v}" for k, v in filters.items() if v and k != "period")
    chronic_rows = _table(
        ["grid", "street", "months hot in a row", "cases"],
        [(f'<a href="/map/grid/{_esc(g["grid"])}">{_esc(g["name"])} ({_esc(g["grid"])})</a>',
          _esc(g["street"]), g["longest_run"], g["cases"]) for g in chronic["grids"][:12]],
        raw=True, empty="no chronic spots in this period")
    _figure(m).html.add_child(Element(
        f'<div class="panel wall-title"><h1>{_esc(title)}</h1>'
        f'<div>{_esc(period_text)}{(" · " + _esc(filt)) if filt else ""}</div>'
        f'<div class="status" id="gridops-status">rendered by the server</div></div>'
        f'<div class="panel wall-counts">{counts_html}</div>' + _legend() +
        f'<div class="panel wall-chronic"><b>Chronic spots (顽症)</b> '
        f'<span class="muted">Gi* hot ≥ 95 % in ≥ {chronic["min_run"]} consecutive months of '
        f'{_esc(chronic["months"][0] if chronic["months"] else "")} … '
        f'{_esc(chronic["months"][-1] if chronic["months"] else "")}</span>{chronic_rows}</div>'))

    layer_vars = _vars(named)
    label_calls = "".join(tiled) + "".join(
        f"gridops.labels(map, {named[name].get_name()}, {_depth_style(len(levels) - 1 - i)[2]},"
        f" '{_depth_style(len(levels) - 1 - i)[3]}', "
        f"{json.dumps(labels_url.format(level=rank))});"
        for i, (rank, name, _, _, _) in enumerate(levels))
    hot_filters = {k: v for k, v in filters.items() if v}
    m.add_child(Script(
        f"(function(){{ var map = {m.get_name()}; var named = {{{layer_vars}}};"
        f"window.gridopsMap = map; window.gridopsLayers = named;"
        f"gridops.keepState(map, named, {json.dumps(fit)}); {label_calls}"
        f"var h = gridops.hotspots(map, {hot.get_name()}, {json.dumps(hot_filters)});"
        f"var o = gridops.openCases(map, {cases.get_name()});"
        # the counts are in the page as rendered: fetched again only at each refresh
        f"var c = function(){{ return gridops.counts('/map/wall/counts.json'); }};"
        f"gridops.every({int(refresh_s)}, [h, o, c]); }})();"))
    return str(_figure(m).render())


NEIGHBOURS = "Neighbouring grids (四至)"


def _neighbour_layer(neighbours: Sequence[dict[str, Any]]) -> folium.GeoJson:
    """Same-level grids sharing an edge, dashed, with the side they lie on."""
    return folium.GeoJson({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": n["geometry"],
         "properties": {"code": n["code"], "name": n["name"], "side": n["side"]}}
        for n in neighbours]}, name=NEIGHBOURS,
        style_function=lambda _f: {"color": "#6b6b6b", "weight": 1.5, "dashArray": "4 4",
                                   "fillOpacity": 0.0},
        tooltip=folium.GeoJsonTooltip(fields=["side", "name", "code"]))


def _neighbour_table(neighbours: Sequence[dict[str, Any]]) -> str:
    return _table(["side", "grid", "shared boundary (m)"],
                  [(n["side"], f'<a href="/map/grid/{_esc(n["code"])}">{_esc(n["name"])} '
                    f'({_esc(n["code"])})</a>', n["shared_boundary_m"]) for n in neighbours],
                  raw=True, empty="no neighbours")


def _trail_table(owner: dict[str, Any]) -> str:
    rows = []
    for t in owner["trail"]:
        cands = "; ".join(
            (c.get("department") or {}).get("name", "") if isinstance(c.get("department"),
                                                                       dict)
            else " ".join(str(c.get(k, "")) for k in ("code", "kind", "owner", "distance_m")
                          if c.get(k) is not None)
            for c in t.get("candidates", []))
        rows.append((_esc(t["rule"]),
                     f'<span class="outcome-{_esc(t["outcome"])}">{_esc(t["outcome"])}</span>',
                     _esc(t["reason"]), _esc(cands)))
    return _table(["rule", "outcome", "why", "candidates"], rows, raw=True)


def _patrol(owner: dict[str, Any]) -> str:
    on = owner.get("patrol") or []
    if not on:
        return "; no patrol on duty now"
    return "; patrol on duty: " + ", ".join(
        f'{_esc(p["name"] or p["team"])} ({_esc(p["from"])}–{_esc(p["to"])})' for p in on)


def _dept(d: dict[str, Any] | None) -> str:
    if not d:
        return "nobody"
    return f'{d.get("name", "")} ({d.get("code", "")})'


def lookup_page(*, base: BaseMap, spot: dict[str, Any], unit: dict[str, Any] | None,
                neighbours: Sequence[dict[str, Any]], radius: float) -> str:
    """The dispute page: the spot, its grid and neighbours, zones and ownership areas that
    cover it, assets nearby with owners, and each owner resolution's trail; a click looks
    another spot up."""
    lon, lat = spot["wgs84"]["lon"], spot["wgs84"]["lat"]
    m = new_map(base, (lon, lat), 17, f"Who is responsible here? {lon:.6f}, {lat:.6f}")
    named: dict[str, Any] = {}
    if unit is not None:
        g = folium.GeoJson({"type": "Feature", "geometry": unit["geometry"],
                            "properties": {"code": unit["code"], "name": unit["name"]}},
                           name="Grid", style_function=lambda _f: {
                               "color": "#1b3a6b", "weight": 4, "fillOpacity": 0.05},
                           tooltip=folium.GeoJsonTooltip(fields=["name", "code"]))
        g.add_to(m)
        named["Grid"] = g
    if neighbours:
        named[NEIGHBOURS] = _neighbour_layer(neighbours).add_to(m)
    zones = folium.FeatureGroup(name="Department zones here", show=True)
    for i, z in enumerate(spot["zones"]):
        colour = ZONE_COLOURS[i % len(ZONE_COLOURS)]
        folium.GeoJson({"type": "Feature", "geometry": z["geometry"], "properties": {
            "zone": f'{z["layer"]}: {z["name"]}', "department": z["department_name"]}},
            style_function=lambda _f, c=colour: {"color": c, "weight": 2, "dashArray": "6 4",
                                                 "fillColor": c, "fillOpacity": 0.06},
            tooltip=folium.GeoJsonTooltip(fields=["zone", "department"])).add_to(zones)
    zones.add_to(m)
    named["Department zones here"] = zones
    areas = folium.FeatureGroup(name="Ownership areas here", show=True)
    for a in spot["areas"]:
        folium.GeoJson({"type": "Feature", "geometry": a["geometry"], "properties": {
            "area": f'{a["kind"]}: {a["name"]}', "owner": a["owner_name"] or "",
            "priority": a["priority"]}},
            style_function=lambda _f: {"color": "#b35900", "weight": 2, "fillColor": "#f39c12",
                                       "fillOpacity": 0.15},
            tooltip=folium.GeoJsonTooltip(fields=["area", "owner", "priority"])).add_to(areas)
    areas.add_to(m)
    named["Ownership areas here"] = areas
    assets = folium.FeatureGroup(name="Assets nearby", show=True)
    for a in spot["assets"]:
        c = a["geometry"]["coordinates"] if a["geometry"]["type"] == "Point" else None
        if c is None:
            continue
        folium.CircleMarker(
            [c[1], c[0]], radius=6, color="#222", weight=1, fill=True, fill_color="#ffd400",
            fill_opacity=0.95,
            tooltip=f'{a["kind"]} {a["code"]}: {a["owner_name"] or a["owner_department"]} '
                    f'({a["distance_m"]} m)').add_to(assets)
    assets.add_to(m)
    named["Assets nearby"] = assets
    folium.Marker([lat, lon], tooltip="the spot", icon=folium.DivIcon(
        html='<div class="spot-marker" style="width:14px;height:14px"></div>',
        icon_size=(20, 20), icon_anchor=(10, 10))).add_to(m)
    folium.LayerControl(collapsed=False, position="topleft").add_to(m)

    chain = " › ".join(f'{_esc(u["name"])} <span class="muted">{_esc(u["code"])}</span>'
                       for u in spot["chain"])
    if not spot["chain"]:
        chain = "<b>outside every grid</b>"
    owners = "".join(
        f'<h2>{_esc(o["category"]["name"])} <span class="muted">{_esc(o["category"]["code"])}'
        f'</span></h2><p>Owner: <b class="owner">{_esc(_dept(o["owner"]))}</b>, decided by '
        f'<b>{_esc(o["decided_by"])}</b>{" — <b>disputed</b>" if o["disputed"] else ""}'
        f"{_patrol(o)}"
        f"</p>{_trail_table(o)}" for o in spot["owners"])
    if not spot["owners"]:
        owners = ('<p class="muted">No category has an asset or ownership area here; '
                  "reports here go by category defaults and the street office.</p>")
    nbr = _neighbour_table(neighbours)
    zone_rows = _table(["layer", "zone", "department"],
                       [(z["layer"], z["name"], z["department_name"]) for z in spot["zones"]])
    area_rows = _table(["kind", "area", "owner", "priority"],
                       [(a["kind"], a["name"], a["owner_name"], a["priority"])
                        for a in spot["areas"]])
    asset_rows = _table(["asset", "kind", "owner", "maintainer", "m"],
                        [(a["code"], a["kind"], a["owner_name"] or a["owner_department"],
                          a["maintainer_department"], a["distance_m"])
                         for a in spot["assets"][:40]])
    grid_link = (f'<a href="/map/grid/{_esc(spot["chain"][-1]["code"])}">grid page</a>'
                 if spot["chain"] else "")
    _figure(m).html.add_child(Element(
        f'<div class="panel side" id="lookup-panel"><h1>Who is responsible here?</h1>'
        f'<div id="spot" data-lon="{lon}" data-lat="{lat}">{lon:.6f}, {lat:.6f} '
        f'<span class="muted">WGS 84 · H3 {_esc(spot["h3"])} · generation '
        f'{_esc(spot["generation"])}</span></div><p>{chain} {grid_link}</p>'
        f'<p class="muted">Click anywhere on the map to look that spot up.</p>'
        f"{owners}<h2>Department zones covering the spot</h2>{zone_rows}"
        f"<h2>Ownership areas covering the spot</h2>{area_rows}"
        f"<h2>Assets within {radius:g} m</h2>{asset_rows}"
        f"<h2>Neighbouring grids (四至)</h2>{nbr}</div>"))
    m.add_child(Script(
        f"(function(){{ var map = {m.get_name()}; window.gridopsMap = map;"
        f"window.gridopsLayers = {{{_vars(named)}}}; gridops.lookupOnClick(map, "
        f"{json.dumps({'radius': radius})}); }})();"))
    return str(_figure(m).render())


def grid_page(*, base: BaseMap, unit: dict[str, Any], chain: Sequence[dict[str, Any]],
              neighbours: Sequence[dict[str, Any]], people: Sequence[dict[str, Any]],
              patrols: Sequence[dict[str, Any]], assets: Sequence[dict[str, Any]],
              cases: dict[str, Any], kpi: dict[str, Any] | None, kpi_period: str) -> str:
    """One grid: boundary, neighbours (四至), its 1 + X + Y people, patrol shifts, assets by
    kind and owner, its cases and KPIs."""
    m = new_map(base, (unit["lon"], unit["lat"]), 16, f'{unit["name"]} ({unit["code"]})')
    g = folium.GeoJson({"type": "Feature", "geometry": unit["geometry"],
                        "properties": {"code": unit["code"], "name": unit["name"]}},
                       name="Grid", style_function=lambda _f: {
                           "color": "#1b3a6b", "weight": 4, "fillColor": "#1b3a6b",
                           "fillOpacity": 0.06},
                       tooltip=folium.GeoJsonTooltip(fields=["name", "code"]))
    g.add_to(m)
    named: dict[str, Any] = {"Grid": g}
    if neighbours:
        named[NEIGHBOURS] = _neighbour_layer(neighbours).add_to(m)
    folium.LayerControl(collapsed=False, position="topleft").add_to(m)
    crumbs = " › ".join(f'{_esc(c["name"])}' for c in chain)
    people_rows = _table(["role", "name", "phone", "department"],
                         [(p["role"], p["name"], p["phone"], p["department_name"])
                          for p in people], empty="nobody assigned")
    patrol_rows = _table(["shift", "hours", "days", "team", "department", "members"],
                         [(p["shift"], f'{p["start_time"]}–{p["end_time"]}',
                           ",".join(str(d) for d in p["weekdays"]), p["name"],
                           p["department_name"], p["members"]) for p in patrols],
                         empty="no patrol assigned")
    asset_rows = _table(["kind", "owner", "count"],
                        [(a["kind"], a["owner_name"] or a["owner_department"], a["n"])
                         for a in assets], empty="no assets recorded")
    status_rows = _table(["status", "all time", "last 30 days"],
                         [(s, n, r) for s, (n, r) in cases["by_status"].items()],
                         empty="no cases")
    latest = _table(["case", "category", "status", "reported", "department"],
                    [(c["ref"], c["category"] or c["category_code"],
                      c["status"] + (" (overdue)" if c["overdue"] else "")
                      + (" (escalated)" if c["escalation"] else ""),
                      f'{c["created_at"]:%Y-%m-%d %H:%M}', c["owner_department"])
                     for c in cases["latest"]], empty="no cases")
    if kpi:
        kpi_html = _table(["figure", "value"], [
            (k, v) for k, v in kpi.items() if k not in ("code", "name", "month")],
            empty="no figures")
    else:
        kpi_html = '<p class="muted">no cases in the period</p>'
    nbr = _neighbour_table(neighbours)
    area = unit.get("area_m2")
    _figure(m).html.add_child(Element(
        f'<div class="panel side" id="grid-panel"><div class="muted">{crumbs}</div>'
        f'<h1>{_esc(unit["name"])} <span class="muted">{_esc(unit["code"])}</span></h1>'
        f'<div class="muted">{(area or 0) / 1e6:.3f} km² · generation '
        f'{_esc(unit["generation_low"])}– · <a href="/map/lookup?lon={unit["lon"]:.7f}&'
        f'lat={unit["lat"]:.7f}">look a spot up</a></div>'
        f"<h2>People (1 + X + Y)</h2>{people_rows}<h2>Patrol shifts</h2>{patrol_rows}"
        f"<h2>Neighbouring grids (四至)</h2>{nbr}"
        f"<h2>Assets by kind and owner</h2>{asset_rows}"
        f"<h2>Cases</h2>{status_rows}<h2>Latest cases</h2>{latest}"
        f'<h2>KPIs <span class="muted">{_esc(kpi_period)}</span></h2>{kpi_html}</div>'))
    m.add_child(Script(
        f"(function(){{ var map = {m.get_name()}; var g = {g.get_name()};"
        f"window.gridopsMap = map; window.gridopsLayers = {{{_vars(named)}}};"
        f"map.fitBounds(g.getBounds(), {{paddingBottomRight: [560, 20], "
        f"paddingTopLeft: [20, 20]}}); }})();"))
    return str(_figure(m).render())


# a generation's validation problems (GET /generations/{id}/problems): kind -> label
PROBLEM_KINDS = {
    "invalid_geometry": "invalid geometry", "duplicate_code": "duplicate code",
    "bad_code": "bad code", "bad_parent": "bad parent", "outside_parent": "outside its parent",
    "sibling_overlap": "siblings overlap", "gap_in_parent": "gap in its parent"}
_GENERATION_CSS = """<style>
.gen-problems { list-style: none; margin: 0; padding: 0; }
.gen-problems li { padding: .35rem .4rem; border-bottom: 1px solid #eee; cursor: pointer;
                   border-left: 5px solid var(--kind, #b00020); font-size: .9rem; }
.gen-problems li:hover { background: #f4f4f4; }
.gen-problems li.selected { background: #fff3cd; }
.gen-problems li.no-geometry { cursor: default; }
.gen-problems .kind { font-weight: bold; }
.gen-problems .codes { font-family: monospace; }
.gen-problems .detail { color: #333; }
.gen-valid { color: #1a7f37; font-weight: bold; }
.gen-counts span { display: inline-block; margin-right: .8rem; }
.gen-counts i { display: inline-block; width: .8rem; height: .8rem; margin-right: .25rem;
                vertical-align: middle; }
</style>"""


# what the planner's page draws of a draft against the active generation (the impact)
CHANGE_KINDS = {"split": "split", "merge": "merged", "redraw": "boundary redrawn",
                "reparent": "moved to another parent", "attributes": "attributes changed",
                "new": "new", "ended": "ended"}
_IMPACT_CSS = """<style>
.impact-summary span { display: inline-block; margin-right: .8rem; }
.impact-summary b { font-size: 1.1rem; }
.impact-units { font-size: .82rem; }
.impact-units tr.unit { cursor: pointer; }
.impact-units tr.unit:hover { background: #f4f4f4; }
.impact-units tr.selected { background: #fff3cd; }
.impact-units td.num { text-align: right; white-space: nowrap; }
.impact-units .codes { font-family: monospace; }
.flag-unpatrolled { color: #fff; background: #b00020; border-radius: 3px; padding: 0 .3rem;
                    font-size: .75rem; white-space: nowrap; }
.impact-unavailable { color: #8a5a00; background: #fff8e1; padding: .4rem; }
.compare-toggle button { margin-right: .4rem; }
.compare-toggle button.on { font-weight: bold; background: #1b3a6b; color: #fff; }
.legend-line { display: inline-block; width: 1.4rem; height: 0; vertical-align: middle;
               margin-right: .25rem; border-top: 3px solid; }
#gridops-old-map { position: absolute; top: 0; bottom: 0; left: 0; display: none;
                   width: calc((100% - 35rem) / 2); border-right: 3px solid #1b3a6b; }
.side-by-side #gridops-old-map { display: block; }
.side-by-side .folium-map { position: absolute !important; left: calc((100% - 35rem) / 2)
                            !important; width: auto !important; right: 35rem; }
.map-caption { position: absolute; z-index: 900; top: 8px; padding: .15rem .5rem;
               background: rgba(255,255,255,.9); font-weight: bold; border-radius: 4px;
               display: none; }
.side-by-side .map-caption { display: block; }
</style>"""


def generation_page(*, base: BaseMap, generation: dict[str, Any],
                    levels: Sequence[dict[str, Any]], problems_url: str,
                    grids_url: str = "/grids", page_size: int = 1000,
                    compare: dict[str, Any] | None = None) -> str:
    """One generation's grid, a draft or any other, with its validation problems: the finest
    level (faintly filled) and the coarser ones as outlines, fetched page by page from
    grids_url (following links.next); each problem's own geometry drawn, and listed in a
    side panel (kind, codes, detail, area) where a click zooms to it. `levels` coarse to
    fine: {rank, key, name, units}; units None: not known to the page (a draft's), fetched
    anyway; 0: not fetched.

    compare {active, impact_url} (a generation that is not the active one): the planner's
    view of it against the active generation: the active finest outlines overlaid (or side
    by side, a toggle), the units the generation changed highlighted, and the impact
    (GET impact_url: the contract's JSON) drawn and tabled beside the map: per changed unit
    its old and new area and where the area went, the open cases that would move (drawn as
    points), the new units left without a patrol. Without an impact the page says so.

    A draft (never activated) is not published: its label, note and counts are not put
    into the page; the page's data come from the API with the planner's token."""
    draft = generation.get("activated_at") is None and not generation.get("active")
    title = (f'Generation {generation["id"]} (draft)' if draft
             else f'Generation {generation["id"]}: {generation["label"]}')
    m = new_map(base, (0.0, 0.0), 2, title)
    m.default_js = [*m.default_js, ("generation", f"{STATIC}/generation.js")]
    root = _figure(m)
    root.header.add_child(Element(_GENERATION_CSS), name="generation_css")
    if compare:
        root.header.add_child(Element(_IMPACT_CSS), name="impact_css")
    shown = [lv for lv in levels if lv.get("units") or lv.get("units") is None]
    layer_cfg = []
    for i, lv in enumerate(shown):
        colour, weight, _, _ = _depth_style(len(shown) - 1 - i)
        layer_cfg.append({"rank": lv["rank"], "key": lv["key"],
                          "label": f'{lv["name"]} ({lv["key"]})', "colour": colour,
                          "weight": weight, "filled": i == len(shown) - 1})
    state = "active" if generation.get("active") else (
        "retired" if generation.get("activated_at") else "draft (never active)")
    if draft:
        head = (f'<h1>Generation {int(generation["id"])} <span class="muted">draft'
                f'</span></h1><div class="muted" id="generation-state">{_esc(state)}: not '
                f'published; its grid, problems and impact are read with a planner\'s or '
                f'the centre\'s token</div>')
    else:
        units = " · ".join(f'{_esc(lv["name"])} {int(lv.get("units") or 0):,}'
                           for lv in levels)
        head = (f'<h1>Generation {int(generation["id"])} <span class="muted">'
                f'{_esc(generation["label"])}</span></h1>'
                f'<div class="muted" id="generation-state">{_esc(state)} · created '
                f'{_esc(_day(generation.get("created_at")))}'
                f'{" · " + _esc(generation["note"]) if generation.get("note") else ""}</div>'
                f'<div class="muted">{units or "no units"}</div>')
    legend = "".join(f'<span><i style="background:{c}"></i>{_esc(t)}</span>'
                     for c, t in zip(_problem_colours(), PROBLEM_KINDS.values(), strict=True))
    impact = ""
    if compare:
        impact = (
            f'<h2>Against the active generation {int(compare["active"])}</h2>'
            f'<div class="compare-toggle" id="compare-toggle">'
            f'<button type="button" id="mode-overlay" class="on">overlaid</button>'
            f'<button type="button" id="mode-side">side by side</button></div>'
            f'<div class="muted gen-counts">'
            f'<span><i class="legend-line" style="border-color:{OLD_COLOUR};'
            f'border-top-style:dashed"></i>active (old)</span>'
            f'<span><i class="legend-line" style="border-color:{NEW_COLOUR}"></i>'
            f'this generation (new)</span>'
            f'<span><i style="background:{CHANGED_COLOUR}"></i>changed units</span>'
            f'<span><i style="background:{CASE_COLOUR};border-radius:50%"></i>open cases '
            f'that would move</span></div>'
            f'<h2>Impact <span class="muted" id="impact-took"></span></h2>'
            f'<div id="impact-body"><p class="muted">loading the impact…</p></div>')
    side_map = ('<div id="gridops-old-map"></div>'
                '<div class="map-caption" id="caption-old" style="left: 8px">active (old)'
                '</div><div class="map-caption" id="caption-new" style="right: calc(35rem + '
                '8px)">this generation (new)</div>') if compare else ""
    root.html.add_child(Element(
        f'{side_map}<div class="panel side" id="generation-panel">{head}'
        f'<div class="status" id="gridops-status">loading the grid…</div>{impact}'
        f'<h2>Problems <span class="muted" id="problem-summary"></span></h2>'
        f'<div class="gen-counts muted">{legend}</div>'
        f'<div id="problems-body"><p class="muted">loading the problems…</p></div></div>'))
    cfg: dict[str, Any] = {
        "generation": int(generation["id"]), "draft": draft, "levels": layer_cfg,
        "grids_url": grids_url, "problems_url": problems_url, "page_size": int(page_size),
        "kinds": {k: {"label": t, "colour": c} for (k, t), c
                  in zip(PROBLEM_KINDS.items(), _problem_colours(), strict=True)}}
    if compare:
        finest = shown[-1]["rank"] if shown else None
        cfg["compare"] = {"active": int(compare["active"]), "impact_url": compare["impact_url"],
                          "finest": finest, "changes": CHANGE_KINDS,
                          "colours": {"old": OLD_COLOUR, "new": NEW_COLOUR,
                                      "changed": CHANGED_COLOUR, "case": CASE_COLOUR}}
    cfg_js = json.dumps(cfg).replace("</", "<\\/")  # never ends the script element
    m.add_child(Script(
        f"(function(){{ gridopsGeneration.start({m.get_name()}, {cfg_js}); }})();"))
    return str(root.render())


OLD_COLOUR, NEW_COLOUR, CHANGED_COLOUR, CASE_COLOUR = "#d62f27", "#1b3a6b", "#ff9800", "#7b2cbf"


def _problem_colours() -> tuple[str, ...]:
    return ("#b00020", "#7b2cbf", "#c2185b", "#ef6c00", "#d62f27", "#e91e63", "#1565c0")


def _day(v: Any) -> str:
    return v.strftime("%Y-%m-%d %H:%M") if hasattr(v, "strftime") else str(v or "")
