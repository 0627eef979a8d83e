"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2), JSON only: the category
taxonomy as services, and service requests on the same intake and the same cases as
POST /cases (channel "open311"). Errors answer in the spec's shape:
[{"code": 400, "description": "..."}]. Reporter contact details never leave the server.
The reads are layers.service_requests'; a posted request goes to the worker's intake writer
like any report."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import anyio
import orjson
from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from api.deps import IntakeDep, ReportsDep, SessionDep, SettingsDep
from api.geojson import json_response
from api.routing import CheckedRoute, reads
from api.schemas.common import as_utc
from api.schemas.open311 import (
    Discovery,
    Open311Error,
    RequestCreated,
    Service,
    ServiceDefinition,
    ServiceRequest,
)
from layers.cases import Actor, Intake
from layers.kpis import check_year
from layers.models import Category
from layers.resolution import normalise_point
from layers.service_requests import (
    PublicRequest,
    RequestFilter,
    current_categories,
    current_category,
    public_requests,
)
from layers.text import find_bad_text
from layers.workflow import DONE, OPEN, PUBLIC
from spatial.errors import GridopsError, InvalidInput, NotFound

SPEC = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-23T00:00:00Z"  # when this endpoint's behaviour last changed
ACTOR = Actor("open311", PUBLIC)
DEFAULT_DAYS = 90  # the spec's default window when no date is named
MAX_PAGE = 1000  # the spec's default cap, and the largest page of the paging extension
KIND_NAMES = {"component": "component (部件)", "event": "event (事件)"}
# the spec's error array, for the OpenAPI document; "4XX" stands for any other client
# error and keeps FastAPI from listing a 422 this router never answers (it is a 400 here)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": list[Open311Error], "description": "bad request (the spec's errors)"},
    404: {"model": list[Open311Error], "description": "not found (the spec's errors)"},
    "4XX": {"model": list[Open311Error], "description": "any other client error, in the "
                                                       "same shape"}}


def _error(status: int, description: str) -> Response:
    return _json([{"code": status, "description": description}], status)


class Open311Route(CheckedRoute):
    """Errors of this router in the spec's shape: a 422 becomes the spec's 400. Handlers
    run every check before they write, and the POST's writes sit in a savepoint, so a
    caught error leaves nothing behind in the request's transaction."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except GridopsError as e:
                return _error(400 if e.status == 422 else e.status, e.detail)
            except RequestValidationError as e:
                return _error(400, "; ".join(
                    f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: "
                    f"{err.get('msg', '')}" for err in e.errors()))

        return route


router = APIRouter(prefix="/open311", tags=["open311"], route_class=Open311Route,
                   responses=ERRORS)


def _json(obj: Any, status: int = 200) -> Response:
    return json_response(obj, status, "application/json; charset=utf-8")


def _json_only(fmt: str) -> None:
    if fmt.lower() != "json":
        raise InvalidInput(f"format: {fmt!r} is not served; this GeoReport v2 endpoint "
                           "answers JSON only: ask for the same path ending in .json")


def _w3c(dt: datetime | None, tz: ZoneInfo) -> str | None:
    return dt.astimezone(tz).isoformat(timespec="seconds") if dt else None


def _notice(hours: int | None) -> str | None:
    return f"to be handled within {hours} hours of dispatch (办结时限)" if hours else None


# ------------------------------------------------------------------ discovery and services


@router.get("/discovery.{fmt}", response_model=Discovery)
def discovery(fmt: str, request: Request) -> Response:
    """The Open311 service discovery document: where GeoReport v2 lives and in which format."""
    _json_only(fmt)
    base = str(request.base_url).rstrip("/") + "/open311/v2"
    return _json({"changeset": CHANGESET, "contact": "the command centre (指挥中心)",
                  "key_service": "no api_key is needed; reports are public",
                  "endpoints": [{"specification": SPEC, "url": base, "changeset": CHANGESET,
                                 "type": "production", "formats": ["application/json"]}]})


def _service(c: Category) -> dict[str, Any]:
    kind = KIND_NAMES.get(c.kind, c.kind)
    words = [c.name_en, c.major_name, c.major_name_en, kind, c.asset_kind or ""]
    return {"service_code": c.code, "service_name": c.name,
            "description": f"{c.name_en or c.name} — {kind}", "metadata": False,
            "type": "realtime", "keywords": ", ".join(w for w in words if w),
            "group": c.major_name}


@router.get("/v2/services.{fmt}", response_model=list[Service])
def services(fmt: str, session: SessionDep) -> Response:
    """Every current category of the taxonomy as a service (code, names, major class)."""
    _json_only(fmt)
    return _json([_service(c) for c in current_categories(session)])


@router.get("/v2/services/{service_code}.{fmt}", response_model=ServiceDefinition)
def service_definition(service_code: str, fmt: str, session: SessionDep) -> Response:
    """A service's definition; gridops asks no extra attributes, so the list is empty."""
    _json_only(fmt)
    if current_category(session, service_code) is None:
        raise NotFound(f"service_code: no service {service_code!r}; "
                       "GET /open311/v2/services.json lists them")
    return _json({"service_code": service_code, "attributes": []})


