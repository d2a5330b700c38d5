"""The markdown report: targets first, then one table per scenario."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from benchmarks.adapters.registry import AWS, BASELINES, FLOOR, REFERENCE, SCALE
from benchmarks.report.aggregate import Key, Row, aggregate, find, ratio
from benchmarks.report.format import (
    DASH,
    TIMES,
    cell,
    checks,
    num,
    table,
    times,
    verdict,
)
from benchmarks.report.targets import goals

NAMES = {
    'memory': 'memory',
    'redis-streams': 'redis streams',
    'redis-pubsub': 'redis pubsub',
    AWS: 'aws (moto)',
    'sql-postgres': 'SDK SQL PostgreSQL',
    'sql-sqlite': 'SDK SQL SQLite',
    FLOOR: 'floor (raw redis-py)',
    REFERENCE: 'SDK in-memory',
}
ORDER = (*SCALE, AWS, *BASELINES, FLOOR)
CPU_METRIC = 'cpu_ms_per_request_max'
"""The e2e CPU figure judged: the worst replica process's ms per request."""


def name(target: str) -> str:
    """The display name of a target."""
    return NAMES.get(target, target)


def _present(rows: dict[Key, Row], scenario: str) -> list[str]:
    found = {key[1] for key in rows if key[0] == scenario}
    return [t for t in (REFERENCE, *ORDER) if t in found]


def _cases(rows: dict[Key, Row], scenario: str) -> list[str]:
    return list(dict.fromkeys(key[2] for key in rows if key[0] == scenario))


def headline(rows: dict[Key, Row], meta: dict[str, Any]) -> str:
    """The project's performance targets against this run's medians."""
    return table(*headline_cells(rows, meta))


def headline_cells(
    rows: dict[Key, Row], meta: dict[str, Any]
) -> tuple[list[str], list[list[str]]]:
    """The header and cells of the `headline` table."""
    subscriptions = max(meta['size']['fanout_subscriptions'])
    columns = [t for t in (*BASELINES, FLOOR, *SCALE) if any(k[1] == t for k in rows)]
    header = ['What', 'Target', *(name(t) for t in columns), 'aws (counts)']
    lines = []
    for goal in goals(subscriptions):
        if not any(k[0] == goal.scenario for k in rows):
            continue
        floor_row = goal.value(rows, FLOOR)
        floor = floor_row.median(goal.metric) if floor_row else math.nan
        base_row = goal.value(rows, meta.get('baseline', 'sql-postgres'))
        base = base_row.median(goal.metric) if base_row else math.nan
        reference = goal.reference(rows)
        cells = []
        for target in [*columns, AWS]:
            if goal.scenario == 'aws' and target != AWS:
                cells.append(DASH)
                continue
            if goal.scenario != 'aws' and target == AWS:
                cells.append(DASH)
                continue
            if goal.only is not None and target in (FLOOR, *SCALE):
                if not goal.judges(target):
                    cells.append(DASH)
                    continue
            elif target in SCALE and not goal.judges(target):
                cells.append(DASH)
                continue
            row = goal.value(rows, target)
            text = cell(row, goal.metric)
            if row is None or target in (*BASELINES, FLOOR):
                cells.append(text)
                continue
            value = row.median(goal.metric)
            notes = []
            if goal.floor_factor is not None:
                notes.append(f'{times(ratio(value, floor))} floor')
            if goal.baseline_factor is not None:
                notes.append(f'{times(ratio(value, base))} SQL')
            if goal.reference_factor is not None:
                notes.append(f'{times(ratio(value, reference))} in-memory')
            notes.append(verdict(goal.verdict(value, floor, base, reference)))
            cells.append(f'{text}<br>{" ".join(notes)}')
        unit = f' ({goal.unit})' if goal.unit else ''
        lines.append([f'{goal.what}{unit}', goal.text, *cells])
    return header, lines


