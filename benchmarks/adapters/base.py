"""`Target`: what a scenario needs from a system under test."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.cluster import StoredTask, TaskVersion, VersionedEvent
    from a2a.server.events.event_queue import Event
    from a2a.server.request_handlers import RequestHandler
    from a2a.types.a2a_pb2 import AgentCard, Task

Kind = Literal['scale', 'baseline', 'floor', 'reference']


@dataclass(frozen=True)
class TargetSpec:
    """How to open a target in any process: a name and JSON parameters."""

    name: str
    kind: Kind
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The spec as one JSON line."""
        return json.dumps({'name': self.name, 'kind': self.kind, 'params': self.params})

    @classmethod
    def from_json(cls, text: str) -> TargetSpec:
        """Reads a spec written by `to_json`."""
        data = json.loads(text)
        return cls(name=data['name'], kind=data['kind'], params=data['params'])


class Target(ABC):
    """One system under test, opened in one process (one replica)."""

    cross_process: bool = True
    """Whether two processes opening the same spec share state."""

    server_port: int | None = None
    """The TCP port of the shared server, for counting connections."""

    replays: bool = True
    """Whether a subscription replays events written before it started."""

    def __init__(self, spec: TargetSpec, *, role: str = 'main') -> None:
        self.spec = spec
        self.role = role

    @property
    def name(self) -> str:
        """The target's name in tables."""
        return self.spec.name

    @abstractmethod
    async def start(self) -> None:
        """Connects."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnects."""

    @abstractmethod
    async def save(
        self, task: Task, event: Event, prev_version: TaskVersion
    ) -> TaskVersion:
        """Compare-and-swap `task` with `event` logged; the SDK's save path."""

    @abstractmethod
    async def get(self, task_id: str) -> StoredTask | None:
        """Reads a task and its version."""

    @abstractmethod
    def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncIterator[VersionedEvent]:
        """Yields the events of `task_id` after `after`, never ending."""

    def request_handler(
        self, executor: AgentExecutor, card: AgentCard
    ) -> RequestHandler:
        """A request handler of one replica serving `executor`."""
        raise NotImplementedError(f'{self.name} has no request handler')

    async def __aenter__(self) -> Target:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
