"""The postgres plugin is found through its entry point and loads lazily."""

from __future__ import annotations

import pytest

import a2a_scale
from a2a_scale import ConfigurationError
from a2a_scale_postgres.backend import PostgresBackend

pytestmark = pytest.mark.postgres


def test_entry_point_registers_the_backend() -> None:
    spec = a2a_scale.available_backends()['postgres']
    assert spec.extra == 'postgres'
    assert spec.requires == ('asyncpg',)


def test_load_backend_builds_without_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('A2A_SCALE_POSTGRES_DSN', 'postgresql://u:pw@192.0.2.1:1/x')
    backend = a2a_scale.load_backend('postgres', namespace='shop', max_pool_size=3)
    assert isinstance(backend, PostgresBackend)
    assert backend.schema == 'shop'
    assert backend.postgres_settings.max_pool_size == 3
    assert not backend.started


def test_invalid_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('A2A_SCALE_POSTGRES_MAX_POOL_SIZE', 'zero')
    with pytest.raises(ConfigurationError) as caught:
        a2a_scale.load_backend('postgres')
    assert 'A2A_SCALE_POSTGRES_MAX_POOL_SIZE' in str(caught.value)
