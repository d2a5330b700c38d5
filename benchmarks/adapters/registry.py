"""Named targets: provision per-run resources, open, clean up.

Every run gets fresh state: a new Redis namespace (key prefix), a new
PostgreSQL database (the SDK baseline) or schema (the postgres backend), a
new SQLite file. Cleanup removes them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.adapters.base import Target, TargetSpec

REDIS_URL = os.environ.get('A2A_SCALE_BENCH_REDIS', 'redis://127.0.0.1:6379/0')
POSTGRES_DSN = os.environ.get(
    'A2A_SCALE_BENCH_POSTGRES', 'postgresql://postgres@127.0.0.1:5432/test'
)

SCALE = ('memory', 'redis-streams', 'redis-pubsub', 'postgres')
AWS = 'aws'
BASELINES = ('sql-postgres', 'sql-sqlite')
FLOOR = 'floor'
REFERENCE = 'sdk-inmemory'
ALL_TARGETS = (*SCALE, AWS, *BASELINES, FLOOR)


def reachable(url: str) -> bool:
    """Whether the host and port of `url` accept a TCP connection."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or '127.0.0.1', parts.port or 0), timeout=1.0
        ):
            return True
    except OSError:
        return False


def unavailable(name: str) -> str | None:
    """Why target `name` cannot run here, or `None` if it can."""
    if name.startswith('redis') or name == FLOOR:
        return None if reachable(REDIS_URL) else f'no Redis at {REDIS_URL}'
    if name in ('sql-postgres', 'postgres'):
        if reachable(POSTGRES_DSN):
            return None
        parts = urlsplit(POSTGRES_DSN)
        return f'no PostgreSQL at {parts.hostname}:{parts.port or 5432}'
    if name == AWS:
        from benchmarks.scenarios.aws import available

        return available()
    return None


def _redis_port() -> int:
    return urlsplit(REDIS_URL).port or 6379


async def provision(name: str) -> TargetSpec:
    """Creates the fresh resources of one run of target `name`."""
    run = uuid.uuid4().hex[:10]
    if name == 'memory':
        return TargetSpec(name, 'scale', {'backend': 'memory', 'namespace': f'b{run}'})
    if name in ('redis-streams', 'redis-pubsub'):
        return TargetSpec(
            name,
            'scale',
            {
                'backend': 'redis',
                'namespace': f'b{run}',
                'url': REDIS_URL,
                'mode': name.removeprefix('redis-'),
                'server_port': _redis_port(),
            },
        )
    if name == 'postgres':
        return TargetSpec(
            name,
            'scale',
            {
                'backend': 'postgres',
                'namespace': f'b{run}',
                'dsn': POSTGRES_DSN,
                'create_schema': True,
                'server_port': urlsplit(POSTGRES_DSN).port or 5432,
            },
        )
    if name == FLOOR:
        return TargetSpec(
            name,
            'floor',
            {'url': REDIS_URL, 'namespace': f'f{run}', 'server_port': _redis_port()},
        )
    if name == 'sql-postgres':
        import asyncpg

        database = f'bench_{run}'
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'CREATE DATABASE {database}')
        finally:
            await conn.close()
        base = POSTGRES_DSN.replace('postgresql://', 'postgresql+asyncpg://', 1)
        return TargetSpec(
            name, 'baseline', {'url': base.rsplit('/', 1)[0] + f'/{database}'}
        )
    if name == 'sql-sqlite':
        path = Path(tempfile.gettempdir()) / f'a2a-bench-{run}.db'
        return TargetSpec(name, 'baseline', {'url': f'sqlite+aiosqlite:///{path}'})
    if name == REFERENCE:
        return TargetSpec(name, 'reference', {})
    raise ValueError(f'Unknown benchmark target {name!r}; known: {ALL_TARGETS}')


async def cleanup(spec: TargetSpec) -> None:
    """Removes what `provision` created (keys, database, file)."""
    if spec.params.get('url', '').startswith('redis'):
        from redis.asyncio import Redis

        client = Redis.from_url(spec.params['url'])
        try:
            pattern = f'*{spec.params["namespace"]}*'
            batch: list[bytes] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()
    elif spec.name == 'postgres':
        from a2a_scale_postgres.testing import drop_schema

        await drop_schema(POSTGRES_DSN, spec.params['namespace'])
    elif spec.name == 'sql-postgres':
        import asyncpg

        database = spec.params['url'].rsplit('/', 1)[1]
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS {database} WITH (FORCE)')
        finally:
            await conn.close()
    elif spec.name == 'sql-sqlite':
        path = spec.params['url'].removeprefix('sqlite+aiosqlite:///')
        for suffix in ('', '-wal', '-shm', '-journal'):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)


def build_target(spec: TargetSpec, *, role: str = 'main') -> Target:
    """Opens (without connecting) the target described by `spec`."""
    if spec.kind == 'scale':
        from benchmarks.adapters.scale import ScaleTarget

        return ScaleTarget(spec, role=role)
    if spec.kind == 'baseline':
        from benchmarks.adapters.sql import SqlTarget

        return SqlTarget(spec, role=role)
    if spec.kind == 'reference':
        from benchmarks.adapters.sql import SdkInMemoryTarget

        return SdkInMemoryTarget(spec, role=role)
    from benchmarks.floor import FloorTarget

    return FloorTarget(spec, role=role)