def store_table(rows: dict[Key, Row], baseline: str) -> str:
    """ops/s and latency of save + get, with ratios to the floor and SQL."""
    cases = _cases(rows, 'store')
    header = ['Target']
    for case in cases:
        n = case.removeprefix('c')
        header += [f'{n} cor. ops/s', f'{TIMES} floor', f'{TIMES} SQL', 'p50 / p99 ms']
    lines = []
    for target in _present(rows, 'store'):
        line = [name(target)]
        for case in cases:
            row = find(rows, 'store', target, case)
            value = row.median('ops_per_s') if row else math.nan
            floor = find(rows, 'store', FLOOR, case)
            base = find(rows, 'store', baseline, case)
            line += [
                cell(rows.get(('store', target, case)), 'ops_per_s'),
                times(ratio(value, floor.median('ops_per_s') if floor else math.nan)),
                times(ratio(value, base.median('ops_per_s') if base else math.nan)),
                f'{num(row.median("p50_ms"))} / {num(row.median("p99_ms"))}'
                if row
                else DASH,
            ]
        lines.append(line)
    return table(header, lines)


def latency_table(rows: dict[Key, Row], baseline: str) -> str:
    """Cross-replica delivery percentiles, ratios and correctness counts."""
    floor = find(rows, 'latency', FLOOR, 'cross-replica')
    base = find(rows, 'latency', baseline, 'cross-replica')
    header = [
        'Target',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'max ms',
        f'p50 / p99 {TIMES} floor',
        'SQL p50 ÷ p50',
        'lost / dup / order',
        'reader',
    ]
    lines = []
    for target in _present(rows, 'latency'):
        row = rows[('latency', target, 'cross-replica')]
        good = row if row.runs else None
        p50 = good.median('p50_ms') if good else math.nan
        p99 = good.median('p99_ms') if good else math.nan
        f50 = ratio(p50, floor.median('p50_ms')) if floor else math.nan
        f99 = ratio(p99, floor.median('p99_ms')) if floor else math.nan
        lines.append(
            [
                name(target),
                cell(row, 'p50_ms'),
                cell(row, 'p90_ms'),
                cell(row, 'p99_ms'),
                cell(row, 'max_ms'),
                f'{times(f50)} / {times(f99)}',
                times(ratio(base.median('p50_ms'), p50)) if base else DASH,
                checks(good),
                str(row.info.get('reader', DASH)),
            ]
        )
    return table(header, lines)


def fanout_table(rows: dict[Key, Row]) -> str:
    """Deliveries/s, p99, reader RSS, connections and idle CPU per case."""
    header = [
        'Case',
        'Target',
        'deliveries/s',
        'p99 ms',
        'reader RSS MB',
        'connections',
        'idle CPU %',
        'lost / dup / order',
    ]
    lines = []
    for case in _cases(rows, 'fanout'):
        layout, _, n = case.partition('-')
        where = 'one task' if layout == 'one' or n == '1' else 'distinct tasks'
        label = f'{int(n):,} on {where}'
        for target in _present(rows, 'fanout'):
            row = rows.get(('fanout', target, case))
            if row is None:
                continue
            lines.append(
                [
                    label,
                    name(target),
                    cell(row, 'deliveries_per_s'),
                    cell(row, 'p99_ms'),
                    cell(row, 'rss_mb'),
                    cell(row, 'connections'),
                    cell(row, 'idle_cpu_percent'),
                    checks(row if row.runs else None),
                ]
            )
            label = ''
    return table(header, lines)


def e2e_table(rows: dict[Key, Row]) -> str:
    """Streaming requests/s and CPU per request against one SDK replica."""
    reference = find(rows, 'e2e', REFERENCE, '1-replica')
    header = [
        'Target',
        'replicas',
        'requests/s',
        f'{TIMES} 1 SDK replica',
        'p50 / p99 ms',
        'CPU ms/request, worst replica',
        f'{TIMES} SDK replica',
        'Redis CPU ms/request',
        'Redis commands/request',
    ]
    lines = []
    for target in _present(rows, 'e2e'):
        for case in _cases(rows, 'e2e'):
            row = rows.get(('e2e', target, case))
            if row is None:
                continue
            good = row if row.runs else None
            value = good.median('requests_per_s') if good else math.nan
            cpu = good.median(CPU_METRIC) if good else math.nan
            lines.append(
                [
                    name(target),
                    case.split('-')[0],
                    cell(row, 'requests_per_s'),
                    times(
                        ratio(value, reference.median('requests_per_s'))
                        if reference
                        else math.nan
                    ),
                    f'{num(good.median("p50_ms"))} / {num(good.median("p99_ms"))}'
                    if good
                    else DASH,
                    cell(row, CPU_METRIC),
                    times(
                        ratio(cpu, reference.median(CPU_METRIC))
                        if reference
                        else math.nan
                    ),
                    cell(row, 'redis_cpu_ms_per_request'),
                    cell(row, 'redis_commands_per_request'),
                ]
            )
    text = table(header, lines)
    if any(t.startswith('redis') for t in _present(rows, 'e2e')):
        text += (
            '\n\nCPU per request is process CPU time over the measured requests, '
            'divided by the requests each replica process served. Redis figures '
            'are `INFO cpu` and `INFO commandstats` deltas of the whole server: '
            'other clients of a shared Redis count too.'
        )
    return text


