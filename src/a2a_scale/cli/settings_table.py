"""``a2a-scale backends``: installed backends, their settings and values."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from a2a_scale.cli.errors import one_line, redact
from a2a_scale.errors import ConfigurationError
from a2a_scale.plugins import available_backends
from a2a_scale.settings import ScaleSettings, describe_settings, user_values

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

console = Console(highlight=False)


def backends() -> None:
    """List installed backend plugins, their settings and the values set."""
    specs = available_backends()
    console.print('[bold]Core settings[/]')
    _print_settings(ScaleSettings)
    for name in sorted(specs):
        spec = specs[name]
        missing = spec.missing_requirements()
        if missing:
            driver = (
                f'[yellow]driver missing[/] ({", ".join(missing)}): '
                f'pip install "{spec.install or f"a2a-scale[{spec.extra or name}]"}"'
            )
        else:
            driver = '[green]driver installed[/]'
        console.print()
        console.print(f'[bold]{escape(name)}[/]  {escape(spec.description)}')
        console.print(f'  {driver}')
        _print_settings(spec.settings_model)


def _print_settings(model: type[BaseSettings]) -> None:
    try:
        values = user_values(model)
    except ConfigurationError as e:
        values = {}
        console.print(f'  [red]invalid:[/] {escape(redact(one_line(str(e))))}')
    table = Table(box=None, padding=(0, 2), show_edge=False)
    table.add_column('env var', style='cyan', no_wrap=True)
    table.add_column('default')
    if values:
        table.add_column('set to', style='green')
    table.add_column('description')
    for env_var, default, description in describe_settings(model):
        row = [env_var, escape(redact(default))]
        if values:
            row.append(escape(values.get(env_var, '')))
        table.add_row(*row, escape(description))
    console.print(table)
