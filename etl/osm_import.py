"""Store OSM street furniture read by etl.osm_assets through the validating importer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shapely.geometry import mapping
from sqlalchemy.orm import Session

from etl.osm_assets import OsmAssetConfig, OsmImportReport, read_osm_assets
from layers import responsibility as resp


def import_osm_assets(session: Session, pbf: Path, config: OsmAssetConfig, *,
                      store: bool = True) -> tuple[OsmImportReport, dict[str, Any] | None]:
    """Read a .osm.pbf and (unless store is False) import its assets; rows whose code is
    already current or whose departments are unknown come back refused with a reason."""
    assets, report = read_osm_assets(pbf, config)
    if not store:
        return report, None
    rows = ((i, {"code": a.code, "category_code": a.category_code, "kind": a.kind,
                 "name": a.name, "supervising_department": a.supervising_department,
                 "owner_department": a.owner_department,
                 "maintainer_department": a.maintainer_department, "state": a.state,
                 "source": "osm", "attributes": a.attributes}, mapping(a.geometry))
            for i, a in enumerate(assets, start=1))
    rep = resp.import_rows(session, resp.layer("assets"), rows, actor="osm-import")
    return report, rep.as_dict()
