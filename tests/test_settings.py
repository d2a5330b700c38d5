"""Settings: defaults, environment, .env, overrides, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from a2a.server.owner_resolver import resolve_user_scope
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from a2a_scale import (
    BackendSpec,
    ConfigurationError,
    hookimpl,
    load_backend,
    load_settings,
    plugin_settings_config,
)
from a2a_scale.memory.settings import MemorySettings
from a2a_scale.plugins import create_plugin_manager
from a2a_scale.settings import ScaleSettings, describe_settings, env_var_name
from a2a_scale_aws.settings import AWSSettings
from a2a_scale_redis.settings import RedisSettings

SECRET = 's3cr3t-Pa55'


def custom_resolver(context) -> str:
    return 'custom-owner'


not_callable_resolver = 'just a string'


class SecretSettings(BaseSettings):
    model_config = plugin_settings_config('A2A_SCALE_SECRETIVE_')

    url: SecretStr = Field(default=SecretStr('x://localhost'))
    dsn_url: str = Field(default='x://localhost', pattern=r'^x://')
    port: int = Field(default=1, gt=0)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No inherited A2A_SCALE_* variables and no stray .env file."""
    import os

    for name in list(os.environ):
        if name.startswith('A2A_SCALE_'):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, settings, plugin_settings, *, owner_resolver):
        self.calls.append((settings, plugin_settings, owner_resolver))
        return self


@pytest.fixture
def recorder_pm():
    recorder = Recorder()

    class Plugin:
        @staticmethod
        @hookimpl
        def register_backends(register):
            register(BackendSpec('secretive', recorder, SecretSettings))

    pm = create_plugin_manager(load_entry_points=False)
    pm.register(Plugin)
    return recorder, pm


def test_core_defaults():
    settings = load_settings(ScaleSettings)

    assert settings.backend == 'memory'
    assert settings.namespace == 'a2a'
    assert settings.plugins is None
    assert settings.owner_resolver is None
    assert settings.interrupted_task_timeout > 0
    assert settings.retention_seconds > 0
    assert settings.instance_id  # generated, and valid for its own pattern
    assert load_settings(ScaleSettings).instance_id != settings.instance_id


def test_plugin_defaults():
    assert load_settings(MemorySettings).max_events_per_task > 0
    redis = load_settings(RedisSettings)
    assert redis.mode == 'streams'
    assert redis.url.get_secret_value().startswith('redis://')
    assert load_settings(AWSSettings).region == 'us-east-1'


def test_env_vars(monkeypatch):
    monkeypatch.setenv('A2A_SCALE_BACKEND', 'redis')
    monkeypatch.setenv('A2A_SCALE_NAMESPACE', 'shop-1')
    monkeypatch.setenv('A2A_SCALE_INTERRUPTED_TASK_TIMEOUT', '2.5')
    monkeypatch.setenv('A2A_SCALE_REDIS_MODE', 'pubsub')

    settings = load_settings(ScaleSettings)

    assert settings.backend == 'redis'
    assert settings.namespace == 'shop-1'
    assert settings.interrupted_task_timeout == 2.5
    assert load_settings(RedisSettings).mode == 'pubsub'


def test_dotenv_file(isolated_env, monkeypatch):
    (isolated_env / '.env').write_text(
        'A2A_SCALE_NAMESPACE=from-dotenv\n'
        'A2A_SCALE_REDIS_MODE=pubsub\n'
        'A2A_SCALE_MEMORY_MAX_EVENTS_PER_TASK=7\n'
        'UNRELATED=ignored\n'
    )

    assert load_settings(ScaleSettings).namespace == 'from-dotenv'
    assert load_settings(RedisSettings).mode == 'pubsub'
    assert load_settings(MemorySettings).max_events_per_task == 7

    monkeypatch.setenv('A2A_SCALE_NAMESPACE', 'from-env')
    assert load_settings(ScaleSettings).namespace == 'from-env'  # env wins


def test_invalid_dotenv_value_names_variable(isolated_env):
    (isolated_env / '.env').write_text('A2A_SCALE_RETENTION_SECONDS=forever\n')

    with pytest.raises(ConfigurationError) as exc_info:
        load_settings(ScaleSettings)

    assert exc_info.value.variable == 'A2A_SCALE_RETENTION_SECONDS'
    assert 'A2A_SCALE_RETENTION_SECONDS' in str(exc_info.value)


