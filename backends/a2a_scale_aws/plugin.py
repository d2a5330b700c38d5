"""Registers the ``aws`` backend without importing aioboto3."""

from collections.abc import Callable
from typing import Any

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


@hookimpl
def register_commands(app: Any) -> None:
    """Adds the ``a2a-scale aws`` command group."""
    from a2a_scale_aws.cli import app as aws_app  # noqa: PLC0415

    app.add_typer(aws_app, name='aws')
