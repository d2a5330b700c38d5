"""``a2a-scale demo``: the customer-service story across replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from a2a_scale import sdk_compat
from a2a_scale.api import load_backend
from a2a_scale.cli.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    describe,
    fail,
    state,
    unknown_backend,
)
from a2a_scale.cli.narrator import QuietNarrator, RichNarrator
from a2a_scale.errors import BackendNotFoundError
from a2a_scale.settings import ScaleSettings, load_settings

console = Console(highlight=False)


def demo(
    backend: Annotated[
        str | None,
        typer.Option(
            metavar='NAME', help='Backend to run on; defaults to A2A_SCALE_BACKEND.'
        ),
    ] = None,
    replicas: Annotated[
        int, typer.Option(min=2, max=26, help='How many replicas to start.')
    ] = 3,
    quiet: Annotated[
        bool, typer.Option('--quiet', '-q', help='Print only the outcome.')
    ] = False,
    keep: Annotated[
        bool,
        typer.Option(
            '--keep',
            help="Keep the demo's namespace (tasks, keys, table, topic) "
            'instead of deleting it at the end.',
        ),
    ] = False,
) -> None:
    """Run the customer-service demo across replicas and check every step.

    The demo runs in a fresh namespace of its own and deletes it at the end
    (unless --keep).
    """
    from a2a_scale.demo.runner import DemoFailure, run_demo  # noqa: PLC0415

    sdk_compat.require()  # an unsupported a2a-sdk fails here, naming what changed
    name = backend or load_settings(ScaleSettings).backend
    try:
        load_backend(name)  # no I/O: a bad setting fails here, naming it
    except BackendNotFoundError as e:
        fail(unknown_backend(e, option='--backend' if backend else None), EXIT_CONFIG)
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
        result = asyncio.run(
            run_demo(narrator, backend=name, replicas=replicas, keep=keep)
        )
    except DemoFailure as e:
        narrator.close()
        cleaned = f'; {narrator.cleaned}' if narrator.cleaned else ''
        fail(f'demo FAILED: {e}{cleaned}', EXIT_FAILED)
    except Exception as e:
        narrator.close()
        if not narrator.cleaned or state.debug:
            raise
        message, code = describe(e)
        fail(f'{message}; {narrator.cleaned}', code)
    finally:
        narrator.close()
    elapsed = time.monotonic() - started
    if not quiet:
        console.print()
    cleaned = f'; {escape(narrator.cleaned)}' if narrator.cleaned else ''
    console.print(
        f'[bold green]OK[/] {narrator.checks} checks passed: {replicas} replicas on '
        f'{escape(result.backend)} ({result.mode}), {elapsed:.1f}s{cleaned}',
        soft_wrap=True,
    )
