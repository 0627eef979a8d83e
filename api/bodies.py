"""Request bodies read with a size limit: refused by their declared Content-Length before a
byte is read, and by what actually arrives when the length is not declared; JSON parsed
with a 422 that says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import Request

from spatial.errors import InvalidInput, TooLarge


def check_declared_size(request: Request, max_bytes: int, hint: str = "") -> None:
    """413 when the declared Content-Length is over max_bytes (nothing is read)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        n = int(declared)
    except ValueError:
        raise InvalidInput(f"content-length: not a number: {declared[:40]!r}") from None
    if n > max_bytes:
        raise TooLarge(f"the request body is {n:,} bytes, over the limit of {max_bytes:,}"
                       f"{'; ' + hint if hint else ''}")


async def limited_stream(request: Request, max_bytes: int, hint: str = ""
                         ) -> AsyncIterator[bytes]:
    """The body's chunks, refused (413) as soon as more than max_bytes have arrived."""
    check_declared_size(request, max_bytes, hint)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"the request body is over the limit of {max_bytes:,} bytes"
                           f"{'; ' + hint if hint else ''}")
        yield chunk


async def read_body(request: Request, max_bytes: int, hint: str = "") -> bytes:
    """The whole body, at most max_bytes (413 beyond, with the hint on what to do)."""
    body = bytearray()
    async for chunk in limited_stream(request, max_bytes, hint):
        body.extend(chunk)
    return bytes(body)


def parse_json(raw: bytes) -> Any:
    """A JSON body (422 with the parser's reason when it is not JSON)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"body: not valid JSON ({e})") from None
