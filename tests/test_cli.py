"""The ``a2a-scale`` command line: demo, backends, check, plugin commands."""

from __future__ import annotations

import subprocess
import sys

import pluggy
import pytest
import typer
from typer.testing import CliRunner

import a2a_scale
from a2a_scale.cli import build_app
from a2a_scale.cli.app import redact
from a2a_scale.health import COMPONENTS
from a2a_scale.hookspecs import hookimpl
from a2a_scale.plugins import create_plugin_manager
from cli_support import assert_one_line_error, run_cli

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


def test_check_reports_the_four_components_of_memory_with_counts(
    cli: typer.Typer,
) -> None:
    result = runner.invoke(cli, ['check'], env={'A2A_SCALE_BACKEND': 'memory'})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith('backend memory')
    assert [line.split()[0] for line in lines[1:]] == list(COMPONENTS)
    assert all(line.split()[1] == 'ok' for line in lines[1:])
    assert 'tasks=0' in lines[1]
    assert 'subscriptions=0' in lines[2]
    assert 'live=1' in lines[4]


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


@pytest.mark.parametrize('command', ['check', 'demo'])
def test_unknown_backend_option_blames_the_option(
    cli: typer.Typer, command: str
) -> None:
    result = runner.invoke(
        cli, [command, '--backend', 'nosuch'], env={'A2A_SCALE_BACKEND': 'memory'}
    )
    assert result.exit_code == 2
    assert result.stderr.count('\n') == 1, result.stderr
    assert '(--backend)' in result.stderr
    assert 'A2A_SCALE_BACKEND' not in result.stderr


def test_unknown_backend_variable_blames_the_variable(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['check'], env={'A2A_SCALE_BACKEND': 'nosuch'})
    assert result.exit_code == 2
    assert '(A2A_SCALE_BACKEND)' in result.stderr


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


def test_version_prints_the_versions() -> None:
    run = run_cli('--version')
    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f'a2a-scale {a2a_scale.__version__} (a2a-sdk ')
    assert len(run.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    'args',
    [['--help'], ['demo', '--help'], ['check', '--help'], ['backends', '--help']],
)
def test_help_shows_no_value_type_for_flags(args: list[str]) -> None:
    result = runner.invoke(build_app(), args, env={'COLUMNS': '200'})
    assert result.exit_code == 0, result.output
    assert '<bool>' not in result.output
    assert '--help' in result.output


def test_plugin_command_help_shows_no_value_type_for_flags() -> None:
    result = runner.invoke(build_app(), ['aws', 'policy', '--help'])
    assert result.exit_code == 0, result.output
    assert '--provision' in result.output
    assert '<bool>' not in result.output


def test_backends_shows_non_secret_defaults_and_masks_a_set_secret(
    cli: typer.Typer,
) -> None:
    secret = 'hunter2-very-secret'
    result = runner.invoke(
        cli,
        ['backends'],
        env={
            'COLUMNS': '250',
            'A2A_SCALE_REDIS_URL': f'redis://app:{secret}@db.internal:6380/1',
            'A2A_SCALE_REDIS_MODE': 'pubsub',
        },
    )
    assert result.exit_code == 0, result.output
    assert 'redis://127.0.0.1:6379/0' in result.output  # the default
    assert secret not in result.output
    assert 'db.internal' not in result.output
    redis_row = next(
        line for line in result.output.splitlines() if 'A2A_SCALE_REDIS_URL' in line
    )
    assert '********' in redis_row
    mode_row = next(
        line for line in result.output.splitlines() if 'A2A_SCALE_REDIS_MODE' in line
    )
    assert mode_row.split()[1:3] == ['streams', 'pubsub']  # default, then set


def test_backends_names_an_invalid_value_without_a_traceback(
    cli: typer.Typer,
) -> None:
    result = runner.invoke(
        cli, ['backends'], env={'COLUMNS': '250', 'A2A_SCALE_REDIS_MODE': 'bogus'}
    )
    assert result.exit_code == 0, result.output
    assert 'invalid: Invalid A2A_SCALE_REDIS_MODE' in result.output