@pytest.mark.parametrize(
    ('variable', 'value', 'model'),
    [
        ('A2A_SCALE_NAMESPACE', 'has spaces', ScaleSettings),
        ('A2A_SCALE_NAMESPACE', 'a{b}', ScaleSettings),
        ('A2A_SCALE_NAMESPACE', 'x' * 41, ScaleSettings),
        ('A2A_SCALE_INTERRUPTED_TASK_TIMEOUT', 'soon', ScaleSettings),
        ('A2A_SCALE_INTERRUPTED_TASK_TIMEOUT', '0', ScaleSettings),
        ('A2A_SCALE_OWNER_RESOLVER', 'not a path', ScaleSettings),
        ('A2A_SCALE_REDIS_MODE', 'carrier-pigeon', RedisSettings),
        ('A2A_SCALE_REDIS_CLUSTER', 'maybe', RedisSettings),
        ('A2A_SCALE_AWS_REGION', 'mars', AWSSettings),
        ('A2A_SCALE_MEMORY_MAX_EVENTS_PER_TASK', '-1', MemorySettings),
    ],
)
def test_invalid_env_value_names_variable(monkeypatch, variable, value, model):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as exc_info:
        load_settings(model)

    assert exc_info.value.variable == variable
    assert str(exc_info.value).startswith(f'Invalid {variable}')


def test_load_backend_fails_at_load_time_naming_variable(monkeypatch):
    monkeypatch.setenv('A2A_SCALE_REDIS_MODE', 'carrier-pigeon')

    with pytest.raises(ConfigurationError, match='A2A_SCALE_REDIS_MODE'):
        load_backend('redis')


def test_load_backend_core_variable_checked_first(monkeypatch):
    monkeypatch.setenv('A2A_SCALE_NAMESPACE', 'bad namespace')

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend()

    assert exc_info.value.variable == 'A2A_SCALE_NAMESPACE'


def test_keyword_overrides_win_over_env(monkeypatch, recorder_pm):
    recorder, pm = recorder_pm
    monkeypatch.setenv('A2A_SCALE_NAMESPACE', 'from-env')
    monkeypatch.setenv('A2A_SCALE_SECRETIVE_PORT', '10')

    load_backend('secretive', plugin_manager=pm, namespace='from-kw', port=20)

    settings, plugin_settings, _ = recorder.calls[0]
    assert settings.namespace == 'from-kw'
    assert settings.backend == 'secretive'
    assert plugin_settings.port == 20


def test_backend_name_argument_wins_over_env(monkeypatch, recorder_pm):
    recorder, pm = recorder_pm
    monkeypatch.setenv('A2A_SCALE_BACKEND', 'memory')

    load_backend('secretive', plugin_manager=pm)

    assert recorder.calls[0][0].backend == 'secretive'


def test_backend_selected_by_env(monkeypatch, recorder_pm):
    recorder, pm = recorder_pm
    monkeypatch.setenv('A2A_SCALE_BACKEND', 'secretive')

    assert load_backend(plugin_manager=pm) is recorder


def test_invalid_keyword_override_names_keyword(recorder_pm):
    _, pm = recorder_pm

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('secretive', plugin_manager=pm, port=-3)

    assert "keyword argument 'port'" in str(exc_info.value)
    assert exc_info.value.variable == 'A2A_SCALE_SECRETIVE_PORT'


def test_unknown_keyword_override_is_an_error(recorder_pm):
    recorder, pm = recorder_pm

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('secretive', plugin_manager=pm, colour='red')

    message = str(exc_info.value)
    assert 'colour' in message
    assert "'secretive'" in message
    assert 'namespace' in message  # lists the known ones
    assert 'port' in message
    assert recorder.calls == []


def test_secret_url_hidden_when_another_field_is_invalid(monkeypatch, recorder_pm):
    _, pm = recorder_pm
    monkeypatch.setenv('A2A_SCALE_SECRETIVE_URL', f'x://user:{SECRET}@host:1/0')
    monkeypatch.setenv('A2A_SCALE_SECRETIVE_PORT', 'eighty')

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('secretive', plugin_manager=pm)

    assert exc_info.value.variable == 'A2A_SCALE_SECRETIVE_PORT'
    assert SECRET not in str(exc_info.value)


