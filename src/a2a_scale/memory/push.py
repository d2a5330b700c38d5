"""`MemoryPushNotificationConfigStore`: push configs shared by replicas."""

from __future__ import annotations

from a2a.server.context import ServerCallContext
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks import PushNotificationConfigStore
from a2a.server.tasks.push_notification_config_store import (
    normalize_push_notification_config,
)
from a2a.types.a2a_pb2 import TaskPushNotificationConfig
from google.protobuf.message import DecodeError

from a2a_scale.errors import CorruptDataError
from a2a_scale.memory.space import MemorySpace


class MemoryPushNotificationConfigStore(PushNotificationConfigStore):
    """A `PushNotificationConfigStore` over a `MemorySpace`.

    Configs are scoped to their owner for `get_info` and `delete_info`;
    `get_info_for_dispatch` returns every owner's configs. A task holds any
    number of configs, one per config id. Configs are dropped with their
    task when it is deleted or expires.

    Args:
        space: The shared state.
        owner_resolver: Maps a call context to the owner configs belong to.
    """

    def __init__(
        self,
        space: MemorySpace,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
    ) -> None:
        self.space = space
        self.owner_resolver = owner_resolver

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        """Stores a normalized copy of the config and returns it."""
        stored = normalize_push_notification_config(task_id, notification_config)
        self.space.push_set(
            task_id,
            self.owner_resolver(context),
            stored.id,
            stored.SerializeToString(),
        )
        return stored

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        """Returns the caller's configs for `task_id`."""
        return self._decode(
            task_id, self.space.push_get(task_id, self.owner_resolver(context))
        )

    async def get_info_for_dispatch(
        self, task_id: str
    ) -> list[TaskPushNotificationConfig]:
        """Returns every owner's configs for `task_id`."""
        return self._decode(task_id, self.space.push_get(task_id, None))

    async def delete_info(
        self,
        task_id: str,
        context: ServerCallContext,
        config_id: str | None = None,
    ) -> None:
        """Deletes one of the caller's configs, or all of them."""
        self.space.push_delete(task_id, self.owner_resolver(context), config_id)

    def _decode(
        self, task_id: str, blobs: list[bytes]
    ) -> list[TaskPushNotificationConfig]:
        configs = []
        for data in blobs:
            config = TaskPushNotificationConfig()
            try:
                config.ParseFromString(data)
            except DecodeError as e:
                raise CorruptDataError(
                    self.space.key('push', task_id), f'not a push config ({e})'
                ) from None
            configs.append(config)
        return configs
