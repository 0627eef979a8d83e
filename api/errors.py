"""One mapping from exceptions to HTTP answers: {"code": ..., "detail": ...}; and the
OpenAPI document made to say so (every 422 in the shape the handler below answers)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas.common import DOCUMENTED, ERROR_DESCRIPTIONS, ValidationErrorOut
from spatial.errors import GridopsError

log = logging.getLogger(__name__)


def _loc(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


SHOWN_MAX = 80  # characters of a refused value an error shows back


def shown_value(value: Any) -> Any:
    """A refused value as an error may show it: JSON-safe, short (never the whole input
    echoed back), without characters that cannot be encoded."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:SHOWN_MAX * 4]).decode("utf-8", "replace")
    if not isinstance(value, str):
        try:
            value = orjson.dumps(value, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):
            value = repr(value)
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= SHOWN_MAX else value[:SHOWN_MAX] + f"... ({len(value):,} chars)"


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


def _replaced(value: Any) -> Any:
    """A JSON-like value with every string made encodable (lone surrogates replaced)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_replaced(str(k)): _replaced(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _replaced(str(value))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; bad input never ends as a bare 500."""

    @app.exception_handler(GridopsError)
    async def _domain(_: Request, exc: GridopsError) -> JSONResponse:
        body = {"code": exc.code, "detail": exc.detail, **exc.extra}
        # a message quoting input may hold what UTF-8 cannot encode: shown replaced
        return JSONResponse(body if _encodable(body) else _replaced(body),
                            status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own answers (no such route, a method the route does not take)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _loc(e.get("loc", ())), "message": e.get("msg", ""),
             "value": shown_value(e.get("input"))}
            for e in exc.errors()[:20]
        ]
        detail = "; ".join(f"{e['field']}: {e['message']} (got {e['value']!r})" for e in errors)
        return JSONResponse(
            {"code": "invalid_input", "detail": detail, "errors": errors}, status_code=422
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        msg = str(exc.orig).strip().splitlines()[0] if exc.orig else "integrity error"
        return JSONResponse({"code": "conflict", "detail": msg}, status_code=409)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return JSONResponse({"code": "database_unavailable",
                             "detail": "the database is not reachable"}, status_code=503)


# ---------------------------------------------------------------- the OpenAPI document

REF = "#/components/schemas/"
FASTAPI_422 = ("HTTPValidationError", "ValidationError")  # FastAPI's shape, never answered


def install_openapi(app: FastAPI) -> None:
    """app.openapi() (and /openapi.json): FastAPI's document, finished by finish_openapi."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish_openapi(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """Make the document say what the server sends (in place; doing it twice changes
    nothing):
    - every 422 is ValidationErrorOut (the handler's shape, not FastAPI's
      HTTPValidationError, whose components go);
    - error answers are application/json (the handlers' JSONResponse) even on routes whose
      answer is GeoJSON or an HTML page;
    - a schema given for a route whose response class is not a JSONResponse (GeoJSON,
      orjson) is that schema, not FastAPI's {"type": "string"} placeholder beside it;
    - the models that alternative media types name (api.schemas.common.media) are in the
      components."""
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [ValidationErrorOut, *DOCUMENTED.values()]
    _, top = models_json_schema([(m, "serialization") for m in models],
                                ref_template=REF + "{model}")
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            answers = op.setdefault("responses", {})
            if "requestBody" in op:  # api.routing.CheckedRoute checks every body
                for status in ("413", "415"):
                    answers.setdefault(status, {
                        "description": ERROR_DESCRIPTIONS[int(status)],
                        "content": {"application/json": {"schema": {
                            "$ref": REF + "ErrorOut"}}}})
            for status, answer in answers.items():
                _finish_answer(status, answer)
    used = orjson.dumps({k: v for k, v in doc.items() if k != "components"}
                        | {"schemas": {k: v for k, v in schemas.items()
                                       if k not in FASTAPI_422}})
    for name in FASTAPI_422:
        if f'"{REF}{name}"'.encode() not in used:
            schemas.pop(name, None)
    return doc


def _finish_answer(status: str, answer: dict[str, Any]) -> None:
    content: dict[str, Any] = answer.get("content") or {}
    if status == "422":
        if answer.get("description") in (None, "Validation Error"):
            answer["description"] = ERROR_DESCRIPTIONS[422]
        answer["content"] = {"application/json": {"schema": {
            "$ref": REF + ValidationErrorOut.__name__}}}
        return
    if status.isdigit() and int(status) >= 400 and "application/json" not in content:
        # the error model was placed under the route's own media type (GeoJSON, HTML)
        for media in [m for m in content if m.endswith("json")
                      or "$ref" in (content[m].get("schema") or {})][:1]:
            content["application/json"] = content.pop(media)
    for entry in content.values():
        schema = entry.get("schema")
        if (isinstance(schema, dict) and ("$ref" in schema or "anyOf" in schema)
                and schema.get("type") == "string"):
            del schema["type"]
