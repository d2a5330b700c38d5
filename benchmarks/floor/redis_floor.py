"""Raw redis-py: one Lua script for CAS + XADD, one blocking XREAD per reader.

No owner check, no indexes, no retention, no retries, no multiplexing: each
subscription holds its own connection blocked in ``XREAD BLOCK 0``. It shows
what Redis and redis-py allow on this machine, not a usable design.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    StoredTask,
    TaskVersion,
    VersionedEvent,
)
from a2a.server.cluster.database_event_stream import stream_response_to_event
from a2a.types.a2a_pb2 import StreamResponse, Task
from a2a.utils.proto_utils import to_stream_response
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from benchmarks.adapters.base import Target, TargetSpec

if TYPE_CHECKING:
    from a2a.server.events.event_queue import Event

SAVE = """
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '0') ~= ARGV[1] then return -1 end
local nv = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
redis.call('XADD', KEYS[2], nv .. '-1', 'e', ARGV[3])
return nv
"""


def _version(version: TaskVersion) -> int:
    return 0 if version.is_missing else int(version._value)


class FloorTarget(Target):
    """Raw redis-py doing the store and stream work with nothing else."""

    def __init__(self, spec: TargetSpec, *, role: str = 'main') -> None:
        super().__init__(spec, role=role)
        self.url: str = spec.params['url']
        self.prefix: str = spec.params['namespace']
        self.server_port = int(spec.params['server_port'])
        self.client_name = f'bench-floor-{role}'
        self._client: Redis | None = None
        self._save: AsyncScript | None = None

    async def start(self) -> None:
        self._client = Redis.from_url(
            self.url, client_name=self.client_name, max_connections=128
        )
        self._save = self._client.register_script(SAVE)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _keys(self, task_id: str) -> tuple[str, str]:
        tag = f'{{{self.prefix}:{task_id}}}'
        return f'{tag}:t', f'{tag}:e'

    async def save(
        self, task: Task, event: Event, prev_version: TaskVersion
    ) -> TaskVersion:
        assert self._save is not None
        task_key, events_key = self._keys(task.id)
        result = await self._save(
            keys=[task_key, events_key],
            args=[
                _version(prev_version),
                task.SerializeToString(),
                to_stream_response(event).SerializeToString(),
            ],
        )
        if int(result) < 0:
            raise ConcurrentTaskModificationError(task.id)
        return TaskVersion(int(result))

    async def get(self, task_id: str) -> StoredTask | None:
        assert self._client is not None
        reply: Any = await self._client.hmget(self._keys(task_id)[0], 'v', 'd')
        version, data = reply
        if version is None:
            return None
        return StoredTask(Task.FromString(data), TaskVersion(int(version)))

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncIterator[VersionedEvent]:
        events_key = self._keys(task_id)[1]
        last = f'{_version(after)}-1'
        reader = Redis.from_url(
            self.url, client_name=self.client_name, single_connection_client=True
        )
        try:
            while True:
                reply: Any = await reader.xread({events_key: last}, block=0)
                for _, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        response = StreamResponse.FromString(fields[b'e'])
                        yield VersionedEvent(
                            stream_response_to_event(response),
                            TaskVersion(int(last.split('-')[0])),
                        )
        finally:
            with contextlib.suppress(Exception):
                await reader.aclose()
