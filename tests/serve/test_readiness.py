"""``/readyz`` of a real ``a2a-scale serve`` process follows its backend."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from serve_support import wait_ready
from service_support import need_service, reachable

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.asyncio]

PORT = 7431
"""A private redis-server this test stops and starts again."""


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which('redis-server')
    need_service('redis-server', binary is not None, 'not on PATH')
    assert binary is not None
    process = subprocess.Popen(
        [binary, '--port', str(port), '--save', '', '--appendonly', 'no'],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if reachable('127.0.0.1', port, timeout=0.1):
                break
            if process.poll() is not None:
                pytest.fail(f'redis-server on port {port} exited: {process.returncode}')
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def status(http: httpx.AsyncClient, url: str) -> int:
    return (await http.get(f'{url}/readyz')).status_code


async def until_status(http: httpx.AsyncClient, url: str, code: int) -> None:
    async with asyncio.timeout(20):
        while await status(http, url) != code:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.1)


async def test_readyz_turns_503_while_redis_is_unreachable(start_serve) -> None:
    env = {
        'A2A_SCALE_BACKEND': 'redis',
        'A2A_SCALE_REDIS_URL': f'redis://127.0.0.1:{PORT}/0',
        'A2A_SCALE_NAMESPACE': f'ready-{uuid.uuid4().hex[:10]}',
    }
    with redis_server(PORT):
        replica = await start_serve('minimal_agent:create_agent', env=env)
        await wait_ready(replica.url)
    async with httpx.AsyncClient(timeout=10) as http:
        await until_status(http, replica.url, 503)
        reason = (await http.get(f'{replica.url}/readyz')).json()['reason']
        assert 'redis' in reason
        assert (await http.get(f'{replica.url}/healthz')).status_code == 200
        with redis_server(PORT):
            await until_status(http, replica.url, 200)
            replica.signal(signal.SIGTERM)
            assert await replica.exit_code() == 0, replica.log()[-3000:]
