"""Settings of the Redis backend."""

from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import Field, FilePath, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings

from a2a_scale import plugin_settings_config

_SCHEMES = ('redis', 'rediss', 'unix')
_URL_QUERY = ('db',)


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


def url_address_problem(url: str) -> str | None:
    """What is wrong with the port or database number of `url`, if anything.

    The message shows the host and port but never the password.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition('@')[2]
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 and ':' in host.rpartition(']')[2]:
        return f'the port of {host!r} must be a number from 1 to 65535'
    databases = parse_qs(parts.query).get('db', [])
    if parts.scheme in ('redis', 'rediss'):
        path = parts.path.strip('/')
        if path:
            databases.append(path)
    for db in databases:
        if not db.isdigit():
            return f'the database number must be a whole number like /0, not {db!r}'
    return None


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
    inline_event_bytes: int = Field(
        default=4_096,
        ge=0,
        description=(
            'Largest event (bytes) a wake-up carries, saving a stream read per '
            'delivery (0: wake-ups carry only the entry id).'
        ),
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
    tls_ca_file: FilePath | None = Field(
        default=None,
        description=(
            'rediss:// only: PEM file of the CA(s) that signed the server '
            "certificate; unset uses the system's trusted CAs."
        ),
    )
    tls_cert_file: FilePath | None = Field(
        default=None,
        description='rediss:// only: PEM client certificate, for mutual TLS.',
    )
    tls_key_file: FilePath | None = Field(
        default=None,
        description=(
            'rediss:// only: PEM private key of the client certificate (unset: '
            'the key is in the certificate file).'
        ),
    )
    tls_verify: bool = Field(
        default=True,
        description=(
            'rediss:// only: verify the server certificate and its host name '
            '(false still encrypts, but trusts any server).'
        ),
    )
    sentinels: str | None = Field(
        default=None,
        description=(
            'Redis Sentinel: host:port,host:port of the sentinels; the URL then '
            'gives only the scheme, credentials and db of the master.'
        ),
    )
    sentinel_master: str | None = Field(
        default=None,
        validate_default=True,
        description='Redis Sentinel: the name of the monitored master.',
    )
    sentinel_password: SecretStr | None = Field(
        default=None,
        description=(
            'Redis Sentinel: password of the sentinels (if they require one; '
            "the master's is in the URL)."
        ),
    )

    @field_validator('url')
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in _SCHEMES:
            raise ValueError(
                f'the URL scheme must be one of {", ".join(_SCHEMES)}, '
                f'not {parts.scheme!r}'
            )
        options = sorted(set(parse_qs(parts.query)) - set(_URL_QUERY))
        if options:
            raise ValueError(
                f'URL option(s) {", ".join(options)} are not read from the URL: '
                'use the A2A_SCALE_REDIS_* settings (TLS files, timeouts)'
            )
        return value

    @field_validator('url')
    @classmethod
    def _check_url_address(cls, value: SecretStr) -> SecretStr:
        problem = url_address_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    @field_validator('cluster')
    @classmethod
    def _check_cluster(cls, value: bool, info: ValidationInfo) -> bool:
        if value and _scheme(info.data) == 'unix':
            raise ValueError('a Redis Cluster cannot be reached over a unix:// URL')
        return value

    @field_validator('tls_ca_file', 'tls_cert_file', 'tls_key_file', 'tls_verify')
    @classmethod
    def _check_tls(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or value is True:  # unset, or the default
            return value
        scheme = _scheme(info.data)
        if scheme and scheme != 'rediss':
            raise ValueError(
                'TLS settings apply only to a rediss:// A2A_SCALE_REDIS_URL, '
                f'not {scheme}://'
            )
        if info.field_name == 'tls_key_file' and info.data.get('tls_cert_file') is None:
            raise ValueError('a key needs A2A_SCALE_REDIS_TLS_CERT_FILE')
        return value

    @field_validator('sentinels')
    @classmethod
    def _check_sentinels(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get('cluster'):
            raise ValueError('Sentinel cannot be combined with A2A_SCALE_REDIS_CLUSTER')
        if _scheme(info.data) == 'unix':
            raise ValueError(
                'Sentinel needs a redis:// or rediss:// A2A_SCALE_REDIS_URL, '
                'not unix://'
            )
        parse_addresses(value)
        return value

    @field_validator('sentinel_master')
    @classmethod
    def _check_master(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_sentinels = info.data.get('sentinels') is not None
        if has_sentinels and not value:
            raise ValueError('required when A2A_SCALE_REDIS_SENTINELS is set')
        if value and not has_sentinels and 'sentinels' in info.data:
            raise ValueError('needs A2A_SCALE_REDIS_SENTINELS (host:port,...)')
        return value

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The ``(host, port)`` of each sentinel; empty without Sentinel."""
        return parse_addresses(self.sentinels) if self.sentinels else []

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, safe to log."""
        return redact_url(self.url.get_secret_value())

    @property
    def display_address(self) -> str:
        """Where the backend connects, password hidden, safe to log.

        The URL, or with Sentinel the master's name, the sentinels and the URL.
        """
        if self.sentinels:
            return (
                f'master {self.sentinel_master!r} via sentinels {self.sentinels} '
                f'({self.display_url})'
            )
        return self.display_url


def _scheme(data: dict[str, Any]) -> str:
    url = data.get('url')
    return urlsplit(url.get_secret_value()).scheme if url is not None else ''


def parse_addresses(value: str) -> list[tuple[str, int]]:
    """Parses ``host:port,host:port`` (IPv6 hosts in brackets).

    Raises:
        ValueError: If an address has no host or no valid port.
    """
    addresses = []
    for item in value.split(','):
        address = item.strip()
        host, _, port = address.rpartition(':')
        host = host.removeprefix('[').removesuffix(']')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f'{address!r} is not host:port (a list is comma-separated)'
            )
        addresses.append((host, int(port)))
    return addresses