def redis_table(rows: dict[Key, Row]) -> str:
    """Redis commands (and scripts) per operation, scenario by scenario."""
    columns = (
        ('store', 'redis_commands_per_op', 'redis_scripts_per_op', 'per save + get'),
        (
            'latency',
            'redis_commands_per_event',
            'redis_scripts_per_event',
            'per delivered event',
        ),
        (
            'e2e',
            'redis_commands_per_request',
            'redis_scripts_per_request',
            'per streamed request',
        ),
    )
    header = ['Scenario', 'Case', 'Target', 'commands', 'of which EVAL/EVALSHA']
    lines = []
    for scenario, commands, scripts, label in columns:
        for case in _cases(rows, scenario):
            for target in _present(rows, scenario):
                row = rows.get((scenario, target, case))
                if row is None or commands not in row.metrics:
                    continue
                lines.append(
                    [
                        f'{scenario} ({label})',
                        case,
                        name(target),
                        cell(row, commands),
                        cell(row, scripts),
                    ]
                )
    return table(header, lines) if lines else ''


def aws_table(rows: dict[Key, Row]) -> str:
    """API calls per event, by replica and call type."""
    row = rows.get(('aws', AWS, 'calls'))
    if row is None:
        return ''
    if not row.runs:
        return f'**FAILED**: {"; ".join(row.failures)}'
    calls = sorted(
        {m.split(' ', 1)[1] for m in row.metrics if ' ' in m},
        key=lambda c: (c.split('.')[0], c),
    )
    lines = [
        [f'`{c}`', cell(row, f'writer {c}'), cell(row, f'reader {c}')] for c in calls
    ]
    rate = cell(row, 'events_per_s', 'events/s')
    return (
        f'The writer reached {rate} against moto (its speed, not '
        "AWS's, sets how fast doorbells arrive).\n\n"
        + table(['API call per event', 'writer replica', 'reader replica'], lines)
    )


def failures(rows: dict[Key, Row]) -> str:
    """A list of every failed step, or an empty string."""
    items = [
        f'- `{"/".join(key)}`: {message}'
        for key, row in rows.items()
        for message in row.failures
    ]
    return '\n'.join(items)


def render(data: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The whole markdown report of a results file.

    Args:
        data: The results (``meta`` and ``records``).
        images: Plot titles mapped to paths relative to the markdown file.
    """
    from benchmarks.report.context import context

    rows = aggregate(data['records'])
    meta = data['meta']
    baseline = meta['baseline']
    parts = [context(meta, rows), '### Against the targets']
    parts.append(headline(rows, meta))
    sections: tuple[tuple[str, str, Callable[[], str]], ...] = (
        (
            'store',
            '### Store: save (CAS + event) + get',
            lambda: store_table(rows, baseline),
        ),
        (
            'latency',
            '### Cross-replica delivery latency',
            lambda: latency_table(rows, baseline),
        ),
        ('fanout', '### Fan-out on one reader replica', lambda: fanout_table(rows)),
        (
            'e2e',
            '### End to end: streaming requests over HTTP',
            lambda: e2e_table(rows),
        ),
        ('aws', '### AWS API calls per event (moto)', lambda: aws_table(rows)),
    )
    for scenario, title, render_table in sections:
        if any(k[0] == scenario for k in rows):
            parts += [title, render_table()]
    commands = redis_table(rows)
    if commands:
        parts += [
            '### Redis commands per operation (`INFO commandstats` of the whole '
            'server; commands run inside scripts count too)',
            commands,
        ]
    for title, path in (images or {}).items():
        parts.append(f'![{title}]({path})')
    failed = failures(rows)
    if failed:
        parts += ['### Failed steps', failed]
    return '\n\n'.join(parts) + '\n'
