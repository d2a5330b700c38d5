"""Renders the demo's story on a rich console."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

_SOURCES = {
    'live': ('live  ', 'green'),
    'replay': ('replay', 'cyan'),
    'missed': ('replay', 'yellow'),
}


class RichNarrator:
    """Prints the story as it happens, with a spinner while it waits."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.checks = 0
        self.cleaned = ''
        self._status: Status | None = None

    def _settle(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        """Stops the spinner, if one is running."""
        self._settle()

    def chapter(self, title: str) -> None:
        """Prints a rule with the chapter title."""
        self._settle()
        self.console.print()
        self.console.rule(f'[bold]{escape(title)}', align='left')

    def event(self, source: str, via: int, ran_on: int, text: str) -> None:
        """Prints one event, the replica that served it and where it ran."""
        self._settle()
        label, color = _SOURCES.get(source, (source, 'white'))
        where = f'via {via}' + (f', ran on {ran_on}' if ran_on else '')
        suffix = '  [dim](while disconnected)[/]' if source == 'missed' else ''
        self.console.print(
            f'  [{color}]{label}[/] [dim]{where:<17}[/] {escape(text)}{suffix}'
        )

    def note(self, text: str) -> None:
        """Prints a line of the story."""
        self._settle()
        self.console.print(f'  {escape(text)}')

    def check(self, text: str) -> None:
        """Prints a passed check."""
        self._settle()
        self.checks += 1
        self.console.print(f'  [bold green]✓[/] {escape(text)}')

    def waiting(self, text: str) -> None:
        """Shows a spinner until the next line is printed."""
        self._settle()
        self._status = self.console.status(escape(text))
        self._status.start()

    def finals(self, rows: list[tuple[str, str, str, int]]) -> None:
        """Prints the final states as a table."""
        self._settle()
        table = Table(box=None, padding=(0, 2))
        for column in (
            'replica',
            'request 1 (booking)',
            'request 2 (billing)',
            'listed',
        ):
            table.add_column(column)
        for number, (name, first, second, listed) in enumerate(rows, start=1):
            table.add_row(f'{number} ({name})', first, second, str(listed))
        self.console.print(table)

    def cleanup(self, text: str) -> None:
        """Keeps the cleanup line for the outcome line."""
        self._settle()
        self.cleaned = text


class QuietNarrator:
    """Prints nothing; the caller prints the outcome."""

    checks = 0
    cleaned = ''

    def close(self) -> None:
        """Does nothing."""

    def chapter(self, title: str) -> None:
        """Does nothing."""

    def event(self, source: str, via: int, ran_on: int, text: str) -> None:
        """Does nothing."""

    def note(self, text: str) -> None:
        """Does nothing."""

    def check(self, text: str) -> None:
        """Counts the check."""
        self.checks += 1

    def waiting(self, text: str) -> None:
        """Does nothing."""

    def finals(self, rows: list[tuple[str, str, str, int]]) -> None:
        """Does nothing."""

    def cleanup(self, text: str) -> None:
        """Keeps the cleanup line for the outcome line."""
        self.cleaned = text
