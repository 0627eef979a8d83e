"""GET /health: is the service usable, and what does it serve."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.common import GenerationOut


class IntakeStats(BaseModel):
    """One worker's intake writer: what it stored since the worker started."""

    worker_pid: int
    running: bool = Field(description="its thread is alive (it starts with the first report)")
    queued: int = Field(description="reports waiting for the next batch now")
    batches: int = Field(description="transactions that stored reports")
    stored: int = Field(description="new cases, merged duplicates included")
    replayed: int = Field(description="retried requests answered with their first case")
    failed: int = Field(description="reports answered with an error")
    fallbacks: int = Field(description="batches rolled back and stored one report at a time")
    largest_batch: int
    last_batch_at: float | None = Field(description="epoch seconds of the last commit")


class LevelOut(BaseModel):
    """A level of the nested grid."""

    rank: int
    key: str
    name: str
    code_length: int | None


class Health(BaseModel):
    """Is the service usable, and what does it serve."""

    status: str = Field(description="ok, or degraded when the database is unreachable")
    database: bool
    active_generation: GenerationOut | None
    units_per_level: dict[str, int]
    levels: list[LevelOut]
    intake: IntakeStats | None = Field(
        default=None, description="the answering worker's intake writer (each worker has one)")
