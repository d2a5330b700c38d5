"""The backend conformance suite, shipped for backend authors.

Every a2a-scale backend (memory, redis, aws and third-party plugins) must
pass it. It is a set of pytest test-case mixins (the faststream and
dogpile.cache pattern) that share one factory hook. A backend's test module
subclasses them::

    from a2a_scale.testing import BackendConformance

    class MyFactory:
        def create_backend(self, namespace: str) -> Backend:
            return MyBackend(ScaleSettings(namespace=namespace), ...)

    class TestMyBackend(MyFactory, BackendConformance):
        pass

Pick single mixins (`TaskStoreConformance`, `EventStreamConformance`, ...)
to run only part of it. The suite needs ``pytest`` and ``pytest-asyncio``
(strict mode is fine).

The API (stable):

- ``create_backend(namespace) -> Backend`` (required): an unstarted backend,
  built without I/O. Two calls with one namespace must give two replicas
  that share state, with distinct instance ids. Owners must be resolved
  with the SDK's default ``resolve_user_scope``.
- ``supports_replay`` (class attribute, default True): False for a
  live-only stream (such as a Pub/Sub mode). The replay tests then skip with
  the reason, and every subscription is probed with `Message` events (ids
  starting with ``a2a-scale-probe-``) until it delivers, before the test
  writes.
- ``timeout`` (class attribute, default 5.0): seconds any single wait may
  take; raise it for slow services.
- ``async destroy_namespace(namespace)`` (optional): deletes what a test
  left behind; called after each test.
- ``subscription_count(backend, task_id) -> int | None`` (optional): the
  backend's live subscriptions to a task, for the cleanup tests.
- ``create_backend_retaining(namespace, events) -> Backend`` (optional): a
  backend whose task logs keep about ``events`` events, for the slow-consumer
  test (skipped, with the reason, without it). Knobs:
  ``slow_consumer_events`` (5,000), ``slow_consumer_delay`` (2 ms),
  ``retained_events`` (100).
- ``inject_faults(backend, plan)`` (optional): wraps a started backend's
  client so the calls a `FaultPlan` picks fail with the client's connection
  or server errors, for the fault test (skipped without it). Knob:
  ``fault_events`` (200).

The delivery contract (no silent gap: every event or `EventGapError`; a
subscription ends only when its consumer stops it; delete semantics) is
spelled out in `a2a_scale.testing.delivery`, the save rules (finished tasks
stay finished, empty ids refused) in `a2a_scale.testing.rules`, the
running-task records of crash recovery in `a2a_scale.testing.recovery`.

The names below load on first use, so importing ``a2a_scale.testing.replicas``
(the replica harness the demo uses) needs no pytest.

Each test gets a fresh namespace and started backends through the
``backend`` (replica A) and ``replica`` (replica B) fixtures, and the
contexts ``alice`` and ``bob`` of two owners.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from a2a_scale.testing.base import ALICE, BOB, BackendFactory
    from a2a_scale.testing.cluster import ClusterConformance
    from a2a_scale.testing.conformance import BackendConformance
    from a2a_scale.testing.delivery import DeliveryConformance
    from a2a_scale.testing.faults import Fault, FaultConformance, FaultPlan
    from a2a_scale.testing.helpers import (
        NamedUser,
        Subscription,
        TaskWriter,
        agent_message,
        is_probe,
        make_task,
        new_id,
        timestamp,
        user_context,
    )
    from a2a_scale.testing.lifecycle import (
        HealthConformance,
        LifecycleConformance,
        PurgeConformance,
    )
    from a2a_scale.testing.listing import ListTasksConformance
    from a2a_scale.testing.push import PushConfigConformance
    from a2a_scale.testing.recovery import RunningTasksConformance
    from a2a_scale.testing.rules import SaveRulesConformance
    from a2a_scale.testing.store import OwnerIsolationConformance, TaskStoreConformance
    from a2a_scale.testing.stream import EventStreamConformance

_EXPORTS = {
    'ALICE': 'a2a_scale.testing.base',
    'BOB': 'a2a_scale.testing.base',
    'BackendConformance': 'a2a_scale.testing.conformance',
    'BackendFactory': 'a2a_scale.testing.base',
    'ClusterConformance': 'a2a_scale.testing.cluster',
    'DeliveryConformance': 'a2a_scale.testing.delivery',
    'Fault': 'a2a_scale.testing.faults',
    'FaultConformance': 'a2a_scale.testing.faults',
    'FaultPlan': 'a2a_scale.testing.faults',
    'SaveRulesConformance': 'a2a_scale.testing.rules',
    'EventStreamConformance': 'a2a_scale.testing.stream',
    'HealthConformance': 'a2a_scale.testing.lifecycle',
    'LifecycleConformance': 'a2a_scale.testing.lifecycle',
    'PurgeConformance': 'a2a_scale.testing.lifecycle',
    'ListTasksConformance': 'a2a_scale.testing.listing',
    'NamedUser': 'a2a_scale.testing.helpers',
    'OwnerIsolationConformance': 'a2a_scale.testing.store',
    'PushConfigConformance': 'a2a_scale.testing.push',
    'RunningTasksConformance': 'a2a_scale.testing.recovery',
    'Subscription': 'a2a_scale.testing.helpers',
    'TaskStoreConformance': 'a2a_scale.testing.store',
    'TaskWriter': 'a2a_scale.testing.helpers',
    'agent_message': 'a2a_scale.testing.helpers',
    'is_probe': 'a2a_scale.testing.helpers',
    'make_task': 'a2a_scale.testing.helpers',
    'new_id': 'a2a_scale.testing.helpers',
    'timestamp': 'a2a_scale.testing.helpers',
    'user_context': 'a2a_scale.testing.helpers',
}

__all__ = [
    'ALICE',
    'BOB',
    'BackendConformance',
    'BackendFactory',
    'ClusterConformance',
    'DeliveryConformance',
    'EventStreamConformance',
    'Fault',
    'FaultConformance',
    'FaultPlan',
    'HealthConformance',
    'LifecycleConformance',
    'ListTasksConformance',
    'NamedUser',
    'OwnerIsolationConformance',
    'PurgeConformance',
    'PushConfigConformance',
    'RunningTasksConformance',
    'SaveRulesConformance',
    'Subscription',
    'TaskStoreConformance',
    'TaskWriter',
    'agent_message',
    'is_probe',
    'make_task',
    'new_id',
    'timestamp',
    'user_context',
]


def __getattr__(name: str) -> Any:
    """Imports a public name on first use (the suite needs pytest)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
