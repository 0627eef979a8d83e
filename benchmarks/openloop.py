"""An open-loop HTTP load: requests sent on a fixed schedule (rate per second), whether or
not earlier ones have been answered, and each latency measured from the time the request
was due, not from when a free connection sent it. Unlike wrk's closed loop (a new request
only when one comes back) a slow server cannot slow the load down and hide its queue
(coordinated omission), so "p99 at 500/s" means what it says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class OpenLoopResult:
    """What came back."""

    rate: float  # requests per second asked for
    seconds: float  # from the first due time to the last answer
    sent: int
    latencies_ms: np.ndarray  # per answered request, from its due time
    status: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # connection errors and timeouts
    late_ms: float = 0.0  # the most a request was queued after its due time (client overload)
    bodies: list[bytes] = field(default_factory=list)  # answers kept (keep_bodies)

    @property
    def answered(self) -> int:
        """Requests with an HTTP answer."""
        return len(self.latencies_ms)

    def pct(self, q: float) -> float:
        """A latency percentile (ms)."""
        return float(np.percentile(self.latencies_ms, q)) if self.answered else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _run(base: str, make_request: Callable[[int], bytes], rate: float, seconds: float,
               connections: int, timeout_s: float, keep_bodies: bool) -> OpenLoopResult:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    n = int(rate * seconds)
    requests = [make_request(i) for i in range(n)]  # built before the clock starts
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    lat = np.full(n, np.nan)
    status: dict[int, int] = {}
    bodies: list[bytes] = []
    errors = 0
    late = 0.0  # the producer's own lag: large means the client, not the server, fell behind

    async def worker() -> None:
        nonlocal errors
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (job := await queue.get()) is not None:
            i, due = job
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(requests[i])
                code, body = await asyncio.wait_for(_read_response(reader), timeout_s)
                lat[i] = (time.perf_counter() - due) * 1000
                status[code] = status.get(code, 0) + 1
                if keep_bodies:
                    bodies.append(body)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.1)  # let the connections' tasks start
    t0 = time.perf_counter() + 0.05
    for i in range(n):
        due = t0 + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((i, due))
        late = max(late, time.perf_counter() - due)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    took = time.perf_counter() - t0
    done = lat[~np.isnan(lat)]
    return OpenLoopResult(rate, took, n, done, status, errors, late * 1000, bodies)


def open_loop(base: str, make_request: Callable[[int], bytes], rate: float, seconds: float,
              connections: int = 64, timeout_s: float = 10.0, keep_bodies: bool = False
              ) -> OpenLoopResult:
    """Send make_request(i) (the raw HTTP/1.1 bytes, keep-alive) at `rate` per second for
    `seconds` over up to `connections` connections."""
    try:
        import uvloop

        return uvloop.run(_run(base, make_request, rate, seconds, connections, timeout_s,
                               keep_bodies))
    except ImportError:
        return asyncio.run(_run(base, make_request, rate, seconds, connections, timeout_s,
                                keep_bodies))
