"""The operator view and commands on AWS (moto)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from a2a_scale.ops import cluster_view, connected, replicas
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.ops import TAIL_PREFIX
from cli_support import A2A_SCALE, run_cli
from ops_support import (
    WORKING,
    check_cancel,
    check_listing,
    check_tail,
    make_task,
    save,
    seed,
)

pytestmark = pytest.mark.aws


@pytest_asyncio.fixture
async def pair(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> AsyncIterator[tuple[AWSBackend, AWSBackend]]:
    async with make_backend(namespace) as a, make_backend(namespace) as b:
        yield a, b


@pytest.mark.asyncio
async def test_view_lists_cancels_and_follows_across_replicas(
    pair: tuple[AWSBackend, AWSBackend],
    make_backend: Callable[..., AWSBackend],
    namespace: str,
) -> None:
    a, b = pair
    await seed(a)
    operator = make_backend(namespace)
    async with connected(operator):  # not a replica: registers nothing
        await check_listing(operator)
        await check_cancel(operator)
        found = {r.instance_id: r for r in await replicas(operator)}
        assert set(found) == {a.instance_id, b.instance_id}
        assert all(r.running == [] for r in found.values())
        # Following registers a temporary replica with its own doorbell queue.
        await check_tail(operator, b)
        beats = await cluster_view(operator).heartbeats()
        assert not [i for i in beats if i.startswith(TAIL_PREFIX)]  # removed


@pytest.mark.asyncio
async def test_cli_tail_follows_events_saved_by_a_replica(
    pair: tuple[AWSBackend, AWSBackend],
    aws_env: dict[str, str],
    namespace: str,
) -> None:
    a, _ = pair
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith('A2A_SCALE_')},
        **aws_env,
        'A2A_SCALE_BACKEND': 'aws',
        'A2A_SCALE_NAMESPACE': namespace,
    }
    with tempfile.TemporaryDirectory() as cwd:
        tail = subprocess.Popen(  # noqa: ASYNC220
            [str(A2A_SCALE), 'tail', '--json', '--count', '2', '--task', 'ops-tail'],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            task = make_task('ops-tail', 'ctx-t', WORKING)
            version = 0
            async with asyncio.timeout(60):
                while tail.poll() is None:  # saves until the tail has seen two
                    version = await save(a, 'carol', task, prev=version)
                    await asyncio.sleep(0.5)
            out, err = tail.communicate(timeout=10)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
    assert tail.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 2
    assert all(e['task_id'] == 'ops-tail' and e['state'] == 'working' for e in events)
    assert events[1]['version'] == events[0]['version'] + 1
    assert all(e['kind'] == 'status' and e['time'] for e in events)

    listed = run_cli('tasks', 'list', '--json', env=env, timeout=60)
    assert listed.code == 0, listed.stderr
    assert [json.loads(line)['id'] for line in listed.stdout.splitlines()] == [
        'ops-tail'
    ]
    shown = run_cli('replicas', env=env, timeout=60)
    assert shown.code == 0, shown.stderr
    assert a.instance_id in shown.stdout
    assert TAIL_PREFIX not in shown.stdout  # the tail's replica left with it
