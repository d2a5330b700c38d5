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
    from a2a_scale.testing.lifecycle import HealthConformance, LifecycleConformance
    from a2a_scale.testing.listing import ListTasksConformance
    from a2a_scale.testing.push import PushConfigConformance
    from a2a_scale.testing.store import OwnerIsolationConformance, TaskStoreConformance
    from a2a_scale.testing.stream import EventStreamConformance

_EXPORTS = {
    'ALICE': 'a2a_scale.testing.base',
    'BOB': 'a2a_scale.testing.base',
    'BackendConformance': 'a2a_scale.testing.conformance',
    'BackendFactory': 'a2a_scale.testing.base',
    'ClusterConformance': 'a2a_scale.testing.cluster',
    'EventStreamConformance': 'a2a_scale.testing.stream',
    'HealthConformance': 'a2a_scale.testing.lifecycle',
    'LifecycleConformance': 'a2a_scale.testing.lifecycle',
    'ListTasksConformance': 'a2a_scale.testing.listing',
    'NamedUser': 'a2a_scale.testing.helpers',
    'OwnerIsolationConformance': 'a2a_scale.testing.store',
    'PushConfigConformance': 'a2a_scale.testing.push',
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
    'EventStreamConformance',
    'HealthConformance',
    'LifecycleConformance',
    'ListTasksConformance',
    'NamedUser',
    'OwnerIsolationConformance',
    'PushConfigConformance',
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
