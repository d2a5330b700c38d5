"""Settings for the core and for each backend plugin.

Every setting is read from the environment (and from a ``.env`` file in the
working directory). The core's variables start with ``A2A_SCALE_``; each
plugin's model uses its own prefix, such as ``A2A_SCALE_REDIS_``.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from typing import Any, TypeVar, get_args

from pydantic import Field, SecretBytes, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from a2a_scale.errors import ConfigurationError
from a2a_scale.recovery import RecoveryPolicy

SettingsT = TypeVar('SettingsT', bound=BaseSettings)

ENV_PREFIX = 'A2A_SCALE_'
_SECRET_HINTS = ('password', 'secret', 'token', 'url', 'key', 'dsn', 'credential')
NAMESPACE_PATTERN = r'^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$'
_URL_CREDENTIALS = re.compile(r'(?P<scheme>[a-z][a-z0-9+.-]*://)[^@/\s]+@', re.I)


def default_instance_id() -> str:
    """Returns a replica id unique across hosts and restarts."""
    host = ''.join(c if c.isalnum() else '-' for c in socket.gethostname())[:24]
    return f'{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}'


def plugin_settings_config(prefix: str) -> SettingsConfigDict:
    """Returns the model config a plugin's settings model should use.

    Args:
        prefix: The plugin's env prefix, e.g. ``'A2A_SCALE_REDIS_'``.
    """
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file='.env',
        env_file_encoding='utf-8',
        extra='ignore',
        validate_default=True,
    )


class ScaleSettings(BaseSettings):
    """Core settings, read from ``A2A_SCALE_*`` variables."""

    model_config = plugin_settings_config(ENV_PREFIX)

    backend: str = Field(default='memory', description='Name of the backend to load.')
    namespace: str = Field(
        default='a2a',
        pattern=NAMESPACE_PATTERN,
        description=(
            'Prefix of every key, table, topic and queue. Letters, digits, '
            '"-" and "_", at most 40 characters.'
        ),
    )
    instance_id: str = Field(
        default_factory=default_instance_id,
        pattern=r'^[A-Za-z0-9_-]{1,64}$',
        description='Id of this replica (defaults to host-pid-random).',
    )
    plugins: str | None = Field(
        default=None,
        description=(
            'Comma-separated allowlist of plugin entry points to load; '
            'unset loads every installed plugin.'
        ),
    )
    owner_resolver: str | None = Field(
        default=None,
        pattern=r'^[A-Za-z_][\w.]*:[A-Za-z_]\w*$',
        description=(
            'Dotted path "module:function" of the OwnerResolver that scopes '
            "tasks to a caller; unset uses the SDK's resolve_user_scope."
        ),
    )
    interrupted_task_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            'Seconds after which a replica forgets its local copy of a task '
            'parked in input-required or auth-required.'
        ),
    )
    follow_up_wait: float = Field(
        default=30.0,
        gt=0,
        description=(
            'Seconds a follow-up message waits while its task runs another '
            'turn (a task takes one turn at a time) before it is refused with '
            'FollowUpTimeoutError, unapplied.'
        ),
    )
    retention_seconds: int = Field(
        default=86_400,
        gt=0,
        description='How long a finished task and its event log are kept.',
    )
    heartbeat_interval: float = Field(
        default=10.0, gt=0, description='Seconds between replica heartbeats.'
    )
    reap_after: float = Field(
        default=60.0,
        gt=0,
        description='Seconds without a heartbeat after which a replica is dead.',
    )
    recovery: RecoveryPolicy = Field(
        default=RecoveryPolicy.FAIL,
        description=(
            'What a live replica does with the running tasks of a dead one: '
            '"fail" (FAILED), "resume" (run the agent again) or "off".'
        ),
    )
    max_resumes: int = Field(
        default=2,
        ge=0,
        description='Times a task is resumed after replica deaths before it fails.',
    )
    drain_seconds: float = Field(
        default=20.0,
        ge=0,
        description=(
            'On SIGTERM, seconds running tasks get to finish before they are '
            'handed over under the recovery policy.'
        ),
    )


def env_var_name(model: type[BaseSettings], field: str) -> str:
    """Returns the environment variable that sets `field` of `model`."""
    prefix = model.model_config.get('env_prefix') or ''
    return f'{prefix}{field}'.upper()


def load_settings(model: type[SettingsT], **overrides: Any) -> SettingsT:
    """Builds `model` from the environment plus `overrides`.

    Raises:
        ConfigurationError: naming the variable (or keyword) that is invalid.
    """
    try:
        return model(**overrides)
    except ValidationError as e:
        error = e.errors()[0]
        field = str(error['loc'][0]) if error['loc'] else '?'
        variable = env_var_name(model, field)
        source = f'keyword argument {field!r}' if field in overrides else variable
        shown = ''
        if 'input' in error and not _is_secret(model, field):
            shown = f' (got {error["input"]!r})'
        reason = str(error['msg']).removeprefix('Value error, ')
        raise ConfigurationError(
            f'Invalid {source}{shown}: {reason}', variable=variable
        ) from None


def _is_secret(model: type[BaseSettings], field: str) -> bool:
    """Whether `field` holds a secret: a `SecretStr` or a secret-sounding name."""
    if any(hint in field.lower() for hint in _SECRET_HINTS):
        return True
    info = model.model_fields.get(field)
    if info is None:
        return False
    return _mentions_secret(info.annotation)


def _mentions_secret(annotation: Any) -> bool:
    """Whether a type is, or contains (``SecretStr | None``...), a secret type."""
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


def user_values(model: type[BaseSettings]) -> dict[str, str]:
    """Returns the values set in the environment or ``.env``, by env var.

    A `SecretStr` value is shown as ``********``; a value of a field whose
    name hints at a secret has the credentials of any URL in it hidden.

    Raises:
        ConfigurationError: naming the variable that is invalid.
    """
    instance = load_settings(model)
    shown: dict[str, str] = {}
    for name in sorted(instance.model_fields_set):
        value = getattr(instance, name)
        if isinstance(value, SecretStr):
            text = '********'
        else:
            text = str(value)
            if any(hint in name for hint in _SECRET_HINTS):
                text = _URL_CREDENTIALS.sub(r'\g<scheme>***@', text)
        shown[env_var_name(model, name)] = text
    return shown


def describe_settings(model: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """Returns ``(env var, default, description)`` rows for `model`."""
    rows = []
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            default = '(generated)'
        elif info.default is None:
            default = ''
        elif isinstance(info.default, SecretStr):
            # A default is written in the source code: it is no secret.
            default = info.default.get_secret_value()
        else:
            default = str(info.default)
        rows.append((env_var_name(model, name), default, info.description or ''))
    return rows
