"""Domain errors: each carries its HTTP status and a message that is safe to show."""

from __future__ import annotations

from typing import Any


class GridopsError(Exception):
    """Base of every error gridops reports to a caller."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(GridopsError):
    """The named thing does not exist (at that time)."""

    status = 404
    code = "not_found"


class InvalidInput(GridopsError):
    """A parameter or body is malformed; the message names the field and the value."""

    status = 422
    code = "invalid_input"


class InvalidCoordinate(InvalidInput):
    """A coordinate is NaN, infinite or out of range."""

    code = "invalid_coordinate"


class InvalidGeometry(InvalidInput):
    """A geometry is invalid, self-intersecting or of the wrong type."""

    code = "invalid_geometry"


class TooLarge(GridopsError):
    """An upload or batch over its configured limit."""

    status = 413
    code = "too_large"


class Unavailable(GridopsError):
    """The service cannot answer yet (no grid loaded, database down)."""

    status = 503
    code = "unavailable"


class NoActiveGrid(Unavailable):
    """No grid generation is active yet: every endpoint that needs one answers this."""

    code = "no_active_grid"

    def __init__(self, detail: str = "no active grid generation: load a grid first "
                 "(gridops demo, or gridops grids import)", **kw: Any) -> None:
        super().__init__(detail, **kw)


class Conflict(GridopsError):
    """The request conflicts with what is stored."""

    status = 409
    code = "conflict"


class GridInvariantError(InvalidInput):
    """A generation breaks the nested-grid invariants; nothing of it was kept."""

    code = "grid_invariant_violated"
