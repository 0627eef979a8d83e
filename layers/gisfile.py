"""GIS files in and out through GDAL (pyogrio): GeoPackage, Shapefile (or a .zip of one),
GeoJSON, FlatGeobuf and CSV (WKT or lon/lat columns), in any CRS PROJ knows or the Chinese
web-map systems GCJ-02/BD-09; everything inside gridops is lon/lat (EPSG:4326).

Every problem with a file is an InvalidInput naming the file and what is wrong with it, so an
import answers a 4xx and loads nothing."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
import shapely.geometry
from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError
from shapely.geometry.base import BaseGeometry

from spatial import crs as crsmod
from spatial.errors import InvalidGeometry, InvalidInput, TooLarge, UnsupportedMediaType

# what `--format` / `f=` accept, the GDAL driver and the file suffix of each
FORMATS: dict[str, tuple[str, str]] = {
    "gpkg": ("GPKG", ".gpkg"),
    "shp": ("ESRI Shapefile", ".shp"),
    "geojson": ("GeoJSON", ".geojson"),
    "fgb": ("FlatGeobuf", ".fgb"),
    "csv": ("CSV", ".csv"),
}
# media types of the files an upload may be, and the answers of an export
MEDIA_TYPES: dict[str, str] = {
    "gpkg": "application/geopackage+sqlite3",
    "shp": "application/zip",
    "geojson": "application/geo+json",
    "fgb": "application/flatgeobuf",
    "csv": "text/csv",
}
_SUFFIX_FORMAT = {".gpkg": "gpkg", ".shp": "shp", ".zip": "shp", ".geojson": "geojson",
                  ".json": "geojson", ".fgb": "fgb", ".csv": "csv"}
_MEDIA_FORMAT = {v: k for k, v in MEDIA_TYPES.items()} | {
    "application/json": "geojson", "application/x-zip-compressed": "shp",
    "application/x-sqlite3": "gpkg", "application/vnd.sqlite3": "gpkg",
    "application/vnd.flatgeobuf": "fgb",
}
_SHP_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")
# CSV columns GDAL should take as the geometry (WKT) or the point's lon/lat
_CSV_OPEN = {
    "GEOM_POSSIBLE_NAMES": "WKT,wkt,geometry,geom,the_geom,GEOMETRY,Geometry,几何",
    "X_POSSIBLE_NAMES": "lon,lng,longitude,x,LON,LNG,X,经度",
    "Y_POSSIBLE_NAMES": "lat,latitude,y,LAT,Y,纬度",
    "KEEP_GEOM_COLUMNS": "NO",
    "AUTODETECT_TYPE": "NO",
}
# encodings a Chinese GIS office's Shapefile without a .cpg is likely to be in, tried in order
_GUESSED_ENCODINGS = ("UTF-8", "GB18030")


@dataclass
class Table:
    """One layer read from a file: its fields, its geometries in lon/lat, and how it was read."""

    source: str
    layer: str
    fields: dict[str, np.ndarray]
    geometry: np.ndarray  # of shapely geometries (None where a feature has none)
    crs: str  # the CRS the coordinates were given in
    encoding: str | None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.geometry)

    def value(self, name: str, i: int) -> Any:
        """Field `name` of feature i as a plain Python value (None for null)."""
        v = self.fields[name][i]
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        return v.item() if isinstance(v, np.generic) else v


def guess_format(name: str | None, media_type: str | None = None) -> str:
    """The format key of a file from its media type or its name's suffix."""
    if media_type:
        mt = media_type.split(";")[0].strip().lower()
        if mt in _MEDIA_FORMAT:
            return _MEDIA_FORMAT[mt]
    if name:
        suffix = Path(name).suffix.lower()
        if suffix in _SUFFIX_FORMAT:
            return _SUFFIX_FORMAT[suffix]
    known = ", ".join(sorted(set(_SUFFIX_FORMAT)))
    raise UnsupportedMediaType(
        f"cannot tell the format of {name or 'the upload'!r}"
        + (f" (media type {media_type})" if media_type else "")
        + f": give a file ending in one of {known}")


# ---------------------------------------------------------------- reading


@contextmanager
def materialised(data: bytes, fmt: str, name: str = "upload",
                 wanted: Sequence[str] = (".shp",)) -> Iterator[Path]:
    """Upload bytes as a file GDAL can open (a zipped Shapefile unpacked: the member with a
    `wanted` suffix), removed after."""
    with tempfile.TemporaryDirectory(prefix="gridops-upload-") as tmp:
        base = Path(tmp)
        if fmt == "shp" or data[:4] == b"PK\x03\x04":
            yield unzip(data, base, name, wanted)
            return
        path = base / f"upload{FORMATS[fmt][1]}"
        path.write_bytes(data)
        yield path


def unzip(data: bytes, base: Path, name: str, wanted: Sequence[str] = (".shp",)) -> Path:
    """A zip archive (a Shapefile's parts) unpacked into base; the first member with one of
    the `wanted` suffixes, in their order of preference, is the file to open."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise InvalidInput(f"{name}: not a zip archive ({e}); a Shapefile upload is a .zip "
                           "of its .shp, .shx, .dbf, .prj (and .cpg)") from e
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        found = sorted((m for m in members if m.filename.lower().endswith(tuple(wanted))),
                       key=lambda m: [m.filename.lower().endswith(w) for w in wanted].index(True))
        if not found:
            held = ", ".join(m.filename for m in members[:8]) or "nothing"
            raise InvalidInput(f"{name}: the zip archive holds no {' or '.join(wanted)} file "
                               f"(it holds {held})")
        for m in members:
            target = (base / m.filename).resolve()
            if base.resolve() not in target.parents:
                raise InvalidInput(f"{name}: the zip archive has a path outside it: "
                                   f"{m.filename!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(m))
        return base / found[0].filename


def list_layers(path: str | os.PathLike[str], shown: str | None = None
                ) -> list[tuple[str, str | None]]:
    """The layers of a file: (name, geometry type or None)."""
    name = shown or Path(path).name
    try:
        return [(str(n), None if t is None else str(t))
                for n, t in pyogrio.list_layers(str(path))]
    except (DataSourceError, OSError) as e:
        why = _short(e).replace(f"'{path}'", "it").replace(str(path), name)
        raise InvalidInput(f"{name}: not a GIS file GDAL can read ({why})") from e


def read_table(path: str | os.PathLike[str], *, layer: str | None = None,
               encoding: str | None = None, crs: str | None = None,
               display_name: str | None = None) -> Table:
    """One layer of a GIS file, geometries converted to lon/lat.

    `crs` overrides what the file declares (a file traced on an AMap base map says WGS84
    but is GCJ-02); a file that declares none and has no `crs` given is refused, except CSV,
    read as WGS84 lon/lat. A Shapefile's encoding comes from its .cpg, else `encoding`, else
    UTF-8 or GB18030, whichever decodes every value."""
    p = Path(path)
    shown = display_name or p.name
    if not p.exists():
        raise InvalidInput(f"{shown}: no such file")
    if p.suffix.lower() == ".zip":  # a zipped Shapefile: unpacked, so its .cpg is seen
        with materialised(p.read_bytes(), "shp", shown) as inner:
            return read_table(inner, layer=layer, encoding=encoding, crs=crs,
                              display_name=shown)
    is_csv = p.suffix.lower() == ".csv"
    is_shp = p.suffix.lower() == ".shp"
    layers_ = list_layers(p, shown)
    if not layers_:
        raise InvalidInput(f"{shown}: the file holds no layer")
    if layer is None:
        spatial = [n for n, t in layers_ if t is not None]
        if len(spatial) > 1:
            raise InvalidInput(f"{shown}: the file holds {len(spatial)} layers with geometry "
                               f"({', '.join(spatial[:10])}); name one with --layer / layer=")
        layer = spatial[0] if spatial else layers_[0][0]
    elif layer not in {n for n, _ in layers_}:
        raise InvalidInput(f"{shown}: no layer {layer!r}; it has "
                           f"{', '.join(n for n, _ in layers_[:20])}")
    kwargs: dict[str, Any] = dict(_CSV_OPEN) if is_csv else {}
    tries: Sequence[str | None] = [encoding]
    if encoding is None and is_shp and not _has_cpg(p):
        tries = _GUESSED_ENCODINGS
    notes: list[str] = []
    last: Exception | None = None
    for enc in tries:
        try:
            meta, _, geoms, values = pyogrio.raw.read(str(p), layer=layer, encoding=enc,
                                                      **kwargs)
            break
        except UnicodeDecodeError as e:
            last = e
        except (DataSourceError, DataLayerError, FieldError, GeometryError) as e:
            raise InvalidInput(f"{shown}: GDAL cannot read layer {layer!r} ({_short(e)})") from e
    else:
        tried = ", ".join(str(t) for t in tries)
        raise InvalidInput(f"{shown}: the text of its fields is not valid {tried} "
                           f"({_short(last)}); give the file's encoding with --encoding / "
                           "encoding= (GBK and GB18030 are common)")
    if encoding is None and len(tries) > 1:
        notes.append(f"no .cpg: the fields decoded as {enc}")
    if meta.get("geometry_type") is None or geoms is None:
        raise InvalidInput(f"{shown}: layer {layer!r} has no geometry column"
                           + (" (a CSV needs a WKT column named WKT/geometry, or lon and lat "
                              "columns)" if is_csv else ""))
    if len(geoms) == 0:
        raise InvalidInput(f"{shown}: layer {layer!r} holds no features (an empty file)")
    names = [str(n) for n in meta["fields"]]
    fields = {n: np.asarray(v, dtype=object) if v.dtype.kind in "OUS" else v
              for n, v in zip(names, values, strict=True)}
    shapes = shapely.from_wkb(geoms)
    declared = meta.get("crs")
    used = crs or (_crs_name(declared) if declared else None) or ("EPSG:4326" if is_csv else None)
    if used is None:
        raise InvalidInput(f"{shown}: the file declares no coordinate reference system (no "
                           ".prj?); give it with --crs / crs= (e.g. EPSG:4549, EPSG:4490, "
                           "GCJ-02)")
    if crs and declared and _norm(crs) != _norm(declared):
        notes.append(f"coordinates read as {crs}, not the declared {declared}")
    shapes = to_lonlat(shapes, used, shown)
    return Table(source=shown, layer=str(layer), fields=fields, geometry=shapes, crs=str(used),
                 encoding=meta.get("encoding"), notes=notes)


def _has_cpg(shp: Path) -> bool:
    return any(shp.with_suffix(s).exists() for s in (".cpg", ".CPG"))


def _norm(name: str) -> str:
    try:
        return crsmod.parse_crs(name).key
    except InvalidInput:
        return name


def _short(e: BaseException | None) -> str:
    text = str(e).strip().splitlines()[0] if e is not None and str(e).strip() else repr(e)
    return text[:200]


def to_lonlat(geoms: np.ndarray, crs: str, shown: str = "file") -> np.ndarray:
    """Every vertex from `crs` to WGS84 lon/lat (GCJ-02/BD-09 by the resolver's own
    inverse); 422 naming the file when the coordinates do not fit the CRS."""
    try:
        info = crsmod.parse_crs(_crs_name(crs))
    except InvalidInput as e:
        raise InvalidInput(f"{shown}: its coordinate reference system {crs!r} is not one "
                           f"gridops can convert ({e})") from e
    if info.key == crsmod.WGS84_KEY:
        out = geoms
    else:
        def convert(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            lon, lat, _ = crsmod.to_wgs84(x, y, info.key)
            return lon, lat
        try:
            out = shapely.transform(geoms, convert, interleaved=False)
        except InvalidInput as e:
            raise InvalidInput(f"{shown}: coordinates do not fit {info.name} ({info.key}): "
                               f"{e}; is the CRS right (--crs / crs=)?") from e
    _check_lonlat(out, shown, info.key)
    return out


def lonlat_geometry(value: Any, crs: str | None, where: str) -> BaseGeometry:
    """One geometry a caller gives (a GeoJSON geometry object, or one already parsed) in
    `crs` (None: lon/lat) -> a 2-D lon/lat shapely geometry; 422 naming where it is bad."""
    if isinstance(value, BaseGeometry):
        g = value
    elif isinstance(value, dict) and "type" in value:
        try:
            g = shapely.geometry.shape(value)
        except Exception as e:
            raise InvalidGeometry(f"{where}: not a GeoJSON geometry ({type(e).__name__}: "
                                  f"{str(e)[:80]})") from None
    else:
        raise InvalidGeometry(f"{where}: a GeoJSON geometry object is needed")
    if g.is_empty:
        raise InvalidGeometry(f"{where}: the geometry is empty")
    if g.has_z:
        g = shapely.force_2d(g)
    if not np.isfinite(shapely.get_coordinates(g)).all():
        raise InvalidGeometry(f"{where}: coordinates must be finite numbers")
    if crs is not None:
        return to_lonlat(np.array([g], dtype=object), crs, where)[0]
    x0, y0, x1, y1 = g.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise InvalidGeometry(f"{where}: coordinates are not lon/lat (bounds {x0:g} {y0:g} "
                              f"{x1:g} {y1:g}); name their crs")
    return g


def _crs_name(crs: str) -> str:
    """A CRS as GDAL reports it ('EPSG:4549', a WKT or PROJ string) -> a name parse_crs reads."""
    if crs.upper().startswith("EPSG:") or len(crs) < 24:
        return crs
    try:
        from pyproj import CRS
        auth = CRS.from_user_input(crs).to_authority(min_confidence=70)
    except Exception:  # any PROJ failure means "unknown", said by the caller
        auth = None
    return f"{auth[0]}:{auth[1]}" if auth else crs


def _check_lonlat(geoms: np.ndarray, shown: str, crs: str) -> None:
    present = geoms[~shapely.is_missing(geoms)]
    if not len(present):
        return
    x0, y0, x1, y1 = shapely.total_bounds(present)
    if not (np.isfinite([x0, y0, x1, y1]).all() and -180 <= x0 <= x1 <= 180
            and -90 <= y0 <= y1 <= 90):
        raise InvalidInput(f"{shown}: coordinates read as {crs} fall outside lon/lat range "
                           f"(bounds {x0:.3f} {y0:.3f} {x1:.3f} {y1:.3f}); give the file's "
                           "real CRS with --crs / crs=")


def read_upload(data: bytes, *, name: str | None, media_type: str | None, max_bytes: int,
                layer: str | None = None, encoding: str | None = None,
                crs: str | None = None) -> Table:
    """An uploaded file (bytes) read as `read_table` reads a path; 413 above max_bytes."""
    if len(data) > max_bytes:
        raise TooLarge(f"the file is {len(data):,} bytes; at most {max_bytes:,} are accepted "
                       "(GRIDOPS_IMPORT_MAX_BYTES)")
    if not data:
        raise InvalidInput(f"{name or 'the upload'}: the file is empty")
    fmt = guess_format(name, media_type)
    with materialised(data, fmt, name or "upload") as path:
        return read_table(path, layer=layer, encoding=encoding, crs=crs,
                          display_name=name or f"upload ({fmt})")


# ---------------------------------------------------------------- writing


def write_table(path: str | os.PathLike[str], fmt: str, fields: Mapping[str, Sequence[Any]],
                geometry: Sequence[BaseGeometry | None], *, layer: str,
                crs: str | None = None) -> list[Path]:
    """Write features (lon/lat geometries) as `fmt`, converted to `crs` (default EPSG:4326);
    full coordinate precision. Returns the files written (a Shapefile is several)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format: unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    driver, _ = FORMATS[fmt]
    p = Path(path)
    geoms = np.asarray(geometry, dtype=object)
    target = crsmod.parse_crs(crs) if crs else crsmod.parse_crs("EPSG:4326")
    if target.key != crsmod.WGS84_KEY:
        def convert(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return crsmod.from_wgs84(x, y, target.key)
        geoms = shapely.transform(geoms, convert, interleaved=False)
    crs_out = target.key if target.key.startswith("EPSG:") else None
    if fmt == "csv":
        _write_csv(p, fields, geoms)
        return [p]
    names = list(fields)
    data = [_column(fields[n]) for n in names]
    kinds = {g.geom_type for g in geoms if g is not None}
    if kinds <= {"Polygon", "MultiPolygon"}:
        gtype, promote = "MultiPolygon", True
    elif kinds <= {"LineString", "MultiLineString"} and len(kinds) == 2:
        gtype, promote = "MultiLineString", True
    elif len(kinds) == 1:
        gtype, promote = kinds.pop(), False
    elif fmt == "shp":
        raise InvalidInput(f"a Shapefile holds one geometry type; this layer has "
                           f"{', '.join(sorted(kinds))}: export it as gpkg, or one kind at a time")
    else:
        gtype, promote = "Unknown", False
    options: dict[str, Any] = {}
    if fmt == "geojson":
        options["RFC7946"] = "NO"
        options["WRITE_NAME"] = "NO"
        # GDAL's default (15 significant figures) turns 121.24000000000001 into 121.24;
        # 17 decimals give every double back exactly
        options["COORDINATE_PRECISION"] = "17"
    wkb = shapely.to_wkb(geoms, output_dimension=2)
    pyogrio.raw.write(str(p), wkb, data, names, layer=layer, driver=driver,
                      geometry_type=gtype, promote_to_multi=promote, crs=crs_out,
                      encoding="UTF-8", layer_options=options or None)
    if fmt == "shp":
        return [f for f in (p.with_suffix(s) for s in (".shp", *_SHP_SIDECARS)) if f.exists()]
    return [p]


def _column(values: Sequence[Any]) -> np.ndarray:
    """A field as GDAL wants it: typed numbers stay typed, text and mixed columns are str."""
    arr = np.asarray(values, dtype=object)
    present = [v for v in arr if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return np.array([None if v is None else int(v) for v in arr], dtype=object)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if len(present) == len(arr):
            return np.asarray(arr, dtype=np.int64)
        return np.array([np.nan if v is None else float(v) for v in arr])
    if present and all(isinstance(v, float) for v in present):
        return np.array([np.nan if v is None else v for v in arr], dtype=np.float64)
    return np.array([None if v is None else (v if isinstance(v, str) else str(v))
                     for v in arr], dtype=object)


def _write_csv(p: Path, fields: Mapping[str, Sequence[Any]], geoms: np.ndarray) -> None:
    """CSV with a WKT column at full precision (GDAL's CSV writer rounds to 15 digits)."""
    names = list(fields)
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["WKT", *names])
        wkt = shapely.to_wkt(geoms, rounding_precision=-1, trim=True)
        for i, g in enumerate(wkt):
            w.writerow([g or "", *("" if fields[n][i] is None else fields[n][i]
                                   for n in names)])


def zip_files(files: Sequence[Path]) -> bytes:
    """The files of a Shapefile (or any set) as one .zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, arcname=f.name)
    return buf.getvalue()


def export_bytes(fmt: str, fields: Mapping[str, Sequence[Any]],
                 geometry: Sequence[BaseGeometry | None], *, layer: str,
                 crs: str | None = None) -> bytes:
    """An export as one download: the file, or a zip of a Shapefile's parts."""
    with tempfile.TemporaryDirectory(prefix="gridops-export-") as tmp:
        path = Path(tmp) / f"{layer}{FORMATS[fmt][1]}"
        written = write_table(path, fmt, fields, geometry, layer=layer, crs=crs)
        if fmt == "shp":
            return zip_files(written)
        return path.read_bytes()
