"""``python -m benchmarks``: run the side-by-side benchmarks, render reports."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from benchmarks import machine
from benchmarks.adapters.registry import (
    ALL_TARGETS,
    BASELINES,
    POSTGRES_DSN,
    unavailable,
)
from benchmarks.report.format import num
from benchmarks.runner import SCENARIOS, Outcome, Step, plan, run_all
from benchmarks.sizes import SIZES, Size

EXIT_FAILED = 1
EXIT_CONFIG = 2
RAW = Path(__file__).resolve().parent / 'results' / 'raw'

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help='Side-by-side benchmarks of a2a-scale backends, the SDK SQL mode '
    'and a raw redis-py floor.',
)
console = Console(highlight=False)


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    """Prints an error and exits with `code`."""
    console.print(f'[bold red]error:[/] {escape(message)}', soft_wrap=True)
    raise typer.Exit(code)


def _overrides(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep:
            fail(f'--set expects field=value, got {pair!r}')
        result[key.strip()] = value.strip()
    return result


def choose_targets(
    requested: list[str], *, smoke: bool
) -> tuple[list[str], list[str], str]:
    """The targets to run, notes for the report, and the SQL baseline.

    Without ``--target`` every target runs. PostgreSQL is required for the
    full run; the smoke run falls back to SQLite for the baseline when it is
    unreachable, and says so. Any other missing service is an error.
    """
    notes: list[str] = []
    unknown = sorted(set(requested) - set(ALL_TARGETS))
    if unknown:
        fail(f'unknown target(s) {unknown}; known: {", ".join(ALL_TARGETS)}')
    targets = list(requested) or list(ALL_TARGETS)
    if not requested and smoke:
        # One SQL baseline is enough to keep the smoke run short.
        postgres_missing = unavailable('sql-postgres')
        targets.remove('sql-postgres' if postgres_missing else 'sql-sqlite')
        if postgres_missing:
            targets.remove('postgres')
            notes.append(
                f'{postgres_missing}: the smoke run measures the SDK SQL '
                'baseline on SQLite instead, and skips the postgres backend.'
            )
    for target in targets:
        reason = unavailable(target)
        if reason is None:
            continue
        if target == 'sql-postgres':
            fail(
                f'the SDK SQL baseline needs PostgreSQL: {reason} '
                f'(set A2A_SCALE_BENCH_POSTGRES, now {POSTGRES_DSN!r}); '
                'use --smoke to fall back to SQLite'
            )
        fail(f'target {target!r} cannot run: {reason}')
    baseline = next((t for t in BASELINES if t in targets), '')
    return targets, notes, baseline


def _summary(outcome: Outcome) -> str:
    """The one-line headline of a finished step."""
    result = outcome.result or {}
    metrics = result.get('metrics', {})
    step = outcome.step
    if step.scenario == 'store':
        return f'{num(metrics["ops_per_s"])} ops/s, p99 {num(metrics["p99_ms"])} ms'
    if step.scenario == 'latency':
        return (
            f'p50 {num(metrics["p50_ms"])} ms, p99 {num(metrics["p99_ms"])} ms, '
            f'{result["checks"]["delivered"]}/{result["checks"]["expected"]} events'
        )
    if step.scenario == 'fanout':
        return (
            f'{num(metrics["deliveries_per_s"])} deliveries/s, idle CPU '
            f'{num(metrics["idle_cpu_percent"])}%, '
            f'{metrics["connections"] if metrics["connections"] is not None else "-"}'
            ' conn.'
        )
    if step.scenario == 'e2e':
        cpu = metrics.get('cpu_ms_per_request_max')
        redis = metrics.get('redis_commands_per_request')
        return (
            f'{num(metrics["requests_per_s"])} requests/s'
            + (f', CPU {num(cpu)} ms/request (worst replica)' if cpu else '')
            + (f', {num(redis)} Redis commands/request' if redis else '')
        )
    return (
        f'{num(metrics["dynamodb_transactions_per_event"])} transaction + '
        f'{num(metrics["sns_publish_per_event"])} publish per event, SQS '
        f'{num(metrics["sqs_per_event_per_replica"])} per event per replica'
    )


async def _run(
    steps: list[Step], size: Size, runs: int, *, fail_fast: bool
) -> list[Outcome]:
    columns = (
        SpinnerColumn(),
        TextColumn('{task.description}'),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task('starting', total=len(steps) * runs)

        def on_start(run: int, step: Step) -> None:
            progress.update(bar, description=f'run {run}/{runs} {step.label}')

        def on_done(outcome: Outcome) -> None:
            progress.advance(bar)
            where = f'run {outcome.run}/{runs} {outcome.step.label}'
            took = f'[dim]({outcome.seconds:.1f} s)[/]'
            if outcome.failure:
                progress.console.print(
                    f'[bold red]FAIL[/] {where} {took}\n  '
                    f'[red]{escape(outcome.failure)}[/]',
                    soft_wrap=True,
                )
            else:
                progress.console.print(
                    f'[green]ok[/]   {where}: {escape(_summary(outcome))} {took}',
                    soft_wrap=True,
                )

        return await run_all(
            steps, size, runs, on_start=on_start, on_done=on_done, fail_fast=fail_fast
        )


@app.command()
def run(
    smoke: Annotated[
        bool, typer.Option(help='Tiny sizes, one run, SQLite if no PostgreSQL (CI).')
    ] = False,
    runs: Annotated[
        int | None, typer.Option(min=1, help='Repetitions (default 3, smoke 1).')
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            '--target', '-t', help=f'Repeatable; of {", ".join(ALL_TARGETS)}.'
        ),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            '--scenario', '-s', help=f'Repeatable; of {", ".join(SCENARIOS)}.'
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option('--set', help='Override a size field, e.g. store_seconds=1.'),
    ] = None,
    out: Annotated[
        Path, typer.Option(help='Directory of the JSON, markdown and plots.')
    ] = RAW,
    docs: Annotated[
        bool,
        typer.Option(help='Also update docs/performance.md and its plots.'),
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option(help='Stop at the first failed step.')
    ] = False,
) -> None:
    """Run the scenarios on every target; exit 1 if any check failed."""
    logging.basicConfig(level=logging.WARNING)
    scenarios = list(scenario or SCENARIOS)
    bad = sorted(set(scenarios) - set(SCENARIOS))
    if bad:
        fail(f'unknown scenario(s) {bad}; known: {", ".join(SCENARIOS)}')
    try:
        size = SIZES['smoke' if smoke else 'full'].with_overrides(
            _overrides(set_ or [])
        )
    except ValueError as e:
        fail(str(e))
    runs = runs or (1 if smoke else 3)
    targets, notes, baseline = choose_targets(list(target or []), smoke=smoke)
    if smoke:
        notes.append(
            'Smoke sizes: this run checks the harness; its numbers and verdicts '
            'mean nothing.'
        )
    for note in notes:
        console.print(f'[yellow]note:[/] {escape(note)}')
    # SQLite runs every scenario when it is the only SQL baseline.
    named = bool(target) or 'sql-postgres' not in targets
    steps = plan(scenarios, targets, size, named=named)
    if not steps:
        fail('nothing to run for these targets and scenarios')
    console.print(
        f'[bold]{len(steps)} steps x {runs} run(s)[/], {size.name} sizes, '
        f'targets: {", ".join(targets)}'
    )
    started = time.time()
    meta: dict[str, Any] = {
        'started': datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'size': dict(vars(size)),
        'runs': runs,
        'targets': targets,
        'scenarios': scenarios,
        'baseline': baseline,
        'notes': notes,
        'machine': asyncio.run(machine.describe()),
        'load': {'start': machine.load()},
    }
    outcomes = asyncio.run(_run(steps, size, runs, fail_fast=fail_fast))
    meta['load']['end'] = machine.load()
    meta['wall_seconds'] = time.time() - started
    data = {'meta': meta, 'records': [o.record() for o in outcomes]}
    _write(data, out, docs=docs)
    failed = [o for o in outcomes if o.failure]
    console.print(f'wall time {meta["wall_seconds"]:.0f} s')
    if failed:
        console.print(
            f'[bold red]{len(failed)} step(s) failed[/]: '
            + ', '.join(f'{o.step.label} (run {o.run})' for o in failed)
        )
        raise typer.Exit(EXIT_FAILED)


def _write(data: dict[str, Any], out: Path, *, docs: bool) -> None:
    from benchmarks.report.aggregate import aggregate
    from benchmarks.report.markdown import headline_cells
    from benchmarks.report.page import update_docs, write_outputs

    stamp = datetime.now(UTC).strftime('%Y%m%dT%H%M%S')
    json_path, md_path = write_outputs(
        data, out / f'{stamp}-{data["meta"]["size"]["name"].rstrip("*")}'
    )
    console.print(f'results: {json_path}\nreport:  {md_path}')
    if docs:
        console.print(f'docs:    {update_docs(data)}')
    rows = aggregate(data['records'])
    header, lines = headline_cells(rows, data['meta'])
    console.print('[bold]Against DESIGN.md section 4[/] (medians):')
    for line in lines:
        what, goal = line[0], line[1]
        for column, value in zip(header[2:], line[2:], strict=True):
            if '<br>' not in value:  # baselines, the floor and empty cells
                continue
            shown, _, notes = _plain(value).partition('\n')
            *ratios, mark = notes.split()
            extra = f', {" ".join(ratios)}' if ratios else ''
            console.print(
                f'  {mark} {column}: {what} = {shown}{extra} (target {goal})',
                soft_wrap=True,
            )


def _plain(text: str) -> str:
    """A markdown cell without its HTML tags, for the terminal."""
    for tag in ('<small>', '</small>', '**'):
        text = text.replace(tag, '')
    return text.replace('<br>', '\n')


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help='A results JSON file.')],
    out: Annotated[
        Path, typer.Option(help='Directory of the markdown and plots.')
    ] = RAW,
    docs: Annotated[
        bool, typer.Option(help='Update docs/performance.md and its plots.')
    ] = False,
) -> None:
    """Re-render the markdown and plots of a results file."""
    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError) as e:
        fail(f'cannot read {results}: {e}')
    _write(data, out, docs=docs)


@app.command()
def sizes() -> None:
    """Show the smoke and full sizes (change any with ``run --set``)."""
    table = Table('field', *SIZES)
    for field in vars(SIZES['full']):
        if field != 'name':
            table.add_row(field, *(str(getattr(s, field)) for s in SIZES.values()))
    console.print(table)


@app.command()
def targets() -> None:
    """List the targets and whether they can run here."""
    table = Table('target', 'available')
    for name in ALL_TARGETS:
        reason = unavailable(name)
        table.add_row(name, '[green]yes[/]' if reason is None else f'[red]{reason}[/]')
    console.print(table)


def main() -> None:
    """Runs the typer application."""
    app()
