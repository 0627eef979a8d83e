"""Case photos on disk: type checked by content (not only by header), size limited while
streaming, named by their SHA-256 so a retry stores nothing twice."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from spatial.errors import InvalidInput, TooLarge

SIGNATURES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",),
              "image/webp": (b"RIFF",)}
EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class UnsupportedType(InvalidInput):
    """A file that is not one of the accepted image types."""

    status = 415
    code = "unsupported_media_type"


async def store(chunks: AsyncIterator[bytes], content_type: str, root: Path, ref: str,
                max_bytes: int) -> tuple[dict[str, object], bool]:
    """Stream an upload to root/ref/<sha256>.<ext>; 415 for a wrong type, 413 over the
    limit (nothing is kept then). Returns the photo's description and whether its file is
    new (the same photo sent twice is one file)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype not in SIGNATURES:
        raise UnsupportedType(f"content-type {ctype!r} is not accepted; send "
                              f"{', '.join(SIGNATURES)}")
    folder = root / ref
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the photo is over {max_bytes:,} bytes")
                if len(head) < 16:
                    head += chunk[:16]
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise InvalidInput("the photo is empty")
        if not any(head.startswith(sig) for sig in SIGNATURES[ctype]) or (
                ctype == "image/webp" and head[8:12] != b"WEBP"):
            raise UnsupportedType(f"the bytes are not a {ctype} image (content-type says "
                                  "one thing, the file another)")
        sha = digest.hexdigest()
        final = folder / f"{sha}.{EXT[ctype]}"
        new = not final.exists()
        os.replace(tmp, final)
        return {"sha256": sha, "bytes": size, "type": ctype, "file": final.name}, new
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
