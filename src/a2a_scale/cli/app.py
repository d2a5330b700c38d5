"""The ``a2a-scale`` typer application.

Plugins can contribute commands through the ``register_commands(app)`` hook,
for example ``a2a-scale aws reap``. Every command, a plugin's too, reports a
user's mistake as one line with a documented exit code (see
`a2a_scale.cli.errors`).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import pluggy
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

import a2a_scale
from a2a_scale.cli.check import check
from a2a_scale.cli.demo import demo
from a2a_scale.cli.errors import (
    DEBUG_ENV,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    describe,
    err_console,
    fail,
    guarded,
    one_line,
    redact,
    state,
)
from a2a_scale.cli.ops import add_ops_commands
from a2a_scale.cli.serve import serve
from a2a_scale.cli.settings_table import backends
from a2a_scale.errors import ConfigurationError
from a2a_scale.plugins import get_plugin_manager

logger = logging.getLogger(__name__)

console = Console(highlight=False)


def _hide_flag_types(params: list[Any]) -> list[Any]:
    """Flags take no value: show no ``<bool>`` type for them in ``--help``."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ''
    return params


class FlagCommand(TyperCommand):
    """A command whose help shows no value type for flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The command's parameters, flags without a value type."""
        return _hide_flag_types(super().get_params(ctx))


class FlagGroup(TyperGroup):
    """A command group whose help shows no value type for flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The group's parameters, flags without a value type."""
        return _hide_flag_types(super().get_params(ctx))


def version_text() -> str:
    """``a2a-scale X (a2a-sdk Y, Python Z)``."""
    try:
        sdk = version('a2a-sdk')
    except PackageNotFoundError:  # pragma: no cover - a2a-sdk is a dependency
        sdk = 'not installed'
    return (
        f'a2a-scale {a2a_scale.__version__} '
        f'(a2a-sdk {sdk}, Python {platform.python_version()})'
    )


def _print_version(value: bool) -> None:
    if value:
        console.print(version_text())
        raise typer.Exit


def root(
    show_version: Annotated[
        bool,
        typer.Option(
            '--version',
            callback=_print_version,
            is_eager=True,
            help='Print the versions of a2a-scale, a2a-sdk and Python, and exit.',
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            '--debug',
            envvar=DEBUG_ENV,
            help='Show the traceback of an unexpected error instead of one line.',
        ),
    ] = False,
) -> None:
    """Run A2A SDK servers as many replicas over shared backends."""
    state.debug = debug


def _adopt_plugin_commands(cli: typer.Typer) -> None:
    """Gives plugin commands the same error handling and help style."""
    for group in cli.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        if sub.info.cls in (None, TyperGroup) or isinstance(
            sub.info.cls, DefaultPlaceholder
        ):
            sub.info.cls = FlagGroup
        for command in sub.registered_commands:
            if command.cls in (None, TyperCommand):
                command.cls = FlagCommand
            if command.callback is not None:
                command.callback = guarded(command.callback)
        _adopt_plugin_commands(sub)


def build_app(
    *, plugins: bool = True, plugin_manager: pluggy.PluginManager | None = None
) -> typer.Typer:
    """Builds the CLI; plugins may add commands through ``register_commands``.

    Args:
        plugins: Whether to let plugins add their commands.
        plugin_manager: The plugins to ask; defaults to the installed ones.
    """
    cli = typer.Typer(
        name='a2a-scale',
        cls=FlagGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    cli.callback()(root)
    cli.command(cls=FlagCommand)(guarded(demo))
    cli.command(cls=FlagCommand)(guarded(backends))
    cli.command(cls=FlagCommand)(guarded(check))
    cli.command(cls=FlagCommand)(guarded(serve))
    add_ops_commands(cli, command_cls=FlagCommand, group_cls=FlagGroup)
    if plugins:
        try:
            pm = plugin_manager or get_plugin_manager()
            pm.hook.register_commands(app=cli)
        except ConfigurationError as e:
            err_console.print(
                f'[yellow]warning:[/] plugin commands not loaded: {one_line(str(e))}'
            )
        _adopt_plugin_commands(cli)
    return cli


app = build_app(plugins=False)


def main() -> None:
    """Entry point of the ``a2a-scale`` console script."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if sys.argv[1:] == ['--version']:  # answer without loading the plugins
        console.print(version_text())
        return
    try:
        cli = build_app()
        code = cli(standalone_mode=False)
    except Exception as e:
        if hasattr(e, 'format_message') and hasattr(e, 'exit_code'):
            if not e.format_message():  # no arguments: show the help
                ctx = getattr(e, 'ctx', None)
                if ctx is not None:
                    console.print(ctx.get_help(), end='')
                sys.exit(int(e.exit_code))
            _exit(usage_error(e), int(e.exit_code))
        if '--debug' in sys.argv[1:]:
            raise
        message, exit_code = describe(e)
        _exit(message, exit_code)
    except KeyboardInterrupt:
        _exit('interrupted', EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def usage_error(error: Exception) -> str:
    """One line for a command-line usage error, naming the variable if any."""
    message = str(error.format_message()).rstrip('.')  # type: ignore[attr-defined]
    param = getattr(error, 'param', None)
    envvar = getattr(param, 'envvar', None)
    if (
        isinstance(envvar, str)
        and envvar not in message
        and os.environ.get(envvar) is not None
    ):
        message += f' (from {envvar})'
    ctx = getattr(error, 'ctx', None)
    if ctx is not None:
        message += f"; see '{ctx.command_path} --help'"
    return message


def _exit(message: str, code: int) -> NoReturn:
    err_console.print(f'error: {escape(redact(one_line(message)))}', soft_wrap=True)
    sys.exit(code)


__all__ = [
    'EXIT_CONFIG',
    'FlagCommand',
    'FlagGroup',
    'app',
    'build_app',
    'fail',
    'main',
    'redact',
    'version_text',
]
