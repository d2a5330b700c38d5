"""Fixtures of the ``a2a-scale serve`` tests: replicas as real processes."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import IO, Any

import pytest_asyncio

from serve_support import ServeProcess, kill, start_process


@pytest_asyncio.fixture
async def start_serve() -> AsyncIterator[Callable[..., Any]]:
    """Starts ``a2a-scale serve`` processes; kills what is left at the end."""
    started: list[ServeProcess] = []
    logs: list[IO[bytes]] = []

    async def start(
        agent: str, *, env: Mapping[str, str] | None = None, app_dir: str = ''
    ) -> ServeProcess:
        log = tempfile.TemporaryFile(prefix='a2a-scale-serve-')  # noqa: SIM115
        logs.append(log)
        served = await start_process(agent, log=log, env=env, app_dir=app_dir)
        started.append(served)
        await served.wait_serving()
        return served

    try:
        yield start
    finally:
        for served in started:
            await kill(served.process)
        for log in logs:
            log.close()
