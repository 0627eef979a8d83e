"""Leaflet and Leaflet.VectorGrid (the wall's vector tiles), served by gridops itself so
that maps work on a command centre's closed network.

The set-up (scripts/setup.sh) runs `python -m map_ui.vendor` once: it fetches the pinned
release from the npm registry, checks its sha512 integrity and unpacks dist/ into
map_ui/static/vendor/ (not committed). Pages never load scripts from the internet.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

from layers.settings import Settings

VENDOR = Path(__file__).parent / "static" / "vendor"
PACKAGES = {
    "leaflet": ("1.9.4", "https://registry.npmjs.org/leaflet/-/leaflet-1.9.4.tgz",
                "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWy"
                "ZAxwQixURb+FA74PA=="),
    "leaflet.vectorgrid": ("1.3.0",
                           "https://registry.npmjs.org/leaflet.vectorgrid/-/"
                           "leaflet.vectorgrid-1.3.0.tgz",
                           "sha512-kWmj1pKM+MVdo/7Mg5zsB3YrGZvo/uIuiANV9MvWUFOG+Y2xAJzrteDhoIcCg"
                           "TjHSSRJ36xdeGdIQVhuWjnCZw=="),
}
NEEDED = ("leaflet/leaflet.js", "leaflet/leaflet.css", "leaflet/images/layers.png",
          "leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js")


def present() -> bool:
    """Whether every vendored file is in place."""
    return all((VENDOR / f).is_file() for f in NEEDED)


def fetch(name: str, version: str, url: str, integrity: str, dest: Path,
          registry: str | None = None) -> None:
    """Download an npm tarball (from a mirror registry if given), verify it, unpack its dist/
    into dest/name."""
    if registry:
        url = url.replace("https://registry.npmjs.org", registry.rstrip("/"))
    with urllib.request.urlopen(url, timeout=60) as r:
        data = r.read()
    algo, _, want = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise SystemExit(f"{name}@{version}: integrity mismatch for {url}")
    target = dest / name
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if not m.isfile() or not m.name.startswith("package/dist/"):
                continue
            rel = Path(m.name.removeprefix("package/dist/"))
            if rel.is_absolute() or ".." in rel.parts:
                continue
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            f = tar.extractfile(m)
            assert f is not None
            out.write_bytes(f.read())


def main() -> int:
    """Fetch what is missing; 0 when everything is in place."""
    if present():
        return 0
    registry = Settings().npm_registry  # GRIDOPS_NPM_REGISTRY
    for name, (version, url, integrity) in PACKAGES.items():
        if all((VENDOR / f).is_file() for f in NEEDED if f.startswith(name + "/")):
            continue
        print(f"map_ui: fetching {name}@{version} from the npm registry", file=sys.stderr)
        fetch(name, version, url, integrity, VENDOR, registry)
    if not present():
        print("map_ui: vendored files still missing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