# ------------------------------------------------------------------ POST a request


async def _fields(request: Request) -> dict[str, Any]:
    """The request's parameters: query string, then a form-encoded or JSON body over it."""
    fields: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return fields
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"body: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise InvalidInput("body: a JSON object of GeoReport fields is expected")
        fields.update(data)
    elif ctype in ("application/x-www-form-urlencoded", ""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("body: not UTF-8 (GeoReport v2 requires UTF-8)") from None
        for key, value in parse_qsl(text, keep_blank_values=True):
            if key.endswith("[]"):  # attribute[CODE][]=a&attribute[CODE][]=b: a list
                prior = fields.get(key[:-2])
                fields[key[:-2]] = [*(prior if isinstance(prior, list) else []), value]
            else:
                fields[key] = value
    else:
        raise InvalidInput(f"content-type: {ctype!r} is not accepted; send "
                           "application/x-www-form-urlencoded or application/json "
                           "(media as a media_url, not an upload)")
    bad = find_bad_text(fields, "body")
    if bad:
        raise InvalidInput(bad)
    return fields


def _text(fields: dict[str, Any], name: str, limit: int) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidInput(f"{name}: a text value is expected, got {type(value).__name__}")
    value = str(value).strip()
    if len(value) > limit:
        raise InvalidInput(f"{name}: {len(value)} characters, at most {limit} are accepted")
    return value or None


def _coordinate(fields: dict[str, Any], name: str, limit: float) -> float | None:
    raw = fields.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: {raw!r} is not a number; give WGS84 decimal "
                           "degrees") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise InvalidInput(f"{name}: {raw!r} is outside -{limit:g}..{limit:g} "
                           "(WGS84 decimal degrees)")
    return value


def _location(fields: dict[str, Any]) -> tuple[float, float]:
    lat = _coordinate(fields, "lat", 90)
    lon = _coordinate(fields, "long", 180)
    if lat is not None and lon is not None:
        return lon, lat
    if lat is not None or lon is not None:
        given, missing = ("lat", "long") if lat is not None else ("long", "lat")
        raise InvalidInput(f"{missing}: missing; {given} was given and a location needs "
                           "both lat and long (WGS84)")
    if fields.get("address_string") or fields.get("address_id"):
        raise InvalidInput("lat, long: missing; this server places a request by its "
                           "coordinates and has no geocoder, so address_string or "
                           "address_id alone cannot be located: give lat and long (WGS84)")
    raise InvalidInput("lat, long: a location is required: give lat and long (WGS84)")


def _attributes(fields: dict[str, Any]) -> dict[str, Any]:
    """attribute[CODE]=value pairs (form) or an "attribute" object (JSON)."""
    out: dict[str, Any] = {}
    given = fields.get("attribute")
    if isinstance(given, dict):
        out.update({str(k): v for k, v in given.items()})
    elif given is not None:
        raise InvalidInput("attribute: an object of attribute codes and values is expected")
    for key, value in fields.items():
        m = re.fullmatch(r"attribute\[([^\]]+)\]", key)
        if m:
            out[m.group(1)] = value
    return out


