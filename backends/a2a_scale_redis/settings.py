"""Settings of the Redis backend."""

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from a2a_scale import plugin_settings_config

_SCHEMES = ('redis', 'rediss', 'unix')


def redact_url(url: str) -> str:
    """Returns `url` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ''
    host = parts.hostname or ''
    if parts.port is not None:
        host = f'{host}:{parts.port}'
    return urlunsplit(parts._replace(netloc=f'{user}:***@{host}'))


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
    stream_maxlen: int = Field(
        default=1_000,
        gt=0,
        description='Approximate number of events kept per task stream.',
    )
    active_ttl_seconds: int = Field(
        default=7 * 86_400,
        ge=0,
        description=(
            'TTL of a task that has not finished, refreshed on every save '
            '(0 keeps unfinished tasks forever).'
        ),
    )
    feed_maxlen: int = Field(
        default=10_000,
        ge=0,
        description=(
            'Approximate length of the cluster-wide event feed (0 disables it).'
        ),
    )
    max_connections: int = Field(
        default=64,
        gt=0,
        description='Connections in the command pool (per node on a Cluster).',
    )
    pool_timeout: float = Field(
        default=10.0,
        gt=0,
        description='Seconds to wait for a free pooled connection.',
    )
    socket_timeout: float = Field(
        default=10.0,
        gt=0,
        description='Seconds a command may take before it fails.',
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description='Seconds to establish a connection.'
    )
    retries: int = Field(
        default=5,
        ge=0,
        description='Retries of a command on connection errors, with backoff.',
    )
    backoff_base: float = Field(
        default=0.05, gt=0, description='First retry delay in seconds (jittered).'
    )
    backoff_cap: float = Field(
        default=2.0, gt=0, description='Longest retry delay in seconds.'
    )
    ping_interval: float = Field(
        default=15.0,
        gt=0,
        description='Seconds between pings of the Pub/Sub connection.',
    )

    @field_validator('url')
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                f'the URL scheme must be one of {", ".join(_SCHEMES)}, not {scheme!r}'
            )
        return value

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, safe to log."""
        return redact_url(self.url.get_secret_value())
