"""The conformance suite on the memory backend."""

import pytest

from a2a_scale.backend import Backend
from a2a_scale.memory import MemoryBackend
from a2a_scale.memory.settings import MemorySettings
from a2a_scale.memory.testing import inject_faults
from a2a_scale.settings import ScaleSettings
from a2a_scale.testing import (
    BackendConformance,
    ClusterConformance,
    DeliveryConformance,
    EventStreamConformance,
    FaultPlan,
)

pytestmark = pytest.mark.memory


class MemoryFactory:
    def create_backend(self, namespace: str) -> Backend:
        return MemoryBackend(ScaleSettings(namespace=namespace))

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        return MemoryBackend(
            ScaleSettings(namespace=namespace),
            MemorySettings(max_events_per_task=events),
        )

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        assert isinstance(backend, MemoryBackend)
        inject_faults(backend, plan)

    def subscription_count(self, backend: Backend, task_id: str) -> int | None:
        assert isinstance(backend, MemoryBackend)
        return backend.event_stream.subscriber_count(task_id)


class TestMemoryConformance(MemoryFactory, BackendConformance):
    pass


class TestMemoryProbedAsLiveOnly(
    MemoryFactory, EventStreamConformance, DeliveryConformance, ClusterConformance
):
    """Runs the live tests as a live-only backend (such as Redis Pub/Sub) runs them.

    This proves the suite's probe handshake; the replay tests, which a
    live-only backend skips, already ran above and are left out here.
    """

    supports_replay = False
    test_replays_logged_events_then_goes_live = None
    test_replay_starts_after_the_given_version = None
    test_replay_includes_published_only_events = None
    test_subscribing_while_writing_loses_and_repeats_nothing = None
    test_resubscribe_on_b_from_snapshot_sees_every_later_event = None
    test_delete_then_reuse_of_the_id = None
