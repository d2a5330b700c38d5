"""Developer and CI sessions: ``nox`` with no arguments runs what CI runs.

Sessions:
    lint: ruff check and ruff format --check.
    types: mypy with the repository configuration.
    tests(backend=...): pytest per backend, each with its own extra and venv.
        memory: everything that needs no service.
        redis: the ``redis``-marked tests against a real redis-server (the
            one on 127.0.0.1:6379, or one started on a free loopback port).
        aws: the ``aws``-marked tests (their fixtures start moto_server).
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
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import nox

nox.needs_version = '>=2024.4.15'
nox.options.default_venv_backend = 'uv|virtualenv'
nox.options.reuse_venv = 'yes'
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ['lint', 'types', 'tests', 'docs', 'demo', 'bench_smoke']

ROOT = Path(__file__).parent
RUFF = 'ruff==0.17.6'
BACKENDS = ['memory', 'redis', 'aws']
MARKERS = {
    'memory': 'not redis and not aws',
    'redis': 'redis',
    'aws': 'aws',
}
EXTRAS = {
    'memory': 'dev',
    'redis': 'redis,dev',
    'aws': 'aws,dev',
}
REDIS_HOST = '127.0.0.1'
REDIS_DEFAULT_PORT = 6379


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
    session.install(f'.[{EXTRAS[backend]}]')
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
