"""Response models of Open311 GeoReport v2 (api/routers/open311.py), as the spec names its
fields (http://wiki.open311.org/GeoReport_v2). Every answer is a JSON array but discovery
and a service definition; errors are [{"code": <status>, "description": "..."}]."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Endpoint(BaseModel):
    """Where a GeoReport version lives."""

    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class Discovery(BaseModel):
    """The service discovery document."""

    changeset: str
    contact: str
    key_service: str
    endpoints: list[Endpoint]


class Service(BaseModel):
    """A category of the taxonomy as a GeoReport service."""

    service_code: str
    service_name: str
    description: str
    metadata: bool = Field(description="always false: no extra attributes are asked")
    type: str
    keywords: str
    group: str = Field(description="the category's major class")


class ServiceDefinition(BaseModel):
    """A service's attributes (none: gridops asks no more than the standard fields)."""

    service_code: str
    attributes: list[dict[str, Any]]


class RequestCreated(BaseModel):
    """The answer to a posted request."""

    service_request_id: str = Field(description="the case's public reference")
    service_notice: str
    account_id: str | None
    rating_code: str = Field(description="a gridops extension: the submitter's code to rate "
                                         "the request once it is closed")


class ServiceRequest(BaseModel):
    """A case as a public service request: nothing about the reporter."""

    service_request_id: str
    status: str = Field(description="open or closed")
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str | None = Field(description="W3C, in the server's time zone")
    updated_datetime: str | None
    expected_datetime: str | None = Field(description="the deadline, once dispatched")
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


class Open311Error(BaseModel):
    """One error of the spec's error array."""

    code: int = Field(description="the HTTP status")
    description: str
