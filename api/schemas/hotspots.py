"""Hot spots as answered by /hotspots (Gi* on H3 hexagons, GeoJSON) and
/hotspots/chronic (顽症, JSON or GeoJSON)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.common import Feature, FeatureCollection, Geometry


class CaseFilterOut(BaseModel):
    """Which cases were counted."""

    since: datetime
    until: datetime
    category: str | None
    department: str | None
    counted: str


class HotspotProperties(BaseModel):
    """A hexagon's count and Gi* statistic."""

    h3: str
    count: int
    z: float | None = Field(description="Gi* z-score (null where it is undefined)")
    p: float | None = Field(description="two-sided p-value")
    bin: int = Field(description="±3 = 99 %, ±2 = 95 %, ±1 = 90 % confidence, 0 = not "
                                 "significant")
    label: str


class HotspotFeature(Feature):
    """A hexagon as a GeoJSON Polygon feature (its id is its H3 cell)."""

    id: str
    geometry: Geometry
    properties: HotspotProperties  # type: ignore[assignment]


class HotspotSummary(BaseModel):
    """Counts per bin and the statistic's inputs."""

    cells: int
    cases: int
    mean: float | None
    std: float | None
    bins: dict[str, int] = Field(description="cells per confidence bin (-3 .. 3)")
    neighbourhood: str
    p_value: str
    confidence_bins: dict[str, str]


class HotspotCollection(FeatureCollection):
    """Gi* of reported cases on H3 hexagons (cells with cases or a significant score)."""

    res: int
    filter: CaseFilterOut
    summary: HotspotSummary
    features: list[HotspotFeature]  # type: ignore[assignment]


class ChronicSpot(BaseModel):
    """A hexagon hot month after month, with its grid and street."""

    h3: str
    lon: float
    lat: float
    hot_months: int
    longest_run: int
    months_hot: list[str]
    counts: list[int] = Field(description="cases a month, in the order of `months`")
    cases: int
    max_z: float | None
    grid: str | None
    grid_name: str | None
    street: str | None


class ChronicGrid(BaseModel):
    """A grid holding chronic spots."""

    grid: str
    name: str | None
    street: str | None
    cells: int
    longest_run: int
    cases: int


class ChronicHead(BaseModel):
    """What chronic spots were looked for: the months, the period, the rule."""

    months: list[str]
    since: datetime
    until: datetime
    res: int
    min_run: int
    hot: str
    neighbourhood: str
    grids: list[ChronicGrid]


class ChronicOut(ChronicHead):
    """Chronic spots (顽症) and the grids that hold them (format=json)."""

    spots: list[ChronicSpot]


class ChronicFeature(Feature):
    """A chronic spot as a GeoJSON Polygon feature (its id is its H3 cell)."""

    id: str
    geometry: Geometry
    properties: ChronicSpot  # type: ignore[assignment]


class ChronicCollection(FeatureCollection, ChronicHead):
    """Chronic spots as GeoJSON (format=geojson), with the grids that hold them."""

    features: list[ChronicFeature]  # type: ignore[assignment]
