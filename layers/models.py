"""SQLAlchemy 2 typed models; geometry is stored in SRID 4326 (lon/lat)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
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
