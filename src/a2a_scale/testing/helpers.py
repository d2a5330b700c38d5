"""Builders and drivers the conformance tests share.

They are public so that backend authors can write their own
backend-specific tests in the same terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from a2a.auth.user import User
from a2a.server.cluster import (
    TaskEventStream,
    TaskVersion,
    VersionedEvent,
    VersionedTaskStore,
)
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

PROBE_PREFIX = 'a2a-scale-probe-'
PROBE_VERSION = TaskVersion(2**53)


class NamedUser(User):
    """An authenticated user with a fixed name (the default owner scope)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        """Always true."""
        return True

    @property
    def user_name(self) -> str:
        """The name given at construction."""
        return self._name


def user_context(name: str) -> ServerCallContext:
    """A call context whose owner (by `resolve_user_scope`) is `name`."""
    return ServerCallContext(user=NamedUser(name))


def new_id(prefix: str = 'task') -> str:
    """A fresh id, unique across test runs."""
    return f'{prefix}-{uuid.uuid4().hex}'


def timestamp(seconds: float) -> datetime:
    """A UTC datetime `seconds` after 2024-01-01, for ordered timestamps."""
    return datetime.fromtimestamp(1_704_067_200 + seconds, tz=UTC)


def make_task(
    task_id: str | None = None,
    *,
    context_id: str = 'ctx-1',
    state: int = TaskState.TASK_STATE_SUBMITTED,
    at: datetime | None = None,
) -> Task:
    """A task in `state`, with a status timestamp when `at` is given."""
    task = Task(
        id=task_id or new_id(),
        context_id=context_id,
        status=TaskStatus(state=state),  # type: ignore[arg-type]
    )
    if at is not None:
        task.status.timestamp.FromDatetime(at)
    return task


def agent_message(text: str, *, task_id: str = '', context_id: str = '') -> Message:
    """An agent `Message` (the reply of a message-mode agent)."""
    return Message(
        message_id=new_id('msg'),
        role=Role.ROLE_AGENT,
        task_id=task_id,
        context_id=context_id,
        parts=[Part(text=text)],
    )


def is_probe(event: Event) -> bool:
    """Whether `event` is a probe the suite publishes to a live-only stream."""
    return isinstance(event, Message) and event.message_id.startswith(PROBE_PREFIX)


class TaskWriter:
    """Drives one task through a `VersionedTaskStore` as the SDK does.

    Each write passes the version of the previous one, and returns the
    `VersionedEvent` a subscriber should see for it.
    """

    def __init__(
        self, store: VersionedTaskStore, context: ServerCallContext, task: Task
    ) -> None:
        self.store = store
        self.context = context
        self.task = task
        self.version = TaskVersion.MISSING

    @property
    def task_id(self) -> str:
        """The id of the task."""
        return self.task.id

    async def write(self, task: Task, event: Event | None) -> VersionedEvent | None:
        """Saves `task` with `event` over the last version written."""
        version = await self.store.save(
            task,
            event=event,
            prev=self.task,
            prev_version=self.version,
            context=self.context,
        )
        self.task, self.version = task, version
        return VersionedEvent(event=event, version=version) if event else None

    async def create(self, *, with_event: bool = True) -> VersionedEvent | None:
        """Writes the task for the first time; its event is the task itself."""
        first = Task()
        first.CopyFrom(self.task)
        return await self.write(first, first if with_event else None)

    async def set_state(
        self, state: int, *, text: str = '', with_event: bool = True
    ) -> VersionedEvent | None:
        """Moves the task to `state` with a status-update event."""
        task = Task()
        task.CopyFrom(self.task)
        task.status.state = state  # type: ignore[assignment]
        task.status.timestamp.FromDatetime(datetime.now(UTC))
        if text:
            task.status.message.CopyFrom(agent_message(text, task_id=task.id))
        event = TaskStatusUpdateEvent(
            task_id=task.id, context_id=task.context_id, status=task.status
        )
        return await self.write(task, event if with_event else None)

    async def add_artifact(self, text: str) -> VersionedEvent:
        """Appends an artifact with an artifact-update event."""
        artifact = Artifact(artifact_id=new_id('art'), parts=[Part(text=text)])
        task = Task()
        task.CopyFrom(self.task)
        task.artifacts.append(artifact)
        event = TaskArtifactUpdateEvent(
            task_id=task.id, context_id=task.context_id, artifact=artifact
        )
        written = await self.write(task, event)
        assert written is not None
        return written


_END = object()


class Subscription:
    """Drains `stream.subscribe(...)` into a queue from a background task.

    Probe messages (see `is_probe`) are counted, not queued.
    """

    def __init__(
        self,
        stream: TaskEventStream,
        task_id: str,
        *,
        after: TaskVersion = TaskVersion.MISSING,
        timeout: float = 5.0,
    ) -> None:
        self.stream = stream
        self.task_id = task_id
        self.timeout = timeout
        self.generator: AsyncGenerator[VersionedEvent, None] = stream.subscribe(
            task_id, after=after
        )
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.probe_seen = asyncio.Event()
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            async for versioned in self.generator:
                if is_probe(versioned.event):
                    self.probe_seen.set()
                    continue
                self.queue.put_nowait(versioned)
        except Exception as e:  # reported by next()
            self.error = e
        finally:
            self.ended.set()
            self.queue.put_nowait(_END)

    async def wait_live(self, within: float | None = None) -> None:
        """Publishes probes until the subscription delivers one.

        Used for live-only streams, which deliver nothing published before
        the subscription took effect.
        """
        deadline = asyncio.get_running_loop().time() + (within or self.timeout)
        while not self.probe_seen.is_set():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f'Subscription to {self.task_id!r} delivered no probe within '
                    f'{within or self.timeout}s'
                )
            probe = agent_message('probe', task_id=self.task_id)
            probe.message_id = f'{PROBE_PREFIX}{uuid.uuid4().hex}'
            await self.stream.publish(
                self.task_id, VersionedEvent(event=probe, version=PROBE_VERSION)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.probe_seen.wait(), 0.05)

    async def next(self, within: float | None = None) -> VersionedEvent:
        """Returns the next event; fails if none comes `within` seconds."""
        limit = within or self.timeout
        try:
            item = await asyncio.wait_for(self.queue.get(), limit)
        except TimeoutError:
            raise AssertionError(
                f'No event for task {self.task_id!r} within {limit}s'
            ) from None
        if item is _END:
            self.queue.put_nowait(_END)
            raise AssertionError(
                f'The subscription to {self.task_id!r} ended'
                + (f' with {self.error!r}' if self.error else ' on its own')
            )
        assert isinstance(item, VersionedEvent)
        return item

    async def take(
        self, count: int, within: float | None = None
    ) -> list[VersionedEvent]:
        """Returns the next `count` events."""
        return [await self.next(within) for _ in range(count)]

    async def close(self) -> None:
        """Stops draining and closes the generator; idempotent.

        Raises:
            AssertionError: If the subscription does not end within the
                timeout once cancelled: the backend's generator swallowed
                the cancel.
        """
        if not self._drain_task.done():
            self._drain_task.cancel()
            done, _ = await asyncio.wait({self._drain_task}, timeout=self.timeout)
            if not done:
                raise AssertionError(
                    f'the subscription did not end within {self.timeout}s of '
                    'being cancelled: the backend swallowed the cancel'
                )
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
        await self.generator.aclose()
