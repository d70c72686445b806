"""Run a service: its gRPC server and its HTTP app in one event loop, with a graceful SIGTERM drain.

On SIGTERM (or SIGINT) the service turns unready on both transports first, then lets calls in flight
finish within the grace period, then runs the service's own shutdown hooks (closing Kafka clients, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import uvicorn
from starlette.types import ASGIApp

from loopline_common.grpc_server import GrpcServer
from loopline_common.readiness import Readiness
from loopline_common.settings import ServiceSettings, SettingsError, load_settings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGTERM for both transports."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    *,
    service: str,
    settings: ServiceSettings,
    readiness: Readiness,
    grpc_server: GrpcServer,
    http_app: ASGIApp,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    stop_event: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop_event`), then drain and stop."""
    loop = asyncio.get_running_loop()
    stop = stop_event or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if on_start is not None:
        await on_start()
    grpc_port = await grpc_server.start()
    http = _EmbeddedUvicorn(
        uvicorn.Config(
            http_app,
            host=settings.host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
            lifespan="off",
        )
    )
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():  # failed to bind: surface the error
            await http_task
            raise OSError(f"HTTP server for {service} stopped during start-up")
        await asyncio.sleep(0.01)
    http_port = http.servers[0].sockets[0].getsockname()[1]

    async def keep_health_fresh() -> None:
        while True:
            await grpc_server.refresh_health()
            await asyncio.sleep(settings.readiness_interval_seconds)

    health_task = asyncio.create_task(keep_health_fresh())
    # What start-up made (modules, settings, clients) lives as long as the process: frozen, the cyclic
    # collector no longer walks it on each full collection (a pause of tens of milliseconds otherwise).
    gc.freeze()
    log.info(
        "serving",
        extra={"http_port": http_port, "grpc_port": grpc_port, "host": settings.host, "event": "serving"},
    )
    await stop.wait()

    log.info("draining", extra={"grace_seconds": settings.shutdown_grace_seconds, "event": "draining"})
    readiness.drain()
    health_task.cancel()
    http.should_exit = True
    await asyncio.gather(grpc_server.stop(settings.shutdown_grace_seconds), http_task)
    if on_stop is not None:
        await on_stop()
    log.info("stopped", extra={"event": "stopped"})


def load_settings_or_exit(cls: type[S]) -> S:
    """Settings for `main()`: on a bad or missing variable, print which and exit with status 2."""
    try:
        settings: S = load_settings(cls)
    except SettingsError as exc:
        print(f"loopline: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings
