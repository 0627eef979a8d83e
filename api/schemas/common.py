"""What many answers share: the error bodies, the grid generation, GeoJSON geometries,
features and collections, links, a WGS84 point and a CRS; and the helpers the routers
declare their answers with (error statuses, alternative media types)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

GEOJSON = "application/geo+json"
CSV = "text/csv"

# ---------------------------------------------------------------- inputs


def as_utc(dt: datetime) -> datetime:
    """An aware time in UTC (PostgreSQL takes offsets up to ±15:59 only, ISO 8601 more);
    a naive time stays as given. Years 1900 to 9000 only, so that windows of days or months
    around a time stay within what datetime and PostgreSQL hold."""
    if not 1900 <= dt.year <= 9000:
        raise ValueError(f"{dt.isoformat()} is out of range (years 1900 to 9000)")
    return dt if dt.tzinfo is None else dt.astimezone(UTC)


# a time given by a caller (query parameter or body field), normalised to UTC
Timestamp = Annotated[datetime, AfterValidator(as_utc)]

# ---------------------------------------------------------------- errors


class ErrorOut(BaseModel):
    """An error answer: a stable code, a message naming the problem, and for some codes
    more fields (e.g. a 409 stale_version: version and status; 422 invalid_coordinate:
    field, value, index)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="e.g. not_found, unauthorized, forbidden, conflict, "
                                  "too_large, no_active_grid, database_unavailable")
    detail: str


class FieldError(BaseModel):
    """One request field that did not validate."""

    field: str = Field(description="the parameter or body field, dotted (request: the "
                                   "whole request)")
    message: str
    value: Any = Field(description="what was given (null when the field was missing)")


class ValidationErrorOut(BaseModel):
    """422: the request does not validate. A parameter or body the framework checks
    answers code invalid_input with `errors` (one entry a field); a value the server's
    own checks refuse answers without `errors`, with a code naming the check
    (invalid_input, invalid_coordinate, invalid_geometry, unknown_crs,
    grid_invariant_violated, ...) and for some codes more fields (field, value, index)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="invalid_input, or the check that refused the value")
    detail: str = Field(description="every problem in one message")
    errors: list[FieldError] = Field(
        default_factory=list,
        description="one entry a field (only when the framework's validation refused it)")


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request",
    401: "No token, or an unknown or revoked one (code unauthorized)",
    403: "The token's role may not do this (code forbidden)",
    404: "Not found (code not_found): the named thing, generation or time",
    405: "The collection is read-only here (code method_not_allowed); Allow lists what it "
         "takes",
    409: "Conflict with what is stored (code conflict; a stale version: stale_version)",
    412: "If-Match names a version that is no longer the stored one (code "
         "precondition_failed)",
    413: "The body is over its size limit (code too_large)",
    415: "Unsupported media type",
    422: "Invalid input",
    428: "The change must say which version it changes: send If-Match with the ETag (code "
         "precondition_required)",
    503: "Unavailable: no active grid generation yet (code no_active_grid) or the "
         "database is not reachable (code database_unavailable)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route may give, for the OpenAPI document (422 in its own
    shape, the others as ErrorOut)."""
    return {s: {"model": ValidationErrorOut if s == 422 else ErrorOut,
                "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


# ---------------------------------------------------------------- other media types

# models named by media() that no route declares as a model: api.errors adds them to the
# document's components
DOCUMENTED: dict[str, type[BaseModel]] = {}


def media(model: type[BaseModel]) -> dict[str, Any]:
    """A response content entry (an alternative media type) whose schema is model."""
    DOCUMENTED[model.__name__] = model
    return {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}


def geojson(model: type[BaseModel]) -> dict[str, Any]:
    """A 200 answer of GeoJSON (application/geo+json) in model's shape."""
    return {"content": {GEOJSON: media(model)}}


CSV_CONTENT: dict[str, Any] = {"schema": {"type": "string"}}

# ---------------------------------------------------------------- generations


class GenerationOut(BaseModel):
    """A version of the grid."""

    id: int
    label: str
    note: str
    created_at: datetime
    activated_at: datetime | None
    active: bool


class GenerationRefOut(BaseModel):
    """The generation an answer used."""

    id: int
    label: str
    activated_at: datetime | None


# ---------------------------------------------------------------- points and CRS


class LonLat(BaseModel):
    """A point in WGS84 (EPSG:4326)."""

    lon: float
    lat: float


class CRSOut(BaseModel):
    """The coordinate system an answer assumed."""

    key: str
    name: str


# ---------------------------------------------------------------- GeoJSON


class Geometry(BaseModel):
    """A GeoJSON geometry in WGS84 lon/lat (RFC 7946)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Point, LineString, Polygon, MultiPolygon, ...")
    coordinates: list[Any]


class PointGeometry(BaseModel):
    """A GeoJSON Point."""

    type: Literal["Point"]
    coordinates: list[float] = Field(description="[lon, lat]")


class Feature(BaseModel):
    """A GeoJSON Feature."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    id: str | int | None = None
    geometry: Geometry | None
    properties: dict[str, Any] | None


class FeatureCollection(BaseModel):
    """A GeoJSON FeatureCollection (with members of its own beside the features)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[Feature]


class Link(BaseModel):
    """A link to another page of an answer."""

    rel: str = Field(description="next or prev")
    href: str
