"""Settings of the AWS backend."""

from pydantic import Field
from pydantic_settings import BaseSettings

from a2a_scale import plugin_settings_config


class AWSSettings(BaseSettings):
    """Settings read from ``A2A_SCALE_AWS_*`` variables.

    Credentials are never settings: they come from the standard AWS chain
    (environment, shared files, SSO, container or instance role).
    """

    model_config = plugin_settings_config('A2A_SCALE_AWS_')

    region: str = Field(
        default='us-east-1',
        pattern=r'^[a-z]{2}(-[a-z]+)+-\d$',
        description='AWS region of the tables, topic and queues.',
    )
    endpoint_url: str | None = Field(
        default=None,
        pattern=r'^https?://[^\s]+$',
        description=(
            'Endpoint of every service (e.g. a moto server); falls back to '
            'AWS_ENDPOINT_URL.'
        ),
    )
    account_id: str | None = Field(
        default=None,
        pattern=r'^\d{12}$',
        description=(
            'Account of the topic; unset asks STS (GetCallerIdentity) at start.'
        ),
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description='Seconds to open a connection to AWS.'
    )
    read_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            'Seconds to wait for a reply (an SQS receive adds its long-poll '
            'wait); startup fails after connect + read timeout without one.'
        ),
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description='Tries of each AWS call, the first included (with backoff).',
    )
    create_resources: bool = Field(
        default=False,
        description=(
            'Create the table, its indexes, TTL and the topic at start when '
            'missing (needs the provisioning permissions).'
        ),
    )
    receive_wait_seconds: int = Field(
        default=20,
        ge=1,
        le=20,
        description='SQS long-poll wait of the receive loop, in seconds.',
    )
    receive_linger: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description=(
            'Seconds to let doorbells gather after a partial batch before the '
            'next receive: fewer SQS calls under load, at most this much added '
            'latency; the first doorbell after a quiet spell is not delayed.'
        ),
    )
    resync_interval: float = Field(
        default=30.0,
        gt=0,
        description=(
            'Seconds after which a subscribed task is re-read from the log '
            'even without a doorbell (a safety net for a lost notification).'
        ),
    )
    active_ttl_seconds: int = Field(
        default=7 * 86_400,
        ge=0,
        description=(
            'How long an unfinished task, and a push config, is kept after its '
            'last save (0 keeps unfinished tasks until they finish).'
        ),
    )
    compress_threshold: int = Field(
        default=4096,
        ge=0,
        description='Task and event payloads larger than this are compressed.',
    )
