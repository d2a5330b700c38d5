"""`RedisPushNotificationConfigStore`: push configs shared by every replica."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks.push_notification_config_store import (
    PushNotificationConfigStore,
    normalize_push_notification_config,
)
from a2a.types.a2a_pb2 import TaskPushNotificationConfig
from google.protobuf.message import DecodeError

from a2a_scale_redis.errors import wrong_type_as_error
from a2a_scale_redis.keys import KeySpace, encode_id
from a2a_scale_redis.scripts import PUSH_SET

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale_redis.connection import AnyRedis

logger = logging.getLogger(__name__)


class RedisPushNotificationConfigStore(PushNotificationConfigStore):
    """Push configs in one hash per task, next to the task (same slot).

    A field is ``<owner>:<config id>`` (both hex-encoded), so configs of
    different owners never collide, an owner only reads its own, and the
    dispatcher reads them all with one ``HGETALL``. The hash expires with its
    task.
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        namespace: str = 'a2a',
        owner_resolver: OwnerResolver = resolve_user_scope,
        active_ttl_seconds: int = 7 * 86_400,
    ) -> None:
        self._client = client
        self.keys = KeySpace(namespace)
        self.owner_resolver = owner_resolver
        self._active_ttl_ms = active_ttl_seconds * 1000
        self._set = client.register_script(PUSH_SET)

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        """Stores a copy of the config for the caller, normalized."""
        owner = self.owner_resolver(context)
        stored = normalize_push_notification_config(task_id, notification_config)
        keys = self.keys.task(task_id)
        field = f'{encode_id(owner)}:{encode_id(stored.id)}'
        with wrong_type_as_error(keys.push):
            await self._set(
                keys=[keys.task, keys.push],
                args=[field, stored.SerializeToString(), self._active_ttl_ms],
            )
        result = TaskPushNotificationConfig()
        result.CopyFrom(stored)
        return result

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        """Returns the caller's configs of `task_id`."""
        return await self._read(task_id, self.owner_resolver(context))

    async def get_info_for_dispatch(
        self, task_id: str
    ) -> list[TaskPushNotificationConfig]:
        """Returns every owner's configs of `task_id`."""
        return await self._read(task_id, None)

    async def delete_info(
        self,
        task_id: str,
        context: ServerCallContext,
        config_id: str | None = None,
    ) -> None:
        """Deletes one (or every) config of the caller for `task_id`."""
        owner = encode_id(self.owner_resolver(context))
        key = self.keys.task(task_id).push
        with wrong_type_as_error(key):
            if config_id is not None:
                await self._client.hdel(key, f'{owner}:{encode_id(config_id)}')
                return
            names: Any = await self._client.hkeys(key)
            fields = [f for f in names if f.decode().partition(':')[0] == owner]
            if fields:
                await self._client.hdel(key, *fields)

    async def _read(
        self, task_id: str, owner: str | None
    ) -> list[TaskPushNotificationConfig]:
        key = self.keys.task(task_id).push
        with wrong_type_as_error(key):
            stored: Any = await self._client.hgetall(key)
        wanted = encode_id(owner) if owner is not None else None
        configs = []
        for field, data in sorted(stored.items()):
            if wanted is not None and field.decode().partition(':')[0] != wanted:
                continue
            config = TaskPushNotificationConfig()
            try:
                config.ParseFromString(data)
            except DecodeError:
                logger.error('Skipping corrupt push config %r under key %r', field, key)
                continue
            configs.append(config)
        return configs
