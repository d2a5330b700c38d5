"""Running-task records on DynamoDB: the contract, races, and calls per operation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from a2a_scale.recovery import RunningTask
from a2a_scale.testing import TaskWriter, make_task, user_context
from a2a_scale.testing.faults import Fault
from a2a_scale_aws import items
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.clients import AWSClients, CallCounter
from a2a_scale_aws.errors import ResourceMissingError
from a2a_scale_aws.provision import (
    ProvisionReport,
    check_table,
    ensure_table,
    table_definition,
)
from a2a_scale_aws.running import AWSRunningTasks
from a2a_scale_aws.testing import inject_faults

pytestmark = pytest.mark.aws

REAP_AFTER = 60.0


def record(task_id: str, instance_id: str, resumes: int = 0) -> RunningTask:
    return RunningTask(task_id, f'owner-of-{task_id}', instance_id, resumes)


def by_task(records: list[RunningTask]) -> list[RunningTask]:
    return sorted(records, key=lambda r: r.task_id)


async def set_heartbeat(backend: AWSBackend, instance_id: str, hb: float) -> None:
    assert backend.clients is not None
    await backend.clients.dynamodb.update_item(
        TableName=backend.names.table,
        Key={
            items.PK: {'S': items.replica_pk(instance_id)},
            items.SK: {'S': items.REPLICA_SK},
        },
        UpdateExpression='SET hb = :hb',
        ExpressionAttributeValues={':hb': {'N': str(int(hb))}},
    )


async def crash(backend: AWSBackend) -> None:
    """Stops a replica's loops without any teardown: its heartbeat item stays."""
    await backend._stop_serving()
    await backend.event_stream.stop()


