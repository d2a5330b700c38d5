"""Developer and CI sessions: ``nox`` with no arguments runs what CI runs.

Sessions:
    lint: ruff check and ruff format --check.
    types: mypy with the repository configuration.
    tests(backend=...): pytest per backend, each with its own extra and venv.
        memory: everything that needs no service.
        redis: the ``redis``-marked tests against a real redis-server (the
            one on 127.0.0.1:6379, or one started on a free loopback port).
        aws: the ``aws``-marked tests (their fixtures start moto_server).
        postgres: the ``postgres``-marked tests against a real PostgreSQL
            (the one on 127.0.0.1:5432 if it lets user postgres in without a
            password, or a private cluster started on a free loopback port).
    compat(python, deps): the compatibility matrix. Python 3.11, 3.12 and
        3.13, each with the lowest declared (``deps='lowest'``: every lower
        bound in pyproject.toml pinned) and the newest available dependencies;
        each cell runs the conformance suites of memory and Redis, the handler
        tests, the multi-replica end-to-end tests on memory and Redis, an AWS
        and PostgreSQL smoke selection, the demo and ``a2a-scale check``.
    docs: checks the generated configuration reference and builds the site.
    demo: runs ``a2a-scale demo`` on the memory backend.
    bench_smoke: a tiny run of every benchmark scenario on every target, so
        the harness cannot rot (SQLite baseline when PostgreSQL is absent).
    bench: the full benchmark run that refreshes docs/performance.md; needs
        PostgreSQL on 127.0.0.1:5432 (not run by default).

Each test session fails when no test passed, so a selection that matches
nothing, or a service that silently skipped everything, cannot go green.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

nox.needs_version = '>=2025.10.14'  # download_python
nox.options.default_venv_backend = 'uv|virtualenv'
nox.options.reuse_venv = 'yes'
nox.options.error_on_missing_interpreters = True
nox.options.download_python = 'never'  # a promised interpreter must be present
# The matrix cells CI runs (``nox -s compat`` runs all six): the lowest
# declared dependencies on the lowest Python, the newest on each newer Python;
# the tests(...) sessions run the newest dependencies on the Python running nox.
COMPAT_CI_CELLS = [('3.11', 'lowest'), ('3.12', 'newest'), ('3.13', 'newest')]
nox.options.sessions = [
    'lint',
    'types',
    'tests',
    *(f"compat-{python}(deps='{deps}')" for python, deps in COMPAT_CI_CELLS),
    'docs',
    'demo',
    'bench_smoke',
]

ROOT = Path(__file__).parent
RUFF = 'ruff==0.17.6'
BACKENDS = ['memory', 'redis', 'aws', 'postgres']
MARKERS = {
    'memory': 'not redis and not aws and not postgres',
    'redis': 'redis',
    'aws': 'aws',
    'postgres': 'postgres',
}
EXTRAS = {
    'memory': 'dev',
    'redis': 'redis,dev',
    'aws': 'aws,dev',
    'postgres': 'postgres,dev',
}
REDIS_HOST = '127.0.0.1'
REDIS_DEFAULT_PORT = 6379
POSTGRES_DEFAULT_DSN = 'postgresql://postgres@127.0.0.1:5432/test'


def _in_ci() -> bool:
    return os.environ.get('CI', '').lower() in {'1', 'true', 'yes'}


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole repository."""
    session.install(RUFF)
    session.run('ruff', 'check', '.')
    session.run('ruff', 'format', '--check', '.')


@nox.session
def types(session: nox.Session) -> None:
    """Mypy over the core and the first-party plugins (config in pyproject)."""
    session.install('-e', '.[dev]')
    session.run('mypy')


