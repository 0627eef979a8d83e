"""Deployment settings, read from GRIDOPS_* environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LEVELS = "district:区,street:街镇,community:居村,grid:网格"


def default_home() -> Path:
    """Where gridops keeps its cluster and data: /var/lib/gridops for root, else XDG data."""
    if os.geteuid() == 0:
        # root's home is closed to the postgres user that must own the cluster
        return Path("/var/lib/gridops")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "gridops"


class Settings(BaseSettings):
    """Everything a deployment may change; built by the CLI or create_app, never at import."""

    model_config = SettingsConfigDict(env_prefix="GRIDOPS_", env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset = gridops runs its own PostGIS cluster"
    )
    home: Path = Field(default_factory=default_home, description="data directory")
    db_port: int = Field(default=54329, description="preferred port of the embedded cluster")
    pg_bindir: Path | None = Field(default=None, description="PostgreSQL binaries (pg_config)")
    levels: str = Field(
        default=DEFAULT_LEVELS,
        description="grid levels, coarse to fine, as key:name pairs separated by commas",
    )
    code_lengths: str = Field(
        default="6,9,12,15",
        description="digits of a unit code per level, coarse to fine, one per GRIDOPS_LEVELS "
        "entry; an empty entry or * = any length")
    metric_srid: int = Field(
        default=4549, description="metric CRS for areas and lengths (CGCS2000 3-degree GK 120E)"
    )
    topology_tolerance_m2: float = Field(
        default=1.0, description="gap/overlap area tolerated by the grid invariants, in m²"
    )
    timezone: str = Field(default="Asia/Shanghai",
                          description="local time of shifts and daily figures")
    dispute_margin_m: float = Field(
        default=1.0, description="two assets of different owners closer than this to each "
        "other's distance make the owner disputed")
    duplicate_radius_m: float = Field(default=30.0, description="same category this close...")
    duplicate_window_h: float = Field(default=72.0, description="...and this recent = same case")
    escalate_second_tier_h: float = Field(
        default=24.0, description="hours past the deadline before the second-tier meeting")
    escalate_first_tier_h: float = Field(
        default=72.0, description="hours past the deadline before the first-tier meeting")
    scheduler_interval_s: float = Field(
        default=60.0, description="escalation run interval in the server; 0 = off (cron)")
    kpi_config: Path | None = Field(
        default=None, description="a TOML file of KPI settings: response_window_h, "
        "[weights.<unit>] and [grades] (thresholds = [[\"A+\", 0.95], ...], lowest); "
        "unset = the defaults")
    photos_dir: Path | None = Field(default=None, description="where uploaded photos are "
                                    "kept (default $GRIDOPS_HOME/photos)")
    photo_max_bytes: int = Field(default=10 * 1024 * 1024, description="per photo")
    token_cache_s: float = Field(
        default=30.0, ge=0, description="seconds a worker trusts a token it verified "
        "(revocations reach every worker at once by NOTIFY; 0 = check every request)")
    tiles_prewarm: bool = Field(default=True, description="build the wall's first vector "
                                "tiles in the background after start-up and activations")
    access_log: bool = Field(default=False, description="log every HTTP request (costs "
                             "about a third of the single-resolve throughput)")
    map_tiles: str | None = Field(
        default=None, description="tile URL template of the map pages' base map, e.g. an "
        "intranet server's http://tiles.local/{z}/{x}/{y}.png; unset = no tiles (offline)")
    map_attribution: str = Field(default="", description="attribution of the tiles")
    map_title: str = Field(default="城市网格化管理指挥中心 · Grid command centre",
                           description="title of the wall map")
    map_refresh_s: int = Field(default=60, description="wall map refresh, seconds (0 = off)")
    jobs_worker: bool = Field(default=True, description="run background jobs (grid imports) "
                              "in this server's workers; off = another process runs them")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    page_size_max: int = 5000
    batch_max_points: int = Field(default=1_000_000, description="points per batch request")
    upload_max_bytes: int = Field(default=64 * 1024 * 1024,
                                  description="layer uploads and imports, in bytes")
    import_max_bytes: int = Field(default=256 * 1024 * 1024, description="a layer file "
                                  "import (GeoPackage, zipped Shapefile, FlatGeobuf, GeoJSON, "
                                  "CSV), in bytes")
    batch_max_bytes: int = Field(default=256 * 1024 * 1024,
                                 description="JSON batch body limit, in bytes")
    json_body_max_bytes: int = Field(default=1024 * 1024, description="the body of an "
                                     "endpoint that takes one JSON object (a report, an "
                                     "action, a point), in bytes")

    public_staff: Literal["none", "leader", "leader_phone"] = Field(
        default="leader", description="what the public sees of grid staff: none; the grid "
        "leader's name; or the leader's name and phone (a service number on the grid's "
        "board). Role holders and patrol members are for staff tokens only")
    npm_registry: str | None = Field(
        default=None, description="an npm registry mirror the set-up fetches Leaflet from")

    @property
    def photos_root(self) -> Path:
        """Where photos are kept: photos_dir, else $GRIDOPS_HOME/photos."""
        return self.photos_dir or (self.home / "photos")

    @property
    def cluster_dir(self) -> Path:
        """The embedded cluster's data directory."""
        return self.home / "pgdata"

    def level_pairs(self) -> list[tuple[str, str]]:
        """Grid levels as (key, display name), coarse to fine."""
        out: list[tuple[str, str]] = []
        for part in self.levels.split(","):
            key, _, name = part.strip().partition(":")
            if not key:
                raise ValueError(f"GRIDOPS_LEVELS has an empty level in {self.levels!r}")
            out.append((key.strip(), (name or key).strip()))
        return out

    def code_length_map(self) -> dict[int, int | None]:
        """Code length per level rank (1 = top), None = any length (GRIDOPS_CODE_LENGTHS)."""
        parts = [p.strip() for p in self.code_lengths.split(",")]
        n = len(self.level_pairs())
        if len(parts) != n:
            raise ValueError(f"GRIDOPS_CODE_LENGTHS {self.code_lengths!r} has {len(parts)} "
                             f"entries, GRIDOPS_LEVELS has {n} levels")
        out: dict[int, int | None] = {}
        for rank, p in enumerate(parts, start=1):
            if p in ("", "*"):
                out[rank] = None
            elif p.isdigit() and int(p) > 0:
                out[rank] = int(p)
            else:
                raise ValueError(f"GRIDOPS_CODE_LENGTHS: {p!r} is not a number of digits "
                                 "(or * for any length)")
        return out


def export_database_url(url: str) -> None:
    """Set GRIDOPS_DATABASE_URL in this process's environment, so that the server's worker
    processes (which build their own Settings from it) use the database url names."""
    os.environ["GRIDOPS_DATABASE_URL"] = url


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment plus extra variables, for a child process (psql)."""
    return {**os.environ, **extra}
