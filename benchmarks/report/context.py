"""The paragraph that says what was run, where and how noisy it was."""

from __future__ import annotations

from typing import Any

from benchmarks.report.aggregate import Key, Row
from benchmarks.report.format import DASH, num

WIDE = 1.5
"""A max/min ratio above which a metric's spread is called wide."""


def wide_spreads(rows: dict[Key, Row]) -> list[str]:
    """``scenario/target/case metric`` whose max/min ratio exceeds `WIDE`."""
    found = []
    for key, row in rows.items():
        for metric, stats in row.metrics.items():
            if metric in ('max_ms', 'connections') or ' ' in metric:
                continue
            low, high = stats['min'], stats['max']
            if row.runs > 1 and low > 0 and high / low > WIDE:
                found.append(f'{"/".join(key)} {metric}')
    return found


def context(meta: dict[str, Any], rows: dict[Key, Row]) -> str:
    """Markdown: run parameters, machine, load and notes."""
    machine = meta['machine']
    load = meta['load']
    packages = ', '.join(f'{k} {v}' for k, v in machine['packages'].items())
    lines = [
        f'Run of {meta["started"]} ({meta["size"]["name"]} sizes, '
        f'{meta["runs"]} run{"s" if meta["runs"] > 1 else ""} of every step, '
        f'{num(meta["wall_seconds"] / 60)} min). Cells show the median over '
        f'the runs and, in small type, the min{DASH}max spread; ratios are ratios '
        'of medians.',
        '',
        f'- Machine: {machine["cpu"]}, {machine["logical_cpus"]} logical CPUs, '
        f'{machine["memory_gb"]} GB RAM; {machine["os"]}; Python '
        f'{machine["python"]}.',
        f'- Services on loopback: Redis {machine["redis_server"] or "absent"}, '
        f'PostgreSQL {machine["postgresql"] or "absent"}.',
        f'- Packages: {packages}.',
        f'- Load average (1 min) at start {num(load["start"]["1m"])}, at end '
        f'{num(load["end"]["1m"])}; other work shared the machine.',
        f'- SQL baseline in the ratios: `{meta["baseline"]}`.',
    ]
    lines += [f'- {note}' for note in meta.get('notes', [])]
    wide = wide_spreads(rows)
    if wide:
        shown = ', '.join(f'`{w}`' for w in wide[:8])
        more = f' and {len(wide) - 8} more' if len(wide) > 8 else ''
        lines.append(
            f'- Wide spread (max/min > {WIDE}) in {len(wide)} metric(s), a sign '
            f'of background load: {shown}{more}.'
        )
    return '\n'.join(lines)
