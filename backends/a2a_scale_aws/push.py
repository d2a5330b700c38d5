"""`DynamoDBPushNotificationConfigStore`: push configs in the task partition."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks.push_notification_config_store import (
    PushNotificationConfigStore,
    normalize_push_notification_config,
)
from a2a.types.a2a_pb2 import TaskPushNotificationConfig
from google.protobuf.message import DecodeError

from a2a_scale import CorruptDataError
from a2a_scale_aws import items
from a2a_scale_aws.errors import error_code
from a2a_scale_aws.payloads import TASK_ID_LIMIT, check_item, check_task_id

logger = logging.getLogger(__name__)

_BATCH_WRITE = 25


def _expires(item: dict[str, Any]) -> int | None:
    exp = item.get(items.TTL_ATTRIBUTE)
    return None if exp is None else int(exp['N'])


class DynamoDBPushNotificationConfigStore(PushNotificationConfigStore):
    """Owner-scoped push configs; dispatch reads every owner's configs.

    A config is an item in its task's partition, keyed by the owner and the
    config id (length-prefixed, hashed when long), so one task holds many
    configs and dispatch reads them all with one ``Query``.

    A config expires (DynamoDB TTL, and reads hide it) ``active_ttl_seconds``
    after it was set, like a task nobody saves; dispatch pushes the expiry
    back while the task keeps producing events, so a config lives as long as
    its task is active. Deleting the task deletes its configs.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
        active_ttl_seconds: int = 7 * 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Initializes the store over an open aiobotocore DynamoDB client.

        Args:
            client: The DynamoDB client.
            table_name: The namespace's table.
            owner_resolver: Scopes configs to the caller.
            active_ttl_seconds: Lifetime of a config whose task produces no
                event (0: configs never expire).
            clock: Returns the time in seconds (for tests).
        """
        self._db = client
        self.table_name = table_name
        self.owner_resolver = owner_resolver
        self._ttl = active_ttl_seconds
        self._clock = clock

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        """Stores a normalized copy of the config for the caller."""
        check_task_id(task_id)
        owner = self.owner_resolver(context)
        stored = normalize_push_notification_config(task_id, notification_config)
        item: dict[str, Any] = {
            items.PK: {'S': items.task_pk(task_id)},
            items.SK: {'S': items.push_sk(owner, stored.id)},
            'o': {'S': owner},
            'b': {'B': stored.SerializeToString()},
        }
        if self._ttl > 0:
            item[items.TTL_ATTRIBUTE] = {'N': str(int(self._clock()) + self._ttl)}
        check_item(task_id, item, what='Push notification config')
        await self._db.put_item(TableName=self.table_name, Item=item)
        result = TaskPushNotificationConfig()
        result.CopyFrom(stored)
        return result

    async def _query(self, task_id: str, prefix: str) -> list[dict[str, Any]]:
        """The live (unexpired) config items of `task_id` under `prefix`."""
        if len(task_id.encode('utf-8')) > TASK_ID_LIMIT:
            return []
        kwargs: dict[str, Any] = {
            'TableName': self.table_name,
            'KeyConditionExpression': 'pk = :pk AND begins_with(sk, :p)',
            'ExpressionAttributeValues': {
                ':pk': {'S': items.task_pk(task_id)},
                ':p': {'S': prefix},
            },
            'ConsistentRead': True,
        }
        found: list[dict[str, Any]] = []
        now = self._clock()
        while True:
            page = await self._db.query(**kwargs)
            for item in page.get('Items', []):
                expires = _expires(item)
                if expires is None or expires > now:
                    found.append(item)
            if 'LastEvaluatedKey' not in page:
                return found
            kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']

    def _decode(self, item: dict[str, Any]) -> TaskPushNotificationConfig:
        key = f'{self.table_name}/{item[items.PK]["S"]}/{item[items.SK]["S"]}'
        config = TaskPushNotificationConfig()
        try:
            config.ParseFromString(item['b']['B'])
        except (DecodeError, KeyError, TypeError) as e:
            raise CorruptDataError(key, f'not a push config ({e})') from None
        return config

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        """The caller's configs of `task_id`."""
        owner = self.owner_resolver(context)
        found = await self._query(task_id, items.push_prefix(owner))
        return [self._decode(item) for item in found]

    async def get_info_for_dispatch(
        self, task_id: str
    ) -> list[TaskPushNotificationConfig]:
        """Every owner's configs of `task_id` (the dispatch path).

        A config past half its lifetime gets a new expiry: its task is
        still producing events.
        """
        found = await self._query(task_id, items.PUSH_PREFIX)
        if self._ttl > 0:
            now = int(self._clock())
            for item in found:
                expires = _expires(item)
                if expires is not None and expires - now < self._ttl // 2:
                    await self._extend(item, now + self._ttl)
        return [self._decode(item) for item in found]

    async def _extend(self, item: dict[str, Any], expires: int) -> None:
        try:
            await self._db.update_item(
                TableName=self.table_name,
                Key={items.PK: item[items.PK], items.SK: item[items.SK]},
                UpdateExpression='SET #exp = :exp',
                ConditionExpression='attribute_exists(#exp)',
                ExpressionAttributeNames={'#exp': items.TTL_ATTRIBUTE},
                ExpressionAttributeValues={':exp': {'N': str(expires)}},
            )
        except Exception as e:  # the config still works until it expires
            logger.warning(
                'Could not extend the lifetime of a push config of %s (%s)',
                item[items.PK]['S'],
                error_code(e) or type(e).__name__,
            )

    async def delete_info(
        self,
        task_id: str,
        context: ServerCallContext,
        config_id: str | None = None,
    ) -> None:
        """Deletes one of the caller's configs, or all of them."""
        if len(task_id.encode('utf-8')) > TASK_ID_LIMIT:
            return
        owner = self.owner_resolver(context)
        if config_id is not None:
            await self._db.delete_item(
                TableName=self.table_name,
                Key={
                    items.PK: {'S': items.task_pk(task_id)},
                    items.SK: {'S': items.push_sk(owner, config_id)},
                },
            )
            return
        found = await self._query(task_id, items.push_prefix(owner))
        for start in range(0, len(found), _BATCH_WRITE):
            pending: dict[str, Any] = {
                self.table_name: [
                    {
                        'DeleteRequest': {
                            'Key': {items.PK: item[items.PK], items.SK: item[items.SK]}
                        }
                    }
                    for item in found[start : start + _BATCH_WRITE]
                ]
            }
            while pending:
                response = await self._db.batch_write_item(RequestItems=pending)
                pending = response.get('UnprocessedItems') or {}