@pytest.mark.asyncio
async def test_add_replace_remove_and_list(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with make_backend(namespace) as a:
        running = a.running_tasks
        assert isinstance(running, AWSRunningTasks)
        await running.add(record('t1', 'r-a'))
        await running.add(record('t2', 'r-a'))
        await running.add(record('t3', 'r-b', resumes=1))
        assert await running.running('r-a') == [
            record('t1', 'r-a'),
            record('t2', 'r-a'),
        ]
        assert await running.running() == [
            record('t1', 'r-a'),
            record('t2', 'r-a'),
            record('t3', 'r-b', resumes=1),
        ]
        # Recording a task again, from another replica, replaces its record.
        await running.add(record('t1', 'r-b', resumes=1))
        assert await running.running('r-a') == [record('t2', 'r-a')]
        assert await running.running('r-b') == [
            record('t1', 'r-b', resumes=1),
            record('t3', 'r-b', resumes=1),
        ]
        # Only the replica holding a record removes it.
        await running.remove('t1', 'r-a')
        assert record('t1', 'r-b', resumes=1) in await running.running('r-b')
        await running.remove('t1', 'r-b')
        await running.remove('t1', 'r-b')  # absent: a no-op
        await running.remove('unknown', 'r-b')
        assert await running.running() == [
            record('t2', 'r-a'),
            record('t3', 'r-b', resumes=1),
        ]
        assert await running.running('r-c') == []


@pytest.mark.asyncio
async def test_orphans_of_gone_stale_and_live_replicas(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with (
        make_backend(namespace) as live,
        make_backend(namespace) as stale,
        make_backend(namespace) as fresh,
    ):
        running = live.running_tasks
        # A replica writes its heartbeat at start, before it runs anything.
        for backend in (live, stale, fresh):
            await running.add(
                record(f'task-of-{backend.instance_id}', backend.instance_id)
            )
        await running.add(record('ghost-task', 'ghost', resumes=2))  # no heartbeat
        assert await fresh.running_tasks.claim_orphans(older_than=REAP_AFTER) == [
            record('ghost-task', 'ghost', resumes=2)
        ]
        await set_heartbeat(live, stale.instance_id, time.time() - REAP_AFTER - 5)
        await set_heartbeat(live, fresh.instance_id, time.time() - REAP_AFTER + 30)
        stale_record = record(f'task-of-{stale.instance_id}', stale.instance_id)
        assert await running.claim_orphans(older_than=REAP_AFTER) == [stale_record]
        assert await running.claim_orphans(older_than=REAP_AFTER) == []
        left = await running.running()
        assert stale_record not in left
        assert {r.instance_id for r in left} == {live.instance_id, fresh.instance_id}
        # A claimer never takes its own records, whatever its heartbeat says.
        await set_heartbeat(live, live.instance_id, 0)
        assert await live.running_tasks.claim_orphans(older_than=REAP_AFTER) == []
        assert [
            r.instance_id
            for r in await fresh.running_tasks.claim_orphans(older_than=REAP_AFTER)
        ] == [live.instance_id]


@pytest.mark.asyncio
async def test_heartbeats_are_kept_to_the_millisecond(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    """Whole seconds would make a live replica look up to 1 s older."""
    async with make_backend(namespace) as a, make_backend(namespace) as b:
        mine = record('t', b.instance_id)
        await b.running_tasks.add(mine)
        b.lifecycle._clock = lambda: 1000.9
        await b.lifecycle.heartbeat()
        a.running_tasks._clock = lambda: 1001.3
        assert await a.running_tasks.claim_orphans(older_than=0.5) == []
        a.running_tasks._clock = lambda: 1001.4
        assert await a.running_tasks.claim_orphans(older_than=0.5) == [mine]


@pytest.mark.asyncio
async def test_records_of_a_stopped_replica_are_orphans_at_once(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with make_backend(namespace) as live:
        stopped = make_backend(namespace)
        async with stopped:
            mine = record('handed-over', stopped.instance_id)
            await stopped.running_tasks.add(mine)
            assert await live.running_tasks.claim_orphans(older_than=REAP_AFTER) == []
        assert await live.running_tasks.claim_orphans(older_than=REAP_AFTER) == [mine]


@pytest.mark.asyncio
async def test_records_are_claimed_after_the_reaper_removed_the_replica(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with make_backend(namespace) as live:
        dead = make_backend(namespace)
        await dead.start()
        mine = record('left-running', dead.instance_id)
        await dead.running_tasks.add(mine)
        await crash(dead)
        await set_heartbeat(live, dead.instance_id, time.time() - REAP_AFTER - 1)
        assert await live.lifecycle.reap(older_than=REAP_AFTER) == [dead.instance_id]
        assert await live.running_tasks.claim_orphans(older_than=REAP_AFTER) == [mine]
        await dead._close()


@pytest.mark.asyncio
async def test_concurrent_claimers_take_each_record_exactly_once(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    claimers = 4
    counters = [CallCounter() for _ in range(claimers)]
    backends = [make_backend(namespace, call_counter=c) for c in counters]
    await asyncio.gather(*(b.start() for b in backends))
    try:
        running = backends[0].running_tasks
        orphans = [record(f'g{i}', 'ghost') for i in range(30)]
        orphans += [record(f's{i}', 'stale', resumes=1) for i in range(30)]
        await asyncio.gather(*(running.add(r) for r in orphans))
        await set_heartbeat(backends[0], 'stale', time.time() - REAP_AFTER - 1)
        keep = record('kept', backends[1].instance_id)
        await running.add(keep)
        # Every claimer lists all the orphans before any of them deletes one,
        # so all of them race for every record.
        listed = asyncio.Barrier(claimers)
        for b in backends:
            heartbeats = b.running_tasks._heartbeats

            async def after_all_listed(ids: list[str], read: Any = heartbeats) -> Any:
                await listed.wait()
                return await read(ids)

            b.running_tasks._heartbeats = after_all_listed  # type: ignore[method-assign]
        for counter in counters:
            counter.reset()
        results = await asyncio.gather(
            *(b.running_tasks.claim_orphans(older_than=REAP_AFTER) for b in backends)
        )
        claimed = [r for result in results for r in result]
        assert sorted(claimed, key=lambda r: r.task_id) == sorted(
            orphans, key=lambda r: r.task_id
        )  # disjoint (no record twice) and complete
        marks = sum(c.calls['dynamodb.UpdateItem'] for c in counters)
        assert marks == claimers * len(orphans)  # every claimer tried each one
        assert sum(c.calls['dynamodb.DeleteItem'] for c in counters) == len(orphans)
        print(f'\nclaimed per replica: {[len(r) for r in results]}')
        assert await running.running() == [keep]
    finally:
        await asyncio.gather(*(b.stop() for b in backends))


@pytest.mark.asyncio
async def test_a_record_taken_over_while_claiming_is_left_alone(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with make_backend(namespace) as a:
        running = a.running_tasks
        await running.add(record('moved', 'ghost'))
        await running.add(record('stays', 'ghost'))
        heartbeats = running._heartbeats
        resumed = record('moved', a.instance_id, resumes=1)

        async def resumed_meanwhile(ids: list[str]) -> dict[str, int]:
            await running.add(resumed)  # after the listing, before the deletes
            return await heartbeats(ids)

        running._heartbeats = resumed_meanwhile  # type: ignore[method-assign]
        assert await running.claim_orphans(older_than=REAP_AFTER) == [
            record('stays', 'ghost')
        ]
        assert await running.running() == [resumed]


class LoseReplies:
    """A fault plan: the calls named run, and their replies are lost."""

    def __init__(self, *calls: str) -> None:
        self.calls = calls
        self.active = True

    def next_fault(self, call: str) -> Fault | None:
        if self.active and call in self.calls:
            return Fault('connection', False, call)
        return None


@pytest.mark.asyncio
async def test_a_claim_whose_replies_are_lost_loses_no_record(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    async with make_backend(namespace) as other:
        claimer = make_backend(namespace)
        await claimer.start()
        running = claimer.running_tasks
        try:
            # Marks applied, replies lost: the claimer's next claim has them.
            left = [record(f'a{i}', 'ghost') for i in range(3)]
            await asyncio.gather(*(running.add(r) for r in left))
            plan = LoseReplies('dynamodb.update_item')
            inject_faults(claimer, plan)
            assert await running.claim_orphans(older_than=REAP_AFTER) == []
            assert await other.running_tasks.running() == []  # claimed, pending
            assert await other.running_tasks.claim_orphans(older_than=REAP_AFTER) == []
            plan.active = False
            assert by_task(await running.claim_orphans(older_than=REAP_AFTER)) == left
            assert await running.claim_orphans(older_than=REAP_AFTER) == []
            # The acknowledgement is lost: returned again, at worst twice.
            again = [record(f'b{i}', 'ghost') for i in range(3)]
            await asyncio.gather(*(running.add(r) for r in again))
            plan.calls, plan.active = ('dynamodb.delete_item',), True
            assert by_task(await running.claim_orphans(older_than=REAP_AFTER)) == again
            plan.active = False
            assert await running.claim_orphans(older_than=REAP_AFTER) == []
            # Marks applied, then the claimer stops: another replica takes over.
            taken = [record(f'c{i}', 'ghost') for i in range(3)]
            await asyncio.gather(*(running.add(r) for r in taken))
            plan.calls, plan.active = ('dynamodb.update_item',), True
            assert await running.claim_orphans(older_than=REAP_AFTER) == []
        finally:
            await claimer.stop()
        got = await other.running_tasks.claim_orphans(older_than=REAP_AFTER)
        assert by_task(got) == taken
        assert await other.running_tasks.claim_orphans(older_than=REAP_AFTER) == []


@pytest.mark.asyncio
async def test_a_claim_the_index_still_lists_is_checked_on_the_table(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    """The index lags on AWS: a claim it shows may be acknowledged and gone."""
    async with make_backend(namespace) as a:
        running = a.running_tasks
        resumed = record('t', 'elsewhere', resumes=1)
        await running.add(resumed)  # recorded again since the claim

        async def stale() -> tuple[dict[str, Any], dict[str, Any]]:
            return {}, {a.instance_id: [record('t', 'ghost')]}

        running._listed = stale  # type: ignore[method-assign]
        assert await running.claim_orphans(older_than=REAP_AFTER) == []
        assert await running.running() == [resumed]


@pytest.mark.asyncio
async def test_a_deleted_task_takes_its_record_with_it(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    alice = user_context('alice')
    async with make_backend(namespace) as a:
        writer = TaskWriter(a.task_store, alice, make_task())
        await writer.create()
        await a.running_tasks.add(RunningTask(writer.task_id, 'alice', a.instance_id))
        await a.task_store.delete(writer.task_id, alice)
        assert await a.running_tasks.running() == []


@pytest.mark.asyncio
async def test_calls_per_operation(
    make_backend: Callable[..., AWSBackend], namespace: str
) -> None:
    counter = CallCounter()

    def dynamodb_calls() -> dict[str, int]:
        # The replica's SQS receive loop runs meanwhile: count DynamoDB only.
        return {k: n for k, n in counter.calls.items() if k.startswith('dynamodb.')}

    async with make_backend(namespace, call_counter=counter) as a:
        running = a.running_tasks
        counter.reset()
        await running.add(record('t', a.instance_id))
        assert dynamodb_calls() == {'dynamodb.PutItem': 1}
        counter.reset()
        await running.remove('t', a.instance_id)
        assert dynamodb_calls() == {'dynamodb.DeleteItem': 1}
        counter.reset()
        await running.running(a.instance_id)
        assert dynamodb_calls() == {'dynamodb.Query': 1}
        counter.reset()
        await running.running()
        assert dynamodb_calls() == {'dynamodb.Query': items.RUNNING_SHARDS}
        counter.reset()
        assert await running.claim_orphans(older_than=REAP_AFTER) == []
        assert dynamodb_calls() == {'dynamodb.Query': items.RUNNING_SHARDS}
        for i in range(5):
            await running.add(record(f'g{i}', 'ghost'))
        await running.add(record('mine', a.instance_id))
        counter.reset()
        assert len(await running.claim_orphans(older_than=REAP_AFTER)) == 5
        assert dynamodb_calls() == {
            'dynamodb.Query': items.RUNNING_SHARDS,
            'dynamodb.BatchGetItem': 1,
            'dynamodb.UpdateItem': 5,
            'dynamodb.DeleteItem': 5,
        }
        print(f'\ncalls of a claim of 5 orphans: {dynamodb_calls()}')


@pytest.mark.asyncio
async def test_records_expire_like_unfinished_tasks(
    clients: AWSClients, namespace: str
) -> None:
    table = f'{namespace}-a2a-scale'
    await ensure_table(clients, table, ProvisionReport())
    db = clients.dynamodb
    await AWSRunningTasks(db, table, instance_id='x', ttl_seconds=0).add(
        record('kept', 'x')
    )
    await AWSRunningTasks(db, table, instance_id='x', clock=lambda: 1e6).add(
        record('expiring', 'x')
    )

    async def expiry(task_id: str) -> Any:
        key = {
            items.PK: {'S': items.task_pk(task_id)},
            items.SK: {'S': items.RUNNING_SK},
        }
        got = await db.get_item(TableName=table, Key=key)
        return got['Item'].get(items.TTL_ATTRIBUTE)

    assert await expiry('kept') is None
    assert await expiry('expiring') == {'N': str(1_000_000 + 7 * 86_400)}


@pytest.mark.asyncio
async def test_provision_adds_the_index_to_an_older_table(
    clients: AWSClients, namespace: str
) -> None:
    table = f'{namespace}-a2a-scale'
    older = table_definition(table)
    older['GlobalSecondaryIndexes'] = [
        i for i in older['GlobalSecondaryIndexes'] if i['IndexName'] != items.BY_REPLICA
    ]
    older['AttributeDefinitions'] = [
        a
        for a in older['AttributeDefinitions']
        if a['AttributeName'] not in (items.GSI3_PK, items.GSI3_SK)
    ]
    await clients.dynamodb.create_table(**older)
    with pytest.raises(ResourceMissingError, match="no index 'by-replica'"):
        await check_table(clients, table)
    report = ProvisionReport()
    await ensure_table(clients, table, report)
    assert f'index {table}.{items.BY_REPLICA}' in report.created
    await check_table(clients, table)
    running = AWSRunningTasks(clients.dynamodb, table, instance_id='me')
    await running.add(record('t', 'gone'))
    assert await running.claim_orphans(older_than=REAP_AFTER) == [record('t', 'gone')]
    again = ProvisionReport()
    await ensure_table(clients, table, again)
    assert not any(line.startswith('index') for line in again.created)
