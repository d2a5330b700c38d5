"""The operator view and commands on the memory backend (in this process)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from a2a.types.a2a_pb2 import GetTaskRequest, TaskState
from handler_support import (
    WAIT,
    WaitsForCancel,
    agent_card,
    call_context,
    start_task,
)
from typer.testing import CliRunner

from a2a_scale import load_backend
from a2a_scale.backend import Backend
from a2a_scale.cli import build_app
from a2a_scale.memory import MemoryBackend
from a2a_scale.ops import UnsupportedOperationError, cancel_task, replicas
from ops_support import (
    SECRET,
    WORKING,
    check_cancel,
    check_listing,
    check_tail,
    seed,
)

pytestmark = pytest.mark.memory

runner = CliRunner()


@pytest.fixture
def namespace() -> str:
    return f'ops-{uuid.uuid4().hex[:8]}'


@pytest_asyncio.fixture
async def pair(namespace: str) -> AsyncIterator[tuple[Backend, Backend]]:
    async with (
        load_backend('memory', namespace=namespace) as a,
        load_backend('memory', namespace=namespace) as b,
    ):
        yield a, b


@pytest.mark.asyncio
async def test_view_lists_finds_and_cancels_every_owners_tasks(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    await seed(a)
    await check_listing(b)
    await check_cancel(b)


@pytest.mark.asyncio
async def test_tail_follows_what_another_replica_saves(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    await check_tail(a, b)


@pytest.mark.asyncio
async def test_replicas_show_heartbeats_running_tasks_and_subscriptions(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    found = {r.instance_id: r for r in await replicas(a)}
    assert set(found) == {a.instance_id, b.instance_id}
    for info in found.values():
        assert info.last_heartbeat is not None
        assert info.running == []
        assert info.subscriptions == 0


@pytest.mark.asyncio
async def test_operator_cancel_stops_the_agent_on_another_replica(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    agent = WaitsForCancel()
    handler = a.request_handler(agent_executor=agent, agent_card=agent_card())
    ctx = call_context()
    task = await start_task(handler, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    async with asyncio.timeout(WAIT):  # the agent's WORKING is saved
        while True:
            stored = await a.task_store.get(task.id, ctx)
            if stored is not None and stored.task.status.state == WORKING:
                break
            await asyncio.sleep(0.005)
    running = {r.instance_id: r.running for r in await replicas(b)}
    assert [t.task_id for t in running[a.instance_id] or []] == [task.id]
    assert running[b.instance_id] == []
    cancelled = await cancel_task(b, task.id)
    assert cancelled.owner == 'alice'
    await asyncio.wait_for(agent.cancelled.wait(), WAIT)
    got = await handler.on_get_task(GetTaskRequest(id=task.id), ctx)
    assert got is not None
    assert got.status.state == TaskState.TASK_STATE_CANCELED


def test_a_backend_without_a_view_is_named() -> None:
    class Plain(MemoryBackend):
        name = 'plain'

        @property
        def cluster_view(self):  # type: ignore[no-untyped-def,override]
            return Backend.cluster_view.fget(self)  # type: ignore[attr-defined]

    backend = Plain(load_backend('memory').settings)
    with pytest.raises(UnsupportedOperationError, match="'plain' backend"):
        _ = backend.cluster_view


def _run(namespace: str, *args: str):  # type: ignore[no-untyped-def]
    env = {'A2A_SCALE_BACKEND': 'memory', 'A2A_SCALE_NAMESPACE': namespace}
    return runner.invoke(build_app(plugins=False), list(args), env=env)


@pytest.mark.asyncio
async def test_cli_tasks_and_cancel_without_bodies_unless_asked(
    pair: tuple[Backend, Backend], namespace: str
) -> None:
    a, _ = pair
    await seed(a)
    listed = await asyncio.to_thread(_run, namespace, 'tasks', 'list', '--json')
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r['id'], r['owner'], r['access']) for r in rows] == [
        ('ops-c', 'bob', 'operator'),
        ('ops-b', 'bob', 'operator'),
        ('ops-a', 'alice', 'operator'),
    ]
    assert 'process that serves it' in listed.stderr  # memory: its own copy only
    plain = await asyncio.to_thread(
        _run, namespace, 'tasks', 'list', '--state', 'working', '--state', 'completed'
    )
    assert plain.exit_code == 0, plain.output
    lines = plain.stdout.splitlines()
    assert lines[0].split('\t') == [
        'TASK',
        'STATE',
        'OWNER',
        'CONTEXT',
        'VERSION',
        'UPDATED',
    ]
    assert [line.split('\t')[:3] for line in lines[1:]] == [
        ['ops-b', 'completed', 'bob'],
        ['ops-a', 'working', 'alice'],
    ]
    shown = await asyncio.to_thread(_run, namespace, 'tasks', 'show', 'ops-c')
    assert shown.exit_code == 0, shown.output
    assert 'operator' in shown.stdout
    assert 'input-required' in shown.stdout
    assert SECRET not in shown.stdout
    assert '--bodies' in shown.stdout
    full = await asyncio.to_thread(
        _run, namespace, 'tasks', 'show', 'ops-c', '--bodies', '--json'
    )
    assert full.exit_code == 0, full.output
    assert json.loads(full.stdout)['task']['history'][0]['parts'][0]['text'] == SECRET
    done = await asyncio.to_thread(_run, namespace, 'cancel', 'ops-a', '--json')
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) | {'version': 0} == {
        'id': 'ops-a',
        'state': 'canceled',
        'version': 0,
        'owner': 'alice',
        'already': False,
        'access': 'operator',
    }


@pytest.mark.parametrize(
    ('args', 'code', 'fragment'),
    [
        (['cancel', 'ops-b'], 1, "task 'ops-b' already finished (completed)"),
        (['cancel', 'nope'], 1, "No task 'nope' in namespace"),
        (['tasks', 'show', 'nope'], 1, "No task 'nope' in namespace"),
        (['tasks', 'list', '--state', 'bogus'], 2, "--state: unknown state 'bogus'"),
        (['tasks', 'list', '--page-token', 'bogus'], 2, '--page-token: '),
        (['tail'], 1, 'cannot be followed from another process'),
        (['replicas', '--backend', 'nope'], 2, "'nope' (--backend)"),
    ],
)
@pytest.mark.asyncio
async def test_cli_mistakes_are_one_line(
    pair: tuple[Backend, Backend],
    namespace: str,
    args: list[str],
    code: int,
    fragment: str,
) -> None:
    await seed(pair[0])
    result = await asyncio.to_thread(_run, namespace, *args)
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0]
    assert 'Traceback' not in result.output


@pytest.mark.asyncio
async def test_cli_replicas_lists_the_processes_replicas(
    pair: tuple[Backend, Backend], namespace: str
) -> None:
    result = await asyncio.to_thread(_run, namespace, 'replicas', '--json')
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r['instance_id'] for r in rows) == sorted(b.instance_id for b in pair)
    assert all(r['running'] == [] and r['subscriptions'] == 0 for r in rows)
