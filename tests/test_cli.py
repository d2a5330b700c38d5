"""The ``a2a-scale`` command line: demo, backends, check, plugin commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from a2a_scale.cli import build_app
from a2a_scale.cli.app import redact
from a2a_scale.hookspecs import hookimpl
from a2a_scale.plugins import create_plugin_manager

runner = CliRunner()


@pytest.fixture
def cli() -> typer.Typer:
    return build_app(plugins=False)


def test_backends_lists_memory_redis_and_aws_with_settings(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['backends'], env={'COLUMNS': '200'})
    assert result.exit_code == 0, result.output
    for name in ('memory', 'redis', 'aws'):
        assert f'\n{name}  ' in result.output
    for variable in (
        'A2A_SCALE_BACKEND',
        'A2A_SCALE_NAMESPACE',
        'A2A_SCALE_MEMORY_MAX_EVENTS_PER_TASK',
        'A2A_SCALE_REDIS_URL',
        'A2A_SCALE_AWS_REGION',
    ):
        assert variable in result.output
    assert 'driver installed' in result.output


def test_check_reports_each_component_of_memory(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['check'], env={'A2A_SCALE_BACKEND': 'memory'})
    assert result.exit_code == 0, result.output
    assert 'backend memory' in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) >= 2
    assert all(' ok' in line for line in lines[1:])


def test_check_bad_namespace_is_a_one_line_error_naming_the_variable(
    cli: typer.Typer,
) -> None:
    result = runner.invoke(cli, ['check'], env={'A2A_SCALE_NAMESPACE': 'bad ns'})
    assert result.exit_code == 2
    assert 'A2A_SCALE_NAMESPACE' in result.output
    assert 'Traceback' not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_check_unknown_backend_lists_installed_ones(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['check', '--backend', 'nope'])
    assert result.exit_code == 2
    assert "'nope'" in result.output
    assert 'memory' in result.output


def test_check_never_prints_passwords(cli: typer.Typer) -> None:
    secret = 'hunter2-very-secret'
    result = runner.invoke(
        cli,
        ['check', '--backend', 'redis'],
        env={'A2A_SCALE_REDIS_URL': f'redis://user:{secret}@127.0.0.1:1/0'},
    )
    assert result.exit_code in (1, 2)
    assert secret not in result.output
    assert 'Traceback' not in result.output


def test_redact_hides_url_credentials() -> None:
    text = 'cannot reach redis://app:pw@host:6379/0 or rediss://:pw2@h/1'
    assert redact(text) == 'cannot reach redis://***@host:6379/0 or rediss://***@h/1'


def test_demo_exits_zero_and_prints_ok_on_memory(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['demo'], env={'A2A_SCALE_BACKEND': 'memory'})
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.rstrip().splitlines()[-1].startswith('OK ')
    assert 'replay' in out
    assert 'live' in out
    assert '(while disconnected)' in out
    assert 'Replica 3 receives CancelTask' in out
    assert out.count('COMPLETED') >= 3
    assert out.count('CANCELED') >= 3


def test_demo_quiet_prints_only_the_outcome(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['demo', '--quiet', '--replicas', '2'])
    assert result.exit_code == 0, result.output
    assert result.output.strip().startswith('OK ')
    assert len(result.output.strip().splitlines()) == 1


def test_demo_bad_config_exits_2(cli: typer.Typer) -> None:
    result = runner.invoke(
        cli, ['demo', '--quiet'], env={'A2A_SCALE_NAMESPACE': 'bad ns'}
    )
    assert result.exit_code == 2
    assert 'A2A_SCALE_NAMESPACE' in result.output


def test_demo_fails_loudly_when_a_step_misbehaves(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from a2a_scale.demo import agents

    # A broken deployment: the agent numbers its steps with a gap.
    original = agents.CustomerServiceAgent._say

    async def skipping(self, updater, agent, step, text, *, interrupt=False):  # type: ignore[no-untyped-def]
        await original(
            self,
            updater,
            agent,
            step + (1 if step >= 5 else 0),
            text,
            interrupt=interrupt,
        )

    monkeypatch.setattr(agents.CustomerServiceAgent, '_say', skipping)
    result = runner.invoke(cli, ['demo', '--quiet'])
    assert result.exit_code == 1
    assert 'demo FAILED' in result.output
    assert 'OK ' not in result.output


def test_plugins_can_add_commands() -> None:
    class Plugin:
        @hookimpl
        def register_commands(self, app: typer.Typer) -> None:
            sub = typer.Typer()

            @sub.command()
            def reap() -> None:
                typer.echo('reaped 0 queues')

            app.add_typer(sub, name='fake')

    pm = create_plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    cli = build_app(plugin_manager=pm)
    result = runner.invoke(cli, ['fake', 'reap'])
    assert result.exit_code == 0, result.output
    assert 'reaped 0 queues' in result.output


def test_console_script_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, '-c', 'from a2a_scale.cli import main; main()', '--help'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ('demo', 'backends', 'check'):
        assert command in done.stdout
