"""Plugin discovery: registration, allowlist, errors, lazy loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pluggy
import pytest
from a2a.server.owner_resolver import resolve_user_scope
from pydantic import Field
from pydantic_settings import BaseSettings

from a2a_scale import (
    BackendNotFoundError,
    BackendSpec,
    ConfigurationError,
    hookimpl,
    load_backend,
    plugin_settings_config,
)
from a2a_scale import plugins as plugins_module
from a2a_scale.plugins import (
    ALLOWLIST_ENV,
    available_backends,
    create_plugin_manager,
    get_backend_spec,
    get_plugin_manager,
    parse_allowlist,
    reset_plugin_manager,
)
from a2a_scale.settings import ScaleSettings

FIXTURES = Path(__file__).parent / 'fixtures'


class FakeSettings(BaseSettings):
    model_config = plugin_settings_config('A2A_SCALE_FAKE_')

    color: str = Field(default='blue', description='A color.')


class FakeFactory:
    def __init__(self) -> None:
        self.calls: list[tuple[ScaleSettings, BaseSettings, Any]] = []

    def __call__(
        self, settings: ScaleSettings, plugin_settings: BaseSettings, *, owner_resolver
    ) -> Any:
        self.calls.append((settings, plugin_settings, owner_resolver))
        return ('built', settings, plugin_settings)


def make_plugin(*specs: BackendSpec) -> object:
    class Plugin:
        @staticmethod
        @hookimpl
        def register_backends(register):
            for spec in specs:
                register(spec)

    return Plugin


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return create_plugin_manager(load_entry_points=False)


@pytest.fixture
def fresh_global(monkeypatch: pytest.MonkeyPatch):
    """Resets the process-wide manager before and after the test."""
    monkeypatch.delenv(ALLOWLIST_ENV, raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def test_fresh_manager_without_entry_points_has_only_memory(pm):
    assert set(available_backends(pm)) == {'memory'}


def test_manual_registration_is_loadable(pm, monkeypatch):
    monkeypatch.delenv('A2A_SCALE_FAKE_COLOR', raising=False)
    factory = FakeFactory()
    pm.register(make_plugin(BackendSpec('fake', factory, FakeSettings)), name='fake')

    assert set(available_backends(pm)) == {'memory', 'fake'}
    assert get_backend_spec('fake', pm).settings_model is FakeSettings

    built = load_backend('fake', plugin_manager=pm, color='red', namespace='ns1')

    assert built[0] == 'built'
    settings, plugin_settings, resolver = factory.calls[0]
    assert settings.backend == 'fake'
    assert settings.namespace == 'ns1'
    assert plugin_settings.color == 'red'
    assert resolver is resolve_user_scope


def test_unknown_backend_lists_installed(pm):
    pm.register(make_plugin(BackendSpec('fake', FakeFactory(), FakeSettings)))

    with pytest.raises(BackendNotFoundError) as exc_info:
        load_backend('nope', plugin_manager=pm)

    message = str(exc_info.value)
    assert "'nope'" in message
    assert 'Installed backends: fake, memory.' in message
    assert exc_info.value.installed == ['fake', 'memory']


def test_duplicate_backend_name_is_an_error(pm):
    pm.register(make_plugin(BackendSpec('memory', FakeFactory(), FakeSettings)))

    with pytest.raises(ConfigurationError, match="'memory' is registered by two"):
        available_backends(pm)
    with pytest.raises(ConfigurationError) as exc_info:
        load_backend('memory', plugin_manager=pm)
    assert exc_info.value.variable == ALLOWLIST_ENV


def test_register_rejects_non_spec(pm):
    pm.register(make_plugin({'name': 'dict'}))  # type: ignore[arg-type]

    with pytest.raises(TypeError, match='BackendSpec'):
        available_backends(pm)


def test_string_factory_is_imported_only_when_loaded(pm):
    spec = BackendSpec('lazy', 'a2a_scale_no_such_module:create', FakeSettings)
    pm.register(make_plugin(spec))

    assert 'lazy' in available_backends(pm)  # registering imports nothing
    with pytest.raises(ModuleNotFoundError, match='a2a_scale_no_such_module'):
        load_backend('lazy', plugin_manager=pm)


def test_missing_driver_names_the_extra(pm):
    spec = BackendSpec(
        'needy',
        'a2a_scale_no_such_module:create',
        FakeSettings,
        requires=('a2a_scale_no_such_driver',),
        extra='needy-extra',
    )
    pm.register(make_plugin(spec))

    with pytest.raises(ImportError) as exc_info:
        load_backend('needy', plugin_manager=pm)

    assert 'pip install "a2a-scale[needy-extra]"' in str(exc_info.value)
    assert exc_info.value.name == 'a2a_scale_no_such_driver'


def test_missing_driver_of_third_party_names_its_requirement(pm):
    spec = BackendSpec(
        'third',
        'a2a_scale_no_such_module:create',
        FakeSettings,
        requires=('a2a_scale_no_such_driver',),
        install='a2a-scale-third[fast]',
    )
    pm.register(make_plugin(spec))

    with pytest.raises(ImportError, match=r'pip install "a2a-scale-third\[fast\]"'):
        load_backend('third', plugin_manager=pm)


@pytest.mark.parametrize(
    ('value', 'expected'),
    [
        (None, None),
        ('', None),
        ('  ', None),
        ('redis', {'redis'}),
        (' redis , aws ,', {'redis', 'aws'}),
    ],
)
def test_parse_allowlist(value, expected):
    assert parse_allowlist(value) == expected


def test_real_entry_points_register_redis_and_aws():
    pm = create_plugin_manager()
    assert {'memory', 'redis', 'aws'} <= set(available_backends(pm))


def test_allowlist_blocks_an_entry_point():
    pm = create_plugin_manager(allowlist={'redis'})

    assert pm.is_blocked('aws')
    assert not pm.is_blocked('redis')
    names = set(available_backends(pm))
    assert 'redis' in names
    assert 'aws' not in names
    assert 'memory' in names  # built in: the allowlist is for entry points


def test_global_manager_honours_allowlist_env(fresh_global, monkeypatch):
    monkeypatch.setenv(ALLOWLIST_ENV, 'aws')

    names = set(available_backends())

    assert names == {'memory', 'aws'}
    with pytest.raises(BackendNotFoundError, match='Installed backends: aws, memory'):
        load_backend('redis')


def test_global_manager_is_created_lazily_once(fresh_global, monkeypatch):
    created: list[pluggy.PluginManager] = []
    real = plugins_module.create_plugin_manager

    def counting(**kwargs: Any) -> pluggy.PluginManager:
        created.append(real(**kwargs))
        return created[-1]

    monkeypatch.setattr(plugins_module, 'create_plugin_manager', counting)

    assert plugins_module._manager is None
    first = get_plugin_manager()
    available_backends()
    assert get_plugin_manager() is first
    assert len(created) == 1

    reset_plugin_manager()
    assert get_plugin_manager() is not first
    assert len(created) == 2


def test_global_manager_concurrent_first_use_creates_one(fresh_global, monkeypatch):
    created: list[pluggy.PluginManager] = []
    real = plugins_module.create_plugin_manager
    barrier = threading.Barrier(8)

    def slow(**kwargs: Any) -> pluggy.PluginManager:
        time.sleep(0.05)  # widens the race window; not synchronisation
        created.append(real(**kwargs))
        return created[-1]

    monkeypatch.setattr(plugins_module, 'create_plugin_manager', slow)
    results: list[pluggy.PluginManager] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        results.append(get_plugin_manager())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == 8
    assert len(created) == 1
    assert all(result is created[0] for result in results)


# --- a real third-party plugin, installed out of tree ------------------------

SAMPLE_SCRIPT = """
import json, sys
from a2a_scale import available_backends, load_backend
from a2a_scale.errors import A2AScaleError
out = {'names': sorted(available_backends())}
try:
    backend = load_backend('sample')
