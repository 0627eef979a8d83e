"""Domain errors: each carries its HTTP status and a message that is safe to show."""

from __future__ import annotations

from typing import Any


class GridopsError(Exception):
    """Base of every error gridops reports to a caller; a subclass names its status and code
    as class keywords: `class NotFound(GridopsError, status=404, code="not_found")`."""

    status: int = 400
    code: str = "bad_request"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None,
                          **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(GridopsError, status=404, code="not_found"):
    """The named thing does not exist (at that time)."""


class InvalidInput(GridopsError, status=422, code="invalid_input"):
    """A parameter or body is malformed; the message names the field and the value."""


class InvalidCoordinate(InvalidInput, code="invalid_coordinate"):
    """A coordinate is NaN, infinite or out of range."""


class InvalidGeometry(InvalidInput, code="invalid_geometry"):
    """A geometry is invalid, self-intersecting or of the wrong type."""


class GridInvariantError(InvalidInput, code="grid_invariant_violated"):
    """A generation breaks the nested-grid invariants; nothing of it was kept."""


class TooLarge(GridopsError, status=413, code="too_large"):
    """An upload or batch over its configured limit."""


class UnsupportedMediaType(GridopsError, status=415, code="unsupported_media_type"):
    """A body of a content type the endpoint does not read."""


class Conflict(GridopsError, status=409, code="conflict"):
    """The request conflicts with what is stored."""


class PreconditionFailed(GridopsError, status=412, code="precondition_failed"):
    """An If-Match names a version that is no longer the stored one."""


class PreconditionRequired(GridopsError, status=428, code="precondition_required"):
    """A change of a versioned resource must say which version it changes (If-Match)."""


class Unavailable(GridopsError, status=503, code="unavailable"):
    """The service cannot answer yet (no grid loaded, database down)."""


class NoActiveGrid(Unavailable, code="no_active_grid"):
    """No grid generation is active yet: every endpoint that needs one answers this."""

    def __init__(self, detail: str = "no active grid generation: load a grid first "
                 "(gridops demo, or gridops grids import)", **kw: Any) -> None:
        super().__init__(detail, **kw)
