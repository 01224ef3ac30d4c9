"""Run the bqemulator BigQuery REST emulator offline, on loopback, for the data tests.

bqemulator's DuckDB engine runs `INSTALL spatial; LOAD spatial` at start-up
(`bqemulator.storage.engine.DuckDBEngine._load_spatial`) and refuses to start when the
extension cannot be downloaded. Our tables have no GEOGRAPHY columns, so the launcher
replaces that loader with a no-op and turns off the (best-effort) avro extension too: no
test downloads anything. Once the server listens, the actual REST port is written to
`--port-file` (atomically), which is what the pytest fixture polls for.

Usage: python tests/data/bq_emulator.py --port-file PATH [--port 0] [--project ID]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

logger = logging.getLogger("tests.data.bq_emulator")


def _skip_spatial(self: Any) -> None:
    """Stand-in for `DuckDBEngine._load_spatial`: GEOGRAPHY is unused, nothing is fetched."""
    logger.info("bqemulator spatial extension skipped (offline test run)")


def patch_offline() -> None:
    """Stop bqemulator from downloading DuckDB extensions at start-up."""
    from bqemulator.storage.engine import DuckDBEngine

    DuckDBEngine._load_spatial = _skip_spatial  # type: ignore[method-assign]


def write_port(port_file: Path, port: int) -> None:
    """Publish the bound port atomically, so a reader never sees a partial file."""
    partial = port_file.with_suffix(".partial")
    partial.write_text(str(port))
    os.replace(partial, port_file)


async def serve(*, port: int, project: str, port_file: Path) -> None:
    """Start the emulator, publish its port, run until SIGTERM/SIGINT, then stop it."""
    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import EmulatorServer

    settings = Settings(
        rest_host="127.0.0.1",
        rest_port=port,
        grpc_host="127.0.0.1",
        grpc_port=0,
        persistence_mode=PersistenceMode.EPHEMERAL,
        default_project_id=project,
        enable_format_extensions=False,
        log_level=LogLevel.WARNING,
    )
    server = EmulatorServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        write_port(port_file, server.rest_port)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, patch bqemulator and serve until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--project", default="sproxxo-test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    patch_offline()
    asyncio.run(serve(port=args.port, project=args.project, port_file=args.port_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
