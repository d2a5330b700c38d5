"""``a2a-scale check``: connect to the backend and report each component."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from a2a_scale import sdk_compat
from a2a_scale.api import load_backend
from a2a_scale.cli.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    err_console,
    fail,
    redact,
    unknown_backend,
)
from a2a_scale.errors import BackendNotFoundError
from a2a_scale.health import COMPONENTS

if TYPE_CHECKING:
    from a2a_scale.backend import Backend
    from a2a_scale.health import ComponentHealth

TIMEOUT_ENV = 'A2A_SCALE_CHECK_TIMEOUT'
DEFAULT_TIMEOUT = 5.0

console = Console(highlight=False)


def load_for_cli(name: str | None) -> Backend:
    """`load_backend`; an unknown name given by ``--backend`` blames the option."""
    try:
        return load_backend(name)
    except BackendNotFoundError as e:
        fail(unknown_backend(e, option='--backend' if name else None), EXIT_CONFIG)


@contextlib.contextmanager
def progress(text: str) -> Iterator[None]:
    """A spinner on stderr while the block runs, on a terminal only."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(escape(text)):
        yield


async def probe(backend: Backend, timeout: float) -> list[ComponentHealth]:  # noqa: ASYNC109
    """Starts `backend`, asks its health and stops it, all within `timeout` s.

    Raises:
        TimeoutError: If it takes longer, naming the backend, its address and
            the setting that bounds the wait.
    """
    try:
        async with asyncio.timeout(timeout) as deadline:
            async with backend:
                return await backend.health()
    except TimeoutError:
        if not deadline.expired():
            raise
        at = f' at {backend.address}' if backend.address else ''
        raise TimeoutError(
            f'the {backend.name!r} backend{at} did not answer within {timeout:g} s '
            f'(--timeout or {TIMEOUT_ENV})'
        ) from None


def check(
    backend: Annotated[
        str | None,
        typer.Option(
            metavar='NAME', help='Backend to check; defaults to A2A_SCALE_BACKEND.'
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            envvar=TIMEOUT_ENV,
            metavar='SECONDS',
            help='Give up when the backend has not answered within this time.',
        ),
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Connect to the backend and report its store, stream, push store and replicas."""
    sdk_compat.require()  # an unsupported a2a-sdk fails here, naming what changed
    loaded = load_for_cli(backend)
    at = f' at {loaded.address}' if loaded.address else ''
    with progress(f'Connecting to the {loaded.name} backend{at}...'):
        reports = asyncio.run(probe(loaded, timeout))
    console.print(
        f'backend {escape(loaded.name)}{escape(redact(at))} '
        f'(namespace {loaded.settings.namespace}, instance {loaded.instance_id}, '
        f'a2a-sdk {sdk_compat.installed_sdk_version()})',
        soft_wrap=True,
    )
    for report in reports:
        color = 'green' if report.ok else 'red'
        console.print(f'[{color}]{escape(redact(report.line()))}[/]', soft_wrap=True)
    names = [r.component for r in reports]
    if names != list(COMPONENTS):
        err_console.print(
            f'[yellow]warning:[/] the {escape(loaded.name)} backend reports '
            f'{", ".join(names) or "nothing"}, not {", ".join(COMPONENTS)}'
        )
    if not reports or not all(r.ok for r in reports):
        raise typer.Exit(EXIT_FAILED)
