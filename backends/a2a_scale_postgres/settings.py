"""Settings of the PostgreSQL backend."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from a2a_scale import ConfigurationError, plugin_settings_config

_SCHEMES = ('postgres', 'postgresql')
SCHEMA_PATTERN = r'^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$'
_PASSWORD_IN_KEYWORDS = re.compile(r'(password\s*=\s*)(\S+)', re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """Returns `dsn` with its password replaced by ``***``."""
    parts = urlsplit(dsn)
    shown = dsn
    if parts.password is not None:
        user = parts.username or ''
        host = parts.netloc.rpartition('@')[2]
        shown = urlunsplit(parts._replace(netloc=f'{user}:***@{host}'))
    return _PASSWORD_IN_KEYWORDS.sub(r'\1***', shown)


def mask_secret(text: str, dsn: str) -> str:
    """Replaces the password of `dsn` wherever it appears in `text`."""
    password = urlsplit(dsn).password
    match = _PASSWORD_IN_KEYWORDS.search(dsn)
    for secret in (password, match.group(2) if match else None):
        if secret:
            text = text.replace(secret, '***')
    return _PASSWORD_IN_KEYWORDS.sub(r'\1***', text)


class PostgresSettings(BaseSettings):
    """Settings read from ``A2A_SCALE_POSTGRES_*`` variables."""

    model_config = plugin_settings_config('A2A_SCALE_POSTGRES_')

    dsn: SecretStr = Field(
        default=SecretStr('postgresql://postgres@127.0.0.1:5432/postgres'),
        description='postgresql:// DSN (libpq URL form; the password is never shown).',
    )
    schema_name: str | None = Field(
        default=None,
        pattern=SCHEMA_PATTERN,
        description=(
            'Schema holding the tables; unset uses the namespace (A2A_SCALE_NAMESPACE).'
        ),
        json_schema_extra={'demo': 'namespace'},
    )
    create_schema: bool = Field(
        default=False,
        description=(
            'Create or migrate the schema at start; off in production, where '
            '"a2a-scale postgres migrate" does it.'
        ),
        json_schema_extra={'demo': True},
    )
    synchronous_commit: (
        Literal['on', 'off', 'local', 'remote_write', 'remote_apply'] | None
    ) = Field(
        default=None,
        description=(
            "synchronous_commit of the backend's connections; unset keeps the "
            "server's. 'off' makes saves several times faster but a server "
            'crash can lose the last moments of acknowledged saves.'
        ),
    )
    min_pool_size: int = Field(
        default=1, ge=0, description='Connections the pool keeps open.'
    )
    max_pool_size: int = Field(
        default=10, gt=0, description='Most connections in the command pool.'
    )
    command_timeout: float = Field(
        default=10.0, gt=0, description='Seconds a statement may take before it fails.'
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description='Seconds to establish a connection.'
    )
    max_events_per_task: int = Field(
        default=1_000,
        gt=0,
        description='Events kept per task; older ones are trimmed while it runs.',
    )
    retention_interval: float = Field(
        default=60.0,
        gt=0,
        description='Seconds between runs of the retention job.',
    )
    retention_batch: int = Field(
        default=500,
        gt=0,
        description='Most finished tasks one retention run deletes.',
    )
    read_concurrency: int = Field(
        default=2,
        gt=0,
        description='Event-log reads that run at once (bounds pooled connections).',
    )
    notify_payload_limit: int = Field(
        default=2_000,
        ge=0,
        le=5_000,
        description=(
            'Largest event, in bytes, that a notification carries itself (saving '
            'the subscribers a read); larger ones are read from the table. 0 '
            'never carries events.'
        ),
    )
    recheck_interval: float = Field(
        default=5.0,
        gt=0,
        description=(
            'Seconds between checks (one query) that the tasks a replica watches '
            'have no event it missed, e.g. because a replica died between a '
            'commit and its notification.'
        ),
    )
    ping_interval: float = Field(
        default=15.0,
        gt=0,
        description='Seconds between checks of the LISTEN connection.',
    )
    backoff_base: float = Field(
        default=0.05, gt=0, description='First retry delay in seconds (jittered).'
    )
    backoff_cap: float = Field(
        default=2.0, gt=0, description='Longest retry delay in seconds.'
    )

    @model_validator(mode='after')
    def _check_pool(self) -> PostgresSettings:
        if self.min_pool_size > self.max_pool_size:
            raise ValueError(
                f'min_pool_size ({self.min_pool_size}) is over max_pool_size '
                f'({self.max_pool_size})'
            )
        return self

    def check_dsn(self) -> None:
        """Raises `ConfigurationError` unless the DSN is a postgresql:// URL.

        Checked here rather than by a validator, so that the error never
        echoes the DSN (which may hold a password).
        """
        scheme = urlsplit(self.dsn.get_secret_value()).scheme
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f'Invalid A2A_SCALE_POSTGRES_DSN ({self.display_dsn!r}): the scheme '
                f'must be one of {", ".join(_SCHEMES)}, not {scheme!r}',
                variable='A2A_SCALE_POSTGRES_DSN',
            )

    @property
    def display_dsn(self) -> str:
        """The DSN with its password hidden, safe to log."""
        return redact_dsn(self.dsn.get_secret_value())

    def mask(self, text: str) -> str:
        """`text` with the DSN's password hidden."""
        return mask_secret(text, self.dsn.get_secret_value())
