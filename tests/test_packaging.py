"""Packaging: lazy driver imports, missing-driver errors, the built wheel."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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
    assert re.search(r'Requires-Dist: a2a-sdk\[http-server\]<2,>=1\.3', metadata_text)
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


@functools.cache
def load_noxfile():
    """The repository's noxfile as a module, loaded once (its sessions register)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('noxfile', ROOT / 'noxfile.py')
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared_requirements() -> dict[str, Requirement]:
    """The core's requirements and those of the extras the matrix tests."""
    noxfile = load_noxfile()
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    texts = list(project['dependencies'])
    for extra in noxfile.COMPAT_EXTRAS:
        texts += project['optional-dependencies'][extra]
    return {canonicalize_name(Requirement(t).name): Requirement(t) for t in texts}


def test_lowest_cells_pin_every_declared_lower_bound():
    """The matrix's lowest pins are the declared lower bounds, all of them."""
    noxfile = load_noxfile()
    pins = noxfile.lowest_pins()
    declared = declared_requirements()

    assert set(pins) == set(declared)
    for name, requirement in declared.items():
        (lower,) = [s.version for s in requirement.specifier if s.operator == '>=']
        assert pins[name] == lower, name
        assert any(s.operator == '<' for s in requirement.specifier), (
            f'{requirement} has no upper bound: the newest cells test only up '
            'to what exists today'
        )
    assert {'a2a-sdk', 'redis', 'aioboto3', 'asyncpg'} <= set(pins)
    assert {'redis', 'aws', 'postgres'} <= set(noxfile.COMPAT_EXTRAS)


def test_lowest_pins_refuse_a_range_without_lower_bound(tmp_path):
    noxfile = load_noxfile()
    pyproject = tmp_path / 'pyproject.toml'
    pyproject.write_text(
        '[project]\ndependencies = ["pluggy<2"]\n'
        '[project.optional-dependencies]\nredis = ["redis>=5.3.0,<9"]\n'
        'aws = ["aioboto3>=13.0.0,<16"]\npostgres = ["asyncpg>=0.30.0,<1"]\n'
    )

    with pytest.raises(ValueError, match='pluggy<2'):
        noxfile.lowest_pins(pyproject)


def test_python_versions_agree_everywhere():
    """Classifiers, requires-python, nox's matrix and .ci/run name the same Pythons."""
    noxfile = load_noxfile()
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    classified = [
        c.rsplit(' :: ', 1)[1]
        for c in project['classifiers']
        if re.fullmatch(r'Programming Language :: Python :: 3\.\d+', c)
    ]
    ci = (ROOT / '.ci' / 'run').read_text()
    match = re.search(r"^MATRIX_PYTHONS='(.+)'$", ci, re.MULTILINE)

    assert classified == noxfile.COMPAT_PYTHONS
    assert project['requires-python'] == f'>={noxfile.COMPAT_PYTHONS[0]}'
    assert match, '.ci/run must define MATRIX_PYTHONS'
    assert match.group(1).split() == noxfile.COMPAT_PYTHONS
    assert noxfile.COMPAT_DEPS == ['lowest', 'newest']
    cells = noxfile.COMPAT_CI_CELLS
    assert {python for python, _ in cells} == set(noxfile.COMPAT_PYTHONS)
    assert {deps for _, deps in cells} == set(noxfile.COMPAT_DEPS)
    for python, deps in cells:  # CI runs these cells of the matrix
        assert f"compat-{python}(deps='{deps}')" in noxfile.nox.options.sessions


def test_readme_shows_the_tested_matrix():
    readme = (ROOT / 'README.md').read_text()
    noxfile = load_noxfile()
    pins = noxfile.lowest_pins()
    declared = declared_requirements()
    pythons = ', '.join(noxfile.COMPAT_PYTHONS)

    assert f'| {pythons} | lowest |' in readme
    assert f'| {pythons} | newest |' in readme
    for name in ('a2a-sdk', 'redis', 'aioboto3', 'asyncpg'):
        release = (*Version(pins[name]).release, 0, 0)[:3]
        assert f' {".".join(map(str, release))} |' in readme, name
        assert f'`{name}{_in_order(declared[name])}`' in readme, name
    for name, version in pins.items():
        assert version in readme, f'the README does not show {name} {version}'


