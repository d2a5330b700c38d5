"""`PostgresPushNotificationConfigStore`: push configs shared by every replica."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks.push_notification_config_store import (
    PushNotificationConfigStore,
    normalize_push_notification_config,
)
from a2a.types.a2a_pb2 import TaskPushNotificationConfig
from google.protobuf.message import DecodeError

from a2a_scale_postgres.errors import row_key
from a2a_scale_postgres.schema import quote_schema

if TYPE_CHECKING:
    import asyncpg
    from a2a.server.context import ServerCallContext

logger = logging.getLogger(__name__)


class PostgresPushNotificationConfigStore(PushNotificationConfigStore):
    """Push configs in one table keyed by (task, owner, config id).

    An owner reads and deletes only its own configs; the dispatcher reads
    every owner's configs of a task with `get_info_for_dispatch`.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str,
        owner_resolver: OwnerResolver = resolve_user_scope,
    ) -> None:
        self._pool = pool
        self.schema = schema
        self._q = quote_schema(schema)
        self.owner_resolver = owner_resolver

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        """Stores a copy of the config for the caller, normalized."""
        owner = self.owner_resolver(context)
        stored = normalize_push_notification_config(task_id, notification_config)
        await self._pool.execute(
            f'INSERT INTO {self._q}.push_configs (task_id, owner, config_id, data) '  # noqa: S608
            'VALUES ($1, $2, $3, $4) ON CONFLICT (task_id, owner, config_id) '
            'DO UPDATE SET data = EXCLUDED.data',
            task_id,
            owner,
            stored.id,
            stored.SerializeToString(),
        )
        result = TaskPushNotificationConfig()
        result.CopyFrom(stored)
        return result

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        """Returns the caller's configs of `task_id`."""
        rows = await self._pool.fetch(
            f'SELECT owner, config_id, data FROM {self._q}.push_configs '  # noqa: S608
            'WHERE task_id = $1 AND owner = $2 ORDER BY config_id',
            task_id,
            self.owner_resolver(context),
        )
        return self._parse(task_id, rows)

    async def get_info_for_dispatch(
        self, task_id: str
    ) -> list[TaskPushNotificationConfig]:
        """Returns every owner's configs of `task_id`."""
        rows = await self._pool.fetch(
            f'SELECT owner, config_id, data FROM {self._q}.push_configs '  # noqa: S608
            'WHERE task_id = $1 ORDER BY owner, config_id',
            task_id,
        )
        return self._parse(task_id, rows)

    async def delete_info(
        self,
        task_id: str,
        context: ServerCallContext,
        config_id: str | None = None,
    ) -> None:
        """Deletes one (or every) config of the caller for `task_id`."""
        owner = self.owner_resolver(context)
        if config_id is None:
            await self._pool.execute(
                f'DELETE FROM {self._q}.push_configs WHERE task_id = $1 AND owner = $2',  # noqa: S608
                task_id,
                owner,
            )
        else:
            await self._pool.execute(
                f'DELETE FROM {self._q}.push_configs '  # noqa: S608
                'WHERE task_id = $1 AND owner = $2 AND config_id = $3',
                task_id,
                owner,
                config_id,
            )

    def _parse(
        self, task_id: str, rows: list[asyncpg.Record]
    ) -> list[TaskPushNotificationConfig]:
        configs = []
        for row in rows:
            config = TaskPushNotificationConfig()
            try:
                config.ParseFromString(bytes(row['data']))
            except DecodeError:
                logger.error(
                    'Skipping a corrupt push config: %s',
                    row_key(
                        self.schema,
                        'push_configs',
                        task_id=task_id,
                        config_id=row['config_id'],
                    ),
                )
                continue
            configs.append(config)
        return configs