def _redis_ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING on loopback `port`."""
    try:
        with socket.create_connection((REDIS_HOST, port), timeout=timeout) as sock:
            sock.sendall(b'PING\r\n')
            return sock.recv(64).startswith(b'+PONG')
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _redis_server(session: nox.Session) -> Iterator[int]:
    """Yields the loopback port of a redis-server, starting one if needed.

    A server already answering on 127.0.0.1:6379 is used as is and never
    stopped. Otherwise one is started on a free loopback port without
    persistence and stopped (by its pid) when the session ends.
    """
    if _redis_ping(REDIS_DEFAULT_PORT):
        session.log(f'Using the redis-server on {REDIS_HOST}:{REDIS_DEFAULT_PORT}')
        yield REDIS_DEFAULT_PORT
        return
    binary = shutil.which('redis-server')
    if binary is None:
        message = (
            'redis-server is not installed and nothing answers on '
            f'{REDIS_HOST}:{REDIS_DEFAULT_PORT} (apt-get install redis-server)'
        )
        if _in_ci():
            session.error(message)
        session.skip(message)
    port = _free_port()
    session.log(f'Starting redis-server on {REDIS_HOST}:{port}')
    proc = subprocess.Popen(
        [
            binary,
            '--port',
            str(port),
            '--bind',
            REDIS_HOST,
            '--save',
            '',
            '--appendonly',
            'no',
            '--daemonize',
            'no',
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _redis_ping(port):
            if proc.poll() is not None:
                session.error(f'redis-server exited with {proc.returncode}')
            if time.monotonic() > deadline:
                session.error(f'redis-server did not answer on port {port} in 30 s')
            time.sleep(0.1)
        yield port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _postgres_bin_dir() -> Path | None:
    """The directory of PostgreSQL's server binaries (initdb, pg_ctl)."""
    found = shutil.which('initdb')
    if found:
        return Path(found).resolve().parent
    installed = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'), reverse=True)
    return installed[0].parent if installed else None


def _postgres_accepts(dsn_host: str, port: int, database: str) -> bool:
    """Whether user postgres can log in without a password (psql probe)."""
    psql = shutil.which('psql')
    if psql is None:
        return False
    done = subprocess.run(
        [psql, '-h', dsn_host, '-p', str(port), '-U', 'postgres', '-d', database,
         '-w', '-Atc', 'SELECT 1'],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )  # fmt: skip
    return done.returncode == 0 and done.stdout.strip() == '1'


