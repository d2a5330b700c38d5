"""The chapters of the demo: every step is checked as it happens.

1. A customer streams a booking request on replica 1 and disconnects after a
   few progress events; the agent keeps working on replica 1.
2. The customer resubscribes on replica 2: the snapshot replays everything
   so far, including what happened while nobody was connected, then the rest
   streams live, with no gap and no duplicate, up to completion.
3. A billing request starts on replica 1 and is cancelled from the last
   replica; the agent on replica 1 stops and its stream ends CANCELED.
4. Every replica reports the same final states; another customer sees none
   of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from a2a.helpers import get_artifact_text, get_message_text, new_text_message
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError, UnsupportedOperationError

from a2a_scale.demo.agents import BILLING, BOOKING, CustomerServiceAgent, step_of
from a2a_scale.demo.story import DemoFailure, DemoResult, Narrator
from a2a_scale.testing.replicas import ReplicaSet, connect

if TYPE_CHECKING:
    from a2a.client import Client

CUSTOMER = 'alice'
OTHER_CUSTOMER = 'bob'
BOOKING_REQUEST = 'Hi, I need to change my flight booking to Friday morning.'
BILLING_REQUEST = 'I was charged twice on my card, can I get a refund?'
DROP_AFTER_STEP = 3
STEP_TIMEOUT = 15.0


def _state(state: int) -> str:
    return TaskState.Name(state).removeprefix('TASK_STATE_')


def _steps_of(task: Task) -> list[tuple[int, Message]]:
    messages = [*task.history]
    if task.status.HasField('message'):
        messages.append(task.status.message)
    return [(s, m) for m in messages if (s := step_of(m)) is not None]


def _expect(ok: bool, failure: str) -> None:
    if not ok:
        raise DemoFailure(failure)


class DemoChapters:
    """Runs the chapters of the story against a running replica set."""

    def __init__(
        self,
        replicas: ReplicaSet,
        narrator: Narrator,
        agents: dict[str, object],
        stop_dir: pathlib.Path,
    ) -> None:
        self.replicas = replicas
        self.narrator = narrator
        self.agents = agents
        self.stop_dir = stop_dir
        self.numbers = {r.url: i for i, r in enumerate(replicas.replicas, start=1)}

    def number(self, message: Message) -> int:
        """The number of the replica that wrote `message` (0 if unknown)."""
        url = dict(message.metadata).get('served_by', '')
        return self.numbers.get(str(url), 0)

    def client(
        self, index: int, user: str = CUSTOMER
    ) -> contextlib.AbstractAsyncContextManager[Client]:
        """A client of replica `index` (0-based), calling as `user`."""
        return connect(self.replicas[index].url, token=user)

    async def run(self, result: DemoResult) -> None:
        """Runs every chapter, filling `result`."""
        last = len(self.replicas) - 1
        async with _step('request 1 (stream, drop, resubscribe)'):
            result.booking_task = await self.stream_and_resubscribe(result)
        async with _step('request 2 (cancel across replicas)'):
            result.billing_task = await self.cancel_across(last)
        async with _step('final states'):
            await self.final_states(result)

    async def stream_and_resubscribe(self, result: DemoResult) -> str:
        """Chapter 1 and 2: returns the booking task's id."""
        n = self.narrator
        n.chapter('Request 1: stream on replica 1, disconnect, resubscribe on 2')
        n.note(f'{CUSTOMER}: "{BOOKING_REQUEST}"')
        task_id, seen = await self.stream_then_drop()
        n.note(f'Client disconnected after step {seen[-1]}; the agent keeps working')
        n.waiting('Waiting while nobody is connected...')
        await self.wait_for_step(1, task_id, DROP_AFTER_STEP + 1)
        total = len(BOOKING.steps) + 1
        final_state, artifact = await self.resubscribe(task_id, seen, result)
        steps = result.replayed_steps + result.live_steps
        _expect(
            result.replayed_steps[:DROP_AFTER_STEP] == seen,
            f'replay {result.replayed_steps} does not start with the steps '
            f'seen before the drop {seen}',
        )
        _expect(
            len(result.replayed_steps) > len(seen),
            'replay did not include the steps made while disconnected',
        )
        _expect(
            steps == list(range(1, total + 1)),
            f'steps across replay and live were {steps}; expected 1..{total} '
            'once each, in order',
        )
        _expect(
            final_state == TaskState.TASK_STATE_COMPLETED,
            f'request 1 ended {_state(final_state)}, expected COMPLETED',
        )
        _expect(bool(artifact), 'no booking confirmation artifact was streamed')
        n.check(
            f'Replay {result.replayed_steps[0]}..{result.replayed_steps[-1]} + live '
            f'{result.live_steps[0] if result.live_steps else "-"}..{total}: '
            'no gap, no duplicate, in order, COMPLETED'
        )
        return task_id

    async def stream_then_drop(self) -> tuple[str, list[int]]:
        """Streams on replica 1 and disconnects after a few steps."""
        seen: list[int] = []
        task_id = ''
        request = SendMessageRequest(
            message=new_text_message(BOOKING_REQUEST, role=Role.ROLE_USER)
        )
        async with self.client(0) as client:
            stream = client.send_message(request)
            async with asyncio.timeout(STEP_TIMEOUT):
                async for response in stream:
                    if response.HasField('task'):
                        task_id = response.task.id
                        self.narrator.note(f'Task {task_id} created on replica 1')
                    message = _status_message(response)
                    if message is not None and (step := step_of(message)):
                        seen.append(step)
                        self.narrator.event(
                            'live', 1, self.number(message), get_message_text(message)
                        )
                        if step >= DROP_AFTER_STEP:
                            break
                await stream.aclose()  # type: ignore[attr-defined]
        _expect(bool(task_id), 'replica 1 never sent the task')
        _expect(
            seen == list(range(1, DROP_AFTER_STEP + 1)),
            f'replica 1 streamed steps {seen}, expected 1..{DROP_AFTER_STEP}',
        )
        return task_id, seen

    async def resubscribe(
        self, task_id: str, seen: list[int], result: DemoResult
    ) -> tuple[int, str]:
        """Resubscribes on replica 2; returns the final state and artifact."""
        n = self.narrator
        final_state: int = TaskState.TASK_STATE_UNSPECIFIED
        artifact = ''
        async with self.client(1) as client:
            subscription = client.subscribe(SubscribeToTaskRequest(id=task_id))
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    async for response in subscription:
                        if response.HasField('task'):
                            final_state, artifact = self.replay(
                                response.task, seen, result
                            )
                            continue
                        message = _status_message(response)
                        if message is not None and (step := step_of(message)):
                            result.live_steps.append(step)
                            n.event(
                                'live',
                                2,
                                self.number(message),
                                get_message_text(message),
                            )
                        if response.HasField('artifact_update'):
                            update = response.artifact_update
                            artifact = get_artifact_text(update.artifact)
                            n.event('live', 2, 0, f'artifact: {artifact}')
                        if response.HasField('status_update'):
                            final_state = response.status_update.status.state
            except UnsupportedOperationError:
                # A slow machine: the task finished before the resubscribe,
                # and the SDK serves no stream of a finished task.
                if result.replayed_steps or result.live_steps:
                    raise
                n.note('The task finished while nobody was connected')
                snapshot = await client.get_task(GetTaskRequest(id=task_id))
                final_state, artifact = self.replay(snapshot, seen, result)
        return final_state, artifact

    def replay(
        self, snapshot: Task, seen: list[int], result: DemoResult
    ) -> tuple[int, str]:
        """Shows what replica 2's snapshot replays; returns state and artifact."""
        n = self.narrator
        n.note(
            f'Replica 2 serves the snapshot: state {_state(snapshot.status.state)}, '
            f'{len(_steps_of(snapshot))} progress events replayed'
        )
        for number, replayed in _steps_of(snapshot):
            result.replayed_steps.append(number)
            n.event(
                'replay' if number in seen else 'missed',
                2,
                self.number(replayed),
                get_message_text(replayed),
            )
        artifact = ''
        if snapshot.artifacts:  # the task finished before the resubscribe
            artifact = get_artifact_text(snapshot.artifacts[-1])
            n.event('replay', 2, 0, f'artifact: {artifact}')
        return snapshot.status.state, artifact

    async def wait_for_step(self, index: int, task_id: str, step: int) -> None:
        """Polls replica `index` until the task has reached `step`."""
        async with self.client(index) as client:
            async with asyncio.timeout(STEP_TIMEOUT):
                while True:
                    task = await client.get_task(GetTaskRequest(id=task_id))
                    if any(s >= step for s, _ in _steps_of(task)):
                        return
                    await asyncio.sleep(0.05)

    async def cancel_across(self, last: int) -> str:
        """Chapter 3: returns the billing task's id."""
        n = self.narrator
        n.chapter(f'Request 2: runs on replica 1, cancelled from replica {last + 1}')
        n.note(f'{CUSTOMER}: "{BILLING_REQUEST}"')
        request = SendMessageRequest(
            message=new_text_message(BILLING_REQUEST, role=Role.ROLE_USER)
        )
        task_id = ''
        ended = TaskState.TASK_STATE_UNSPECIFIED
        async with self.client(0) as watcher, self.client(last) as canceller:
            stream = watcher.send_message(request)
            async with asyncio.timeout(STEP_TIMEOUT):
                async for response in stream:
                    if response.HasField('task'):
                        task_id = task_id or response.task.id
                        ended = response.task.status.state
                    message = _status_message(response)
                    if message is not None and (step := step_of(message)):
                        n.event(
                            'live', 1, self.number(message), get_message_text(message)
                        )
                        if step == 2:
                            n.note(f'Replica {last + 1} receives CancelTask')
                            cancelled = await canceller.cancel_task(
                                CancelTaskRequest(id=task_id)
                            )
                            _expect(
                                cancelled.status.state == TaskState.TASK_STATE_CANCELED,
                                f'cancel on replica {last + 1} returned '
                                f'{_state(cancelled.status.state)}',
                            )
                    if response.HasField('status_update'):
                        ended = response.status_update.status.state
        _expect(
            ended == TaskState.TASK_STATE_CANCELED,
            f'the stream on replica 1 ended {_state(ended)}, expected CANCELED',
        )
        n.check('The stream on replica 1 ended CANCELED')
        await self._agent_stopped(task_id)
        n.check('The agent on replica 1 observed the cancel and stopped')
        async with self.client(0) as client:
            before = await client.get_task(GetTaskRequest(id=task_id))
            await asyncio.sleep(0.6)
            after = await client.get_task(GetTaskRequest(id=task_id))
        _expect(
            before == after and after.status.state == TaskState.TASK_STATE_CANCELED,
            'the task changed after it was cancelled: the agent kept running',
        )
        n.check('No progress was written after the cancel')
        return task_id

    async def _agent_stopped(self, task_id: str) -> None:
        """Waits until replica 1's agent reports the cancel stopped it."""
        url = self.replicas[0].url
        agent = self.agents.get(url)
        try:
            if isinstance(agent, CustomerServiceAgent):
                await asyncio.wait_for(agent.stopped(task_id).wait(), STEP_TIMEOUT)
                return
            marker = self.stop_dir / task_id
            async with asyncio.timeout(STEP_TIMEOUT):
                while not marker.exists():  # noqa: ASYNC110 (written by another process)
                    await asyncio.sleep(0.05)
            stopped_on = marker.read_text()
        except TimeoutError:
            raise DemoFailure(
                f'the agent on replica 1 did not stop within {STEP_TIMEOUT:.0f}s '
                'of the cancel'
            ) from None
        _expect(
            stopped_on == url,
            f'the cancel stopped an agent at {stopped_on}, not replica 1 ({url})',
        )

    async def final_states(self, result: DemoResult) -> None:
        """Chapter 4: every replica agrees; the other customer sees nothing."""
        n = self.narrator
        n.chapter('Final states, read from every replica')
        rows = []
        for index, replica in enumerate(self.replicas.replicas):
            async with self.client(index) as client:
                booking = await client.get_task(GetTaskRequest(id=result.booking_task))
                billing = await client.get_task(GetTaskRequest(id=result.billing_task))
                listed = await client.list_tasks(ListTasksRequest())
            ids = {t.id for t in listed.tasks}
            rows.append(
                (
                    replica.name,
                    _state(booking.status.state),
                    _state(billing.status.state),
                    len(ids),
                )
            )
            _expect(
                booking.status.state == TaskState.TASK_STATE_COMPLETED
                and billing.status.state == TaskState.TASK_STATE_CANCELED,
                f'replica {index + 1} reports {_state(booking.status.state)} and '
                f'{_state(billing.status.state)}, expected COMPLETED and CANCELED',
            )
            _expect(
                ids == {result.booking_task, result.billing_task},
                f'ListTasks on replica {index + 1} returned {len(ids)} tasks, '
                'expected the 2 of this demo',
            )
        n.finals(rows)
        n.check('Every replica agrees: COMPLETED and CANCELED, both listed')
        async with self.client(len(self.replicas) - 1, OTHER_CUSTOMER) as client:
            listed = await client.list_tasks(ListTasksRequest())
            try:
                await client.get_task(GetTaskRequest(id=result.booking_task))
            except A2AError:
                refused = True
            else:
                refused = False
        _expect(
            refused and not listed.tasks,
            f"{OTHER_CUSTOMER} could see {CUSTOMER}'s tasks",
        )
        n.check(f"{OTHER_CUSTOMER} sees none of {CUSTOMER}'s tasks")


@contextlib.asynccontextmanager
async def _step(name: str) -> AsyncIterator[None]:
    try:
        yield
    except TimeoutError:
        raise DemoFailure(f'{name}: no progress within {STEP_TIMEOUT:.0f}s') from None
    except A2AError as e:
        raise DemoFailure(f'{name}: {type(e).__name__}: {e}') from None


def _status_message(response: StreamResponse) -> Message | None:
    if response.HasField('status_update') and response.status_update.status.HasField(
        'message'
    ):
        return response.status_update.status.message
    return None


__all__ = ['BILLING', 'BOOKING', 'DemoChapters']
