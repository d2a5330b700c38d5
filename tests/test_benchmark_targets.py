"""The benchmark report judges postgres by its own goals, against the SDK's SQL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's benchmarks/

from benchmarks.report.aggregate import aggregate
from benchmarks.report.format import DASH, TIMES
from benchmarks.report.markdown import headline_cells


def _record(target: str, case: str, ops: float, run: int) -> dict[str, Any]:
    return {
        'run': run,
        'scenario': 'store',
        'target': target,
        'case': case,
        'status': 'ok',
        'metrics': {'ops_per_s': ops, 'p50_ms': 1.0, 'p99_ms': 2.0},
        'checks': {},
    }


def _headline(ops: dict[tuple[str, str], float]) -> dict[str, dict[str, str]]:
    records = [
        _record(target, case, value, run)
        for (target, case), value in ops.items()
        for run in (1, 2, 3)
    ]
    meta = {'size': {'fanout_subscriptions': [1_000]}, 'baseline': 'sql-postgres'}
    header, lines = headline_cells(aggregate(records), meta)
    return {line[0]: dict(zip(header, line, strict=True)) for line in lines}


def test_postgres_is_judged_against_the_sdk_sql_mode_not_the_redis_floor() -> None:
    table = _headline(
        {
            ('sql-postgres', 'c1'): 100.0,
            ('sql-postgres', 'c64'): 100.0,
            ('postgres', 'c1'): 600.0,
            ('postgres', 'c64'): 400.0,
            ('floor', 'c1'): 10_000.0,
            ('floor', 'c64'): 10_000.0,
            ('redis-streams', 'c1'): 9_000.0,
            ('redis-streams', 'c64'): 9_000.0,
        }
    )
    one = table['PostgreSQL: save (CAS+event) + get, 1 coroutine (ops/s)']
    many = table['PostgreSQL: save (CAS+event) + get, 64 coroutines (ops/s)']
    assert f'6{TIMES} SQL ✅' in one['postgres']
    assert f'4{TIMES} SQL ❌' in many['postgres']
    assert one['redis streams'] == DASH
    assert one['floor (raw redis-py)'] == DASH
    floor_goal = table['save (CAS+event) + get, 1 coroutine (ops/s)']
    assert floor_goal['postgres'] == DASH
    assert '✅' in floor_goal['redis streams']


def _e2e(target: str, case: str, cpu_ms: float, run: int) -> dict[str, Any]:
    return {
        'run': run,
        'scenario': 'e2e',
        'target': target,
        'case': case,
        'status': 'ok',
        'metrics': {'requests_per_s': 100.0, 'cpu_ms_per_request_max': cpu_ms},
        'checks': {},
    }


def test_replica_cpu_per_request_is_judged_against_the_sdk_in_memory_replica() -> None:
    cpu = {
        ('sdk-inmemory', '1-replica'): 4.0,
        ('memory', '2-replica'): 4.8,
        ('redis-streams', '2-replica'): 8.0,
    }
    records = [
        _e2e(target, case, value * (1 + run / 100), run)
        for (target, case), value in cpu.items()
        for run in (1, 2, 3)
    ]
    meta = {'size': {'fanout_subscriptions': [1_000]}, 'baseline': 'sql-postgres'}
    header, lines = headline_cells(aggregate(records), meta)
    table = {line[0]: dict(zip(header, line, strict=True)) for line in lines}
    goal = table['Price of clustering: CPU per streamed request, worst replica (ms)']
    assert f'1.20{TIMES} in-memory ✅' in goal['memory']
    assert f'2{TIMES} in-memory ❌' in goal['redis streams']