except A2AScaleError as e:
    out['error'] = type(e).__name__ + ': ' + str(e)
else:
    out['type'] = type(backend).__name__
    out['greeting'] = backend.greeting
    out['module'] = sys.modules['a2a_scale_sample'].__file__
print(json.dumps(out))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('A2A_SCALE_')}
    env.update(extra)
    return env


@pytest.fixture(scope='module')
def sample_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Installs tests/fixtures/sample_plugin into a private site directory."""
    root = tmp_path_factory.mktemp('sample')
    source = root / 'src'
    shutil.copytree(FIXTURES / 'sample_plugin', source)
    site = root / 'site'
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'install',
            '--quiet',
            '--no-deps',
            '--no-build-isolation',
            '--no-index',
            '--target',
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert list(site.glob('a2a_scale_sample_plugin-*.dist-info'))
    return site


def _run_sample(site: Path, cwd: Path, *args: str, **env: str):
    python_path = os.pathsep.join(
        p for p in (str(site), os.environ.get('PYTHONPATH', '')) if p
    )
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=_clean_env(PYTHONPATH=python_path, COLUMNS='200', **env),
    )


@pytest.mark.slow
def test_out_of_tree_plugin_is_discovered_and_loaded(sample_site, tmp_path):
    result = _run_sample(
        sample_site, tmp_path, '-c', SAMPLE_SCRIPT, A2A_SCALE_SAMPLE_GREETING='hej'
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)

    assert {'memory', 'redis', 'aws', 'sample'} <= set(out['names'])
    assert out['type'] == 'SampleBackend'
    assert out['greeting'] == 'hej'
    assert out['module'].startswith(str(sample_site))


@pytest.mark.slow
def test_out_of_tree_plugin_settings_use_its_prefix(sample_site, tmp_path):
    result = _run_sample(
        sample_site, tmp_path, '-c', SAMPLE_SCRIPT, A2A_SCALE_SAMPLE_REPEAT='zero'
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)

    assert out['error'].startswith('ConfigurationError')
    assert 'A2A_SCALE_SAMPLE_REPEAT' in out['error']


@pytest.mark.slow
def test_allowlist_hides_out_of_tree_plugin(sample_site, tmp_path):
    result = _run_sample(
        sample_site, tmp_path, '-c', SAMPLE_SCRIPT, A2A_SCALE_PLUGINS='redis'
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)

    assert out['names'] == ['memory', 'redis']
    assert out['error'].startswith('BackendNotFoundError')
    assert "'sample'" in out['error']


@pytest.mark.slow
def test_cli_lists_out_of_tree_plugin(sample_site, tmp_path):
    script = 'import sys; from a2a_scale.cli import main; sys.exit(main())'
    result = _run_sample(sample_site, tmp_path, '-c', script, 'backends')

    assert result.returncode == 0, result.stderr
    assert 'sample' in result.stdout
    assert 'A2A_SCALE_SAMPLE_GREETING' in result.stdout
    assert 'A2A_SCALE_REDIS_URL' in result.stdout

    hidden = _run_sample(
        sample_site, tmp_path, '-c', script, 'backends', A2A_SCALE_PLUGINS='aws'
    )
    assert hidden.returncode == 0, hidden.stderr
    assert 'A2A_SCALE_SAMPLE_GREETING' not in hidden.stdout
    assert 'A2A_SCALE_AWS_REGION' in hidden.stdout
