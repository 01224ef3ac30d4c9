"""A small open-loop HTTP/1.1 load generator at a fixed request rate (wrk2-style).

Debian has no wrk2, so `load.bench` measures latency at a fixed rate with this instead,
in its own process pinned to one core (`taskset -c 1`). Requests are *scheduled* at
`start + i / rate`; latency is measured from the scheduled instant, not from the send,
so a stalled server is not hidden by a stalled client (coordinated omission). Keep-alive
connections are reused and opened on demand up to `--max-connections`.

    taskset -c 1 python -m load.fixed_rate --url http://127.0.0.1:3000/predict \
        --bodies bodies.jsonl --rate 200 --duration 20

Prints one JSON line: sent, ok (2xx), non_2xx, errors, connections, p50/p95/p99/max in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: Drop idle connections before the server's keep-alive timeout (uvicorn: 5 s) closes them,
#: so a server-side close of an idle socket is not counted as a server error.
IDLE_EXPIRY_SECONDS = 2.0


class Client:
    """Keep-alive connections to one host and the per-request outcomes."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[Conn, float]] = []
        self.slots = asyncio.Semaphore(max_connections)
        self.opened = 0
        self.latencies_us: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0

    async def _connection(self) -> Conn:
        while self.idle:
            conn, since = self.idle.pop()
            if time.perf_counter() - since < IDLE_EXPIRY_SECONDS:
                return conn
            conn[1].close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def send(self, request: bytes, scheduled: float) -> None:
        """One request; latency counted from its scheduled instant."""
        async with self.slots:
            try:
                reader, writer = await self._connection()
                writer.write(request)
                status, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.errors += 1
                return
            if close:  # the server ends the connection after this answer
                writer.close()
            else:
                self.idle.append(((reader, writer), time.perf_counter()))
        self.latencies_us.append((time.perf_counter() - scheduled) * 1e6)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection after it)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "connection":
            close = "close" in value.lower()
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            raise ValueError("chunked responses are not supported")
    await reader.readexactly(length)
    return status, close


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    url: str, bodies: list[bytes], *, rate: float, duration: float, max_connections: int
) -> dict[str, Any]:
    """Send `rate * duration` requests on schedule; return the summary."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    client = Client(host, port, max_connections)
    total = int(rate * duration)
    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(client.send(requests[i % len(requests)], scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    lat = client.latencies_us
    ok = sum(n for s, n in client.statuses.items() if 200 <= s < 300)
    return {
        "statuses": {str(k): v for k, v in sorted(client.statuses.items())},
        "sent": total,
        "ok": ok,
        "non_2xx": len(lat) - ok,
        "errors": client.errors,
        "connections": client.opened,
        "achieved_rps": round(len(lat) / elapsed, 1),
        "p50_us": _percentile(lat, 0.50),
        "p95_us": _percentile(lat, 0.95),
        "p99_us": _percentile(lat, 0.99),
        "max_us": max(lat, default=0.0),
    }


def main() -> None:
    """CLI: run and print the JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m load.fixed_rate")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="one JSON body per line")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds")
    parser.add_argument("--max-connections", type=int, default=256)
    args = parser.parse_args()
    bodies = [line.encode() for line in args.bodies.read_text().splitlines() if line]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(
            args.url,
            bodies,
            rate=args.rate,
            duration=args.duration,
            max_connections=args.max_connections,
        )
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