def test_invalid_secret_looking_value_is_not_shown(monkeypatch, recorder_pm):
    _, pm = recorder_pm
    monkeypatch.setenv('A2A_SCALE_SECRETIVE_DSN_URL', f'bad://user:{SECRET}@h:1')

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('secretive', plugin_manager=pm)

    assert 'A2A_SCALE_SECRETIVE_DSN_URL' in str(exc_info.value)
    assert SECRET not in str(exc_info.value)
    assert SECRET not in repr(exc_info.value)
    # The pydantic error (which holds the input) is not chained on.
    assert exc_info.value.__cause__ is None
    assert exc_info.value.__suppress_context__


def test_secret_keyword_override_not_shown(recorder_pm):
    _, pm = recorder_pm

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('secretive', plugin_manager=pm, dsn_url=f'y://u:{SECRET}@h')

    assert SECRET not in str(exc_info.value)
    assert 'dsn_url' in str(exc_info.value)


def test_redis_url_password_not_in_repr_or_error(monkeypatch):
    url = f'redis://user:{SECRET}@127.0.0.1:6379/0'
    monkeypatch.setenv('A2A_SCALE_REDIS_URL', url)
    monkeypatch.setenv('A2A_SCALE_REDIS_CLUSTER', 'maybe')

    with pytest.raises(ConfigurationError) as exc_info:
        load_settings(RedisSettings)
    assert SECRET not in str(exc_info.value)

    monkeypatch.delenv('A2A_SCALE_REDIS_CLUSTER')
    settings = load_settings(RedisSettings)
    assert settings.url.get_secret_value() == url
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


def test_owner_resolver_default_and_configured(monkeypatch, recorder_pm):
    recorder, pm = recorder_pm

    load_backend('secretive', plugin_manager=pm)
    assert recorder.calls[-1][2] is resolve_user_scope

    monkeypatch.setenv('A2A_SCALE_OWNER_RESOLVER', f'{__name__}:custom_resolver')
    load_backend('secretive', plugin_manager=pm)
    assert recorder.calls[-1][2] is custom_resolver

    explicit = lambda context: 'explicit'  # noqa: E731
    load_backend('secretive', plugin_manager=pm, owner_resolver=explicit)
    assert recorder.calls[-1][2] is explicit


@pytest.mark.parametrize(
    'path', [f'{__name__}:missing_function', 'a2a_scale_no_module:f', None]
)
def test_bad_owner_resolver_names_variable(monkeypatch, recorder_pm, path):
    _, pm = recorder_pm
    path = path or f'{__name__}:not_callable_resolver'
    monkeypatch.setenv('A2A_SCALE_OWNER_RESOLVER', path)

    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('secretive', plugin_manager=pm)

    assert exc_info.value.variable == 'A2A_SCALE_OWNER_RESOLVER'
    assert 'A2A_SCALE_OWNER_RESOLVER' in str(exc_info.value)


def test_env_var_name_and_describe():
    assert env_var_name(ScaleSettings, 'namespace') == 'A2A_SCALE_NAMESPACE'
    assert env_var_name(RedisSettings, 'url') == 'A2A_SCALE_REDIS_URL'

    rows = {row[0]: row for row in describe_settings(ScaleSettings)}
    assert rows['A2A_SCALE_BACKEND'][1] == 'memory'
    assert rows['A2A_SCALE_NAMESPACE'][1] == 'a2a'
    assert rows['A2A_SCALE_INSTANCE_ID'][1] == '(generated)'
    assert all(description for _, _, description in rows.values())


class CredentialSettings(BaseSettings):
    """Secret fields whose names hint at nothing secret."""

    model_config = plugin_settings_config('A2A_SCALE_CREDENTIAL_')

    dsn: SecretStr = Field(default=SecretStr('x://localhost:5432'), min_length=16)
    auth: SecretStr | None = Field(default=None, max_length=8)


@pytest.mark.parametrize(
    ('variable', 'value'),
    [
        ('A2A_SCALE_CREDENTIAL_DSN', SECRET),
        ('A2A_SCALE_CREDENTIAL_AUTH', f'{SECRET}-{SECRET}'),
    ],
)
def test_invalid_secret_field_value_is_never_shown(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as exc_info:
        load_settings(CredentialSettings)

    assert exc_info.value.variable == variable
    assert value not in str(exc_info.value)
    assert value not in repr(exc_info.value)


def test_invalid_secret_field_keyword_is_never_shown():
    with pytest.raises(ConfigurationError) as exc_info:
        load_settings(CredentialSettings, dsn=SECRET)

    assert "keyword argument 'dsn'" in str(exc_info.value)
    assert SECRET not in str(exc_info.value)
