"""QGIS's own OAPIF provider against a running gridops, headless; run by Debian's
/usr/bin/python3 (python3-qgis), not by the project's venv:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/support/qgis_probe.py '<json>'

The JSON argument: {"base": "http://127.0.0.1:PORT", "profile": "<empty dir>", "unit":
"<a finest unit's code>", "street": "<its parent_code>", "bbox": [x0, y0, x1, y1] (CRS84),
"zones_before": "<ISO time>"}. Prints one JSON object on stdout: what QGIS saw, step by
step. Before each step it GETs /health?probe=<step>, so the server's access log can be cut
into the requests each step made. Imports nothing from gridops (another interpreter)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsFields,
    QgsGeometry,
    QgsJsonUtils,
    QgsNetworkAccessManager,
    QgsProject,
    QgsRectangle,
    QgsVectorDataProvider,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QTextCodec, QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"


def mark(base: str, step: str) -> None:
    """A request the access log shows between two steps."""
    QgsNetworkAccessManager.instance().blockingGet(
        QNetworkRequest(QUrl(f"{base}/health?probe={step}")))


def get(url: str) -> tuple[int, bytes]:
    reply = QgsNetworkAccessManager.instance().blockingGet(QNetworkRequest(QUrl(url)))
    status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
    return int(status or 0), bytes(reply.content())


def layer(base: str, typename: str, extra: str = "") -> QgsVectorLayer:
    uri = f"url='{base}/ogc' typename='{typename}' pagingEnabled='true' {extra}".strip()
    return QgsVectorLayer(uri, typename, "OAPIF")


def rect(r: QgsRectangle) -> list[float]:
    return [r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum()]


def centroid(geom: Any) -> list[float]:
    c = geom.centroid().asPoint()
    return [c.x(), c.y()]


def describe(vl: QgsVectorLayer) -> dict[str, Any]:
    if not vl.isValid():  # (an invalid OAPIF layer's extent or count crashes 3.22)
        return {"valid": False, "error": vl.error().summary()}
    return {"valid": True, "crs": vl.crs().authid(),
            "count": vl.featureCount(), "extent": rect(vl.extent()),
            "fields": {f.name(): f.typeName() for f in vl.fields()}}


def codes(vl: QgsVectorLayer, request: QgsFeatureRequest | None = None) -> list[str]:
    it = vl.getFeatures(request) if request is not None else vl.getFeatures()
    return [str(f["code"]) for f in it]


def steps(base: str, cfg: dict[str, Any], out: dict[str, Any]) -> None:
    """Each step's findings into `out` (a layer still alive at exitQgis crashes 3.22)."""
    # 1. the grid's finest level: count, extent, CRS, every feature by following next
    mark(base, "plain")
    vl = layer(base, "grid-grid")
    out["plain"] = describe(vl)
    if vl.isValid():
        feats = [(str(f["code"]), f) for f in vl.getFeatures()]
        out["plain"]["codes"] = [code for code, _ in feats]
        unit = dict(feats).get(cfg["unit"])
        out["plain"]["unit_centroid"] = centroid(unit.geometry()) if unit else None
        out["plain"]["unit_bbox"] = rect(unit.geometry().boundingBox()) if unit else None
        out["plain"]["wkb"] = QgsWkbTypes.displayString(vl.wkbType())
        caps = vl.dataProvider().capabilities()
        out["plain"]["editing"] = {
            name: bool(caps & getattr(QgsVectorDataProvider, name))
            for name in ("AddFeatures", "ChangeAttributeValues", "ChangeGeometries",
                         "DeleteFeatures")}

        # 2. a QGIS expression as the layer's subset string
        mark(base, "subset")
        sub = layer(base, "grid-grid")
        ok = sub.setSubsetString(f"\"parent_code\" = '{cfg['street']}'")
        out["subset"] = {"set": ok, "count": sub.featureCount(), "codes": codes(sub)}

        # 3. a rectangle, pushed to the server as bbox= when restrictToRequestBBOX is on
        mark(base, "bbox")
        bx = layer(base, "grid-grid", "restrictToRequestBBOX='1'")
        r = QgsRectangle(*cfg["bbox"])
        out["bbox"] = {"codes": codes(bx, QgsFeatureRequest().setFilterRect(r))}

    # 4. the provider's CRS option: srsname
    mark(base, "srsname")
    cg = layer(base, "grid-grid", "srsname='EPSG:4490'")
    out["srsname"] = describe(cg)
    if cg.isValid():
        got = [f for f in cg.getFeatures() if str(f["code"]) == cfg["unit"]]
        out["srsname"]["unit_centroid"] = centroid(got[0].geometry()) if got else None

    # 5. EPSG:4490's axis order as QGIS knows it, on the server's crs= answer
    mark(base, "axis")
    c4490 = QgsCoordinateReferenceSystem("EPSG:4490")
    status, body = get(f"{base}/ogc/collections/grid-grid/items/{cfg['unit']}"
                       f"?crs={EPSG}4490")
    parsed = QgsJsonUtils.stringToFeatureList(body.decode(), QgsFields(),
                                              QTextCodec.codecForName("UTF-8"))
    raw = parsed[0].geometry() if parsed else None
    axis: dict[str, Any] = {"status": status, "inverted": c4490.hasAxisInverted(),
                            "raw_centroid": centroid(raw) if raw else None}
    if raw is not None:
        g = raw.constGet().clone()
        if c4490.hasAxisInverted():  # as 3.32+'s downloader does (runGenericDownload)
            g.swapXy()
        axis["swapped_centroid"] = centroid(QgsGeometry(g))
    if out.get("plain", {}).get("unit_centroid"):
        ct = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), c4490,
                                    QgsProject.instance())
        p = ct.transform(*out["plain"]["unit_centroid"])
        axis["transformed_centroid"] = [p.x(), p.y()]
    out["axis"] = axis

    # 6. a comparison on a date-time field: QGIS 3.22 sends it as datetime=
    mark(base, "datetime")
    zl = layer(base, "zones")
    out["datetime"] = {"fields": {f.name(): f.typeName() for f in zl.fields()},
                       "valid": zl.isValid()}
    if zl.isValid():
        ok = zl.setSubsetString(f"\"valid_from\" <= '{cfg['zones_before']}'")
        out["datetime"].update(set=ok, count=zl.featureCount(),
                               ids=[f"{f['layer']}~{f['code']}" for f in zl.getFeatures()])
    mark(base, "end")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    base = cfg["base"]
    app = QgsApplication([], False, cfg["profile"])
    app.setPrefixPath("/usr", True)
    app.initQgis()
    log: list[str] = []  # QGIS's message log (the provider's errors), also on stderr

    def logged(message: str, tag: str, level: Any) -> None:
        log.append(f"{tag}: {message}")
        print(f"qgis log {tag}: {message}", file=sys.stderr, flush=True)

    QgsApplication.messageLog().messageReceived.connect(logged)
    out: dict[str, Any] = {"qgis": Qgis.QGIS_VERSION}
    try:
        steps(base, cfg, out)  # its layers are gone when it returns, before exitQgis
    finally:
        out["log"] = log
        print(json.dumps(out))
        sys.stdout.flush()
        app.exitQgis()


if __name__ == "__main__":
    main()
