"""Traced and metered wrappers of a backend's store, stream and push sender.

`a2a_scale.telemetry.instrument` puts them around the backend's parts when a
request handler is built, so every backend is covered the same way. Span
attributes name the backend, namespace, replica, task id, version and
outcome; never a message body.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskEventStream,
    VersionedTaskStore,
)
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from a2a_scale.telemetry import instruments
from a2a_scale.telemetry.carrier import (
    DECODED,
    OUTGOING,
    Origin,
    SavedTrailers,
    make_trailer,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from a2a.server.cluster import StoredTask, TaskVersion, VersionedEvent
    from a2a.server.context import ServerCallContext
    from a2a.server.events.event_queue import Event
    from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse, Task

OK, CONFLICT, NOT_FOUND, ERROR = 'ok', 'conflict', 'not_found', 'error'


def version_text(version: TaskVersion) -> str:
    """A version as a span attribute."""
    return str(getattr(version, '_value', version))


class Probe:
    """Records one backend's spans and metrics with its common attributes.

    Args:
        backend: The backend's name.
        namespace: Its namespace.
        replica: This replica's instance id.
        inst: The instruments; by default those of the global providers.
    """

    def __init__(
        self,
        backend: str,
        namespace: str,
        replica: str,
        *,
        inst: instruments.Instruments | None = None,
    ) -> None:
        self.inst = inst or instruments.get()
        self.tracer = self.inst.tracer
        self.metric_attributes = {'a2a_scale.backend': backend}
        self.span_attributes = {
            'a2a_scale.backend': backend,
            'a2a_scale.namespace': namespace,
            'a2a_scale.replica': replica,
        }
        self.saved = SavedTrailers()

    def attributes(self, **extra: Any) -> dict[str, Any]:
        """The span attributes plus `extra` (prefixed with ``a2a_scale.``)."""
        attributes = dict(self.span_attributes)
        attributes.update({f'a2a_scale.{k}': v for k, v in extra.items()})
        return attributes

    def done(self, span: Span, operation: str, outcome: str, started: float) -> None:
        """Sets the outcome on `span` and records the operation's metrics."""
        span.set_attribute('a2a_scale.outcome', outcome)
        attributes = {
            **self.metric_attributes,
            'a2a_scale.operation': operation,
            'a2a_scale.outcome': outcome,
        }
        self.inst.operations.add(1, attributes)
        self.inst.duration.record(
            (time.perf_counter() - started) * 1000.0,
            {**self.metric_attributes, 'a2a_scale.operation': operation},
        )

    def trailer(self, span: Span) -> bytes | None:
        """The trailer for an event written in `span`, if anyone can use it."""
        context = span.get_span_context()
        if not context.is_valid and not self.inst.metrics_on():
            return None
        return make_trailer(
            context.trace_id,
            context.span_id,
            int(context.trace_flags),
            time.time_ns() // 1000,
        )

    def delivered(
        self,
        task_id: str,
        version: TaskVersion,
        origin: Origin | None,
        opened_us: int,
    ) -> None:
        """Records the hand-over of one event to a subscriber.

        Args:
            task_id: The event's task.
            version: The event's version.
            origin: Where and when the event was saved, if it says.
            opened_us: When the subscription opened (epoch microseconds).
        """
        links = None
        if origin is not None and origin.has_trace:
            links = [
                Link(
                    SpanContext(
                        origin.trace_id,
                        origin.span_id,
                        is_remote=True,
                        trace_flags=TraceFlags(origin.trace_flags),
                    )
                )
            ]
        span = self.tracer.start_span(
            'a2a_scale.stream.deliver',
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=self.attributes(task_id=task_id, version=version_text(version)),
        )
        span.end()
        # Events saved before the subscription opened are replayed, not
        # delivered live: their age is not a delivery lag.
        if origin is not None and origin.saved_at_us >= opened_us:
            lag_ms = (time.time_ns() // 1000 - origin.saved_at_us) / 1000.0
            self.inst.lag.record(max(lag_ms, 0.0), self.metric_attributes)


def failed(span: Span, error: BaseException) -> None:
    """Marks `span` failed with the error's type only (its message may quote data)."""
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.set_attribute('error.type', type(error).__name__)


class TracedTaskStore(VersionedTaskStore):
    """A `VersionedTaskStore` that records a span and metrics per operation.

    A save with an event carries the save's trace context and time in the
    stored event (see `a2a_scale.telemetry.carrier`).
    """

    def __init__(self, inner: VersionedTaskStore, probe: Probe) -> None:
        self.inner = inner
        self.probe = probe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save(  # noqa: D102
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        probe = self.probe
        if not probe.inst.recording():
            return await self.inner.save(
                task, event=event, prev=prev, prev_version=prev_version, context=context
            )
        with probe.tracer.start_as_current_span(
            'a2a_scale.store.save',
            kind=SpanKind.CLIENT,
            attributes=probe.attributes(
                task_id=task.id, prev_version=version_text(prev_version)
            ),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            trailer = probe.trailer(span) if event is not None else None
            token = OUTGOING.set(trailer)
            started = time.perf_counter()
            try:
                version = await self.inner.save(
                    task,
                    event=event,
                    prev=prev,
                    prev_version=prev_version,
                    context=context,
                )
            except ConcurrentTaskModificationError:
                probe.inst.conflicts.add(1, probe.metric_attributes)
                probe.done(span, 'save', CONFLICT, started)
                raise
            except Exception as e:
                failed(span, e)
                probe.done(span, 'save', ERROR, started)
                raise
            finally:
                OUTGOING.reset(token)
            span.set_attribute('a2a_scale.version', version_text(version))
            probe.done(span, 'save', OK, started)
            if trailer is not None:
                probe.saved.remember(task.id, version, trailer)
            return version

    async def get(  # noqa: D102
        self, task_id: str, context: ServerCallContext
    ) -> StoredTask | None:
        probe = self.probe
        if not probe.inst.recording():
            return await self.inner.get(task_id, context)
        with probe.tracer.start_as_current_span(
            'a2a_scale.store.get',
            kind=SpanKind.CLIENT,
            attributes=probe.attributes(task_id=task_id),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.perf_counter()
            try:
                stored = await self.inner.get(task_id, context)
            except Exception as e:
                failed(span, e)
                probe.done(span, 'get', ERROR, started)
                raise
            if stored is None:
                probe.done(span, 'get', NOT_FOUND, started)
            else:
                span.set_attribute('a2a_scale.version', version_text(stored.version))
                probe.done(span, 'get', OK, started)
            return stored

    async def list(  # noqa: D102
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        probe = self.probe
        if not probe.inst.recording():
            return await self.inner.list(params, context)
        with probe.tracer.start_as_current_span(
            'a2a_scale.store.list',
            kind=SpanKind.CLIENT,
            attributes=probe.attributes(),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.perf_counter()
            try:
                response = await self.inner.list(params, context)
            except Exception as e:
                failed(span, e)
                probe.done(span, 'list', ERROR, started)
                raise
            span.set_attribute('a2a_scale.count', len(response.tasks))
            probe.done(span, 'list', OK, started)
            return response

    async def delete(self, task_id: str, context: ServerCallContext) -> None:  # noqa: D102
        probe = self.probe
        if not probe.inst.recording():
            await self.inner.delete(task_id, context)
            return
        with probe.tracer.start_as_current_span(
            'a2a_scale.store.delete',
            kind=SpanKind.CLIENT,
            attributes=probe.attributes(task_id=task_id),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.perf_counter()
            try:
                await self.inner.delete(task_id, context)
            except Exception as e:
                failed(span, e)
                probe.done(span, 'delete', ERROR, started)
                raise
            probe.done(span, 'delete', OK, started)


class TracedEventStream(TaskEventStream):
    """A `TaskEventStream` that traces publishes, subscriptions and deliveries.

    Each event handed to a subscriber gets an ``a2a_scale.stream.deliver``
    span linked to the span that saved it, on whatever replica that was, and
    a ``a2a_scale.delivery.lag`` measurement.
    """

    def __init__(self, inner: TaskEventStream, probe: Probe) -> None:
        self.inner = inner
        self.probe = probe
        DECODED.active = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(self, task_id: str, event: VersionedEvent) -> None:  # noqa: D102
        probe = self.probe
        if not probe.inst.recording():
            await self.inner.publish(task_id, event)
            return
        with probe.tracer.start_as_current_span(
            'a2a_scale.stream.publish',
            kind=SpanKind.PRODUCER,
            attributes=probe.attributes(
                task_id=task_id, version=version_text(event.version)
            ),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            # The same trailer as the save of this event, so the backend
            # recognises the publish of an event it already logged.
            trailer = probe.saved.take(task_id, event.version) or probe.trailer(span)
            token = OUTGOING.set(trailer)
            started = time.perf_counter()
            try:
                await self.inner.publish(task_id, event)
            except Exception as e:
                failed(span, e)
                probe.done(span, 'publish', ERROR, started)
                raise
            finally:
                OUTGOING.reset(token)
            probe.done(span, 'publish', OK, started)

    async def subscribe(  # noqa: D102
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        probe = self.probe
        if not probe.inst.recording():
            async with aclosing(self.inner.subscribe(task_id, after=after)) as events:
                async for item in events:
                    yield item
            return
        with probe.tracer.start_as_current_span(
            'a2a_scale.stream.subscribe',
            kind=SpanKind.CLIENT,
            attributes=probe.attributes(task_id=task_id, after=version_text(after)),
        ):
            pass
        attributes = probe.metric_attributes
        probe.inst.subscriptions.add(1, attributes)
        opened_us = time.time_ns() // 1000
        try:
            async with aclosing(self.inner.subscribe(task_id, after=after)) as events:
                async for item in events:
                    probe.delivered(
                        task_id, item.version, DECODED.get(item.event), opened_us
                    )
                    yield item
        finally:
            probe.inst.subscriptions.add(-1, attributes)

    async def destroy(self, task_id: str) -> None:  # noqa: D102
        await self.inner.destroy(task_id)
