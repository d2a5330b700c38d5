"""Spans, metrics and the trace context in the log, on the memory backend.

Two memory backends on one namespace act as two replicas in one process.
The instruments use private SDK providers (see `telemetry_support`).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from a2a.server.cluster import ConcurrentTaskModificationError, TaskVersion
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from handler_support import (
    WAIT,
    InputThenComplete,
    RecordingPushSender,
    WaitsForCancel,
    agent_card,
    call_context,
    send_request,
    user_message,
)

from a2a_scale import telemetry
from a2a_scale.api import load_backend
from a2a_scale.codec import decode_event, encode_event
from a2a_scale.telemetry import carrier, instruments
from a2a_scale.telemetry.push import TracedPushSender
from a2a_scale.telemetry.wrappers import TracedTaskStore
from telemetry_support import Telemetry, local_telemetry

pytestmark = pytest.mark.memory

SECRET = 'do-not-log-this-body'


@pytest.fixture
def tel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    found = local_telemetry()
    monkeypatch.setattr(instruments, 'get', lambda: found.instruments)
    telemetry.set_enabled(True)
    yield found
    telemetry.set_enabled(None)


@pytest.mark.asyncio
async def test_a_delivery_on_another_replica_links_to_the_save(tel: Telemetry) -> None:
    namespace = f'otel-{uuid.uuid4().hex[:8]}'
    ctx = call_context()
    async with (
        load_backend('memory', namespace=namespace) as a,
        load_backend('memory', namespace=namespace) as b,
    ):
        card = agent_card(push=False)
        on_a = a.request_handler(agent_executor=InputThenComplete(), agent_card=card)
        on_b = b.request_handler(agent_executor=InputThenComplete(), agent_card=card)
        task = await asyncio.wait_for(
            on_a.on_message_send(send_request(user_message(SECRET)), ctx), WAIT
        )
        assert isinstance(task, Task)
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        events = on_b.on_subscribe_to_task(SubscribeToTaskRequest(id=task.id), ctx)
        await asyncio.wait_for(anext(events), WAIT)  # the task as stored

        async def drain() -> None:
            async for _ in events:
                pass

        # B follows the log live before the next turn saves anything, so its
        # deliveries are live ones (the only ones with a delivery lag); A's
        # quick turn opens no subscription of its own.
        draining = asyncio.create_task(drain())
        async with asyncio.timeout(WAIT):
            while not _active_subscriptions(tel):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        follow_up = user_message(SECRET, task_id=task.id, context_id=task.context_id)
        await asyncio.wait_for(on_a.on_message_send(send_request(follow_up), ctx), WAIT)
        await asyncio.wait_for(draining, WAIT)
        # Save and publish carry the same trailer: nothing was logged twice.
        logged = [
            item.version
            async for item in _replay(a.event_stream, task.id)  # type: ignore[arg-type]
        ]
        assert len(logged) == len(set(logged)) > 2
        await on_a.aclose()
        await on_b.aclose()

    saves = tel.finished('a2a_scale.store.save')
    saved_on_a = [
        s for s in saves if s.attributes['a2a_scale.replica'] == a.instance_id
    ]
    assert saved_on_a
    save = saved_on_a[-1].attributes
    assert save['a2a_scale.backend'] == 'memory'
    assert save['a2a_scale.namespace'] == namespace
    assert save['a2a_scale.task_id'] == task.id
    assert save['a2a_scale.outcome'] == 'ok'
    assert int(save['a2a_scale.version']) > 0
    delivered_on_b = [
        s
        for s in tel.finished('a2a_scale.stream.deliver')
        if s.attributes['a2a_scale.replica'] == b.instance_id
    ]
    assert delivered_on_b
    linked = {link.context.span_id for s in delivered_on_b for link in s.links}
    assert linked & {s.context.span_id for s in saved_on_a}
    # No message body in any span.
    for span in tel.spans.get_finished_spans():
        assert SECRET not in json.dumps(dict(span.attributes or {}), default=str)
    assert tel.total('a2a_scale.delivery.lag', backend='memory') >= 1
    assert tel.total('a2a_scale.store.operations', operation='save', outcome='ok') >= 3
    active = tel.points('a2a_scale.subscriptions.active')
    assert active
    assert sum(p.value for p in active) == 0


def _active_subscriptions(tel: Telemetry) -> int:
    return int(sum(p.value for p in tel.points('a2a_scale.subscriptions.active')))


async def _replay(stream: object, task_id: str):  # type: ignore[no-untyped-def]
    events = stream.subscribe(task_id, after=TaskVersion(0))  # type: ignore[attr-defined]
    try:
        while True:
            try:
                yield await asyncio.wait_for(anext(events), 0.2)
            except TimeoutError:
                return
    finally:
        await events.aclose()


@pytest.mark.asyncio
async def test_a_conflict_is_counted(tel: Telemetry) -> None:
    ctx = call_context()
    async with load_backend('memory', namespace=f'otel-{uuid.uuid4().hex[:8]}') as b:
        store = TracedTaskStore(b.task_store, telemetry.probe(b))
        task = Task(
            id=str(uuid.uuid4()),
            context_id='c',
            status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
        )
        event = TaskStatusUpdateEvent(
            task_id=task.id, context_id='c', status=task.status
        )
        first = await store.save(
            task, event=event, prev=None, prev_version=TaskVersion(0), context=ctx
        )
        await store.save(task, event=event, prev=task, prev_version=first, context=ctx)
        with pytest.raises(ConcurrentTaskModificationError):
            await store.save(
                task, event=event, prev=task, prev_version=first, context=ctx
            )
    assert tel.total('a2a_scale.store.conflicts', backend='memory') == 1
    outcomes = [
        s.attributes['a2a_scale.outcome'] for s in tel.finished('a2a_scale.store.save')
    ]
    assert outcomes == ['ok', 'ok', 'conflict']
    assert tel.total('a2a_scale.store.operations', outcome='conflict') == 1


def test_the_trailer_is_invisible_to_readers(tel: Telemetry) -> None:
    event = TaskStatusUpdateEvent(task_id='t', context_id='c')
    plain = encode_event(event)
    trailer = carrier.make_trailer(1, 2, 1, 3)
    token = carrier.OUTGOING.set(trailer)
    try:
        carried = encode_event(event)
    finally:
        carrier.OUTGOING.reset(token)
    assert carried == plain + trailer
    assert decode_event(carried, key='k') == decode_event(plain, key='k')
    assert carrier.read_trailer(carried) == carrier.Origin(1, 2, 1, 3)
    assert carrier.read_trailer(plain) is None


def test_log_records_inside_a_span_carry_the_trace_id(tel: Telemetry) -> None:
    out = io.StringIO()
    handler = telemetry.configure_logging(logging.INFO, stream=out, json_format=True)
    try:
        with tel.instruments.tracer.start_as_current_span('outer') as span:
            logging.getLogger('a2a_scale_redis.stream').info('inside %s', 'a span')
        logging.getLogger('a2a_scale.handler.cluster').warning('outside')
    finally:
        for name in telemetry.logs.LOGGERS:
            logging.getLogger(name).removeHandler(handler)
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside['trace_id'] == format(span.get_span_context().trace_id, '032x')
    assert inside['component'] == 'redis'
    assert inside['message'] == 'inside a span'
    assert 'trace_id' not in outside
    assert outside['component'] == 'handler'


@pytest.mark.asyncio
async def test_reaps_recoveries_retries_and_live_replicas_are_measured(
    tel: Telemetry,
) -> None:
    namespace = f'otel-{uuid.uuid4().hex[:8]}'
    settings = {'heartbeat_interval': 0.05, 'reap_after': 0.4, 'recovery': 'fail'}
    ctx = call_context()
    a = load_backend('memory', namespace=namespace, **settings)
    b = load_backend('memory', namespace=namespace, **settings)
    await a.start()
    await b.start()
    try:
        card = agent_card(push=False)
        a.request_handler(agent_executor=WaitsForCancel(), agent_card=card)
        on_b = b.request_handler(agent_executor=WaitsForCancel(), agent_card=card)
        task = await asyncio.wait_for(
            on_b.on_message_send(
                send_request(user_message(), return_immediately=True), ctx
            ),
            WAIT,
        )
        assert isinstance(task, Task)
        await asyncio.sleep(0.2)
        assert tel.gauge('a2a_scale.replicas.live') == 2
        await b._stop_serving()  # dies as with SIGKILL: records left behind
        for _ in range(int(WAIT / 0.05)):
            if tel.total('a2a_scale.tasks.recovered', policy='fail'):
                break
            await asyncio.sleep(0.05)
        assert tel.total('a2a_scale.replicas.reaped', backend='memory') == 1
        await asyncio.sleep(0.2)
        assert tel.gauge('a2a_scale.replicas.live') == 1
        assert {s.name for s in tel.spans.get_finished_spans()} >= {
            'a2a_scale.replicas.reap',
            'a2a_scale.tasks.recover',
        }
    finally:
        await a.stop()
        await b.lifecycle.teardown()
    telemetry.count_retry('memory', 'stream')
    telemetry.count_reconnect('redis', 'pubsub')
    assert tel.total('a2a_scale.backend.retries', component='stream') == 1
    assert tel.total('a2a_scale.backend.reconnects', backend='redis') == 1


@pytest.mark.asyncio
async def test_list_delete_and_push_spans(tel: Telemetry) -> None:
    ctx = call_context()
    async with load_backend('memory', namespace=f'otel-{uuid.uuid4().hex[:8]}') as b:
        probe = telemetry.probe(b)
        store = TracedTaskStore(b.task_store, probe)
        sender = TracedPushSender(RecordingPushSender(), probe)
        task = Task(
            id=str(uuid.uuid4()),
            context_id='c',
            status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
        )
        await store.save(
            task, event=None, prev=None, prev_version=TaskVersion(0), context=ctx
        )
        listed = await store.list(ListTasksRequest(), ctx)
        assert [t.id for t in listed.tasks] == [task.id]
        await sender.send_notification(task.id, task)
        await store.delete(task.id, ctx)
        assert await store.get(task.id, ctx) is None
    spans = {s.name: s.attributes for s in tel.spans.get_finished_spans()}
    assert spans['a2a_scale.store.list']['a2a_scale.count'] == 1
    assert spans['a2a_scale.push.send']['a2a_scale.task_id'] == task.id
    assert spans['a2a_scale.store.delete']['a2a_scale.outcome'] == 'ok'
    assert spans['a2a_scale.store.get']['a2a_scale.outcome'] == 'not_found'
    assert tel.total('a2a_scale.push.sends', outcome='ok') == 1
