"""PNG plots: delivery latency distributions, fan-out, store throughput."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.report.aggregate import Key, Row, aggregate

COLORS = {
    'memory': '#7f7f7f',
    'redis-streams': '#d62728',
    'redis-pubsub': '#ff7f0e',
    'sql-postgres': '#1f77b4',
    'sql-sqlite': '#17becf',
    'floor': '#2ca02c',
}
FILES = {
    'latency': 'latency.png',
    'fanout': 'fanout.png',
    'store': 'store.png',
}
TITLES = {
    'latency': 'Cross-replica delivery latency (CDF, all runs pooled)',
    'fanout': 'Fan-out: deliveries/s and idle CPU vs subscriptions',
    'store': 'Store: save + get ops/s',
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def _label(target: str) -> str:
    from benchmarks.report.markdown import name

    return name(target)


def latency(records: list[dict[str, Any]], path: Path) -> bool:
    """The empirical CDF of every delivery latency sample, per target."""
    samples: dict[str, list[float]] = {}
    for record in records:
        if record['scenario'] == 'latency' and record['status'] == 'ok':
            samples.setdefault(record['target'], []).extend(
                record.get('samples_ms', [])
            )
    samples = {t: sorted(v) for t, v in samples.items() if v}
    if not samples:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for target, values in samples.items():
        n = len(values)
        ax.step(
            values,
            [(i + 1) / n for i in range(n)],
            where='post',
            label=f'{_label(target)} (n={n})',
            color=COLORS.get(target),
        )
    for limit, text in ((1.0, 'p50 target'), (2.0, 'p99 target')):
        ax.axvline(limit, color='black', linestyle=':', linewidth=0.8)
        ax.text(limit, 0.02, f' {text}', rotation=90, fontsize=7, va='bottom')
    ax.set_xscale('log')
    ax.set_xlabel('delivery latency, writer save to reader receive (ms, log)')
    ax.set_ylabel('fraction of events')
    ax.set_ylim(0, 1.01)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    ax.set_title(TITLES['latency'], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _series(
    rows: dict[Key, Row], target: str, layout: str, metric: str
) -> tuple[list[int], list[float], list[list[float]]]:
    xs, ys, low, high = [], [], [], []
    for (scenario, t, case), row in rows.items():
        if scenario != 'fanout' or t != target or not row.runs:
            continue
        case_layout, _, n = case.partition('-')
        if n == '1':
            case_layout = layout  # one subscription: both layouts are the same
        stats = row.metrics.get(metric)
        if case_layout != layout or stats is None or math.isnan(stats['median']):
            continue
        xs.append(int(n))
        ys.append(stats['median'])
        low.append(stats['median'] - stats['min'])
        high.append(stats['max'] - stats['median'])
    order = sorted(range(len(xs)), key=xs.__getitem__)
    return (
        [xs[i] for i in order],
        [ys[i] for i in order],
        [[low[i] for i in order], [high[i] for i in order]],
    )


def fanout(rows: dict[Key, Row], path: Path) -> bool:
    """Deliveries/s (top) and idle CPU (bottom) vs subscriptions, per layout."""
    targets = list(dict.fromkeys(k[1] for k in rows if k[0] == 'fanout'))
    if not targets:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    panels = (
        ('deliveries_per_s', 'deliveries/s (log)', True),
        ('idle_cpu_percent', 'reader idle CPU, % of a core', False),
    )
    for r, (metric, ylabel, log_y) in enumerate(panels):
        for c, layout in enumerate(('distinct', 'one')):
            ax = axes[r][c]
            for target in targets:
                xs, ys, err = _series(rows, target, layout, metric)
                if xs:
                    ax.errorbar(
                        xs,
                        ys,
                        yerr=err,
                        marker='o',
                        capsize=3,
                        label=_label(target),
                        color=COLORS.get(target),
                    )
            ax.set_xscale('log')
            if log_y:
                ax.set_yscale('log')
            ax.grid(True, which='both', alpha=0.3)
            ax.set_ylabel(ylabel)
            where = 'one task' if layout == 'one' else 'distinct tasks'
            ax.set_title(f'subscriptions on {where}', fontsize=9)
            if r == 1:
                ax.set_xlabel('subscriptions on the reader replica (log)')
    handles, labels = axes[0][1].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=len(labels), fontsize=8)
    fig.suptitle(TITLES['fanout'] + ' (error bars: min-max)', fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def store(rows: dict[Key, Row], path: Path) -> bool:
    """Grouped bars of ops/s per target and concurrency, min-max whiskers."""
    cases = list(dict.fromkeys(k[2] for k in rows if k[0] == 'store'))
    targets = list(dict.fromkeys(k[1] for k in rows if k[0] == 'store'))
    if not cases:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        xs: list[float] = []
        ys: list[float] = []
        err: list[list[float]] = [[], []]
        for j, case in enumerate(cases):
            row = rows.get(('store', target, case))
            if row is None or not row.runs:
                continue
            stats = row.metrics['ops_per_s']
            xs.append(j + i * width)
            ys.append(stats['median'])
            err[0].append(stats['median'] - stats['min'])
            err[1].append(stats['max'] - stats['median'])
        ax.bar(
            xs,
            ys,
            width,
            yerr=err,
            capsize=2,
            label=_label(target),
            color=COLORS.get(target),
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
    ax.set_xticklabels([f'{c.removeprefix("c")} coroutine(s)' for c in cases])
    ax.set_yscale('log')
    ax.set_ylabel('save + get per second (log)')
    ax.grid(True, axis='y', which='both', alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(TITLES['store'], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw(data: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Draws every plot the results allow; returns title -> PNG path."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = aggregate(data['records'])
    made: dict[str, Path] = {}
    drawers = {
        'latency': lambda p: latency(data['records'], p),
        'fanout': lambda p: fanout(rows, p),
        'store': lambda p: store(rows, p),
    }
    for key, drawer in drawers.items():
        path = directory / FILES[key]
        if drawer(path):
            made[TITLES[key]] = path
    return made
