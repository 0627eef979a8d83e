"""The grid import as a durable job (`POST /generations/import`): the upload is kept with
the job in PostgreSQL and imported by whichever worker takes it, so a long import answers
at once with a job to poll and survives a worker restart."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from layers import gisfile, jobs
from layers.grid_import import ImportOptions, import_grid
from layers.settings import Settings
from spatial.errors import InvalidInput, TooLarge

KIND = "grid_import"


def options_payload(opts: ImportOptions, *, filename: str, fmt: str) -> dict[str, Any]:
    """What a job keeps of an import's options (JSON)."""
    return {"filename": filename, "format": fmt, "layers": list(opts.layers),
            "encoding": opts.encoding, "crs": opts.crs, "fields": dict(opts.fields),
            "snap_m": opts.snap_m, "snap_max_area_m2": opts.snap_max_area_m2,
            "label": opts.label, "activate": opts.activate, "keep_invalid": opts.keep_invalid}


def _options(p: dict[str, Any]) -> ImportOptions:
    return ImportOptions(layers=tuple(p.get("layers") or ()), encoding=p.get("encoding"),
                         crs=p.get("crs"), fields=dict(p.get("fields") or {}),
                         snap_m=p.get("snap_m"),
                         snap_max_area_m2=float(p.get("snap_max_area_m2") or 100.0),
                         label=p.get("label"), activate=bool(p.get("activate")),
                         keep_invalid=bool(p.get("keep_invalid")))


def submit_import(session: Session, data: bytes, opts: ImportOptions, *, filename: str,
                  media_type: str | None, settings: Settings, actor: str) -> int:
    """Queue an import of an uploaded file; the caller commits. Refuses at once what can be
    told without reading the file (size, format)."""
    if len(data) > settings.import_max_bytes:
        raise TooLarge(f"the file is {len(data):,} bytes; at most "
                               f"{settings.import_max_bytes:,} are accepted "
                               "(GRIDOPS_IMPORT_MAX_BYTES)")
    if not data:
        raise InvalidInput("the upload is empty: send the file as the request body")
    fmt = gisfile.guess_format(filename, media_type)
    with gisfile.materialised(data, fmt, filename) as path:
        found = gisfile.list_layers(path, filename)  # not a GIS file: a 422 now, not a failed job
    if not found:
        raise InvalidInput(f"{filename}: the file holds no layer")
    return jobs.submit(session, KIND, options_payload(opts, filename=filename, fmt=fmt),
                       blob=data, actor=actor)


def handler(settings: Settings) -> jobs.Handler:
    """The job handler, bound to the deployment's settings."""
    def run(session: Session, job: jobs.JobRun, progress: jobs.Progress) -> Any:
        p = job.payload
        if job.blob is None:
            raise InvalidInput(f"job {job.id} has no file to import")
        def report(stage: str, done: int, total: int) -> None:
            progress(done, total, stage)

        name = str(p.get("filename") or "upload")
        with gisfile.materialised(job.blob, str(p["format"]), name) as path:
            result = import_grid(session, [path], _options(p), settings, names=[name],
                                 progress=report)
        out = result.as_dict()
        out["problems_href"] = (f"/generations/{result.generation}/problems"
                                if result.generation else None)
        return out
    return run


def register(settings: Settings) -> None:
    """Make this process's job workers run grid imports."""
    jobs.register(KIND, handler(settings), replace_existing=True)