def _media_url(fields: dict[str, Any]) -> str | None:
    url = _text(fields, "media_url", 2000)
    if url and not re.match(r"https?://[^\s/]+", url):
        raise InvalidInput(f"media_url: {url!r} is not an http(s) URL")
    return url


def _email(fields: dict[str, Any]) -> str | None:
    email = _text(fields, "email", 254)
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise InvalidInput(f"email: {email!r} is not an e-mail address")
    return email


@router.post("/v2/requests.{fmt}", status_code=201, response_model=list[RequestCreated],
             responses={200: {"model": list[RequestCreated],
                              "description": "a retry (same Idempotency-Key): the request "
                                             "it made"}},
             openapi_extra=reads("application/x-www-form-urlencoded", "application/json",
                                required=False))
async def post_request(
    fmt: str, request: Request, session: SessionDep, reports: ReportsDep, intake: IntakeDep,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """Report a problem: resolved and stored exactly as POST /cases does (channel open311).
    The submitter's first_name, last_name, phone, email and device_id are kept with the
    case as its private reporter contact (never on any listing or public read); media_url
    and address_string are public. api_key, jurisdiction_id and account_id are accepted
    and ignored: the public may report, and there are no accounts."""
    _json_only(fmt)
    fields = await _fields(request)
    code = _text(fields, "service_code", 16)
    if not code:
        raise InvalidInput("service_code: missing; GET /open311/v2/services.json lists them")
    category = await anyio.to_thread.run_sync(current_category, session, code)
    if category is None:
        raise InvalidInput(f"service_code: no service {code!r}; "
                           "GET /open311/v2/services.json lists them")
    lon, lat = _location(fields)
    description = _text(fields, "description", 4000) or ""
    first, last = _text(fields, "first_name", 100), _text(fields, "last_name", 100)
    name = " ".join(p for p in (first, last) if p) or None
    if name and len(name) > 100:
        raise InvalidInput("first_name, last_name: together at most 100 characters")
    phone = _text(fields, "phone", 32)
    email = _email(fields)
    device = _text(fields, "device_id", 100)
    extra = {"media_url": _media_url(fields), "attributes": _attributes(fields),
             "address_string": _text(fields, "address_string", 500)}
    pt = normalise_point(lon, lat, "EPSG:4326")
    if reports.needs_io(None):  # no index in memory yet: it is built from the database
        resolution = await anyio.to_thread.run_sync(reports.resolve, pt.lon, pt.lat, code)
    else:
        resolution = reports.resolve(pt.lon, pt.lat, code)
    resolution["crs"] = pt.crs
    resolution["open311"] = {k: v for k, v in extra.items() if v}
    it = Intake(channel="open311", category=code, lon=pt.lon, lat=pt.lat,
                input_crs=pt.crs["key"], description=description, reporter_name=name,
                reporter_phone=phone, idempotency_key=idempotency_key,
                resolution=resolution, reporter_email=email, reporter_device=device)
    # the same intake as POST /cases: the worker's writer stores it with the reports that
    # arrive meanwhile and answers once committed (its view with the rating code)
    case, created = await intake.submit(it, ACTOR, private=True)
    if case["duplicate_of"] is not None:
        notice = (f"the same problem was reported already as {case['duplicate_of']}; "
                  "this request joins it")
    elif not case["inside"]:
        notice = "received; the spot is outside every grid, the command centre places it"
    else:
        dept = ((resolution.get("owner") or {}).get("owner") or {}).get("name")
        notice = "received" + (f"; {dept} is responsible" if dept else "") + (
            f", {_notice(category.deadline_hours)}" if category.deadline_hours else "")
    # rating_code (a gridops extension): the submitter's key to rate the request once closed
    return _json([{"service_request_id": case["ref"], "service_notice": notice,
                   "account_id": None, "rating_code": case["rating_code"]}],
                 201 if created else 200)


# ------------------------------------------------------------------ GET requests


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _datetime(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace(" ", "+"))  # an unescaped '+' arrives as ' '
    except ValueError:
        raise InvalidInput(f"{name}: {value!r} is not a W3C datetime "
                           "(e.g. 2026-01-01T00:00:00Z or 2026-01-01T08:00:00+08:00)") from None
    if dt.tzinfo is None:
        raise InvalidInput(f"{name}: {value!r} has no time zone; end it with Z or +hh:mm")
    try:
        dt = as_utc(dt)
    except ValueError as e:
        raise InvalidInput(f"{name}: {e}") from None
    return check_year(name, dt, repr(value))


def _int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidInput(f"{name}: {value!r} is not a whole number") from None
    if not low <= n <= high:
        raise InvalidInput(f"{name}: {n} is outside {low}..{high}")
    return n


def _states(value: str | None) -> tuple[str, ...]:
    """GeoReport's status filter (open, closed, or both) as the case states it means."""
    wanted = {s.lower() for s in _split(value)}
    bad = wanted - {"open", "closed"}
    if bad:
        raise InvalidInput(f"status: {', '.join(sorted(bad))} is not one of open, closed")
    return (OPEN if "open" in wanted else ()) + (DONE if "closed" in wanted else ())


def _request(r: PublicRequest, tz: ZoneInfo) -> dict[str, Any]:
    """A case as a GeoReport service request, with nothing about the reporter."""
    chain = " ".join(u.get("name") or u["code"] for u in r.chain) or None
    return {
        "service_request_id": r.ref,
        "status": "open" if r.status in OPEN else "closed",
        "status_notes": r.public_note,
        "service_name": r.category_name or r.category_code,
        "service_code": r.category_code,
        "description": r.description,
        "agency_responsible": r.agency,
        "service_notice": _notice(r.deadline_hours),
        "requested_datetime": _w3c(r.created_at, tz),
        "updated_datetime": _w3c(r.updated_at, tz),
        "expected_datetime": _w3c(r.deadline_at, tz),
        "address": r.address or chain,
        "address_id": None,
        "zipcode": None,
        "lat": r.lat,
        "long": r.lon,
        "media_url": r.media_url,
    }


@router.get("/v2/requests.{fmt}", response_model=list[ServiceRequest])
def get_requests(
    fmt: str, session: SessionDep, settings: SettingsDep,
    service_request_id: str | None = None, service_code: str | None = None,
    start_date: str | None = None, end_date: str | None = None,
    status: str | None = None, page_size: str | None = None, page: str | None = None,
) -> Response:
    """Service requests, newest first. service_request_id (comma-separated) overrides every
    other filter; otherwise service_code (comma-separated), start_date/end_date on the
    requested time (W3C; neither: the last 90 days), status open|closed; at most 1000 a
    page (paging extension: page_size, page)."""
    _json_only(fmt)
    size = _int("page_size", page_size, MAX_PAGE, 1, MAX_PAGE)
    number = _int("page", page, 1, 1, 1_000_000)
    ids = tuple(_split(service_request_id))
    if ids:
        wanted = RequestFilter(refs=ids)
    else:
        start, end = _datetime("start_date", start_date), _datetime("end_date", end_date)
        if start and end and start > end:
            raise InvalidInput(f"start_date: {start_date} is after end_date {end_date}")
        wanted = RequestFilter(start=start, end=end, window_days=DEFAULT_DAYS,
                               categories=tuple(_split(service_code)), states=_states(status))
    tz = ZoneInfo(settings.timezone)
    found = public_requests(session, wanted, limit=size, offset=(number - 1) * size)
    return _json([_request(r, tz) for r in found])


@router.get("/v2/requests/{service_request_id}.{fmt}", response_model=list[ServiceRequest])
def get_request(service_request_id: str, fmt: str, session: SessionDep,
                settings: SettingsDep) -> Response:
    """One service request, as a one-element array (the spec's shape)."""
    _json_only(fmt)
    found = public_requests(session, RequestFilter(refs=(service_request_id,)), limit=1)
    if not found:
        raise NotFound(f"service_request_id: no request {service_request_id!r}")
    return _json([_request(found[0], ZoneInfo(settings.timezone))])