@contextlib.contextmanager
def _postgres_server(session: nox.Session) -> Iterator[str]:
    """Yields the DSN of a PostgreSQL server, starting one if needed.

    The server on 127.0.0.1:5432 is used as is (and never stopped) when user
    postgres can log in to database ``test`` without a password. Otherwise a
    private cluster is created with Debian's ``initdb`` in a temp directory
    and started with ``pg_ctl`` on a free loopback port (as user postgres
    when this runs as root: PostgreSQL refuses root), then stopped at the end.
    """
    if _postgres_accepts('127.0.0.1', 5432, 'test'):
        session.log('Using the PostgreSQL server on 127.0.0.1:5432')
        yield POSTGRES_DEFAULT_DSN
        return
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        message = (
            'PostgreSQL is not installed and 127.0.0.1:5432 does not accept '
            'user postgres without a password (apt-get install postgresql)'
        )
        if _in_ci():
            session.error(message)
        session.skip(message)
    as_user = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
    directory = Path(tempfile.mkdtemp(prefix='a2a-scale-nox-pg-'))
    if as_user:
        shutil.chown(directory, 'postgres', 'postgres')
    data = directory / 'data'
    port = _free_port()
    session.log(f'Starting a private PostgreSQL on 127.0.0.1:{port} in {directory}')
    pg_ctl = [*as_user, str(bin_dir / 'pg_ctl'), '-D', str(data)]
    subprocess.run(
        [*as_user, str(bin_dir / 'initdb'), '-D', str(data), '-U', 'postgres',
         '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'],
        check=True,
        capture_output=True,
    )  # fmt: skip
    options = f'-h 127.0.0.1 -p {port} -k {directory} -c fsync=off'
    started = subprocess.run(
        [*pg_ctl, 'start', '-w', '-t', '60', '-o', options,
         '-l', str(directory / 'postgres.log')],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    try:
        if started.returncode != 0:
            session.error(f'PostgreSQL did not start: {started.stderr.strip()}')
        yield f'postgresql://postgres@127.0.0.1:{port}/postgres'
    finally:
        subprocess.run(
            [*pg_ctl, 'stop', '-w', '-m', 'fast'], capture_output=True, check=False
        )
        shutil.rmtree(directory, ignore_errors=True)


def _count_passed(junit_xml: Path) -> int:
    """Counts the tests that passed according to a JUnit XML report."""
    passed = 0
    for suite in ET.parse(junit_xml).getroot().iter('testsuite'):
        total = int(suite.get('tests', 0))
        not_passed = sum(
            int(suite.get(key, 0)) for key in ('failures', 'errors', 'skipped')
        )
        passed += total - not_passed
    return passed


@nox.session
@nox.parametrize('backend', BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """Runs the tests of one backend in a venv with that backend's extra."""
    # pip: the plugin tests install a sample plugin with it (uv venvs lack it).
    session.install(f'.[{EXTRAS[backend]}]', 'pip')
    junit = Path(session.create_tmp()) / f'junit-{backend}.xml'
    env = {'A2A_SCALE_TEST_BACKEND': backend}
    if backend != 'memory':
        # This session promises its service: a missing one fails, never skips.
        env['A2A_SCALE_REQUIRE_SERVICES'] = '1'
    with contextlib.ExitStack() as stack:
        if backend == 'redis':
            port = stack.enter_context(_redis_server(session))
            env['A2A_SCALE_TEST_REDIS_HOST'] = REDIS_HOST
            env['A2A_SCALE_TEST_REDIS_PORT'] = str(port)
            env['A2A_SCALE_TEST_REDIS_URL'] = f'redis://{REDIS_HOST}:{port}/0'
        elif backend == 'postgres':
            dsn = stack.enter_context(_postgres_server(session))
            env['A2A_SCALE_TEST_POSTGRES_DSN'] = dsn
        session.run(
            'pytest',
            '-m',
            MARKERS[backend],
            f'--junitxml={junit}',
            *session.posargs,
            env=env,
        )
    passed = _count_passed(junit)
    if passed == 0:
        session.error(f'tests({backend}) passed no test: refusing an empty run')
    session.log(f'tests({backend}): {passed} passed')


COMPAT_PYTHONS = ['3.11', '3.12', '3.13']
COMPAT_DEPS = ['lowest', 'newest']
# The extras whose lower bounds the matrix pins and tests, with the core's.
COMPAT_EXTRAS = ('redis', 'aws', 'postgres')
# Per cell, three pytest runs (each must pass at least one test):
# 1. the conformance suites of memory and Redis, and the handler tests (they
#    drive the SDK internals a2a-scale overrides);
COMPAT_TESTS = (
    'tests/conformance',
    'tests/redis/test_conformance.py',
    'tests/handler',
)
COMPAT_MARKERS = 'not aws and not postgres'
# 2. the multi-replica scenarios: all of them on memory (in-process replicas),
#    and on Redis (three replica processes, the slow part) the one that
#    crosses processes the most: a stream dropped on A and resubscribed on B.
#    Every scenario on Redis and Redis Cluster runs in tests(backend='redis').
COMPAT_E2E_TESTS = ('tests/e2e/test_multi_replica.py',)
COMPAT_E2E_KEYWORDS = 'not redis-cluster and (memory or resubscribe_on_b)'
# 3. a smoke of the AWS and PostgreSQL backends: the two-replica and reaper
#    tests of their conformance suites (store, listing, stream, replicas),
#    against moto_server and PostgreSQL.
COMPAT_SMOKE_TESTS = (
    'tests/aws/test_conformance.py',
    'tests/postgres/test_conformance.py',
)
COMPAT_SMOKE_KEYWORDS = '(on_b or reaped) and not writers_on_both'
# What the cell reports having installed.
COMPAT_SHOWN = (
    'a2a-sdk',
    'redis',
    'aioboto3',
    'aiobotocore',
    'asyncpg',
    'pydantic',
    'pydantic-settings',
    'pluggy',
    'typer',
    'click',
    'rich',
    'httpx',
    'uvicorn',
)

SHOW_VERSIONS = (
    'import importlib.metadata as m, sys; '
    'print("Python", sys.version.split()[0], '
    '*(f"{n}=={m.version(n)}" for n in sys.argv[1:]))'
)


def lowest_pins(pyproject: Path = ROOT / 'pyproject.toml') -> dict[str, str]:
    """Pins every dependency of the core and of `COMPAT_EXTRAS` to its lower bound.

    Read from pyproject.toml, so the matrix tests exactly the declared lower
    bounds. A requirement without one ``>=`` bound is refused: a range that
    is declared must be tested.
    """
    project = tomllib.loads(pyproject.read_text(encoding='utf-8'))['project']
    requirements = list(project['dependencies'])
    for extra in COMPAT_EXTRAS:
        requirements += project['optional-dependencies'][extra]
    pins: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        lower = [s.version for s in requirement.specifier if s.operator == '>=']
        if len(lower) != 1:
            raise ValueError(f'{text!r} in pyproject.toml needs one ">=" lower bound')
        pins[canonicalize_name(requirement.name)] = lower[0]
    return pins


def _pytest(session: nox.Session, name: str, *args: str, env: dict[str, str]) -> str:
    """Runs pytest with a JUnit report and says what went wrong, if anything.

    A run with failures does not stop the session, so a matrix cell reports
    every failing selection at once; a run in which no test passed is a
    failure too.

    Returns:
        An empty string, or why this run failed.
    """
    junit = Path(session.create_tmp()) / f'junit-{name}.xml'
    junit.unlink(missing_ok=True)
    session.run(
        'pytest',
        '-p',
        'no:cacheprovider',
        f'--junitxml={junit}',
        *args,
        env=env,
        success_codes=[0, 1],
    )
    passed = _count_passed(junit)
    failed = sum(
        int(suite.get(key, 0))
        for suite in ET.parse(junit).getroot().iter('testsuite')
        for key in ('failures', 'errors')
    )
    session.log(f'{name}: {passed} passed, {failed} failed')
    if failed:
        return f'{name}: {failed} failed'
    if passed == 0:
        return f'{name}: no test passed, refusing an empty run'
    return ''


def _install(session: nox.Session, *args: str) -> None:
    """Installs, trying once more after a failure (a registry hiccup)."""
    try:
        session.install(*args)
    except nox.command.CommandFailed:
        session.warn('install failed; retrying once in 10 s')
        time.sleep(10)
        session.install(*args)


@nox.session(python=COMPAT_PYTHONS)
@nox.parametrize('deps', COMPAT_DEPS)
def compat(session: nox.Session, deps: str) -> None:
    """One cell of the compatibility matrix: a Python and lowest/newest deps."""
    target = f'.[{",".join(COMPAT_EXTRAS)},dev]'
    if deps == 'lowest':
        constraints = Path(session.create_tmp()) / 'lowest.txt'
        constraints.write_text(
            ''.join(f'{name}=={version}\n' for name, version in lowest_pins().items())
        )
        _install(session, '-c', str(constraints), target)
    else:
        _install(session, '--upgrade', target)
    session.run('python', '-c', SHOW_VERSIONS, *COMPAT_SHOWN)
    env = {'A2A_SCALE_REQUIRE_SERVICES': '1'}
    with _redis_server(session) as port, _postgres_server(session) as dsn:
        env['A2A_SCALE_TEST_POSTGRES_DSN'] = dsn
        redis_url = f'redis://{REDIS_HOST}:{port}/0'
        env['A2A_SCALE_TEST_REDIS_HOST'] = REDIS_HOST
        env['A2A_SCALE_TEST_REDIS_PORT'] = str(port)
        env['A2A_SCALE_TEST_REDIS_URL'] = redis_url
        problems = [
            _pytest(
                session,
                'conformance-handler',
                '-m',
                COMPAT_MARKERS,
                *COMPAT_TESTS,
                env=env,
            ),
            _pytest(
                session,
                'e2e',
                '-m',
                COMPAT_MARKERS,
                '-k',
                COMPAT_E2E_KEYWORDS,
                *COMPAT_E2E_TESTS,
                env=env,
            ),
            _pytest(
                session,
                'aws-postgres-smoke',
                '-k',
                COMPAT_SMOKE_KEYWORDS,
                *COMPAT_SMOKE_TESTS,
                env=env,
            ),
        ]
        session.run('a2a-scale', 'demo', '--quiet', env={'A2A_SCALE_BACKEND': 'memory'})
        session.run(
            'a2a-scale',
            'check',
            env={'A2A_SCALE_BACKEND': 'redis', 'A2A_SCALE_REDIS_URL': redis_url},
        )
    failed = [problem for problem in problems if problem]
    if failed:
        session.error('; '.join(failed))


@nox.session
def docs(session: nox.Session) -> None:
    """Checks docs/configuration.md is current and builds the site strictly."""
    session.install('.', 'mkdocs>=1.6,<2')
    session.run('python', 'docs/gen_config.py', '--check')
    site = Path(session.create_tmp()) / 'site'
    session.run('mkdocs', 'build', '--strict', '--site-dir', str(site))


@nox.session
def demo(session: nox.Session) -> None:
    """Runs the customer-service demo on the memory backend."""
    session.install('.')
    session.run('a2a-scale', 'demo', env={'A2A_SCALE_BACKEND': 'memory'})


def _bench(session: nox.Session, *args: str) -> None:
    """Runs ``python -m benchmarks run`` against a loopback redis-server."""
    session.install('.[dev,bench]')
    with _redis_server(session) as port:
        session.run(
            'python',
            '-m',
            'benchmarks',
            'run',
            *args,
            *session.posargs,
            env={'A2A_SCALE_BENCH_REDIS': f'redis://{REDIS_HOST}:{port}/0'},
        )


@nox.session
def bench_smoke(session: nox.Session) -> None:
    """Every benchmark scenario at tiny sizes; fails on any correctness check."""
    out = Path(session.create_tmp()) / 'bench-smoke'
    _bench(session, '--smoke', '--out', str(out))


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The full benchmarks (3 runs); rewrites docs/performance.md and its plots."""
    _bench(session, '--docs')
