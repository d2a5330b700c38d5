"""The AWS backend's queue-depth gauge, read at heartbeats while metrics are on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent

from a2a_scale import telemetry
from a2a_scale.telemetry import instruments
from a2a_scale.telemetry.wrappers import TracedEventStream, TracedTaskStore
from a2a_scale.testing import make_task, user_context
from a2a_scale_aws.backend import AWSBackend
from telemetry_support import local_telemetry

pytestmark = [pytest.mark.aws, pytest.mark.asyncio]


async def test_heartbeat_sets_the_queue_depth_gauge(
    make_backend: Callable[..., AWSBackend],
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tel = local_telemetry()
    monkeypatch.setattr(instruments, 'get', lambda: tel.instruments)
    telemetry.set_enabled(True)
    try:
        backend = make_backend(namespace)
        async with backend:
            await backend.lifecycle.heartbeat()
            points = tel.points('a2a_scale.backend.queue_depth')
            assert [p.value for p in points] == [0]
            assert dict(points[0].attributes) == {
                'a2a_scale.backend': 'aws',
                'a2a_scale.replica': backend.instance_id,
            }
            await backend.purge()
    finally:
        telemetry.set_enabled(None)


async def test_a_traced_save_then_publish_logs_the_event_once(
    make_backend: Callable[..., AWSBackend],
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tel = local_telemetry()
    monkeypatch.setattr(instruments, 'get', lambda: tel.instruments)
    telemetry.set_enabled(True)
    ctx = user_context('alice')
    try:
        backend = make_backend(namespace)
        async with backend:
            probe = telemetry.probe(backend)
            store = TracedTaskStore(backend.task_store, probe)
            stream = TracedEventStream(backend.event_stream, probe)
            task = make_task('traced')
            version = await store.save(
                task,
                event=task,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=ctx,
            )
            await stream.publish(task.id, VersionedEvent(task, version))
            events = stream.subscribe(task.id, after=TaskVersion(0))
            first = await asyncio.wait_for(anext(events), 10)
            assert first.version == version
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(events), 1.5)
            await events.aclose()
            await backend.purge()
    finally:
        telemetry.set_enabled(None)
    deliveries = tel.finished('a2a_scale.stream.deliver')
    assert len(deliveries) == 1
    saves = tel.finished('a2a_scale.store.save')
    assert deliveries[0].links[0].context.span_id == saves[0].context.span_id
