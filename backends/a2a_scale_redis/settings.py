"""Settings of the Redis backend."""

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from a2a_scale import plugin_settings_config


class RedisSettings(BaseSettings):
    """Settings read from ``A2A_SCALE_REDIS_*`` variables."""

    model_config = plugin_settings_config('A2A_SCALE_REDIS_')

    url: SecretStr = Field(
        default=SecretStr('redis://127.0.0.1:6379/0'),
        description='redis://, rediss:// or unix:// URL, ACL user allowed.',
    )
    mode: Literal['streams', 'pubsub'] = Field(
        default='streams',
        description='streams (durable, replayable) or pubsub (live only).',
    )
    cluster: bool = Field(default=False, description='Connect to a Redis Cluster.')
