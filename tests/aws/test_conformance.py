"""The shared conformance suite on the AWS backend, against a moto server."""

from __future__ import annotations

import pytest

from a2a_scale import Backend, ScaleSettings
from a2a_scale.testing import BackendConformance, FaultPlan
from a2a_scale_aws.backend import AWSBackend
from a2a_scale_aws.clients import open_clients
from a2a_scale_aws.names import ResourceNames
from a2a_scale_aws.settings import AWSSettings
from a2a_scale_aws.testing import inject_faults

pytestmark = pytest.mark.aws


class AWSFactory:
    """Builds AWS backends on the session's moto server."""

    timeout = 10.0
    slow_consumer_events = 300  # moto serializes DynamoDB: about 10 ms a save
    fault_events = 60

    @pytest.fixture(autouse=True)
    def _server(self, aws_env: dict[str, str]) -> None:
        self.endpoint = aws_env['AWS_ENDPOINT_URL']

    def create_backend(self, namespace: str) -> Backend:
        return AWSBackend(
            ScaleSettings(namespace=namespace, backend='aws'),
            AWSSettings(
                endpoint_url=self.endpoint,
                create_resources=True,
                receive_wait_seconds=1,
            ),
        )

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        # The DynamoDB log is not capped (events expire by TTL): a slow
        # subscriber can always catch up.
        del events
        return self.create_backend(namespace)

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        inject_faults(backend, plan)

    async def destroy_namespace(self, namespace: str) -> None:
        names = ResourceNames(namespace)
        async with open_clients(region='us-east-1', endpoint_url=self.endpoint) as c:
            await c.dynamodb.delete_table(TableName=names.table)
            topic = f'arn:aws:sns:us-east-1:123456789012:{names.topic}'
            await c.sns.delete_topic(TopicArn=topic)

    def subscription_count(self, backend: Backend, task_id: str) -> int | None:
        assert isinstance(backend, AWSBackend)
        return backend.event_stream.subscriber_count(task_id)


class TestAWSConformance(AWSFactory, BackendConformance):
    pass
