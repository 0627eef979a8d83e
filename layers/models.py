"""SQLAlchemy 2 typed models; geometry is stored in SRID 4326 (lon/lat)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID = 4326


class Base(DeclarativeBase):
    """Declarative base of every gridops table."""


class GridLevel(Base):
    """One level of the nested grid (区 / 街镇 / 居村 / 网格 by default); levels are data."""

    __tablename__ = "grid_level"

    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    code_length: Mapped[int | None] = mapped_column(SmallInteger)


class Generation(Base):
    """A version of the whole grid (MapIt's generations); exactly one is active."""

    __tablename__ = "generation"
    __table_args__ = (
        Index("generation_one_active", "active", unique=True, postgresql_where=text("active")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # migration 0014: who made a draft, and the generation it was made from
    created_by: Mapped[str | None] = mapped_column(String(100))
    base_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("generation.id"))


class GridUnit(Base):
    """A grid unit at one level, valid from generation_low to generation_high (null = current)."""

    __tablename__ = "grid_unit"
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]+$'", name="grid_unit_code_digits"),
        CheckConstraint(
            "generation_high IS NULL OR generation_high >= generation_low",
            name="grid_unit_generation_range",
        ),
        CheckConstraint("area_m2 IS NULL OR area_m2 >= 0", name="grid_unit_area_positive"),
        Index("grid_unit_code_low", "code", "generation_low", unique=True),
        Index("grid_unit_level_gen", "level", "generation_low", "generation_high"),
        Index("grid_unit_parent", "parent_code"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int] = mapped_column(SmallInteger, ForeignKey("grid_level.rank"))
    parent_code: Mapped[str | None] = mapped_column(String(32))
    generation_low: Mapped[int] = mapped_column(Integer, ForeignKey("generation.id"))
    generation_high: Mapped[int | None] = mapped_column(Integer, ForeignKey("generation.id"))
    geom: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True), nullable=False
    )
    area_m2: Mapped[float | None] = mapped_column(Float)
    leader_name: Mapped[str | None] = mapped_column(String(100))
    leader_phone: Mapped[str | None] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # migration 0014: bumped by every edit of a draft's own row (the unit's ETag)
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class GridLineage(Base):
    """A unit a generation created and one of its predecessors (a unit of the generation it
    was made from): the area it took from it, as shares of both (migration 0014)."""

    __tablename__ = "grid_lineage"
    __table_args__ = (
        CheckConstraint("kind IN ('split', 'merge', 'redraw', 'reparent', 'attributes', "
                        "'new')", name="grid_lineage_kind"),
        UniqueConstraint("unit_id", "predecessor_id", name="grid_lineage_pair"),
        Index("grid_lineage_unit", "unit_id"),
        Index("grid_lineage_predecessor", "predecessor_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    generation_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("generation.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(BigInteger,
                                         ForeignKey("grid_unit.id", ondelete="CASCADE"))
    predecessor_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("grid_unit.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    area_m2: Mapped[float] = mapped_column(Float)
    share_of_predecessor: Mapped[float] = mapped_column(Float)
    share_of_unit: Mapped[float] = mapped_column(Float)


class GenerationEvent(Base):
    """One planning step: who, when, what, on which codes (migration 0014). Kept when its
    draft is discarded, so generation_id has no foreign key."""

    __tablename__ = "generation_event"
    __table_args__ = (Index("generation_event_gen", "generation_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    generation_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                         server_default=text("clock_timestamp()"))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    codes: Mapped[list[str]] = mapped_column(ARRAY(String(32)), default=list,
                                             server_default=text("'{}'"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict,
                                                   server_default=text("'{}'::jsonb"))


class GridPiece(Base):
    """ST_Subdivide pieces of a unit (≤ 128 vertices) so point lookups stay fast."""

    __tablename__ = "grid_piece"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    unit_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("grid_unit.id", ondelete="CASCADE"), index=True
    )
    geom: Mapped[Any] = mapped_column(
        Geometry("POLYGON", srid=SRID, spatial_index=True), nullable=False
    )


# ------------------------------------------------------------------ who is responsible
# Layers are versioned in time: a row is valid from valid_from until valid_to (null = now);
# an edit ends the current row and adds a new one, so the past can always be asked.


def current_code_index(table: str) -> Index:
    """The unique index of a versioned layer's current rows by code (migration 0002)."""
    return Index(f"{table}_code_current", "code", unique=True,
                 postgresql_where=text("valid_to IS NULL"))


class Versioned:
    """valid_from / valid_to columns shared by every versioned layer."""

    valid_from: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Department(Versioned, Base):
    """A linkage unit (联动单位): a bureau, a company or a street/town office."""

    __tablename__ = "department"
    __table_args__ = (
        current_code_index("department"),
        CheckConstraint("tier BETWEEN 1 AND 3", name="department_tier"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="", server_default="")
    tier: Mapped[int] = mapped_column(SmallInteger)
    parent_code: Mapped[str | None] = mapped_column(String(32))
    contact_name: Mapped[str | None] = mapped_column(String(100))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    territory_code: Mapped[str | None] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb"))


class Category(Versioned, Base):
    """A class of the component/event taxonomy and how its owner is found."""

    __tablename__ = "category"
    __table_args__ = (
        current_code_index("category"),
        CheckConstraint("kind IN ('component', 'event')", name="category_kind"),
        CheckConstraint("owner_rule IN ('asset', 'area', 'category', 'specialist')",
                        name="category_owner_rule"),
        CheckConstraint("(duplicate_radius_m IS NULL OR duplicate_radius_m BETWEEN 0 AND "
                        "1000) AND (duplicate_window_h IS NULL OR duplicate_window_h > 0 "
                        "AND duplicate_window_h <= 720)", name="category_duplicate_rule"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    major_code: Mapped[str] = mapped_column(String(8))
    major_name: Mapped[str] = mapped_column(String(100))
    major_name_en: Mapped[str] = mapped_column(String(100), default="", server_default="")
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="", server_default="")
    default_department: Mapped[str] = mapped_column(String(32))
    deadline_hours: Mapped[int] = mapped_column(Integer)
    owner_rule: Mapped[str] = mapped_column(String(16))
    asset_kind: Mapped[str | None] = mapped_column(String(64))
    area_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list,
                                                  server_default=text("'{}'"))
    snap_radius_m: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # a new report joins an open case of this category this near and this recent, or on
    # the same asset (None: the server's defaults; migration 0010)
    duplicate_radius_m: Mapped[float | None] = mapped_column(Float)
    duplicate_window_h: Mapped[float | None] = mapped_column(Float)


class Asset(Versioned, Base):
    """A component (部件) in public space with its three departments."""

    __tablename__ = "asset"
    __table_args__ = (
        current_code_index("asset"),
        Index("asset_kind_current", "kind", postgresql_where=text("valid_to IS NULL")),
        CheckConstraint("code ~ '^[0-9]{16}$'", name="asset_code_16_digits"),
        CheckConstraint("state IN ('intact', 'damaged', 'missing', 'occupied')",
                        name="asset_state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    category_code: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    geom: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=SRID, spatial_index=True),
                                      nullable=False)
    supervising_department: Mapped[str] = mapped_column(String(32))
    owner_department: Mapped[str] = mapped_column(String(32))
    maintainer_department: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="intact", server_default="intact")
    grid_code: Mapped[str | None] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(32), default="manual", server_default="manual")
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb"))


class OwnershipArea(Versioned, Base):
    """An area whose owner maintains what lies in it (road red line, compound, park...)."""

    __tablename__ = "ownership_area"
    __table_args__ = (
        current_code_index("ownership_area"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    owner_department: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    applies_to: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list,
                                                  server_default=text("'{}'"))
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True),
                                      nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb"))


class DepartmentZone(Versioned, Base):
    """A zone of a department's own zoning (police beats...), which need not match the grid."""

    __tablename__ = "department_zone"
    __table_args__ = (
        Index("department_zone_code_current", "layer", "code", unique=True,
              postgresql_where=text("valid_to IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    department_code: Mapped[str] = mapped_column(String(32), index=True)
    layer: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True),
                                      nullable=False)


class PatrolTeam(Versioned, Base):
    """A patrol team (巡管队) of a department or street office."""

    __tablename__ = "patrol_team"
    __table_args__ = (
        current_code_index("patrol_team"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    department_code: Mapped[str] = mapped_column(String(32))
    members: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb"))


class PatrolAssignment(Versioned, Base):
    """Which team covers which grid on which shift."""

    __tablename__ = "patrol_assignment"
    __table_args__ = (
        CheckConstraint("shift IN ('day', 'night')", name="patrol_assignment_shift"),
        Index("patrol_assignment_grid", "grid_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_code: Mapped[str] = mapped_column(String(32))
    grid_code: Mapped[str] = mapped_column(String(32))
    shift: Mapped[str] = mapped_column(String(16))
    weekdays: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)


class GridRole(Versioned, Base):
    """A person in a grid's 1 + X + Y: auxiliaries, supervisors, department specialists."""

    __tablename__ = "grid_role"
    __table_args__ = (Index("grid_role_grid", "grid_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_code: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    department_code: Mapped[str | None] = mapped_column(String(32))


class LayerEvent(Base):
    """Who changed which layer row, when and why (the layers' audit log)."""

    __tablename__ = "layer_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    layer: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100), default="system", server_default="system")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb"))


# ------------------------------------------------------------------ the case loop


class Case(Base):
    """A reported problem and where it stands; its past lives in case_event."""

    __tablename__ = "case"
    __table_args__ = (
        Index("case_status", "status"),
        Index("case_owner_status", "owner_department", "status"),
        Index("case_grid", "grid_code"),
        Index("case_created", "created_at"),
        Index("case_open_category", "category_code", "created_at",
              postgresql_where=text("status NOT IN ('closed', 'evaluated', 'rejected', "
                                    "'cancelled', 'merged')")),
        CheckConstraint("version >= 1", name="case_version"),
        CheckConstraint("cardinality(bounced_by) > 0", name="case_bounced_by"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    channel: Mapped[str] = mapped_column(String(32))
    category_code: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=True),
                                      nullable=False)
    input_crs: Mapped[str] = mapped_column(String(32))
    inside: Mapped[bool] = mapped_column(Boolean)
    grid_code: Mapped[str | None] = mapped_column(String(32))
    street_code: Mapped[str | None] = mapped_column(String(32))
    h3_cell: Mapped[str | None] = mapped_column(String(16))
    # the same cell as a bigint, for hot spots (migration 0009)
    h3_int: Mapped[int | None] = mapped_column(
        BigInteger, Computed("('x' || lpad(h3_cell, 16, '0'))::bit(64)::bigint", persisted=True))
    generation_id: Mapped[int | None] = mapped_column(Integer)
    owner_department: Mapped[str | None] = mapped_column(String(32))
    resolution: Mapped[dict[str, Any]] = mapped_column(JSONB)
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalation: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    reporter_name: Mapped[str | None] = mapped_column(String(100))
    reporter_phone: Mapped[str | None] = mapped_column(String(32))
    reporter_email: Mapped[str | None] = mapped_column(String(254))
    reporter_device: Mapped[str | None] = mapped_column(String(100))
    reporters: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("case.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # facts of the event log kept on the row at every transition (migration 0005), so a
    # KPI table is one pass over a period's cases
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="the standing dispatch; None until dispatched and "
                                     "after a bounce")
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    feedback_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="the department's first feedback")
    bounced_by: Mapped[list[str] | None] = mapped_column(
        ARRAY(String(32)), doc="departments that bounced it, in order; None if none did")
    verified_role: Mapped[str | None] = mapped_column(
        String(32), doc="role of who verified it (centre: a callback; patrol: on site)")


class CaseEvent(Base):
    """One state change or action on a case: who, in which role, when, from, to, why."""

    __tablename__ = "case_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("case.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict,
                                                 server_default=text("'{}'::jsonb"))


class ApiToken(Base):
    """A bearer token (stored hashed) with its role and, for handlers, its department."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    department_code: Mapped[str | None] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """A durable background job (migration 0013): queued, running, done or failed; taken by
    one worker with FOR UPDATE SKIP LOCKED (layers/jobs.py)."""

    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="job_state"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="job_attempts"),
        Index("job_open", "id", postgresql_where=text("state IN ('queued', 'running')")),
        Index("job_kind_created", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict,
                                                    server_default=text("'{}'::jsonb"))
    result: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(
        JSONB, doc="the GridopsError's fields: status, code, message, extra")
    progress_done: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    progress_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(SmallInteger, default=3, server_default="3")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    run_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), doc="not taken before (retries "
        "back off)")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(100), doc="host:pid of the last taker")


class JobBlob(Base):
    """The file uploaded with a job, apart so that listing jobs stays light."""

    __tablename__ = "job_blob"

    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("job.id", ondelete="CASCADE"),
                                        primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
