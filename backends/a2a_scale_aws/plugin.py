"""Registers the ``aws`` backend without importing aioboto3."""

from collections.abc import Callable

from a2a_scale import BackendSpec, hookimpl
from a2a_scale_aws.settings import AWSSettings


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Registers the AWS backend."""
    register(
        BackendSpec(
            name='aws',
            factory='a2a_scale_aws.backend:create_backend',
            settings_model=AWSSettings,
            description='DynamoDB log and store, SNS to per-replica SQS queues.',
            requires=('aioboto3',),
            extra='aws',
        )
    )
