"""The ``a2a-scale`` typer application.

Plugins can contribute commands through the ``register_commands(app)`` hook,
for example ``a2a-scale aws reap``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from typing import Annotated, NoReturn

import pluggy
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from a2a_scale.api import load_backend
from a2a_scale.errors import BackendNotFoundError, ConfigurationError
from a2a_scale.plugins import available_backends, get_plugin_manager
from a2a_scale.settings import ScaleSettings, describe_settings, load_settings

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_CONFIG = 2
_URL_CREDENTIALS = re.compile(r'(?P<scheme>[a-z][a-z0-9+.-]*://)[^@/\s]+@', re.I)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def redact(text: str) -> str:
    """Hides the user and password of any URL in `text`."""
    return _URL_CREDENTIALS.sub(r'\g<scheme>***@', text)


def fail(message: str, code: int) -> NoReturn:
    """Prints a one-line error to stderr and exits with `code`."""
    err_console.print(f'[bold red]error:[/] {escape(redact(message))}', soft_wrap=True)
    raise typer.Exit(code)


def backends() -> None:
    """List installed backend plugins and their settings."""
    try:
        specs = available_backends()
    except ConfigurationError as e:
        fail(str(e), EXIT_CONFIG)
    console.print('[bold]Core settings[/]')
    console.print(_settings_table(ScaleSettings))
    for name in sorted(specs):
        spec = specs[name]
        missing = spec.missing_requirements()
        if missing:
            driver = (
                f'[yellow]driver missing[/] ({", ".join(missing)}): '
                f'pip install "a2a-scale[{spec.extra or spec.name}]"'
            )
        else:
            driver = '[green]driver installed[/]'
        console.print()
        console.print(f'[bold]{escape(name)}[/]  {escape(spec.description)}')
        console.print(f'  {driver}')
        console.print(_settings_table(spec.settings_model))


def _settings_table(model: type) -> Table:
    table = Table(box=None, padding=(0, 2), show_edge=False)
    table.add_column('env var', style='cyan', no_wrap=True)
    table.add_column('default')
    table.add_column('description')
    for env_var, default, description in describe_settings(model):
        table.add_row(env_var, escape(redact(default)), escape(description))
    return table


def check(
    backend: Annotated[
        str | None,
        typer.Option(help='Backend to check; defaults to A2A_SCALE_BACKEND.'),
    ] = None,
) -> None:
    """Load the configured backend, connect, and report each component."""
    try:
        loaded = load_backend(backend)
    except (ConfigurationError, BackendNotFoundError, ImportError) as e:
        fail(str(e), EXIT_CONFIG)

    async def probe() -> list:
        async with loaded:
            return await loaded.health()

    try:
        reports = asyncio.run(probe())
    except Exception as e:
        fail(
            f'the {loaded.name!r} backend could not start: {type(e).__name__}: {e}',
            EXIT_FAILED,
        )
    console.print(
        f'backend {loaded.name} (namespace {loaded.settings.namespace}, '
        f'instance {loaded.instance_id})'
    )
    for report in reports:
        color = 'green' if report.ok else 'red'
        console.print(f'[{color}]{escape(redact(report.line()))}[/]')
    if not reports or not all(r.ok for r in reports):
        raise typer.Exit(EXIT_FAILED)


def demo(
    backend: Annotated[
        str | None,
        typer.Option(help='Backend to run on; defaults to A2A_SCALE_BACKEND.'),
    ] = None,
    replicas: Annotated[
        int, typer.Option(min=2, max=26, help='How many replicas to start.')
    ] = 3,
    quiet: Annotated[
        bool, typer.Option('--quiet', '-q', help='Print only the outcome.')
    ] = False,
) -> None:
    """Run the customer-service demo across replicas and check every step."""
    from a2a_scale.cli.narrator import QuietNarrator, RichNarrator  # noqa: PLC0415
    from a2a_scale.demo.runner import DemoFailure, run_demo  # noqa: PLC0415

    try:
        name = backend or load_settings(ScaleSettings).backend
    except ConfigurationError as e:
        fail(str(e), EXIT_CONFIG)
    # The SDK logs expected races of a cancel as warnings; keep the story clean.
    logging.getLogger('a2a').setLevel(logging.ERROR)
    narrator = QuietNarrator() if quiet else RichNarrator(console)
    if not quiet:
        console.print(
            f'[bold]a2a-scale demo[/]: customer service on {replicas} replicas, '
            f'backend [cyan]{escape(name)}[/]'
        )
    started = time.monotonic()
    try:
        result = asyncio.run(run_demo(narrator, backend=name, replicas=replicas))
    except DemoFailure as e:
        narrator.close()
        fail(f'demo FAILED: {e}', EXIT_FAILED)
    except (ConfigurationError, BackendNotFoundError, ImportError) as e:
        narrator.close()
        fail(str(e), EXIT_CONFIG)
    finally:
        narrator.close()
    elapsed = time.monotonic() - started
    if not quiet:
        console.print()
    console.print(
        f'[bold green]OK[/] {narrator.checks} checks passed: {replicas} replicas on '
        f'{escape(result.backend)} ({result.mode}), {elapsed:.1f}s'
    )


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
        help='Run A2A SDK servers as many replicas over shared backends.',
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    cli.command()(demo)
    cli.command()(backends)
    cli.command()(check)
    if plugins:
        try:
            pm = plugin_manager or get_plugin_manager()
            pm.hook.register_commands(app=cli)
        except ConfigurationError as e:
            err_console.print(f'[yellow]warning:[/] plugin commands not loaded: {e}')
    return cli


app = build_app(plugins=False)


def main() -> None:
    """Entry point of the ``a2a-scale`` console script."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    build_app()()
