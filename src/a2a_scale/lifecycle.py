"""The per-replica resource lifecycle (queue lifecycle) interface."""

from abc import ABC, abstractmethod


class QueueLifecycle(ABC):
    """Per-replica resources: provisioned at start, kept alive, reaped when dead.

    A backend that delivers events through per-replica resources (the AWS
    backend's SQS queues) implements this to create them at start, record a
    heartbeat while the replica lives, delete them at stop, and let any live
    replica reap the resources of replicas that died without stopping.
    """

    @property
    @abstractmethod
    def instance_id(self) -> str:
        """The id of this replica."""

    @abstractmethod
    async def provision(self) -> None:
        """Creates this replica's resources; idempotent."""

    @abstractmethod
    async def heartbeat(self) -> None:
        """Records that this replica is alive."""

    @abstractmethod
    async def teardown(self) -> None:
        """Releases this replica's resources; idempotent."""

    @abstractmethod
    async def reap(self, *, older_than: float) -> list[str]:
        """Releases resources of replicas silent for `older_than` seconds.

        Returns:
            The ids of the replicas whose resources were released.
        """
