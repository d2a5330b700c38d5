"""Number and cell formatting for the markdown tables."""

from __future__ import annotations

import math

from benchmarks.report.aggregate import Row

DASH = '\u2013'
TIMES = '\u00d7'
LE = '\u2264'
GE = '\u2265'


def num(value: float | None) -> str:
    """A number with about three significant digits, thousands separated."""
    if value is None or math.isnan(value):
        return DASH
    size = abs(value)
    if value == int(value) or size >= 1000:
        return f'{value:,.0f}'
    if size >= 100:
        return f'{value:.0f}'
    if size >= 10:
        return f'{value:.1f}'
    if size >= 1 or size == 0:
        return f'{value:.2f}'
    return f'{value:.3f}'


def times(value: float) -> str:
    """A ratio such as ``1.12x`` or ``560x`` (with a multiplication sign)."""
    if math.isnan(value):
        return DASH
    return f'{num(value)}{TIMES}'


def cell(row: Row | None, metric: str, unit: str = '', *, spread: bool = True) -> str:
    """``median unit`` with the ``(min-max)`` over runs, or why it is empty."""
    if row is None:
        return DASH
    if not row.runs:
        return f'**FAILED** ({row.failed})'
    stats = row.metrics.get(metric)
    if stats is None or math.isnan(stats['median']):
        return DASH
    text = num(stats['median']) + (f' {unit}' if unit else '')
    if spread and row.runs > 1 and stats['min'] != stats['max']:
        text += f' <small>({num(stats["min"])}{DASH}{num(stats["max"])})</small>'
    if row.failed:
        text += f' **+{row.failed} FAILED**'
    return text


def checks(row: Row | None) -> str:
    """``lost / duplicated / out of order`` summed over the runs."""
    if row is None or not row.checks:
        return DASH
    return ' / '.join(
        str(row.checks.get(k, 0)) for k in ('lost', 'duplicated', 'out_of_order')
    )


def verdict(ok: bool | None) -> str:
    """A mark for a goal: met, missed, or not judged."""
    if ok is None:
        return '?'
    return '✅' if ok else '❌'


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; the first column is left-aligned, others right."""
    align = [':--'] + ['--:'] * (len(header) - 1)
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '| ' + ' | '.join(align) + ' |',
    ]
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)
