"""Packaging: lazy driver imports, missing-driver errors, the built wheel."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith('A2A_SCALE_')}
    clean.update(env)
    return subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean,
    )


def test_import_does_not_import_drivers():
    code = """
import json, sys
import a2a_scale
from a2a_scale import plugins
before = plugins._manager is None
names = sorted(plugins.available_backends())
spec = plugins.get_backend_spec('redis')
print(json.dumps({
    'manager_lazy': before,
    'names': names,
    'loaded': sorted(
        m for m in ('redis', 'aioboto3', 'aiobotocore', 'botocore', 'boto3')
        if m in sys.modules
    ),
    'plugin_modules': 'a2a_scale_redis.plugin' in sys.modules,
    'factory_module': 'a2a_scale_redis.backend' in sys.modules,
}))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)

    assert out['manager_lazy'] is True  # importing scans no entry points
    assert {'memory', 'redis', 'aws'} <= set(out['names'])
    assert out['loaded'] == []
    assert out['plugin_modules'] is True
    assert out['factory_module'] is False


BLOCK_AND_LOAD = """
import sys
# What an environment without the driver looks like to the import system.
for cached in [m for m in sys.modules if m.split('.')[0] == {module!r}]:
    del sys.modules[cached]
sys.modules[{module!r}] = None
import a2a_scale
try:
    a2a_scale.load_backend({backend!r})
except ImportError as e:
    print('ImportError:', e)
else:
    print('no error')
"""


@pytest.mark.parametrize(
    ('backend', 'module', 'extra'),
    [('redis', 'redis', 'redis'), ('aws', 'aioboto3', 'aws')],
)
def test_missing_driver_raises_import_error_naming_extra(backend, module, extra):
    result = run_python(BLOCK_AND_LOAD.format(backend=backend, module=module))

    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith('ImportError:'), line
    assert f'pip install "a2a-scale[{extra}]"' in line
    assert module in line


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / 'README.md').read_text()
    ci = (ROOT / '.ci' / 'run').read_text()
    match = re.search(r"^TEST_COMMAND='(.+)'$", ci, re.MULTILINE)

    assert match, '.ci/run must define TEST_COMMAND'
    assert f'\n{match.group(1)}\n' in readme
    assert 'a2a-scale demo' in readme


@pytest.mark.redis
def test_redis_session_has_redis_extra():
    from a2a_scale.plugins import create_plugin_manager, get_backend_spec

    spec = get_backend_spec('redis', create_plugin_manager())
    assert spec.missing_requirements() == []
    spec.check_requirements()


@pytest.mark.aws
def test_aws_session_has_aws_extra():
    from a2a_scale.plugins import create_plugin_manager, get_backend_spec

    spec = get_backend_spec('aws', create_plugin_manager())
    assert spec.missing_requirements() == []
    spec.check_requirements()


@pytest.mark.slow
def test_wheel_contains_packages_and_entry_points(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '--quiet',
            '--no-deps',
            '--no-build-isolation',
            '--no-index',
            '--wheel-dir',
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob('a2a_scale-*.whl')

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [
            n for n in names if n.endswith('.dist-info/entry_points.txt')
        ]
        entry_text = archive.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith('.dist-info/METADATA')]
        metadata_text = archive.read(metadata).decode()

    for package in ('a2a_scale', 'a2a_scale_redis', 'a2a_scale_aws'):
        assert f'{package}/__init__.py' in names
    for plugin in ('a2a_scale/memory', 'a2a_scale_redis', 'a2a_scale_aws'):
        assert f'{plugin}/plugin.py' in names
        assert f'{plugin}/settings.py' in names
    assert not any(n.startswith(('tests/', 'src/', 'backends/')) for n in names)

    assert '[a2a_scale.backends]' in entry_text
    assert 'redis = a2a_scale_redis.plugin' in entry_text
    assert 'aws = a2a_scale_aws.plugin' in entry_text
    assert 'a2a-scale = a2a_scale.cli:main' in entry_text

    for extra in ('redis', 'aws', 'all', 'dev'):
        assert f'Provides-Extra: {extra}' in metadata_text
    assert re.search(r'Requires-Dist: a2a-sdk\[http-server\]<2,>=1\.2', metadata_text)
    assert 'Requires-Dist: redis' in metadata_text  # only under the extra:
    assert re.search(r"Requires-Dist: redis[^\n]*extra == 'redis'", metadata_text)
    assert re.search(r"Requires-Dist: aioboto3[^\n]*extra == 'aws'", metadata_text)


