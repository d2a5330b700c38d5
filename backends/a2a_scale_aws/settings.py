"""Settings of the AWS backend."""

from pydantic import Field
from pydantic_settings import BaseSettings

from a2a_scale import plugin_settings_config


class AWSSettings(BaseSettings):
    """Settings read from ``A2A_SCALE_AWS_*`` variables."""

    model_config = plugin_settings_config('A2A_SCALE_AWS_')

    region: str = Field(
        default='us-east-1',
        pattern=r'^[a-z]{2}(-[a-z]+)+-\d$',
        description='AWS region of the tables, topic and queues.',
    )
    endpoint_url: str | None = Field(
        default=None,
        description=(
            'Endpoint of every service (e.g. a moto server); falls back to '
            'AWS_ENDPOINT_URL.'
        ),
    )
