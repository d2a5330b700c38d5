"""`BackendConformance`: every conformance mixin in one class."""

from a2a_scale.testing.cluster import ClusterConformance
from a2a_scale.testing.delivery import DeliveryConformance
from a2a_scale.testing.faults import FaultConformance
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


class BackendConformance(
    TaskStoreConformance,
    OwnerIsolationConformance,
    ListTasksConformance,
    EventStreamConformance,
    DeliveryConformance,
    FaultConformance,
    SaveRulesConformance,
    PushConfigConformance,
    LifecycleConformance,
    HealthConformance,
    PurgeConformance,
    ClusterConformance,
    RunningTasksConformance,
):
    """Every conformance test; mix in a factory to run them on a backend."""
