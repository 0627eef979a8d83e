"""One mapping from exceptions to HTTP answers: {"code": ..., "detail": ...}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError

from spatial.errors import GridopsError

log = logging.getLogger(__name__)


def _loc(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; bad input never ends as a bare 500."""

    @app.exception_handler(GridopsError)
    async def _domain(_: Request, exc: GridopsError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "detail": exc.detail, **exc.extra},
                            status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _loc(e.get("loc", ())), "message": e.get("msg", ""),
             "value": e.get("input")}
            for e in exc.errors()
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
