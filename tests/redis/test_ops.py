"""The operator view and commands on Redis, `tail` while the demo runs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from a2a_scale import Backend, load_backend
from a2a_scale.ops import connected, replicas
from a2a_scale_redis.namespace import purge_namespace
from cli_support import A2A_SCALE
from ops_support import check_cancel, check_listing, check_tail, seed
from redis import Redis as SyncRedis

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def pair(
    redis_url: str, namespace: str, raw: Redis
) -> AsyncIterator[tuple[Backend, Backend]]:
    async with (
        load_backend('redis', namespace=namespace, url=redis_url) as a,
        load_backend('redis', namespace=namespace, url=redis_url) as b,
    ):
        yield a, b
    await purge_namespace(raw, namespace)


@pytest.mark.asyncio
async def test_view_lists_cancels_and_follows_across_replicas(
    pair: tuple[Backend, Backend], redis_url: str, namespace: str
) -> None:
    a, b = pair
    await seed(a)
    operator = load_backend('redis', namespace=namespace, url=redis_url)
    async with connected(operator):  # not a replica: registers nothing
        await check_listing(operator)
        await check_cancel(operator)
        found = {r.instance_id: r for r in await replicas(operator)}
        assert set(found) == {a.instance_id, b.instance_id}
        assert all(r.running == [] for r in found.values())
        assert all(r.subscriptions is None for r in found.values())  # unknown
        await check_tail(operator, b)


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(A2A_SCALE), *args],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _demo_namespaces(redis_url: str) -> set[str]:
    """The namespaces of running demos (their replica registries)."""
    client = SyncRedis.from_url(redis_url)
    try:
        return {
            key.decode()[1:].split(':')[0]
            for key in client.scan_iter(match='{demo-*:instances}')
        }
    finally:
        client.close()


def _new_demo_namespace(redis_url: str, old: set[str], seconds: float) -> str:
    """The namespace of a demo started after `old` was read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _demo_namespaces(redis_url) - old
        if found:
            return min(found)
        time.sleep(0.05)
    raise AssertionError(f'no demo registered a replica within {seconds} s')


def test_tail_follows_the_demo_as_it_runs(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith('A2A_SCALE_')}
    env |= {'A2A_SCALE_BACKEND': 'redis', 'A2A_SCALE_REDIS_URL': redis_url}
    running = _demo_namespaces(redis_url)
    demo = _cli('demo', '--quiet', env=env)
    tail = follow = None
    try:
        namespace = _new_demo_namespace(redis_url, running, 30)
        tail = _cli('tail', '--namespace', namespace, '--count', '3', env=env)
        follow = _cli(
            'tail', '--namespace', namespace, '--json', '--count', '1', env=env
        )
        out, err = tail.communicate(timeout=60)
        json_out, json_err = follow.communicate(timeout=60)
        demo_out, demo_err = demo.communicate(timeout=60)
    finally:
        for proc in (demo, tail, follow):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert demo.returncode == 0, demo_out + demo_err
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3, (out, err)
    for line in lines:
        clock, task_id, version, kind, *_state = line.split()
        assert clock.count(':') == 2
        assert task_id
        assert version.startswith('v')
        assert kind in {'task', 'status', 'artifact', 'message'}
    assert f"namespace '{namespace}'" in err  # what it follows, on stderr
    assert follow.returncode == 0, json_err
    event = json.loads(json_out)
    assert set(event) >= {'time', 'task_id', 'version', 'kind', 'state'}
