"""The factory hook and the fixtures every conformance mixin uses."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar

import pytest
import pytest_asyncio
from a2a.server.cluster import TaskVersion

from a2a_scale.testing.helpers import Subscription, user_context

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from a2a_scale.backend import Backend
    from a2a_scale.testing.faults import FaultPlan

ALICE = 'alice'
BOB = 'bob'


class BackendFactory(ABC):
    """Builds the backends under test; every conformance mixin needs one.

    Implement `create_backend`; override the other hooks when the backend
    can do better than the defaults.
    """

    supports_replay: ClassVar[bool] = True
    """Whether `subscribe(after=V)` replays events logged before it.

    A live-only backend sets this to False: the replay tests then skip,
    saying why, and live tests wait until each subscription delivers a probe
    message before they write.
    """

    timeout: ClassVar[float] = 5.0
    """Seconds any single wait may take before the test fails."""

    slow_consumer_events: ClassVar[int] = 5_000
    """Events the slow-consumer test writes; lower it for slow services."""

    slow_consumer_delay: ClassVar[float] = 0.002
    """Seconds the slow consumer spends on each event."""

    retained_events: ClassVar[int] = 100
    """The event-log cap the slow-consumer test asks `create_backend_retaining` for."""

    fault_events: ClassVar[int] = 200
    """Events the fault test writes while faults fire."""

    @abstractmethod
    def create_backend(self, namespace: str) -> Backend:
        """Returns an unstarted backend for `namespace`; does no I/O.

        Two calls with the same namespace must return two replicas that share
        state. Backends must scope owners with the SDK's default
        `resolve_user_scope` (the suite's contexts carry a user name).
        """

    async def destroy_namespace(self, namespace: str) -> None:  # noqa: B027
        """Deletes what the tests left in `namespace`; called after each test."""

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        """Returns an unstarted backend whose task logs keep about `events` events.

        Map `events` to the backend's own cap (the memory backend's
        ``max_events_per_task``, Redis's stream length, ...). The default
        skips the slow-consumer test, saying why.
        """
        del namespace, events
        pytest.skip(
            f'{type(self).__name__} does not implement create_backend_retaining: '
            'the slow-consumer test needs a backend with a small event log'
        )

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        """Makes the calls of started `backend` to its service fail as `plan` says.

        Wrap the backend's client (or its internal calls) so that each call
        first asks ``plan.next_fault(name)``; on a `Fault`, raise the
        client's own connection error (``fault.kind == 'connection'``) or
        server error (``'server'``), before the call (``fault.before``) or
        after it ran (its reply lost). The default skips the fault test.
        """
        del backend, plan
        pytest.skip(
            f'{type(self).__name__} does not implement inject_faults: '
            "the fault test needs a way to make the backend's calls fail"
        )

    def subscription_count(self, backend: Backend, task_id: str) -> int | None:
        """Returns `backend`'s live subscriptions to `task_id`, if observable.

        The default returns None, and the cleanup tests then check only what
        the public API shows.
        """
        del backend, task_id
        return None

    # --- Fixtures ----------------------------------------------------------

    @pytest.fixture
    def namespace(self) -> str:
        """A fresh namespace per test."""
        return f'ct{uuid.uuid4().hex[:16]}'

    @pytest.fixture
    def alice(self) -> ServerCallContext:
        """A call context of owner ``alice``."""
        return user_context(ALICE)

    @pytest.fixture
    def bob(self) -> ServerCallContext:
        """A call context of owner ``bob``."""
        return user_context(BOB)

    @pytest_asyncio.fixture
    async def backend(self, namespace: str) -> AsyncIterator[Backend]:
        """A started backend (replica A) in the test's namespace."""
        self._subscriptions: list[Subscription] = []
        async with self.create_backend(namespace) as started:
            try:
                yield started
            finally:
                for subscription in self._subscriptions:
                    await subscription.close()
        await self.destroy_namespace(namespace)

    @pytest_asyncio.fixture
    async def replica(self, namespace: str, backend: Backend) -> AsyncIterator[Backend]:
        """A second started backend (replica B) sharing `backend`'s state."""
        async with self.create_backend(namespace) as started:
            yield started

    # --- Helpers -----------------------------------------------------------

    def require_replay(self) -> None:
        """Skips the calling test on a live-only backend."""
        if not self.supports_replay:
            pytest.skip(
                f'{type(self).__name__} is live-only (supports_replay = False): '
                'replaying logged events is not part of its contract'
            )

    async def subscribe(
        self,
        backend: Backend,
        task_id: str,
        *,
        after: TaskVersion = TaskVersion.MISSING,
    ) -> Subscription:
        """Subscribes on `backend`; live-only backends are probed until live.

        The subscription is closed when the test ends.
        """
        subscription = Subscription(
            backend.event_stream, task_id, after=after, timeout=self.timeout
        )
        self._subscriptions.append(subscription)
        if not self.supports_replay:
            await subscription.wait_live()
        return subscription
