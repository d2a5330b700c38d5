"""Names of the AWS resources of a namespace, and ARN validation.

Every table, topic and queue name is derived from the namespace, so two
namespaces never share a resource. ARNs that end up in a policy document are
parsed strictly: a crafted value (wildcards, quotes, another service, another
account) is rejected before it can widen a policy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from a2a_scale import ConfigurationError

TABLE_SUFFIX = '-a2a-scale'
TOPIC_SUFFIX = '-a2a-scale-events'
QUEUE_INFIX = '-a2a-replica-'
MAX_QUEUE_NAME = 80

TAG_NAMESPACE = 'a2a-scale:namespace'
TAG_INSTANCE = 'a2a-scale:instance-id'

_NAMESPACE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$')
_INSTANCE = re.compile(r'^[A-Za-z0-9_-]{1,64}$')
_REGION = r'[a-z]{2}(?:-[a-z]+)+-\d'
_PARTITION = r'aws|aws-cn|aws-us-gov'
_ARN = re.compile(
    rf'^arn:(?P<partition>{_PARTITION}):(?P<service>sns|sqs):'
    rf'(?P<region>{_REGION}):(?P<account>\d{{12}}):(?P<name>[A-Za-z0-9_-]{{1,256}})$'
)


@dataclass(frozen=True)
class Arn:
    """A parsed SNS topic or SQS queue ARN."""

    partition: str
    service: str
    region: str
    account: str
    name: str

    def __str__(self) -> str:
        return (
            f'arn:{self.partition}:{self.service}:{self.region}:'
            f'{self.account}:{self.name}'
        )


def parse_arn(value: str, *, service: str) -> Arn:
    """Parses a topic or queue ARN, rejecting anything unusual.

    Args:
        value: The ARN.
        service: ``'sns'`` or ``'sqs'``: the service the ARN must name.

    Raises:
        ConfigurationError: If `value` is not a plain ARN of `service`, with
            a 12-digit account and no wildcard or special character.
    """
    match = _ARN.fullmatch(value) if isinstance(value, str) else None
    if match is None or match['service'] != service:
        raise ConfigurationError(
            f'Not a valid {service.upper()} ARN: {value!r} (expected '
            f'arn:<partition>:{service}:<region>:<12-digit account>:<name>)'
        )
    return Arn(**match.groupdict())


def partition_for(region: str) -> str:
    """The ARN partition of `region`."""
    if region.startswith('cn-'):
        return 'aws-cn'
    if region.startswith('us-gov-'):
        return 'aws-us-gov'
    return 'aws'


@dataclass(frozen=True)
class ResourceNames:
    """The resource names of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ConfigurationError(
                f'Invalid namespace {self.namespace!r}: letters, digits, "-" '
                'and "_", at most 40 characters.',
                variable='A2A_SCALE_NAMESPACE',
            )

    @property
    def table(self) -> str:
        """The DynamoDB table of tasks, events, push configs and replicas."""
        return f'{self.namespace}{TABLE_SUFFIX}'

    @property
    def topic(self) -> str:
        """The SNS topic that rings every replica's doorbell."""
        return f'{self.namespace}{TOPIC_SUFFIX}'

    @property
    def queue_prefix(self) -> str:
        """The prefix shared by every replica queue of the namespace."""
        return f'{self.namespace}{QUEUE_INFIX}'

    def queue(self, instance_id: str) -> str:
        """The SQS queue of replica `instance_id` (at most 80 characters)."""
        if not _INSTANCE.fullmatch(instance_id):
            raise ConfigurationError(
                f'Invalid instance id {instance_id!r}: letters, digits, "-" '
                'and "_", at most 64 characters.',
                variable='A2A_SCALE_INSTANCE_ID',
            )
        name = f'{self.queue_prefix}{instance_id}'
        if len(name) <= MAX_QUEUE_NAME:
            return name
        digest = hashlib.sha256(instance_id.encode()).hexdigest()[:16]
        keep = MAX_QUEUE_NAME - len(self.queue_prefix) - len(digest) - 1
        return f'{self.queue_prefix}{instance_id[:keep]}-{digest}'

    def topic_arn(self, *, region: str, account: str) -> Arn:
        """The ARN of the namespace's topic in `account` and `region`."""
        return parse_arn(
            f'arn:{partition_for(region)}:sns:{region}:{account}:{self.topic}',
            service='sns',
        )
