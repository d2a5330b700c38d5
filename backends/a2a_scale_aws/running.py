"""`AWSRunningTasks`: which replica runs which task, in the namespace's table.

A record is one item in its task's partition (``t#<task id>``, ``running``):
the owner, the instance and the resume count. Keyed by the task, recording a
task again (from another replica) replaces the record, and deleting the task
deletes it. The sparse ``by-replica`` index lists the records by replica
without a ``Scan``: its partition is one of `items.RUNNING_SHARDS` shards
picked by a hash of the instance id, its sort key the instance.

Cost in DynamoDB calls:

- `add`: one ``PutItem`` (about 2 WRU with the index write; 3 when the record
  moves to another replica).
- `remove`: one ``DeleteItem`` conditioned on the instance (2 WRU; 1 when
  another replica holds the record).
- `running`: one ``Query`` of the index for one replica, one per shard for
  every replica (each 0.5 RRU per 4 KB read).
- `claim_orphans`: one ``Query`` per shard, one strongly consistent
  ``BatchGetItem`` of the heartbeats of the replicas found (per 100), then
  per orphan a conditional ``UpdateItem`` that marks it claimed (exactly one
  claimer's condition holds) and a ``DeleteItem`` once it is returned. With
  no record anywhere it costs the shard queries only.

The index is eventually consistent on AWS (it lags by a fraction of a
second), so `running` may miss a record just added or show one just
removed. `claim_orphans` is not affected: a dead replica's records are older
than that, and its conditional writes decide on the table itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from a2a_scale import BackendNotStartedError
from a2a_scale.recovery import RunningTask, RunningTasks
from a2a_scale_aws import items
from a2a_scale_aws.errors import AWSBackendError, error_code

logger = logging.getLogger(__name__)

_BATCH_GET = 100
# Claim steps (conditional writes) in flight at once.
_CLAIM_CONCURRENCY = 16
_LOST_RACE = 'ConditionalCheckFailedException'


class AWSRunningTasks(RunningTasks):
    """The running-task records of a namespace, in its DynamoDB table.

    A replica is dead when its heartbeat item (``r#<instance>``, written by
    `a2a_scale_aws.lifecycle.SqsQueueLifecycle` before the replica can run
    anything) is older than ``older_than``, and gone when that item is
    missing: stopped, or reaped. The caller's own records are never claimed.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        instance_id: str,
        ttl_seconds: int = 7 * 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Initializes the records over an open aiobotocore DynamoDB client.

        Args:
            client: The DynamoDB client (`None` until the backend connects).
            table_name: The namespace's table (see `a2a_scale_aws.items`).
            instance_id: This replica, whose records it never claims.
            ttl_seconds: A record left behind is deleted by DynamoDB's TTL
                this long after it was written (0: never), like an
                unfinished task.
            clock: Returns the time in seconds (for tests).
        """
        self._db = client
        self.table_name = table_name
        self._instance_id = instance_id
        self._ttl = ttl_seconds
        self._clock = clock

    @property
    def db(self) -> Any:
        """The DynamoDB client; raises if the backend is not connected."""
        if self._db is None:
            raise BackendNotStartedError(
                'The \'aws\' backend is not connected: use "async with backend:".'
            )
        return self._db

    def _key(self, task_id: str) -> dict[str, Any]:
        return {
            items.PK: {'S': items.task_pk(task_id)},
            items.SK: {'S': items.RUNNING_SK},
        }

    def _failed(self, operation: str, task_id: str, error: Exception) -> Exception:
        code = error_code(error)
        if not code:
            return error
        return AWSBackendError(
            f'{operation} of the running record on table {self.table_name!r} '
            f'for task {task_id!r} failed: {code}'
        )

    async def add(self, record: RunningTask) -> None:
        """Records that `record.instance_id` runs `record.task_id` (one PutItem)."""
        item: dict[str, Any] = {
            **self._key(record.task_id),
            'o': {'S': record.owner},
            'i': {'S': record.instance_id},
            'n': {'N': str(record.resumes)},
            items.GSI3_PK: {'S': items.running_shard(record.instance_id)},
            items.GSI3_SK: {'S': items.key_part(record.instance_id)},
        }
        if self._ttl > 0:
            item[items.TTL_ATTRIBUTE] = {'N': str(int(self._clock()) + self._ttl)}
        try:
            await self.db.put_item(TableName=self.table_name, Item=item)
        except Exception as e:
            raise self._failed('PutItem', record.task_id, e) from e

    async def remove(self, task_id: str, instance_id: str) -> None:
        """Drops the record if `instance_id` holds it (one conditional DeleteItem)."""
        try:
            await self.db.delete_item(
                TableName=self.table_name,
                Key=self._key(task_id),
                ConditionExpression='#i = :i',
                ExpressionAttributeNames={'#i': 'i'},
                ExpressionAttributeValues={':i': {'S': instance_id}},
            )
        except Exception as e:
            if error_code(e) == _LOST_RACE:
                return  # another replica holds it now, or nobody does
            raise self._failed('DeleteItem', task_id, e) from e

    async def running(self, instance_id: str | None = None) -> list[RunningTask]:
        """Returns the records of one replica, or of every replica (index reads)."""
        if instance_id is not None:
            found = await self._query(items.running_shard(instance_id), instance_id)
        else:
            pages = await asyncio.gather(
                *(self._query(shard) for shard in items.running_shards())
            )
            found = [item for page in pages for item in page]
        return sorted(
            (_decode(item) for item in found),
            key=lambda r: (r.instance_id, r.task_id),
        )

    async def _query(
        self, shard: str, instance_id: str | None = None, *, claims: bool = False
    ) -> list[dict[str, Any]]:
        """The index items of a shard (of one replica); claimed ones if `claims`."""
        kwargs: dict[str, Any] = {
            'TableName': self.table_name,
            'IndexName': items.BY_REPLICA,
            'KeyConditionExpression': '#pk = :pk',
            'ExpressionAttributeNames': {'#pk': items.GSI3_PK},
            'ExpressionAttributeValues': {':pk': {'S': shard}},
        }
        if instance_id is not None:
            kwargs['KeyConditionExpression'] += ' AND #sk = :sk'
            kwargs['ExpressionAttributeNames']['#sk'] = items.GSI3_SK
            kwargs['ExpressionAttributeValues'][':sk'] = {
                'S': items.key_part(instance_id)
            }
        found: list[dict[str, Any]] = []
        while True:
            page = await self.db.query(**kwargs)
            found.extend(
                item
                for item in page.get('Items', [])
                if (claims or 'c' not in item)
                and (instance_id is None or item['i']['S'] == instance_id)
            )
            if 'LastEvaluatedKey' not in page:
                return found
            kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']

    async def _heartbeats(self, instance_ids: list[str]) -> dict[str, float]:
        """The last heartbeat (seconds) of each replica that has one."""
        beats: dict[str, float] = {}
        for start in range(0, len(instance_ids), _BATCH_GET):
            keys = [
                {
                    items.PK: {'S': items.replica_pk(instance_id)},
                    items.SK: {'S': items.REPLICA_SK},
                }
                for instance_id in instance_ids[start : start + _BATCH_GET]
            ]
            request: dict[str, Any] = {
                self.table_name: {
                    'Keys': keys,
                    'ConsistentRead': True,
                    'ProjectionExpression': '#pk, #hb',
                    'ExpressionAttributeNames': {'#pk': items.PK, '#hb': 'hb'},
                }
            }
            while request:
                response = await self.db.batch_get_item(RequestItems=request)
                for item in response.get('Responses', {}).get(self.table_name, []):
                    instance_id = item[items.PK]['S'][len('r#') :]
                    beats[instance_id] = float(item.get('hb', {}).get('N', '0'))
                request = response.get('UnprocessedKeys') or {}
        return beats

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        """Takes the records of dead or gone replicas, each by one caller only.

        A claim is two steps per record: a conditional ``UpdateItem`` marks
        it claimed by this replica (only one claimer's condition holds), then
        a ``DeleteItem`` conditioned on that mark drops it once returned. A
        record whose mark was set but whose reply was lost, or whose delete
        failed, is returned again by this replica's next claim, or taken over
        by another replica once this one is dead: never lost, at worst
        returned twice.
        """
        me = self._instance_id
        held, pending = await self._listed()
        held.pop(me, None)
        if not held and not pending:
            return []
        others = sorted({*held, *pending} - {me})
        beats = await self._heartbeats(others) if others else {}
        now = self._clock()

        def dead(instance_id: str) -> bool:
            return instance_id not in beats or now - beats[instance_id] >= older_than

        steps = [
            self._mark(record.task_id, 'i', holder)
            for holder, records in held.items()
            if dead(holder)
            for record in records
        ]
        # Claims whose replies this replica lost, and those of dead claimers
        # (checked on the table: the index may lag).
        steps += [
            self._mark(record.task_id, 'c', claimer)
            for claimer, records in pending.items()
            if claimer == me or dead(claimer)
            for record in records
        ]
        claimed = await self._bounded(steps)
        await self._bounded([self._acknowledge(r.task_id) for r in claimed])
        if claimed:
            logger.info(
                'Claimed %d running tasks of dead replicas %s',
                len(claimed),
                sorted({r.instance_id for r in claimed}),
            )
        return claimed

    async def _listed(
        self,
    ) -> tuple[dict[str, list[RunningTask]], dict[str, list[RunningTask]]]:
        """Every record by holder, and every unacknowledged claim by claimer."""
        held: dict[str, list[RunningTask]] = {}
        pending: dict[str, list[RunningTask]] = {}
        pages = await asyncio.gather(
            *(self._query(shard, claims=True) for shard in items.running_shards())
        )
        for item in (item for page in pages for item in page):
            record = _decode(item)
            if 'c' in item:
                pending.setdefault(item['c']['S'], []).append(record)
            else:
                held.setdefault(record.instance_id, []).append(record)
        return held, pending

    @staticmethod
    async def _bounded(
        steps: list[Coroutine[Any, Any, RunningTask | None]],
    ) -> list[RunningTask]:
        """Runs `steps`, at most `_CLAIM_CONCURRENCY` at a time."""
        limit = asyncio.Semaphore(_CLAIM_CONCURRENCY)

        async def run(
            step: Coroutine[Any, Any, RunningTask | None],
        ) -> RunningTask | None:
            async with limit:
                return await step

        results = await asyncio.gather(*(run(step) for step in steps))
        return [r for r in results if r is not None]

    async def _mark(
        self, task_id: str, attribute: str, holder: str
    ) -> RunningTask | None:
        """Marks the record claimed by this replica if `attribute` is `holder`.

        ``'i'``: the dead replica still holds the record and nobody claimed
        it; ``'c'``: the claim of a dead claimer (or this replica's own,
        unacknowledged) is taken over. Errors are logged, not raised, so that
        the records already marked are returned.
        """
        condition = '#a = :h' + (
            ' AND attribute_not_exists(#c)' if attribute == 'i' else ''
        )
        try:
            response = await self.db.update_item(
                TableName=self.table_name,
                Key=self._key(task_id),
                UpdateExpression='SET #c = :me',
                ConditionExpression=condition,
                ExpressionAttributeNames={'#a': attribute, '#c': 'c'},
                ExpressionAttributeValues={
                    ':h': {'S': holder},
                    ':me': {'S': self._instance_id},
                },
                ReturnValues='ALL_NEW',
            )
        except Exception as e:
            if error_code(e) != _LOST_RACE:
                logger.warning(
                    'Could not claim the record of task %s from %s: %s',
                    task_id,
                    holder,
                    error_code(e) or type(e).__name__,
                )
            return None
        return _decode(response['Attributes'])

    async def _acknowledge(self, task_id: str) -> None:
        """Deletes a record this replica claimed and is returning."""
        try:
            await self.db.delete_item(
                TableName=self.table_name,
                Key=self._key(task_id),
                ConditionExpression='#c = :me',
                ExpressionAttributeNames={'#c': 'c'},
                ExpressionAttributeValues={':me': {'S': self._instance_id}},
            )
        except Exception as e:
            if error_code(e) != _LOST_RACE:  # lost: recorded again since
                logger.warning(
                    'Could not drop the claimed record of task %s (%s): the '
                    'next claim returns it again',
                    task_id,
                    error_code(e) or type(e).__name__,
                )


def _decode(item: dict[str, Any]) -> RunningTask:
    return RunningTask(
        task_id=item[items.PK]['S'][len('t#') :],
        owner=item['o']['S'],
        instance_id=item['i']['S'],
        resumes=int(item['n']['N']),
    )