def _plugin_with_a_bug() -> pluggy.PluginManager:
    class Plugin:
        @hookimpl
        def register_commands(self, app: typer.Typer) -> None:
            sub = typer.Typer()

            @sub.command()
            def boom() -> None:
                raise ZeroDivisionError('division by zero')

            app.add_typer(sub, name='buggy')

    pm = create_plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    return pm


def test_an_unexpected_error_is_one_line_pointing_to_debug() -> None:
    cli = build_app(plugin_manager=_plugin_with_a_bug())
    result = runner.invoke(cli, ['buggy', 'boom'], env={'A2A_SCALE_DEBUG': ''})
    assert result.exit_code == 1
    assert result.stderr.count('\n') == 1, result.stderr
    assert 'unexpected ZeroDivisionError: division by zero' in result.stderr
    assert '--debug' in result.stderr
    assert 'Traceback' not in result.output


@pytest.mark.parametrize(
    ('args', 'env'),
    [(['--debug', 'buggy', 'boom'], {}), (['buggy', 'boom'], {'A2A_SCALE_DEBUG': '1'})],
)
def test_debug_lets_an_unexpected_error_through(
    args: list[str], env: dict[str, str]
) -> None:
    cli = build_app(plugin_manager=_plugin_with_a_bug())
    result = runner.invoke(cli, args, env=env)
    assert isinstance(result.exception, ZeroDivisionError)


def test_demo_unknown_backend_is_one_line_naming_the_variable() -> None:
    run = run_cli('demo', env={'A2A_SCALE_BACKEND': 'nosuch'})
    assert_one_line_error(run, 2, "'nosuch'", 'A2A_SCALE_BACKEND', 'memory')


def test_demo_memory_deletes_its_namespace_unless_kept(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ['demo', '--quiet', '--replicas', '2'])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(': 2 tasks in memory')
    assert "cleaned up namespace 'demo-" in result.output
    kept = runner.invoke(cli, ['demo', '--quiet', '--replicas', '2', '--keep'])
    assert kept.exit_code == 0, kept.output
    assert "kept namespace 'demo-" in kept.output


@pytest.mark.parametrize(
    ('args', 'env', 'fragments'),
    [
        (['demo', '--replicas', '1'], {}, ["'--replicas'", "'a2a-scale demo --help'"]),
        (['nosuchcommand'], {}, ["'nosuchcommand'"]),
        (['check'], {'A2A_SCALE_CHECK_TIMEOUT': 'abc'}, ['A2A_SCALE_CHECK_TIMEOUT']),
    ],
)
def test_a_usage_error_is_one_line(
    args: list[str], env: dict[str, str], fragments: list[str]
) -> None:
    run = run_cli(*args, env=env)
    assert_one_line_error(run, 2, *fragments)
    assert '╭' not in run.stderr


def test_no_arguments_shows_the_help() -> None:
    run = run_cli()
    assert 'Traceback' not in run.stderr
    assert 'Usage: a2a-scale' in run.stdout
    assert 'error' not in run.stderr


@pytest.mark.parametrize('command', ['check', 'demo'])
def test_an_unsupported_sdk_is_one_line_naming_what_changed(
    cli: typer.Typer, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from a2a_scale import sdk_compat
    from a2a_scale.errors import UnsupportedSDKError

    def unsupported() -> None:
        raise UnsupportedSDKError(
            [
                'a2a.server.agent_execution.active_task.ActiveTask is missing',
                'DefaultRequestHandler._write_cancel is missing',
            ],
            installed='1.2.0',
            supported='>=1.3.0,<2',
        )

    monkeypatch.setattr(sdk_compat, 'require', unsupported)
    result = runner.invoke(cli, [command])
    assert result.exit_code == 2, result.output
    assert result.stderr.count('\n') == 1, result.stderr
    assert 'a2a-sdk 1.2.0' in result.stderr
    assert 'ActiveTask is missing' in result.stderr
    assert 'pip install "a2a-sdk>=1.3.0,<2"' in result.stderr
