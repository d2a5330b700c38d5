"""The command line on Redis: one-line errors, bounded checks, demo cleanup."""

from __future__ import annotations

import asyncio

import pytest
import typer
from redis.asyncio import Redis
from typer.testing import CliRunner

from a2a_scale.cli import build_app
from a2a_scale.health import COMPONENTS
from a2a_scale_redis.namespace import namespace_pattern, purge_namespace
from black_hole import BlackHole
from cli_support import assert_one_line_error, run_cli

pytestmark = pytest.mark.redis

runner = CliRunner()

NOTHING_LISTENS = 'redis://127.0.0.1:6701/0'  # in this suite's port range
BLACK_HOLE_PORT = 6703


def _keys(url: str, namespace: str) -> list[bytes]:
    async def scan() -> list[bytes]:
        client = Redis.from_url(url)
        try:
            return [
                k async for k in client.scan_iter(match=namespace_pattern(namespace))
            ]
        finally:
            await client.aclose()

    return asyncio.run(scan())


def _purge(url: str, namespace: str) -> None:
    async def purge() -> None:
        client = Redis.from_url(url)
        try:
            await purge_namespace(client, namespace)
        finally:
            await client.aclose()

    asyncio.run(purge())


def test_demo_on_unreachable_redis_is_one_line_naming_the_address() -> None:
    run = run_cli(
        'demo',
        env={'A2A_SCALE_BACKEND': 'redis', 'A2A_SCALE_REDIS_URL': NOTHING_LISTENS},
    )
    assert_one_line_error(run, 1, '127.0.0.1:6701', 'A2A_SCALE_REDIS_URL')


def test_demo_bad_setting_is_one_line_naming_the_variable() -> None:
    run = run_cli(
        'demo', env={'A2A_SCALE_BACKEND': 'redis', 'A2A_SCALE_REDIS_MODE': 'bogus'}
    )
    assert_one_line_error(run, 2, 'A2A_SCALE_REDIS_MODE', "'bogus'")


@pytest.mark.parametrize(
    ('url', 'fragment'),
    [
        ('redis://h:notaport/0', "'h:notaport'"),
        ('redis://h:99999/0', "'h:99999'"),
        ('redis://user:pw-secret@h:0/0', "'h:0'"),
        ('redis://h/abc', "'abc'"),
        ('redis://h/0?db=x', "'x'"),
    ],
)
def test_check_bad_url_is_one_line_naming_the_variable(url: str, fragment: str) -> None:
    run = run_cli(
        'check', '--backend', 'redis', env={'A2A_SCALE_REDIS_URL': url}, timeout=60
    )
    line = assert_one_line_error(run, 2, 'A2A_SCALE_REDIS_URL', fragment)
    assert 'pw-secret' not in line


def test_check_on_a_black_hole_fails_within_the_timeout_naming_the_address() -> None:
    url = f'redis://app:pw-secret@127.0.0.1:{BLACK_HOLE_PORT}/0'
    with BlackHole(BLACK_HOLE_PORT):
        run = run_cli(
            'check',
            '--backend',
            'redis',
            env={
                'A2A_SCALE_REDIS_URL': url,
                'A2A_SCALE_CHECK_TIMEOUT': '2',
                # Longer than the check's bound: the check must not wait for them.
                'A2A_SCALE_REDIS_SOCKET_TIMEOUT': '60',
                'A2A_SCALE_REDIS_CONNECT_TIMEOUT': '60',
            },
            timeout=90,
        )
    line = assert_one_line_error(
        run, 1, f'127.0.0.1:{BLACK_HOLE_PORT}', '2 s', 'A2A_SCALE_CHECK_TIMEOUT'
    )
    assert 'pw-secret' not in line
    # Interpreter start and imports take a few seconds on a busy machine.
    assert run.seconds < 2 + 20, run.seconds


def test_demo_on_a_black_hole_is_one_line_naming_the_address() -> None:
    port = BLACK_HOLE_PORT + 1
    with BlackHole(port):
        run = run_cli(
            'demo',
            env={
                'A2A_SCALE_BACKEND': 'redis',
                'A2A_SCALE_REDIS_URL': f'redis://:pw-secret@127.0.0.1:{port}/0',
                'A2A_SCALE_REDIS_CONNECT_TIMEOUT': '1',
                'A2A_SCALE_REDIS_SOCKET_TIMEOUT': '1',
            },
            timeout=90,
        )
    line = assert_one_line_error(run, 1, f'127.0.0.1:{port}')
    assert 'pw-secret' not in line
    assert run.seconds < 2 + 20, run.seconds


def test_check_reports_the_four_components_with_counts(
    redis_url: str, namespace: str
) -> None:
    result = runner.invoke(
        build_app(plugins=False),
        ['check', '--backend', 'redis'],
        env={'A2A_SCALE_REDIS_URL': redis_url, 'A2A_SCALE_NAMESPACE': namespace},
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f'backend redis at {redis_url}')
    assert [line.split()[0] for line in lines[1:]] == list(COMPONENTS)
    assert all(line.split()[1] == 'ok' for line in lines[1:])
    assert 'tasks=0' in lines[1]
    assert 'subscriptions=0' in lines[2]
    assert 'live=1' in lines[4]


@pytest.mark.slow
def test_demo_deletes_its_keys_unless_kept(redis_url: str) -> None:
    env = {'A2A_SCALE_BACKEND': 'redis', 'A2A_SCALE_REDIS_URL': redis_url}
    run = run_cli('demo', '--quiet', '--replicas', '2', env=env, timeout=240)
    assert run.code == 0, (run.stdout, run.stderr)
    assert 'Traceback' not in run.stderr
    assert len(run.stdout.splitlines()) == 1
    namespace = run.demo_namespace()
    assert f"cleaned up namespace '{namespace}': " in run.stdout
    deleted = int(run.stdout.split(f"'{namespace}': ")[1].split()[0])
    assert run.stdout.rstrip().endswith(f'{deleted} Redis keys')
    assert deleted > 0
    assert _keys(redis_url, namespace) == []

    kept = run_cli('demo', '--quiet', '--replicas', '2', '--keep', env=env, timeout=240)
    assert kept.code == 0, (kept.stdout, kept.stderr)
    kept_namespace = kept.demo_namespace()
    try:
        assert f"kept namespace '{kept_namespace}'" in kept.stdout
        assert _keys(redis_url, kept_namespace)
    finally:
        _purge(redis_url, kept_namespace)


def test_demo_replica_that_fails_to_start_is_one_line(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from a2a_scale.demo import runner as demo_runner

    # A replica process that cannot start: its agent cannot be imported.
    monkeypatch.setattr(demo_runner, 'AGENT_PATH', 'a2a_scale_no_such_module:agent')
    cli: typer.Typer = build_app(plugins=False)
    result = runner.invoke(
        cli,
        ['demo', '--quiet', '--replicas', '2'],
        env={
            'A2A_SCALE_BACKEND': 'redis',
            'A2A_SCALE_REDIS_URL': redis_url,
            'A2A_SCALE_DEBUG': '',
        },
    )
    assert result.exit_code == 1, result.output
    assert 'Traceback' not in result.output
    assert result.stderr.count('\n') == 1, result.stderr
    assert 'Replica A failed to start' in result.stderr
    assert "No module named 'a2a_scale_no_such_module'" in result.stderr
    assert 'cleaned up' in result.stderr