def _in_order(requirement: Requirement) -> str:
    """``>=low,<high``, the order people write a range in."""
    parts = sorted(str(s) for s in requirement.specifier)
    return ','.join(sorted(parts, key=lambda p: not p.startswith('>')))


def build(tmp_path: Path) -> tuple[Path, Path]:
    """Builds the wheel and the sdist with hatchling, as an index would get them."""
    result = subprocess.run(
        [sys.executable, '-m', 'hatchling', 'build', '-d', str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob('a2a_scale-*.whl')
    (sdist,) = tmp_path.glob('a2a_scale-*.tar.gz')
    return wheel, sdist


@pytest.mark.slow
def test_wheel_and_sdist_ship_license_typing_and_changelog(tmp_path):
    wheel, sdist = build(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith('.dist-info/METADATA')]
        metadata_text = archive.read(metadata).decode()
        (license_file,) = [
            n for n in names if n.endswith('.dist-info/licenses/LICENSE')
        ]
        wheel_license = archive.read(license_file).decode()
    with tarfile.open(sdist) as archive:
        sdist_names = {n.split('/', 1)[1] for n in archive.getnames() if '/' in n}
        (sdist_license,) = [
            m for m in archive.getmembers() if m.name.endswith('/LICENSE')
        ]
        extracted = archive.extractfile(sdist_license)
        assert extracted is not None
        sdist_license_text = extracted.read().decode()

    license_text = (ROOT / 'LICENSE').read_text()
    assert 'Apache License' in license_text
    assert 'Version 2.0, January 2004' in license_text
    assert wheel_license == license_text == sdist_license_text
    assert 'License-Expression: Apache-2.0' in metadata_text
    assert 'License-File: LICENSE' in metadata_text

    packages = {n.split('/', 1)[0] for n in names if n.endswith('/__init__.py')}
    packages = {p for p in packages if '.' not in p}
    assert {'a2a_scale', 'a2a_scale_redis', 'a2a_scale_aws'} <= packages
    for package in packages:  # every shipped package, present or future
        assert f'{package}/py.typed' in names, package

    for path in ('LICENSE', 'CHANGELOG.md', 'README.md', 'pyproject.toml', '.ci/run'):
        assert path in sdist_names, path
    assert 'src/a2a_scale/py.typed' in sdist_names
    assert 'backends/a2a_scale_redis/py.typed' in sdist_names

    for classifier in (
        'Typing :: Typed',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Programming Language :: Python :: 3.13',
    ):
        assert f'Classifier: {classifier}' in metadata_text
    assert 'Requires-Python: >=3.11' in metadata_text
    for name, requirement in declared_requirements().items():
        assert re.search(
            rf'^Requires-Dist: {re.escape(name)}(\[[^\]]*\])?'
            rf'{re.escape(str(requirement.specifier))}',
            metadata_text,
            re.MULTILINE | re.IGNORECASE,
        ), requirement


def test_changelog_has_unreleased_and_current_version():
    changelog = (ROOT / 'CHANGELOG.md').read_text()
    version = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']

    assert changelog.startswith('# Changelog')
    assert '\n## [Unreleased]\n' in changelog
    assert f'\n## [{version}]' in changelog


DOC_LINK = re.compile(r'\]\(([^)\s]+)\)')


def test_docs_speak_to_users():
    """No build stamps, design notes or paths outside the docs in docs/ or README."""
    pages = [*sorted((ROOT / 'docs').rglob('*.md')), ROOT / 'README.md']
    problems = []
    for page in pages:
        text = page.read_text()
        for pattern in (
            r'\+dirty',
            r'DESIGN\.md',
            r'\bissue #?\d+',
            r'/work/',
            r'\.\./shared',
        ):
            for match in re.finditer(pattern, text, re.IGNORECASE):
                problems.append(f'{page.relative_to(ROOT)}: {match.group(0)!r}')
        for target in DOC_LINK.findall(text):
            if re.match(r'[a-z]+:', target) or target.startswith('#'):
                continue  # absolute URL or an anchor on the same page
            resolved = (page.parent / target.split('#', 1)[0]).resolve()
            if page.name == 'README.md' or not resolved.is_relative_to(ROOT / 'docs'):
                problems.append(
                    f'{page.relative_to(ROOT)}: link {target!r} leaves the docs'
                )
            elif not resolved.exists():
                problems.append(f'{page.relative_to(ROOT)}: link {target!r} is broken')

    assert problems == []
