"""OpenTelemetry traces and metrics, and structured logs, for a2a-scale.

Everything here is safe to call with the ``otel`` extra absent: telemetry
is then off (see `a2a_scale.telemetry.switch`), the functions do nothing and
no ``opentelemetry`` module is imported. With the OpenTelemetry API
installed, spans and metrics go to the global tracer and meter providers,
the ones the A2A SDK uses; without an SDK provider configured they cost
little and go nowhere. ``A2A_SCALE_TELEMETRY=off`` turns them off.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from a2a_scale.telemetry.logs import (
    LOG_FORMAT_ENV,
    JsonFormatter,
    TraceContextFilter,
    configure_logging,
)
from a2a_scale.telemetry.switch import ENV, enabled, set_enabled

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from a2a.server.cluster import TaskEventStream, VersionedTaskStore
    from a2a.server.tasks import PushNotificationSender

    from a2a_scale.backend import Backend
    from a2a_scale.telemetry.wrappers import Probe


def probe(backend: Backend) -> Probe:
    """The backend's probe (its common span and metric attributes).

    Only call it while telemetry is on.
    """
    found: Probe | None = getattr(backend, '_telemetry_probe', None)
    if found is None:
        from a2a_scale.telemetry.wrappers import Probe  # noqa: PLC0415

        found = Probe(backend.name, backend.settings.namespace, backend.instance_id)
        backend._telemetry_probe = found  # type: ignore[attr-defined]
    return found


def instrument(
    backend: Backend,
    task_store: VersionedTaskStore,
    event_stream: TaskEventStream,
    push_sender: PushNotificationSender | None,
) -> tuple[VersionedTaskStore, TaskEventStream, PushNotificationSender | None]:
    """Wraps a backend's parts with traced and metered ones while telemetry is on.

    Returns:
        The store, stream and push sender to use (the given ones when off).
    """
    if not enabled():
        return task_store, event_stream, push_sender
    from a2a_scale.telemetry.push import TracedPushSender  # noqa: PLC0415
    from a2a_scale.telemetry.wrappers import (  # noqa: PLC0415
        TracedEventStream,
        TracedTaskStore,
    )

    found = probe(backend)
    return (
        TracedTaskStore(task_store, found),
        TracedEventStream(event_stream, found),
        TracedPushSender(push_sender, found) if push_sender is not None else None,
    )


@contextlib.contextmanager
def span(backend: Backend, name: str, **attributes: Any) -> Iterator[None]:
    """A span named `name` for a backend operation; nothing while off."""
    if not enabled():
        yield
        return
    found = probe(backend)
    with found.tracer.start_as_current_span(
        name, attributes=found.attributes(**attributes)
    ):
        yield


def count_reaped(backend: Backend, replicas: Sequence[str]) -> None:
    """Adds the replicas `backend` just reaped to ``a2a_scale.replicas.reaped``."""
    if replicas and enabled():
        found = probe(backend)
        found.inst.reaped.add(len(replicas), found.metric_attributes)


def count_recovered(backend: Backend, tasks: int, policy: str) -> None:
    """Adds recovered tasks to ``a2a_scale.tasks.recovered`` under `policy`."""
    if tasks and enabled():
        found = probe(backend)
        found.inst.recovered.add(
            tasks, {**found.metric_attributes, 'a2a_scale.policy': policy}
        )


async def observe(backend: Backend) -> None:
    """Sets the gauges read at heartbeats: live replicas and the backend's own.

    ``a2a_scale.replicas.live`` costs one read of the replica registry per
    heartbeat, then `Backend._observe` sets backend-specific gauges; both
    only while an application has installed a meter provider.
    """
    if not enabled():
        return
    from a2a_scale.ops import UnsupportedOperationError  # noqa: PLC0415

    found = probe(backend)
    if not found.inst.metrics_on():
        return
    try:
        beats = await backend.cluster_view.heartbeats()
    except UnsupportedOperationError:
        pass
    else:
        now = time.time()
        live = sum(1 for at in beats.values() if now - at < backend.settings.reap_after)
        found.inst.gauges.set(
            'a2a_scale.replicas.live', live, {**found.metric_attributes}
        )
    try:
        await backend._observe()
    except Exception as e:
        logger.debug('Backend gauges of %s not read (%s)', backend.name, e)


def count_retry(backend: str, component: str, amount: int = 1) -> None:
    """Counts a retried backend operation (``a2a_scale.backend.retries``).

    Args:
        backend: The backend's name (``redis``, ``aws``, ...).
        component: The part that retried (``store``, ``stream``, ``hub``...).
        amount: How many retries.
    """
    if enabled():
        from a2a_scale.telemetry import instruments  # noqa: PLC0415

        instruments.get().retries.add(
            amount, {'a2a_scale.backend': backend, 'a2a_scale.component': component}
        )


def count_reconnect(backend: str, component: str) -> None:
    """Counts a re-established connection (``a2a_scale.backend.reconnects``)."""
    if enabled():
        from a2a_scale.telemetry import instruments  # noqa: PLC0415

        instruments.get().reconnects.add(
            1, {'a2a_scale.backend': backend, 'a2a_scale.component': component}
        )


def metrics_on() -> bool:
    """Whether metrics are recorded: telemetry on and a meter provider set.

    Backends check it before a call made only to feed a gauge.
    """
    if not enabled():
        return False
    from a2a_scale.telemetry import instruments  # noqa: PLC0415

    return instruments.get().metrics_on()


def set_gauge(name: str, value: float, **attributes: str) -> None:
    """Sets a gauge of `a2a_scale.telemetry.instruments.GAUGES` to `value`.

    Attributes are prefixed with ``a2a_scale.`` (e.g. ``backend='aws'``).
    """
    if enabled():
        from a2a_scale.telemetry import instruments  # noqa: PLC0415

        instruments.get().gauges.set(
            name, value, {f'a2a_scale.{k}': v for k, v in attributes.items()}
        )


__all__ = [
    'ENV',
    'LOG_FORMAT_ENV',
    'JsonFormatter',
    'TraceContextFilter',
    'configure_logging',
    'count_reaped',
    'count_reconnect',
    'count_recovered',
    'count_retry',
    'enabled',
    'instrument',
    'metrics_on',
    'observe',
    'probe',
    'set_enabled',
    'set_gauge',
    'span',
]
