"""Every route's body checked before anything reads it: its content type must be one the
route reads (415 otherwise) and its size within the route's limit (413, by the declared
Content-Length before a byte is read, else as it arrives). A route reads the media types
of its pydantic body (JSON), or those it declares with `reads(...)`, which also documents
them in the OpenAPI document so clients and fuzzers send them."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.bodies import read_body
from layers.settings import Settings
from layers.text import find_bad_text, text_problem
from spatial.errors import InvalidInput, UnsupportedMediaType

JSON = "application/json"
LIMIT_KEY = "x-gridops-body-limit"  # which Settings field limits a declared body


def reads(*media_types: str, limit: str = "json_body_max_bytes",
         schema: dict[str, Any] | None = None, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself: the media types it takes
    (with a JSON schema for the JSON ones, binary for the others) and the settings field
    that limits its size."""
    content: dict[str, Any] = {}
    for m in media_types:
        if m == JSON or m.endswith("+json"):
            content[m] = {"schema": schema or {"type": ["object", "array"]}}
        elif m.startswith("text/") or m == "application/x-www-form-urlencoded":
            content[m] = {"schema": {"type": "string"}}
        else:
            content[m] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": required, "content": content}, LIMIT_KEY: limit}


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ('' when not given)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_json_text(raw: bytes) -> None:
    """A JSON body whose text can all be stored: no string may hold a NUL or an unpaired
    surrogate (422 naming where)."""
    if not raw.strip():
        return
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # NaN, Infinity or a lone surrogate: the standard parser (FastAPI's) reads them, and
        # the checks after it name the field (a number must be finite; text is below)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidInput(f"body: not valid JSON ({str(e)[:200]})") from None
    bad = find_bad_text(data)
    if bad:
        raise InvalidInput(bad)


async def check_request_text(request: Request) -> None:
    """Every route's query and path parameters: text that can be stored (422 naming the
    parameter; an app-wide dependency)."""
    for name, value in [*request.query_params.multi_items(), *request.path_params.items()]:
        bad = text_problem(name) or (text_problem(value) if isinstance(value, str) else None)
        if bad:
            raise InvalidInput(f"{name[:40]!r}: {bad}")


class CheckedRoute(APIRoute):
    """An APIRoute that refuses a body of the wrong media type (415) or size (413) before
    the endpoint or FastAPI's validation reads it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        extra = self.openapi_extra or {}
        declared = extra.get("requestBody", {}).get("content")
        if declared is not None:
            accepted = frozenset(declared)
        elif self.body_field is not None:
            accepted = frozenset({JSON})
        else:
            return handler
        limit_field = str(extra.get(LIMIT_KEY, "json_body_max_bytes"))
        reads_itself = declared is not None

        async def checked(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                kind = media_type(request)
                has_body = request.headers.get("content-length", "0") != "0" or (
                    "transfer-encoding" in request.headers)
                json_like = kind == "" or kind.endswith("+json")  # no type given: JSON
                if has_body and kind not in accepted and not (json_like and JSON in accepted):
                    raise UnsupportedMediaType(
                        f"content-type {kind or '(none)'!r} is not read here; send "
                        f"{' or '.join(sorted(accepted))}")
                if not reads_itself:
                    settings: Settings = request.app.state.services.settings
                    limit = int(getattr(settings, limit_field))
                    raw = await read_body(request, limit, "this endpoint takes one JSON object")
                    check_json_text(raw)
                    # FastAPI's own request.body() gets this copy (Starlette's body cache)
                    request._body = raw
            return await handler(request)

        return checked