def test_configuration_reference_is_current():
    """docs/configuration.md is generated from the settings models."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        'gen_config', ROOT / 'docs' / 'gen_config.py'
    )
    assert spec is not None
    assert spec.loader is not None
    gen_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_config)

    rendered = gen_config.render()
    current = (ROOT / 'docs' / 'configuration.md').read_text(encoding='utf-8')
    assert current == rendered, 'run "python docs/gen_config.py" and commit'
    for variable in (
        'A2A_SCALE_BACKEND',
        'A2A_SCALE_NAMESPACE',
        'A2A_SCALE_MEMORY_MAX_EVENTS_PER_TASK',
        'A2A_SCALE_REDIS_URL',
        'A2A_SCALE_AWS_REGION',
    ):
        assert f'`{variable}`' in current


def test_core_and_memory_backend_do_not_need_sqlalchemy():
    """The SDK's SQL extras are not dependencies of a2a-scale."""
    code = """
import sys
for name in [m for m in sys.modules if m.split('.')[0] == 'sqlalchemy']:
    del sys.modules[name]
sys.modules['sqlalchemy'] = None
import a2a_scale
from a2a_scale import codec
from a2a_scale.memory import MemoryBackend
backend = a2a_scale.load_backend('memory')
assert isinstance(backend, MemoryBackend)
print('ok')
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


CI_RULES_TESTS = """
import pytest

def test_needs_service(require_service):
    require_service('imaginary', False, 'nothing listens on port 1')

{extra}
"""


def run_ci_rules(tmp_path: Path, extra: str, **env: str):
    for name in ('conftest.py', 'service_support.py'):
        shutil.copy(ROOT / 'tests' / name, tmp_path / name)
    (tmp_path / 'test_rules.py').write_text(CI_RULES_TESTS.format(extra=extra))
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {'CI', 'A2A_SCALE_REQUIRE_SERVICES', 'A2A_SCALE_ALLOW_EMPTY'}
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-rs', '.'],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=clean,
    )


def test_missing_service_skips_outside_ci(tmp_path):
    result = run_ci_rules(tmp_path, 'def test_ok():\n    pass\n')

    assert result.returncode == 0, result.stdout
    assert 'imaginary is not available: nothing listens on port 1' in result.stdout
    assert '1 passed, 1 skipped' in result.stdout


@pytest.mark.parametrize('flag', ['CI', 'A2A_SCALE_REQUIRE_SERVICES'])
def test_missing_service_fails_in_ci(tmp_path, flag):
    result = run_ci_rules(tmp_path, 'def test_ok():\n    pass\n', **{flag: 'true'})

    assert result.returncode == 1, result.stdout
    assert 'imaginary is not available' in result.stdout
    assert '1 failed, 1 passed' in result.stdout


def test_run_without_a_passed_test_fails(tmp_path):
    result = run_ci_rules(tmp_path, '')

    assert result.returncode == 1, result.stdout
    assert '1 skipped' in result.stdout
    assert 'no test passed' in result.stdout

    allowed = run_ci_rules(tmp_path, '', A2A_SCALE_ALLOW_EMPTY='1')
    assert allowed.returncode == 0, allowed.stdout


def test_demo_and_replica_harness_do_not_need_pytest():
    """`pip install a2a-scale` has no pytest; the demo must still import."""
    code = """
import sys
import a2a_scale.demo
import a2a_scale.testing.replicas
print('pytest' in sys.modules)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'False'
